"""Where fedrs keeps data, caches, model weights and results.

Every location can be moved with an environment variable so a study can run from a laptop
checkout, a shared cluster volume or a CI workspace without code changes.

| variable       | default (relative to the current directory) | holds                         |
|----------------|---------------------------------------------|-------------------------------|
| FEDRS_DATA     | data/                                       | imported datasets             |
| FEDRS_CACHE    | cache/                                      | feature and tensor caches     |
| FEDRS_MODELS   | models/                                     | offline backbone checkpoints  |
| FEDRS_RESULTS  | results/                                    | study outputs (committed)     |
| FEDRS_SOURCE   | ../shared/data                              | where `make study` imports from |
"""

from __future__ import annotations

import os
from pathlib import Path


def _dir(var: str, default: str) -> Path:
    return Path(os.environ.get(var) or default).expanduser().resolve()


def data_root() -> Path:
    """Root of imported datasets (``$FEDRS_DATA``, default ``data/``)."""
    return _dir("FEDRS_DATA", "data")


def cache_root() -> Path:
    """Root of on-disk caches (``$FEDRS_CACHE``, default ``cache/``)."""
    return _dir("FEDRS_CACHE", "cache")


def models_root() -> Path:
    """Root of locally built backbone checkpoints (``$FEDRS_MODELS``, default ``models/``)."""
    return _dir("FEDRS_MODELS", "models")


def results_root() -> Path:
    """Root of study results (``$FEDRS_RESULTS``, default ``results/``)."""
    return _dir("FEDRS_RESULTS", "results")
