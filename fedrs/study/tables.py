"""The study's tables, built from the rows of :func:`fedrs.study.collect.collect_runs`.

The table builders group runs by what was varied (method, ablation variant, prompt length) and by
the setting (backbone, dataset, heterogeneity split, clients, rounds), and report mean +- sample
standard deviation over seeds (:func:`summarise`):

* ``methods``        methods x datasets x heterogeneity (personalised, global)
* ``constraints``    the alignment-constraint ablation (FedRSCLIP variants)
* ``prompt_length``  prompt length 4/8/16 against uploaded values
* ``communication``  accuracy against values/bytes uploaded per client

A :class:`Table` holds its data (written as CSV) and a readable Markdown view; rows follow fixed
orders and floats print with two decimals, so the same runs always give the same text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import pandas as pd

from fedrs.methods import has_global_model
from fedrs.study.collect import ACCURACY_COLUMNS, SETTING, sort_rows
from fedrs.study.vocabulary import DEFAULT_PROMPT_LENGTH, MAIN_METHOD, PROMPT_LENGTHS, method_label

#: the accuracies every table reports: run column -> its name in headings
ACCURACIES = {"personalised_acc": "personalised", "global_acc": "global"}
#: the cell of a global accuracy that does not exist (a method without a global model)
NOT_APPLICABLE = "n/a"

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
    return sort_rows(out, by)


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


def methods_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the methods comparison: every method in its full form at the default prompt length."""
    return runs[(runs["variant"] == "full") & _is_default_length(runs["prompt_length"])]


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


def _accuracy_cell(value: str, method: Any, mean: float, std: float) -> str:
    """``mean ± std``, or n/a for the global accuracy of a method without a global model."""
    if value == "global_acc" and method is not None and not has_global_model(str(method)):
        return NOT_APPLICABLE
    return fmt_mean_std(mean, std)


def _caption(what: str, extra: str = "") -> str:
    return (f"{what}, top-1 accuracy (%) as mean ± sample std (ddof 1) over seeds; "
            f"n = seeds per cell when it differs from the rest of the table. {extra}").strip()


def methods_table(runs: pd.DataFrame) -> Table:
    """Methods x datasets x heterogeneity: all methods in their full form at the default prompt length."""
    s = summarise(methods_runs(runs), SETTING + ["method"])
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
                 _caption(f"FedRSCLIP (full) with {', '.join(map(str, PROMPT_LENGTHS[:-1]))} and "
                          f"{PROMPT_LENGTHS[-1]} context tokens per text prompt",
                          "Uploaded values per client per round as metrics.json records them (for FedRSCLIP's "
                          "shared text prompt: M tokens × the text width)."),
                 sections)


def _kib(v: Any) -> str:
    return "?" if v is None or v is pd.NA else f"{int(v) / 1024:.2f}"


def communication_table(runs: pd.DataFrame) -> Table:
    """Accuracy against communication: every method (full, default length) and FedRSCLIP's lengths."""
    methods = summarise(methods_runs(runs), SETTING + ["method", "prompt_length"])
    lengths = summarise(runs[(runs["method"] == MAIN_METHOD) & (runs["variant"] == "full")
                             & ~_is_default_length(runs["prompt_length"])],
                        SETTING + ["method", "prompt_length"])
    s = sort_rows(pd.concat([f for f in (methods, lengths) if not f.empty] or [methods], ignore_index=True),
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


__all__ = [
    "ACCURACIES", "NOT_APPLICABLE", "TABLE_BUILDERS", "Table", "build_tables", "communication_table",
    "constraints_table", "dedupe", "fmt_mean_std", "methods_runs", "methods_table", "prompt_length_table",
    "summarise",
]
