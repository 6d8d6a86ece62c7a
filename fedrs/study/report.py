"""The study report: every table and figure of a results folder, written to disk.

``fedrs report RESULTS_DIR`` (``make report``) and the ``03_ablations`` notebook both call
:func:`write_report`, which collects the run folders (:mod:`fedrs.study.collect`), builds the
tables (:mod:`fedrs.study.tables`), draws the figures (:mod:`fedrs.study.plots`) and writes

* ``tables/methods.{csv,md}``        methods and controls x datasets x heterogeneity (personalised, global)
* ``tables/constraints.{csv,md}``    the alignment-constraint ablation (FedRSCLIP variants)
* ``tables/prompt_length.{csv,md}``  prompt length 4/8/16 against uploaded values
* ``tables/sensitivity.{csv,md}``    DPA kind and loss weights
* ``tables/communication.{csv,md}``  accuracy against values/bytes uploaded per client
* ``tables/test_sets.{csv,md}``      pooled, client and distinct test images per split
* ``tables/base_to_novel.{csv,md}``  base-to-novel settings: base, novel and harmonic-mean accuracy
* ``tables/unseen_clients.{csv,md}`` the global model on clients that never trained
* ``tables/convergence.{csv,md}``   each run's settling round per curve and the round budget R the
  pilot's rule gives (:mod:`fedrs.study.convergence`; runs with ``rounds.csv``, no DP runs)
* ``tables/privacy.{csv,md}``        accuracy and epsilon of the DP runs per noise level, paired against
  the same row without DP (:mod:`fedrs.study.privacy`; only when the results hold DP runs)
* ``tables/runs.csv``                one row per run (without wall times; Wilson intervals)
* ``tables/claims.md``               what the runs support: each row's paired difference to FedRSCLIP
  with its interval and verdict ("not distinguishable" when it holds 0), and the folder's scope
  (:mod:`fedrs.study.claims`; the README's results section is taken from it)
* ``figures/<table>.{png,pdf}``      one figure per table, ``<table>_paired`` the paired
  differences to FedRSCLIP with their intervals (+ ``learning_curves`` and ``learning_curves_global``
  from rounds.csv,
  ``privacy_utility``: accuracy against epsilon)

Runs trained with differential privacy have rows of their own (``fedrsclip-dp-central-z4``,
:func:`fedrs.study.vocabulary.row_identity`) and their privacy settings and epsilon as columns
(:data:`fedrs.study.collect.PRIVACY_COLUMNS`, in ``runs.csv`` too); every table but the privacy
table leaves them out (:func:`fedrs.study.tables.build_tables`), and so do the learning curves.

Every table (mean ± std, paired difference to FedRSCLIP with its 95% t-interval over seeds,
test-set Wilson interval) names the backbone and the protocol in its headings, and every figure
in its title, read from the run folders.

Tables and figures the report wrote earlier but not this time (their runs are gone) are deleted,
so the folders never hold a stale table beside current ones (:func:`remove_stale_outputs`).

Output is deterministic: rows sorted by fixed orders, floats printed with two decimals, figures
written without timestamps, so regenerated files equal committed ones byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from fedrs.io import atomic_path, write_text_atomic
from fedrs.study import claims, convergence, plots, privacy
from fedrs.study.collect import ReportError, collect_runs, load_rounds
from fedrs.study.stats import wilson_interval
from fedrs.study.tables import (
    GENERALISATION_BUILDERS,
    REFERENCE_LABEL,
    TABLE_BUILDERS,
    Table,
    build_tables,
    classification_runs,
    methods_runs,
    protocol_label,
)


@dataclass
class Report:
    """What :func:`write_report` read and wrote."""

    runs: pd.DataFrame          # one row per run folder (fedrs.study.collect.RUN_COLUMNS)
    tables: dict[str, Table]    # by name, in writing order
    files: list[Path]           # every file written, in writing order
    removed: list[Path] = field(default_factory=list)  # stale report files deleted (remove_stale_outputs)


#: the stems of every table file the report can write (``tables/<stem>[__<backbone>].{csv,md}``)
REPORT_TABLE_STEMS = frozenset({*TABLE_BUILDERS, *GENERALISATION_BUILDERS, "privacy", "convergence", "runs", "claims"})
#: the stems of every figure the report can write (``figures/<stem>[__<backbone>].{png,pdf}``)
REPORT_FIGURE_STEMS = frozenset({*REPORT_TABLE_STEMS, *(f"{n}_paired" for n in REPORT_TABLE_STEMS),
                                 "learning_curves", "learning_curves_global", "accuracy_vs_communication",
                                 "privacy_utility"})


def remove_stale_outputs(out_dir: str | Path, written: list[Path], figures: bool = True) -> list[Path]:
    """Delete the report files under ``<out_dir>/tables`` (and ``figures`` when ``figures``) that
    this report did not write: a table or figure left from run folders that are gone (e.g. a
    privacy table after its DP runs were moved away) would otherwise sit beside the new ones as if
    current. Only names the report itself writes are touched (:data:`REPORT_TABLE_STEMS`,
    :data:`REPORT_FIGURE_STEMS`); anything else in those folders is left alone. The paths removed."""
    keep = {Path(p).resolve() for p in written}
    owned = [("tables", (".csv", ".md"), REPORT_TABLE_STEMS)]
    if figures:
        owned.append(("figures", (".png", ".pdf"), REPORT_FIGURE_STEMS))
    removed = []
    for folder, suffixes, stems in owned:
        directory = Path(out_dir) / folder
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if (path.is_file() and path.suffix in suffixes and path.stem.split("__")[0] in stems
                    and path.resolve() not in keep):
                path.unlink()
                removed.append(path)
    return removed


def write_tables(tables: Mapping[str, Table], out_dir: str | Path) -> list[Path]:
    """``<out_dir>/tables/<name>.csv`` and ``.md`` of every table (atomic); the paths written."""
    files: list[Path] = []
    for name, table in tables.items():
        files.append(write_text_atomic(Path(out_dir) / "tables" / f"{name}.csv", table.to_csv()))
        files.append(write_text_atomic(Path(out_dir) / "tables" / f"{name}.md", table.to_markdown()))
    return files


def write_runs_table(runs: pd.DataFrame, out_dir: str | Path) -> Path:
    """``<out_dir>/tables/runs.csv``: one row per run, with the Wilson 95% interval of each
    accuracy where the run's test counts are known, without wall times (they differ between
    machines, so they stay out of committed tables) and the configuration fingerprint."""
    runs_table = runs.drop(columns=["wall_s", "config"], errors="ignore")
    for value, (correct, total) in (("personalised", ("personalised_correct", "personalised_total")),
                                    ("global", ("global_correct", "global_total"))):
        if correct in runs_table:
            intervals = [wilson_interval(_num(c), _num(t)) for c, t in zip(runs_table[correct], runs_table[total])]
            runs_table[f"{value}_wilson_low"] = [lo for lo, _ in intervals]
            runs_table[f"{value}_wilson_high"] = [hi for _, hi in intervals]
    return write_text_atomic(Path(out_dir) / "tables" / "runs.csv",
                             runs_table.to_csv(index=False, float_format="%.2f", lineterminator="\n"))


def _num(v: Any) -> float:
    return float("nan") if v is None or v is pd.NA else float(v)


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


def report_figures(tables: Mapping[str, Table], runs: pd.DataFrame,
                   results_dir: str | Path) -> dict[str, Any]:
    """Every figure of the report, by file stem (one per table and backbone, the paired
    differences of the methods and the ablation, + learning curves from the methods runs'
    ``rounds.csv`` under ``results_dir``, + accuracy against epsilon of the privacy table). Every
    title names the backbone and the protocol. DP runs are left out of the learning curves."""
    backbones = sorted(runs["backbone"].unique())

    def stem(name: str, backbone: str) -> str:
        return name if len(backbones) == 1 else f"{name}__{backbone.replace('/', '__')}"

    def protocol(name: str, backbone: str) -> str:
        frame = tables[name].frame
        return protocol_label(frame[frame["backbone"] == backbone])

    figs: dict[str, Any] = {}
    for b in backbones:
        for name, label, what in (("methods", "label", "Methods"),
                                  ("constraints", "variant", "FedRSCLIP: alignment-constraint ablation")):
            if name not in tables:
                continue
            figs[stem(name, b)] = plots.grouped_bars(
                tables[name].frame, label, "personalised_acc", b,
                f"{what}: personalised accuracy (mean ± std over seeds)", protocol(name, b))
            figs[stem(f"{name}_paired", b)] = plots.paired_differences(
                tables[name].frame, label, "personalised_acc", b, what, protocol(name, b), REFERENCE_LABEL)
        if "sensitivity" in tables:
            figs[stem("sensitivity_paired", b)] = plots.paired_differences(
                tables["sensitivity"].frame, "label", "personalised_acc", b, "FedRSCLIP: DPA kind and loss weights",
                protocol("sensitivity", b), REFERENCE_LABEL)
        if "prompt_length" in tables:
            figs[stem("prompt_length", b)] = plots.prompt_length_curve(
                tables["prompt_length"].frame, b, protocol("prompt_length", b))
        if "communication" in tables:
            figs[stem("accuracy_vs_communication", b)] = plots.accuracy_vs_communication(
                tables["communication"].frame, b, protocol("communication", b))
        if "privacy" in tables:
            figs[stem("privacy_utility", b)] = plots.privacy_utility(
                tables["privacy"].frame, b, protocol("privacy", b))
    figs = {k: v for k, v in figs.items() if v is not None}
    if "methods" in tables:
        rounds = load_rounds(results_dir, methods_runs(runs))
        for b in backbones if "personalised_acc_weighted" in rounds else []:
            fig = plots.mean_learning_curves(rounds, b, "personalised_acc_weighted", protocol("methods", b))
            if fig is not None:
                figs[stem("learning_curves", b)] = fig
            if "global_acc" in rounds and rounds["global_acc"].notna().any():
                fig = plots.mean_learning_curves(rounds, b, "global_acc", protocol("methods", b))
                if fig is not None:
                    figs[stem("learning_curves_global", b)] = fig
    return figs


def write_report(results_dir: str | Path, out_dir: str | Path | None = None,
                 figures: bool = True) -> Report:
    """Tables into ``<out_dir>/tables`` and figures into ``<out_dir>/figures`` (default: ``results_dir``)."""
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir
    runs = collect_runs(results_dir)
    if runs.empty:
        raise ReportError(f"no run folders (with metrics.json) under {results_dir}: "
                          "run a study first, e.g. `fedrs sweep params/studies/<study>/*.yaml`")
    tables = build_tables(runs)
    privacy_table = privacy.privacy_table(runs)
    if privacy_table is not None:
        tables["privacy"] = privacy_table
    convergence_table = convergence.convergence_table(load_rounds(results_dir, classification_runs(runs)))
    if convergence_table is not None:
        tables["convergence"] = convergence_table
    files = write_tables(tables, out_dir)
    files.append(write_runs_table(runs, out_dir))
    files.append(write_text_atomic(out_dir / "tables" / "claims.md", claims.claims_markdown(tables, runs)))
    if figures:
        import matplotlib.pyplot as plt

        for name, fig in report_figures(tables, runs, results_dir).items():
            files.extend(save_figure(fig, out_dir / "figures" / name))
            plt.close(fig)
    return Report(runs, tables, files, remove_stale_outputs(out_dir, files, figures))


__all__ = ["REPORT_FIGURE_STEMS", "REPORT_TABLE_STEMS", "Report", "remove_stale_outputs", "report_figures",
           "save_figure", "write_report", "write_runs_table", "write_tables"]
