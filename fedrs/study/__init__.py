"""The study layer: batches of runs (:mod:`~fedrs.study.sweep`), the tables and figures derived from
run folders (:mod:`~fedrs.study.report`, :mod:`~fedrs.study.plots`), and what the notebooks need to
start from a fresh clone (:func:`ensure_ready`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


def ensure_ready(backbone_model: str | None = None, datasets: Sequence[str] = ()) -> None:
    """Make a notebook runnable from a fresh clone: import missing ``datasets`` from
    ``$FEDRS_SOURCE`` (default ``../shared/data``) and build an offline ``backbone_model``
    (``fedrs-rsclip-tiny`` / ``-s``) if its checkpoint is missing. Both steps are no-ops when done."""
    from fedrs.data import import_sources
    from fedrs.data.registry import imported_names, resolve_root
    from fedrs.errors import DataError

    root = resolve_root(None)
    have = set(imported_names(root))
    missing = [d for d in datasets if d not in have and not (d == "AID-holdout" and "AID" in have)]
    if missing:
        source = Path(os.environ.get("FEDRS_SOURCE") or "../shared/data")
        if not source.exists():
            source = Path(__file__).resolve().parents[2].parent / "shared" / "data"
        if not source.exists():
            raise DataError(f"datasets {missing} are not imported and no source folder was found: "
                            f"run `fedrs data import <folder of archives>` or set FEDRS_SOURCE")
        import_sources([source], progress=False)
    if backbone_model:
        from fedrs.backbone.factory import OFFLINE_MODELS, offline_checkpoint_path

        if backbone_model in OFFLINE_MODELS and not offline_checkpoint_path(backbone_model).is_file():
            import fedrs.backbone as bb

            if hasattr(bb, "ensure_offline_backbone"):
                bb.ensure_offline_backbone(backbone_model)
            else:
                from fedrs.cli import main

                if main(["backbone", "pretrain", "--model", backbone_model, "--if-missing", "--no-card"]):
                    raise RuntimeError(f"building the offline backbone {backbone_model} failed")
