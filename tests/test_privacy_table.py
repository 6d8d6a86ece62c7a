"""The privacy-utility table of fedrs report (fedrs.study.privacy) on fabricated run folders: DP
runs get rows of their own (their row key carries the DP tag) and their privacy settings and epsilon
as run columns read from metrics.json, are paired seed by seed with the same row without DP
(hand-computed t-interval), stay out of the other tables even when these are built from every run,
and the report renders without DP runs (no section) and with only some of them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_study_report import BACKBONE, T_975_2DF, make_run

from fedrs.study import collect, privacy, report, tables

#: epsilon after 5 rounds of 10 clients at delta 1e-5 as a run would record it (any value: the
#: table must show what the run folder says)
EPSILON = {1.0: 48.8, 4.0: 8.08}


def make_dp_run(root: Path, study: str, name: str, z: float, *, record: bool = True, **kw) -> Path:
    """A FedRSCLIP run folder trained with central DP at noise multiplier ``z`` (C = 0.1, delta
    1e-5): the privacy section in params.yaml and, with ``record``, the privacy entry in metrics.json."""
    out = make_run(root, study, name, **kw)
    section = {"mode": "central", "clip_norm": 0.1, "noise_multiplier": z, "delta": 1e-5}
    params = yaml.safe_load((out / "params.yaml").read_text())
    (out / "params.yaml").write_text(yaml.safe_dump({**params, "privacy": section}))
    if record:
        metrics = json.loads((out / "metrics.json").read_text())
        metrics["privacy"] = {**section, "epsilon": EPSILON[z], "accountant": "RDP (dp-accounting)"}
        (out / "metrics.json").write_text(json.dumps(metrics))
    return out


def _plain_run(root: Path, study: str, name: str, **kw) -> Path:
    """A run without DP as run_experiment now writes it: privacy.mode none in both files."""
    out = make_run(root, study, name, **kw)
    params = yaml.safe_load((out / "params.yaml").read_text())
    (out / "params.yaml").write_text(yaml.safe_dump({**params, "privacy": {"mode": "none", "clip_norm": 1.0,
                                                                           "noise_multiplier": 1.0, "delta": 1e-5}}))
    metrics = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text(json.dumps({**metrics, "privacy": {"mode": "none"}}))
    return out


#: FedRSCLIP without DP (personalised, global) per seed; z = 1 on seeds 0-2, z = 4 on seeds 0-1
CLEAR = [(70.0, 60.0), (72.0, 61.0), (74.0, 65.0)]
Z1 = [(68.0, 50.0), (71.0, 52.0), (70.0, 51.0)]
Z4 = [(60.0, 30.0), (63.0, 33.0)]


@pytest.fixture
def study(tmp_path) -> Path:
    root = tmp_path / "results"
    for seed, (p, g) in enumerate(CLEAR):
        _plain_run(root, "1_methods", f"fedrsclip_s{seed}", seed=seed, personalised=p, global_=g, with_rounds=True)
        _plain_run(root, "1_methods", f"promptfl_s{seed}", method="promptfl", seed=seed, personalised=p - 10,
                   global_=g - 10)
    for seed, (p, g) in enumerate(Z1):
        make_dp_run(root, "6_privacy", f"z1_s{seed}", 1.0, seed=seed, personalised=p, global_=g, with_rounds=True)
    for seed, (p, g) in enumerate(Z4):
        make_dp_run(root, "6_privacy", f"z4_s{seed}", 4.0, seed=seed, personalised=p, global_=g)
    return root


def test_dp_runs_get_rows_of_their_own(study):
    runs = collect.collect_runs(study)
    mask = collect.private_runs(runs)
    assert sorted(runs.loc[mask, "run"]) == ["z1_s0", "z1_s1", "z1_s2", "z4_s0", "z4_s1"]
    assert set(runs.loc[mask, "row"]) == {"fedrsclip-dp-central-z1", "fedrsclip-dp-central-z4"}
    assert set(runs.loc[mask, "privacy"]) == {"dp-central-z1", "dp-central-z4"}
    assert set(runs.loc[~mask, "row"]) == {"fedrsclip", "promptfl"}  # runs without DP keep their rows
    assert set(runs.loc[~mask, "privacy"]) == {""}
    assert set(runs.loc[mask, "label"]) == {"FedRSCLIP (DP central, z = 1)", "FedRSCLIP (DP central, z = 4)"}
    assert runs.loc[mask, "variant"].isna().all()  # not a constraint-ablation variant


def test_privacy_columns_come_from_metrics_json(study, tmp_path):
    runs = collect.collect_runs(study).set_index("run")
    z4 = runs.loc["z4_s0"]
    assert (z4["dp_mode"], z4["noise_multiplier"], z4["clip_norm"], z4["delta"], z4["epsilon"]) == \
        ("central", 4.0, 0.1, 1e-5, 8.08)
    clear = runs.loc["fedrsclip_s0"]
    assert (clear["dp_mode"], clear["noise_multiplier"], clear["epsilon"]) == ("none", 0.0, math.inf)
    assert math.isnan(clear["clip_norm"]) and math.isnan(clear["delta"])
    # the run's own record first: metrics.json says z = 4 although params.yaml (edited later) says 2
    run = study / "6_privacy" / "z4_s0"
    params = yaml.safe_load((run / "params.yaml").read_text())
    params["privacy"]["noise_multiplier"] = 2.0
    (run / "params.yaml").write_text(yaml.safe_dump(params))
    assert collect.read_run(run, study)["noise_multiplier"] == 4.0
    # no entry in metrics.json: the settings from params.yaml, epsilon unknown
    metrics = json.loads((run / "metrics.json").read_text())
    del metrics["privacy"]
    (run / "metrics.json").write_text(json.dumps(metrics))
    row = collect.read_run(run, study)
    assert (row["dp_mode"], row["noise_multiplier"], row["row"]) == ("central", 2.0, "fedrsclip-dp-central-z2")
    assert math.isnan(row["epsilon"])
    # an older run folder with neither: no DP
    older = make_run(tmp_path / "older", "", "old")
    row = collect.read_run(older, tmp_path / "older")
    assert (row["dp_mode"], row["epsilon"], row["row"]) == ("none", math.inf, "fedrsclip")


def test_tables_leave_dp_runs_out_by_construction(study):
    """build_tables given every run (no split beforehand) tables the runs without DP only."""
    runs = collect.collect_runs(study)
    built = tables.build_tables(runs)
    assert "methods" in built and "constraints" not in built  # DP FedRSCLIP rows are no ablation variants
    for table in built.values():
        assert not table.frame["row"].astype(str).str.contains("dp-").any()
    methods = built["methods"].frame
    assert methods.loc[methods["row"] == "fedrsclip", "seeds"].iloc[0] == 3
    assert not tables.methods_runs(runs)["row"].str.contains("dp-").any()


def test_a_dp_row_mixing_clipping_norms_is_refused(study):
    run = study / "6_privacy" / "z4_s1"
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["privacy"]["clip_norm"] = 0.2
    (run / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(collect.ReportError, match=r"fedrsclip-dp-central-z4.*clip_norm \(0.1, 0.2\)"):
        privacy.privacy_table(collect.collect_runs(study))


def test_privacy_table_pairs_each_noise_level_with_the_row_without_dp(study):
    table = privacy.privacy_table(collect.collect_runs(study))
    frame = table.frame
    assert list(frame["dp_mode"]) == ["none", "central", "central"]  # no DP first, then z ascending
    assert list(frame["noise_multiplier"]) == [0.0, 1.0, 4.0]
    assert math.isinf(frame["epsilon"].iloc[0]) and list(frame["epsilon"].iloc[1:]) == [48.8, 8.08]
    assert list(frame["clip_norm"]) == ["", "0.1", "0.1"] and list(frame["delta"]) == ["", "1e-05", "1e-05"]
    assert list(frame["seeds"]) == [3, 3, 2]
    clear, z1, z4 = (frame.iloc[i] for i in range(3))
    assert clear["personalised_acc_mean"] == pytest.approx(72.0)
    assert clear["personalised_acc_pairs"] == 0  # the reference is not paired with itself
    # z = 1, personalised: d = -2, -1, -4 -> mean -7/3, sd sqrt(7/3), half-width t * sd / sqrt(3)
    half = T_975_2DF * math.sqrt(7 / 3) / math.sqrt(3)
    assert z1["personalised_acc_diff"] == pytest.approx(-7 / 3)
    assert (z1["personalised_acc_diff_low"], z1["personalised_acc_diff_high"]) == pytest.approx(
        (-7 / 3 - half, -7 / 3 + half))
    assert not z1["personalised_acc_distinguishable"]  # the interval [-6.13, 1.46] holds 0
    # global: d = -10, -9, -14 -> mean -11, sd sqrt(7), interval [-17.57, -4.43] excludes 0
    assert z1["global_acc_diff"] == pytest.approx(-11.0)
    assert z1["global_acc_diff_high"] == pytest.approx(-11.0 + T_975_2DF * math.sqrt(7) / math.sqrt(3))
    assert z1["global_acc_distinguishable"]
    # z = 4 has seeds 0 and 1 only: paired on those two (d = -10, -9)
    assert (z4["personalised_acc_pairs"], z4["personalised_acc_diff"]) == (2, pytest.approx(-9.5))


def test_privacy_markdown_names_epsilon_backbone_and_protocol(study):
    text = privacy.privacy_table(collect.collect_runs(study)).to_markdown()
    assert f"backbone `{BACKBONE}`" in text and "10 clients, all every round · 5 rounds" in text
    assert "∞ (no DP)" in text and "48.80 (δ = 1e-05)" in text and "8.08 (δ = 1e-05)" in text
    z1 = next(line for line in text.splitlines() if "48.80" in line)
    assert "-2.33" in z1 and "-11.00*" in z1 and "[-6.13, +1.46]" in z1
    assert "reference" in next(line for line in text.splitlines() if "∞ (no DP)" in line)


def test_report_keeps_dp_runs_out_of_the_other_tables(study, tmp_path, monkeypatch):
    curves = []
    draw = report.plots.mean_learning_curves
    monkeypatch.setattr(report.plots, "mean_learning_curves",
                        lambda rounds, *a, **kw: curves.append(rounds) or draw(rounds, *a, **kw))
    out = report.write_report(study, tmp_path / "out", figures=True)
    methods = out.tables["methods"].frame
    assert set(methods["row"]) == {"fedrsclip", "promptfl"}
    assert methods.loc[methods["row"] == "fedrsclip", "personalised_acc_mean"].iloc[0] == pytest.approx(72.0)
    assert "privacy" in out.tables
    assert (tmp_path / "out" / "tables" / "privacy.md").is_file()
    assert (tmp_path / "out" / "figures" / "privacy_utility.png").is_file()
    runs_csv = pd.read_csv(tmp_path / "out" / "tables" / "runs.csv")
    assert (runs_csv["row"] == "fedrsclip-dp-central-z4").sum() == 2
    assert list(runs_csv.loc[runs_csv["row"] == "fedrsclip-dp-central-z4", "epsilon"]) == [8.08, 8.08]
    # the learning curves (personalised, global) average the runs without DP only (z = 1 wrote
    # rounds.csv too), and so does the convergence table
    assert len(curves) == 2 and all(sorted(set(c["seed"])) == [0, 1, 2] for c in curves)
    assert all(len(c) == 3 * 3 and set(c["row"]) == {"fedrsclip"} for c in curves)
    assert set(out.tables["convergence"].frame["row"]) == {"fedrsclip"}


def test_report_without_dp_runs_has_no_privacy_section(tmp_path):
    root = tmp_path / "results"
    for seed, (p, g) in enumerate(CLEAR):
        _plain_run(root, "1_methods", f"fedrsclip_s{seed}", seed=seed, personalised=p, global_=g)
    assert privacy.privacy_table(collect.collect_runs(root)) is None
    out = report.write_report(root, tmp_path / "out", figures=False)
    assert "privacy" not in out.tables
    assert not (tmp_path / "out" / "tables" / "privacy.md").exists()


def test_partial_privacy_runs_render_what_is_there(tmp_path):
    """DP runs alone (no run without DP to pair with), one without a recorded epsilon."""
    root = tmp_path / "results"
    make_dp_run(root, "6_privacy", "z4_s0", 4.0, seed=0, personalised=60.0, global_=30.0)
    make_dp_run(root, "6_privacy", "z1_s0", 1.0, seed=0, personalised=68.0, global_=50.0, record=False)
    out = report.write_report(root, tmp_path / "out", figures=False)
    assert list(out.tables) == ["privacy"]  # nothing else to table
    frame = out.tables["privacy"].frame
    assert list(frame["noise_multiplier"]) == [1.0, 4.0]
    assert math.isnan(frame["epsilon"].iloc[0]) and frame["epsilon"].iloc[1] == 8.08
    assert list(frame["personalised_acc_pairs"]) == [0, 0]
    text = (tmp_path / "out" / "tables" / "privacy.md").read_text()
    assert "| ?" in text.replace("  ", " ") and "8.08 (δ = 1e-05)" in text
    assert "68.00" in text and "60.00" in text


def test_row_without_dp_is_summarised_on_the_seeds_of_its_dp_versions(study):
    """Seeds 3-4 of FedRSCLIP without DP (a methods table with more seeds) do not enter the privacy
    table: its reference mean is over the seeds the DP rows are paired on, and the methods table
    still has all five."""
    for seed, (p, g) in ((3, (90.0, 80.0)), (4, (92.0, 81.0))):
        _plain_run(study, "1_methods", f"fedrsclip_s{seed}", seed=seed, personalised=p, global_=g)
    runs = collect.collect_runs(study)
    frame = privacy.privacy_table(runs).frame
    clear = frame.iloc[0]
    assert clear["dp_mode"] == "none" and clear["seeds"] == 3 and clear["seed_list"] == "0 1 2"
    assert clear["personalised_acc_mean"] == pytest.approx(72.0)  # not (70+72+74+90+92)/5
    assert frame.iloc[1]["personalised_acc_diff"] == pytest.approx(-7 / 3)
    methods = tables.build_tables(runs)["methods"].frame
    assert methods.loc[methods["row"] == "fedrsclip", "seeds"].iloc[0] == 5


def test_report_removes_tables_and_figures_whose_runs_are_gone(study, tmp_path, capsys):
    """The privacy part moved out of the results folder: reporting it again deletes the privacy
    table and figure written before (they would read as current) and nothing the report does not
    own; with --no-figures the figures folder is left as it is."""
    import shutil

    from fedrs.cli import main

    out = tmp_path / "out"
    report.write_report(study, out, figures=True)
    for name in ("tables/privacy.md", "tables/privacy.csv", "figures/privacy_utility.png",
                 "figures/privacy_utility.pdf"):
        assert (out / name).is_file(), name
    (out / "tables" / "notes.md").write_text("mine")          # not a report name: kept
    (out / "figures" / "sketch.png").write_bytes(b"\x89PNG")  # not a report name: kept
    shutil.move(study / "6_privacy", tmp_path / "elsewhere")

    assert main(["report", str(study), "--out", str(out), "--no-figures"]) == 0
    assert not (out / "tables" / "privacy.md").exists() and not (out / "tables" / "privacy.csv").exists()
    assert (out / "figures" / "privacy_utility.png").is_file()  # figures not rebuilt: not touched
    assert "removed" in capsys.readouterr().err and (out / "tables" / "methods.md").is_file()

    again = report.write_report(study, out, figures=True)
    assert sorted(p.name for p in again.removed) == ["privacy_utility.pdf", "privacy_utility.png"]
    assert (out / "tables" / "notes.md").read_text() == "mine" and (out / "figures" / "sketch.png").is_file()
    assert (out / "figures" / "methods.png").is_file() and not again.removed[0].exists()
    assert report.write_report(study, out, figures=True).removed == []  # nothing stale the second time
