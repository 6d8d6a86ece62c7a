"""The privacy-utility table: a row under differential privacy against the same row without.

Runs with a ``privacy:`` section whose mode is not ``none`` (:mod:`fedrs.federated.dp`) have rows
of their own (:func:`~fedrs.study.vocabulary.row_identity` adds ``dp-<mode>-z<z>``:
``fedrsclip-dp-central-z4``, labelled ``FedRSCLIP (DP central, z = 4)``), which every other table
leaves out (:func:`~fedrs.study.tables.build_tables`; a DP FedRSCLIP is not the methods table's
FedRSCLIP). Their privacy settings and the epsilon each spent are columns of the runs frame
(:data:`~fedrs.study.collect.PRIVACY_COLUMNS`, read from each run's ``metrics.json`` by
:func:`~fedrs.study.collect.collect_runs`); :func:`privacy_table` summarises each noise level
over seeds with :func:`fedrs.study.tables.summarise` (mean ± std, paired difference to the same
row without DP, :func:`~fedrs.study.vocabulary.clear_row`, of the same setting and seed, its 95%
t-interval from :mod:`fedrs.study.stats`).

A results folder without DP runs has no privacy table (``None``); one with some noise levels or
seeds missing tables what it holds, and a DP row without the non-DP row to pair with shows its
accuracy and no difference. The row without DP is summarised over the seeds its DP versions were
run on (a methods table with more seeds of it does not shift the reference mean here).
"""

from __future__ import annotations

import math

import pandas as pd

from fedrs.study.collect import SETTING, ReportError, private_runs, sort_rows
from fedrs.study.stats import CONFIDENCE
from fedrs.study.tables import (
    NOT_APPLICABLE,
    Table,
    backbone_protocol,
    compared_settings,
    diff_cells,
    fmt_mean_std,
    setting_label,
    summarise,
)
from fedrs.study.vocabulary import clear_label, clear_row


def _with_clear_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with ``base_row``: the row each run is the DP version of (its own row without DP)."""
    out = runs.copy()
    out["base_row"] = [clear_row(str(row), str(tag or "")) for row, tag in zip(out["row"], out["privacy"])]
    return out


def _check_settings(rows: pd.DataFrame) -> None:
    """One clipping norm and delta per DP row: the row key names the noise multiplier only."""
    for key, group in rows.groupby("row", sort=False):
        for column in ("clip_norm", "delta"):
            if group[column].nunique(dropna=False) > 1:
                where = ", ".join(f"{s}/{r}" if s else r for s, r in zip(group["study"], group["run"]))
                raise ReportError(f"runs {where} of row {key!r} differ in privacy.{column} "
                                  f"({', '.join(f'{v:g}' for v in sorted(set(group[column])))}): the privacy table "
                                  "would average them; move the runs of one value out of the results folder")


def _on_private_seeds(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` (one row without DP and its DP versions) with the runs without DP kept on the seeds
    that some DP run of the same setting has: the row without DP is summarised over the seeds it
    is compared on, so its mean is the one the paired differences are taken to (the methods table
    may hold more seeds of it)."""
    private = private_runs(rows)
    setting = [c for c in SETTING if c in rows]
    key = rows[setting].astype(str).agg("|".join, axis=1)
    private_seeds = set(zip(key[private], rows.loc[private, "seed"]))
    keep = private | pd.Series([(k, s) in private_seeds for k, s in zip(key, rows["seed"])], index=rows.index)
    return rows[keep]


def privacy_table(runs: pd.DataFrame) -> Table | None:
    """The privacy-utility table of the DP runs among ``runs`` (:func:`~fedrs.study.collect.collect_runs`
    rows; ``None`` without any): per setting and noise level, the privacy settings, epsilon,
    personalised and global accuracy (mean ± std over seeds) and the paired difference to the same
    row without DP (same setting and seeds) with its 95% t-interval; the row without DP first
    (epsilon = inf)."""
    if not private_runs(runs).any():
        return None
    runs = _with_clear_rows(runs[runs[["personalised_acc", "global_acc"]].notna().any(axis=1)])
    _check_settings(runs[private_runs(runs)])
    parts = []
    for base in dict.fromkeys(runs.loc[runs["dp_mode"] != "none", "base_row"]):
        rows = _on_private_seeds(runs[runs["base_row"] == base])
        summary = compared_settings(summarise(rows, SETTING + ["row"], reference=base), reference=base)
        if summary.empty:  # DP runs whose setting has nothing to show (no accuracies)
            continue
        first = {k: g.iloc[0] for k, g in rows.groupby("row", sort=False)}
        for column in ("label", "method", "base_row", "privacy", "dp_mode", "noise_multiplier", "clip_norm",
                       "delta"):
            summary[column] = [first[k][column] for k in summary["row"]]
        # epsilon depends on z, the clients sampled a round, the rounds and delta only, so it is the
        # same for every seed of a row; the largest is kept should runs disagree
        summary["epsilon"] = [rows.loc[rows["row"] == k, "epsilon"].max() for k in summary["row"]]
        parts.append(summary)
    if not parts:
        return None
    frame = pd.concat(parts, ignore_index=True)
    frame = sort_rows(frame, SETTING + ["base_row", "noise_multiplier"])  # no DP (z = 0) first, then z ascending
    leading = SETTING + ["row", "label", "method", "base_row", "privacy", "dp_mode", "noise_multiplier", "clip_norm",
                         "delta", "epsilon"]
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


def _sections(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    sections = []
    for _, part in frame.groupby(SETTING + ["base_row"], dropna=False, sort=False):
        reference = part[part["dp_mode"] == "none"]
        first = part.iloc[0]
        name = reference["label"].iloc[0] if len(reference) else clear_label(str(first["label"]),
                                                                             str(first["privacy"] or ""))
        records = []
        for _, r in part.iterrows():
            clear = r["dp_mode"] == "none"
            cells = ["no DP" if clear else r["dp_mode"], "-" if clear else _g(r["noise_multiplier"]),
                     _g(r["clip_norm"]), epsilon_cell(r["epsilon"], r["delta"])]
            for value in ("personalised_acc", "global_acc"):
                mean = r[f"{value}_mean"]
                cells += [fmt_mean_std(mean, r[f"{value}_std"]) if not math.isnan(mean) else NOT_APPLICABLE,
                          *diff_cells(value, r, r["base_row"])]
            records.append(cells + [str(r["seeds"])])
        ci = f"{100 * CONFIDENCE:g}% CI (paired t)"
        table = pd.DataFrame(records, columns=[
            "DP", "Noise multiplier z", "Clipping norm C", "ε after the last round (δ)",
            "Personalised (%)", "Δ personalised (points)", ci, "Distinguishable",
            "Global (%)", "Δ global (points)", ci, "Distinguishable", "Seeds"])
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
            "seeds (n - 1 degrees of freedom, scipy.stats.t); `*` and 'yes': the interval excludes 0. "
            "Personalised: each client's own test split with its own model; global: the server's (noised) "
            "shared tensors alone on the pooled test set.")


__all__ = ["epsilon_cell", "privacy_table"]
