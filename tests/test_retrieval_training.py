"""The retrieval training paths (centralised ``train_epochs`` and the federated method's ``loss``)
with repeated caption strings, validation splits and the learning-rate sweep."""

import pytest
import torch
from test_retrieval_variants import TINY_CFG, tiny_set

from fedrs.backbone.factory import create_backbone
from fedrs.config import ConfigError, dump_yaml, from_dict, to_dict
from fedrs.losses.retrieval import HMMCLoss, caption_groups
from fedrs.retrieval.config import AdapterConfig, LossConfig, RetrievalConfig, ValidationConfig
from fedrs.retrieval.data import RetrievalSet
from fedrs.retrieval.method import PERSITR, PERSITRConfig
from fedrs.retrieval.train import train_epochs
from fedrs.retrieval.variants import build_variant


@pytest.fixture(scope="module")
def tiny():
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


def repeated_set(backbone, captions: list[str]) -> RetrievalSet:
    """One image per caption (random pixels), so a batch is exactly these captions."""
    g = torch.Generator().manual_seed(3)
    n = len(captions)
    images = torch.randn(n, 3, backbone.image_size, backbone.image_size, generator=g)
    return RetrievalSet("repeated", [str(i) for i in range(n)], images, list(captions), torch.arange(n))


def spy_terms(monkeypatch) -> list:
    """Record the ``same_caption`` argument of every HMMC call."""
    seen, real = [], HMMCLoss.terms

    def spy(self, *args, same_caption=None, **kw):
        seen.append(None if same_caption is None else torch.as_tensor(same_caption).clone())
        return real(self, *args, same_caption=same_caption, **kw)

    monkeypatch.setattr(HMMCLoss, "terms", spy)
    return seen


# -- repeated captions through the training path -----------------------------------------------------

def test_loss_config_records_every_hmmc_choice_and_validates_dropout():
    cfg = RetrievalConfig()
    data = to_dict(cfg)["loss"]
    assert {"form", "margin", "negatives", "reduction", "duplicate_captions", "duplicate_terms",
            "text_dropout", "vision_dropout"} <= set(data)
    assert data["form"] == "hinge" and data["duplicate_captions"] == "mask"
    assert "duplicate_captions: mask" in dump_yaml(cfg)
    loaded = from_dict(LossConfig, {"form": "infonce", "margin": 0.1, "text_dropout": 0.1}, "loss")
    assert loaded.form == "infonce" and loaded.margin == 0.1 and loaded.text_dropout == 0.1
    with pytest.raises(ConfigError, match="text_dropout"):
        LossConfig(text_dropout=1.5)
    with pytest.raises(ConfigError, match="form"):
        LossConfig(form="svm")
    # the variants build their loss from the config: every choice carries over
    _, loss = build_variant(create_backbone("fedrs-rsclip-tiny", pretrained="random"),
                            RetrievalConfig(adapter=AdapterConfig(bottleneck=16, shared_dim=8),
                                            loss=LossConfig(margin=0.3, negatives="sum")), "mrs-adapter")
    assert loss.margin == 0.3 and loss.negatives == "sum" and loss.lambda_v == 0.0 and loss.lambda_t == 0.0


def test_train_epochs_passes_the_batch_caption_groups(tiny, monkeypatch):
    caps = ["there is a piece of farmland .", "a river", "There is a  piece of farmland .", "a runway",
            "a beach"]
    data = repeated_set(tiny, caps)
    seen = spy_terms(monkeypatch)
    model, loss = build_variant(tiny, TINY_CFG, "mrs-adapter-hmmc")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))  # the loop's first draw
    train_epochs(model, loss, data, epochs=1, batch_size=8, lr=1e-3, seed=0)
    assert len(seen) == 1 and seen[0] is not None
    groups = seen[0]
    # images 0 and 2 hold the same string (case and spacing aside), wherever the shuffle put them
    assert groups.tolist() == caption_groups(caps)[order].tolist()
    pos = {int(i): k for k, i in enumerate(order)}
    assert groups[pos[0]] == groups[pos[2]] and len(set(groups.tolist())) == 4


@pytest.mark.parametrize("mode", ["mask", "ignore"])
def test_a_batch_of_one_repeated_caption_trains_nothing_when_masked(tiny, mode):
    """Every image carries the same caption string: with masking no pair is a negative, so the
    loss is exactly 0 and nothing moves; without it the identical strings are negatives."""
    data = repeated_set(tiny, ["there is a piece of farmland ."] * 4)
    cfg = RetrievalConfig(adapter=AdapterConfig(bottleneck=16, shared_dim=8),
                          loss=LossConfig(duplicate_captions=mode))
    model, loss = build_variant(tiny, cfg, "mrs-adapter-hmmc")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    stats = train_epochs(model, loss, data, epochs=1, batch_size=4, lr=1e-2)
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert stats["steps"] == 1
    if mode == "mask":
        assert stats["loss"] == 0.0 and not changed
    else:
        assert stats["loss"] > 0.0 and changed


def test_federated_method_loss_masks_repeated_pool_captions(tiny, monkeypatch):
    from fedrs.methods.base import Batch

    caps = ["a farmland", "a river", "A farmland", "a runway"]
    pool = repeated_set(tiny, caps)
    method = PERSITR(PERSITRConfig(adapter=AdapterConfig(bottleneck=16, shared_dim=8)), tiny)
    method.set_pool(pool, [3])
    seen = spy_terms(monkeypatch)
    idx = torch.tensor([2, 0, 1])
    loss, terms = method.loss(Batch(labels=idx, images=pool.images[idx]))
    assert seen[0].tolist() == caption_groups(caps)[idx].tolist() == [0, 0, 1]
    assert set(terms) >= {"cm", "v", "t", "loss"} and torch.isfinite(loss)


# -- the validation split and selection on it -----------------------------------------------------------

def test_validation_split_is_seeded_disjoint_and_carved_from_training_images(tiny):
    from fedrs.retrieval.data import validation_indices

    train, val = validation_indices(10, 0.2, seed=3)
    assert len(val) == 2 and sorted(train + val) == list(range(10)) and not set(train) & set(val)
    assert validation_indices(10, 0.2, seed=3) == (train, val)
    assert validation_indices(10, 0.2, seed=4)[1] != val or validation_indices(10, 0.2, seed=5)[1] != val
    assert validation_indices(10, 0.0) == (list(range(10)), [])
    assert len(validation_indices(3, 0.01)[1]) == 1 and len(validation_indices(3, 0.9)[0]) == 1
    data = tiny_set(tiny, n_images=10)
    fit, held = data.split_validation(0.2, seed=3)
    assert held.image_ids == [str(i) for i in val] and fit.image_ids == [str(i) for i in train]
    assert held.captions == [data.captions[j] for i in val for j in data.captions_of()[i]]
    assert data.split_validation(0.0) == (data, None)
    for bad in (1.0, -0.1, True):
        with pytest.raises(ConfigError, match="validation.fraction"):
            ValidationConfig(fraction=bad)
    assert ValidationConfig().describe("train+val", 378, 1890) == \
        "val (20% of the train+val images, seed 0): 378 of 1,890"


def test_train_epochs_scores_validation_after_every_epoch_without_changing_training(tiny):
    from fedrs.retrieval.train import validation_summary

    fit, val = tiny_set(tiny, n_images=10).split_validation(0.2, seed=0)
    seen = []
    runs = {}
    for with_val in (True, False):
        model, loss = build_variant(tiny, TINY_CFG, "mrs-adapter-hmmc")
        torch.manual_seed(0)  # dropout draws
        stats = train_epochs(model, loss, fit, epochs=3, batch_size=4, lr=1e-2, seed=1,
                             val=val if with_val else None, on_epoch=seen.append if with_val else None)
        runs[with_val] = (stats, {n: p.detach().clone() for n, p in model.named_parameters()})
    stats, params = runs[True]
    assert [r["epoch"] for r in stats["history"]] == [1, 2, 3] and seen == stats["history"]
    assert all(0.0 <= r["val_mR"] <= 100.0 for r in stats["history"])
    assert sum(r["steps"] for r in stats["history"]) == stats["steps"] == 6
    # scoring the validation split draws no random numbers and trains nothing
    assert all(torch.equal(params[n], runs[False][1][n]) for n in params)
    assert all("val_mR" not in r for r in runs[False][0]["history"])
    summary = validation_summary([{"epoch": 1, "val_mR": 20.0}, {"epoch": 2, "val_mR": 30.0}, {"epoch": 3},
                                  {"epoch": 4, "val_mR": 30.0}, {"epoch": 5, "val_mR": 25.0}])
    assert summary == {"val_mR": [20.0, 30.0, 30.0, 25.0], "val_epochs": [1, 2, 4, 5], "best_epoch": 2,
                       "best_val_mR": 30.0, "final_val_mR": 25.0}
    # every 2nd epoch and the last
    model, loss = build_variant(tiny, TINY_CFG, "mrs-adapter")
    sparse = train_epochs(model, loss, fit, epochs=3, batch_size=4, lr=1e-2, val=val, val_every=2)["history"]
    assert ["val_mR" in r for r in sparse] == [False, True, True]


def serve_training_only(monkeypatch, sets: dict) -> None:
    """``RetrievalSet.load`` serves ``sets[split]``; loading any other split (test) fails the test."""
    def load(cls, dataset, split, backbone, **kw):
        if split not in sets:
            raise AssertionError(f"the {split!r} split was loaded")
        return sets[split]

    monkeypatch.setattr(RetrievalSet, "load", classmethod(load))


def test_select_lr_centralised_writes_its_table_and_never_loads_test(tiny, tmp_path, monkeypatch):
    import json

    from fedrs.retrieval.config import RetrievalTrainConfig
    from fedrs.retrieval.selection import select_lr

    serve_training_only(monkeypatch, {"train+val": tiny_set(tiny, n_images=10)})
    cfg = RetrievalConfig(adapter=AdapterConfig(bottleneck=16, shared_dim=8),
                          train=RetrievalTrainConfig(epochs=2, batch_size=4))
    lr, rows = select_lr(cfg, [1e-3, 3e-2], backbone=tiny, out=tmp_path / "sweep")
    assert [r["lr"] for r in rows] == [1e-3, 3e-2]
    assert lr == max(rows, key=lambda r: r["final_val_mR"])["lr"]
    assert all(len(r["val_mR_curve"].split()) == 2 and r["best_epoch"] in (1, 2) for r in rows)
    table = json.loads((tmp_path / "sweep" / "lr_sweep.json").read_text())
    assert table["chosen_lr"] == lr and table["test_split"] == "not loaded"
    assert table["validation"] == "val (20% of the train+val images, seed 0): 2 of 10"
    assert table["kind"].startswith("centralised AdamW") and "final epoch" in table["criterion"]
    assert (tmp_path / "sweep" / "lr_sweep.csv").read_text().startswith("lr,final_val_mR,best_val_mR,best_epoch")


def test_select_lr_chooses_the_best_final_epoch_never_a_diverged_one(tiny, monkeypatch):
    import fedrs.retrieval.selection as selection

    curves = {1.0: [50.0, 10.0], 2.0: [20.0, 30.0], 3.0: [30.0, float("nan")], 4.0: [5.0, 30.0]}

    def fake(cfg, lr, backbone, train, val, progress, max_steps):
        return [{"epoch": e + 1, "val_mR": v} for e, v in enumerate(curves[lr])], "val_mR", {}

    monkeypatch.setattr(selection, "_train_one", fake)
    lr, rows = selection.select_lr(RetrievalConfig(), list(curves), backbone=tiny, train=tiny_set(tiny))
    # 1.0 has the best epoch (50) but not the best final one; 3.0 diverged; 2.0 and 4.0 tie: first listed
    assert lr == 2.0 and rows[0]["best_val_mR"] == 50.0 and rows[0]["best_epoch"] == 1
    with pytest.raises(selection.SelectionError, match="validation.fraction"):
        selection.select_lr(RetrievalConfig(validation=ValidationConfig(fraction=0.0)), [1e-3],
                            backbone=tiny, train=tiny_set(tiny))
    with pytest.raises(selection.SelectionError, match="> 0"):
        selection.select_lr(RetrievalConfig(), [0.0], backbone=tiny, train=tiny_set(tiny))


def test_select_lr_federated_runs_the_engine_on_the_training_images(tiny, tmp_path, monkeypatch):
    import json

    from fedrs.retrieval.selection import select_lr
    from fedrs.runs import run_config

    serve_training_only(monkeypatch, {"train+val": tiny_set(tiny, n_images=10)})
    cfg = run_config({"backbone": {"model": "fedrs-rsclip-tiny", "pretrained": "random"},
                      "data": {"dataset": "UCM-Captions", "num_clients": 2, "scheme": "iid"},
                      "method": {"name": "pe-rsitr", "adapter": {"bottleneck": 16, "shared_dim": 8},
                                 "private": ["adapter.up.text"]},
                      "train": {"rounds": 2, "lr": 0.1, "batch_size": 4}})
    lr, rows = select_lr(cfg, [1e-3, 1e-2], backbone=tiny, out=tmp_path)
    assert lr in (1e-3, 1e-2) and all(len(r["val_mR_curve"].split()) == 2 for r in rows)
    table = json.loads((tmp_path / "lr_sweep.json").read_text())
    # private tensors: the clients' personalised validation mR decides
    assert table["criterion"].startswith("highest val_mR_personalised") and "final round" in table["criterion"]
    assert table["kind"].startswith("federated SGD") and "2 rounds" in table["budget"]
    assert table["config"]["train"]["lr"] == 0.1  # the swept rates are in the rows, the config as given


# -- what a set is, and when zero-shot is not zero-shot ------------------------------------------------

def test_sets_say_which_images_they_hold(tiny, tmp_path, monkeypatch):
    from PIL import Image

    import fedrs.data as data_api
    from fedrs.data.captions import CaptionedImage, CaptionSet
    from fedrs.retrieval.data import split_description

    assert split_description("RSICD", "test", 1027, 1093, "AID") == \
        "RSICD test: the 1,027 of 1,093 images present in the shipped AID copy"
    assert split_description("UCM-Captions", "test", 210, 210, "UCMerced") == "UCM-Captions test: 210 images"
    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(path)
    items = [CaptionedImage(f"im{i}", path if i % 3 else None, [f"caption {i}"], "test", "beach")
             for i in range(6)]  # images 0 and 3 have no local image

    def fake_load(name, split="train", root=None):
        return CaptionSet("RSICD", split, items, tmp_path, "AID via images.csv")

    monkeypatch.setattr(data_api, "load_caption_set", fake_load)
    loaded = RetrievalSet.load("RSICD", "test", tiny)
    assert len(loaded) == 4 and loaded.describe() == "RSICD test: the 4 of 6 images present in the shipped AID copy"
    assert RetrievalSet.load("RSICD", "test", tiny, limit=2).describe().endswith(", first 2 only")
    assert tiny_set(tiny).describe() == "tiny: 6 images"


def test_zeroshot_on_the_offline_backbones_pretraining_captions_is_labelled_in_domain(tiny):
    import dataclasses
    from pathlib import Path

    from fedrs.retrieval.data import zeroshot_note

    assert zeroshot_note(tiny, "RSICD") == ""  # random weights: trained on nothing
    offline = dataclasses.replace(tiny, pretrained=None, checkpoint=Path("models/fedrs-rsclip-tiny/open_clip_model.pt"),
                                  fingerprint="0123456789abcdef")
    assert zeroshot_note(offline, "RSICD").startswith("in-domain: fedrs-rsclip-tiny/offline-01234567 was "
                                                      "pretrained on RSICD training captions")
    assert zeroshot_note(offline, "UCM-Captions") == ""


def test_step_schedule_and_the_authors_recipe(tiny):
    from fedrs.retrieval.config import PAPER_TRAIN, RetrievalTrainConfig

    model, loss = build_variant(tiny, TINY_CFG, "mrs-adapter")
    stats = train_epochs(model, loss, tiny_set(tiny), epochs=3, batch_size=6, lr=1e-2, lr_decay_every=2, lr_decay=0.5)
    assert [r["lr"] for r in stats["history"]] == [1e-2, 1e-2, 5e-3]
    assert (PAPER_TRAIN.epochs, PAPER_TRAIN.batch_size, PAPER_TRAIN.lr, PAPER_TRAIN.weight_decay,
            PAPER_TRAIN.lr_decay_every, PAPER_TRAIN.lr_decay) == (30, 16, 2e-4, 0.0, 20, 0.7)
    with pytest.raises(ConfigError, match="lr_decay"):
        RetrievalTrainConfig(lr_decay=0.0)


def test_select_lr_over_replicates_takes_the_best_mean_and_resumes(tiny, tmp_path, monkeypatch):
    """One seed can pick a rate at the edge of collapse: over replicates the best *mean* final
    validation mR decides, a rate that diverged anywhere is never chosen, and finished replicates
    are read back instead of trained again."""
    import json

    import fedrs.retrieval.selection as selection
    from fedrs.retrieval.config import RetrievalTrainConfig

    # final val mR per (seed, lr): 0.03 wins seed 0 but collapses on seed 2; 0.1 diverges on seed 1
    finals = {0: {0.01: 10.0, 0.03: 10.5, 0.1: 12.0}, 1: {0.01: 9.0, 0.03: 9.5, 0.1: float("nan")},
              2: {0.01: 9.5, 0.03: 4.5, 0.1: 11.0}}
    trained = []

    def fake(cfg, lr, backbone, train, val, progress, max_steps):
        trained.append((cfg.train.seed, lr))
        return [{"epoch": 1, "val_mR": 1.0}, {"epoch": 2, "val_mR": finals[cfg.train.seed][lr]}], "val_mR", {}

    monkeypatch.setattr(selection, "_train_one", fake)
    serve_training_only(monkeypatch, {"train+val": tiny_set(tiny, n_images=10)})
    cfgs = [RetrievalConfig(train=RetrievalTrainConfig(seed=s), validation=ValidationConfig(seed=s)) for s in finals]
    names = [f"s{s}" for s in finals]
    lr, rows = selection.select_lr_replicates(cfgs, names, [0.01, 0.03, 0.1], backbone=tiny, out=tmp_path)
    assert lr == 0.01  # mean 9.50 against 8.17 for 0.03; 0.1 diverged on s1
    by_lr = {r["lr"]: r for r in rows}
    assert by_lr[0.01]["mean_final_val_mR"] == pytest.approx(9.5) and by_lr[0.03]["min_final_val_mR"] == 4.5
    assert by_lr[0.1]["mean_final_val_mR"] is None and by_lr[0.1]["diverged"] == 1
    assert by_lr[0.03]["final_val_mR_s2"] == 4.5 and len(trained) == 9
    table = json.loads((tmp_path / "lr_sweep.json").read_text())
    assert table["chosen_lr"] == 0.01 and table["replicates"] == names
    assert "mean over the 3 replicates" in table["criterion"]
    assert all((tmp_path / n / "lr_sweep.json").is_file() for n in names)  # each replicate's own table

    # resumed: nothing trains again, the same choice, also when the files' own rate (which every
    # candidate replaces) has changed since
    assert selection.select_lr_replicates(cfgs, names, [0.01, 0.03, 0.1], backbone=tiny, out=tmp_path)[0] == 0.01
    moved = [RetrievalConfig(train=RetrievalTrainConfig(seed=s, lr=0.01), validation=ValidationConfig(seed=s))
             for s in finals]
    assert selection.select_lr_replicates(moved, names, [0.01, 0.03, 0.1], backbone=tiny, out=tmp_path)[0] == 0.01
    assert len(trained) == 9
    # a stored replicate of another configuration is never mixed in
    other = [RetrievalConfig(train=RetrievalTrainConfig(seed=7))] + cfgs[1:]
    with pytest.raises(selection.SelectionError, match="another configuration"):
        selection.select_lr_replicates(other, names, [0.01, 0.03, 0.1], backbone=tiny, out=tmp_path)
    with pytest.raises(selection.SelectionError, match="other rates"):
        selection.select_lr_replicates(cfgs, names, [0.01, 0.03], backbone=tiny, out=tmp_path)
    # replicates that differ in more than their seeds are no replicates
    mixed = cfgs[:2] + [RetrievalConfig(variant="adapter", train=RetrievalTrainConfig(seed=2))]
    with pytest.raises(selection.SelectionError, match=r"differ only in their seeds.*\['s2'\]"):
        selection.select_lr_replicates(mixed, names, [0.01, 0.03, 0.1], backbone=tiny, out=tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists() and len(trained) == 9


def test_select_lr_command_takes_several_params_files_as_replicates(tiny, tmp_path, monkeypatch, capsys):
    import json

    import yaml

    import fedrs.retrieval.selection as selection
    from fedrs.cli import main

    def fake(cfg, lr, backbone, train, val, progress, max_steps):  # rate 0.01 better on both seeds
        return [{"round": 1, "val_mR": 5.0 + cfg.train.seed + (lr == 0.01)}], "val_mR", {}

    monkeypatch.setattr(selection, "_train_one", fake)
    serve_training_only(monkeypatch, {"train+val": tiny_set(tiny, n_images=10)})
    paths = []
    for seed in (0, 1):
        path = tmp_path / f"fed__s{seed}.yaml"
        path.write_text(yaml.safe_dump({
            "backbone": {"model": "fedrs-rsclip-tiny", "pretrained": "random"},
            "data": {"dataset": "UCM-Captions", "num_clients": 2, "scheme": "iid", "seed": seed},
            "method": {"name": "pe-rsitr", "validation": {"seed": seed}},
            "train": {"rounds": 1, "batch_size": 4, "seed": seed}}))
        paths.append(str(path))
    out = tmp_path / "sweep"
    assert main(["retrieval", "select-lr", *paths, "--lr", "0.003", "0.01", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out  # progress lines, then the result as JSON
    assert "chosen lr 0.01: mean final val mR 6.50 over 2 replicates" in printed
    assert json.loads(printed[printed.index("{\n"):])["chosen_lr"] == 0.01
    assert sorted(p.name for p in out.iterdir()) == ["fed__s0", "fed__s1", "lr_sweep.csv", "lr_sweep.json"]
    assert json.loads((out / "fed__s1" / "lr_sweep.json").read_text())["config"]["data"]["seed"] == 1
