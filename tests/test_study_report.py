"""fedrs report: tables and figures from fabricated run folders (hand-computed mean ± std)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fedrs.study import collect, report, tables, vocabulary

BACKBONE = "fedrs-rsclip-tiny/offline-0123abcd"


def make_run(root: Path, study: str, name: str, *, method: str = "fedrsclip", seed: int = 0,
             personalised: float = 70.0, global_: float = 60.0, dataset: str = "UCMerced",
             alpha: float = 0.5, n_ctx: int = 4, rounds: int = 5, clients: int = 10,
             lambda_dpa: float = 1.0, lambda_cma: float = 1.0, private: bool = True,
             visual: bool = True, upload_values: int | None = None, with_rounds: bool = False,
             backbone: str = BACKBONE) -> Path:
    """A run folder shaped like run_experiment's (params.yaml + metrics.json [+ rounds.csv])."""
    out = root / study / name
    out.mkdir(parents=True)
    method_cfg = {"name": method, "n_ctx": n_ctx}
    if method == "fedrsclip":
        method_cfg.update(lambda_dpa=lambda_dpa, lambda_cma=lambda_cma, private_prompts=private,
                          visual_prompts=visual)
    data = {"dataset": dataset, "num_clients": clients, "scheme": "dirichlet", "alpha": alpha, "seed": seed}
    params = {"data": data, "method": method_cfg,
              "backbone": {"model": "fedrs-rsclip-tiny", "pretrained": None, "device": "cpu"},
              "train": {"rounds": rounds, "seed": seed}}
    (out / "params.yaml").write_text(yaml.safe_dump(params))
    values = (64 * n_ctx if method != "local" else 0) if upload_values is None else upload_values
    metrics = {"method": method, "backbone": backbone, "dataset": dataset,
               "split": f"dirichlet(alpha={alpha}), {clients} clients", "partition": data, "seed": seed,
               "rounds": rounds, "num_clients": clients,
               "personalised_accuracy": personalised / 100, "personalised_accuracy_unweighted": personalised / 100,
               "global_accuracy": global_ / 100,
               "upload_values_per_client_round": values, "upload_bytes_per_client_round": 4 * values,
               "wall_time_s": 1.5}
    (out / "metrics.json").write_text(json.dumps(metrics))
    if with_rounds:
        pd.DataFrame({"round": [0, 1, 2], "personalised_acc_weighted": [0.3, (personalised - 5) / 100, personalised / 100],
                      "global_acc": [0.3, (global_ - 5) / 100, global_ / 100],
                      "train_ce": [None, 1.0, 0.5]}).to_csv(out / "rounds.csv", index=False)
    return out


@pytest.fixture
def study(tmp_path) -> Path:
    """Two methods x 3 seeds, the constraint variants, prompt lengths 8 and 16, on one setting."""
    root = tmp_path / "results"
    for seed, (p, g) in enumerate([(70.0, 60.0), (72.0, 61.0), (74.0, 65.0)]):
        make_run(root, "methods", f"fedrsclip_s{seed}", seed=seed, personalised=p, global_=g, with_rounds=True)
        make_run(root, "methods", f"promptfl_s{seed}", method="promptfl", seed=seed,
                 personalised=p - 10, global_=g - 10, with_rounds=True)
        make_run(root, "methods", f"local_s{seed}", method="local", seed=seed, personalised=p - 20, global_=g - 20)
    variants = {"no_dpa": dict(lambda_dpa=0.0), "no_cma": dict(lambda_cma=0.0),
                "no_both": dict(lambda_dpa=0.0, lambda_cma=0.0), "no_private": dict(private=False),
                "no_visual": dict(visual=False)}
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
    assert len(runs) == 9 + 10 + 2 + 1
    assert set(runs["variant"]) == set(vocabulary.ABLATION_VARIANTS)
    assert set(runs["split"]) == {"Dir(0.5)"}
    assert runs["backbone"].unique().tolist() == [BACKBONE]
    row = runs[(runs["study"] == "methods") & (runs["run"] == "fedrsclip_s1")].iloc[0]
    assert (row["method"], row["seed"], row["clients"], row["rounds"], row["prompt_length"]) == ("fedrsclip", 1, 10, 5, 4)


def test_methods_table_hand_computed_mean_std(study):
    t = tables.methods_table(collect.collect_runs(study))
    f = t.frame.set_index("method")
    assert list(t.frame["method"]) == ["local", "promptfl", "fedrsclip"]  # fixed method order
    # personalised 70, 72, 74 -> mean 72, sample std 2; global 60, 61, 65 -> 62, sqrt(7)
    assert f.loc["fedrsclip", "seeds"] == 3  # the duplicate full_s0 of another study counts once
    assert f.loc["fedrsclip", "personalised_acc_mean"] == pytest.approx(72.0)
    assert f.loc["fedrsclip", "personalised_acc_std"] == pytest.approx(2.0)
    assert f.loc["fedrsclip", "global_acc_mean"] == pytest.approx(62.0)
    assert f.loc["fedrsclip", "global_acc_std"] == pytest.approx(7 ** 0.5)
    assert f.loc["local", "upload_values"] == 0
    md = t.to_markdown()
    assert "| FedRSCLIP  | 72.00 ± 2.00 " in md and "62.00 ± 2.65" in md
    assert BACKBONE in md
    csv = t.to_csv().splitlines()
    assert csv[0].startswith("backbone,dataset,split,clients,rounds,method,method_label,seeds,")
    assert "72.00,2.00,62.00,2.65" in csv[3]


def test_local_only_has_no_global_accuracy(study):
    """Local-only's server prompt never trains: its global cells read n/a, not a number."""
    runs = collect.collect_runs(study)
    assert runs[runs["method"] == "local"]["global_acc"].isna().all()
    assert runs[runs["method"] == "local"]["personalised_acc"].notna().all()
    t = tables.methods_table(runs)
    f = t.frame.set_index("method")
    assert f.loc["local", "personalised_acc_mean"] == pytest.approx(52.0)
    assert pd.isna(f.loc["local", "global_acc_mean"])
    md = t.to_markdown()
    global_part = md.split("## Global accuracy")[1]
    local_row = next(line for line in global_part.splitlines() if line.startswith("| Local-only"))
    assert "n/a" in local_row and "±" not in local_row
    comm = tables.communication_table(runs).to_markdown()
    local_comm = next(line for line in comm.splitlines() if "Local-only" in line)
    assert local_comm.rstrip(" |").endswith("n/a")
    rounds = collect.load_rounds(study, runs[runs["method"] == "promptfl"])
    assert rounds["global_acc"].notna().all()  # other methods keep their global curve


def test_constraints_table_variants_in_order_with_delta(study):
    t = tables.constraints_table(collect.collect_runs(study))
    assert list(t.frame["variant"]) == list(vocabulary.ABLATION_VARIANTS)
    f = t.frame.set_index("variant")
    # w/o DPA: personalised 60, 62 -> 61 ± sqrt(2); delta to full 72
    assert f.loc["w/o DPA", "personalised_acc_mean"] == pytest.approx(61.0)
    assert f.loc["w/o DPA", "personalised_acc_std"] == pytest.approx(2 ** 0.5)
    assert f.loc["w/o DPA", "personalised_acc_delta"] == pytest.approx(-11.0)
    assert f.loc["full", "personalised_acc_delta"] == pytest.approx(0.0)
    assert "| w/o DPA & CMA" in t.to_markdown()


def test_prompt_length_and_communication(study):
    runs = collect.collect_runs(study)
    t = tables.prompt_length_table(runs)
    assert list(t.frame["prompt_length"]) == [4, 8, 16]
    assert list(t.frame["upload_values"]) == [256, 512, 1024]
    assert list(t.frame["seeds"]) == [3, 1, 1]
    c = tables.communication_table(runs)
    assert list(c.frame["label"]) == ["Local-only", "PromptFL", "FedRSCLIP", "FedRSCLIP (M=8)", "FedRSCLIP (M=16)"]
    # bytes over the whole run: 4 bytes x 256 values x 5 rounds
    assert c.frame.set_index("label").loc["FedRSCLIP", "upload_bytes_total"] == 4 * 256 * 5


def test_report_is_deterministic(study, tmp_path):
    a = report.write_report(study, tmp_path / "a")
    b = report.write_report(study, tmp_path / "b")
    names = sorted(p.relative_to(tmp_path / "a").as_posix() for p in a.files)
    assert names == sorted(p.relative_to(tmp_path / "b").as_posix() for p in b.files)
    for name in ["tables/methods.csv", "tables/methods.md", "tables/constraints.md", "tables/prompt_length.csv",
                 "tables/communication.csv", "tables/runs.csv", "figures/methods.png", "figures/methods.pdf",
                 "figures/constraints.png", "figures/prompt_length.png",
                 "figures/accuracy_vs_communication.png", "figures/learning_curves.png"]:
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


def test_a_run_without_params_is_one_clear_error(study):
    (study / "methods" / "local_s0" / "params.yaml").unlink()
    with pytest.raises(collect.ReportError, match="without params.yaml"):
        collect.collect_runs(study)


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
    ("Dir(0.5)", "Dir(0.5)"),
])
def test_split_label(value, label):
    assert collect.split_label(value) == label


def test_fmt_mean_std():
    assert tables.fmt_mean_std(72.0, 2.0) == "72.00 ± 2.00"
    assert tables.fmt_mean_std(72.0, float("nan")) == "72.00"
    assert tables.fmt_mean_std(float("nan"), float("nan")) == "-"


def test_every_ablation_switch_reads_back_as_its_variant():
    assert tuple(vocabulary.ABLATION_SWITCHES) == vocabulary.ABLATION_VARIANTS
    for variant, switches in vocabulary.ABLATION_SWITCHES.items():
        params = {"method.name": "fedrsclip", "method.lambda_dpa": 1.0, "method.lambda_cma": 1.0,
                  "method.private_prompts": True, "method.visual_prompts": True}
        params.update({f"method.{k}": v for k, v in switches.items()})
        assert vocabulary.variant_of(collect.method_switches(params)) == variant
