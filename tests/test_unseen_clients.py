"""Clients that never train (data.unseen_clients; study issue 16, generalisation): how they are
partitioned, the global model's accuracy on them in the run folder, describe and the report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fedrs.backbone.factory import create_backbone
from fedrs.config import ConfigError
from fedrs.data.partition import Partition, PartitionConfig, build_partition, split_by_label
from fedrs.data.scenes import synthetic_scene_dataset
from fedrs.experiment import describe_run, run_experiment
from fedrs.federated.engine import FederatedEngine
from fedrs.methods import create_method
from fedrs.methods.base import ClientData
from fedrs.runs import EvalConfig, TrainConfig, run_config
from fedrs.study.collect import collect_runs, run_config_id, split_label

CLASSES = ["airplane", "beach", "forest", "river"]
LABELS = np.random.default_rng(0).integers(0, 6, size=240).tolist()
NAMES = [f"class{i}" for i in range(6)]


def build(**kw) -> Partition:
    return build_partition(LABELS, NAMES, PartitionConfig(dataset="X", **kw))


# --- the partition -----------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "pathological"])
def test_unseen_clients_are_the_last_clients_of_the_larger_partition(scheme):
    with_unseen = build(num_clients=3, unseen_clients=2, scheme=scheme)
    larger = build(num_clients=5, scheme=scheme)
    assert [c.client_id for c in with_unseen.clients] == [0, 1, 2]
    assert [c.client_id for c in with_unseen.unseen] == [3, 4]
    for mine, theirs in zip(with_unseen.clients + with_unseen.unseen, larger.clients):
        assert (mine.train_indices, mine.test_indices) == (theirs.train_indices, theirs.test_indices)
    assert with_unseen.test_indices == larger.test_indices  # the pooled test set (global accuracy)
    # no training image or test image is held by two clients, unseen ones included
    held = [i for c in with_unseen.clients + with_unseen.unseen for i in c.train_indices + c.test_indices]
    assert len(held) == len(set(held))


def test_without_unseen_clients_the_manifest_does_not_mention_them():
    plain = build(num_clients=3)
    data = plain.to_dict()
    assert "unseen_clients" not in data and "unseen_clients" not in data["config"]
    assert "unseen_clients" not in data["summary"] and plain.unseen == []
    assert plain.config.describe() == "dirichlet(alpha=0.5), 3 clients"


def test_manifest_with_unseen_clients_round_trips_and_is_checked(tmp_path):
    part = build(num_clients=3, unseen_clients=2)
    path = part.save(tmp_path / "split.json")
    data = json.loads(path.read_text())
    assert data["config"]["unseen_clients"] == 2 and len(data["unseen_clients"]) == 2
    assert data["summary"]["unseen_test_samples_per_client"] == [len(c.test_indices) for c in part.unseen]
    assert Partition.load(path).to_json() == part.to_json()
    data["unseen_clients"] = data["unseen_clients"][:1]  # an edited manifest is refused
    with pytest.raises(Exception, match="unseen"):
        Partition.from_dict(data)
    assert part.config.describe() == "dirichlet(alpha=0.5), 3 clients, +2 unseen clients"


def test_unseen_clients_config_errors():
    with pytest.raises(ConfigError, match="unseen_clients"):
        PartitionConfig(dataset="X", unseen_clients=-1)
    with pytest.raises(ConfigError, match="single-dataset"):
        PartitionConfig(dataset="AB", num_clients=2, cross_domain=["A", "B"], unseen_clients=1)
    with pytest.raises(ConfigError, match="unseen_clients"):
        split_by_label(LABELS, PartitionConfig(dataset="X", unseen_clients=1))
    with pytest.raises(ConfigError, match="unseen_clients=4 exceeds"):
        build_partition([0, 1, 0, 1, 0, 1, 0, 1], ["a", "b"], PartitionConfig(dataset="X", num_clients=3,
                                                                                unseen_clients=4, scheme="iid"))


# --- the engine --------------------------------------------------------------------------------

def test_engine_scores_the_global_tensors_on_the_unseen_test_indices():
    backbone = create_backbone("fedrs-rsclip-tiny", pretrained="random")
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(30) % 3
    features = torch.randn(30, backbone.embed_dim, generator=gen)
    clients = [ClientData(k, labels, torch.arange(k * 6, k * 6 + 6), torch.arange(18 + k * 4, 22 + k * 4), features)
               for k in range(3)]
    pooled = torch.arange(18, 30)
    method = create_method({"name": "promptfl"}, backbone, CLASSES[:3], seed=0)
    train = TrainConfig(rounds=1, lr=0.05, batch_size=4)
    same = FederatedEngine(method, clients, pooled, train, EvalConfig(), unseen_test=pooled)
    history = same.run(progress=False)
    assert [r["unseen_client_global_acc"] for r in history] == [r["global_acc"] for r in history]
    part = FederatedEngine(method, clients, pooled, train, EvalConfig(), unseen_test=torch.arange(0, 6))
    row, _ = part.evaluate()
    assert row["unseen_client_global_acc"] in {k / 6 for k in range(7)}  # scored on those 6 images only
    plain = FederatedEngine(method, clients, pooled, train, EvalConfig())
    assert "unseen_client_global_acc" not in plain.run(progress=False)[-1]


# --- the run folder ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("unseen")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDRS_CACHE", str(root / "cache"))
        ds = synthetic_scene_dataset(root / "synth", CLASSES, per_class=25, name="Synth")
        cfg = {"backbone": {"model": "fedrs-rsclip-tiny", "pretrained": "random"},
               "data": {"dataset": "Synth", "num_clients": 3, "unseen_clients": 2, "scheme": "iid", "seed": 0},
               "method": {"name": "promptfl"},
               "train": {"rounds": 2, "batch_size": 8, "lr": 0.01, "seed": 0}}
        out = root / "run"
        metrics = run_experiment(run_config(cfg), out, datasets=[ds], progress=False)
    return out, metrics, cfg


def read_csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_run_folder_records_the_global_model_on_unseen_clients(run):
    out, metrics, _ = run
    rounds = read_csv(out / "rounds.csv")
    assert all(0.0 <= float(r["unseen_client_global_acc"]) <= 1.0 for r in rounds)
    header = list(rounds[0])
    assert header.index("unseen_client_global_acc") == header.index("global_acc") + 1
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["unseen_client_global_accuracy"] == pytest.approx(float(rounds[-1]["unseen_client_global_acc"]))
    assert saved["num_clients"] == 3 and saved["partition"]["unseen_clients"] == 2
    assert saved["split"].endswith("+2 unseen clients")
    assert 0.0 <= saved["zeroshot"]["unseen_client_global_acc"] <= 1.0
    assert {int(c["client"]) for c in read_csv(out / "clients.csv")} == {0, 1, 2}  # they never train
    assert all(int(r["clients_sampled"]) <= 3 for r in rounds)
    split = json.loads((out / "split.json").read_text())
    assert [c["client_id"] for c in split["unseen_clients"]] == [3, 4]


def test_describe_shows_the_unseen_clients(run):
    _, _, cfg = run
    assert describe_run(run_config(cfg), no_weights=True)["unseen_clients"] == 2


def test_report_reads_the_unseen_accuracy_as_its_own_setting(run, tmp_path):
    out, metrics, _ = run
    runs = collect_runs(out.parent)
    row = runs[runs["run"] == "run"].iloc[0]
    assert row["unseen_client_global_acc"] == pytest.approx(100 * metrics["unseen_client_global_accuracy"])
    assert row["split"] == "IID, +2 unseen clients"
    assert split_label({"scheme": "iid"}) == "IID"
    params = yaml.safe_load((out / "params.yaml").read_text())
    params["data"]["unseen_clients"] = 0
    older = {**params, "data": {k: v for k, v in params["data"].items() if k != "unseen_clients"}}
    assert run_config_id(params) == run_config_id(older)  # a field added later, at its default


def test_report_gives_unseen_clients_a_table_of_their_own(run):
    from fedrs.study.tables import build_tables

    out, metrics, _ = run
    tables = build_tables(collect_runs(out.parent))
    assert "methods" not in tables
    sections = dict(tables["unseen_clients"].markdown_sections)
    unseen = next(frame for heading, frame in sections.items() if heading.startswith("Global on clients"))
    assert unseen["Accuracy (%)"].tolist() == [f"{100 * metrics['unseen_client_global_accuracy']:.2f}"]
