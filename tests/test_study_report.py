"""fedrs report: tables and figures from fabricated run folders (hand-computed mean ± std, paired
t-intervals and Wilson intervals; headers naming backbone and protocol; older run folders)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fedrs.study import collect, report, stats, tables, vocabulary

BACKBONE = "fedrs-rsclip-tiny/offline-0123abcd"
FEDRSCLIP = {"name": "fedrsclip", "n_ctx": 4, "private_prompts": True, "visual_prompts": True,
             "visual_tokens": 2, "upload": ["text_shared"], "lambda_dpa": 1.0, "dpa": "cosine",
             "lambda_cma": 1.0, "cma": "infonce"}
#: t_{0.975} with 2 degrees of freedom (tables of Student's t)
T_975_2DF = 4.302652729911275


def make_run(root: Path, study: str, name: str, *, method: str = "fedrsclip", seed: int = 0,
             personalised: float = 70.0, global_: float = 60.0, dataset: str = "UCMerced",
             alpha: float = 0.5, n_ctx: int = 4, rounds: int = 5, clients: int = 10,
             section: dict | None = None, upload_values: int | None = None, with_rounds: bool = False,
             backbone: str = BACKBONE, test_counts: tuple[list[int], list[int]] | None = None,
             pooled_test: int | None = None, sample_fraction: float = 1.0, **switches) -> Path:
    """A run folder shaped like run_experiment's (params.yaml + metrics.json [+ rounds.csv,
    clients.csv, split.json]). ``section``: the whole method section (else ``method`` with
    FedRSCLIP's keys and ``switches`` for fedrsclip); ``test_counts``: each client's (correct,
    total) test images at the last round."""
    out = root / study / name
    out.mkdir(parents=True)
    if section is None:
        section = ({**FEDRSCLIP, "n_ctx": n_ctx, **switches} if method == "fedrsclip"
                   else {"name": method, "n_ctx": n_ctx})
    method = section["name"]
    data = {"dataset": dataset, "num_clients": clients, "scheme": "dirichlet", "alpha": alpha, "seed": seed}
    params = {"data": data, "method": section,
              "backbone": {"model": "fedrs-rsclip-tiny", "pretrained": None, "device": "cpu"},
              "train": {"rounds": rounds, "seed": seed, "sample_fraction": sample_fraction}}
    (out / "params.yaml").write_text(yaml.safe_dump(params))
    if upload_values is None:
        upload_values = 0 if method in ("local", "fedrsclip-local") else 64 * n_ctx
    values = upload_values
    metrics = {"method": method, "backbone": backbone, "dataset": dataset,
               "split": f"dirichlet(alpha={alpha}), {clients} clients", "partition": data, "seed": seed,
               "rounds": rounds, "num_clients": clients, "final_round": rounds,
               "personalised_accuracy": personalised / 100, "personalised_accuracy_unweighted": personalised / 100,
               "global_accuracy": global_ / 100,
               "upload_values_per_client_round": values, "upload_bytes_per_client_round": 4 * values,
               "wall_time_s": 1.5}
    (out / "metrics.json").write_text(json.dumps(metrics))
    if with_rounds:
        pd.DataFrame({"round": [0, 1, 2],
                      "personalised_acc_weighted": [0.3, (personalised - 5) / 100, personalised / 100],
                      "global_acc": [0.3, (global_ - 5) / 100, global_ / 100],
                      "train_ce": [None, 1.0, 0.5]}).to_csv(out / "rounds.csv", index=False)
    if test_counts is not None:
        correct, total = test_counts
        pd.DataFrame({"round": [rounds] * len(total), "client": range(len(total)),
                      "personalised_acc": [c / t for c, t in zip(correct, total)],
                      "test_examples": total}).to_csv(out / "clients.csv", index=False)
    if pooled_test is not None:
        summary = {"num_test": pooled_test, "test_samples_per_client": list(test_counts[1]) if test_counts else [],
                   "exclusive_test_samples_per_client": list(test_counts[1]) if test_counts else [],
                   "distinct_test_samples": sum(test_counts[1]) if test_counts else 0}
        (out / "split.json").write_text(json.dumps({"format": "fedrs-partition", "summary": summary}))
    return out


@pytest.fixture
def study(tmp_path) -> Path:
    """Three rows x 3 seeds on one setting (FedRSCLIP, PromptFL at a constant -10, local-only with
    paired differences -1, +2, -4), the ablation variants on 2 seeds, prompt lengths 8 and 16."""
    root = tmp_path / "results"
    for seed, (p, g) in enumerate([(70.0, 60.0), (72.0, 61.0), (74.0, 65.0)]):
        make_run(root, "methods", f"fedrsclip_s{seed}", seed=seed, personalised=p, global_=g, with_rounds=True)
        make_run(root, "methods", f"promptfl_s{seed}", method="promptfl", seed=seed,
                 personalised=p - 10, global_=g - 10, with_rounds=True)
        make_run(root, "methods", f"local_s{seed}", method="local", seed=seed,
                 personalised=p + [-1.0, 2.0, -4.0][seed], global_=g - 20)
    variants = {"no_dpa": dict(lambda_dpa=0.0), "no_cma": dict(lambda_cma=0.0),
                "no_both": dict(lambda_dpa=0.0, lambda_cma=0.0),
                "shared_only": dict(private_prompts=False, visual_prompts=False),
                "no_visual": dict(visual_prompts=False),
                "visual_shared": dict(upload=["text_shared", "visual_shared"])}
    for k, (name, kw) in enumerate(variants.items()):
        for seed in range(2):
            make_run(root, "constraints", f"{name}_s{seed}", seed=seed, personalised=60.0 + k + 2 * seed,
                     global_=50.0 + seed, **kw)
    for n_ctx in (8, 16):
        make_run(root, "prompt_length", f"m{n_ctx}_s0", n_ctx=n_ctx, personalised=75.0, global_=66.0)
    # the full model again, same seed, in another study: counted once
    make_run(root, "constraints", "full_s0", seed=0, personalised=70.0, global_=60.0)
    return root


def test_collect_runs_reads_every_folder(study):
    runs = collect.collect_runs(study)
    assert len(runs) == 9 + 12 + 2 + 1
    assert set(runs["variant"].dropna()) == {v.label for v in vocabulary.ABLATIONS if v.in_study}
    assert set(runs["split"]) == {"Dir(0.5)"}
    assert runs["backbone"].unique().tolist() == [BACKBONE]
    row = runs[(runs["study"] == "methods") & (runs["run"] == "fedrsclip_s1")].iloc[0]
    assert (row["row"], row["method"], row["seed"], row["clients"], row["rounds"], row["prompt_length"],
            row["participation"]) == ("fedrsclip", "fedrsclip", 1, 10, 5, 4, 1.0)


def test_controls_sharing_a_registry_name_are_rows_of_their_own(tmp_path):
    root = tmp_path / "r"
    rows = {"promptfl": {"name": "promptfl", "n_ctx": 4, "visual_tokens": 0},
            "promptfl-vpt": {"name": "promptfl", "n_ctx": 4, "visual_tokens": 4},
            "fedrsclip-visual-shared": {**FEDRSCLIP, "upload": ["text_shared", "visual_shared"]},
            "centralised-matched": {**FEDRSCLIP, "name": "centralised", "upload": [], "steps_per_round": "matched"},
            "centralised": {**FEDRSCLIP, "name": "centralised", "upload": []},
            "fedrsclip-local": {**FEDRSCLIP, "name": "fedrsclip-local", "upload": []},
            "fedrsclip": FEDRSCLIP}
    for key, section in rows.items():
        make_run(root, "1_methods", f"{key}__s0", section=section)
    runs = collect.collect_runs(root)
    assert dict(zip(runs["run"], runs["row"])) == {f"{k}__s0": k for k in rows}
    t = tables.methods_table(runs)
    assert list(t.frame["label"]) == ["FedRSCLIP-local", "PromptFL", "PromptFL+VPT", "FedRSCLIP (text+visual shared)",
                                      "FedRSCLIP", "Pooled data, matched steps", "Pooled-data reference"]
    ablation = tables.constraints_table(runs)
    assert list(ablation.frame["variant"]) == ["full", "V_s uploaded"]


def test_methods_table_hand_computed_mean_std(study):
    t = tables.methods_table(collect.collect_runs(study))
    f = t.frame.set_index("row")
    # fixed row order; "V_s uploaded" of the ablation is the methods table's text+visual shared control
    assert list(t.frame["row"]) == ["local", "promptfl", "fedrsclip-visual-shared", "fedrsclip"]
    # personalised 70, 72, 74 -> mean 72, sample std 2; global 60, 61, 65 -> 62, sqrt(7)
    assert f.loc["fedrsclip", "seeds"] == 3  # the duplicate full_s0 of another study counts once
    assert f.loc["fedrsclip", "personalised_acc_mean"] == pytest.approx(72.0)
    assert f.loc["fedrsclip", "personalised_acc_std"] == pytest.approx(2.0)
    assert f.loc["fedrsclip", "global_acc_mean"] == pytest.approx(62.0)
    assert f.loc["fedrsclip", "global_acc_std"] == pytest.approx(7 ** 0.5)
    assert f.loc["local", "upload_values"] == 0
    md = t.to_markdown()
    assert "| FedRSCLIP                      | 72.00 ± 2.00 " in md and "62.00 ± 2.65" in md
    csv = t.to_csv().splitlines()
    assert csv[0].startswith("backbone,dataset,split,clients,participation,rounds,row,method,label,seeds,seed_list,"
                             "personalised_acc_mean,personalised_acc_std,personalised_acc_diff,")


def test_paired_differences_hand_computed_t_interval(study):
    """local - FedRSCLIP per seed: -1, +2, -4: mean -1, sd 3, half-width t(0.975, 2) * 3 / sqrt(3);
    the interval holds 0, so it is not marked. PromptFL: -10 on every seed, sd 0: [-10, -10], marked."""
    t = tables.methods_table(collect.collect_runs(study))
    f = t.frame.set_index("row")
    half = T_975_2DF * 3 / math.sqrt(3)
    assert f.loc["local", "personalised_acc_diff"] == pytest.approx(-1.0)
    assert f.loc["local", "personalised_acc_diff_low"] == pytest.approx(-1.0 - half)
    assert f.loc["local", "personalised_acc_diff_high"] == pytest.approx(-1.0 + half)
    assert f.loc["local", "personalised_acc_pairs"] == 3
    assert not f.loc["local", "personalised_acc_distinguishable"]
    assert f.loc["promptfl", "personalised_acc_diff_low"] == pytest.approx(-10.0)
    assert f.loc["promptfl", "personalised_acc_distinguishable"]
    assert pd.isna(f.loc["fedrsclip", "personalised_acc_diff"])  # the reference
    md = t.to_markdown()
    local = next(line for line in md.splitlines() if line.startswith("| Local-only"))
    cells = [c.strip() for c in local.strip("|").split("|")]
    assert cells[3:6] == ["-1.00", f"[{-1 - half:+.2f}, {-1 + half:+.2f}]", "no"]
    assert "*" not in local
    promptfl = next(line for line in md.splitlines() if line.startswith("| PromptFL"))
    assert "-10.00*" in promptfl and "| yes " in promptfl
    reference = next(line for line in md.splitlines() if line.startswith("| FedRSCLIP  "))
    assert "reference" in reference


def test_paired_difference_needs_two_seeds_and_pairs_by_seed():
    one = stats.paired_difference({0: 50.0}, {0: 40.0, 1: 41.0})
    assert (one.mean, one.pairs, one.distinguishable) == (10.0, 1, False) and math.isnan(one.low)
    # seeds only one side has are left out; the pairs are (1: +2) and (2: +4)
    d = stats.paired_difference({1: 52.0, 2: 54.0, 3: 99.0}, {0: 10.0, 1: 50.0, 2: 50.0})
    assert (d.mean, d.pairs) == (3.0, 2)
    half = 12.706204736174698 * math.sqrt(2) / math.sqrt(2)  # t(0.975, 1) * sd / sqrt(n)
    assert (d.low, d.high) == pytest.approx((3.0 - half, 3.0 + half))
    assert not d.distinguishable


def test_wilson_interval_hand_computed():
    lo, hi = stats.wilson_interval(70, 100)  # the textbook 70/100: [0.6041, 0.7810]
    assert (lo, hi) == pytest.approx((60.41, 78.10), abs=0.01)
    assert stats.wilson_interval(0, 20)[0] == pytest.approx(0.0, abs=1e-9)
    assert all(math.isnan(v) for v in stats.wilson_interval(5, 0))


def test_test_set_counts_and_wilson_columns(tmp_path):
    root = tmp_path / "r"
    counts = ([30, 40], [40, 60])  # 70 of 100 personalised test images
    for seed in range(2):
        make_run(root, "m", f"fedrsclip_s{seed}", seed=seed, personalised=70.0, global_=50.0,
                 test_counts=counts, pooled_test=200)
    runs = collect.collect_runs(root)
    row = runs.iloc[0]
    assert (row["personalised_correct"], row["personalised_total"]) == (70, 100)
    assert (row["global_correct"], row["global_total"]) == (100, 200)
    assert (row["test_distinct"], row["test_exclusive"]) == (100, "40 60")
    t = tables.methods_table(runs)
    f = t.frame.iloc[0]
    lo, hi = stats.wilson_interval(70, 100)
    assert f["personalised_acc_test_halfwidth"] == pytest.approx((hi - lo) / 2)
    assert f["personalised_acc_test_images"] == 100
    assert f"±{(hi - lo) / 2:.2f} (100 img)" in t.to_markdown()
    sets = tables.test_sets_table(runs)
    assert list(sets.frame["pooled_test_images"]) == [200, 200]
    assert "40 / 50 / 60 (2 clients)" in sets.to_markdown()
    out = report.write_report(root, tmp_path / "out", figures=False)
    written = pd.read_csv(tmp_path / "out" / "tables" / "runs.csv")
    assert written["personalised_wilson_low"].iloc[0] == pytest.approx(lo, abs=0.01)
    assert "config" not in written and "wall_s" not in written
    assert "test_sets" in out.tables


def test_headers_name_backbone_and_protocol(study):
    built = tables.build_tables(collect.collect_runs(study))
    for name in ("methods", "constraints", "prompt_length", "communication"):
        md = built[name].to_markdown()
        protocol_line = next(line for line in md.splitlines() if line.startswith("Protocol:"))
        assert BACKBONE in protocol_line and "10 clients" in protocol_line and "5 rounds" in protocol_line
        for heading in (line for line in md.splitlines() if line.startswith("## ")):
            assert BACKBONE in heading and "10 clients, all every round" in heading and "5 rounds" in heading, heading
            assert "seeds (" in heading or "1 seed (" in heading, heading
    methods = built["methods"].to_markdown()
    assert "· 3 seeds (0-2)" in methods


def test_protocol_label_reads_participation_and_seeds():
    part = pd.DataFrame({"clients": [20, 20], "participation": [0.25, 0.25], "rounds": [30, 30], "seed": [0, 2]})
    assert tables.protocol_label(part) == ("20 clients, 25% sampled a round · 30 rounds (last reported) · "
                                           "2 seeds (0, 2)")


def test_local_only_has_no_global_accuracy(study):
    """Local-only's server prompt never trains: its global cells read n/a, not a number."""
    runs = collect.collect_runs(study)
    assert runs[runs["method"] == "local"]["global_acc"].isna().all()
    t = tables.methods_table(runs)
    f = t.frame.set_index("row")
    assert f.loc["local", "personalised_acc_mean"] == pytest.approx(71.0)
    assert pd.isna(f.loc["local", "global_acc_mean"])
    global_part = t.to_markdown().split("## Global accuracy")[1]
    local_row = next(line for line in global_part.splitlines() if line.startswith("| Local-only"))
    assert "n/a" in local_row and "±" not in local_row
    comm = tables.communication_table(runs).to_markdown()
    local_comm = next(line for line in comm.splitlines() if "Local-only" in line)
    assert local_comm.rstrip(" |").endswith("n/a")
    rounds = collect.load_rounds(study, runs[runs["method"] == "promptfl"])
    assert rounds["global_acc"].notna().all()  # other methods keep their global curve


def test_constraints_table_variants_in_order_with_paired_difference(study):
    t = tables.constraints_table(collect.collect_runs(study))
    assert list(t.frame["variant"]) == [v.label for v in vocabulary.ABLATIONS if v.in_study]
    f = t.frame.set_index("variant")
    # w/o DPA: personalised 60, 62 -> 61 ± sqrt(2); paired to the full model's 70, 72 -> -10, -10
    assert f.loc["w/o DPA", "personalised_acc_mean"] == pytest.approx(61.0)
    assert f.loc["w/o DPA", "personalised_acc_std"] == pytest.approx(2 ** 0.5)
    assert f.loc["w/o DPA", "personalised_acc_diff"] == pytest.approx(-10.0)
    assert f.loc["w/o DPA", "personalised_acc_pairs"] == 2
    md = t.to_markdown()
    assert "| w/o DPA & CMA" in md and "| shared text prompt only" in md and "| V_s uploaded" in md


def test_prompt_length_and_communication(study):
    runs = collect.collect_runs(study)
    t = tables.prompt_length_table(runs)
    assert list(t.frame["prompt_length"]) == [4, 8, 16]
    assert list(t.frame["upload_values"]) == [256, 512, 1024]
    assert list(t.frame["seeds"]) == [3, 1, 1]
    assert "no (1 seed)" in t.to_markdown()  # one pair: a difference, no interval
    c = tables.communication_table(runs)
    assert list(c.frame["label"]) == ["Local-only", "PromptFL", "FedRSCLIP (text+visual shared)", "FedRSCLIP",
                                      "FedRSCLIP (M = 8)", "FedRSCLIP (M = 16)"]
    # bytes over the whole run: 4 bytes x 256 values x 5 rounds x every client every round
    assert c.frame.set_index("label").loc["FedRSCLIP", "upload_bytes_total"] == 4 * 256 * 5


def test_sensitivity_table(tmp_path):
    root = tmp_path / "r"
    for seed in range(2):
        make_run(root, "a", f"f{seed}", seed=seed, personalised=70.0 + seed)
        make_run(root, "b", f"kl{seed}", seed=seed, personalised=68.0 + seed, dpa="kl")
        make_run(root, "b", f"l{seed}", seed=seed, personalised=75.0 + 2 * seed, lambda_cma=10.0)
    built = tables.build_tables(collect.collect_runs(root))
    assert "constraints" not in built and "prompt_length" not in built  # the reference alone compares nothing
    t = built["sensitivity"]
    assert list(t.frame["row"]) == ["fedrsclip", "fedrsclip-dpa-kl", "fedrsclip-lambda_cma10"]
    f = t.frame.set_index("row")
    assert f.loc["fedrsclip-dpa-kl", "personalised_acc_diff"] == pytest.approx(-2.0)
    assert f.loc["fedrsclip-lambda_cma10", "personalised_acc_diff"] == pytest.approx(5.5)
    md = t.to_markdown()
    assert "| DPA: kl" in md and "| λ_CMA = 10" in md and "| defaults" in md


def test_runs_that_share_a_row_but_differ_are_refused(tmp_path):
    root = tmp_path / "r"
    make_run(root, "a", "x", seed=0)
    make_run(root, "b", "x", seed=0, section={**FEDRSCLIP, "visual_tokens": 4})  # not a row of its own
    with pytest.raises(collect.ReportError, match="differ in configuration"):
        tables.methods_table(collect.collect_runs(root))


def test_older_run_folders_still_report(tmp_path):
    """results/offline's shape: 3 rounds, no split.json / clients.csv, FedOTP's older `matching:
    average`, no participation key: every table builds, test-set cells say they are unknown."""
    root = tmp_path / "offline"
    for seed in range(2):
        make_run(root, "methods", f"fedrsclip_s{seed}", seed=seed, rounds=3, personalised=40.0 + seed)
        make_run(root, "methods", f"fedotp_s{seed}", seed=seed, rounds=3, personalised=38.0,
                 section={"name": "fedotp", "n_ctx": 4, "matching": "average", "ot_tau": 1.0})
        make_run(root, "constraints", f"no_private_s{seed}", seed=seed, rounds=3, private_prompts=False)
    for folder in root.rglob("params.yaml"):
        params = yaml.safe_load(folder.read_text())
        del params["train"]["sample_fraction"]
        folder.write_text(yaml.safe_dump(params))
    out = report.write_report(root, tmp_path / "out")
    methods = out.tables["methods"].to_markdown()
    assert "FedOTP (global+local ensemble)" in methods and "3 rounds" in methods
    assert "| -  " in methods or "| - " in methods  # no test-set counts
    assert "w/o private prompts (local visual prompt kept)" in out.tables["constraints"].to_markdown()
    assert "test_sets" not in out.tables  # nothing to say about test sets without split.json/clients.csv


def test_report_is_deterministic(study, tmp_path):
    a = report.write_report(study, tmp_path / "a")
    b = report.write_report(study, tmp_path / "b")
    names = sorted(p.relative_to(tmp_path / "a").as_posix() for p in a.files)
    assert names == sorted(p.relative_to(tmp_path / "b").as_posix() for p in b.files)
    for name in ["tables/methods.csv", "tables/methods.md", "tables/constraints.md", "tables/prompt_length.csv",
                 "tables/communication.csv", "tables/runs.csv", "figures/methods.png", "figures/methods.pdf",
                 "figures/methods_paired.png", "figures/constraints.png", "figures/constraints_paired.png",
                 "figures/prompt_length.png", "figures/accuracy_vs_communication.png", "figures/learning_curves.png"]:
        assert name in names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_report_cli_writes_into_results_dir(study, capsys):
    from fedrs.cli import main

    assert main(["report", str(study), "--no-figures"]) == 0
    assert (study / "tables" / "methods.md").read_text().startswith("# Methods")
    assert "72.00 ± 2.00" in capsys.readouterr().out


def test_report_without_runs_is_one_clear_error(tmp_path, capsys):
    from fedrs.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no run folders" in err and "fedrs sweep" in err


def test_several_backbones_get_their_own_sections(tmp_path):
    root = tmp_path / "r"
    for seed in range(2):
        make_run(root, "a", f"x{seed}", seed=seed)
        make_run(root, "b", f"y{seed}", seed=seed, backbone="fedrs-rsclip-s/offline-feedbeef")
    t = tables.methods_table(collect.collect_runs(root))
    assert len(t.frame) == 2
    md = t.to_markdown()
    assert "backbone `fedrs-rsclip-s/offline-feedbeef`" in md and f"backbone `{BACKBONE}`" in md


@pytest.mark.parametrize("value,label", [
    ({"scheme": "dirichlet", "alpha": 0.1}, "Dir(0.1)"),
    ({"scheme": "iid", "alpha": 0.5}, "IID"),
    ({"scheme": "pathological", "classes_per_client": 2, "few_shot": 16}, "Path(2 cls), 16-shot"),
    ({"scheme": "dirichlet", "alpha": 0.5, "test_scheme": "shared_pool"}, "Dir(0.5), shared-pool tests"),
    ({"scheme": "dirichlet", "alpha": 0.5, "holdout": "validation"}, "Dir(0.5), validation holdout"),
    ({"scheme": "dirichlet", "alpha": 0.5, "holdout": "test"}, "Dir(0.5)"),
    ("Dir(0.5)", "Dir(0.5)"),
])
def test_split_label(value, label):
    assert collect.split_label(value) == label


def test_fmt_mean_std_and_seeds():
    assert tables.fmt_mean_std(72.0, 2.0) == "72.00 ± 2.00"
    assert tables.fmt_mean_std(72.0, float("nan")) == "72.00"
    assert tables.fmt_mean_std(float("nan"), float("nan")) == "-"
    assert tables.fmt_seeds([2, 0, 1, 3, 4]) == "0-4"
    assert tables.fmt_seeds([0, 2]) == "0, 2"


def test_every_ablation_switch_reads_back_as_its_variant():
    assert tuple(vocabulary.ABLATION_SWITCHES) == vocabulary.ABLATION_VARIANTS
    for variant, switches in vocabulary.ABLATION_SWITCHES.items():
        assert vocabulary.row_identity({**FEDRSCLIP, **switches}).variant == variant
        assert vocabulary.variant_of(switches) == variant


def test_headline_table_puts_datasets_side_by_side_with_paired_differences(tmp_path):
    """The headline table: one row per method, per dataset its mean ± std and the paired Δ to
    FedRSCLIP with its interval (n.d. when it holds 0); other settings stay out; a row missing
    on a dataset says 'not run'; local-only has no global accuracy."""
    root = tmp_path / "results"
    for seed, p in enumerate([70.0, 72.0, 74.0]):
        for dataset, shift in (("UCMerced", 0.0), ("EuroSAT", 10.0)):
            make_run(root, "methods", f"fedrsclip_{dataset}_s{seed}", seed=seed, dataset=dataset,
                     personalised=p + shift)
            make_run(root, "methods", f"local_{dataset}_s{seed}", method="local", seed=seed, dataset=dataset,
                     personalised=p + shift + [-1.0, 2.0, -4.0][seed])
        make_run(root, "methods", f"promptfl_s{seed}", method="promptfl", seed=seed, personalised=p - 10)
        # another heterogeneity level: not the headline's
        make_run(root, "heterogeneity", f"fedrsclip_a01_s{seed}", seed=seed, alpha=0.1, personalised=10.0)
    table = tables.headline_table(collect.collect_runs(root))
    assert set(table.frame["split"]) == {"Dir(0.5)"}
    heading, frame = table.markdown_sections[0]
    assert heading.startswith("Personalised accuracy · Dir(0.5) · backbone `") and "3 seeds (0-2)" in heading
    assert list(frame.columns)[1::2] == ["UCMerced (3 seeds, 0-2): personalised (%)",
                                        "EuroSAT (3 seeds, 0-2): personalised (%)"]
    rows = {r["Method"]: list(r)[1:] for _, r in frame.iterrows()}
    half = T_975_2DF * 3 / math.sqrt(3)
    assert rows["Local-only"][0] == "71.00 ± 2.65"  # 69, 74, 70
    assert rows["Local-only"][1] == f"-1.00 [{-1 - half:+.2f}, {-1 + half:+.2f}] n.d."
    assert rows["Local-only"][2] == "81.00 ± 2.65"
    assert rows["PromptFL"][:2] == ["62.00 ± 2.00", "-10.00* [-10.00, -10.00]"]
    assert rows["PromptFL"][2:] == ["not run", ""]
    assert rows["FedRSCLIP"][1] == "reference"
    _, global_frame = table.markdown_sections[1]
    assert dict(zip(global_frame["Method"], global_frame.iloc[:, 1]))["Local-only"] == "n/a"
    assert "# Headline" in table.to_markdown()


def test_headline_cell_of_a_row_with_fewer_seeds_than_its_column_says_which(tmp_path):
    """A block still running (seed-major: FedRSCLIP on seeds 0-1, local-only on seed 0 so far): the
    column names the seeds of the dataset, so a row on fewer seeds says so in its cell, and its Δ
    is over the one seed it shares with FedRSCLIP; one seed reads '1 seed', not '1 seeds'."""
    root = tmp_path / "results"
    make_run(root, "methods", "fedrsclip_s0", seed=0, dataset="EuroSAT", personalised=80.0)
    make_run(root, "methods", "fedrsclip_s1", seed=1, dataset="EuroSAT", personalised=84.0)
    make_run(root, "methods", "local_s0", method="local", seed=0, dataset="EuroSAT", personalised=77.0)
    make_run(root, "methods", "promptfl_s0", method="promptfl", seed=0, dataset="UCMerced", personalised=50.0)
    make_run(root, "methods", "fedrsclip_ucm_s0", seed=0, dataset="UCMerced", personalised=60.0)
    _, frame = tables.headline_table(collect.collect_runs(root)).markdown_sections[0]
    assert list(frame.columns)[1::2] == ["UCMerced (1 seed, 0): personalised (%)",
                                        "EuroSAT (2 seeds, 0, 1): personalised (%)"]
    rows = {r["Method"]: list(r)[1:] for _, r in frame.iterrows()}
    assert rows["FedRSCLIP"][2] == "82.00 ± 2.83"  # both seeds: no note
    assert rows["Local-only"][2] == "77.00 (1 of 2 seeds: 0)"
    assert rows["Local-only"][3].startswith("-3.00")  # seed 0 only: 77 - 80
    assert rows["PromptFL"][0] == "50.00"  # its column has one seed too: nothing to say
