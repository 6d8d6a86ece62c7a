"""Collecting run folders: one row per run, read from what the run wrote.

A run folder is whatever ``fedrs run`` / ``run_experiment`` / ``fedrs sweep`` wrote:
``params.yaml`` (the full, resolved configuration) and ``metrics.json`` (final metrics), plus,
when kept, ``rounds.csv`` (one row per round), ``clients.csv`` (one row per client and round) and
``split.json`` (the partition manifest). :func:`collect_runs` reads every run folder
under a results folder into one row per run (columns :data:`RUN_COLUMNS`, accuracies in percent),
sorted in the study's order (:mod:`fedrs.study.vocabulary`); :func:`load_rounds` stacks the
``rounds.csv`` of chosen runs for learning curves. The tables are built from these rows
(:mod:`fedrs.study.tables`).

A run's row is :func:`~fedrs.study.vocabulary.row_identity` of its ``params.yaml`` method
section, the function the params generator names its files with, and of its privacy settings: a
run trained with differential privacy has a row of its own (``fedrsclip-dp-central-z4``). Those
settings and the epsilon the run spent are read from the ``privacy`` entry of its
``metrics.json`` (the run's own record), ``params.yaml``'s ``privacy:`` section filling in a
setting the entry lacks (:func:`privacy_columns`); :func:`private_runs` tells DP runs apart,
which every table but the privacy table leaves out. Test-set sizes come from
``clients.csv`` (each client's test images at the last evaluation) and ``split.json`` (pooled
test images, distinct and exclusive client test images); older run folders without them keep
those columns empty, and everything else still reads.

A damaged run folder (metrics.json that is not strict JSON or holds a NaN, no or unreadable
params.yaml, an accuracy outside [0, 1]) is skipped with a warning naming the folder and the
problem, not tabled and not fatal: one bad folder must not stop the report of a whole study.
The skipped folders are listed in the returned frame's ``attrs["skipped"]``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from fedrs.data.partition import ADDED_DEFAULTS
from fedrs.errors import FedrsError
from fedrs.io import read_json_object, read_yaml_mapping
from fedrs.methods import has_global_model
from fedrs.study.vocabulary import (
    ABLATION_VARIANTS,
    DATASET_ORDER,
    METHODS,
    ROW_ORDER,
    SWITCH_KEYS,
    row_identity,
)

logger = logging.getLogger(__name__)

#: columns of :func:`collect_runs`, in order. ``row`` is the run's row key, ``label`` its name in
#: tables; ``base``/``ablation``/``sensitivity``/``privacy`` its parts (:class:`~fedrs.study.vocabulary.RowIdentity`,
#: tags joined by ``+``; ``privacy`` the DP tag, empty without DP); ``variant`` its constraint-ablation
#: label (FedRSCLIP at the study defaults, without DP, only). ``participation`` is the fraction of
#: clients sampled a round. Differential privacy (:data:`PRIVACY_COLUMNS`): ``dp_mode`` (``none``,
#: ``central``, ``local``), ``noise_multiplier`` z (0 without DP), ``clip_norm`` C (L2) and ``delta``
#: (NaN without DP), ``epsilon`` spent after the last round (inf without DP; NaN for a DP run whose
#: metrics.json does not record it). Test sets:
#: ``personalised_correct/total`` summed over clients at the last evaluation, ``global_correct/total``
#: on the pooled test set, ``test_distinct`` distinct client test images, ``test_exclusive`` each
#: client's test images held by no other client (space-separated). ``config`` is the run's
#: configuration as canonical JSON (without its name and device), to tell runs apart.
RUN_COLUMNS = [
    "backbone", "dataset", "split", "clients", "participation", "rounds", "row", "label", "method", "base",
    "ablation", "sensitivity", "privacy", "variant", "prompt_length", "seed", "personalised_acc",
    "personalised_acc_unweighted", "personalised_acc_balanced", "global_acc", "unseen_client_global_acc",
    "novel_personalised_acc", "novel_global_acc", "hm_personalised", "hm_global", "personalised_correct",
    "personalised_total", "global_correct", "global_total", "test_distinct", "test_exclusive", "upload_values",
    "upload_bytes", "dp_mode", "noise_multiplier", "clip_norm", "delta", "epsilon", "wall_s", "study", "run",
    "config",
]
#: the differential-privacy columns of :data:`RUN_COLUMNS` (:func:`privacy_columns`)
PRIVACY_COLUMNS = ["dp_mode", "noise_multiplier", "clip_norm", "delta", "epsilon"]
#: the privacy settings :func:`privacy_columns` reads (besides the mode and epsilon)
_PRIVACY_SETTINGS = ("noise_multiplier", "clip_norm", "delta")
#: what identifies one setting (every row of a setting and seed shares the split and initialisation)
SETTING = ["backbone", "dataset", "split", "clients", "participation", "rounds"]
#: what a split label adds for a run scored on a validation split (data.holdout: validation)
VALIDATION_LABEL = "validation holdout"
#: integer columns (nullable)
INT_COLUMNS = ("clients", "rounds", "seed", "prompt_length", "personalised_correct", "personalised_total",
               "global_correct", "global_total", "test_distinct", "upload_values", "upload_bytes")

# Where each run column is found: metrics.json first, then params.yaml. A name matches a dotted
# key exactly or by its last component(s), so `seed` finds `seed` and `train.seed` alike.
_FIELDS: dict[str, tuple[str, ...]] = {
    "backbone": ("backbone",),
    "dataset": ("dataset", "data.dataset"),
    "clients": ("num_clients", "data.num_clients"),
    "rounds": ("rounds", "train.rounds"),
    "participation": ("train.sample_fraction",),
    "method": ("method", "method.name"),
    "seed": ("seed", "train.seed"),  # the training seed (metrics.json "seed" is train.seed)
    "personalised_acc": ("personalised_accuracy",),
    "personalised_acc_unweighted": ("personalised_accuracy_unweighted",),
    # mean over clients of the per-class recall on each client's test split (absent before it existed: NaN)
    "personalised_acc_balanced": ("personalised_accuracy_balanced",),
    "global_acc": ("global_accuracy",),
    # the global model on the test splits of clients that never trained (data.unseen_clients; else NaN)
    "unseen_client_global_acc": ("unseen_client_global_accuracy",),
    # base-to-novel (data.class_split): the novel classes with novel names only, and the harmonic
    # means 2BN/(B+N) with the base accuracies (personalised_acc, global_acc are the base ones there)
    "novel_personalised_acc": ("novel_personalised_accuracy",),
    "novel_global_acc": ("novel_global_accuracy",),
    "hm_personalised": ("harmonic_mean_personalised",),
    "hm_global": ("harmonic_mean_global",),
    "upload_values": ("upload_values_per_client_round",),
    "upload_bytes": ("upload_bytes_per_client_round",),
    "wall_s": ("wall_time_s",),
    "prompt_length": ("method.n_ctx",),
}
#: run folders store accuracies as fractions (correct / total); tables and figures show percent
ACCURACY_COLUMNS = ("personalised_acc", "personalised_acc_unweighted", "personalised_acc_balanced", "global_acc",
                    "unseen_client_global_acc", "novel_personalised_acc", "novel_global_acc", "hm_personalised",
                    "hm_global")


class ReportError(FedrsError):
    """A results folder that cannot be turned into tables."""


# --- reading run folders --------------------------------------------------------------------------

def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    out: dict[str, Any] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, Mapping) and value:
                out.update(flatten(value, name))
            else:
                out[name] = value
    elif prefix:
        out[prefix] = data
    return out


def lookup(flat: Mapping[str, Any], names: Sequence[str], default: Any = None) -> Any:
    """The first of ``names`` found in ``flat``, exactly or as the dotted suffix of a key."""
    for name in names:
        if name in flat and flat[name] is not None:
            return flat[name]
    for name in names:
        suffix = "." + name
        for key in sorted(flat):
            if key.endswith(suffix) and flat[key] is not None:
                return flat[key]
    return default


def method_switches(params: Mapping[str, Any]) -> dict[str, Any]:
    """The ablation switches (:data:`~fedrs.study.vocabulary.SWITCH_KEYS`) of a flattened
    configuration's ``method`` section; ``None`` for those it does not set (the baselines). Only
    for a configuration without a method mapping: rows come from the whole section."""
    return {key: lookup(params, (f"method.{key}",)) for key in SWITCH_KEYS}


def split_label(value: Any) -> str:
    """A short readable heterogeneity label from a split name or a partition mapping.

    ``{"scheme": "dirichlet", "alpha": 0.5}`` -> ``Dir(0.5)``; ``iid`` -> ``IID``;
    ``pathological`` with ``classes_per_client: 2`` -> ``Path(2 cls)``; few-shot K adds ``, K-shot``;
    client test splits drawn from a shared pool (``test_scheme: shared_pool``) add ``, shared-pool tests``;
    ``unseen_clients: U`` adds ``, +U unseen clients`` (another setting: the training clients differ);
    ``class_split: base-to-novel`` adds ``, base-to-novel``; ``holdout: validation`` adds
    ``, validation holdout`` (accuracies on a validation split of the training images, never
    tabled with test accuracies).
    """
    if value is None:
        return "-"
    if not isinstance(value, Mapping):
        return str(value)
    flat = flatten(value)
    scheme = str(lookup(flat, ("scheme", "kind", "type")) or "split")
    if scheme.lower() == "dirichlet":
        label = f"Dir({_num(lookup(flat, ('alpha',)))})"
    elif scheme.lower() == "iid":
        label = "IID"
    elif scheme.lower() == "pathological":
        label = f"Path({_num(lookup(flat, ('classes_per_client',)))} cls)"
    else:
        label = scheme
    shots = lookup(flat, ("few_shot",))
    shared = lookup(flat, ("test_scheme",)) == "shared_pool"
    unseen = lookup(flat, ("unseen_clients",))
    classes = lookup(flat, ("class_split",))
    validation = lookup(flat, ("holdout",)) == "validation"
    return (label + (f", {shots}-shot" if shots else "") + (", shared-pool tests" if shared else "")
            + (f", +{unseen} unseen clients" if unseen else "")
            + (f", {classes}" if classes not in (None, "all") else "")
            + (f", {VALIDATION_LABEL}" if validation else ""))


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _read_yaml(path: Path) -> dict:
    return read_yaml_mapping(path, ReportError)


def _read_json(path: Path) -> dict:
    return read_json_object(path, ReportError)


def privacy_columns(recorded: Any, configured: Any) -> dict[str, Any]:
    """A run's :data:`PRIVACY_COLUMNS` from the ``privacy`` entry of its metrics.json
    (``recorded``: what the run spent, written by it after its last round) and the ``privacy:``
    section of its params.yaml (``configured``: the settings where the entry lacks one; epsilon
    only ever from the record). Either may be missing (older run folders: no DP)."""
    recorded = recorded if isinstance(recorded, Mapping) else {}
    settings = {**(configured if isinstance(configured, Mapping) else {}), **recorded}
    mode = str(settings.get("mode") or "none")
    if mode == "none":
        return {"dp_mode": "none", "noise_multiplier": 0.0, "clip_norm": math.nan, "delta": math.nan,
                "epsilon": math.inf}
    epsilon = recorded.get("epsilon")
    return {"dp_mode": mode, **{k: _float_or_nan(settings.get(k)) for k in _PRIVACY_SETTINGS},
            "epsilon": math.nan if epsilon is None else _float_or_nan(epsilon)}


def private_runs(runs: pd.DataFrame) -> pd.Series:
    """True for each run (of :func:`collect_runs`) trained with differential privacy."""
    if runs.empty or "dp_mode" not in runs:
        return pd.Series(False, index=runs.index, dtype=bool)
    return runs["dp_mode"].fillna("none").astype(str) != "none"


def find_run_dirs(results_dir: str | Path) -> list[Path]:
    """Every folder under ``results_dir`` holding a ``metrics.json`` (sorted)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ReportError(f"no results folder {root}: run a study first (`fedrs sweep params/studies/...`)")
    return sorted(p.parent for p in root.rglob("metrics.json") if ".ipynb_checkpoints" not in p.parts)


def read_run(run_dir: str | Path, results_dir: str | Path | None = None) -> dict[str, Any]:
    """One row (see :data:`RUN_COLUMNS`) from a run folder's ``metrics.json`` and ``params.yaml``
    (and ``clients.csv`` / ``split.json`` where present)."""
    run_dir = Path(run_dir)
    raw_metrics = _read_json(run_dir / "metrics.json")
    metrics = flatten(raw_metrics)
    if not (run_dir / "params.yaml").is_file():
        raise ReportError(f"{run_dir}: metrics.json without params.yaml: the tables need the run's "
                          "configuration (its method section names its row); keep params.yaml with metrics.json")
    raw_params = _read_yaml(run_dir / "params.yaml")
    params = flatten(raw_params)
    row: dict[str, Any] = {"split": None}
    for column, names in _FIELDS.items():
        value = lookup(metrics, names)
        row[column] = lookup(params, names) if value is None else value
    row["split"] = split_label(next(
        (v for v in (_section(metrics, "partition"), _section(params, "data"), metrics.get("split")) if v), None))
    section = raw_params.get("method") if isinstance(raw_params.get("method"), Mapping) else \
        {"name": row["method"], **{k: v for k, v in method_switches(params).items() if v is not None}}
    row.update(privacy_columns(raw_metrics.get("privacy"), raw_params.get("privacy")))
    identity = row_identity(section, {"mode": row["dp_mode"], "noise_multiplier": row["noise_multiplier"]})
    row.update(row=identity.key, label=identity.label, base=identity.base, ablation="+".join(identity.ablation),
               sensitivity="+".join(identity.sensitivity), privacy=identity.privacy, variant=identity.variant)
    for column in INT_COLUMNS:
        row[column] = _int_or_none(row.get(column))
    row["participation"] = _float_or_nan(row["participation"]) if row["participation"] is not None else 1.0
    row["wall_s"] = _float_or_nan(row["wall_s"])
    for column in ACCURACY_COLUMNS:
        value = _float_or_nan(row[column])
        if not 0.0 <= value <= 1.0 and not math.isnan(value):  # NaN: not recorded
            raise ReportError(f"{run_dir / 'metrics.json'}: {column} = {value} is not a fraction in [0, 1] "
                              "as run folders store accuracies; fix the run writer or re-run it")
        row[column] = 100.0 * value
    if not has_global_model(str(row["method"])):
        row["global_acc"] = float("nan")  # the server's prompt never trained: not a global model
        for column in ("unseen_client_global_acc", "novel_global_acc", "hm_global"):
            row[column] = float("nan")
    row.update(test_counts(run_dir, row, metrics))
    rel = run_dir.relative_to(results_dir) if results_dir is not None else Path(run_dir.name)
    row["run"] = rel.name
    row["study"] = rel.parent.as_posix() if rel.parent != Path(".") else ""
    for column in ("backbone", "dataset", "method"):
        row[column] = "-" if row[column] is None else str(row[column])
    row["config"] = run_config_id(raw_params)
    return {c: row.get(c) for c in RUN_COLUMNS}


def run_config_id(params: Mapping[str, Any]) -> str:
    """A run's configuration as canonical JSON, without what does not change its numbers'
    meaning (its name, the device it ran on)."""
    clean = {k: v for k, v in params.items() if k != "name"}
    if isinstance(clean.get("data"), Mapping):  # a data field added later, at its default: as if absent
        clean["data"] = {k: v for k, v in clean["data"].items()
                         if k not in ADDED_DEFAULTS or v != ADDED_DEFAULTS[k]}
    if isinstance(clean.get("backbone"), Mapping):
        clean["backbone"] = {k: v for k, v in clean["backbone"].items() if k != "device"}
    return json.dumps(clean, sort_keys=True, default=str)


def test_counts(run_dir: Path, row: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Test-set sizes of a run: correct and total test images behind its personalised accuracy
    (``clients.csv`` at the last evaluation, else ``split.json``'s client test sizes) and its
    global accuracy (``split.json``'s pooled test set), distinct and exclusive client test images.
    Counts a run folder does not hold stay None."""
    out: dict[str, Any] = {k: None for k in ("personalised_correct", "personalised_total", "global_correct",
                                              "global_total", "test_distinct", "test_exclusive")}
    summary = _split_summary(run_dir / "split.json")
    clients = _last_client_counts(run_dir / "clients.csv", metrics.get("final_round"))
    personalised = row["personalised_acc"] / 100
    if clients is not None:
        out["personalised_correct"], out["personalised_total"] = clients
    elif summary.get("test_samples_per_client") and math.isfinite(personalised):
        total = int(sum(summary["test_samples_per_client"]))
        out["personalised_correct"], out["personalised_total"] = int(round(personalised * total)), total
    global_ = row["global_acc"] / 100
    if summary.get("num_test") and math.isfinite(global_):
        total = int(summary["num_test"])
        out["global_correct"], out["global_total"] = int(round(global_ * total)), total
    if summary.get("distinct_test_samples") is not None:
        out["test_distinct"] = int(summary["distinct_test_samples"])
    if summary.get("exclusive_test_samples_per_client") is not None:
        out["test_exclusive"] = " ".join(str(int(n)) for n in summary["exclusive_test_samples_per_client"])
    return out


def _split_summary(path: Path) -> dict[str, Any]:
    """``split.json``'s summary; empty (with a warning) when missing or unreadable: the test-set
    counts are extra, the run's accuracies stand without them."""
    if not path.is_file():
        return {}
    try:
        data = _read_json(path)
    except (ReportError, OSError) as exc:
        logger.warning("no test-set counts from %s: %s", path, exc)
        return {}
    summary = data.get("summary")
    return summary if isinstance(summary, dict) else {}


def _last_client_counts(path: Path, final_round: Any) -> tuple[int, int] | None:
    """``(correct, total)`` summed over clients at ``final_round`` (else the last evaluated round)
    of a ``clients.csv``; None without one or without test sizes."""
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        logger.warning("no per-client test counts from %s: %s", path, exc)
        return None
    if not {"round", "personalised_acc", "test_examples"} <= set(frame.columns):
        return None
    evaluated = frame.dropna(subset=["personalised_acc", "test_examples"])
    if evaluated.empty:
        return None
    last = int(final_round) if final_round is not None and int(final_round) in set(evaluated["round"]) \
        else int(evaluated["round"].max())
    rows = evaluated[evaluated["round"] == last]
    totals = rows["test_examples"].astype(int)
    correct = (rows["personalised_acc"].astype(float) * totals).round().astype(int)
    return int(correct.sum()), int(totals.sum())


def _section(flat: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) + 1:]: v for k, v in flat.items() if k.startswith(prefix + ".")}


def _int_or_none(v: Any) -> int | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) else None


def _float_or_nan(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def collect_runs(results_dir: str | Path, missing_ok: bool = False) -> pd.DataFrame:
    """One row per run folder under ``results_dir`` (columns :data:`RUN_COLUMNS`), sorted;
    ``missing_ok``: no rows (instead of an error) when the folder does not exist."""
    root = Path(results_dir)
    return read_runs([] if missing_ok and not root.is_dir() else find_run_dirs(root), root)


def read_runs(run_dirs: Sequence[str | Path], results_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per readable run folder given (columns :data:`RUN_COLUMNS`), sorted in the study's
    order; ``study`` and ``run`` name each folder relative to ``results_dir``. A damaged folder is
    skipped with a warning; ``attrs["skipped"]`` lists ``(folder, problem)`` of each."""
    rows, skipped = [], []
    for run_dir in run_dirs:
        try:
            rows.append(read_run(run_dir, results_dir))
        except (ReportError, OSError) as exc:
            problem = str(exc) if isinstance(exc, ReportError) else f"{exc.strerror or exc} ({exc.filename})"
            skipped.append((str(run_dir), problem))
            logger.warning("skipped a damaged run folder: %s", problem)  # the problem names the folder
    df = pd.DataFrame(rows, columns=RUN_COLUMNS)
    for column in INT_COLUMNS:
        df[column] = df[column].astype("Int64")
    df["participation"] = df["participation"].astype(float)
    for column in PRIVACY_COLUMNS[1:]:
        df[column] = df[column].astype(float)
    df = sort_rows(df, SETTING + ["row", "seed", "study", "run"])
    if skipped and df.empty:
        where = f" under {results_dir}" if results_dir is not None else ""
        raise ReportError(f"every run folder{where} is damaged ({len(skipped)} skipped, see the notes above): "
                          f"re-run those runs or delete their folders")
    df.attrs["skipped"] = skipped
    return df


def load_rounds(results_dir: str | Path, runs: pd.DataFrame) -> pd.DataFrame:
    """The ``rounds.csv`` of the given runs stacked, keyed by the runs' columns (empty if none)."""
    frames = []
    for _, run in runs.iterrows():
        path = Path(results_dir) / run["study"] / run["run"] / "rounds.csv"
        if path.is_file():
            frame = pd.read_csv(path)
            for column in SETTING + ["row", "label", "method", "variant", "prompt_length", "seed"]:
                frame[column] = run[column]
            if "global_acc" in frame and not has_global_model(str(run["method"])):
                frame["global_acc"] = float("nan")
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --- ordering ---------------------------------------------------------------------------------

def _order_key(column: str, value: Any) -> tuple:
    """Sort key of one cell: datasets, methods and variants in the study's order, others by value."""
    if column == "dataset" and value in DATASET_ORDER:
        return (0, DATASET_ORDER.index(value))
    if column == "dataset":
        return (1, str(value))
    if column in ("method", "variant", "row"):
        known = {"method": METHODS, "variant": ABLATION_VARIANTS, "row": ROW_ORDER}[column]
        return (known.index(value), "") if value in known else (len(known), str(value))
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return (1, "")
    if isinstance(value, (int, float)):
        return (0, float(value))
    return (0, str(value))


def sort_rows(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``df`` sorted by ``columns`` in the study's order (stable; a fresh index)."""
    if df.empty:
        return df.reset_index(drop=True)
    keys = [tuple(_order_key(c, row[c]) for c in columns) for _, row in df.iterrows()]
    order = sorted(range(len(df)), key=lambda i: keys[i])
    return df.iloc[order].reset_index(drop=True)



__all__ = [
    "ACCURACY_COLUMNS", "INT_COLUMNS", "PRIVACY_COLUMNS", "RUN_COLUMNS", "SETTING", "ReportError", "collect_runs",
    "find_run_dirs", "flatten", "load_rounds", "lookup", "method_switches", "private_runs", "privacy_columns",
    "read_run", "read_runs", "run_config_id", "sort_rows", "split_label", "test_counts", "VALIDATION_LABEL",
]
