"""The baselines of issue #4 in the shared harness, on the tiny random-init backbone.

What every registered method must do (train only its own tensors, upload only what it declares,
refuse a private tensor in an upload) is ``test_methods_registry.py``, generated from the registry.
Here is what is specific to each baseline: the tensor names each declares (local-only uploads
nothing; FedPGP and FedOTP never their local parts), FedOTP's non-default global+local ensemble,
the zero-shot classifier, sizes, local parts across an engine run, centralised equal to one client
holding all data, and each offline config through ``run_experiment``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_federated import CLASSES, make_dataset, tiny_config
from test_methods_registry import check_client_update, check_privacy, classification_data

from fedrs.backbone.factory import create_backbone
from fedrs.backbone.templates import template_text_features
from fedrs.experiment import describe_run, run_experiment
from fedrs.federated import ClientData
from fedrs.federated.engine import FederatedEngine
from fedrs.methods import create_method
from fedrs.runs import EvalConfig, TrainConfig, load_run_config, run_config

OFFLINE = Path(__file__).resolve().parents[1] / "params" / "offline"
BASELINES = ("zeroshot", "local", "promptfl", "fedpgp", "fedotp", "centralised")
#: method config -> (uploaded tensor names, private tensor names)
DECLARED = {
    "zeroshot": ((), ()),
    "local": ((), ("ctx",)),
    "promptfl": (("ctx",), ()),
    "fedpgp": (("sigma",), ("U", "V")),
    "fedotp": (("ctx_global",), ("ctx_local",)),
    "fedotp-ensemble": (("ctx_global",), ("ctx_local",)),
    "centralised": (("text_shared", "text_private", "visual_shared", "visual_private"), ()),
}


def method_cfg(key: str) -> dict:
    return {"name": "fedotp", "matching": "ensemble"} if key == "fedotp-ensemble" else {"name": key}


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
def test_method_declares_its_own_uploaded_and_private_tensors(backbone, key):
    method = create_method(method_cfg(key), backbone, CLASSES)
    uploads, private = DECLARED[key]
    assert method.upload_names == uploads and method.private_names == private


def test_ensemble_matching_trains_both_prompts_on_pooled_features_and_keeps_the_local_one(backbone):
    # a non-default variant: the registry test builds each method's default config only (FedOTP's
    # transport over patch tokens, tests/test_fedotp.py)
    method = create_method(method_cfg("fedotp-ensemble"), backbone, CLASSES)
    assert not method.needs_images(train=True) and method.image_representation() == "pooled"
    check_client_update(method, *classification_data(method, backbone))
    check_privacy(method)


def test_zeroshot_is_the_template_classifier(backbone):
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


def three_clients(backbone, patch_tokens: bool = False) -> list[ClientData]:
    base = client_data(backbone, n=24)
    feats = base.features
    if patch_tokens:  # FedOTP's transport reads the frozen encoder's patch tokens [N, L, D]
        feats = torch.randn(24, (backbone.image_size // 8) ** 2, backbone.embed_dim,
                            generator=torch.Generator().manual_seed(3))
    return [ClientData(k, base.labels, torch.arange(k, 24, 3), torch.arange(k, 24, 3), feats, base.images)
            for k in range(3)]


@pytest.mark.parametrize("key", ["local", "fedpgp", "fedotp"])
def test_local_parts_never_leave_the_clients(backbone, key):
    method = create_method(method_cfg(key), backbone, CLASSES)
    engine = run_engine(method, three_clients(backbone, patch_tokens=key == "fedotp"))
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


def test_describe_reports_uploaded_values(backbone):
    sizes = {k: create_method(method_cfg(k), backbone, CLASSES).describe()["upload_values_per_client_round"]
             for k in DECLARED}
    width = 64  # tiny text width; 4 tokens x 512 = 2,048 on ViT-B-16
    # FedPGP and FedOTP upload their own published prompt length, 16 tokens
    assert sizes == {"zeroshot": 0, "local": 0, "promptfl": 4 * width, "fedpgp": 16 * width,
                     "fedotp": 16 * width, "fedotp-ensemble": 16 * width,
                     "centralised": 2 * 4 * width + 2 * 2 * 64}
    assert create_method({"name": "promptfl", "n_ctx": 16}, backbone, CLASSES).describe()[
        "upload_values_per_client_round"] == 16 * width


@pytest.mark.parametrize("name", BASELINES + ("fedrsclip",))
def test_offline_config_runs_through_fedrs_run(name, synth, tmp_path):
    path = OFFLINE / f"{name}_ucmerced.yaml"
    if not path.is_file():
        pytest.skip(f"{path} is not written yet")
    cfg = load_run_config(path)
    assert cfg.method.name == name and cfg.backbone.model == "fedrs-rsclip-s"
    assert ((cfg.data.dataset, cfg.data.scheme, cfg.data.alpha, cfg.data.num_clients)
            == ("UCMerced", "dirichlet", 0.5, 10))
    # text width 128; FedPGP and FedOTP at their own published prompt length (16 tokens)
    expected = {"zeroshot": 0, "local": 0, "promptfl": 4 * 128, "fedpgp": 16 * 128, "fedotp": 16 * 128}
    if name in expected:
        assert describe_run(cfg, no_weights=True)["upload_values_per_client_round"] == expected[name]
    # the same method section on the tiny backbone and synthetic data, one round
    tiny = run_config(tiny_config(method=vars(cfg.method), train={"rounds": 1}))
    metrics = run_experiment(tiny, tmp_path, datasets=[synth], progress=False)
    assert metrics["method"] == name and 0 <= metrics["personalised_accuracy"] <= 1
