"""The baselines of issue #4 in the shared harness, on the tiny random-init backbone.

Zero-shot, local-only, PromptFL, FedPGP-style, FedOTP-style and centralised: each trains only its
own tensors, uploads exactly what it declares (local-only nothing; FedPGP and FedOTP never their
local parts), runs through ``run_experiment``, and centralised equals one client holding all data.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedrs.backbone.factory import create_backbone
from fedrs.errors import FedrsError
from fedrs.federated import ClientData, LocalTrainConfig, client_update, run_experiment
from fedrs.federated.commands import describe_run
from fedrs.federated.engine import FederatedEngine
from fedrs.methods import create_method
from fedrs.methods.fedotp import unbalanced_sinkhorn
from fedrs.runs import EvalConfig, TrainConfig, load_run_config, run_config
from test_federated import CLASSES, make_dataset, tiny_config

OFFLINE = Path(__file__).resolve().parents[1] / "params" / "offline"
BASELINES = ("zeroshot", "local", "promptfl", "fedpgp", "fedotp", "centralised")
#: method config -> (uploaded tensor names, private tensor names)
DECLARED = {
    "zeroshot": ((), ()),
    "local": ((), ("ctx",)),
    "promptfl": (("ctx",), ()),
    "fedpgp": (("sigma",), ("U", "V")),
    "fedotp": (("ctx_global",), ("ctx_local",)),
    "fedotp-ot": (("ctx_global",), ("ctx_local",)),
    "centralised": (("text_shared", "text_private", "visual_shared", "visual_private"), ()),
}


def method_cfg(key: str) -> dict:
    return {"name": "fedotp", "matching": "ot"} if key == "fedotp-ot" else {"name": key}


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synth"), per_class=8)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FEDRS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def client_data(backbone, client_id: int = 0, n: int = 12) -> ClientData:
    gen = torch.Generator().manual_seed(client_id)
    return ClientData(client_id, torch.arange(n) % 3, torch.arange(n), torch.arange(n),
                      features=torch.randn(n, backbone.embed_dim, generator=gen),
                      images=torch.randn(n, 3, 32, 32, generator=gen))


@pytest.mark.parametrize("key", list(DECLARED))
def test_method_trains_only_its_own_tensors_and_uploads_what_it_declares(backbone, key):
    method = create_method(method_cfg(key), backbone, CLASSES)
    uploads, private = DECLARED[key]
    assert method.upload_names == uploads and method.private_names == private
    frozen = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    before = method.get_tensors(method.trainable_names)
    res = client_update(method, method.initial_global(), method.initial_private(0), client_data(backbone),
                        LocalTrainConfig(lr=0.05, batch_size=4))
    after = method.get_tensors(method.trainable_names)
    assert all(not torch.equal(before[n], after[n]) for n in method.trainable_names)  # every own tensor trains
    assert all(torch.equal(v, frozen[k]) for k, v in backbone.model.state_dict().items())  # backbone frozen
    assert set(res.shared) == set(uploads) and set(res.client_state) == set(private)
    assert res.metrics["steps"] == (0 if key == "zeroshot" else 3)
    for name in private:
        with pytest.raises(FedrsError, match="privacy check failed"):
            method.check_upload({**res.shared, name: after[name]})


def test_zeroshot_is_the_template_classifier(backbone):
    from fedrs.prompts import template_text_features

    data = client_data(backbone)
    batch = data.batch(torch.arange(12), images=False)
    single = create_method({"name": "zeroshot"}, backbone, CLASSES)
    expected = backbone.model.logit_scale.exp() * torch.nn.functional.normalize(batch.features, dim=-1) \
        @ template_text_features(backbone, CLASSES).t()
    assert torch.allclose(single.logits(batch), expected, atol=1e-5)
    assert torch.equal(single.logits(batch, personalised=False), single.logits(batch))
    ensemble = create_method({"name": "zeroshot", "ensemble": True}, backbone, CLASSES)
    assert not torch.allclose(ensemble.logits(batch), single.logits(batch))
    assert single.describe()["trainable_params"] == 0


def run_engine(method, clients, rounds: int = 2) -> FederatedEngine:
    pooled = torch.unique(torch.cat([c.test_indices for c in clients]))
    engine = FederatedEngine(method, clients, pooled, TrainConfig(rounds=rounds, lr=0.05, batch_size=4),
                             EvalConfig())
    engine.run(progress=False)
    return engine


def three_clients(backbone) -> list[ClientData]:
    base = client_data(backbone, n=24)
    return [ClientData(k, base.labels, torch.arange(k, 24, 3), torch.arange(k, 24, 3), base.features, base.images)
            for k in range(3)]


@pytest.mark.parametrize("key", ["local", "fedpgp", "fedotp"])
def test_local_parts_never_leave_the_clients(backbone, key):
    method = create_method(method_cfg(key), backbone, CLASSES)
    engine = run_engine(method, three_clients(backbone))
    uploads, private = DECLARED[key]
    assert set(engine.global_shared) == set(uploads)
    expected = method.num_values(uploads) * 3 * 2 * 4  # values x clients x rounds x bytes
    assert engine.history[-1]["cum_up_bytes"] == expected
    for name in private:  # each client keeps its own, different, trained local part
        states = [s[name] for s in engine.client_states]
        assert not torch.equal(states[0], states[1])
    if key == "local":
        assert engine.global_shared == {} and engine.history[-1]["cum_down_bytes"] == 0


def test_centralised_equals_one_client_holding_all_data(backbone):
    clients = three_clients(backbone)
    central = run_engine(create_method({"name": "centralised"}, backbone, CLASSES), clients)
    pooled = ClientData(0, clients[0].labels, torch.arange(24), torch.cat([c.test_indices for c in clients]),
                        clients[0].features, clients[0].images)
    single = run_engine(create_method({"name": "fedrsclip"}, backbone, CLASSES), [pooled])
    assert len(central.clients) == 1 and central.clients[0].num_train == 24
    trained = {**single.global_shared, **single.client_states[0]}
    assert set(trained) == set(central.global_shared)
    assert all(torch.equal(central.global_shared[k], trained[k]) for k in trained)
    for key in ("personalised_acc_weighted", "train_loss"):
        assert central.history[-1][key] == single.history[-1][key]
    with pytest.raises(ValueError, match="leave upload empty"):
        create_method({"name": "centralised", "upload": ["text_shared"]}, backbone, CLASSES)


def test_unbalanced_sinkhorn_marginals():
    cost = torch.rand(2, 5, 3)
    balanced = unbalanced_sinkhorn(cost, eps=0.1, tau=None, iters=500, thresh=1e-9)
    assert torch.allclose(balanced.sum(-1), torch.full((2, 5), 1 / 5), atol=1e-4)
    assert torch.allclose(balanced.sum(-2), torch.full((2, 3), 1 / 3), atol=1e-4)
    relaxed = unbalanced_sinkhorn(cost + 1.0, eps=0.1, tau=1.0)
    assert (relaxed.sum(dim=(-2, -1)) < 1).all()  # mass is created/destroyed at a KL price


def test_describe_reports_uploaded_values(backbone):
    sizes = {k: create_method(method_cfg(k), backbone, CLASSES).describe()["upload_values_per_client_round"]
             for k in DECLARED}
    width = 64  # tiny text width; 4 tokens x 512 = 2,048 on ViT-B-16
    assert sizes == {"zeroshot": 0, "local": 0, "promptfl": 4 * width, "fedpgp": 4 * width,
                     "fedotp": 4 * width, "fedotp-ot": 4 * width, "centralised": 2 * 4 * width + 2 * 2 * 64}
    assert create_method({"name": "promptfl", "n_ctx": 16}, backbone, CLASSES).describe()[
        "upload_values_per_client_round"] == 16 * width


@pytest.mark.parametrize("name", BASELINES + ("fedrsclip",))
def test_offline_config_runs_through_fedrs_run(name, synth, tmp_path):
    path = OFFLINE / f"{name}_ucmerced.yaml"
    if not path.is_file():
        pytest.skip(f"{path} is not written yet")
    cfg = load_run_config(path)
    assert cfg.method.name == name and cfg.backbone.model == "fedrs-rsclip-s"
    assert (cfg.data.dataset, cfg.data.scheme, cfg.data.alpha, cfg.data.num_clients) == ("UCMerced", "dirichlet", 0.5, 10)
    expected = {"zeroshot": 0, "local": 0, "promptfl": 4 * 128, "fedpgp": 4 * 128, "fedotp": 4 * 128}  # text width 128
    if name in expected:
        assert describe_run(cfg, no_weights=True)["upload_values_per_client_round"] == expected[name]
    # the same method section on the tiny backbone and synthetic data, one round
    tiny = run_config(tiny_config(method=vars(cfg.method), train={"rounds": 1}))
    metrics = run_experiment(tiny, tmp_path, datasets=[synth], progress=False)
    assert metrics["method"] == name and 0 <= metrics["personalised_accuracy"] <= 1
