"""The PETL table over seeds: each row result on disk as soon as it is scored, resumed row by row,
refused when another configuration wrote it, and the table (mean +- std, paired t-intervals to
MRS-Adapter + HMMC) regenerated from the files alone."""

import json
import math

import pytest
import torch
from scipy import stats
from test_retrieval_variants import tiny_set

import fedrs.retrieval.compare as compare
import fedrs.retrieval.petl as petl
from fedrs.backbone.factory import create_backbone
from fedrs.config import ConfigError
from fedrs.retrieval.compare import HEADLINE, PETL_ROWS
from fedrs.retrieval.data import RetrievalSet
from fedrs.retrieval.petl import (
    PETLError,
    PETLStudyConfig,
    load_petl_config,
    petl_summary,
    run_petl,
    write_petl_table,
)

ROWS = ["zero-shot", "adapter", HEADLINE]


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


@pytest.fixture
def tiny_sets(tiny, monkeypatch):
    """RetrievalSet.load returns the tiny sets (10 training images, 4 test images)."""
    sets = {"train+val": tiny_set(tiny, n_images=10), "test": tiny_set(tiny, n_images=4)}
    sets["test"].description = "tiny test: 4 images"
    loads = []

    def fake_load(dataset, split, backbone, limit=None, root=None):
        loads.append(split)
        return sets[split]

    monkeypatch.setattr(RetrievalSet, "load", staticmethod(fake_load))
    return loads


def tiny_study(**kw) -> PETLStudyConfig:
    base = {"dataset": "tiny", "adapter": {"bottleneck": 16, "shared_dim": 8}, "train": {"epochs": 1, "batch_size": 4},
            "rows": ROWS, "seeds": [0, 1]}
    from fedrs.config import from_dict
    return from_dict(PETLStudyConfig, {**base, **kw}, "petl")


def count_rows(monkeypatch) -> list[str]:
    trained, real = [], compare.train_row

    def spy(backbone, row, *args, **kw):
        trained.append(row if isinstance(row, str) else row.name)
        return real(backbone, row, *args, **kw)

    monkeypatch.setattr(petl, "train_row", spy)
    return trained


def test_each_seed_and_row_is_written_and_a_rerun_trains_only_what_is_missing(tiny, tiny_sets, tmp_path,
                                                                                 monkeypatch):
    trained = count_rows(monkeypatch)
    written = []
    folder = run_petl(tiny_study(), out=tmp_path, backbone=tiny, max_steps=1,
                      on_row=lambda path, row: written.append(path.relative_to(tmp_path).as_posix()))
    assert folder == tmp_path / "tiny"
    assert written == [f"tiny/s{s}/{r}.json" for s in (0, 1) for r in ROWS]  # on disk the moment it is scored
    assert trained == ROWS * 2
    stored = json.loads((folder / "s1" / f"{HEADLINE}.json").read_text())
    assert stored["row"]["seed"] == 1 and stored["key"]["config"]["validation"]["seed"] == 1
    assert stored["row"]["test_set"] == "tiny test: 4 images" and stored["row"]["backbone"] == tiny.label
    assert "git_commit" in stored["env"]
    assert (folder / "petl_table.md").is_file() and (folder / "petl_table.csv").is_file()

    # an interrupted run: the row in progress was never written; a rerun trains that row alone
    (folder / "s1" / "adapter.json").unlink()
    trained.clear()
    tiny_sets.clear()
    run_petl(tiny_study(), out=tmp_path, backbone=tiny, max_steps=1)
    assert trained == ["adapter"]
    trained.clear()
    tiny_sets.clear()
    run_petl(tiny_study(), out=tmp_path, backbone=tiny, max_steps=1)
    assert trained == [] and tiny_sets == []  # nothing to do: not even the images are loaded

    # a third seed adds its rows; the others stay as they are
    before = (folder / "s0" / f"{HEADLINE}.json").read_text()
    run_petl(tiny_study(seeds=[0, 1, 2]), out=tmp_path, backbone=tiny, max_steps=1)
    assert trained == ROWS and (folder / "s0" / f"{HEADLINE}.json").read_text() == before
    summary = petl_summary(petl.read_petl_rows(folder))
    assert {r["method"]: r["n_seeds"] for r in summary} == {m: 3 for m in ROWS}


def test_a_row_file_of_another_configuration_is_refused(tiny, tiny_sets, tmp_path):
    run_petl(tiny_study(seeds=[0], rows=[HEADLINE]), out=tmp_path, backbone=tiny, max_steps=1)
    with pytest.raises(PETLError, match=r"another configuration \(config.train.epochs: 1 on disk, 2 now"):
        run_petl(tiny_study(seeds=[0], rows=[HEADLINE], train={"epochs": 2, "batch_size": 4}), out=tmp_path,
                 backbone=tiny, max_steps=1)
    with pytest.raises(PETLError, match="not among the configuration's seeds"):
        run_petl(tiny_study(seeds=[0], rows=[HEADLINE]), out=tmp_path, backbone=tiny, seeds=[5])


def fake_result(method: str, seed: int, mr: float, **kw) -> dict:
    row = {"method": method, "label": PETL_ROWS[method].label, "seed": seed, "trainable_params": 10,
           "lr": 0.01, "lr_source": "chosen on validation (test)", "epochs": 5, "backbone": "b", "dataset": "D",
           "test_set": "D test: 7 images", "train_set": "D train: 20 images",
           "validation": f"val (20% of the train images, seed {seed}): 4 of 20", "note": "",
           "final_val_mR": 1.0, "train_s": 2.0}
    for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"):
        row[k] = mr
    row.update({"mR": mr, "mR_argsort": mr + 1, "mR_optimistic": mr + 2, **kw})
    return row


def write_results(folder, results):
    for r in results:
        path = folder / f"s{r['seed']}" / f"{r['method']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"key": {}, "row": r}))


def test_table_is_mean_std_and_paired_t_intervals_to_the_headline_from_the_files_alone(tmp_path):
    head = {0: 20.0, 1: 22.0, 2: 27.0}
    other = {0: 18.0, 1: 21.0, 2: 23.0}
    write_results(tmp_path, [fake_result(HEADLINE, s, v) for s, v in head.items()]
                  + [fake_result("adapter", s, v) for s, v in other.items()]
                  + [fake_result("zero-shot", 0, 5.0, note="in-domain: pretrained on D")])
    csv, md = write_petl_table(tmp_path)
    by = {r["method"]: r for r in petl_summary(petl.read_petl_rows(tmp_path))}
    assert list(by) == ["zero-shot", "adapter", HEADLINE]  # table order
    a = by["adapter"]
    assert a["mR_mean"] == pytest.approx(sum(other.values()) / 3)
    assert a["mR_std"] == pytest.approx(stats.tstd(list(other.values())))
    d = [other[s] - head[s] for s in head]  # -2, -1, -4
    half = stats.t.ppf(0.975, 2) * stats.tstd(d) / math.sqrt(3)
    assert (a["d_mR"], a["d_mR_low"], a["d_mR_high"]) == pytest.approx((sum(d) / 3, sum(d) / 3 - half,
                                                                        sum(d) / 3 + half))
    assert a["d_mR_argsort"] == pytest.approx(sum(d) / 3)  # each convention paired on its own column
    assert by[HEADLINE]["d_mR"] == 0 and by["zero-shot"]["d_mR_pairs"] == 1
    text = md.read_text()
    assert f"{a['mR_mean']:.2f} ± {a['mR_std']:.2f}" in text
    assert f"{sum(d) / 3:+.2f} [{sum(d) / 3 - half:+.2f}, {sum(d) / 3 + half:+.2f}]" in text
    assert "(1 seed: no interval)" in text and "in-domain: pretrained on D" in text
    assert "validation split (carved from the training images) is not held out from the backbone" in text
    assert "backbone b" in text and "D test: 7 images" in text and "seeds 0, 1, 2" in text
    assert "**MRS-Adapter + HMMC, hinge (PE-RSITR, published)**" in text
    assert "papers' tie order" in text and "pessimistic" in text
    # every row names its backbone and protocol, in the markdown and in the csv
    for line in [ln for ln in text.splitlines() if ln.startswith("| ") and "---" not in ln][1:]:
        assert "| b |" in line and "D test: 7 images" in line
    assert "test_set" in csv.read_text().splitlines()[0]


def test_a_table_refuses_mixed_backbones_and_an_empty_folder(tmp_path):
    with pytest.raises(PETLError, match="no row results"):
        write_petl_table(tmp_path)
    write_results(tmp_path, [fake_result(HEADLINE, 0, 1.0), fake_result("adapter", 0, 1.0, backbone="other")])
    with pytest.raises(PETLError, match="mix backbones"):
        write_petl_table(tmp_path)


def test_study_config_checks_rows_seeds_and_leaves_seeding_to_seeds():
    with pytest.raises(ConfigError, match="rows must list"):
        tiny_study(rows=["adapter", "lora"])
    with pytest.raises(ConfigError, match="seeds must be distinct"):
        tiny_study(seeds=[1, 1])
    with pytest.raises(ConfigError, match="set by `seeds:`"):
        tiny_study(train={"epochs": 1, "seed": 3})
    with pytest.raises(ConfigError, match="validation.fraction must be > 0"):
        tiny_study(validation={"fraction": 0.0})
    cfg = tiny_study().retrieval_config(2)
    assert cfg.train.seed == 2 and cfg.validation.seed == 2 and cfg.validation.fraction == 0.2


@pytest.mark.parametrize("name, dataset, split", [("petl_ucm", "UCM-Captions", "train+val"),
                                                  ("petl_rsicd", "RSICD", "train")])
def test_params_files_run_every_row_on_three_seeds_with_the_librarys_rates(name, dataset, split):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "params" / "retrieval" / f"{name}.yaml"
    cfg = load_petl_config(path)
    assert cfg.dataset == dataset and cfg.train_split == split and cfg.test_split == "test"
    assert cfg.rows == list(PETL_ROWS) and cfg.seeds == [0, 1, 2]
    assert cfg.train.lr is None  # each row's rate is the library's constant
    assert cfg.loss.form == "hinge" and cfg.loss.duplicate_captions == "mask" and cfg.validation.fraction == 0.2
    assert cfg.backbone.model == "fedrs-rsclip-s"


def test_petl_table_command_rewrites_the_table_and_refuses_an_empty_folder(tmp_path, capsys):
    from fedrs.cli import main

    assert main(["retrieval", "petl-table", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedrs: error:") and "no row results" in err and "Traceback" not in err
    write_results(tmp_path, [fake_result(HEADLINE, 0, 1.0)])
    assert main(["retrieval", "petl-table", str(tmp_path)]) == 0
    assert (tmp_path / "petl_table.md").is_file()
