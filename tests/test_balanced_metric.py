"""The class-balanced personalised accuracy (study issue: a balanced per-client test metric beside
the one that follows the clients' label distributions): its definition on hand-made predictions,
the run folder fields, and the report on run folders written before it existed."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from fedrs.data.scenes import synthetic_scene_dataset
from fedrs.evaluate.classification import (
    accuracy_counts,
    balanced_accuracy,
    balanced_summary,
    class_counts,
    personalised_summary,
)
from fedrs.experiment import run_experiment
from fedrs.federated.client import client_evaluate, predict_counts
from fedrs.methods.base import Batch, ClientData
from fedrs.runs import run_config
from fedrs.study.collect import collect_runs
from fedrs.study.tables import methods_table

CLASSES = ["airplane", "beach", "forest", "river"]


def one_hot_logits(predicted: list[int], num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predicted), num_classes).float()


# --- the definition ----------------------------------------------------------------------------

def test_balanced_accuracy_is_the_mean_recall_over_the_classes_present():
    # 9 test images of class 0, all right; 1 of class 2, wrong (predicted 0); class 1 absent
    labels = torch.tensor([0] * 9 + [2])
    logits = one_hot_logits([0] * 10, 3)
    correct, total = class_counts(logits, labels)
    assert correct.tolist() == [9, 0, 0] and total.tolist() == [9, 0, 1]
    assert (int(correct.sum()), int(total.sum())) == accuracy_counts(logits, labels) == (9, 10)
    assert personalised_summary([(9, 10)])["weighted"] == pytest.approx(0.9)
    assert balanced_accuracy(correct, total) == pytest.approx(0.5)  # (9/9 + 0/1) / 2: the absent class not counted
    assert math.isnan(balanced_accuracy([0, 0], [0, 0]))


def test_balanced_summary_averages_clients_and_skips_those_without_test_images():
    assert balanced_summary([0.5, 1.0, float("nan")]) == pytest.approx(0.75)
    assert math.isnan(balanced_summary([float("nan")]))


class ConstantMethod:
    """A stand-in method that predicts class 0 for every image, counting its batches."""

    device = "cpu"

    def __init__(self):
        self.module = torch.nn.Identity()
        self.batches = 0

    def needs_images(self, train: bool, personalised: bool = True) -> bool:
        return False

    def set_tensors(self, tensors) -> None:
        assert not tensors  # (no tensors to load)

    def logits(self, batch: Batch, personalised: bool) -> torch.Tensor:
        self.batches += 1
        return one_hot_logits([0] * len(batch.labels), 3)


def test_predict_counts_sums_batches_of_a_client_split():
    labels = torch.tensor([0] * 9 + [2] + [1] * 5)
    data = ClientData(0, labels, torch.arange(0), torch.arange(10), features=torch.zeros(15, 4))
    method = ConstantMethod()
    counts = predict_counts(method, data, data.test_indices, personalised=True, batch_size=4)
    assert method.batches == 3
    assert (counts.correct, counts.total) == (9, 10) and counts.accuracy == pytest.approx(0.9)
    assert counts.class_correct.tolist() == [9, 0, 0] and counts.class_total.tolist() == [9, 0, 1]
    assert counts.balanced_accuracy == pytest.approx(0.5)
    scores = client_evaluate(method, {}, {}, data, batch_size=4)  # the client's score is the same loop's
    assert scores == {"correct": 9.0, "total": 10.0, "accuracy": pytest.approx(0.9),
                      "balanced_accuracy": pytest.approx(0.5)}


def test_predict_counts_of_no_images_is_zero_with_no_balanced_accuracy():
    data = ClientData(0, torch.tensor([0, 1]), torch.arange(2), torch.arange(0), features=torch.zeros(2, 4))
    counts = predict_counts(ConstantMethod(), data, data.test_indices, personalised=False)
    assert (counts.correct, counts.total, counts.accuracy) == (0, 0, 0.0)
    assert math.isnan(counts.balanced_accuracy)


def test_a_label_outside_the_classes_counts_in_the_total_only():
    # (labels the logits have no column for: scored wrong, as the arg-max never equals them)
    correct, total = class_counts(one_hot_logits([0, 0, 1], 2), torch.tensor([0, 5, 1]))
    assert correct.tolist() == [1, 1] and total.tolist() == [1, 1]
    assert accuracy_counts(one_hot_logits([0, 0, 1], 2), torch.tensor([0, 5, 1])) == (2, 3)


# --- the run folder ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-round text-prompt run on Dirichlet(0.3) clients: unbalanced client test splits."""
    root = tmp_path_factory.mktemp("balanced")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDRS_CACHE", str(root / "cache"))
        ds = synthetic_scene_dataset(root / "synth", CLASSES, per_class=12, name="Synth")
        cfg = {"backbone": {"model": "fedrs-rsclip-tiny", "pretrained": "random"},
               "data": {"dataset": "Synth", "num_clients": 3, "scheme": "dirichlet", "alpha": 0.3, "seed": 0},
               "method": {"name": "promptfl"},
               "train": {"rounds": 2, "batch_size": 8, "lr": 0.01, "seed": 0}}
        out = root / "run"
        metrics = run_experiment(run_config(cfg), out, datasets=[ds], progress=False)
    return out, metrics


def read_csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_run_folder_records_the_balanced_accuracy_every_evaluation(run):
    out, metrics = run
    rounds, clients = read_csv(out / "rounds.csv"), read_csv(out / "clients.csv")
    header = list(rounds[0])
    assert header.index("personalised_acc_balanced") == header.index("personalised_acc_unweighted") + 1
    assert "balanced_acc" in clients[0]
    split = json.loads((out / "split.json").read_text())
    hist = {c["client_id"]: c for c in split["clients"]}
    for r in rounds:
        mine = [c for c in clients if c["round"] == r["round"]]
        balanced = [float(c["balanced_acc"]) for c in mine]
        assert all(0.0 <= b <= 1.0 for b in balanced)
        assert float(r["personalised_acc_balanced"]) == pytest.approx(sum(balanced) / len(balanced))
        for c in mine:  # a client whose test split holds one class: balanced = plain accuracy
            if sum(1 for n in hist[int(c["client"])]["test_histogram"] if n) == 1:
                assert float(c["balanced_acc"]) == pytest.approx(float(c["personalised_acc"]))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["personalised_accuracy_balanced"] == pytest.approx(float(rounds[-1]["personalised_acc_balanced"]))
    assert metrics["personalised_accuracy_balanced"] == saved["personalised_accuracy_balanced"]
    assert 0.0 <= saved["zeroshot"]["personalised_acc_balanced"] <= 1.0


# --- the report --------------------------------------------------------------------------------

def write_run(folder: Path, seed: int, method: str, personalised: float, balanced: float | None) -> None:
    folder.mkdir(parents=True)
    metrics = {"method": method, "backbone": "tiny", "dataset": "Synth", "seed": seed, "rounds": 2,
               "num_clients": 3, "personalised_accuracy": personalised,
               "personalised_accuracy_unweighted": personalised,
               "global_accuracy": 0.3, "partition": {"scheme": "dirichlet", "alpha": 0.5}}
    if balanced is not None:
        metrics["personalised_accuracy_balanced"] = balanced
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "params.yaml").write_text(yaml.safe_dump({"method": {"name": method}, "train": {"seed": seed}}))


def test_report_reads_the_metric_and_older_folders_without_it(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / "new" / f"fedrsclip-{seed}", seed, "fedrsclip", 0.8, 0.6 + 0.1 * seed)
        write_run(tmp_path / "new" / f"promptfl-{seed}", seed, "promptfl", 0.7, 0.4)
        write_run(tmp_path / "old" / f"fedrsclip-{seed}", seed, "fedrsclip", 0.8, None)
        write_run(tmp_path / "old" / f"promptfl-{seed}", seed, "promptfl", 0.7, None)
    runs = collect_runs(tmp_path / "new")
    assert sorted(runs["personalised_acc_balanced"].round(6)) == [40.0, 40.0, 60.0, 70.0]
    table = methods_table(runs)
    balanced = [frame for heading, frame in table.markdown_sections
                if heading.startswith("Personalised (class-balanced)")]
    assert len(balanced) == 1
    cells = dict(zip(balanced[0]["Method"], balanced[0]["Accuracy (%)"]))
    assert cells["PromptFL"] == "40.00 ± 0.00"
    promptfl = table.frame[table.frame["row"] == "promptfl"].iloc[0]
    assert promptfl["personalised_acc_balanced_diff"] == pytest.approx(-25.0)

    old = collect_runs(tmp_path / "old")
    assert old["personalised_acc_balanced"].isna().all()
    old_table = methods_table(old)
    assert not [h for h, _ in old_table.markdown_sections if "class-balanced" in h]
    assert [h for h, _ in old_table.markdown_sections if h.startswith("Personalised accuracy")]
