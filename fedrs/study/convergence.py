"""When the learning curves flatten: the rule that chose the study's round budget R.

The study issue asks for R "at which the personalised and global curves have flattened (at least
20)". The convergence pilot (``params/studies/pilot``: FedRSCLIP, PromptFL, local-only and FedOTP
on Fed-UCMerced and Fed-EuroSAT, seed 0, 60 rounds; ``results/pilot``) decides it by this rule,
applied to curves scored on a validation split of the training images (``pilot/validation``,
``data.holdout: validation``; a round budget is a choice, so it is never made on test images):

* a curve's **settling round** is the first evaluated round from which every later evaluated
  value stays within :data:`TOLERANCE_POINTS` percentage points of the curve's value at its last
  round (:func:`settling_round`);
* **R** is the latest settling round over every personalised and global curve, and at least
  :data:`MINIMUM_ROUNDS` (:func:`rounds_by_rule`).

:func:`convergence_table` applies it to the ``rounds.csv`` of every run of a results folder (one
row per run and curve), so ``fedrs report results/pilot`` regenerates the choice from the run
folders, and the same table on the full tier shows how late its curves still moved. Accuracies in
``rounds.csv`` are fractions; the table prints percent and points.
"""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from fedrs.study.collect import SETTING, VALIDATION_LABEL, sort_rows
from fedrs.study.tables import Table, backbone_protocol, setting_label

#: how far (percentage points) a curve may still move after its settling round
TOLERANCE_POINTS = 2.0
#: the fewest rounds the rule may choose (the study issue: "at least 20")
MINIMUM_ROUNDS = 20
#: how a setting scored on validation images is labelled (fedrs.study.collect.split_label)
VALIDATION_SPLIT = VALIDATION_LABEL
#: the curves the rule reads: rounds.csv column -> name in the table
CURVES = {"personalised_acc_weighted": "personalised", "global_acc": "global"}


def settling_round(rounds: Sequence[int], values: Sequence[float], tolerance: float = TOLERANCE_POINTS) -> int | None:
    """The first of ``rounds`` from which every value (percent) stays within ``tolerance`` points of
    the value at the last round; ``None`` for a curve without an evaluated value. Rounds without a
    value (not evaluated) are skipped.

    >>> settling_round([0, 2, 4, 6], [10.0, 50.0, 58.0, 59.0])
    4
    """
    points = sorted((int(r), float(v)) for r, v in zip(rounds, values) if v is not None and not math.isnan(float(v)))
    if not points:
        return None
    last = points[-1][1]
    settled = points[-1][0]
    for r, v in reversed(points):
        if abs(v - last) > tolerance:
            break
        settled = r
    return settled


def convergence_frame(rounds: pd.DataFrame, tolerance: float = TOLERANCE_POINTS) -> pd.DataFrame:
    """One row per run and curve of ``rounds`` (:func:`fedrs.study.collect.load_rounds`): its
    setting, row, label and seed, the curve, its last round and value there (%), and its settling
    round. Curves a run does not have (local-only's global accuracy) are left out."""
    keys = [c for c in SETTING + ["row", "label", "seed"] if c in rounds]
    records = []
    if rounds.empty or "round" not in rounds:
        return pd.DataFrame(columns=keys + ["curve", "last_round", "last_value", "settling_round"])
    for key, run in rounds.groupby(keys, dropna=False, sort=False):
        for column, curve in CURVES.items():
            if column not in run or run[column].isna().all():
                continue
            evaluated = run[run[column].notna()].sort_values("round")
            values = 100 * evaluated[column].astype(float)
            at = dict(zip(evaluated["round"].astype(int), values))
            last_round, last_value = int(evaluated["round"].iloc[-1]), float(values.iloc[-1])
            records.append({**dict(zip(keys, key)), "curve": curve, "last_round": last_round,
                            "last_value": last_value,
                            "settling_round": settling_round(evaluated["round"], values, tolerance),
                            **{f"gain_after_{r}": last_value - at[r] if r in at else math.nan
                               for r in candidate_rounds(last_round)}})
    gains = sorted({c for rec in records for c in rec if c.startswith("gain_after_")},
                   key=lambda c: int(c.rsplit("_", 1)[1]))
    frame = pd.DataFrame(records, columns=keys + ["curve", "last_round", "last_value", "settling_round"] + gains)
    frame["settling_round"] = frame["settling_round"].astype("Int64")
    return sort_rows(frame, keys + ["curve"])


def candidate_rounds(last_round: int, minimum: int = MINIMUM_ROUNDS, step: int = 10) -> list[int]:
    """The round budgets a curve of ``last_round`` rounds is read at besides its end: ``minimum``,
    ``minimum + step``, ... below ``last_round`` (60 rounds: 20, 30, 40, 50)."""
    return list(range(minimum, last_round, step))


def rounds_by_rule(frame: pd.DataFrame, minimum: int = MINIMUM_ROUNDS) -> int | None:
    """R by the rule: the latest settling round of ``frame`` (:func:`convergence_frame`), at least
    ``minimum``; ``None`` without curves."""
    settled = [int(r) for r in frame["settling_round"].dropna()] if not frame.empty else []
    return max(max(settled), minimum) if settled else None


def convergence_table(rounds: pd.DataFrame, tolerance: float = TOLERANCE_POINTS,
                      minimum: int = MINIMUM_ROUNDS) -> Table | None:
    """The convergence table of ``rounds`` (``None`` without curves): per setting, each row's
    settling round per curve (the latest over its seeds, with the seeds' last values as mean) and
    the R the rule gives for the whole folder and for each setting."""
    frame = convergence_frame(rounds, tolerance)
    if frame.empty:
        return None
    r_all = rounds_by_rule(frame, minimum)
    sections: list[tuple[str, pd.DataFrame]] = []
    for _, part in frame.groupby([c for c in SETTING if c in frame], dropna=False, sort=False):
        gain_columns = [c for c in part.columns if c.startswith("gain_after_") and part[c].notna().any()]
        records = []
        for (label, curve), g in part.groupby(["label", "curve"], dropna=False, sort=False):
            seeds = sorted(int(s) for s in g["seed"].dropna())
            gains = [f"{g[c].mean():+.2f}" if g[c].notna().any() else "-" for c in gain_columns]
            records.append([label, curve, ", ".join(map(str, seeds)), f"{g['last_value'].mean():.2f}",
                            "/".join(str(int(r)) for r in sorted(set(g["last_round"]))),
                            str(int(g["settling_round"].max())), *gains])
        table = pd.DataFrame(records, columns=["Method", "Curve", "Seeds", "Last value (%, mean over seeds)",
                                               "Last round", f"Settling round (±{tolerance:g} points; latest seed)",
                                               *[f"Last − round {c.rsplit('_', 1)[1]}" for c in gain_columns]])
        heading = (f"{setting_label(part.iloc[0])} · {backbone_protocol(part)} · R by the rule: "
                   f"{rounds_by_rule(part, minimum)}")
        sections.append((heading, table))
    validation = frame["split"].astype(str).str.contains(VALIDATION_SPLIT, regex=False) \
        if "split" in frame else pd.Series(False, index=frame.index)
    if validation.any():
        verdict = (f"**On the validation curves (settings marked '{VALIDATION_SPLIT}': scored on a split of the "
                   f"training images, the test images set aside) the rule gives R = "
                   f"{rounds_by_rule(frame[validation], minimum)}**: the curves a round budget may be chosen on.")
        if (~validation).any():
            verdict += (f" On the test curves it gives {rounds_by_rule(frame[~validation], minimum)}, a reading "
                        f"that chooses nothing.")
    else:
        verdict = (f"By the rule these runs give R = {r_all} (test curves: a reading, never a choice; the study "
                   f"chooses R on validation curves, data.holdout: validation).")
    gaps = _gaps(frame[validation] if validation.any() else frame)
    caption = (f"When the curves flatten. A curve's settling round is the first evaluated round from which every "
               f"later evaluated value stays within {tolerance:g} percentage points of its value at the last round "
               f"(personalised: each client's own split with its own model; global: the server's shared "
               f"parameters on the pooled split; local-only has no global curve). The study's rule for its "
               f"round budget R: the latest settling round over every curve, at least {minimum} "
               f"(fedrs.study.convergence). {verdict} {gaps} Last − round r: the curve's value at its "
               f"last round minus its value at round r (points, mean over seeds; positive: it still gained after "
               f"r). With the study's cosine schedule the learning rate reaches 0 at the last round, so on runs "
               f"of R rounds a settling round close to R says the curve moved until the schedule stopped it.")
    return Table("convergence", "Convergence: when the learning curves flatten", frame, caption, sections)


def _gaps(frame: pd.DataFrame) -> str:
    """One sentence: at each candidate round, the largest distance of any curve of ``frame`` from its
    last value and the largest gain still to come (single runs, not means)."""
    parts = []
    for c in sorted((c for c in frame.columns if c.startswith("gain_after_") and frame[c].notna().any()),
                    key=lambda c: int(c.rsplit("_", 1)[1])):
        g = frame[c].dropna()
        parts.append(f"round {c.rsplit('_', 1)[1]}: {g.abs().max():.2f} points from the end at most, "
                     f"{max(g.max(), 0.0):.2f} still to gain")
    which = "validation " if frame["split"].astype(str).str.contains(VALIDATION_SPLIT, regex=False).all() else ""
    return (f"Over every {which}curve, " + "; ".join(parts) + ".") if parts else ""


__all__ = ["CURVES", "MINIMUM_ROUNDS", "TOLERANCE_POINTS", "VALIDATION_SPLIT", "candidate_rounds",
           "convergence_frame", "convergence_table",
           "rounds_by_rule", "settling_round"]
