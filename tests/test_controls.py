"""The controls of issue #11 that separate federation from capacity, as configurations of existing
methods: FedRSCLIP-local, PromptFL+VPT, FedRSCLIP with the shared visual prompt uploaded, the truly
shared-only FedRSCLIP, and the matched-step centralised reference. Tiny random-init backbone;
each offline params file is also run for one round on synthetic data.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_federated import CLASSES, make_dataset, tiny_config
from test_methods_registry import check_client_update, check_privacy, classification_data

from fedrs.backbone.factory import create_backbone
from fedrs.experiment import describe_run, run_experiment
from fedrs.federated import ClientData, LocalTrainConfig, client_update
from fedrs.federated.engine import FederatedEngine
from fedrs.methods import Batch, create_method, has_global_model
from fedrs.methods.centralised import MatchedStepClientData
from fedrs.runs import EvalConfig, TrainConfig, load_run_config, run_config

OFFLINE = Path(__file__).resolve().parents[1] / "params" / "offline"
PROMPTS = ("text_shared", "text_private", "visual_shared", "visual_private")


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synth"), per_class=8)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FEDRS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def three_clients(backbone, sizes=(8, 8, 8)) -> list[ClientData]:
    n = sum(sizes)
    gen = torch.Generator().manual_seed(0)
    labels, features = torch.arange(n) % 3, torch.randn(n, backbone.embed_dim, generator=gen)
    images = torch.randn(n, 3, 32, 32, generator=gen)
    bounds = [0, *torch.tensor(sizes).cumsum(0).tolist()]
    return [ClientData(k, labels, torch.arange(bounds[k], bounds[k + 1]), torch.arange(bounds[k], bounds[k + 1]),
                       features, images) for k in range(len(sizes))]


def run_engine(method, clients, rounds: int = 2) -> FederatedEngine:
    pooled = torch.unique(torch.cat([c.test_indices for c in clients]))
    engine = FederatedEngine(method, clients, pooled, TrainConfig(rounds=rounds, lr=0.05, batch_size=4), EvalConfig())
    engine.run(progress=False)
    return engine


# --- FedRSCLIP-local ---------------------------------------------------------------------------

def test_fedrsclip_local_is_fedrsclip_with_nothing_uploaded(backbone):
    local = create_method({"name": "fedrsclip-local"}, backbone, CLASSES)
    full = create_method({"name": "fedrsclip"}, backbone, CLASSES)
    assert local.upload_names == () and local.private_names == PROMPTS and not has_global_model("fedrsclip-local")
    assert local.describe()["trainable_params"] == full.describe()["trainable_params"]  # equal capacity
    # the same initial prompts and objective: one local update from them trains alike
    data = classification_data(local, backbone)[0]
    cfg = LocalTrainConfig(lr=0.05, batch_size=4)
    a = client_update(local, {}, local.initial_private(0), data, cfg)
    b = client_update(full, full.initial_global(), full.initial_private(0), data, cfg)
    assert a.shared == {} and a.metrics == b.metrics
    assert all(torch.equal(a.client_state[n], {**b.shared, **b.client_state}[n]) for n in PROMPTS)
    engine = run_engine(local, three_clients(backbone))
    assert engine.global_shared == {} and engine.history[-1]["cum_up_bytes"] == 0
    states = engine.client_states
    assert all(not torch.equal(states[0][n], states[1][n]) for n in PROMPTS)  # each client its own model


# --- PromptFL+VPT ------------------------------------------------------------------------------

def test_promptfl_vpt_adds_private_visual_tokens_and_uploads_the_prompt_only(backbone):
    plain = create_method({"name": "promptfl"}, backbone, CLASSES)
    vpt = create_method({"name": "promptfl", "visual_tokens": 3}, backbone, CLASSES)
    assert vpt.upload_names == ("ctx",) and vpt.private_names == ("visual_private",)
    assert vpt.shapes(["visual_private"]) == {"visual_private": [1, 3, 64]}
    assert torch.equal(vpt.initial_global()["ctx"], plain.initial_global()["ctx"])  # same seeded ctx
    assert vpt.needs_images(train=True) and vpt.needs_images(train=False)
    assert not vpt.needs_images(train=False, personalised=False) and not plain.needs_images(train=True)
    check_client_update(vpt, *classification_data(vpt, backbone))
    check_privacy(vpt)
    # personalised scores go through the private tokens; global ones are the shared prompt alone
    data = classification_data(vpt, backbone)[0]
    with_images, features = data.batch(torch.arange(4), images=True), data.batch(torch.arange(4), images=False)
    vpt.set_tensors(plain.get_tensors(["ctx"]))
    before = vpt.logits(with_images)
    vpt.set_tensors({"visual_private": torch.randn(1, 3, 64)})
    assert not torch.allclose(vpt.logits(with_images), before)
    assert torch.equal(vpt.logits(features, personalised=False), plain.logits(features, personalised=False))
    with torch.no_grad():  # from images alone: the frozen encoder's features, no visual token
        frozen = Batch(with_images.labels, features=backbone.model.encode_image(with_images.images))
        assert torch.equal(vpt.logits(with_images, personalised=False), plain.logits(frozen, personalised=False))


def test_promptfl_without_visual_tokens_is_unchanged(backbone):
    plain = create_method({"name": "promptfl"}, backbone, CLASSES)
    assert plain.trainable_names == ("ctx",) and not hasattr(plain.module, "visual")
    with pytest.raises(ValueError, match="visual_tokens must be >= 0"):
        create_method({"name": "promptfl", "visual_tokens": -1}, backbone, CLASSES)


# --- FedRSCLIP variants -------------------------------------------------------------------------

def test_fedrsclip_uploading_the_shared_visual_prompt(backbone):
    method = create_method({"name": "fedrsclip", "upload": ["text_shared", "visual_shared"]}, backbone, CLASSES)
    assert method.private_names == ("text_private", "visual_private")
    assert method.needs_images(train=False, personalised=False)  # the server's model holds V_s
    engine = run_engine(method, three_clients(backbone))
    assert set(engine.global_shared) == {"text_shared", "visual_shared"}


def test_true_shared_only_fedrsclip_has_nothing_private(backbone):
    method = create_method({"name": "fedrsclip", "private_prompts": False, "visual_prompts": False}, backbone, CLASSES)
    assert method.trainable_names == method.upload_names == ("text_shared",) and method.private_names == ()
    assert not method.needs_images(train=True)
    # without private prompts alone, the shared visual prompt stays on the clients (a local prompt)
    kept = create_method({"name": "fedrsclip", "private_prompts": False}, backbone, CLASSES)
    assert kept.private_names == ("visual_shared",)


# --- matched-step centralised reference --------------------------------------------------------

def test_matched_step_data_draws_an_average_clients_steps_from_the_pool(backbone):
    clients = three_clients(backbone, sizes=(3, 9, 14))
    pooled = create_method({"name": "centralised", "steps_per_round": "matched"}, backbone,
                           CLASSES).arrange_clients(clients)
    assert len(pooled) == 1 and isinstance(pooled[0], MatchedStepClientData)
    data = pooled[0]
    assert data.client_sizes == (3, 9, 14) and data.num_train == 26
    assert data.steps_per_epoch(4) == round((1 + 3 + 4) / 3)  # ceil(n_k / 4) = 1, 3, 4
    orders = [data.epoch_order(torch.Generator().manual_seed(s), 4) for s in (0, 1)]
    assert all(o.numel() == 3 * 4 and len(set(o.tolist())) == 12 and set(o.tolist()) <= set(range(26)) for o in orders)
    assert not torch.equal(orders[0], orders[1])  # a fresh draw from the whole pool each round
    default = create_method({"name": "centralised"}, backbone, CLASSES).arrange_clients(clients)[0]
    assert type(default) is ClientData and default.epoch_order(torch.Generator(), 4).numel() == 26


def test_matched_step_centralised_takes_an_average_clients_steps(backbone):
    clients = three_clients(backbone, sizes=(3, 9, 14))
    method = create_method({"name": "centralised", "steps_per_round": "matched"}, backbone, CLASSES)
    pooled = method.arrange_clients(clients)[0]
    res = client_update(method, method.initial_global(), {}, pooled,
                        LocalTrainConfig(lr=0.05, batch_size=4, local_epochs=2))
    assert res.metrics["steps"] == 2 * 3
    full = create_method({"name": "centralised"}, backbone, CLASSES)
    res = client_update(full, full.initial_global(), {}, full.arrange_clients(clients)[0],
                        LocalTrainConfig(lr=0.05, batch_size=4, local_epochs=2))
    assert res.metrics["steps"] == 2 * math.ceil(26 / 4)


# --- the offline params files ------------------------------------------------------------------

#: params file stem -> (method name, expected method keys, uploaded values on fedrs-rsclip-s: text width 128)
CONTROLS = {
    "fedrsclip_local": ("fedrsclip-local", {"upload": []}, 0),
    "promptfl_vpt": ("promptfl", {"visual_tokens": 4}, 4 * 128),
    "fedrsclip_visual_shared": ("fedrsclip", {"upload": ["text_shared", "visual_shared"]}, 4 * 128 + 2 * 128),
    "fedrsclip_shared_only": ("fedrsclip", {"private_prompts": False, "visual_prompts": False}, 4 * 128),
    "centralised_matched": ("centralised", {"steps_per_round": "matched"}, None),
}


@pytest.mark.parametrize("stem", list(CONTROLS))
def test_control_params_describe_and_run(stem, synth, tmp_path):
    name, keys, upload = CONTROLS[stem]
    cfg = load_run_config(OFFLINE / f"{stem}_ucmerced.yaml")
    assert cfg.method.name == name and all(getattr(cfg.method, k) == v for k, v in keys.items())
    assert cfg.backbone.model == "fedrs-rsclip-s"
    assert ((cfg.data.dataset, cfg.data.scheme, cfg.data.alpha, cfg.data.num_clients)
            == ("UCMerced", "dirichlet", 0.5, 10))
    sizes = describe_run(cfg, no_weights=True)
    if upload is not None:
        assert sizes["upload_values_per_client_round"] == upload
    # the same method section on the tiny backbone and synthetic data, one round
    tiny = run_config(tiny_config(method=vars(cfg.method), train={"rounds": 1}))
    metrics = run_experiment(tiny, tmp_path, datasets=[synth], progress=False)
    assert metrics["method"] == name and 0 <= metrics["personalised_accuracy"] <= 1
