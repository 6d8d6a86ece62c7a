"""Learning-rate selection on the validation split of the training images, never on test.

:func:`select_lr` trains one configuration once per candidate learning rate on the training
images minus the validation split (``validation``: a seeded 20% by default, as the PE-RSITR
authors did), scores the validation split after every epoch/round, and picks the candidate with
the highest validation mR (pessimistic ties) at the *final* epoch/round, since the final
epoch/round is what a run reports. The test split is never loaded. Two kinds of configuration:

* a :class:`~fedrs.retrieval.config.RetrievalConfig`: centralised AdamW training of the PETL
  harness (:func:`~fedrs.retrieval.train.train_epochs`, ``train.epochs`` epochs);
* a :class:`~fedrs.runs.RunConfig` with ``method: {name: pe-rsitr}``: client SGD through the
  federated engine (``data`` deals the clients, ``train`` the rounds and schedule), exactly as
  ``fedrs run`` trains it; with private tensors the criterion is the clients' mean
  personalised validation mR.

```python
from fedrs.retrieval import RetrievalConfig, RetrievalTrainConfig
from fedrs.retrieval.selection import select_lr
lr, table = select_lr(RetrievalConfig(train=RetrievalTrainConfig(epochs=5)), [3e-4, 1e-3, 3e-3],
                      out="results/retrieval/lr_sweep/centralised_ucm")
```

``out`` receives ``lr_sweep.csv`` (one row per candidate: the final and best validation mR,
the best epoch, the curve, the final training loss, seconds) and ``lr_sweep.json`` (the same
rows, the chosen rate, the criterion, the validation split in words, the budget, the backbone
and the configuration).

One seed can pick a rate at the edge of divergence: :func:`select_lr_replicates` runs
:func:`select_lr` for several configurations that differ only in their seeds (e.g. a grid's
``*__s0.yaml``, ``*__s1.yaml``, ``*__s2.yaml``), each into ``out/<name>/``, and chooses the rate
with the highest *mean* final validation mR over them; a rate that diverged in any replicate is
never chosen. A replicate whose table is already on disk for the same configuration and rates is
read back, not trained again, so an interrupted selection resumes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import statistics
import time
from pathlib import Path
from typing import Sequence

from fedrs.backbone.factory import Backbone, create_backbone
from fedrs.config import to_dict
from fedrs.errors import FedrsError
from fedrs.io import json_text, read_json_object, write_json_atomic, write_text_atomic
from fedrs.retrieval.config import RetrievalConfig, ValidationConfig
from fedrs.retrieval.data import RetrievalSet, split_clients
from fedrs.retrieval.method import PERSITRConfig
from fedrs.retrieval.pipeline import federated_retrieval
from fedrs.retrieval.train import train_epochs, validation_summary
from fedrs.retrieval.variants import build_variant
from fedrs.runs import RunConfig

logger = logging.getLogger(__name__)

SWEEP_CSV, SWEEP_JSON = "lr_sweep.csv", "lr_sweep.json"


class SelectionError(FedrsError):
    """A learning-rate sweep that cannot select anything (no validation split, no candidates)."""


def _validation(cfg: RetrievalConfig | RunConfig) -> tuple[ValidationConfig, str, str]:
    if isinstance(cfg, RetrievalConfig):
        return cfg.validation, cfg.dataset, cfg.train_split
    if not isinstance(cfg.method, PERSITRConfig):
        raise SelectionError(f"select_lr needs a retrieval configuration (method: pe-rsitr), got "
                             f"method {getattr(cfg.method, 'name', cfg.method)!r}")
    return cfg.method.validation, cfg.data.dataset, cfg.method.train_split


def _train_one(cfg: RetrievalConfig | RunConfig, lr: float, backbone: Backbone, train: RetrievalSet,
               val: RetrievalSet, progress: bool, max_steps: int | None) -> tuple[list[dict], str, dict]:
    """Train ``cfg`` at ``lr`` on ``train``; ``(history with val_mR, criterion key, extras)``."""
    if isinstance(cfg, RetrievalConfig):
        t = cfg.train
        model, loss = build_variant(backbone, cfg)  # seeded by train.seed: the same init for every lr
        stats = train_epochs(model, loss, train, epochs=t.epochs, batch_size=t.batch_size, lr=lr,
                             weight_decay=t.weight_decay, seed=t.seed, val=val, max_steps=max_steps,
                             progress=f"lr {lr:g}" if progress else False,
                             lr_decay_every=t.lr_decay_every, lr_decay=t.lr_decay,
                             val_every=cfg.validation.every)
        return stats["history"], "val_mR", {"final_train_loss": stats["loss"]}
    train_cfg = dataclasses.replace(cfg.train, lr=lr)
    # the engine's accuracy columns score val too: the test split is never loaded here
    eval_cfg = dataclasses.replace(cfg.eval, every=max(1, train_cfg.rounds), zeroshot_reference=False)
    out = federated_retrieval(backbone, train, val, cfg.method, train_cfg=train_cfg, eval_cfg=eval_cfg,
                              shards=split_clients(train, cfg.data), progress=progress, val=val)
    rows = [r for r in out.history if r.get("round", 0) > 0]
    key = "val_mR_personalised" if any("val_mR_personalised" in r for r in rows) else "val_mR"
    losses = [r.get("train_loss") for r in rows if "train_loss" in r]
    return rows, key, {"final_train_loss": losses[-1] if losses else float("nan")}


def select_lr(cfg: RetrievalConfig | RunConfig, candidates: Sequence[float], *, backbone: Backbone | None = None,
              train: RetrievalSet | None = None, out: str | Path | None = None, progress: bool = False,
              max_steps: int | None = None) -> tuple[float, list[dict]]:
    """The learning rate among ``candidates`` with the best final validation mR, and the table.

    ``backbone``: default ``cfg.backbone`` of a run configuration, the offline default otherwise.
    ``train``: the full training set (default: ``cfg``'s dataset and training split, loaded for
    the backbone); its validation split follows ``cfg``'s ``validation`` section. ``max_steps``
    caps the optimiser steps of centralised training (smoke runs). ``out``: folder for
    ``lr_sweep.csv`` and ``lr_sweep.json``. Returns ``(lr, rows)``, one row per candidate in
    the order given; a diverged candidate (NaN) is never chosen, ties go to the first listed.
    """
    candidates = [float(c) for c in candidates]
    if not candidates or any(not math.isfinite(c) or c <= 0 for c in candidates):
        raise SelectionError(f"select_lr needs one or more learning rates > 0, got {candidates}")
    validation, dataset, train_split = _validation(cfg)
    if validation.fraction <= 0:
        raise SelectionError("select_lr selects on the validation split of the training images: set "
                             "validation.fraction > 0 (e.g. 0.2), never select on test")
    if backbone is None:
        backbone = (create_backbone(cfg.backbone.model, cfg.backbone.pretrained, cfg.backbone.device)
                    if isinstance(cfg, RunConfig) else create_backbone())
    train_all = train if train is not None else RetrievalSet.load(dataset, train_split, backbone)
    fit, val = train_all.split_validation(validation.fraction, validation.seed)
    split = validation.describe(train_split, len(val), len(train_all))
    if isinstance(cfg, RetrievalConfig):
        kind = f"centralised AdamW ({cfg.variant})"
        budget = (f"{cfg.train.epochs} epochs, batch {cfg.train.batch_size}, weight decay "
                  f"{cfg.train.weight_decay}" + (f", x{cfg.train.lr_decay} every {cfg.train.lr_decay_every} epochs"
                                                 if cfg.train.lr_decay_every else ", constant rate"))
        unit = "epoch"
    else:
        kind = (f"federated SGD ({cfg.method.variant}, federate {cfg.method.federate}, "
                f"{cfg.data.describe()})")
        budget = (f"{cfg.train.rounds} rounds x {cfg.train.local_epochs} local epochs, batch "
                  f"{cfg.train.batch_size}, momentum {cfg.train.momentum}, {cfg.train.lr_schedule} schedule")
        unit = "round"
    rows, criterion = [], "val_mR"
    for lr in candidates:
        started = time.perf_counter()
        history, criterion, extra = _train_one(cfg, lr, backbone, fit, val, progress, max_steps)
        summary = validation_summary(history, criterion, unit)
        row = {"lr": lr, "final_val_mR": summary["final_val_mR"], "best_val_mR": summary["best_val_mR"],
               f"best_{unit}": summary[f"best_{unit}"],
               "val_mR_curve": " ".join(f"{v:.2f}" for v in summary["val_mR"]),
               **extra, "seconds": time.perf_counter() - started}
        logger.info("lr %-8g final val mR %6.2f (best %6.2f at %s %s)  %.0f s", lr, row["final_val_mR"],
                    row["best_val_mR"], unit, row[f"best_{unit}"], row["seconds"])
        rows.append(row)

    def score(row: dict) -> float:
        v = row["final_val_mR"]
        return v if v is not None and math.isfinite(v) else -math.inf

    chosen = max(rows, key=score)["lr"]  # max keeps the first of equal scores
    if out is not None:
        write_sweep(Path(out), rows, {
            "kind": kind, "dataset": dataset, "train_split": train_split, "validation": split,
            "test_split": "not loaded", "budget": budget, "backbone": backbone.label,
            "criterion": f"highest {criterion} (pessimistic ties) at the final {unit}",
            "chosen_lr": chosen, "config": to_dict(cfg)})
    logger.info("chosen lr %g on %s", chosen, split)
    return chosen, rows


def _finite_or_none(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _swept(config: dict) -> dict:
    """``config`` (a ``to_dict``) without ``train.lr``: the rate a sweep replaces by each candidate."""
    return {**config, "train": {k: v for k, v in config.get("train", {}).items() if k != "lr"}}


def _without_seeds(value):
    """A config dict without its ``seed`` and ``name`` entries, at every depth."""
    if isinstance(value, dict):
        return {k: _without_seeds(v) for k, v in value.items() if k not in ("seed", "name")}
    return value


def _stored_sweep(folder: Path, cfg: RetrievalConfig | RunConfig, candidates: Sequence[float]) -> dict | None:
    """``folder``'s lr_sweep.json when it was made for ``cfg`` and exactly ``candidates``, None when
    there is none; a table of another configuration or other rates is an error (never mixed in)."""
    path = folder / SWEEP_JSON
    if not path.is_file():
        return None
    stored = read_json_object(path, SelectionError, fix="delete that folder to run the replicate again")
    rates = [r.get("lr") for r in stored.get("rows") or []]
    wanted = json.loads(json_text(to_dict(cfg)))  # as lr_sweep.json holds it (lists, strings)
    if _swept(stored.get("config") or {}) != _swept(wanted) or rates != list(candidates):
        raise SelectionError(f"{folder} holds a sweep of another configuration or of other rates ({rates}): "
                             f"delete it, or choose another --out, to run this replicate")
    return stored


def select_lr_replicates(cfgs: Sequence[RetrievalConfig | RunConfig], names: Sequence[str],
                         candidates: Sequence[float], *, out: str | Path, backbone: Backbone | None = None,
                         progress: bool = False, max_steps: int | None = None) -> tuple[float, list[dict]]:
    """The rate among ``candidates`` with the highest mean final validation mR over replicates.

    ``cfgs``: configurations that should differ only in their seeds (split, validation split,
    initialisation); ``names``: one folder name each (``out/<name>/`` receives that replicate's
    :func:`select_lr` table; one already there for the same configuration and rates is reused).
    ``out`` receives ``lr_sweep.csv`` / ``lr_sweep.json`` with one row per rate: the mean, sample
    std and minimum of the replicates' final validation mR, each replicate's value and how many
    diverged (non-finite; such a rate is never chosen). Ties go to the first listed rate.
    Returns ``(lr, rows)``.
    """
    candidates = [float(c) for c in candidates]
    if len(cfgs) != len(names) or len(set(names)) != len(names) or not cfgs:
        raise SelectionError(f"select_lr_replicates needs one distinct name per configuration, got {list(names)}")
    common = _without_seeds(_swept(to_dict(cfgs[0])))
    differs = [name for cfg, name in zip(cfgs, names) if _without_seeds(_swept(to_dict(cfg))) != common]
    if differs:
        raise SelectionError(f"replicates must differ only in their seeds (and names): {differs} differ from "
                             f"{names[0]} in other settings, so a mean over them would mix configurations")
    out = Path(out)
    infos: dict[str, dict] = {}  # each replicate's lr_sweep.json: its rows, split, budget, criterion
    for cfg, name in zip(cfgs, names):
        if _stored_sweep(out / name, cfg, candidates) is None:
            logger.info("replicate %s: %d rates", name, len(candidates))
            select_lr(cfg, candidates, backbone=backbone, out=out / name, progress=progress, max_steps=max_steps)
        else:
            logger.info("replicate %s: read back from %s", name, out / name / SWEEP_JSON)
        infos[name] = _stored_sweep(out / name, cfg, candidates)
    table = []
    for i, lr in enumerate(candidates):
        values = [_finite_or_none(infos[name]["rows"][i].get("final_val_mR")) for name in names]
        finite = [v for v in values if v is not None]
        mean = statistics.fmean(finite) if finite else None
        table.append({"lr": lr, "mean_final_val_mR": mean if len(finite) == len(values) else None,
                      "std_final_val_mR": statistics.stdev(finite) if len(finite) > 1 else None,
                      "min_final_val_mR": min(finite) if finite else None,
                      "diverged": len(values) - len(finite),
                      **{f"final_val_mR_{name}": v for name, v in zip(names, values)}})

    def score(row: dict) -> float:
        return row["mean_final_val_mR"] if row["mean_final_val_mR"] is not None else -math.inf

    best = max(table, key=score)  # max keeps the first of equal scores
    if best["mean_final_val_mR"] is None:
        raise SelectionError(f"every candidate rate diverged in some replicate: {candidates}; try smaller rates")
    first = infos[names[0]]
    write_sweep(out, table, {
        **{k: first[k] for k in ("kind", "dataset", "train_split", "test_split", "budget", "backbone") if k in first},
        "replicates": list(names),
        "validation": "; ".join(f"{name}: {infos[name].get('validation')}" for name in names),
        "criterion": f"highest mean over the {len(names)} replicates of the final validation mR (each: "
                     f"{first.get('criterion')}); a rate that diverged in any replicate is never chosen",
        "chosen_lr": best["lr"]})
    logger.info("chosen lr %g: mean final val mR %.2f over %d replicates", best["lr"], best["mean_final_val_mR"],
                len(names))
    return best["lr"], table


def write_sweep(folder: Path, rows: list[dict], info: dict) -> None:
    """``lr_sweep.csv`` (the rows) and ``lr_sweep.json`` (``info`` plus the rows) in ``folder``."""
    import csv
    import io

    folder.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(folder / SWEEP_CSV, buf.getvalue())
    # a diverged candidate's NaN loss is a result here, written as null (strict JSON)
    finite = [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()}
              for r in rows]
    write_json_atomic(folder / SWEEP_JSON, {**info, "rows": finite})


__all__ = ["SWEEP_CSV", "SWEEP_JSON", "SelectionError", "select_lr", "select_lr_replicates", "write_sweep"]
