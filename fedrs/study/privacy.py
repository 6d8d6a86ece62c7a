"""The privacy-utility table: a row under differential privacy against the same row without.

Runs with a ``privacy:`` section whose mode is not ``none`` (:mod:`fedrs.federated.dp`) share
their method section, and so their row key (:func:`~fedrs.study.vocabulary.row_identity`), with
the same row trained in the clear. They are kept out of the other tables (a DP FedRSCLIP is not
the methods table's FedRSCLIP) and tabled here instead:

* :func:`private_mask` tells DP runs apart by their ``config`` (the run's ``params.yaml``, which
  :func:`~fedrs.study.collect.collect_runs` keeps as canonical JSON);
* :func:`mark_private` gives each DP run a row of its own, ``<row>@dp-<mode>-z<z>-C<C>-d<delta>``
  (so ``runs.csv`` and the pairing tell the noise levels apart), labelled ``<label> (DP, z = ..)``;
* :func:`privacy_runs` adds the privacy settings and the epsilon each run spent, read from the
  ``privacy`` entry of its ``metrics.json`` (the accountant's value after the last round, written
  by the run itself; ``params.yaml``'s settings where an entry is missing, with epsilon unknown);
* :func:`privacy_table` summarises each noise level over seeds with
  :func:`fedrs.study.tables.summarise` (mean ± std, paired difference to the same row without DP
  of the same setting and seed, its 95% t-interval from :mod:`fedrs.study.stats`).

A results folder without DP runs has no privacy table (``None``); one with some noise levels or
seeds missing tables what it holds, and a DP row without the non-DP row to pair with shows its
accuracy and no difference.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from fedrs.study.collect import SETTING, ReportError, sort_rows
from fedrs.study.stats import CONFIDENCE
from fedrs.study.tables import (
    NOT_APPLICABLE,
    Table,
    backbone_protocol,
    compared_settings,
    fmt_mean_std,
    setting_label,
    summarise,
)

#: the columns :func:`privacy_runs` adds: DP mode, noise multiplier z, clipping norm C (L2), delta,
#: the epsilon spent after the last round (inf without DP, nan when not recorded), and the row the
#: run is a DP version of
PRIVACY_COLUMNS = ["dp_mode", "noise_multiplier", "clip_norm", "delta", "epsilon", "base_row"]
#: what marks a DP row key
DP_MARK = "@dp-"


def _privacy_section(config: Any) -> dict[str, Any]:
    """The ``privacy`` section of a run's canonical-JSON configuration (empty when absent)."""
    try:
        section = json.loads(config).get("privacy") if isinstance(config, str) else None
    except ValueError:
        section = None
    return section if isinstance(section, Mapping) else {}


def _mode(section: Mapping[str, Any]) -> str:
    return str(section.get("mode") or "none")


def private_mask(runs: pd.DataFrame) -> pd.Series:
    """True for each run trained with differential privacy (its ``privacy.mode`` is not ``none``)."""
    if runs.empty or "config" not in runs:
        return pd.Series(False, index=runs.index, dtype=bool)
    return pd.Series([_mode(_privacy_section(c)) != "none" for c in runs["config"]], index=runs.index, dtype=bool)


def dp_row_key(row: str, section: Mapping[str, Any]) -> str:
    """The row key of ``row`` trained under the privacy ``section``, e.g.
    ``fedrsclip@dp-central-z4-C0.1-d1e-05``."""
    return (f"{row}{DP_MARK}{_mode(section)}-z{float(section.get('noise_multiplier', math.nan)):g}"
            f"-C{float(section.get('clip_norm', math.nan)):g}-d{float(section.get('delta', math.nan)):g}")


def mark_private(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with each DP run's ``row`` and ``label`` made its own (:func:`dp_row_key`;
    ``<label> (DP central, z = 4)``); runs without DP unchanged. Idempotent."""
    mask = private_mask(runs)
    if not mask.any():
        return runs
    out = runs.copy()
    for i in out.index[mask]:
        if DP_MARK in str(out.at[i, "row"]):
            continue
        section = _privacy_section(out.at[i, "config"])
        out.at[i, "row"] = dp_row_key(str(out.at[i, "row"]), section)
        out.at[i, "label"] = f"{out.at[i, 'label']} (DP {_mode(section)}, z = {float(section['noise_multiplier']):g})"
    return out


def _recorded_privacy(results_dir: Path, study: str, run: str) -> dict[str, Any]:
    """The ``privacy`` entry of a run folder's metrics.json (empty when it has none)."""
    path = results_dir / study / run / "metrics.json"
    try:
        entry = json.loads(path.read_text(encoding="utf-8")).get("privacy")
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read the privacy entry ({exc})") from None
    return entry if isinstance(entry, Mapping) else {}


def privacy_runs(runs: pd.DataFrame, results_dir: str | Path) -> pd.DataFrame:
    """``runs`` (:func:`~fedrs.study.collect.collect_runs` rows) with :data:`PRIVACY_COLUMNS`:
    the settings of each run's privacy section and the epsilon it recorded in ``metrics.json``
    after its last round (``inf`` for a run without DP; ``nan`` for a DP run whose metrics.json
    has no privacy entry). DP runs get their own rows (:func:`mark_private`)."""
    mask = private_mask(runs)
    out = mark_private(runs).copy()
    records = []
    for i, run in out.iterrows():
        if not mask[i]:
            records.append({"dp_mode": "none", "noise_multiplier": 0.0, "clip_norm": math.nan, "delta": math.nan,
                            "epsilon": math.inf, "base_row": run["row"]})
            continue
        section = _privacy_section(run["config"])
        # the run's own record first, its configuration where the record lacks a setting
        recorded = {**section, **_recorded_privacy(Path(results_dir), run["study"], run["run"])}
        settings = {key: float(recorded.get(key, math.nan)) for key in ("noise_multiplier", "clip_norm", "delta")}
        epsilon = recorded.get("epsilon")
        records.append({"dp_mode": _mode(section), **settings,
                        "epsilon": math.nan if epsilon is None else float(epsilon),
                        "base_row": str(run["row"]).split(DP_MARK)[0]})
    extra = pd.DataFrame(records, index=out.index, columns=PRIVACY_COLUMNS)
    return pd.concat([out, extra], axis=1)


def privacy_table(runs: pd.DataFrame, results_dir: str | Path) -> Table | None:
    """The privacy-utility table of the DP runs under ``results_dir`` (``None`` without any): per
    setting and noise level, the privacy settings, epsilon, personalised and global accuracy (mean
    ± std over seeds) and the paired difference to the same row without DP (same setting and
    seeds) with its 95% t-interval; the row without DP first (epsilon = inf)."""
    if not private_mask(runs).any():
        return None
    runs = privacy_runs(runs, results_dir)
    runs = runs[runs[["personalised_acc", "global_acc"]].notna().any(axis=1)]
    parts = []
    for base in dict.fromkeys(runs.loc[runs["dp_mode"] != "none", "base_row"]):
        rows = runs[runs["base_row"] == base]
        summary = compared_settings(summarise(rows, SETTING + ["row"], reference=base), reference=base)
        if summary.empty:  # DP runs whose setting has nothing to show (no accuracies)
            continue
        first = {k: g.iloc[0] for k, g in rows.groupby("row", sort=False)}
        for column in ("label", "method", "base_row", "dp_mode", "noise_multiplier", "clip_norm", "delta"):
            summary[column] = [first[k][column] for k in summary["row"]]
        # epsilon depends on z, the clients sampled a round, the rounds and delta only, so it is the
        # same for every seed of a row; the largest is kept should runs disagree
        summary["epsilon"] = [rows.loc[rows["row"] == k, "epsilon"].max() for k in summary["row"]]
        parts.append(summary)
    if not parts:
        return None
    frame = pd.concat(parts, ignore_index=True)
    frame = sort_rows(frame, SETTING + ["base_row", "noise_multiplier"])  # no DP (z = 0) first, then z ascending
    leading = SETTING + ["row", "label", "method", "base_row", "dp_mode", "noise_multiplier", "clip_norm", "delta",
                         "epsilon"]
    frame = frame[leading + [c for c in frame.columns if c not in leading]]
    sections = _sections(frame)
    # settings, not measurements: written as given (the CSV's two decimals would turn delta 1e-5 into 0.00)
    for column in ("clip_norm", "delta"):
        frame[column] = ["" if math.isnan(v) else f"{v:g}" for v in frame[column]]
    return Table("privacy", "Privacy-utility: accuracy against epsilon", frame, _caption(frame), sections)


def _g(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:g}"


def epsilon_cell(epsilon: float, delta: float) -> str:
    """``8.08 (δ = 1e-05)``; ``∞ (no DP)``; ``?`` when not recorded."""
    if math.isinf(epsilon):
        return "∞ (no DP)"
    if math.isnan(epsilon):
        return "?"
    return f"{epsilon:.2f} (δ = {_g(delta)})"


def _diff_cell(r: Mapping[str, Any], value: str) -> tuple[str, str]:
    """The paired Δ (``*`` when its interval excludes 0) and its interval, as Markdown cells."""
    if r["dp_mode"] == "none":
        return "reference", ""
    d, pairs = r[f"{value}_diff"], int(r[f"{value}_pairs"])
    if pairs == 0 or math.isnan(d):
        return "-", "-"
    if pairs == 1:
        return f"{d:+.2f}", "- (1 seed)"
    mark = "*" if r[f"{value}_distinguishable"] else ""
    return f"{d:+.2f}{mark}", f"[{r[f'{value}_diff_low']:+.2f}, {r[f'{value}_diff_high']:+.2f}]"


def _sections(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    sections = []
    for _, part in frame.groupby(SETTING + ["base_row"], dropna=False, sort=False):
        reference = part[part["dp_mode"] == "none"]
        name = reference["label"].iloc[0] if len(reference) else str(part["label"].iloc[0]).split(" (DP")[0]
        records = []
        for _, r in part.iterrows():
            clear = r["dp_mode"] == "none"
            cells = ["no DP" if clear else r["dp_mode"], "-" if clear else _g(r["noise_multiplier"]),
                     _g(r["clip_norm"]), epsilon_cell(r["epsilon"], r["delta"])]
            for value in ("personalised_acc", "global_acc"):
                mean = r[f"{value}_mean"]
                cells += [fmt_mean_std(mean, r[f"{value}_std"]) if not math.isnan(mean) else NOT_APPLICABLE,
                          *_diff_cell(r, value)]
            records.append(cells + [str(r["seeds"])])
        ci = f"{100 * CONFIDENCE:g}% CI (paired t)"
        table = pd.DataFrame(records, columns=[
            "DP", "Noise multiplier z", "Clipping norm C", "ε after the last round (δ)",
            "Personalised (%)", "Δ personalised (points)", ci, "Global (%)", "Δ global (points)", ci, "Seeds"])
        sections.append((f"{name} · {setting_label(part.iloc[0])} · {backbone_protocol(part)}", table))
    return sections


def _caption(frame: pd.DataFrame) -> str:
    modes = sorted(set(frame["dp_mode"]) - {"none"})
    return (f"Differential privacy for the shared tensors ({', '.join(modes)}; fedrs.federated.dp): each sampled "
            "client's update of the shared tensors is clipped to L2 norm C, and Gaussian noise of std z · C / m is "
            "added to the equal-weight mean of the m clipped updates (central) or of std z · C to each upload "
            "(local). ε: the privacy spent after the last round at δ, from the run's own RDP accountant "
            "(dp-accounting, add/remove-one-client; read from each run's metrics.json). Top-1 accuracy (%) at "
            "the last round as mean ± sample std (ddof 1) over seeds; a seed fixes the split and the "
            "initialisation, so each DP run is paired with the same row without DP of the same seed. Δ: the mean "
            f"paired difference to the row without DP (ε = ∞) with its {100 * CONFIDENCE:g}% t-interval over "
            "seeds (n - 1 degrees of freedom, scipy.stats.t); `*`: the interval excludes 0. Personalised: each "
            "client's own test split with its own model; global: the server's (noised) shared tensors alone on "
            "the pooled test set.")


__all__ = ["DP_MARK", "PRIVACY_COLUMNS", "dp_row_key", "epsilon_cell", "mark_private", "privacy_runs",
           "privacy_table", "private_mask"]
