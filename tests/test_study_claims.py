"""The claims a results folder supports (fedrs.study.claims): one sentence per paired comparison
with FedRSCLIP, a verdict that says "not distinguishable" when the interval holds 0, and a scope
that names the parts the folder cannot speak about."""

from __future__ import annotations

import math
import re

import pytest

from fedrs.study import claims, collect, privacy, tables
from fedrs.study.report import write_report
from tests.test_study_report import T_975_2DF, make_run, study  # noqa: F401 - the fixture


@pytest.mark.parametrize("diff, low, high, pairs, expected", [
    (-10.0, -12.0, -8.0, 3, "FedRSCLIP higher"),
    (4.0, 1.0, 7.0, 3, "PromptFL higher"),
    (-1.0, -8.0, 6.0, 3, "not distinguishable"),
    (-1.0, math.nan, math.nan, 1, "no interval (1 paired seed)"),
])
def test_verdict(diff, low, high, pairs, expected):
    assert claims.verdict(diff, low, high, pairs, "PromptFL") == expected


def test_claims_state_each_difference_its_interval_and_verdict(study):  # noqa: F811
    runs = collect.collect_runs(study)
    built = tables.build_tables(runs)
    text = claims.claims_markdown(built, runs)
    half = T_975_2DF * 3 / math.sqrt(3)
    local = next(line for line in text.splitlines() if line.startswith("- Local-only"))
    # local - FedRSCLIP per seed: -1, +2, -4 -> mean -1, interval holds 0
    assert f"-1.00 points [{-1 - half:+.2f}, {-1 + half:+.2f}]" in local
    assert "over 3 paired seeds" in local and "**not distinguishable**" in local
    promptfl = next(line for line in text.splitlines() if line.startswith("- PromptFL"))
    assert "-10.00 points [-10.00, -10.00]" in promptfl and "**FedRSCLIP higher**" in promptfl
    # the reference is the heading's, never a bullet of its own; local-only has no global claim
    assert not any(re.match(r"- FedRSCLIP \d", line) for line in text.splitlines())
    # the ablation's variants are claims too (same reference)
    assert any(line.startswith("- FedRSCLIP (w/o DPA)") for line in text.splitlines())
    global_block = text.split("global accuracy**")[1].split("**")[0]
    assert "Local-only" not in global_block
    # every heading names the backbone and the protocol
    assert all("backbone `" in line for line in text.splitlines() if line.startswith("**"))


def test_scope_names_what_the_folder_cannot_support(tmp_path):
    root = tmp_path / "results"
    for seed in range(2):
        make_run(root, "methods", f"fedrsclip_s{seed}", seed=seed, personalised=70.0 + seed)
        make_run(root, "methods", f"promptfl_s{seed}", method="promptfl", seed=seed, personalised=65.0 + 3 * seed)
    report = write_report(root, figures=False)
    text = (root / "tables" / "claims.md").read_text()
    assert report.files[-1] == root / "tables" / "claims.md"
    assert "Parts held: the methods table" in text
    assert "**No claim can be made here about**: the alignment-constraint ablation" in text
    assert "differential privacy" in text.split("No claim can be made here about")[1]
    assert "±12.71 standard errors" in text  # t(0.975) with 1 degree of freedom


def test_private_rows_are_claims_with_their_epsilon(tmp_path):
    from tests.test_privacy_table import study as dp_study  # the privacy tests' DP runs

    root = dp_study.__wrapped__(tmp_path)
    runs = collect.collect_runs(root)
    built = tables.build_tables(runs)
    built["privacy"] = privacy.privacy_table(runs)
    text = claims.claims_markdown(built, runs)
    dp_lines = [line for line in text.splitlines() if line.startswith("- ") and "ε = " in line]
    assert dp_lines and all("vs FedRSCLIP over" in line for line in dp_lines)
    assert "Parts held:" in text and "differential privacy" in text.split("Parts held:")[1].split("\n")[0]
