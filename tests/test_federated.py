"""Client update, aggregation, the in-process engine, checkpoint/resume and run configs.

Everything runs on the tiny random-init backbone and a synthetic 3-class dataset of 32 px images.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from fedrs.backbone.factory import create_backbone
from fedrs.config import ConfigError
from fedrs.data.scenes import synthetic_scene_dataset
from fedrs.errors import FedrsError
from fedrs.experiment import run_experiment
from fedrs.federated import ClientData, ClientResult, LocalTrainConfig, aggregate, client_update
from fedrs.federated.engine import round_lr, sample_clients
from fedrs.methods import create_method
from fedrs.runs import TrainConfig, load_run_config, run_config

CLASSES = ["airplane", "beach", "forest"]
TIMING = ("time_s",)


def make_dataset(folder: Path, per_class: int = 10, name: str = "Synth"):
    """A SceneDataset of small PNGs, one colour cast per class."""
    return synthetic_scene_dataset(folder, CLASSES, per_class=per_class, name=name)


def tiny_config(**sections) -> dict:
    cfg = {
        "backbone": {"model": "fedrs-rsclip-tiny", "pretrained": "random"},
        "data": {"dataset": "Synth", "num_clients": 3, "scheme": "iid", "seed": 0},
        "method": {"name": "fedrsclip"},
        "train": {"rounds": 3, "batch_size": 8, "lr": 0.01, "seed": 0},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    """Feature caches of the synthetic data go to a temporary folder, never the repository's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDRS_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


def read_rounds(folder: Path) -> list[dict]:
    with open(folder / "rounds.csv") as fh:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def reference_run(synth, tmp_path_factory):
    """One uninterrupted 3-round run (visual prompts on), shared by several tests."""
    out = tmp_path_factory.mktemp("ref")
    metrics = run_experiment(run_config(tiny_config()), out, datasets=[synth], progress=False)
    return out, metrics


# --- aggregation -------------------------------------------------------------------------------

def result(cid: int, n: int, value) -> ClientResult:
    return ClientResult(client_id=cid, shared={"p": value}, num_examples=n)


def test_fedavg_is_the_sample_weighted_mean():
    a, b, c = torch.tensor([1.0, 2.0]), torch.tensor([3.0, -1.0]), torch.tensor([0.5, 0.0])
    expected = (10 * a + 30 * b + 60 * c) / 100
    out = aggregate([result(2, 60, c), result(0, 10, a), result(1, 30, b)], ["p"])
    assert torch.allclose(out["p"], expected) and out["p"].dtype == torch.float32
    shuffled = aggregate([result(1, 30, b), result(2, 60, c), result(0, 10, a)], ["p"])
    assert torch.equal(out["p"], shuffled["p"])  # client-id order, not arrival order
    as_numpy = aggregate([result(0, 10, a.numpy()), result(1, 30, b.numpy()), result(2, 60, c.numpy())], ["p"])
    assert isinstance(as_numpy["p"], np.ndarray) and np.allclose(as_numpy["p"], expected.numpy())


def test_aggregate_rejects_undeclared_or_missing_tensors():
    with pytest.raises(FedrsError, match="expected exactly"):
        aggregate([ClientResult(0, {"p": torch.ones(1), "secret": torch.ones(1)}, 1)], ["p"])
    with pytest.raises(FedrsError, match="expected exactly"):
        aggregate([ClientResult(0, {}, 1)], ["p"])
    assert aggregate([], []) == {}


# --- client update -----------------------------------------------------------------------------

def client_data(backbone, n: int = 12, images: bool = True) -> ClientData:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 3
    return ClientData(0, labels, torch.arange(n), torch.arange(n),
                      features=torch.randn(n, backbone.embed_dim, generator=gen),
                      images=torch.randn(n, 3, 32, 32, generator=gen) if images else None)


@pytest.mark.parametrize("upload", [["text_shared"], ["text_shared", "visual_shared"]])
def test_upload_never_contains_private_tensors(backbone, upload):
    method = create_method({"name": "fedrsclip", "upload": upload}, backbone, CLASSES)
    res = client_update(method, method.initial_global(), method.initial_private(0), client_data(backbone),
                        LocalTrainConfig(lr=0.01, batch_size=4, keep_optimizer_state=True))
    assert set(res.shared) == set(upload)
    assert not set(res.shared) & {"text_private", "visual_private"}
    private = set(method.private_names)
    assert {k for k in res.client_state if not k.startswith("momentum.")} == private
    assert ({k for k in res.client_state if k.startswith("momentum.")}
            == {f"momentum.{n}" for n in method.trainable_names})
    assert res.num_examples == 12 and res.metrics["steps"] == 3
    with pytest.raises(FedrsError, match="privacy check failed"):
        method.check_upload({**res.shared, "text_private": torch.zeros(1)})


def test_text_only_uses_cached_features_and_one_text_pass_per_step(backbone):
    method = create_method({"name": "fedrsclip", "visual_prompts": False}, backbone, CLASSES)
    calls = []
    text = method.module.text
    original = text.forward
    text.forward = lambda ctx, normalize=True: calls.append(ctx.shape) or original(ctx, normalize)
    as_numpy = {k: v.numpy() for k, v in {**method.initial_global(), **method.initial_private(0)}.items()}
    res = client_update(method, {"text_shared": as_numpy.pop("text_shared")}, as_numpy,  # Flower arrays
                        client_data(backbone, images=False), LocalTrainConfig(lr=0.01, batch_size=4))
    assert res.metrics["steps"] == 3 and calls == [(2, 4, 64)] * 3  # shared+private stacked, once a step


# --- engine ------------------------------------------------------------------------------------

def test_round_schedule_and_sampling():
    train = TrainConfig(rounds=4, lr=0.002)
    assert [round(round_lr(train, r), 6) for r in (1, 3)] == [0.002, 0.001]
    assert sample_clients(10, 1.0, 0, 1) == list(range(10))
    picked = sample_clients(10, 0.3, 0, 1)
    assert len(picked) == 3 and picked == sample_clients(10, 0.3, 0, 1) == sorted(picked)


def test_run_writes_the_folder(reference_run):
    out, metrics = reference_run
    for name in ("params.yaml", "split.json", "rounds.csv", "clients.csv", "metrics.json", "env.json"):
        assert (out / name).is_file(), name
    assert metrics["upload_values_per_client_round"] == 4 * 64
    assert metrics["upload_bytes_per_client_round"] == 4 * 64 * 4
    assert metrics["measured_upload_bytes_total"] == 3 * 3 * 4 * 64 * 4  # rounds x clients x bytes
    assert metrics["backbone"] == "fedrs-rsclip-tiny/random-init" and metrics["method"] == "fedrsclip"
    rows = read_rounds(out)
    assert [int(r["round"]) for r in rows] == [0, 1, 2, 3]
    assert {"personalised_acc_weighted", "personalised_acc_unweighted", "global_acc", "train_ce",
            "train_dpa", "train_cma", "up_bytes_per_client", "cum_up_bytes"} <= set(rows[1])


def test_same_seed_gives_identical_metrics(reference_run, synth, tmp_path):
    out, metrics = reference_run
    again = run_experiment(run_config(tiny_config()), tmp_path, datasets=[synth], progress=False)
    assert read_rounds(tmp_path) == read_rounds(out)
    assert all(again[k] == metrics[k] for k in ("personalised_accuracy", "global_accuracy", "final_train_loss"))


def test_interrupt_and_resume_gives_identical_final_metrics(reference_run, synth, tmp_path):
    cfg = run_config(tiny_config())

    def stop_after_round_1(r, row):
        if r == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path, datasets=[synth], progress=False, on_round=stop_after_round_1)
    assert not (tmp_path / "metrics.json").exists()
    with pytest.raises(FedrsError, match="interrupted run: pass --resume"):
        run_experiment(cfg, tmp_path, datasets=[synth], progress=False)
    resumed = run_experiment(cfg, tmp_path, datasets=[synth], progress=False, resume=True)
    out, metrics = reference_run
    assert read_rounds(tmp_path) == read_rounds(out)
    assert (tmp_path / "clients.csv").read_text().count("\n") == (out / "clients.csv").read_text().count("\n")
    assert all(resumed[k] == metrics[k] for k in ("personalised_accuracy", "global_accuracy", "final_train_loss"))


def test_finished_run_is_not_rerun(reference_run, synth):
    out, metrics = reference_run
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert run_experiment(run_config(tiny_config()), out, datasets=[synth], progress=False) == metrics
    assert (out / "metrics.json").stat().st_mtime_ns == stamp
    with pytest.raises(FedrsError, match="finished run with other parameters"):
        run_experiment(run_config(tiny_config(train={"rounds": 5})), out, datasets=[synth], progress=False)


# --- configuration errors ----------------------------------------------------------------------

@pytest.mark.parametrize("patch, message", [
    ({"trian": {}}, r"unknown key\(s\) \['trian'\]"),
    ({"train": {"rounds": "ten"}}, "train.rounds: expected an integer"),
    ({"train": {"sample_fraction": 0.0}}, "train.sample_fraction=0.0 is out of range"),
    ({"method": {"name": "fedprox"}}, "unknown method 'fedprox'"),
    ({"method": {"n_ctx": 0}}, "method.n_ctx must be >= 1"),
    ({"method": {"upload": ["text_private"]}}, "private prompts are never uploaded"),
    ({"method": {"visual_prompts": False, "upload": ["visual_shared"]}}, "visual prompts are off"),
    ({"method": {"dpa": "l2"}}, "method.dpa: must be one of"),
    ({"method": {"colour": 1}}, r"method: unknown key\(s\) \['colour'\]"),
    ({"data": {"alpha": 0}}, "alpha must be a number > 0"),
])
def test_bad_configuration_names_key_and_file(tmp_path, patch, message):
    import yaml

    data = tiny_config()
    for key, value in patch.items():
        data[key] = {**data.get(key, {}), **value} if value else value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message) as err:
        load_run_config(path)
    assert str(path) in str(err.value)


def test_run_killed_before_its_first_checkpoint_starts_over(tmp_path):
    """A run killed during setup leaves params.yaml and env.json (no checkpoint): the folder is an
    empty run and the next run, with any parameters, starts over in it."""
    from fedrs.runs import ENV, RunFolder

    folder = RunFolder(tmp_path)
    assert folder.prepare(run_config(tiny_config()), resume=False, force=False) is False
    (tmp_path / ENV).write_text("{}")  # what write_env left before the kill
    assert folder.status == "empty"
    assert folder.prepare(run_config(tiny_config(train={"rounds": 5})), resume=False, force=False) is False
    assert folder.stored_params()["train"]["rounds"] == 5


def test_failed_setup_leaves_nothing_behind(tmp_path, monkeypatch):
    import fedrs.classification as classification

    def no_data(data_cfg):
        raise FedrsError("dataset 'Synth' is not imported")

    monkeypatch.setattr(classification, "load_datasets", no_data)
    out = tmp_path / "new" / "run"
    with pytest.raises(FedrsError, match="not imported"):
        run_experiment(run_config(tiny_config()), out, progress=False)
    assert not (tmp_path / "new").exists()  # the folders it created are gone too
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "notes.txt").write_text("the user's")
    with pytest.raises(FedrsError, match="not imported"):
        run_experiment(run_config(tiny_config()), existing, progress=False, resume=True)
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]


def test_a_params_yaml_that_no_run_wrote_is_never_overwritten(tmp_path, synth):
    mine = tmp_path / "params.yaml"
    mine.write_text("# my experiment\ndata: {dataset: Synth}\nmethod: {name: fedrsclip}\n")
    for resume in (False, True):
        with pytest.raises(FedrsError, match="params.yaml that is not a run's"):
            run_experiment(run_config(tiny_config()), tmp_path, datasets=[synth], progress=False, resume=resume)
    assert mine.read_text().startswith("# my experiment")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_out_that_is_a_file_is_refused(tmp_path, synth):
    out = tmp_path / "file"
    out.write_text("x")
    with pytest.raises(FedrsError, match=r"the run folder is a file \(.*file\): give --out a folder"):
        run_experiment(run_config(tiny_config()), out, datasets=[synth], progress=False)
    assert out.read_text() == "x"


def test_params_written_before_a_new_config_field_still_match(reference_run, synth):
    """A finished run whose params.yaml predates a field with a default is the same run."""
    import yaml

    out, metrics = reference_run
    stored = yaml.safe_load((out / "params.yaml").read_text())
    original = (out / "params.yaml").read_text()
    try:
        del stored["train"]["max_diverged_fraction"]
        (out / "params.yaml").write_text(yaml.safe_dump(stored))
        assert run_experiment(run_config(tiny_config()), out, datasets=[synth], progress=False) == metrics
    finally:
        (out / "params.yaml").write_text(original)


# --- diverged clients, robust aggregation, damaged checkpoints --------------------------------------

def test_screening_keeps_finite_updates_and_names_the_diverged():
    from fedrs.federated.server import DivergedError, check_divergence, screen_results

    good = ClientResult(0, {"p": torch.ones(3)}, 4, {"loss": 0.5})
    nan_tensor = ClientResult(2, {"p": torch.tensor([1.0, float("nan"), float("inf")])}, 4, {"loss": 0.5})
    nan_loss = ClientResult(1, {"p": np.ones(3, dtype=np.float32)}, 4, {"loss": float("nan")})
    kept, excluded = screen_results([nan_tensor, good, nan_loss], round_index=7)
    assert [r.client_id for r in kept] == [0]
    assert [(e.round, e.client) for e in excluded] == [(7, 1), (7, 2)]
    assert "loss term loss is nan" in excluded[0].reason and "p holds 2 non-finite values" in excluded[1].reason
    check_divergence(excluded[:1], 3, 0.5, 7)  # one of three: under the share, the round goes on
    with pytest.raises(DivergedError, match=r"round 7: 2 of 3 clients diverged .*max_diverged_fraction=0.5"):
        check_divergence(excluded, 3, 0.5, 7)
    with pytest.raises(DivergedError, match="1 of 1 clients diverged"):
        check_divergence(excluded[:1], 1, 1.0, 7)  # nobody left to average, whatever the share


def test_robust_aggregation_resists_a_client_scaling_its_update_by_1e6():
    honest = [torch.tensor([1.0, -2.0]), torch.tensor([1.2, -1.8]), torch.tensor([0.8, -2.2]),
              torch.tensor([1.1, -2.1])]
    attacker = torch.tensor([1.0, -2.0]) * 1e6
    results = [result(k, 10, v) for k, v in enumerate(honest + [attacker])]
    mean = aggregate(results, ["p"])["p"]
    median = aggregate(results, ["p"], rule="median")["p"]
    trimmed = aggregate(results, ["p"], rule="trimmed_mean", trim_fraction=0.2)["p"]
    assert mean.abs().max() > 1e5  # FedAvg follows the attacker
    assert torch.allclose(median, torch.tensor([1.1, -2.1])) and median.dtype == torch.float32
    assert torch.allclose(trimmed, torch.tensor([(1.0 + 1.1 + 1.2) / 3, (-2.2 - 2.1 - 2.0) / 3]))


def _diverging(client_ids, scale=float("nan")):
    """A client_update whose uploads from ``client_ids`` are multiplied by ``scale``."""
    from fedrs.federated import engine

    real = engine.client_update

    def update(method, global_shared, client_state, data, cfg):
        res = real(method, global_shared, client_state, data, cfg)
        if data.client_id in client_ids:
            res.shared = {k: v * scale for k, v in res.shared.items()}
        return res

    return update


def test_a_diverged_client_is_left_out_and_recorded(synth, tmp_path, monkeypatch):
    from fedrs.federated import engine

    monkeypatch.setattr(engine, "client_update", _diverging({1}))
    metrics = run_experiment(run_config(tiny_config()), tmp_path, datasets=[synth], progress=False)
    rounds = read_rounds(tmp_path)
    assert [r["excluded_clients"] for r in rounds] == ["", "1", "1", "1"]
    assert all(np.isfinite(float(r["global_acc"])) and np.isfinite(float(r["train_loss"])) for r in rounds[1:])
    with open(tmp_path / "clients.csv") as fh:
        excluded = {(row["round"], row["client"]) for row in csv.DictReader(fh) if row.get("excluded")}
    assert excluded == {("1", "1"), ("2", "1"), ("3", "1")}
    assert np.isfinite(metrics["global_accuracy"]) and np.isfinite(metrics["final_train_loss"])


def test_too_many_diverged_clients_stop_the_run(synth, tmp_path, monkeypatch):
    from fedrs.federated import engine
    from fedrs.federated.server import DivergedError

    monkeypatch.setattr(engine, "client_update", _diverging({0, 2}))
    with pytest.raises(DivergedError, match=r"round 1: 2 of 3 clients diverged .*client 0 .*client 2"):
        run_experiment(run_config(tiny_config()), tmp_path, datasets=[synth], progress=False)
    assert not (tmp_path / "metrics.json").exists()
    # a higher share lets the run go on with the one finite client
    cfg = run_config(tiny_config(train={"max_diverged_fraction": 0.9}))
    run_experiment(cfg, tmp_path / "tolerant", datasets=[synth], progress=False)
    assert [r["excluded_clients"] for r in read_rounds(tmp_path / "tolerant")][1:] == ["0 2"] * 3


def test_median_aggregation_keeps_the_global_prompt_bounded_under_attack(synth, tmp_path, monkeypatch):
    from fedrs.federated import engine

    monkeypatch.setattr(engine, "client_update", _diverging({2}, scale=1e6))
    seen = {}
    real_run_round = engine.FederatedEngine.run_round

    def spy(self, r):
        out = real_run_round(self, r)
        seen[(self.train.aggregation, r)] = float(self.global_shared["text_shared"].abs().max())
        return out

    monkeypatch.setattr(engine.FederatedEngine, "run_round", spy)
    for rule in ("mean", "median"):
        run_experiment(run_config(tiny_config(train={"aggregation": rule})), tmp_path / rule, datasets=[synth],
                       progress=False)
    assert seen[("mean", 3)] > 1e4 and seen[("median", 3)] < 10


@pytest.mark.parametrize("content", ["garbage", "empty dict", "other format"])
def test_resume_from_a_damaged_checkpoint_is_one_clear_error(synth, tmp_path, content):
    cfg = run_config(tiny_config())

    def stop(r, row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path, datasets=[synth], progress=False, on_round=stop)
    ckpt = tmp_path / "checkpoint.pt"
    if content == "garbage":
        ckpt.write_bytes(b"\x80\x02garbage" * 10)
    else:
        torch.save({} if content == "empty dict" else {"format": "something-else"}, ckpt)
    message = "not a readable checkpoint" if content == "garbage" else "not a fedrs run checkpoint"
    with pytest.raises(FedrsError, match=rf"{message}.*--force") as err:
        run_experiment(cfg, tmp_path, datasets=[synth], progress=False, resume=True)
    assert str(ckpt) in str(err.value)
    assert ckpt.is_file()  # kept: the user decides


def test_rounds_zero_of_a_training_method_is_refused_but_zeroshot_may():
    with pytest.raises(ConfigError, match=r"train.rounds=0: method 'fedrsclip' trains.*train.rounds >= 1"):
        run_config(tiny_config(train={"rounds": 0}))
    assert run_config(tiny_config(method={"name": "zeroshot"}, train={"rounds": 0})).train.rounds == 0


def test_few_shot_larger_than_the_data_names_the_largest_allowed(synth, tmp_path):
    cfg = run_config(tiny_config(data={"few_shot": 1000}))
    with pytest.raises(FedrsError, match=r"data.few_shot=1000 is more than any client holds of a class "
                                         r"\(at most (\d+) images\).*data.few_shot <= \1"):
        run_experiment(cfg, tmp_path / "run", datasets=[synth], progress=False)
    assert not (tmp_path / "run").exists()
    run_experiment(run_config(tiny_config(data={"few_shot": 2}, train={"rounds": 1})), tmp_path / "ok",
                   datasets=[synth], progress=False)
