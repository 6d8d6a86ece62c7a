"""The PETL table over seeds: run resumably, one file per seed and row, and the table from those files.

A params file (``params/retrieval/petl_*.yaml``, :class:`PETLStudyConfig`) names the caption set,
the backbone, the sizes, the loss, the budget, the validation fraction, the rows
(:data:`fedrs.retrieval.compare.PETL_ROWS`) and the seeds. :func:`run_petl` trains every row for
every seed with :func:`fedrs.retrieval.compare.train_row` and writes each result the moment it is
scored::

    <out>/<dataset>/s<seed>/<row>.json      # {"row": recalls (every tie convention), validation, labels;
                                             #  "key": what produced it; "env": commit, threads, host}

so an interrupted run loses at most the row in progress, and a rerun skips the rows already on
disk (and refuses a file that another configuration produced). Seed ``s`` seeds the validation
split (which 20% of the training images are held out), the initialisation, the batch order and
the dropout of every row alike, so rows are compared seed by seed.

:func:`write_petl_table` regenerates ``<out>/<dataset>/petl_table.{csv,md}`` from the files alone:
per row the mean +- std (ddof 1) over its seeds of the recalls under every tie convention, and
the paired difference of mR to MRS-Adapter + HMMC (:data:`~fedrs.retrieval.compare.HEADLINE`) with
its 95% t-interval (:func:`fedrs.study.stats.paired_difference`, the study's one implementation).

```python
from fedrs.retrieval.petl import load_petl_config, run_petl
folder = run_petl(load_petl_config("params/retrieval/petl_ucm.yaml"))   # results/retrieval/petl/UCM-Captions
```
or ``fedrs retrieval petl params/retrieval/petl_ucm.yaml`` (``fedrs retrieval petl-table FOLDER``
rewrites the table only).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from fedrs.config import ConfigError, load_config, to_dict
from fedrs.errors import FedrsError
from fedrs.io import read_json_object, write_json_atomic, write_text_atomic
from fedrs.paths import results_root
from fedrs.retrieval.compare import (
    HEADLINE,
    PETL_ROWS,
    PRIMARY_TIES,
    markdown_table,
    petl_row,
    protocol,
    row_lr,
    train_row,
)
from fedrs.retrieval.config import (
    AdapterConfig,
    LossConfig,
    PromptConfig,
    RetrievalConfig,
    RetrievalTrainConfig,
    ValidationConfig,
)
from fedrs.retrieval.data import RetrievalSet
from fedrs.runs import BackboneConfig
from fedrs.study.stats import CONFIDENCE, paired_difference

logger = logging.getLogger(__name__)

TABLE_CSV, TABLE_MD = "petl_table.csv", "petl_table.md"
#: the recall columns of a row under the primary tie convention, then mR under the other two
RECALLS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mR")
MR_COLUMNS = ("mR", "mR_argsort", "mR_optimistic")


class PETLError(FedrsError):
    """A PETL folder that cannot be resumed or tabulated as asked."""


@dataclass
class PETLStudyConfig:
    """A ``params/retrieval/petl_*.yaml``: the PETL table of one caption set over seeds.

    ``train`` is the budget of every trained row (AdamW; ``lr`` unset: each row's library
    constant, :func:`fedrs.retrieval.compare.row_lr`). ``validation.fraction`` is the held-out share
    of the training images. Seeds come from ``seeds`` only: seed ``s`` sets both ``train.seed``
    and ``validation.seed``, so those two must stay unset (0) here. ``limit_train_images`` /
    ``limit_test_images`` > 0 keep the first N images (smoke runs only: the table says so).
    """

    name: str = ""
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    dataset: str = "UCM-Captions"
    train_split: str = "train+val"
    test_split: str = "test"
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: RetrievalTrainConfig = field(default_factory=RetrievalTrainConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    rows: list[str] = field(default_factory=lambda: list(PETL_ROWS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    limit_train_images: int = 0
    limit_test_images: int = 0

    def __post_init__(self) -> None:
        unknown = [r for r in self.rows if r not in PETL_ROWS]
        if unknown or not self.rows or len(set(self.rows)) != len(self.rows):
            raise ConfigError(f"rows must list distinct PETL rows out of {list(PETL_ROWS)}, got {self.rows}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or any(
                isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ConfigError(f"seeds must be distinct integers >= 0, got {self.seeds}")
        if self.train.seed or self.validation.seed:
            raise ConfigError("train.seed and validation.seed are set by `seeds:` (seed s seeds the validation "
                              "split, the initialisation and the batch order): leave them out")
        if self.validation.fraction <= 0:
            raise ConfigError("validation.fraction must be > 0: the table records selection on a validation "
                              "split of the training images (the authors' 0.2)")
        for key in ("limit_train_images", "limit_test_images"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0 (0: every image), got {getattr(self, key)}")
        if not re.fullmatch(r"[A-Za-z0-9._+-]+", self.dataset):
            raise ConfigError(f"dataset {self.dataset!r} names a folder of the results: letters, digits, . _ + - only")

    def retrieval_config(self, seed: int) -> RetrievalConfig:
        """The harness's configuration of seed ``seed`` (every row; :func:`row_config` sets the variant)."""
        return RetrievalConfig(dataset=self.dataset, train_split=self.train_split, eval_split=self.test_split,
                               adapter=self.adapter, prompts=self.prompts, loss=self.loss,
                               train=dataclasses.replace(self.train, seed=seed),
                               validation=dataclasses.replace(self.validation, seed=seed))


def load_petl_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> PETLStudyConfig:
    """A params file as :class:`PETLStudyConfig` (``overrides``: dotted keys, as ``--set``)."""
    return load_config(PETLStudyConfig, path, overrides)


def seed_folder(folder: Path, seed: int) -> Path:
    return folder / f"s{seed}"


def _row_key(cfg: PETLStudyConfig, seed: int, row: str, backbone_label: str) -> dict:
    """What makes a row's result: the whole seed configuration, the resolved learning rate and
    the backbone's weights. A file on disk is reused only when its key is equal."""
    rcfg = cfg.retrieval_config(seed)
    return {"row": row, "seed": seed, "backbone": backbone_label, "lr": row_lr(rcfg, petl_row(row))[0],
            "config": to_dict(rcfg), "limit_train_images": cfg.limit_train_images,
            "limit_test_images": cfg.limit_test_images}


def _finite(row: dict) -> dict:
    """``row`` with non-finite numbers (a diverged row's) as None, which strict JSON can hold."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def _read_json(path: Path) -> dict:
    return read_json_object(path, PETLError, fix="delete it to rerun that row")


def _differences(old: Any, new: Any, where: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new)) for d in _differences(old.get(k), new.get(k), f"{where}.{k}")]
    return [] if old == new else [f"{where.lstrip('.')}: {old!r} on disk, {new!r} now"]


def run_petl(cfg: PETLStudyConfig, *, out: str | Path | None = None, backbone=None,
             seeds: Sequence[int] | None = None, rows: Sequence[str] | None = None,
             max_steps: int | None = None, progress: bool = False,
             on_row: Callable[[Path, dict], None] | None = None) -> Path:
    """Train every row of ``cfg`` for every seed that is not on disk yet, then write the table.

    ``out``: the parent of the dataset folders (default ``results/retrieval/petl``). ``seeds`` /
    ``rows``: a subset of the configuration's (default all). ``backbone``: built from
    ``cfg.backbone`` when not given. ``max_steps`` caps each row's optimiser steps (smoke runs).
    ``on_row(path, result)`` is called after each row file is written. Returns the dataset
    folder. Raises :class:`PETLError` when a row file on disk was produced by another
    configuration (listing the differences): give another ``out`` or delete the file.
    """
    from fedrs.backbone.factory import create_backbone
    from fedrs.runs import environment

    seeds = list(cfg.seeds if seeds is None else seeds)
    rows = list(cfg.rows if rows is None else rows)
    foreign = [s for s in seeds if s not in cfg.seeds] + [r for r in rows if r not in cfg.rows]
    if foreign:
        raise PETLError(f"{foreign} are not among the configuration's seeds {cfg.seeds} / rows {cfg.rows}")
    folder = Path(out) if out is not None else results_root() / "retrieval" / "petl"
    folder = folder / cfg.dataset
    if backbone is None:
        backbone = create_backbone(cfg.backbone.model, cfg.backbone.pretrained, cfg.backbone.device)
    todo: dict[int, list[str]] = {}
    for seed in seeds:
        for row in rows:
            path = seed_folder(folder, seed) / f"{row}.json"
            key = _row_key(cfg, seed, row, backbone.label)
            if path.exists():
                stored = _read_json(path).get("key")
                changed = _differences(stored, key)
                if changed:
                    raise PETLError(f"{path} was produced by another configuration ({'; '.join(changed[:4])}"
                                    f"{' ...' if len(changed) > 4 else ''}): use another --out, or delete it "
                                    f"to rerun that row")
                logger.info("seed %d %-26s on disk: %s", seed, row, path)
                continue
            todo.setdefault(seed, []).append(row)
    if todo:
        train_all = RetrievalSet.load(cfg.dataset, cfg.train_split, backbone, limit=cfg.limit_train_images or None)
        test = RetrievalSet.load(cfg.dataset, cfg.test_split, backbone, limit=cfg.limit_test_images or None)
        env = {k: v for k, v in environment().items() if k in ("git_commit", "git_dirty", "torch", "host",
                                                                "torch_threads", "torch_cpu_capability")}
        for seed, names in todo.items():
            rcfg = cfg.retrieval_config(seed)
            fit, val = train_all.split_validation(rcfg.validation.fraction, rcfg.validation.seed)
            labels = protocol(backbone, rcfg, train_all, val, test)
            for name in names:
                result, model = train_row(backbone, name, rcfg, fit, val, test, labels, max_steps=max_steps,
                                          progress=progress)
                del model
                result["max_steps"] = max_steps
                path = seed_folder(folder, seed) / f"{name}.json"
                write_json_atomic(path, {"key": _row_key(cfg, seed, name, backbone.label), "row": _finite(result),
                                         "env": env})
                logger.info("wrote %s", path)
                if on_row is not None:
                    on_row(path, result)
            write_petl_table(folder)  # after every seed: the table of what is done so far
    write_petl_table(folder)
    return folder


# -- the table ----------------------------------------------------------------------------------------

def read_petl_rows(folder: str | Path) -> list[dict]:
    """Every row result under ``folder`` (a dataset folder: ``s<seed>/<row>.json``)."""
    folder = Path(folder)
    paths = sorted(folder.glob("s*/*.json"))
    if not paths:
        raise PETLError(f"{folder}: no row results (s<seed>/<row>.json): run `fedrs retrieval petl PARAMS` first")
    out = []
    for path in paths:
        data = _read_json(path)
        if "row" not in data:
            raise PETLError(f"{path}: not a PETL row result (no 'row')")
        out.append(data["row"])
    return out


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not kept:
        return math.nan, math.nan
    return statistics.fmean(kept), (statistics.stdev(kept) if len(kept) > 1 else math.nan)


def petl_summary(results: Sequence[dict], headline: str = HEADLINE) -> list[dict]:
    """One row per method (table order of :data:`PETL_ROWS`): ``seeds``, the mean and std over them
    of every column of :data:`RECALLS` and :data:`MR_COLUMNS` (``<col>_mean``, ``<col>_std``), the
    paired difference to ``headline`` of each mR (``d_<col>``, ``d_<col>_low``/``_high`` at
    :data:`~fedrs.study.stats.CONFIDENCE`, ``d_<col>_pairs``), the mean final validation mR and
    training seconds, and the labels (refused when the results mix backbones or test sets)."""
    for key in ("backbone", "test_set", "dataset"):
        seen = {r.get(key) for r in results}
        if len(seen) > 1:
            raise PETLError(f"the row results mix {key}s {sorted(map(str, seen))}: one table per {key}")
    by_method: dict[str, dict[int, dict]] = {}
    for r in results:
        by_method.setdefault(r["method"], {})[int(r["seed"])] = r
    order = [m for m in PETL_ROWS if m in by_method] + sorted(m for m in by_method if m not in PETL_ROWS)
    reference = by_method.get(headline, {})
    summary = []
    for method in order:
        per_seed = by_method[method]
        seeds = sorted(per_seed)
        first = per_seed[seeds[0]]
        row: dict[str, Any] = {"method": method, "label": first.get("label", method),
                               "trainable_params": first["trainable_params"], "lr": first.get("lr"),
                               "lr_source": first.get("lr_source", ""), "epochs": first.get("epochs"),
                               "seeds": " ".join(map(str, seeds)), "n_seeds": len(seeds)}
        for col in RECALLS + MR_COLUMNS[1:] + ("final_val_mR", "train_s"):
            row[f"{col}_mean"], row[f"{col}_std"] = _mean_std([per_seed[s].get(col) for s in seeds])
        for col in MR_COLUMNS:
            d = paired_difference({s: per_seed[s][col] for s in seeds}, {s: r[col] for s, r in reference.items()})
            row.update({f"d_{col}": d.mean, f"d_{col}_low": d.low, f"d_{col}_high": d.high,
                        f"d_{col}_pairs": d.pairs})
        row.update({k: first.get(k, "") for k in ("backbone", "dataset", "test_set", "train_set", "note")})
        row["validation"] = re.sub(r", seed \d+", "", first.get("validation", ""))  # the seed varies with the row's
        row["max_steps"] = first.get("max_steps")
        summary.append(row)
    return summary


def _pm(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.2f} ± {std:.2f}" if math.isfinite(std) else f"{mean:.2f}"


def _interval(row: dict, col: str) -> str:
    if row[f"d_{col}_pairs"] == 0:
        return "n/a"
    if row[f"d_{col}_pairs"] == 1:
        return f"{row[f'd_{col}']:+.2f} (1 seed: no interval)"
    return f"{row[f'd_{col}']:+.2f} [{row[f'd_{col}_low']:+.2f}, {row[f'd_{col}_high']:+.2f}]"


def petl_markdown(summary: Sequence[dict], headline: str = HEADLINE) -> str:
    """The table of :func:`petl_summary` with its heading and notes."""
    first = summary[0]
    seeds = sorted({s for r in summary for s in r["seeds"].split()}, key=int)
    head = PETL_ROWS[headline].label if headline in PETL_ROWS else headline
    level = f"{CONFIDENCE:.0%}"
    header = ["method", "trainable params", "lr (source)", "I2T R@1/5/10", "T2I R@1/5/10", "mR",
              f"Δ mR vs {headline} [{level} CI]", "mR, papers' tie order", f"Δ [{level} CI], papers' order",
              "mR, optimistic ties", "val mR (final)", "train s", "seeds", "backbone", "protocol"]
    body = []
    for r in summary:
        validated = "validated" if str(r["lr_source"]).startswith("chosen on validation") else (
            "no training" if r["lr_source"] == "no training" else "not validated")
        recall = {d: "/".join(f"{r[f'{d}_r{k}_mean']:.2f}" for k in (1, 5, 10)) for d in ("i2t", "t2i")}
        proto = f"{r['test_set']}; trained on {r['train_set']} minus {r['validation']}"
        body.append([
            f"**{r['label']}**" if r["method"] == headline else r["label"] + (f" ({r['note']})" if r["note"] else ""),
            f"{r['trainable_params']:,}", f"{r['lr']:g} ({validated})" if r["lr"] else "-",
            recall["i2t"], recall["t2i"], _pm(r["mR_mean"], r["mR_std"]),
            "reference" if r["method"] == headline else _interval(r, "mR"),
            _pm(r["mR_argsort_mean"], r["mR_argsort_std"]),
            "reference" if r["method"] == headline else _interval(r, "mR_argsort"),
            _pm(r["mR_optimistic_mean"], r["mR_optimistic_std"]), _pm(r["final_val_mR_mean"], math.nan),
            f"{r['train_s_mean']:.0f}", r["seeds"], r["backbone"], proto])
    smoke = any(r.get("max_steps") for r in summary)
    title = (f"# PETL on {first['dataset']}: {first['test_set']}; backbone {first['backbone']}; "
             f"seeds {', '.join(seeds)}" + (" (SMOKE RUN: capped optimiser steps)" if smoke else ""))
    notes = f"""Headline: {head}. Every cell is the mean over the row's seeds (± the sample std, ddof 1);
Δ is the paired difference to the headline row seed by seed, mean and {level} t-interval over the seeds
both hold (fedrs.study.stats.paired_difference): an interval that excludes 0 separates the rows.

Recalls in percent on every test image and caption (image→text: an image's best-ranked caption).
Primary tie convention: {PRIMARY_TIES} (a non-relevant item scoring exactly as high as the relevant
one is ranked before it: a lower bound; a model that scores everything equally gets 0). Caption sets
repeat caption strings verbatim across images (equal strings, equal embeddings), so the convention
moves image→text recall: "papers' tie order" is the order of the evaluation scripts the RSITR papers
use (np.argsort of the scores, descending), the column to set beside published numbers;
"optimistic ties" is the upper bound.

Protocol: seed s chooses the validation split, {first['validation']} (held out of the training
images, never trained on), and seeds the initialisation, the batch order and the dropout of every row alike; each row
trains {first['epochs']} epochs with AdamW at its learning rate, and its final epoch is scored on test
(never the best epoch). "validated": the rate chosen on UCM-Captions' validation split
(fedrs.retrieval.config.LR_SOURCE); "not validated": an earlier default. Non-HMMC rows train with
the cross-modal term of the configured loss; repeated caption strings are masked from the negatives.
Regenerate: `fedrs retrieval petl-table <this folder>` (from the s<seed>/<row>.json files)."""
    if any(r["note"] for r in summary):
        notes += ("\n\nIn-domain backbone: it was pretrained on this caption set's training captions, so its "
                  "zero-shot row is not zero-shot, and the validation split (carved from the training images) "
                  "is not held out from the backbone either; the learning rates were chosen on UCM-Captions.")
    if first["dataset"] == "RSICD":
        notes += ("\n\nRSICD: only the test images present in the shipped AID copy are scored (the paper's test "
                  "set has 1,093), so these numbers are not those of published RSICD tables.")
    return "\n".join([title, "", markdown_table(header, body), "", notes]) + "\n"


def write_petl_table(folder: str | Path, headline: str = HEADLINE) -> tuple[Path, Path]:
    """``petl_table.csv`` (the summary, every column) and ``petl_table.md`` in ``folder``, from its
    row files alone. Returns their paths."""
    folder = Path(folder)
    summary = petl_summary(read_petl_rows(folder), headline)
    import pandas as pd

    csv = write_text_atomic(folder / TABLE_CSV, pd.DataFrame(summary).to_csv(index=False, float_format="%.4f"))
    md = write_text_atomic(folder / TABLE_MD, petl_markdown(summary, headline))
    return csv, md


__all__ = ["MR_COLUMNS", "RECALLS", "TABLE_CSV", "TABLE_MD", "PETLError", "PETLStudyConfig", "load_petl_config",
           "petl_markdown", "petl_summary", "read_petl_rows", "run_petl", "seed_folder", "write_petl_table"]
