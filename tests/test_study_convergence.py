"""The round-budget rule (fedrs.study.convergence): settling rounds on hand-made curves, the R the
rule gives, and that the choice is read on validation curves, never on test curves."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from fedrs.study import collect, convergence
from fedrs.study.report import write_report
from tests.test_study_report import make_run


@pytest.mark.parametrize("rounds, values, expected", [
    ([0, 2, 4, 6], [10.0, 50.0, 58.0, 59.0], 4),          # climbs, then within 2 points of 59
    ([0, 10, 20, 30, 40], [10.0, 65.0, 64.0, 62.0, 61.0], 30),  # a late decline counts too (two-sided)
    ([0, 10, 20], [10.0, 30.0, 31.0], 10),
    ([0, 2, 4], [10.0, math.nan, 11.0], 0),               # rounds without a value are skipped
    ([0, 2], [math.nan, math.nan], None),
])
def test_settling_round(rounds, values, expected):
    assert convergence.settling_round(rounds, values) == expected


def _curves(split: str, label: str, points: dict[int, float], global_points: dict[int, float] | None = None,
            seed: int = 0) -> pd.DataFrame:
    """A rounds frame as load_rounds gives it (accuracies as fractions)."""
    rounds = sorted(points)
    return pd.DataFrame({
        "round": rounds, "personalised_acc_weighted": [points[r] / 100 for r in rounds],
        "global_acc": [(global_points or {}).get(r, math.nan) / 100 for r in rounds],
        "backbone": "bb", "dataset": "UCMerced", "split": split, "clients": 10, "participation": 1.0,
        "rounds": rounds[-1], "row": label.lower(), "label": label, "seed": seed})


def test_rule_reads_validation_curves_and_reports_test_curves_as_a_reading():
    flat_early = {r: 50.0 if r >= 10 else 10.0 for r in range(0, 61, 2)}
    late = {r: (40.0 if r < 44 else 45.0) for r in range(0, 61, 2)}  # jumps by 5 at round 44
    frame = pd.concat([
        _curves("Dir(0.5), validation holdout", "FedRSCLIP", flat_early, flat_early),
        _curves("Dir(0.5), validation holdout", "PromptFL", late),
        _curves("Dir(0.5)", "PromptFL", {r: (40.0 if r < 56 else 45.0) for r in range(0, 61, 2)}),
    ], ignore_index=True)
    table = convergence.convergence_table(frame)
    rows = table.frame
    settle = dict(zip(zip(rows["split"], rows["label"], rows["curve"]), rows["settling_round"]))
    assert settle[("Dir(0.5), validation holdout", "FedRSCLIP", "personalised")] == 10
    assert settle[("Dir(0.5), validation holdout", "PromptFL", "personalised")] == 44
    assert ("Dir(0.5), validation holdout", "PromptFL", "global") not in settle  # no global curve
    # last - round r, per candidate round (20, 30, 40, 50 for 60 rounds)
    promptfl = rows[(rows["label"] == "PromptFL") & rows["split"].str.contains("validation")].iloc[0]
    assert [promptfl[f"gain_after_{r}"] for r in (20, 30, 40, 50)] == [5.0, 5.0, 5.0, 0.0]
    assert "**On the validation curves" in table.caption and "the rule gives R = 44**" in table.caption
    assert "On the test curves it gives 56, a reading that chooses nothing" in table.caption
    assert "round 40: 5.00 points from the end at most, 5.00 still to gain" in table.caption
    headings = [h for h, _ in table.markdown_sections]
    assert any(h.endswith("R by the rule: 44") for h in headings) and any(h.endswith("R by the rule: 56")
                                                                          for h in headings)


def test_rule_never_chooses_fewer_than_the_minimum():
    frame = _curves("Dir(0.5), validation holdout", "Local-only", {r: 50.0 for r in range(0, 41, 2)})
    assert convergence.rounds_by_rule(convergence.convergence_frame(frame)) == convergence.MINIMUM_ROUNDS


def test_report_writes_the_convergence_table_and_global_learning_curves(tmp_path):
    root = tmp_path / "results"
    for seed in range(2):
        make_run(root, "methods", f"fedrsclip_s{seed}", seed=seed, with_rounds=True)
        make_run(root, "methods", f"promptfl_s{seed}", method="promptfl", seed=seed, with_rounds=True)
    report = write_report(root)
    names = {p.name for p in report.files}
    assert {"convergence.md", "convergence.csv", "learning_curves_global.png"} <= names
    text = (root / "tables" / "convergence.md").read_text()
    # make_run's curves: 30, p - 5, p (%) at rounds 0, 1, 2: only the last round is within 2 points
    assert "R = 20 (test curves: a reading, never a choice" in text
    runs = collect.collect_runs(root)
    frame = convergence.convergence_frame(collect.load_rounds(root, runs))
    assert set(frame["settling_round"]) == {2}  # the last round: 5 points from the end before it
