"""Base-to-novel generalisation (data.class_split: base-to-novel; study issue 16, as CoOp/CoCoOp,
FedTPG, FedPGP, FLiP): the class split, the partition, the novel-class evaluation with novel names
only, the harmonic means, and the report."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fedrs.config import ConfigError
from fedrs.data.partition import Partition, PartitionConfig, build_partition, num_base_classes
from fedrs.data.scenes import synthetic_scene_dataset
from fedrs.errors import FedrsError
from fedrs.evaluate.classification import harmonic_mean
from fedrs.experiment import run_experiment
from fedrs.federated.engine import FederatedEngine
from fedrs.runs import run_config

CLASSES = ["airplane", "beach", "forest", "river", "runway"]  # base: the first 3; novel: the last 2
LABELS = np.random.default_rng(1).integers(0, 7, size=280).tolist()
NAMES = [f"class{i}" for i in range(7)]


def build(**kw) -> Partition:
    return build_partition(LABELS, NAMES, PartitionConfig(dataset="X", num_clients=4, **kw))


# --- the split and the partition ---------------------------------------------------------------

def test_base_classes_are_the_first_half_rounded_up():
    assert [num_base_classes(c) for c in (2, 5, 6, 7, 21, 45)] == [1, 3, 3, 4, 11, 23]
    assert harmonic_mean(0.8, 0.4) == pytest.approx(2 * 0.8 * 0.4 / 1.2)
    assert harmonic_mean(0.0, 0.0) == 0.0 and math.isnan(harmonic_mean(0.5, float("nan")))


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "pathological"])
def test_clients_hold_base_classes_and_the_novel_test_images_are_dealt_once(scheme):
    part = build(scheme=scheme, class_split="base-to-novel")
    plain = build(scheme=scheme)
    labels = part.labels
    assert part.num_base_classes == 4 and part.test_indices == plain.test_indices  # the same pooled split
    for c in part.clients:
        assert max(labels[c.train_indices + c.test_indices]) < 4
        assert min(labels[c.novel_test_indices], default=4) >= 4
    dealt = sorted(i for c in part.clients for i in c.novel_test_indices)
    assert dealt == part.novel_test_indices == [i for i in part.test_indices if labels[i] >= 4]
    assert part.base_test_indices == [i for i in part.test_indices if labels[i] < 4]
    sizes = [len(c.novel_test_indices) for c in part.clients]
    assert max(sizes) - min(sizes) <= 3  # per novel class near-equal parts (3 novel classes)
    # every base-class training image is dealt, no novel-class one
    held = sorted(i for c in part.clients for i in c.train_indices)
    if scheme != "pathological":
        assert held == [i for i in part.train_indices if labels[i] < 4]


def test_manifest_round_trips_and_the_default_leaves_no_trace(tmp_path):
    part = build(class_split="base-to-novel", unseen_clients=1)
    path = part.save(tmp_path / "split.json")
    data = json.loads(path.read_text())
    assert data["config"]["class_split"] == "base-to-novel" and data["summary"]["num_base_classes"] == 4
    assert "novel_test_indices" not in data["unseen_clients"][0]
    assert Partition.load(path).to_json() == part.to_json()
    data["clients"][0]["novel_test_indices"] = data["clients"][0]["novel_test_indices"][1:]
    with pytest.raises(FedrsError, match="dealt out"):
        Partition.from_dict(data)
    plain = build().to_dict()
    assert "class_split" not in plain["config"] and "novel_test_indices" not in plain["clients"][0]
    assert part.config.describe() == "dirichlet(alpha=0.5), 4 clients, +1 unseen clients, base-to-novel"


def test_class_split_config_errors():
    with pytest.raises(ConfigError, match="class_split must be one of"):
        PartitionConfig(dataset="X", class_split="half")
    with pytest.raises(ConfigError, match="single-dataset"):
        PartitionConfig(dataset="AB", num_clients=2, cross_domain=["A", "B"], class_split="base-to-novel")


# --- the run -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("b2n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDRS_CACHE", str(root / "cache"))
        yield synthetic_scene_dataset(root / "synth", CLASSES, per_class=15, name="Synth"), root


def config(method: str = "fedrsclip") -> dict:
    return {"backbone": {"model": "fedrs-rsclip-tiny", "pretrained": "random"},
            "data": {"dataset": "Synth", "num_clients": 3, "scheme": "dirichlet", "alpha": 1.0, "seed": 0,
                     "class_split": "base-to-novel"},
            "method": {"name": method}, "train": {"rounds": 2, "batch_size": 8, "lr": 0.01, "seed": 0}}


def read_csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def run(synth):
    """A 2-round FedRSCLIP run (private tensors, visual prompts) under base-to-novel."""
    ds, root = synth
    out = root / "run"
    return out, run_experiment(run_config(config()), out, datasets=[ds], progress=False)


def test_run_records_base_novel_and_harmonic_means(run):
    out, metrics = run
    rounds = read_csv(out / "rounds.csv")
    for r in rounds:
        for key in ("novel_personalised_acc", "novel_global_acc", "hm_personalised", "hm_global"):
            assert 0.0 <= float(r[key]) <= 1.0, key
        assert float(r["hm_global"]) == pytest.approx(
            harmonic_mean(float(r["global_acc"]), float(r["novel_global_acc"])))
        assert float(r["hm_personalised"]) == pytest.approx(
            harmonic_mean(float(r["personalised_acc_weighted"]), float(r["novel_personalised_acc"])))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["base_classes"] == CLASSES[:3] and saved["novel_classes"] == CLASSES[3:]
    assert saved["novel_global_accuracy"] == pytest.approx(float(rounds[-1]["novel_global_acc"]))
    assert saved["harmonic_mean_personalised"] == pytest.approx(float(rounds[-1]["hm_personalised"]))
    assert saved["split"].endswith("base-to-novel")
    assert 0.0 <= saved["zeroshot"]["novel_global_acc"] <= 1.0
    assert metrics["novel_personalised_accuracy"] == saved["novel_personalised_accuracy"]


def test_novel_classes_are_scored_with_novel_names_only(synth):
    from fedrs.classification import prepare_run
    from fedrs.methods import create_method

    ds, _ = synth
    cfg = run_config(config("promptfl"))
    setup = prepare_run(cfg, [ds], progress=False)
    assert len(setup.method.classnames) == 3 and setup.novel.method.classnames == list(ds.prompt_names[3:])
    labels = setup.partition.labels
    assert all(labels[i] < 3 for i in setup.pooled_test.tolist())  # global accuracy: base classes only
    engine = FederatedEngine(setup.method, setup.clients, setup.pooled_test, cfg.train, cfg.eval,
                             novel=setup.novel)
    engine.initialise()
    row, _ = engine.evaluate()
    # by hand: the untrained prompt over the two novel names, labels 3, 4 -> 0, 1
    fresh = create_method(cfg.method, setup.backbone, list(ds.prompt_names[3:]), seed=cfg.train.seed)
    idx = torch.as_tensor(setup.partition.novel_test_indices)
    batch = setup.clients[0].batch(idx, images=False)
    with torch.no_grad():
        logits = fresh.logits(batch, personalised=False)
    assert logits.shape[-1] == 2
    expected = float((logits.argmax(-1) == batch.labels - 3).float().mean())
    assert row["novel_global_acc"] == pytest.approx(expected)
    # PromptFL has no private tensors: each client's model is the global one on its novel split
    assert row["novel_personalised_acc"] == pytest.approx(expected)


def test_flower_engine_refuses_base_to_novel():
    from fedrs.federated.flower.server_app import FlowerEngine

    with pytest.raises(FedrsError, match="in-process engine only"):
        FlowerEngine(None, "", None, [], None, None, None, novel=object())


def test_report_reads_base_to_novel(run):
    from fedrs.study.collect import collect_runs

    out, _ = run
    runs = collect_runs(out.parent)
    row = runs[runs["run"] == "run"].iloc[0]
    assert row["split"] == "Dir(1), base-to-novel"
    saved = json.loads((out / "metrics.json").read_text())
    assert row["hm_global"] == pytest.approx(100 * saved["harmonic_mean_global"])
    assert row["novel_personalised_acc"] == pytest.approx(100 * saved["novel_personalised_accuracy"])


def test_report_gives_base_to_novel_a_table_of_its_own(run):
    from fedrs.study.collect import collect_runs
    from fedrs.study.tables import build_tables

    out, _ = run
    tables = build_tables(collect_runs(out.parent))
    assert "methods" not in tables  # the base-to-novel setting is not a methods-table setting
    headings = [h for h, _ in tables["base_to_novel"].markdown_sections]
    assert [h.split(" · ")[0] for h in headings] == [
        "Personalised, base classes accuracy", "Personalised, novel classes accuracy",
        "Personalised, harmonic mean accuracy", "Global, base classes accuracy", "Global, novel classes accuracy",
        "Global, harmonic mean accuracy"]


def test_describe_gives_the_base_and_the_novel_classes():
    from fedrs.experiment import LISTED_CLASSES, describe_run

    cfg = config()
    cfg["data"]["dataset"] = "UCMerced"  # the registry knows its 21 classes; no data is read
    sizes = describe_run(run_config(cfg), no_weights=True)
    assert (sizes["num_classes"], sizes["class_split"]) == (21, "base-to-novel")
    assert (sizes["num_base_classes"], sizes["num_novel_classes"]) == (11, 10)
    assert sizes["base_classes"][0] == "agricultural land" and sizes["base_classes"][-1] == "harbor"
    assert sizes["novel_classes"][0] == "intersection" and len(sizes["novel_classes"]) == 10
    cfg["data"]["dataset"] = "NWPU-RESISC45"  # too many to list: counts only
    sizes = describe_run(run_config(cfg), no_weights=True)
    assert (sizes["num_base_classes"], sizes["num_novel_classes"]) == (23, 22) and 22 > LISTED_CLASSES
    assert "base_classes" not in sizes and "novel_classes" not in sizes
    cfg["data"]["class_split"] = "all"  # the default describes as before: no split fields
    assert not {"class_split", "num_base_classes", "base_classes"} & set(describe_run(run_config(cfg),
                                                                                      no_weights=True))
    cfg["data"].update(dataset="Synth", class_split="base-to-novel")  # classes known only with the data
    assert describe_run(run_config(cfg), no_weights=True)["class_split"].startswith("base-to-novel (")
