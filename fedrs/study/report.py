"""The study's tables and figures, derived only from run folders.

A run folder is whatever ``fedrs run`` / ``run_experiment`` / ``fedrs sweep`` wrote:
``params.yaml`` (the full, resolved configuration) and ``metrics.json`` (final metrics), plus
``rounds.csv`` (one row per round) when it was kept. :func:`collect_runs` reads every run folder
under a results folder into one row per run; the table builders group those rows by what was
varied (method, ablation variant, prompt length) and by the setting (backbone, dataset,
heterogeneity split, clients, rounds), and report mean +- sample standard deviation over seeds.

``fedrs report RESULTS_DIR`` and the ``03_ablations`` notebook both call :func:`write_report`:

* ``tables/methods.{csv,md}``        methods x datasets x heterogeneity (personalised, global)
* ``tables/constraints.{csv,md}``    the alignment-constraint ablation (FedRSCLIP variants)
* ``tables/prompt_length.{csv,md}``  prompt length 4/8/16 against uploaded values
* ``tables/communication.{csv,md}``  accuracy against values/bytes uploaded per client
* ``figures/<table>.{png,pdf}``      one figure per table (+ ``learning_curves`` from rounds.csv)

Output is deterministic: rows sorted by fixed orders, floats printed with two decimals, figures
written without timestamps, so regenerated files equal committed ones byte for byte.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import yaml

from fedrs.errors import FedrsError
from fedrs.io import atomic_path, write_text_atomic
from fedrs.methods import has_global_model

# --- vocabulary ----------------------------------------------------------------------------------

#: method registry name -> readable label, in table order (unknown methods follow, sorted)
METHOD_LABELS: dict[str, str] = {
    "zeroshot": "Zero-shot CLIP",
    "local": "Local-only",
    "promptfl": "PromptFL",
    "fedpgp": "FedPGP-style",
    "fedotp": "FedOTP-style",
    "fedrsclip": "FedRSCLIP",
    "centralised": "Centralised",
}
#: the method whose variants make the constraint ablation and the prompt-length study
MAIN_METHOD = "fedrsclip"
#: the alignment-constraint ablation, in table order
ABLATION_VARIANTS = (
    "full", "w/o DPA", "w/o CMA", "w/o DPA & CMA", "w/o private prompts", "w/o visual prompts",
)
#: the method-config switches of each ablation variant (params/make_studies.py writes them;
#: :func:`variant_of` reads them back from a run's params.yaml)
ABLATION_SWITCHES: dict[str, dict[str, Any]] = {
    "full": {},
    "w/o DPA": {"lambda_dpa": 0.0},
    "w/o CMA": {"lambda_cma": 0.0},
    "w/o DPA & CMA": {"lambda_dpa": 0.0, "lambda_cma": 0.0},
    "w/o private prompts": {"private_prompts": False},
    "w/o visual prompts": {"visual_prompts": False},
}
#: the specification's default prompt length (context tokens per text prompt)
DEFAULT_PROMPT_LENGTH = 4
PROMPT_LENGTHS = (4, 8, 16)

#: columns of :func:`collect_runs`, in order
RUN_COLUMNS = [
    "backbone", "dataset", "split", "clients", "rounds", "method", "variant", "prompt_length",
    "seed", "personalised_acc", "personalised_acc_unweighted", "global_acc", "upload_values",
    "upload_bytes", "wall_s", "study", "run",
]
#: what identifies one configuration apart from its seed
SETTING = ["backbone", "dataset", "split", "clients", "rounds"]
ACCURACIES = {"personalised_acc": "personalised", "global_acc": "global"}

# Where each run column is found: metrics.json first, then params.yaml. A name matches a dotted
# key exactly or by its last component(s), so `seed` finds `seed` and `train.seed` alike.
_FIELDS: dict[str, tuple[str, ...]] = {
    "backbone": ("backbone",),
    "dataset": ("dataset", "data.dataset"),
    "clients": ("num_clients", "data.num_clients"),
    "rounds": ("rounds", "train.rounds"),
    "method": ("method", "method.name"),
    "seed": ("seed", "train.seed"),  # the training seed (metrics.json "seed" is train.seed)
    "personalised_acc": ("personalised_accuracy",),
    "personalised_acc_unweighted": ("personalised_accuracy_unweighted",),
    "global_acc": ("global_accuracy",),
    "upload_values": ("upload_values_per_client_round",),
    "upload_bytes": ("upload_bytes_per_client_round",),
    "wall_s": ("wall_time_s",),
    "prompt_length": ("method.n_ctx",),
}
#: run folders store accuracies as fractions (correct / total); tables and figures show percent
ACCURACY_COLUMNS = ("personalised_acc", "personalised_acc_unweighted", "global_acc")


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


def variant_of(params: Mapping[str, Any]) -> str:
    """The constraint-ablation variant a (flattened) configuration belongs to.

    Reads the method's switches: ``lambda_dpa``/``lambda_cma`` equal to 0, ``private_prompts`` or
    ``visual_prompts`` false. Methods without those switches (the baselines) are ``full``.
    """
    off = []
    dpa, cma = lookup(params, ("method.lambda_dpa",)), lookup(params, ("method.lambda_cma",))
    if dpa is not None and float(dpa) == 0 and cma is not None and float(cma) == 0:
        off.append("DPA & CMA")
    elif dpa is not None and float(dpa) == 0:
        off.append("DPA")
    elif cma is not None and float(cma) == 0:
        off.append("CMA")
    if lookup(params, ("method.private_prompts",)) is False:
        off.append("private prompts")
    if lookup(params, ("method.visual_prompts",)) is False:
        off.append("visual prompts")
    return "w/o " + ", ".join(off) if off else "full"


def split_label(value: Any) -> str:
    """A short readable heterogeneity label from a split name or a partition mapping.

    ``{"scheme": "dirichlet", "alpha": 0.5}`` -> ``Dir(0.5)``; ``iid`` -> ``IID``;
    ``pathological`` with ``classes_per_client: 2`` -> ``Path(2 cls)``; few-shot K adds ``, K-shot``.
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
    return label + (f", {shots}-shot" if shots else "")


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _read_yaml(path: Path) -> dict:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc}); re-run that run or delete its folder") from exc
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object; re-run that run or delete its folder")
    return data


def find_run_dirs(results_dir: str | Path) -> list[Path]:
    """Every folder under ``results_dir`` holding a ``metrics.json`` (sorted)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ReportError(f"no results folder {root}: run a study first (`fedrs sweep params/studies/...`)")
    return sorted(p.parent for p in root.rglob("metrics.json") if ".ipynb_checkpoints" not in p.parts)


def read_run(run_dir: str | Path, results_dir: str | Path | None = None) -> dict[str, Any]:
    """One row (see :data:`RUN_COLUMNS`) from a run folder's ``metrics.json`` and ``params.yaml``."""
    run_dir = Path(run_dir)
    metrics = flatten(_read_json(run_dir / "metrics.json"))
    if not (run_dir / "params.yaml").is_file():
        raise ReportError(f"{run_dir}: metrics.json without params.yaml: the tables need the run's "
                          "configuration (method switches, prompt length); keep params.yaml with metrics.json")
    params = flatten(_read_yaml(run_dir / "params.yaml"))
    both = {**params, **metrics}
    row: dict[str, Any] = {"split": None}
    for column, names in _FIELDS.items():
        value = lookup(metrics, names)
        row[column] = lookup(params, names) if value is None else value
    row["split"] = split_label(next(
        (v for v in (_section(metrics, "partition"), _section(params, "data"), metrics.get("split")) if v), None))
    row["variant"] = variant_of(both)
    for column in ("clients", "rounds", "seed", "prompt_length", "upload_values", "upload_bytes"):
        row[column] = _int_or_none(row[column])
    row["wall_s"] = _float_or_nan(row["wall_s"])
    for column in ACCURACY_COLUMNS:
        value = _float_or_nan(row[column])
        if value > 1.0:
            raise ReportError(f"{run_dir / 'metrics.json'}: {column} = {value} is not a fraction in [0, 1] "
                              "as run folders store accuracies; fix the run writer or re-run it")
        row[column] = 100.0 * value
    if not has_global_model(str(row["method"])):
        row["global_acc"] = float("nan")  # the server's prompt never trained: not a global model
    rel = run_dir.relative_to(results_dir) if results_dir is not None else Path(run_dir.name)
    row["run"] = rel.name
    row["study"] = rel.parent.as_posix() if rel.parent != Path(".") else ""
    for column in ("backbone", "dataset", "method"):
        row[column] = "-" if row[column] is None else str(row[column])
    return {c: row.get(c) for c in RUN_COLUMNS}


NOT_APPLICABLE = "n/a"


def _accuracy_cell(value: str, method: Any, mean: float, std: float) -> str:
    """``mean ± std``, or n/a for the global accuracy of a method without a global model."""
    if value == "global_acc" and method is not None and not has_global_model(str(method)):
        return NOT_APPLICABLE
    return fmt_mean_std(mean, std)


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
    dirs = [] if missing_ok and not root.is_dir() else find_run_dirs(root)
    rows = [read_run(d, root) for d in dirs]
    df = pd.DataFrame(rows, columns=RUN_COLUMNS)
    for column in ("clients", "rounds", "seed", "prompt_length", "upload_values", "upload_bytes"):
        df[column] = df[column].astype("Int64")
    return _sorted(df, SETTING + ["method", "variant", "prompt_length", "seed", "study", "run"])


def load_rounds(results_dir: str | Path, runs: pd.DataFrame) -> pd.DataFrame:
    """The ``rounds.csv`` of the given runs stacked, keyed by the runs' columns (empty if none)."""
    frames = []
    for _, run in runs.iterrows():
        path = Path(results_dir) / run["study"] / run["run"] / "rounds.csv"
        if path.is_file():
            frame = pd.read_csv(path)
            for column in SETTING + ["method", "variant", "prompt_length", "seed"]:
                frame[column] = run[column]
            if "global_acc" in frame and not has_global_model(str(run["method"])):
                frame["global_acc"] = float("nan")
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --- ordering ---------------------------------------------------------------------------------

def method_label(name: str) -> str:
    return METHOD_LABELS.get(name, name)


#: datasets in the order of the offline study (others follow, sorted)
DATASET_ORDER = ("UCMerced", "RSSCN7", "EuroSAT", "AID-holdout", "OPTIMAL-31", "NWPU-RESISC45")


def _order(column: str, value: Any) -> tuple:
    if column == "dataset" and value in DATASET_ORDER:
        return (0, DATASET_ORDER.index(value))
    if column == "dataset":
        return (1, str(value))
    if column == "method":
        keys = list(METHOD_LABELS)
        return (keys.index(value), "") if value in keys else (len(keys), str(value))
    if column == "variant":
        return (ABLATION_VARIANTS.index(value), "") if value in ABLATION_VARIANTS else (len(ABLATION_VARIANTS), str(value))
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return (1, "")
    if isinstance(value, (int, float)):
        return (0, float(value))
    return (0, str(value))


def _sorted(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    if df.empty:
        return df.reset_index(drop=True)
    keys = [tuple(_order(c, row[c]) for c in columns) for _, row in df.iterrows()]
    order = sorted(range(len(df)), key=lambda i: keys[i])
    return df.iloc[order].reset_index(drop=True)


# --- aggregation ------------------------------------------------------------------------------

def dedupe(runs: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """One run per (configuration, seed): the same run kept in two studies counts once."""
    return runs.drop_duplicates(subset=list(by) + ["seed"], keep="first")


def summarise(runs: pd.DataFrame, by: Sequence[str],
              values: Sequence[str] = ("personalised_acc", "global_acc")) -> pd.DataFrame:
    """Mean and sample standard deviation (ddof 1) over seeds of ``values``, per ``by`` group."""
    columns = list(by) + ["seeds"] + [f"{v}_{s}" for v in values for s in ("mean", "std")]
    extra = ["upload_values", "upload_bytes"]
    if runs.empty:
        return pd.DataFrame(columns=columns + extra)
    runs = dedupe(runs, by)
    rows = []
    for key, group in runs.groupby(list(by), dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row["seeds"] = int(group["seed"].notna().sum()) or len(group)
        for v in values:
            col = group[v].astype(float).dropna()
            row[f"{v}_mean"] = float(col.mean()) if len(col) else float("nan")
            row[f"{v}_std"] = float(col.std(ddof=1)) if len(col) > 1 else float("nan")
        for v in extra:
            col = group[v].dropna()
            row[v] = int(col.iloc[0]) if len(col) else None
        rows.append(row)
    out = pd.DataFrame(rows, columns=columns + extra)
    for v in extra:
        out[v] = out[v].astype("Int64")
    return _sorted(out, by)


def fmt_mean_std(mean: float, std: float, digits: int = 2) -> str:
    """``71.23 ± 1.05``; the mean alone for a single seed; ``-`` when missing."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


# --- the study's tables -----------------------------------------------------------------------

@dataclass
class Table:
    """One study table: its data (``frame``, written as CSV) and a readable Markdown view."""

    name: str
    title: str
    frame: pd.DataFrame
    caption: str = ""
    markdown_sections: list[tuple[str, pd.DataFrame]] = field(default_factory=list)

    def to_markdown(self) -> str:
        parts = [f"# {self.title}\n"]
        if self.caption:
            parts.append(self.caption + "\n")
        for heading, frame in self.markdown_sections:
            if heading:
                parts.append(f"## {heading}\n")
            parts.append(frame.to_markdown(index=False, disable_numparse=True) + "\n")
        return "\n".join(parts)

    def to_csv(self) -> str:
        return self.frame.to_csv(index=False, float_format="%.2f", lineterminator="\n")


def _is_default_length(s: pd.Series) -> pd.Series:
    return s.isna() | (s == DEFAULT_PROMPT_LENGTH)


def _setting_label(row: Mapping[str, Any], with_size: bool) -> str:
    label = f"{row['dataset']} · {row['split']}"
    if with_size:
        label += f" · {_na(row['clients'])} clients · {_na(row['rounds'])} rounds"
    return label


def _na(v: Any) -> str:
    return "?" if v is None or v is pd.NA else str(v)


def _size_note(frame: pd.DataFrame) -> tuple[bool, str]:
    """Whether clients/rounds vary within a backbone section; otherwise a note naming them."""
    sizes = frame[["clients", "rounds"]].drop_duplicates()
    if len(sizes) == 1:
        c, r = sizes.iloc[0]
        return False, f"{_na(c)} clients, {_na(r)} rounds"
    return True, ""


def _pivot(summary: pd.DataFrame, row_key: str, row_label, value: str) -> list[tuple[str, pd.DataFrame]]:
    """Markdown sections (one per backbone): rows ``row_key``, columns the settings."""
    sections = []
    for backbone, part in summary.groupby("backbone", sort=True):
        with_size, note = _size_note(part)
        columns: list[str] = []
        cells: dict[tuple[str, str], str] = {}
        rows: list[str] = []
        for _, r in part.iterrows():
            col = _setting_label(r, with_size)
            label = row_label(r[row_key])
            if col not in columns:
                columns.append(col)
            if label not in rows:
                rows.append(label)
            n = f" (n={r['seeds']})" if r["seeds"] != _modal_seeds(part) else ""
            cell = _accuracy_cell(value, r.get("method"), r[f"{value}_mean"], r[f"{value}_std"])
            cells[(label, col)] = cell if cell == NOT_APPLICABLE else cell + n
        table = pd.DataFrame(
            [[label] + [cells.get((label, c), "-") for c in columns] for label in rows],
            columns=[row_key.replace("_", " ").capitalize()] + columns,
        )
        heading = f"backbone `{backbone}`" + (f" · {note}" if note else "")
        sections.append((heading, table))
    return sections


def _modal_seeds(part: pd.DataFrame) -> int:
    counts = part["seeds"].value_counts()
    return int(sorted(counts.index, key=lambda n: (-counts[n], n))[0])


def _accuracy_sections(summary: pd.DataFrame, row_key: str, row_label) -> list[tuple[str, pd.DataFrame]]:
    """Pivot sections for personalised, then global accuracy (one per backbone each)."""
    return [(f"{name.capitalize()} accuracy · {heading}", frame)
            for value, name in ACCURACIES.items()
            for heading, frame in _pivot(summary, row_key, row_label, value)]


def _detail_sections(summary: pd.DataFrame, columns) -> list[tuple[str, pd.DataFrame]]:
    """One section per backbone: ``Setting``, then ``columns(part)`` (a dict of columns), then the
    two accuracies as mean ± std."""
    sections = []
    for backbone, part in summary.groupby("backbone", sort=True):
        with_size, note = _size_note(part)
        frame = pd.DataFrame({
            "Setting": [_setting_label(r, with_size) for _, r in part.iterrows()],
            **columns(part),
            **{f"{name.capitalize()} (%)": [_accuracy_cell(v, r.get("method"), r[f"{v}_mean"], r[f"{v}_std"])
                                            for _, r in part.iterrows()]
               for v, name in ACCURACIES.items()},
        })
        sections.append((f"backbone `{backbone}`" + (f" · {note}" if note else ""), frame))
    return sections


def _caption(what: str, extra: str = "") -> str:
    return (f"{what}, top-1 accuracy (%) as mean ± sample std (ddof 1) over seeds; "
            f"n = seeds per cell when it differs from the rest of the table. {extra}").strip()


def methods_table(runs: pd.DataFrame) -> Table:
    """Methods x datasets x heterogeneity: all methods in their full form at the default prompt length."""
    rows = runs[(runs["variant"] == "full") & _is_default_length(runs["prompt_length"])]
    s = summarise(rows, SETTING + ["method"])
    s.insert(s.columns.get_loc("method") + 1, "method_label", s["method"].map(method_label))
    return Table("methods", "Methods × datasets × heterogeneity", s,
                 _caption("Personalised (each client's own test split with its shared + private "
                          "prompts, weighted by test images) and global (the server's shared prompts "
                          "only, pooled test set) accuracy",
                          f"Prompt length {DEFAULT_PROMPT_LENGTH}. {NOT_APPLICABLE}: the method has no "
                          "global model (local-only uploads nothing, so the server's prompt never trains)."),
                 _accuracy_sections(s, "method", method_label))


def constraints_table(runs: pd.DataFrame) -> Table:
    """The alignment-constraint ablation of FedRSCLIP with the difference to the full model."""
    rows = runs[(runs["method"] == MAIN_METHOD) & _is_default_length(runs["prompt_length"])]
    s = summarise(rows, SETTING + ["variant"])
    for value in ACCURACIES:
        full = s[s["variant"] == "full"].set_index(SETTING)[f"{value}_mean"]
        keyed = s.set_index(SETTING).index
        s[f"{value}_delta"] = [m - full.get(k, float("nan")) if k in full.index else float("nan")
                               for k, m in zip(keyed, s[f"{value}_mean"])]
    return Table("constraints", "Alignment-constraint ablation (FedRSCLIP)", s,
                 _caption("FedRSCLIP without Dual Prompt Alignment (λ_dpa = 0), without Cross-Modal "
                          "Alignment (λ_cma = 0), without both, without private prompts (shared only) "
                          "and without visual prompts",
                          f"Prompt length {DEFAULT_PROMPT_LENGTH}; `*_delta` columns of the CSV are "
                          "differences to the full model in accuracy points."), _accuracy_sections(s, "variant", str))


def prompt_length_table(runs: pd.DataFrame) -> Table:
    """FedRSCLIP (full) at each prompt length, with the values it uploads per client per round."""
    rows = runs[(runs["method"] == MAIN_METHOD) & (runs["variant"] == "full") & runs["prompt_length"].notna()]
    s = summarise(rows, SETTING + ["prompt_length"])
    sections = _detail_sections(s, lambda part: {
        "Prompt length (tokens)": part["prompt_length"].astype(str).values,
        "Uploaded values / client / round": [_na(v) for v in part["upload_values"]],
        "Uploaded KiB / client / round": [_kib(v) for v in part["upload_bytes"]],
        "Seeds": part["seeds"].astype(str).values,
    })
    return Table("prompt_length", "Prompt length against uploaded values (FedRSCLIP)", s,
                 _caption("FedRSCLIP (full) with 4, 8 and 16 context tokens per text prompt",
                          "Uploaded values per client per round as metrics.json records them (for FedRSCLIP's "
                          "shared text prompt: M tokens × the text width)."),
                 sections)


def _kib(v: Any) -> str:
    return "?" if v is None or v is pd.NA else f"{int(v) / 1024:.2f}"


def communication_table(runs: pd.DataFrame) -> Table:
    """Accuracy against communication: every method (full, default length) and FedRSCLIP's lengths."""
    methods = summarise(runs[(runs["variant"] == "full") & _is_default_length(runs["prompt_length"])],
                        SETTING + ["method", "prompt_length"])
    lengths = summarise(runs[(runs["method"] == MAIN_METHOD) & (runs["variant"] == "full")
                             & ~_is_default_length(runs["prompt_length"])],
                        SETTING + ["method", "prompt_length"])
    s = _sorted(pd.concat([f for f in (methods, lengths) if not f.empty] or [methods], ignore_index=True),
                SETTING + ["method", "prompt_length"])
    s.insert(s.columns.get_loc("method") + 1, "label", [
        method_label(m) + ("" if _is_default_or_na(n) else f" (M={n})")
        for m, n in zip(s["method"], s["prompt_length"])])
    total = [None if (b is pd.NA or b is None or r is pd.NA or r is None) else int(b) * int(r)
             for b, r in zip(s["upload_bytes"], s["rounds"])]
    s["upload_bytes_total"] = pd.array(total, dtype="Int64")
    sections = _detail_sections(s, lambda part: {
        "Method": part["label"].values,
        "Uploaded values / client / round": [_na(v) for v in part["upload_values"]],
        "Uploaded KiB / client (whole run)": [_kib(v) for v in part["upload_bytes_total"]],
    })
    return Table("communication", "Accuracy against communication", s,
                 _caption("Accuracy against values and bytes uploaded per client",
                          "Whole run = per round × rounds (every client sampled every round)."),
                 sections)


def _is_default_or_na(n: Any) -> bool:
    return n is None or n is pd.NA or n == DEFAULT_PROMPT_LENGTH


TABLE_BUILDERS = {
    "methods": methods_table,
    "constraints": constraints_table,
    "prompt_length": prompt_length_table,
    "communication": communication_table,
}


def build_tables(runs: pd.DataFrame) -> dict[str, Table]:
    """Every study table that has at least one row, by name (fixed order)."""
    runs = runs[runs[list(ACCURACY_COLUMNS)].notna().any(axis=1)]  # classification runs only
    tables = {name: build(runs) for name, build in TABLE_BUILDERS.items()}
    return {name: t for name, t in tables.items() if not t.frame.empty}


# --- writing ------------------------------------------------------------------------------------

@dataclass
class Report:
    runs: pd.DataFrame
    tables: dict[str, Table]
    files: list[Path]


def save_figure(fig, stem: Path) -> list[Path]:
    """``stem.png`` and ``stem.pdf`` without timestamps (byte-identical when regenerated)."""
    out = []
    for ext, metadata in ((".png", {"Software": None}),
                          (".pdf", {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None})):
        path = stem.with_suffix(ext)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext[1:], dpi=150, bbox_inches="tight", metadata=metadata)
        out.append(path)
    return out


def write_report(results_dir: str | Path, out_dir: str | Path | None = None,
                 figures: bool = True) -> Report:
    """Tables into ``<out_dir>/tables`` and figures into ``<out_dir>/figures`` (default: ``results_dir``)."""
    from fedrs.study import plots

    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir
    runs = collect_runs(results_dir)
    if runs.empty:
        raise ReportError(f"no run folders (with metrics.json) under {results_dir}: "
                          "run a study first, e.g. `fedrs sweep params/studies/<study>/*.yaml`")
    tables = build_tables(runs)
    files: list[Path] = []
    for name, table in tables.items():
        files.append(write_text_atomic(out_dir / "tables" / f"{name}.csv", table.to_csv()))
        files.append(write_text_atomic(out_dir / "tables" / f"{name}.md", table.to_markdown()))
    runs_table = runs.drop(columns=["wall_s"])  # timings differ between machines: not in committed tables
    files.append(write_text_atomic(out_dir / "tables" / "runs.csv",
                                   runs_table.to_csv(index=False, float_format="%.2f", lineterminator="\n")))
    if figures:
        import matplotlib.pyplot as plt

        for name, fig in plots.report_figures(tables, runs, results_dir).items():
            files.extend(save_figure(fig, out_dir / "figures" / name))
            plt.close(fig)
    return Report(runs, tables, files)


__all__ = [
    "ABLATION_SWITCHES", "ABLATION_VARIANTS", "METHOD_LABELS", "PROMPT_LENGTHS", "Report", "ReportError", "Table",
    "build_tables", "collect_runs", "communication_table", "constraints_table", "find_run_dirs",
    "fmt_mean_std", "load_rounds", "methods_table", "prompt_length_table", "read_run", "summarise",
    "variant_of", "write_report",
]

