"""The study layer: batches of runs (:mod:`~fedrs.study.sweep`), the tables and figures derived from
run folders (:mod:`~fedrs.study.report`, :mod:`~fedrs.study.plots`), and what the notebooks need to
start from a fresh clone (:func:`ensure_ready`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


#: the environment variables of fedrs.paths and their folders in the checkout
ROOT_VARIABLES = {"FEDRS_DATA": "data", "FEDRS_CACHE": "cache", "FEDRS_MODELS": "models",
                  "FEDRS_RESULTS": "results"}


def project_root() -> Path:
    """The checkout holding ``notebooks/`` and ``params/``: the one this package lives in (editable
    installs, source trees), else the current folder or the nearest parent that has them."""
    here = Path.cwd().resolve()
    for candidate in (Path(__file__).resolve().parents[2], here, *here.parents):
        if (candidate / "notebooks").is_dir() and (candidate / "params").is_dir():
            return candidate
    return here


def use_project_roots() -> dict[str, str]:
    """Point every fedrs root that is not set in the environment at the checkout's folder
    (``data/``, ``cache/``, ``models/``, ``results/``), so a notebook running in ``notebooks/``
    reads the same data, backbones and results as the command line run from the checkout.
    Roots set in the environment are kept. Returns the roots in use."""
    root = project_root()
    for var, folder in ROOT_VARIABLES.items():
        if not os.environ.get(var):
            os.environ[var] = str(root / folder)
    return {var: os.environ[var] for var in ROOT_VARIABLES}


def default_run_dir(params_file: str | Path) -> Path:
    """Where the run notebook writes when no ``out_dir`` is given: ``runs/notebook/<params stem>``
    in the checkout (ignored by git; sweeps always pass ``results/<study>/<run>``)."""
    return project_root() / "runs" / "notebook" / Path(params_file).stem


def ensure_ready(backbone_model: str | None = None, datasets: Sequence[str] = ()) -> None:
    """Make a notebook runnable from a fresh clone: import missing ``datasets`` from
    ``$FEDRS_SOURCE`` (default ``../shared/data``) and build an offline ``backbone_model``
    (``fedrs-rsclip-tiny`` / ``-s``) if its checkpoint is missing. Both steps are no-ops when done."""
    from fedrs.data import import_sources
    from fedrs.data.registry import imported_names, resolve_root
    from fedrs.errors import DataError

    use_project_roots()
    root = resolve_root(None)
    have = set(imported_names(root))
    missing = [d for d in datasets if d not in have and not (d == "AID-holdout" and "AID" in have)]
    if missing:
        source = Path(os.environ.get("FEDRS_SOURCE") or project_root().parent / "shared" / "data")
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
