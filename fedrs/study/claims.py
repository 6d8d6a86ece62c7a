"""What a results folder can claim: one sentence per paired comparison, and the scope.

The README's results section and ``make study``'s closing summary are this module's output
(``tables/claims.md``, written by :func:`fedrs.study.report.write_report`), so every sentence
carries its numbers from the run folders:

* for each setting of the methods table (and the constraint ablation, and the privacy table when
  present), each row's paired difference to FedRSCLIP with its 95% t-interval over seeds and the
  verdict: "FedRSCLIP higher", "<row> higher" or **"not distinguishable"** when the interval
  holds 0 (:func:`fedrs.study.stats.paired_difference`);
* the scope: backbone, protocol, datasets, rows and seeds the folder holds, the parts of the
  study it does not hold (so no claim about them can be made from it), and the t multiplier of
  its seed count (with 3 seeds the interval is 4.3 standard errors wide on each side).

Accuracies are in percent, differences in percentage points (row minus FedRSCLIP).
"""

from __future__ import annotations

import math
from typing import Mapping

import pandas as pd

from fedrs.study.stats import CONFIDENCE, t_quantile
from fedrs.study.tables import (
    METHOD_ACCURACIES,
    NOT_APPLICABLE,
    REFERENCE_LABEL,
    Table,
    backbone_protocol,
    fmt_mean_std,
    setting_label,
)
from fedrs.study.vocabulary import REFERENCE_ROW

#: the study's parts and the table that carries each (a part without its table is out of scope)
PARTS = {
    "methods": "the methods table (baselines and controls against FedRSCLIP)",
    "constraints": "the alignment-constraint ablation",
    "prompt_length": "prompt length against uploaded values",
    "sensitivity": "DPA kinds and loss weights",
    "base_to_novel": "base-to-novel generalisation",
    "unseen_clients": "the global model on clients that never trained",
    "privacy": "differential privacy (accuracy against epsilon)",
}
#: the tables whose rows are compared with FedRSCLIP sentence by sentence
CLAIM_TABLES = ("methods", "constraints", "privacy")


def verdict(diff: float, low: float, high: float, pairs: int, label: str) -> str:
    """``FedRSCLIP higher`` / ``<label> higher`` / ``not distinguishable`` for a paired difference
    ``label - FedRSCLIP`` with interval ``[low, high]`` over ``pairs`` seeds."""
    if pairs < 2 or any(math.isnan(v) for v in (diff, low, high)):
        return f"no interval ({pairs} paired seed{'s' * (pairs != 1)})"
    if low > 0:
        return f"{label} higher"
    if high < 0:
        return f"{REFERENCE_LABEL} higher"
    return "not distinguishable"


def row_label(r: Mapping) -> str:
    """A summary row's name as its table prints it: the methods table's label (with epsilon for a
    differentially private row), the ablation's variant (``FedRSCLIP (w/o DPA)``), else the row key."""
    if isinstance(r.get("label"), str) and r["label"]:
        eps = r.get("epsilon")
        if isinstance(eps, (int, float)) and math.isfinite(eps):  # a differentially private row
            return f"{r['label']}, ε = {eps:.2f} at δ = {r.get('delta')}"
        return r["label"]
    if isinstance(r.get("variant"), str) and r["variant"]:
        return f"{REFERENCE_LABEL} ({r['variant']})"
    return str(r.get("row"))


def comparison_sentence(r: Mapping, value: str, name: str) -> str | None:
    """One claim: summary row ``r`` of accuracy ``value`` (heading ``name``) against FedRSCLIP, or
    ``None`` for the reference row, a missing global model or no pair."""
    if r.get("row") == REFERENCE_ROW or int(r.get(f"{value}_pairs", 0) or 0) == 0:
        return None
    mean = r.get(f"{value}_mean")
    if value == "global_acc" and (mean is None or (isinstance(mean, float) and math.isnan(mean))):
        return None
    d, lo, hi, n = (float(r[f"{value}_diff"]), float(r[f"{value}_diff_low"]), float(r[f"{value}_diff_high"]),
                    int(r[f"{value}_pairs"]))
    label = row_label(r)
    interval = f"[{lo:+.2f}, {hi:+.2f}]" if n >= 2 else "(no interval)"
    return (f"{label} {fmt_mean_std(float(mean), float(r[f'{value}_std']))}: {d:+.2f} points {interval} "
            f"vs {REFERENCE_LABEL} over {n} paired seeds, **{verdict(d, lo, hi, n, label)}**")


def _reference_cell(part: pd.DataFrame, value: str) -> str:
    ref = part[part["row"] == REFERENCE_ROW]
    if ref.empty:
        return "absent"
    r = ref.iloc[0]
    return fmt_mean_std(float(r[f"{value}_mean"]), float(r[f"{value}_std"]))


def table_claims(table: Table, accuracies: Mapping[str, str]) -> list[str]:
    """Markdown lines of one table's claims: a heading per setting and accuracy, then one bullet
    per row compared with FedRSCLIP."""
    frame = table.frame
    if frame.empty or "row" not in frame:
        return []
    setting_cols = [c for c in ("backbone", "dataset", "split", "clients", "participation", "rounds")
                    if c in frame]
    lines: list[str] = []
    for _, part in frame.groupby(setting_cols, dropna=False, sort=False):
        first = part.iloc[0]
        where = setting_label(first) if {"dataset", "split"} <= set(first.index) else table.title
        for value, name in accuracies.items():
            if f"{value}_mean" not in part or part[f"{value}_mean"].astype(float).isna().all():
                continue
            bullets = [s for _, r in part.iterrows() if (s := comparison_sentence(r, value, name))]
            if not bullets:
                continue
            lines.append(f"**{table.title} · {where} · {name} accuracy** "
                         f"({backbone_protocol(part)}); {REFERENCE_LABEL} {_reference_cell(part, value)}:")
            lines.extend(f"- {b}" for b in bullets)
            lines.append("")
    return lines


def scope_lines(tables: Mapping[str, Table], runs: pd.DataFrame) -> list[str]:
    """What the folder holds, what it does not, and how wide its intervals are by construction."""
    seeds = sorted({int(s) for s in runs["seed"].dropna()}) if "seed" in runs else []
    n = len(seeds)
    datasets = sorted({str(d) for d in runs["dataset"].dropna()}) if "dataset" in runs else []
    lines = [
        f"- Runs: {len(runs)}; datasets: {', '.join(datasets) or '-'}; seeds: {', '.join(map(str, seeds)) or '-'}.",
    ]
    present = [f"{PARTS[k]}" for k in PARTS if k in tables]
    absent = [f"{PARTS[k]}" for k in PARTS if k not in tables]
    lines.append(f"- Parts held: {'; '.join(present) or 'none'}.")
    if absent:
        lines.append(f"- **No claim can be made here about**: {'; '.join(absent)} (no runs in this folder).")
    if n >= 2:
        lines.append(f"- With {n} seeds a paired {100 * CONFIDENCE:g}% t-interval is ±{t_quantile(n - 1):.2f} "
                     f"standard errors of the mean difference: only differences that are large against their "
                     f"seed-to-seed spread are distinguishable, and 'not distinguishable' is not 'equal'.")
    lines.append(f"- `{NOT_APPLICABLE}` global accuracy: the method uploads nothing, so there is no global model.")
    return lines


def claims_markdown(tables: Mapping[str, Table], runs: pd.DataFrame) -> str:
    """The ``claims.md`` of a results folder."""
    lines = [
        "# What these runs support",
        "",
        "Generated by `fedrs report` from the run folders (do not edit): every paired difference is "
        f"row minus {REFERENCE_LABEL} on the same seeds (same split and initialisation), in percentage "
        f"points, with its {100 * CONFIDENCE:g}% t-interval; **not distinguishable** where the interval holds 0. "
        "The final round is reported, never the best.",
        "",
        "## Scope",
        *scope_lines(tables, runs),
        "",
        "## Comparisons with FedRSCLIP",
        "",
    ]
    for name in CLAIM_TABLES:
        if name in tables:
            accuracies = METHOD_ACCURACIES if name == "methods" else {"personalised_acc": "personalised",
                                                                       "global_acc": "global"}
            lines.extend(table_claims(tables[name], accuracies))
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["CLAIM_TABLES", "PARTS", "claims_markdown", "comparison_sentence", "row_label", "scope_lines",
           "table_claims", "verdict"]
