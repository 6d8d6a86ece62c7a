"""params/studies: the generator's tiers (quick and privacy strict subsets of full, the study
issue's five parts and the privacy part in order), every file a valid run config named by its row
key, the DP settings of the privacy part, and the rows of the controls."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fedrs.study import vocabulary

REPO = Path(__file__).resolve().parents[1]
STUDIES = REPO / "params" / "studies"
OFFLINE = REPO / "params" / "offline"


def _tier(tier: str) -> dict[str, dict]:
    """``{"<part>/<name>": config}`` of a tier's files on disk."""
    root = STUDIES / tier
    return {p.relative_to(root).with_suffix("").as_posix(): yaml.safe_load(p.read_text())
            for p in sorted(root.rglob("*.yaml"))}


@pytest.fixture(scope="module")
def quick() -> dict[str, dict]:
    return _tier("quick")


@pytest.fixture(scope="module")
def full() -> dict[str, dict]:
    return _tier("full")


@pytest.fixture(scope="module")
def privacy_tier() -> dict[str, dict]:
    return _tier("privacy")


@pytest.fixture(scope="module")
def make_studies():
    spec = importlib.util.spec_from_file_location("make_studies", REPO / "params" / "make_studies.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_studies"] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("make_studies", None)


def test_generated_files_equal_the_generator():
    """--check: every file as generated (and each loads as a RunConfig), none stale."""
    out = subprocess.run([sys.executable, str(REPO / "params" / "make_studies.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_check_reports_a_hand_edited_and_a_stale_file(make_studies, tmp_path, monkeypatch):
    """--check fails on a file that differs from the generator and on one it no longer writes."""
    files = make_studies.generate()
    monkeypatch.setattr(make_studies, "STUDIES", tmp_path)
    for f in files:
        f.path.parent.mkdir(parents=True, exist_ok=True)  # File.path reads the patched STUDIES
        f.path.write_text(f.render(), encoding="utf-8")
    monkeypatch.setattr(make_studies, "validate", lambda files: None)
    assert make_studies.main(["--check"]) == 0
    (tmp_path / "quick" / "1_methods" / "old__run.yaml").write_text("name: old\n")
    assert make_studies.main(["--check"]) == 1
    (tmp_path / "quick" / "1_methods" / "old__run.yaml").unlink()
    edited = files[0].path
    edited.write_text(edited.read_text() + "# edited\n")
    assert make_studies.main(["--check"]) == 1


def test_every_file_loads_as_a_run_config_named_by_its_row_key(quick, full, privacy_tier):
    from fedrs.config import from_dict
    from fedrs.runs import RunConfig

    for tier, files in (("quick", quick), ("full", full), ("privacy", privacy_tier)):
        for name, cfg in files.items():
            run = from_dict(RunConfig, cfg, f"{tier}/{name}")
            stem = name.split("/")[1]
            assert run.name == stem
            assert stem.split("__")[0] == vocabulary.row_key(cfg["method"]), name
            assert cfg["train"]["seed"] == cfg["data"]["seed"]  # a seed fixes split and initialisation


def test_quick_is_a_strict_subset_of_full(quick, full):
    assert quick and set(quick) < set(full)
    for name, cfg in quick.items():
        assert cfg == full[name], name  # the same run, so the quick tier's numbers are the full tier's


def test_quick_tier_is_the_core_of_the_methods_table_on_ucmerced(quick):
    assert {n.split("/")[0] for n in quick} == {"1_methods"}
    assert {c["data"]["dataset"] for c in quick.values()} == {"UCMerced"}
    assert {(c["data"]["scheme"], c["data"]["alpha"]) for c in quick.values()} == {("dirichlet", 0.5)}
    assert {c["train"]["seed"] for c in quick.values()} == {0, 1, 2}
    keys = {n.split("/")[1].split("__")[0] for n in quick}
    # FedRSCLIP, the published baselines, local-only at both capacities and zero-shot
    assert keys == {"zeroshot", "local", "fedrsclip-local", "promptfl", "fedpgp", "fedotp", "fedrsclip"}
    assert keys < {r.key for r in vocabulary.METHOD_ROWS}
    assert len(quick) == 3 * len(keys)


def _parts(full):
    parts: dict[str, list[dict]] = {}
    for name, cfg in full.items():
        parts.setdefault(name.split("/")[0], []).append(cfg)
    return parts


def _keys(cfgs):
    return {vocabulary.row_key(c["method"]) for c in cfgs}


def test_full_tier_has_the_issue_s_five_parts_and_the_privacy_part_in_order(full):
    parts = _parts(full)
    assert sorted(parts) == ["1_methods", "2_constraints", "3_heterogeneity", "4_realism", "5_sensitivity",
                             "6_privacy"]
    seeds = {part: {c["train"]["seed"] for c in cfgs} for part, cfgs in parts.items()}
    assert seeds == {"1_methods": {0, 1, 2, 3, 4}, "2_constraints": {0, 1, 2, 3, 4},
                     "3_heterogeneity": {0, 1, 2}, "4_realism": {0, 1, 2}, "5_sensitivity": {0, 1, 2},
                     "6_privacy": {0, 1, 2}}
    assert all("privacy" not in c for part, cfgs in parts.items() if part != "6_privacy" for c in cfgs)
    six = {"fedrsclip", "promptfl", "fedpgp", "fedotp", "local", "fedrsclip-local"}

    methods = parts["1_methods"]
    assert _keys(methods) == {r.key for r in vocabulary.METHOD_ROWS}
    assert {c["data"]["dataset"] for c in methods} == set(vocabulary.STUDY_DATASETS)
    assert len(methods) == len(vocabulary.METHOD_ROWS) * 4 * 5

    constraints = parts["2_constraints"]
    # the full model and "V_s uploaded" run once, in part 1
    assert _keys(constraints) == {"fedrsclip-no-dpa", "fedrsclip-no-cma", "fedrsclip-no-dpa-cma",
                                  "fedrsclip-shared-only", "fedrsclip-no-visual"}
    assert {c["data"]["dataset"] for c in constraints} == {"UCMerced", "EuroSAT"}

    heterogeneity = parts["3_heterogeneity"]
    assert _keys(heterogeneity) == six
    assert {(c["data"]["dataset"], c["data"]["scheme"], c["data"].get("alpha")) for c in heterogeneity} == {
        ("UCMerced", "iid", None), ("UCMerced", "dirichlet", 0.1), ("EuroSAT", "iid", None),
        ("EuroSAT", "dirichlet", 0.1)}

    realism = parts["4_realism"]
    assert _keys(realism) == six
    partial = [c for c in realism if c["train"]["sample_fraction"] < 1]
    assert {(c["data"]["num_clients"], c["train"]["sample_fraction"]) for c in partial} == {(20, 0.25)}
    assert {c["data"]["few_shot"] for c in realism if c["data"].get("few_shot")} == {16}
    cross = [c for c in realism if c["data"].get("cross_domain")]
    assert {c["data"]["dataset"] for c in cross} == {vocabulary.CROSS_DOMAIN}
    assert set(cross[0]["data"]["cross_domain"]) == set(vocabulary.STUDY_DATASETS)
    b2n = [c for c in realism if c["data"].get("class_split") == "base-to-novel"]
    assert {c["data"]["dataset"] for c in b2n} == {"UCMerced", "EuroSAT"} and len(b2n) == 6 * 2 * 3
    unseen = [c for c in realism if c["data"].get("unseen_clients")]
    assert {(c["data"]["num_clients"], c["data"]["unseen_clients"]) for c in unseen} == {(10, 2)}
    # partial, few-shot, base-to-novel and unseen clients on two datasets, cross-domain: 9 settings
    assert len(realism) == 6 * 9 * 3

    sensitivity = parts["5_sensitivity"]
    assert {c["data"]["dataset"] for c in sensitivity} == {"UCMerced"}
    methods_of = [c["method"] for c in sensitivity]
    assert {m["dpa"] for m in methods_of} == set(vocabulary.DPA_KINDS)
    assert {m["n_ctx"] for m in methods_of} | {4} == set(vocabulary.PROMPT_LENGTHS)
    assert {m["lambda_dpa"] for m in methods_of} == {m["lambda_cma"] for m in methods_of} == set(vocabulary.LAMBDAS)
    assert "fedrsclip" not in _keys(sensitivity)  # the defaults are part 1's run


def _epsilon(cfg: dict) -> float:
    from fedrs.config import from_dict
    from fedrs.federated.dp import epsilon_spent
    from fedrs.runs import PrivacyConfig

    clients = cfg["data"]["num_clients"]
    return epsilon_spent(from_dict(PrivacyConfig, cfg["privacy"]), clients,
                         round(clients * cfg["train"]["sample_fraction"]), cfg["train"]["rounds"])


def test_privacy_part_is_fedrsclip_under_central_dp_at_three_noise_levels(full):
    private = _parts(full)["6_privacy"]
    part1 = {n.split("/")[1]: c for n, c in full.items() if n.startswith("1_methods/")}
    assert len(private) == 3 * 3
    assert _keys(private) == {"fedrsclip"}
    levels = {}
    for cfg in private:
        dp = cfg["privacy"]
        assert (dp["mode"], dp["delta"]) == ("central", 1e-5)
        assert dp["clip_norm"] == 0.04  # the measured median update norm (make_studies.PRIVACY_CLIP_NORM)
        z, seed = dp["noise_multiplier"], cfg["train"]["seed"]
        levels.setdefault(z, set()).add(seed)
        # the run is part 1's FedRSCLIP of the same seed, plus the privacy section
        clear = part1[f"fedrsclip__ucmerced__dir0.5__s{seed}"]
        assert {k: v for k, v in cfg.items() if k not in ("name", "privacy")} == \
            {k: v for k, v in clear.items() if k != "name"}
        assert cfg["name"] == f"fedrsclip__ucmerced__dir0.5-dp-z{z:g}__s{seed}"
    assert levels == {1.0: {0, 1, 2}, 4.0: {0, 1, 2}, 25.0: {0, 1, 2}}
    # strong, moderate and weak privacy after R rounds by the runs' own accountant
    epsilons = {cfg["privacy"]["noise_multiplier"]: _epsilon(cfg) for cfg in private}
    assert epsilons[25.0] == pytest.approx(1.08, abs=0.01)
    assert epsilons[4.0] == pytest.approx(8.55, abs=0.01)
    assert epsilons[1.0] == pytest.approx(52.20, abs=0.01)


def test_dp_files_name_their_epsilon_in_the_header():
    path = STUDIES / "full" / "6_privacy" / "fedrsclip__ucmerced__dir0.5-dp-z4__s0.yaml"
    assert "# central DP: epsilon 8.55 at delta 1e-05 after 44 rounds" in path.read_text()


def test_privacy_tier_is_the_privacy_part_and_its_non_dp_pairs(privacy_tier, full, quick):
    assert privacy_tier and set(privacy_tier) < set(full)
    for name, cfg in privacy_tier.items():
        assert cfg == full[name], name
    clear = {n for n in privacy_tier if n.startswith("1_methods/")}
    assert clear == {f"1_methods/fedrsclip__ucmerced__dir0.5__s{s}" for s in range(3)}
    assert {n for n in privacy_tier if n not in clear} == {n for n in full if n.startswith("6_privacy/")}
    assert not any("privacy" in c for c in quick.values())


def test_a_noise_level_off_its_epsilon_target_is_refused(make_studies, monkeypatch):
    """R or the clients changed: the generator refuses to write a z whose epsilon left its target."""
    monkeypatch.setattr(make_studies, "PRIVACY_LEVELS", {25.0: 1.0, 4.0: 30.0, 1.0: 50.0})
    with pytest.raises(SystemExit, match="noise multiplier 4 now spends epsilon 8.55"):
        make_studies.tier_files("privacy")


def test_update_norms_are_measured_without_changing_the_run(make_studies, tmp_path, monkeypatch):
    """--measure-update-norms records each client's update norm per round, and the run it measures
    is the run without the measurement (same final accuracies)."""
    import json

    from test_federated import make_dataset, tiny_config

    from fedrs.experiment import run_experiment
    from fedrs.runs import load_run_config

    monkeypatch.setenv("FEDRS_CACHE", str(tmp_path / "cache"))
    synth = make_dataset(tmp_path / "synth")
    params = tmp_path / "tiny.yaml"
    params.write_text(yaml.safe_dump(tiny_config(train={"rounds": 2}, eval={"every": 2})))
    norms = make_studies.measure_update_norms(params, tmp_path / "measured", datasets=[synth])
    assert [len(r) for r in norms] == [3, 3]  # 2 rounds x 3 clients
    assert all(n > 0 for r in norms for n in r)
    assert "6 client updates over 2 rounds: median" in make_studies.norms_summary(norms)
    run_experiment(load_run_config(params), tmp_path / "plain", progress=False, datasets=[synth])
    measured, plain = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("measured", "plain"))
    assert (measured["personalised_accuracy"], measured["global_accuracy"]) == \
        (plain["personalised_accuracy"], plain["global_accuracy"])


def test_both_tiers_share_one_base_with_rounds_in_one_place(quick, full):
    base = yaml.safe_load((STUDIES / "_base" / "study.yaml").read_text())
    assert "pilot" in (STUDIES / "_base" / "study.yaml").read_text()  # the comment says who decides R
    for cfg in [*quick.values(), *full.values()]:
        assert cfg["train"]["rounds"] == base["train"]["rounds"] >= 20
        assert cfg["train"]["lr_schedule"] == "cosine"
        assert cfg["eval"]["every"] == 2
        assert cfg["backbone"] == base["backbone"]


def test_the_stale_offline_grid_is_gone():
    assert not (STUDIES / "offline").exists()
    assert not (STUDIES / "_base" / "offline.yaml").exists()
    assert (STUDIES / "smoke" / "fedrsclip_tiny.yaml").is_file()


@pytest.mark.parametrize("source, key, label", [
    ("fedrsclip_local", "fedrsclip-local", "FedRSCLIP-local"),
    ("promptfl_vpt", "promptfl-vpt", "PromptFL+VPT"),
    ("fedrsclip_visual_shared", "fedrsclip-visual-shared", "FedRSCLIP (text+visual shared)"),
    ("fedrsclip_shared_only", "fedrsclip-shared-only", "FedRSCLIP (shared text prompt only)"),
    ("centralised_matched", "centralised-matched", "Pooled data, matched steps"),
    ("centralised", "centralised", "Pooled-data reference"),
    ("promptfl", "promptfl", "PromptFL"),
    ("fedpgp", "fedpgp", "FedPGP"),
    ("fedotp", "fedotp", "FedOTP"),
    ("fedrsclip", "fedrsclip", "FedRSCLIP"),
])
def test_row_keys_of_the_controls_and_baselines(source, key, label):
    section = yaml.safe_load((OFFLINE / f"{source}_ucmerced.yaml").read_text())["method"]
    identity = vocabulary.row_identity(section)
    assert (identity.key, identity.label) == (key, label)


def test_rows_that_share_a_registry_name_differ_only_by_their_section():
    main = yaml.safe_load((OFFLINE / "fedrsclip_ucmerced.yaml").read_text())["method"]
    ensemble = vocabulary.row_identity({"name": "fedotp", "matching": "ensemble"})
    assert (ensemble.key, ensemble.label) == ("fedotp-ensemble", "FedOTP (global+local ensemble)")
    assert vocabulary.row_key({"name": "fedotp", "matching": "average"}) == "fedotp-ensemble"  # older runs
    assert vocabulary.row_key({"name": "promptfl", "visual_tokens": 0}) == "promptfl"
    private = vocabulary.row_identity({**main, "private_prompts": False})
    assert private.variant == "w/o private prompts (local visual prompt kept)"
    shared = vocabulary.row_identity({**main, "private_prompts": False, "visual_prompts": False})
    assert (shared.key, shared.variant) == ("fedrsclip-shared-only", "shared text prompt only")
    assert vocabulary.row_identity({**main, "n_ctx": 8}).key == "fedrsclip-m8"
    assert vocabulary.row_identity({**main, "lambda_cma": 10.0}).label == "FedRSCLIP (λ_CMA = 10)"
    assert vocabulary.row_identity({**main, "dpa": "kl"}).variant is None  # not an ablation row


def test_a_dp_run_has_a_row_of_its_own_and_every_other_row_keeps_its_key(full):
    """DP is part of the row identity (the report keeps DP runs apart by construction); a privacy
    section without DP changes nothing, so every non-DP key (and file name) stays as it was."""
    for name, cfg in full.items():
        clear = vocabulary.row_key(cfg["method"])
        key = vocabulary.row_key(cfg["method"], cfg.get("privacy"))
        assert vocabulary.row_key(cfg["method"], {"mode": "none", "noise_multiplier": 4.0}) == clear
        if "privacy" not in cfg:
            assert key == clear == name.split("/")[1].split("__")[0], name
        else:
            z = cfg["privacy"]["noise_multiplier"]
            identity = vocabulary.row_identity(cfg["method"], cfg["privacy"])
            assert (key, identity.privacy, identity.clear_key) == (f"{clear}-dp-central-z{z:g}", f"dp-central-z{z:g}",
                                                                   clear)
            assert identity.label == f"FedRSCLIP (DP central, z = {z:g})" and identity.variant is None
            assert vocabulary.clear_label(identity.label, identity.privacy) == "FedRSCLIP"
    main = yaml.safe_load((OFFLINE / "fedrsclip_ucmerced.yaml").read_text())["method"]
    local = vocabulary.row_identity({**main, "lambda_dpa": 0.0}, {"mode": "local", "noise_multiplier": 0.5})
    assert (local.key, local.label) == ("fedrsclip-no-dpa-dp-local-z0.5", "FedRSCLIP (w/o DPA, DP local, z = 0.5)")
    assert vocabulary.clear_label(local.label, local.privacy) == "FedRSCLIP (w/o DPA)"


def test_the_constraint_ablation_is_the_issue_s_list():
    generated = [v.label for v in vocabulary.ABLATIONS if v.in_study]
    assert generated == ["full", "w/o DPA", "w/o CMA", "w/o DPA & CMA", "shared text prompt only",
                         "w/o visual prompts", "V_s uploaded"]
    assert vocabulary.ABLATION_SWITCHES["shared text prompt only"] == {"private_prompts": False,
                                                                      "visual_prompts": False}


def test_estimate_prints_every_tier_and_part():
    out = subprocess.run([sys.executable, str(REPO / "params" / "make_studies.py"), "--estimate"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "quick: 21 runs" in out.stdout
    for part in ("1_methods", "2_constraints", "3_heterogeneity", "4_realism", "5_sensitivity", "6_privacy"):
        assert part in out.stdout
    assert "privacy: 12 runs" in out.stdout
    assert "noise multiplier 4: epsilon 8.55 at delta 1e-05 after 44 rounds" in out.stdout


def test_cost_model_scales_with_images_participation_and_encoder():
    from fedrs.study.cost import estimate_run_seconds

    base = {"data": {"dataset": "UCMerced", "num_clients": 10}, "train": {"rounds": 20}, "eval": {"every": 2},
            "method": {"name": "fedrsclip"}}
    text = {**base, "method": {"name": "promptfl"}}
    vpt = {**base, "method": {"name": "promptfl", "visual_tokens": 4}}
    eurosat = {**base, "data": {"dataset": "EuroSAT", "num_clients": 10}}
    partial = {**base, "train": {"rounds": 20, "sample_fraction": 0.25}}
    matched = {**base, "method": {"name": "centralised", "steps_per_round": "matched"}}
    ucm = estimate_run_seconds(base)
    assert estimate_run_seconds(text) < estimate_run_seconds(vpt) == pytest.approx(ucm)
    assert estimate_run_seconds(eurosat) == pytest.approx(ucm * 6000 / 2100)
    assert estimate_run_seconds(matched) < estimate_run_seconds(partial) < ucm


def test_round_budget_is_what_the_committed_validation_pilot_gives():
    """R in the study base equals the study's rule applied to the committed validation pilot's curves
    (results/pilot/validation; the test-split curves of results/pilot/methods do not enter it):
    changing R, or the pilot, without the other fails here (R = 40 once drifted from its pilot
    unnoticed)."""
    from fedrs.study import collect, convergence

    base = yaml.safe_load((STUDIES / "_base" / "study.yaml").read_text())
    pilot = REPO / "results" / "pilot"
    runs = collect.collect_runs(pilot)
    frame = convergence.convergence_frame(collect.load_rounds(pilot, runs))
    validation = frame[frame["split"].str.contains(convergence.VALIDATION_SPLIT, regex=False)]
    assert len(validation) >= 8 * 2 - 2  # 8 runs, a personalised and a global curve each (local-only: no global)
    assert convergence.rounds_by_rule(validation) == base["train"]["rounds"]
