"""Federated retrieval through the shared engine: private adapter parts never leave a client."""

from pathlib import Path

import pytest
import torch
from test_retrieval_variants import tiny_set

from fedrs.backbone.factory import create_backbone
from fedrs.config import ConfigError
from fedrs.errors import FedrsError
from fedrs.methods import create_method, method_config
from fedrs.retrieval.config import AdapterConfig
from fedrs.retrieval.data import RetrievalSet
from fedrs.retrieval.method import PERSITRConfig
from fedrs.retrieval.pipeline import federated_retrieval

PRIVATE = ["adapter.up.vision", "adapter.up.text"]


@pytest.fixture(scope="module")
def tiny():
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


def tiny_cfg(**kw) -> PERSITRConfig:
    return PERSITRConfig(adapter=AdapterConfig(bottleneck=16, shared_dim=8), **kw)


def test_private_parts_are_declared_and_refused(tiny):
    method = create_method(method_config({"name": "pe-rsitr", "private": PRIVATE,
                                          "adapter": {"bottleneck": 16, "shared_dim": 8}}), tiny, [])
    assert set(method.private_names) == {f"{p}.{w}" for p in PRIVATE for w in ("weight", "bias")}
    assert all(n.startswith(("adapter.down.", "adapter.up_shared.")) for n in method.upload_names)
    assert method.describe()["trainable_params"] == method.module.trainable_parameters()
    with pytest.raises(FedrsError, match="privacy check failed"):  # the private ups may not leave
        method.check_upload(method.get_tensors(method.trainable_names))
    with pytest.raises(ConfigError, match="match none"):
        create_method(tiny_cfg(private=["adapter.nothing"]), tiny, [])


def test_federated_run_never_uploads_private_parts(tiny, monkeypatch):
    import fedrs.federated.engine as engine

    uploads, real = [], engine.client_update

    def spy(method, global_shared, client_state, data, cfg):
        result = real(method, global_shared, client_state, data, cfg)
        uploads.append((set(result.shared), set(method.private_names), set(result.client_state)))
        return result

    monkeypatch.setattr(engine, "client_update", spy)
    data = tiny_set(tiny, n_images=8)
    test = tiny_set(tiny, n_images=4)
    torch.manual_seed(0)
    out = federated_retrieval(tiny, data, test, tiny_cfg(private=PRIVATE), num_clients=2, rounds=2, lr=0.5)
    assert len(uploads) == 4  # 2 clients x 2 rounds
    for shared, private, kept in uploads:
        assert shared and not shared & private and private <= kept
    assert sorted(sum(out.shards, [])) == list(range(8)) and not set(out.shards[0]) & set(out.shards[1])
    assert len(out.personalised) == 2 and 0 <= out.scores.mr <= 100
    assert out.history[-1]["round"] == 2 and "global_acc" in out.history[-1]
    # personalised up-projections trained separately on each client
    assert out.upload_values_per_client_round < out.trainable_params


def test_cross_modal_federation_uploads_only_the_shared_up_projection(tiny, monkeypatch):
    """federate: cross-modal averages only adapter.up_shared; every modality-specific tensor stays
    on its client and trains there; federate: all (private: []) uploads the whole adapter."""
    import fedrs.federated.engine as engine

    uploads, real = [], engine.client_update

    def spy(method, global_shared, client_state, data, cfg):
        result = real(method, global_shared, client_state, data, cfg)
        uploads.append((set(result.shared), set(result.client_state)))
        downs.append(result.client_state.get("adapter.down.text.weight"))
        return result

    downs = []

    monkeypatch.setattr(engine, "client_update", spy)
    data, test = tiny_set(tiny, n_images=8), tiny_set(tiny, n_images=4)
    shared = {"adapter.up_shared.weight", "adapter.up_shared.bias"}
    torch.manual_seed(0)
    out = federated_retrieval(tiny, data, test, tiny_cfg(federate="cross-modal"), num_clients=2, rounds=2, lr=0.5)
    assert len(uploads) == 4
    trainable = {n for n, p in out.model.named_parameters() if p.requires_grad}
    for sent, kept in uploads:
        assert sent == shared and kept == trainable - shared
    assert out.upload_values_per_client_round == 8 * 16 + 8  # bottleneck 16 -> shared_dim 8
    assert len(out.personalised) == 2
    # each client's private down-projection trained on its own images only
    assert not torch.equal(downs[-1], downs[-2])
    method = create_method(tiny_cfg(federate="cross-modal"), tiny, [])
    assert set(method.upload_names) == shared and set(method.private_names) == trainable - shared

    uploads.clear()
    out = federated_retrieval(tiny, data, test, tiny_cfg(federate="all"), num_clients=2, rounds=1, lr=0.5)
    assert all(sent == trainable and not kept for sent, kept in uploads)
    assert out.upload_values_per_client_round == out.trainable_params

    with pytest.raises(ConfigError, match="private"):
        tiny_cfg(federate="cross-modal", private=["adapter.up.text"])
    with pytest.raises(ConfigError, match="federate"):
        tiny_cfg(federate="half")
    with pytest.raises(ConfigError, match="cross-modal shared part"):  # the plain adapter shares nothing
        create_method(tiny_cfg(federate="cross-modal", variant="adapter"), tiny, [])


def test_validation_is_scored_every_kth_round_and_the_last(tiny):
    from fedrs.retrieval.config import ValidationConfig

    data, val, test = tiny_set(tiny, n_images=6), tiny_set(tiny, n_images=3), tiny_set(tiny, n_images=4)
    out = federated_retrieval(tiny, data, test, tiny_cfg(validation=ValidationConfig(every=2)), num_clients=2,
                              rounds=3, lr=0.5, val=val)
    assert ["val_mR" in row for row in out.history] == [False, False, True, True]  # rounds 0..3
    assert all(0 <= row["val_mR"] <= 100 and row["val_s"] >= 0 for row in out.history[2:])
    assert not any("val_mR_personalised" in row for row in out.history)  # nothing private


def test_centralised_reference_is_one_client(tiny):
    data, test = tiny_set(tiny, n_images=6), tiny_set(tiny, n_images=4)
    out = federated_retrieval(tiny, data, test, tiny_cfg(), num_clients=1, rounds=1, lr=0.5)
    assert out.shards == [list(range(6))] and out.personalised == []
    assert out.upload_values_per_client_round == out.trainable_params


@pytest.mark.parametrize("name", ["pe_rsitr_ucm.yaml", "pe_rsitr_rsicd.yaml"])
def test_describe_paper_config_reports_161088(capsys, name):
    from pathlib import Path

    from fedrs.cli import main

    params = Path(__file__).resolve().parents[1] / "params" / "paper" / name
    assert main(["describe", str(params), "--no-weights"]) == 0
    out = capsys.readouterr().out
    assert '"trainable_params": 161088' in out and '"method": "pe-rsitr"' in out


def test_retrieval_params_files_state_the_published_loss_and_the_validation_split():
    from fedrs.runs import load_run_config

    root = Path(__file__).resolve().parents[1] / "params"
    files = sorted(root.glob("offline/pe_rsitr_*.yaml")) + sorted(root.glob("paper/pe_rsitr_*.yaml"))
    assert len(files) >= 7
    for path in files:
        cfg = load_run_config(path)
        m = cfg.method
        assert (m.loss.form, m.loss.margin, m.loss.negatives, m.loss.duplicate_captions) == \
            ("hinge", 0.2, "hardest", "mask"), path
        assert m.validation.fraction == 0.2, path
        # RSICD ships train and test only; its validation split comes out of train
        assert m.train_split == ("train" if cfg.data.dataset == "RSICD" else "train+val"), path
        if path.parent.name == "paper":
            assert (cfg.train.batch_size, cfg.train.rounds, cfg.backbone.pretrained) == (16, 30, "openai"), path


def write_retrieval_params(path: Path, data: str, method_extra: str = "") -> Path:
    """A tiny pe-rsitr params file (random tiny backbone, 2 clients, 1 round) with ``data``'s keys."""
    path.write_text(
        "backbone: {model: fedrs-rsclip-tiny, pretrained: random}\n"
        f"data: {{dataset: UCM-Captions, num_clients: 2, {data}}}\n"
        f"method: {{name: pe-rsitr, adapter: {{bottleneck: 16, shared_dim: 8}}{method_extra}}}\n"
        "train: {rounds: 1, lr: 0.1}\n", encoding="utf-8")
    return path


def serve_sets(monkeypatch, sets: dict) -> None:
    """``RetrievalSet.load`` returns ``sets[split]`` instead of reading the caption set."""
    from fedrs.retrieval.data import RetrievalSet

    monkeypatch.setattr(RetrievalSet, "load", classmethod(lambda cls, dataset, split, backbone, **kw: sets[split]))


def test_fedrs_run_writes_a_retrieval_run_folder(tiny, tmp_path, monkeypatch, capsys):
    import json

    from fedrs.cli import main

    sets = {"train+val": tiny_set(tiny, n_images=6), "test": tiny_set(tiny, n_images=4)}
    serve_sets(monkeypatch, sets)
    params = write_retrieval_params(tmp_path / "tiny.yaml", "scheme: iid", ", private: [adapter.up.text]")
    out = tmp_path / "run"
    assert main(["run", str(params), "--out", str(out), "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "pe-rsitr" and set(summary["global"]) >= {"i2t_r1", "t2i_r10", "mR"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["private_prefixes"] == ["adapter.up.text"] and metrics["personalised"]
    split = json.loads((out / "split.json").read_text())
    # the clients hold the training images minus the validation split (20% by default), which
    # the server scores after every round; the final round is reported on test
    val = split["validation"]["images"]
    assert len(val) == 1 and not set(val) & set(split["clients"][0] + split["clients"][1])
    assert sorted(split["clients"][0] + split["clients"][1] + val) == sorted(sets["train+val"].image_ids)
    assert metrics["selection"]["split"] == "val (20% of the train+val images, seed 0): 1 of 6"
    assert len(metrics["selection"]["val_mR"]) == 1 and metrics["selection"]["best_round"] == 1
    assert "final round (1) on test" in metrics["selection"]["reported"]
    rounds = (out / "rounds.csv").read_text().splitlines()
    assert "val_mR" in rounds[0].split(",") and "val_mR_personalised" in rounds[0].split(",")
    # the engine's per-round test check is image->text R@1 here, not a classification accuracy
    assert "global_i2t_r1" in rounds[0].split(",") and "_acc" not in rounds[0]
    assert metrics["test_set"] == "tiny: 4 images" and metrics["train_images"] == 5
    assert metrics["loss"]["form"] == "hinge" and metrics["loss"]["duplicate_captions"] == "mask"
    assert {"mR", "mR_optimistic", "mR_argsort", "i2t_r1_argsort"} <= set(metrics["global"])
    assert {"rounds.csv", "clients.csv", "params.yaml", "env.json"} <= {p.name for p in out.iterdir()}
    params_yaml = (out / "params.yaml").read_text()
    assert "duplicate_captions: mask" in params_yaml and "fraction: 0.2" in params_yaml
    # scene-class skew needs labels: the tiny set has none, so it is one clear error
    capsys.readouterr()
    bad = tmp_path / "bad.yaml"
    bad.write_text(params.read_text().replace("scheme: iid", "scheme: dirichlet"), encoding="utf-8")
    assert main(["run", str(bad), "--out", str(tmp_path / "bad")]) == 2
    assert "use scheme: iid" in capsys.readouterr().err


def labelled_set(backbone, classes=("beach", "forest", "harbor", "river"), per_class=6) -> "RetrievalSet":
    data = tiny_set(backbone, n_images=len(classes) * per_class)
    data.labels = [classes[i % len(classes)] for i in range(len(data))]
    return data


def test_retrieval_clients_can_be_skewed_by_scene_class(tiny):
    from fedrs.data.partition import PartitionConfig
    from fedrs.retrieval.data import split_clients, split_disjoint

    data = labelled_set(tiny)

    def check(shards):
        flat = sorted(sum(shards, []))
        assert flat == list(range(len(data)))  # disjoint and complete
        return [{data.labels[i] for i in s} for s in shards]

    iid = PartitionConfig(dataset="tiny", num_clients=3, scheme="iid", seed=4)
    assert split_clients(data, iid) == split_disjoint(data, 3, seed=4)  # unchanged IID behaviour
    path = split_clients(data, PartitionConfig(dataset="tiny", num_clients=4, scheme="pathological",
                                               classes_per_client=1))
    assert [len(c) for c in check(path)] == [1, 1, 1, 1]
    skew = PartitionConfig(dataset="tiny", num_clients=2, scheme="dirichlet", alpha=0.05, seed=0)
    strong = check(split_clients(data, skew))
    flat = PartitionConfig(dataset="tiny", num_clients=2, scheme="dirichlet", alpha=1000.0, seed=0)
    even = check(split_clients(data, flat))
    assert all(len(c) == 4 for c in even)  # huge alpha: every client sees every class
    assert min(len(c) for c in strong) < 4  # tiny alpha: some client misses classes
    # a client subset keeps its images' labels
    sub = data.subset(path[0])
    assert set(sub.labels) == check(path)[0]


def test_fedrs_run_with_dirichlet_retrieval_clients(tiny, tmp_path, monkeypatch, capsys):
    import json

    from fedrs.cli import main

    sets = {"train+val": labelled_set(tiny), "test": tiny_set(tiny, n_images=4)}
    serve_sets(monkeypatch, sets)
    params = write_retrieval_params(tmp_path / "skew.yaml", "scheme: dirichlet, alpha: 0.1, seed: 3")
    out = tmp_path / "run"
    assert main(["run", str(params), "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "dirichlet(alpha=0.1), 2 clients"
    split = json.loads((out / "split.json").read_text())
    assert split["scheme"] == "dirichlet"
    val = split["validation"]["images"]
    assert len(val) == 5  # round(0.2 * 24), held out before the clients are dealt
    assert sorted(split["clients"][0] + split["clients"][1] + val) == sorted(sets["train+val"].image_ids)
    clients = (out / "clients.csv").read_text().splitlines()
    assert clients[0].startswith("client,train_images,scene_classes")


def test_retrieval_run_resumes_to_the_uninterrupted_result(tiny, tmp_path, monkeypatch):
    """The shared run-folder preamble on the retrieval pipeline: split.json is written before the
    rounds, a resumed run ends with the uninterrupted run's recalls, and a resumed run whose
    clients would hold other images is refused."""
    from fedrs.experiment import run_experiment
    from fedrs.runs import load_run_config

    serve_sets(monkeypatch, {"train+val": tiny_set(tiny, n_images=6), "test": tiny_set(tiny, n_images=4)})
    params = write_retrieval_params(tmp_path / "tiny.yaml", "scheme: iid", ", private: [adapter.up.text]")
    cfg = load_run_config(params, {"train.rounds": 2})
    reference = run_experiment(cfg, tmp_path / "reference", progress=False)

    def stop_after_round_1(r, row):
        if r == 1:
            raise KeyboardInterrupt

    for name in ("resumed", "tampered"):
        with pytest.raises(KeyboardInterrupt):
            run_experiment(cfg, tmp_path / name, progress=False, on_round=stop_after_round_1)
        assert (tmp_path / name / "split.json").read_text() == (tmp_path / "reference" / "split.json").read_text()
        assert not (tmp_path / name / "metrics.json").exists()
    resumed = run_experiment(cfg, tmp_path / "resumed", progress=False, resume=True)
    assert resumed["global"] == reference["global"] and resumed["personalised"] == reference["personalised"]
    split = tmp_path / "tampered" / "split.json"
    split.write_text(split.read_text().replace('"seed": 0', '"seed": 1'))
    with pytest.raises(FedrsError, match="differs from the partition rebuilt now"):
        run_experiment(cfg, tmp_path / "tampered", progress=False, resume=True)


@pytest.mark.parametrize("data, refused", [
    ("scheme: iid, unseen_clients: 1", "data.unseen_clients: 1 applies to classification runs only"),
    ("scheme: iid, class_split: base-to-novel", "data.class_split: base-to-novel applies to classification"),
    ("scheme: iid, unseen_clients: 2, class_split: base-to-novel",
     "data.unseen_clients: 2 and data.class_split: base-to-novel apply to classification runs only"),
])
def test_retrieval_run_refuses_the_classification_only_data_settings(tiny, tmp_path, monkeypatch, capsys, data,
                                                                     refused):
    from fedrs.cli import main

    serve_sets(monkeypatch, {"train+val": tiny_set(tiny, n_images=6), "test": tiny_set(tiny, n_images=4)})
    out = tmp_path / "run"
    assert main(["run", str(write_retrieval_params(tmp_path / "p.yaml", data)), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fedrs: error: ") and refused in err[0], err
    assert not out.exists() or not any(out.iterdir())  # nothing left behind


def test_retrieval_metrics_partition_leaves_out_later_fields_at_their_defaults(tiny, tmp_path, monkeypatch):
    """metrics.json's partition is the data section as it was before unseen_clients and
    class_split existed (those fields do not apply to retrieval), so run files stay byte-identical."""
    from fedrs.experiment import run_experiment
    from fedrs.runs import load_run_config

    serve_sets(monkeypatch, {"train+val": tiny_set(tiny, n_images=6), "test": tiny_set(tiny, n_images=4)})
    cfg = load_run_config(write_retrieval_params(tmp_path / "p.yaml", "scheme: iid, seed: 2"))
    partition = run_experiment(cfg, tmp_path / "run", progress=False)["partition"]
    assert "unseen_clients" not in partition and "class_split" not in partition
    assert (partition["dataset"], partition["num_clients"], partition["scheme"], partition["seed"]) == \
        ("UCM-Captions", 2, "iid", 2)
