"""The study's tables, built from the rows of :func:`fedrs.study.collect.collect_runs`.

Every table groups runs by their row (:func:`~fedrs.study.vocabulary.row_identity` of the run's
method section) and by the setting (backbone, dataset, heterogeneity split, clients, participation,
rounds), and reports for each row and accuracy (:func:`summarise`):

* mean ± sample standard deviation (ddof 1) over seeds;
* the **paired difference to FedRSCLIP** (the same setting and seed: the same split and
  initialisation) with its 95% t-interval over seeds, marked ``*`` and "yes" when the interval
  excludes 0 (:func:`fedrs.study.stats.paired_difference`);
* the **test-set uncertainty** of one run: the Wilson 95% half-width of correct / total test images
  (mean over seeds) and the test images behind it; run folders keep no per-image predictions, so
  this binomial interval stands where a bootstrap over images would.

The tables:

* ``methods``        every method and control x datasets x heterogeneity (personalised, global)
* ``headline``       the methods table's Dir(0.5), 10-client setting, datasets side by side
* ``constraints``    the alignment-constraint ablation (FedRSCLIP variants)
* ``prompt_length``  prompt length 4/8/16 against uploaded values
* ``sensitivity``    DPA kind and the loss weights of DPA and CMA
* ``communication``  accuracy against values/bytes uploaded per client
* ``test_sets``      each split's pooled, client and distinct test images (per seed)
* ``base_to_novel``  base, novel and harmonic-mean accuracy of the base-to-novel settings
* ``unseen_clients`` the global model on clients that never trained

The generalisation settings (base-to-novel, unseen clients) appear in their own tables only, and
runs trained with differential privacy in none of these (:func:`build_tables`; the privacy table
of :mod:`fedrs.study.privacy` pairs them against their rows without DP, with :func:`summarise`
and :func:`diff_cells`).

Every section heading and every table's protocol line name the backbone, clients, participation,
rounds and seeds, read from the run folders. A :class:`Table` holds its data (written as CSV) and a
readable Markdown view; rows follow fixed orders and floats print with two decimals, so the same
runs always give the same text.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from fedrs.methods import has_global_model
from fedrs.study.collect import ACCURACY_COLUMNS, SETTING, ReportError, private_runs, sort_rows
from fedrs.study.stats import CONFIDENCE, mean_finite, paired_difference, wilson_interval
from fedrs.study.vocabulary import (
    DEFAULT_PROMPT_LENGTH,
    MAIN_METHOD,
    METHOD_ROWS,
    PROMPT_LENGTHS,
    REFERENCE_ROW,
    dataset_label,
    row_identity,
)

#: the accuracies every table reports: run column -> its name in headings
ACCURACIES = {"personalised_acc": "personalised", "global_acc": "global"}
#: the methods table's accuracies: also the class-balanced personalised accuracy (each client's mean
#: per-class recall on its own test split, averaged over clients), beside the one that follows the
#: clients' label distributions
METHOD_ACCURACIES = {"personalised_acc": "personalised", "personalised_acc_balanced": "personalised (class-balanced)",
                     "global_acc": "global"}
#: the base-to-novel table's accuracies (data.class_split: base-to-novel): base and novel classes, each
#: with its own class names only, and their harmonic means 2BN/(B+N)
BASE_TO_NOVEL_ACCURACIES = {
    "personalised_acc": "personalised, base classes", "novel_personalised_acc": "personalised, novel classes",
    "hm_personalised": "personalised, harmonic mean", "global_acc": "global, base classes",
    "novel_global_acc": "global, novel classes", "hm_global": "global, harmonic mean"}
#: the unseen-clients table's accuracies (data.unseen_clients)
UNSEEN_CLIENT_ACCURACIES = {"personalised_acc": "personalised (training clients)",
                            "global_acc": "global (pooled test set)",
                            "unseen_client_global_acc": "global on clients that never trained"}
#: split labels (fedrs.study.collect.split_label) of the generalisation settings, which get tables of their own
BASE_TO_NOVEL_SPLIT, UNSEEN_CLIENTS_SPLIT = "base-to-novel", "unseen clients"
#: accuracy column -> the run columns of its correct and total test images
TEST_COUNTS = {"personalised_acc": ("personalised_correct", "personalised_total"),
               "global_acc": ("global_correct", "global_total")}
#: the cell of a global accuracy that does not exist (a method without a global model)
NOT_APPLICABLE = "n/a"
#: what every paired difference is taken to, as tables name it
REFERENCE_LABEL = row_identity({"name": REFERENCE_ROW}).label
#: the row keys of the methods table (controls that are FedRSCLIP configurations included)
METHOD_ROW_KEYS = frozenset(r.key for r in METHOD_ROWS)

# --- aggregation ------------------------------------------------------------------------------

def dedupe(runs: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """One run per (``by``, seed): the same run kept in two studies counts once. Two runs of one
    row, setting and seed whose configurations differ are an error (the row key would hide a
    difference)."""
    if runs.empty:
        return runs
    key = list(dict.fromkeys(list(SETTING) + ["row", "seed"]))
    if "config" in runs:
        for _, group in runs.groupby(key, dropna=False, sort=False):
            if group["config"].nunique(dropna=False) > 1:
                where = ", ".join(f"{s}/{r}" if s else r for s, r in zip(group["study"], group["run"]))
                raise ReportError(f"runs {where} share row {group['row'].iloc[0]!r}, setting and seed but differ in "
                                  "configuration: the tables would mix them; move one out of the results folder "
                                  "or give it a row of its own (fedrs.study.vocabulary.row_identity)")
    return runs.drop_duplicates(subset=list(dict.fromkeys(list(by) + ["seed"])), keep="first")


def summarise(runs: pd.DataFrame, by: Sequence[str], values: Sequence[str] = tuple(ACCURACIES),
              reference: str | None = REFERENCE_ROW) -> pd.DataFrame:
    """Per ``by`` group: seeds, mean and sample std (ddof 1) over seeds of each of ``values``, the
    paired difference to the ``reference`` row of the same setting (``<v>_diff``, ``_diff_low``,
    ``_diff_high``, ``_pairs``, ``_distinguishable``) and the test-set interval (``<v>_test_images``:
    mean test images behind one run's accuracy; ``<v>_test_halfwidth``: mean Wilson half-width)."""
    per_value = ["mean", "std", "diff", "diff_low", "diff_high", "pairs", "distinguishable", "test_images",
                 "test_halfwidth"]
    columns = list(by) + ["seeds", "seed_list"] + [f"{v}_{s}" for v in values for s in per_value]
    extra = ["upload_values", "upload_bytes"]
    if runs.empty:
        return pd.DataFrame(columns=columns + extra)
    runs = dedupe(runs, by)
    setting = [c for c in SETTING if c in runs]
    ref_runs = runs[runs["row"] == reference] if reference is not None else runs.iloc[0:0]
    ref_values = {v: {tuple(k if isinstance(k, tuple) else (k,)): dict(zip(g["seed"], g[v].astype(float)))
                      for k, g in ref_runs.groupby(setting, dropna=False, sort=False)} for v in values}
    rows = []
    for key, group in runs.groupby(list(by), dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        seeds = sorted(int(s) for s in group["seed"].dropna())
        row["seeds"] = len(seeds) or len(group)
        row["seed_list"] = " ".join(map(str, seeds))
        setting_key = tuple(group.iloc[0][c] for c in setting)
        for v in values:
            col = group[v].astype(float).dropna()
            row[f"{v}_mean"] = float(col.mean()) if len(col) else math.nan
            row[f"{v}_std"] = float(col.std(ddof=1)) if len(col) > 1 else math.nan
            mine = dict(zip(group["seed"], group[v].astype(float)))
            is_reference = reference is not None and group["row"].iloc[0] == reference and "row" in by
            d = paired_difference(mine, ref_values[v].get(setting_key, {})) if not is_reference else None
            row[f"{v}_diff"] = d.mean if d else math.nan
            row[f"{v}_diff_low"] = d.low if d else math.nan
            row[f"{v}_diff_high"] = d.high if d else math.nan
            row[f"{v}_pairs"] = d.pairs if d else 0
            row[f"{v}_distinguishable"] = bool(d and d.distinguishable)
            correct, total = TEST_COUNTS.get(v, (None, None))
            if correct in group and total in group:
                intervals = [wilson_interval(c, t) for c, t in zip(_floats(group[correct]), _floats(group[total]))]
                row[f"{v}_test_images"] = mean_finite(_floats(group[total]))
                row[f"{v}_test_halfwidth"] = mean_finite([(hi - lo) / 2 for lo, hi in intervals])
            else:
                row[f"{v}_test_images"] = row[f"{v}_test_halfwidth"] = math.nan
        for v in extra:
            col = group[v].dropna()
            row[v] = int(col.iloc[0]) if len(col) else None
        rows.append(row)
    out = pd.DataFrame(rows, columns=columns + extra)
    for v in extra:
        out[v] = out[v].astype("Int64")
    for v in values:
        out[f"{v}_pairs"] = out[f"{v}_pairs"].astype(int)
    return sort_rows(out, by)


def _floats(column: pd.Series) -> list[float]:
    return [math.nan if v is None or v is pd.NA else float(v) for v in column]


def fmt_mean_std(mean: float, std: float, digits: int = 2) -> str:
    """``71.23 ± 1.05``; the mean alone for a single seed; ``-`` when missing."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_seeds(seeds: Sequence[int]) -> str:
    """``0-4`` for consecutive seeds, else ``0, 2, 5``."""
    seeds = sorted(set(int(s) for s in seeds))
    if not seeds:
        return "?"
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def protocol_label(part: pd.DataFrame) -> str:
    """The protocol of a set of runs or summary rows, e.g. ``10 clients, all every round · 20 rounds
    (last reported) · seeds 0-4``; values that vary are listed with ``/``."""
    def values(column: str) -> list:
        return sorted({v for v in part[column] if v is not None and v is not pd.NA and not
                       (isinstance(v, float) and math.isnan(v))}) if column in part else []

    clients = "/".join(str(int(c)) for c in values("clients")) or "?"
    fractions = values("participation")
    every = "all every round" if fractions in ([], [1.0]) else \
        "/".join(f"{100 * f:g}%" for f in fractions) + " sampled a round"
    rounds = "/".join(str(int(r)) for r in values("rounds")) or "?"
    if "seed_list" in part:
        seeds = [int(s) for cell in part["seed_list"] for s in str(cell).split()]
    else:
        seeds = [int(s) for s in part["seed"].dropna()] if "seed" in part else []
    n = len(set(seeds))
    seed_note = f"{n} seed{'s' * (n != 1)} ({fmt_seeds(seeds)})"
    return f"{clients} clients, {every} · {rounds} rounds (last reported) · {seed_note}"


def backbone_protocol(part: pd.DataFrame) -> str:
    """``backbone `B` · <protocol>`` (one line naming the model and the protocol)."""
    backbones = ", ".join(f"`{b}`" for b in sorted(set(part["backbone"]))) if "backbone" in part else "?"
    return f"backbone {backbones} · {protocol_label(part)}"


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
        if not self.frame.empty and "backbone" in self.frame:
            parts.append(f"Protocol: {backbone_protocol(self.frame)}.\n")
        if self.caption:
            parts.append(self.caption + "\n")
        for heading, frame in self.markdown_sections:
            if heading:
                parts.append(f"## {heading}\n")
            parts.append(frame.to_markdown(index=False, disable_numparse=True) + "\n")
        return "\n".join(parts)

    def to_csv(self) -> str:
        return self.frame.to_csv(index=False, float_format="%.2f", lineterminator="\n")


def _na(v: Any) -> str:
    return "?" if v is None or v is pd.NA else str(v)


def setting_label(row: Mapping[str, Any]) -> str:
    """``UCMerced · Dir(0.5)`` (+ the clients when the participation is partial)."""
    label = f"{dataset_label(str(row['dataset']))} · {row['split']}"
    fraction = row.get("participation")
    if fraction is not None and not (isinstance(fraction, float) and math.isnan(fraction)) and fraction < 1:
        label += f" · {_na(row['clients'])} clients, {100 * fraction:g}% a round"
    return label


def _settings(summary: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The summary's settings in order, each with a heading naming dataset, split, backbone and
    protocol."""
    keys = list(dict.fromkeys(tuple(r[c] for c in SETTING) for _, r in summary.iterrows()))
    out = []
    for key in keys:
        mask = pd.Series(True, index=summary.index)
        for c, v in zip(SETTING, key):
            mask &= summary[c].isna() if (v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))) \
                else summary[c] == v
        part = summary[mask]
        out.append((f"{setting_label(part.iloc[0])} · {backbone_protocol(part)}", part))
    return out


def _is_global_na(value: str, row: Mapping[str, Any]) -> bool:
    method = row.get("method")
    return value == "global_acc" and method is not None and not has_global_model(str(method))


def diff_cells(value: str, r: Mapping[str, Any], reference: str | None) -> list[str]:
    """The paired difference of accuracy ``value`` in summary row ``r`` (:func:`summarise`'s
    ``<value>_diff``, ``_diff_low``, ``_diff_high``, ``_pairs``, ``_distinguishable``) as three
    Markdown cells: Δ (``*`` when its interval excludes 0), its 95% CI and whether it is
    distinguishable; ``reference`` for the ``reference`` row itself, ``n/a`` for a global
    accuracy that does not exist, ``-`` without a pair, no interval for one seed."""
    if _is_global_na(value, r):
        return [NOT_APPLICABLE, "", ""]
    if reference is not None and r.get("row") == reference:
        return ["reference", "", ""]
    d, pairs = r[f"{value}_diff"], int(r[f"{value}_pairs"])
    if pairs == 0 or math.isnan(d):
        return ["-", "-", "-"]
    if pairs == 1:
        return [f"{d:+.2f}", "-", "no (1 seed)"]
    mark = "*" if r[f"{value}_distinguishable"] else ""
    return [f"{d:+.2f}{mark}", f"[{r[f'{value}_diff_low']:+.2f}, {r[f'{value}_diff_high']:+.2f}]",
            "yes" if mark else "no"]


def _test_cell(value: str, r: Mapping[str, Any]) -> str:
    if _is_global_na(value, r):
        return NOT_APPLICABLE
    half, n = r[f"{value}_test_halfwidth"], r[f"{value}_test_images"]
    if half is None or math.isnan(half):
        return "-"
    return f"±{half:.2f} ({n:.0f} img)"


def _paired_sections(summary: pd.DataFrame, row_header: str, label: Callable[[Mapping[str, Any]], str],
                     reference: str | None = REFERENCE_ROW,
                     extra: Callable[[pd.DataFrame], dict[str, list]] | None = None,
                     accuracies: Mapping[str, str] = ACCURACIES) -> list[tuple[str, pd.DataFrame]]:
    """Markdown sections per accuracy (``accuracies``: run column -> heading name) and setting:
    mean ± std, seeds, paired Δ to the reference with its 95% CI, distinguishable, test-set
    interval (+ ``extra`` columns). An accuracy that no run recorded (an older run folder's
    missing metric) gets no section."""
    sections = []
    for value, name in accuracies.items():
        if value not in {c.removesuffix("_mean") for c in summary.columns if c.endswith("_mean")}:
            continue
        if value not in ACCURACIES and summary[f"{value}_mean"].astype(float).isna().all():
            continue
        for heading, part in _settings(summary):
            records = []
            for _, r in part.iterrows():
                acc = NOT_APPLICABLE if _is_global_na(value, r) else fmt_mean_std(r[f"{value}_mean"], r[f"{value}_std"])
                records.append([label(r), acc, str(r["seeds"]), *diff_cells(value, r, reference),
                                _test_cell(value, r)])
            frame = pd.DataFrame(records, columns=[
                row_header, "Accuracy (%)", "Seeds", f"Δ vs {REFERENCE_LABEL} (points)",
                f"{100 * CONFIDENCE:g}% CI of Δ (paired t)", "Distinguishable",
                f"Test set {100 * CONFIDENCE:g}% (Wilson, ±)"])
            if extra is not None:
                for column, cells in extra(part).items():
                    frame[column] = cells
            sections.append((f"{name.capitalize()} accuracy · {heading}", frame))
    return sections


def _caption(what: str, extra: str = "") -> str:
    return (f"{what}. Top-1 accuracy (%) at the last round as mean ± sample std (ddof 1) over seeds; "
            f"a seed fixes the split and the initialisation of every row of a setting. "
            f"Δ: the paired difference to {REFERENCE_LABEL} of the same setting, mean over the seeds both "
            f"have, with its {100 * CONFIDENCE:g}% t-interval (n - 1 degrees of freedom, scipy.stats.t); "
            f"`*` and 'yes': the interval excludes 0; 'no': not distinguishable. Test set: the Wilson "
            f"{100 * CONFIDENCE:g}% score half-width of one run's correct / total test images (mean over seeds; "
            f"personalised: every client's own test images, global: the pooled test set). Runs store "
            f"per-client counts, not per-image predictions, so this binomial interval stands in for a "
            f"bootstrap over test images. {extra}").strip()


def methods_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the methods comparison: every row of the methods table (and any other method
    in its own form), without ablation or sensitivity variants and without DP runs."""
    plain = (runs["ablation"].fillna("") == "") & (runs["sensitivity"].fillna("") == "")
    return runs[(plain | runs["row"].isin(METHOD_ROW_KEYS)) & ~private_runs(runs)]


def _labelled_summary(rows: pd.DataFrame, runs: pd.DataFrame, accuracies: Mapping[str, str]) -> pd.DataFrame:
    """:func:`summarise` of ``rows`` per setting and row over ``accuracies``, with each row's
    method and table label (read from ``runs``) after its key."""
    s = summarise(rows, SETTING + ["row"], values=tuple(accuracies))
    s.insert(s.columns.get_loc("row") + 1, "label", [_first(runs, k, "label") for k in s["row"]])
    s.insert(s.columns.get_loc("row") + 1, "method", [_first(runs, k, "method") for k in s["row"]])
    return s


def methods_table(runs: pd.DataFrame) -> Table:
    """Every method and control x datasets x heterogeneity, paired against FedRSCLIP."""
    s = _labelled_summary(methods_runs(runs), runs, METHOD_ACCURACIES)
    return Table("methods", "Methods × datasets × heterogeneity", s,
                 _caption("Personalised (each client's own test split with its own model, weighted by test images; "
                          "the split follows the client's label distribution), class-balanced personalised (each "
                          "client's mean per-class recall over the classes of its test split, averaged over "
                          "clients; no test-set interval: runs store no per-class counts) "
                          "and global (the server's shared parameters only, pooled test set) accuracy of every "
                          "method and control",
                          f"Each method at its own published defaults (FedRSCLIP: prompt length "
                          f"{DEFAULT_PROMPT_LENGTH}). {NOT_APPLICABLE}: the method has no global model "
                          "(nothing is uploaded, so the server's parameters never train)."),
                 _paired_sections(s, "Method", lambda r: r["label"], accuracies=METHOD_ACCURACIES))


#: the headline setting: the methods table's protocol (issue 16, part 1): Dirichlet(0.5) label skew,
#: 10 clients, all of them every round
HEADLINE_SPLIT, HEADLINE_CLIENTS = "Dir(0.5)", 10


def headline_table(runs: pd.DataFrame) -> Table:
    """Every method and control against FedRSCLIP on every dataset at the headline setting
    (:data:`HEADLINE_SPLIT`, :data:`HEADLINE_CLIENTS` clients, full participation): one row per
    method, per dataset its accuracy (mean ± std over seeds, %) and its paired difference to
    FedRSCLIP (points) with the 95% t-interval, for personalised and global accuracy. The same
    numbers as the methods table's sections of that setting, side by side; one section per
    backbone and round budget, so no cell mixes protocols."""
    rows = methods_runs(runs)
    participation = rows["participation"].astype(float).fillna(1.0)
    rows = rows[(rows["split"] == HEADLINE_SPLIT) & (rows["clients"] == HEADLINE_CLIENTS) & (participation >= 1.0)]
    s = _labelled_summary(rows, runs, ACCURACIES)
    sections = []
    for value, name in ACCURACIES.items():
        for _, part in s.groupby(["backbone", "rounds"], sort=False):
            datasets = list(dict.fromkeys(part["dataset"]))
            labels = list(dict.fromkeys(part["label"]))
            records = {label: [label] for label in labels}
            columns = ["Method"]
            for dataset in datasets:
                cells = part[part["dataset"] == dataset]
                seeds = sorted({int(x) for cell in cells["seed_list"] for x in str(cell).split()})
                columns += [f"{dataset_label(dataset)} ({_n_seeds(seeds)}, {fmt_seeds(seeds)}): {name} (%)",
                            f"Δ vs {REFERENCE_LABEL} [95% CI]"]
                by_label = {r["label"]: r for _, r in cells.iterrows()}
                for label in labels:
                    r = by_label.get(label)
                    if r is None:
                        records[label] += ["not run", ""]
                        continue
                    if _is_global_na(value, r):
                        records[label] += [NOT_APPLICABLE, ""]
                        continue
                    diff, interval, verdict = diff_cells(value, r, REFERENCE_ROW)
                    delta = diff if not interval or interval == "-" else f"{diff} {interval}" + \
                        ("" if verdict == "yes" else " n.d.")
                    cell = fmt_mean_std(r[f"{value}_mean"], r[f"{value}_std"])
                    row_seeds = sorted({int(x) for x in str(r["seed_list"]).split()})
                    if row_seeds != seeds:  # a block still running: the column's seeds are not this row's
                        cell += f" ({len(row_seeds)} of {_n_seeds(seeds)}: {fmt_seeds(row_seeds)})"
                    records[label] += [cell, delta]
            frame = pd.DataFrame(list(records.values()), columns=columns)
            protocol = backbone_protocol(part)
            sections.append((f"{name.capitalize()} accuracy · {HEADLINE_SPLIT} · {protocol}", frame))
    caption = ("Every method and control against FedRSCLIP on every dataset at one setting: Dirichlet(0.5) "
               f"label skew, {HEADLINE_CLIENTS} clients, all every round. Cells: top-1 accuracy (%) at the last round, "
               "mean ± sample std over seeds; Δ: the paired difference to FedRSCLIP (same seed: same split and "
               "initialisation), points, with its 95% t-interval (`*`: it excludes 0; n.d.: not distinguishable, "
               f"the interval holds 0). {NOT_APPLICABLE}: no global model (nothing uploaded); 'not run': no run "
               "folder of that row on that dataset yet; '(1 of 2 seeds: 0)': that row has run on fewer seeds "
               "than its column header names (a block still running): its cell is over those, its Δ over the "
               "seeds it shares with FedRSCLIP. The methods table has the same numbers with test-set intervals "
               "and the class-balanced accuracy.")
    return Table("headline", "Headline: methods × datasets (Dir(0.5), 10 clients)", s, caption, sections)


def _n_seeds(seeds: Sequence[int]) -> str:
    """``1 seed``, ``5 seeds``."""
    return f"{len(seeds)} seed" + ("" if len(seeds) == 1 else "s")


def _fedrsclip(runs: pd.DataFrame) -> pd.Series:
    return runs["base"] == MAIN_METHOD


def constraints_table(runs: pd.DataFrame) -> Table:
    """The alignment-constraint ablation of FedRSCLIP, paired against the full model."""
    rows = runs[_fedrsclip(runs) & (runs["sensitivity"].fillna("") == "")]
    s = compared_settings(summarise(rows, SETTING + ["row"]))
    s.insert(s.columns.get_loc("row") + 1, "variant", [_first(rows, k, "variant") for k in s["row"]])
    s.insert(s.columns.get_loc("row") + 1, "method", MAIN_METHOD)
    s = sort_rows(s, SETTING + ["variant"])  # the ablation's order (full first)
    return Table("constraints", "Alignment-constraint ablation (FedRSCLIP)", s,
                 _caption("FedRSCLIP without Dual Prompt Alignment (λ_DPA = 0), without Cross-Modal Alignment "
                          "(λ_CMA = 0), without both, with the shared text prompt only (no private and no visual "
                          "prompts), without visual prompts, and uploading its shared visual prompt V_s too "
                          "(text+visual shared); 'w/o private prompts (local visual prompt kept)', where present, "
                          "keeps V_s trained on each client and never uploaded",
                          f"Prompt length {DEFAULT_PROMPT_LENGTH}. The full model is the reference."),
                 _paired_sections(s, "Variant", lambda r: r["variant"]))


def compared_settings(summary: pd.DataFrame, reference: str = REFERENCE_ROW) -> pd.DataFrame:
    """The summary rows of settings that hold a row besides the reference (a setting with the
    reference alone compares nothing in an ablation or sensitivity table)."""
    if summary.empty:
        return summary
    others = summary[summary["row"] != reference]
    keep = set(map(tuple, others[SETTING].astype(str).values))
    mask = [tuple(v) in keep for v in summary[SETTING].astype(str).values]
    return summary[mask].reset_index(drop=True)


def _first(frame: pd.DataFrame, key: str, column: str) -> Any:
    values = frame.loc[frame["row"] == key, column]
    return values.iloc[0] if len(values) else None


def _single_tag(sensitivity: pd.Series, prefixes: tuple[str, ...]) -> pd.Series:
    """Rows whose sensitivity is empty (the default) or one tag starting with one of ``prefixes``."""
    tags = sensitivity.fillna("")
    return (tags == "") | (~tags.str.contains(r"\+", regex=True) & tags.str.startswith(prefixes))


def prompt_length_table(runs: pd.DataFrame) -> Table:
    """FedRSCLIP (full) at each prompt length, with the values it uploads per client per round."""
    rows = runs[_fedrsclip(runs) & (runs["ablation"].fillna("") == "")
                & _single_tag(runs["sensitivity"], ("m",)) & runs["prompt_length"].notna()]
    s = compared_settings(summarise(rows, SETTING + ["row", "prompt_length"]))
    extra = lambda part: {  # noqa: E731
        "Uploaded values / client / round": [_na(v) for v in part["upload_values"]],
        "Uploaded KiB / client / round": [_kib(v) for v in part["upload_bytes"]],
    }
    return Table("prompt_length", "Prompt length against uploaded values (FedRSCLIP)", s,
                 _caption(f"FedRSCLIP (full) with {', '.join(map(str, PROMPT_LENGTHS[:-1]))} and "
                          f"{PROMPT_LENGTHS[-1]} context tokens per text prompt",
                          f"The reference is FedRSCLIP at its default length {DEFAULT_PROMPT_LENGTH}. Uploaded values "
                          "per client per round as metrics.json records them (FedRSCLIP's shared text prompt: "
                          "M tokens × the text width)."),
                 _paired_sections(s, "Prompt length (tokens)", lambda r: str(r["prompt_length"]), extra=extra))


def sensitivity_table(runs: pd.DataFrame) -> Table:
    """FedRSCLIP (full) with another DPA kind or another weight of DPA or CMA."""
    rows = runs[_fedrsclip(runs) & (runs["ablation"].fillna("") == "")
                & _single_tag(runs["sensitivity"], ("dpa-", "lambda_"))]
    s = compared_settings(summarise(rows, SETTING + ["row"]))
    s.insert(s.columns.get_loc("row") + 1, "label", [_first(rows, k, "label") for k in s["row"]])
    return Table("sensitivity", "Sensitivity to the DPA kind and the loss weights (FedRSCLIP)", s,
                 _caption("FedRSCLIP (full) with the DPA kinds cosine/kl/contrastive and λ_DPA, λ_CMA in "
                          "{0.1, 1, 10}, one change at a time",
                          "The reference is FedRSCLIP at its defaults (DPA cosine, λ_DPA = λ_CMA = 1)."),
                 _paired_sections(s, "FedRSCLIP", lambda r: "defaults" if r["row"] == REFERENCE_ROW
                                  else str(r["label"]).removeprefix(f"{REFERENCE_LABEL} (").removesuffix(")")))


def _kib(v: Any) -> str:
    return "?" if v is None or v is pd.NA else f"{int(v) / 1024:.2f}"


def communication_table(runs: pd.DataFrame) -> Table:
    """Accuracy against communication: every method (its own defaults) and FedRSCLIP's lengths."""
    chosen = methods_runs(runs)
    lengths = runs[_fedrsclip(runs) & (runs["ablation"].fillna("") == "")
                   & (runs["sensitivity"].fillna("") != "") & _single_tag(runs["sensitivity"], ("m",))]
    s = summarise(pd.concat([chosen, lengths]), SETTING + ["row"])
    s.insert(s.columns.get_loc("row") + 1, "label", [_first(runs, k, "label") for k in s["row"]])
    s.insert(s.columns.get_loc("row") + 1, "method", [_first(runs, k, "method") for k in s["row"]])
    total = [None if (b is pd.NA or b is None or r is pd.NA or r is None) else round(int(b) * int(r) * float(f))
             for b, r, f in zip(s["upload_bytes"], s["rounds"], s["participation"])]
    s["upload_bytes_total"] = pd.array(total, dtype="Int64")
    sections = []
    for heading, part in _settings(s):
        sections.append((heading, pd.DataFrame({
            "Method": part["label"].values,
            "Uploaded values / client / round": [_na(v) for v in part["upload_values"]],
            "Uploaded KiB / client (whole run)": [_kib(v) for v in part["upload_bytes_total"]],
            **{f"{name.capitalize()} (%)": [NOT_APPLICABLE if _is_global_na(v, r) else
                                            fmt_mean_std(r[f"{v}_mean"], r[f"{v}_std"]) for _, r in part.iterrows()]
               for v, name in ACCURACIES.items()},
        })))
    return Table("communication", "Accuracy against communication", s,
                 _caption("Accuracy against values and bytes uploaded per client",
                          "Whole run = per round × rounds × the fraction of clients sampled a round (the "
                          "expected uploads of one client)."),
                 sections)


def test_sets_table(runs: pd.DataFrame) -> Table:
    """Each setting and seed's test images: the pooled test set (global accuracy), the clients'
    test splits (personalised accuracy), distinct and exclusive client test images."""
    columns = SETTING + ["seed", "pooled_test_images", "client_test_images", "distinct_client_test_images",
                         "exclusive_per_client"]
    rows = []
    have = runs[runs["test_exclusive"].notna() | runs["global_total"].notna() | runs["personalised_total"].notna()]
    for key, group in have.groupby(SETTING + ["seed"], dropna=False, sort=False):
        first = {c: next((v for v in group[c] if v is not None and v is not pd.NA), None)
                 for c in ("global_total", "personalised_total", "test_distinct", "test_exclusive")}
        rows.append({**dict(zip(SETTING + ["seed"], key)), "pooled_test_images": first["global_total"],
                     "client_test_images": first["personalised_total"],
                     "distinct_client_test_images": first["test_distinct"],
                     "exclusive_per_client": first["test_exclusive"]})
    frame = sort_rows(pd.DataFrame(rows, columns=columns), SETTING + ["seed"])
    for c in ("pooled_test_images", "client_test_images", "distinct_client_test_images"):
        frame[c] = frame[c].astype("Int64")
    sections = []
    for heading, part in _settings(frame):
        sections.append((heading, pd.DataFrame({
            "Seed": part["seed"].astype(str).values,
            "Pooled test images (global)": [_na(v) for v in part["pooled_test_images"]],
            "Client test images (personalised)": [_na(v) for v in part["client_test_images"]],
            "Distinct client test images": [_na(v) for v in part["distinct_client_test_images"]],
            "Exclusive per client (min / median / max)": [_spread(v) for v in part["exclusive_per_client"]],
        })))
    return Table("test_sets", "Test sets: pooled, per client and distinct", frame,
                 "Test images behind each split (a seed fixes the split of every row of a setting), from the runs' "
                 "split.json and clients.csv: the pooled test set scores the global model; each client's own test "
                 "split scores its personalised model. Exclusive: a client's test images held by no other client "
                 "(the CSV lists every client). '?': an older run folder without split.json.",
                 sections)


def _spread(cell: Any) -> str:
    if cell is None or cell is pd.NA or (isinstance(cell, float) and math.isnan(cell)):
        return "?"
    counts = sorted(int(x) for x in str(cell).split())
    return f"{counts[0]} / {statistics.median(counts):g} / {counts[-1]} ({len(counts)} clients)"


TABLE_BUILDERS: dict[str, Callable[[pd.DataFrame], Table]] = {
    "methods": methods_table,
    "headline": headline_table,
    "constraints": constraints_table,
    "prompt_length": prompt_length_table,
    "sensitivity": sensitivity_table,
    "communication": communication_table,
    "test_sets": test_sets_table,
}


def _generalisation(runs: pd.DataFrame, kind: str) -> pd.Series:
    """Runs whose setting is the generalisation ``kind`` (a part of their split label)."""
    return runs["split"].fillna("").astype(str).str.contains(kind, regex=False)


def base_to_novel_table(runs: pd.DataFrame) -> Table:
    """Base-to-novel: every method trained on the base classes, scored on base and novel classes."""
    s = _labelled_summary(runs[_generalisation(runs, BASE_TO_NOVEL_SPLIT)], runs, BASE_TO_NOVEL_ACCURACIES)
    return Table("base_to_novel", "Base-to-novel generalisation", s,
                 _caption("Base-to-novel (CoOp/CoCoOp's protocol, as FedTPG, FedPGP and FLiP): the clients train on "
                          "the first half of the classes (base, rounded up) and are scored on them with base class "
                          "names only, and on the other half (novel, never trained on) with novel names only; "
                          "harmonic mean 2BN/(B+N). Personalised: each client's own model (shared + private "
                          "parameters) on its own base test split and on its share of the novel test images",
                          f"{NOT_APPLICABLE} or -: the method has no global model."),
                 _paired_sections(s, "Method", lambda r: r["label"], accuracies=BASE_TO_NOVEL_ACCURACIES))


def unseen_clients_table(runs: pd.DataFrame) -> Table:
    """The global model on clients that never trained (data.unseen_clients)."""
    s = _labelled_summary(runs[_generalisation(runs, UNSEEN_CLIENTS_SPLIT)], runs, UNSEEN_CLIENT_ACCURACIES)
    return Table("unseen_clients", "The global model on clients that never trained", s,
                 _caption("Clients partitioned with the others (same scheme and seed) that never train nor are "
                          "sampled: the server's model on their test splits, beside the usual accuracies of the "
                          "training clients",
                          f"{NOT_APPLICABLE}: the method has no global model."),
                 _paired_sections(s, "Method", lambda r: r["label"], accuracies=UNSEEN_CLIENT_ACCURACIES))


#: tables over the generalisation settings only (every other table leaves those settings out)
GENERALISATION_BUILDERS: dict[str, Callable[[pd.DataFrame], Table]] = {
    "base_to_novel": base_to_novel_table,
    "unseen_clients": unseen_clients_table,
}


def classification_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs the study's tables are built from: classification runs (an accuracy recorded)
    trained without differential privacy."""
    return runs[runs[list(ACCURACY_COLUMNS)].notna().any(axis=1) & ~private_runs(runs)]


def build_tables(runs: pd.DataFrame) -> dict[str, Table]:
    """Every study table that has at least one row, by name (fixed order). Runs trained with
    differential privacy are left out (a DP FedRSCLIP is not the methods table's FedRSCLIP): the
    privacy table (:mod:`fedrs.study.privacy`) tables them."""
    runs = classification_runs(runs)
    ordinary = runs[~(_generalisation(runs, BASE_TO_NOVEL_SPLIT) | _generalisation(runs, UNSEEN_CLIENTS_SPLIT))]
    tables = {name: build(ordinary) for name, build in TABLE_BUILDERS.items()}
    tables.update({name: build(runs) for name, build in GENERALISATION_BUILDERS.items()})
    return {name: t for name, t in tables.items() if not t.frame.empty}


__all__ = [
    "ACCURACIES", "METHOD_ACCURACIES", "BASE_TO_NOVEL_ACCURACIES", "UNSEEN_CLIENT_ACCURACIES",
    "GENERALISATION_BUILDERS", "HEADLINE_CLIENTS", "HEADLINE_SPLIT",
    "base_to_novel_table", "unseen_clients_table", "METHOD_ROW_KEYS", "NOT_APPLICABLE",
    "REFERENCE_LABEL", "TABLE_BUILDERS",
    "TEST_COUNTS", "Table",
    "backbone_protocol", "build_tables", "classification_runs",
    "communication_table", "compared_settings", "constraints_table", "dedupe",
    "diff_cells", "fmt_mean_std",
    "fmt_seeds", "headline_table",
    "methods_runs", "methods_table", "prompt_length_table", "protocol_label", "sensitivity_table",
    "setting_label", "summarise", "test_sets_table",
]
