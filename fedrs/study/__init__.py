"""The study layer: batches of runs and what is derived from their run folders.

- :mod:`~fedrs.study.vocabulary`: the study's names and orders (method labels, ablation variants
  and their switches, prompt lengths, datasets), shared by ``params/make_studies.py``, the tables,
  the figures and the benchmarks;
- :mod:`~fedrs.study.sweep`: one executed run notebook per params file (``fedrs sweep``), its
  locks, resume and status;
- :mod:`~fedrs.study.executors`: where those runs execute (local processes, or submitit: Slurm and
  its local mode), all running the sweep's one job function;
- :mod:`~fedrs.study.collect`: run folders -> one row per run (its row key, accuracies, test-set counts,
  differential-privacy settings and the epsilon spent);
- :mod:`~fedrs.study.stats`: paired differences over seeds (t-intervals) and Wilson test-set intervals;
- :mod:`~fedrs.study.tables`: rows -> the study's tables (mean +- std over seeds, paired differences
  to FedRSCLIP, test-set intervals; headings name the backbone and the protocol), runs trained with
  differential privacy left out;
- :mod:`~fedrs.study.privacy`: the privacy-utility table: each DP row's accuracy and epsilon per
  noise level, paired against the same row without DP;
- :mod:`~fedrs.study.cost`: a run's estimated cost from measured round times (params/make_studies.py
  --estimate) and a sweep's time left, calibrated per kind of run on the runs already finished;
- :mod:`~fedrs.study.plots`: every figure (the notebooks' and the report's);
- :mod:`~fedrs.study.report`: tables and figures of a results folder written to disk (``fedrs report``);
- this module: what the notebooks need to start from a fresh clone (:func:`use_project_roots`,
  :func:`find_project_file`, :func:`ensure_ready`).

Imports run one way: ``report`` -> ``privacy`` -> ``tables`` -> ``collect`` -> ``vocabulary``,
``tables`` -> ``stats``, and ``report`` -> ``plots`` -> ``vocabulary``; ``cost`` needs only
:func:`fedrs.data.partition.num_base_classes` of the rest of fedrs; the faces (``commands``, the
notebooks, the benchmarks) use ``report``.
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


def find_project_file(path: str | Path) -> Path:
    """``path`` as given if it exists, else relative to the project root (notebooks run in
    ``notebooks/`` but their parameters name files relative to the checkout)."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p.resolve()
    candidate = project_root() / p
    return candidate.resolve() if candidate.exists() else p.resolve()


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
            from fedrs.pretrain import ensure_offline_backbone

            ensure_offline_backbone(backbone_model, card=False)  # a smoke run keeps the committed card
