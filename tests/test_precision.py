"""GPU readiness on the CPU: ``train.precision: bf16`` (frozen towers under autocast, prompts and
losses fp32), ``backbone.device`` settings, and loss terms summed on the device.

Everything runs on the tiny random-init backbone; nothing here needs (or times) a GPU.
"""

from __future__ import annotations

import pytest
import torch
from test_federated import CLASSES, make_dataset, tiny_config

from fedrs.backbone.factory import create_backbone, resolve_device
from fedrs.config import ConfigError
from fedrs.errors import BackboneError
from fedrs.experiment import run_experiment
from fedrs.federated import ClientData, LocalTrainConfig, client_update
from fedrs.methods import create_method
from fedrs.methods.base import Batch
from fedrs.prompts import PromptError, set_tower_precision
from fedrs.runs import run_config


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    """Feature caches of the synthetic data go to a temporary folder, never the repository's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDRS_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def fedrsclip(backbone, precision: str):
    method = create_method({"name": "fedrsclip"}, backbone, CLASSES)
    set_tower_precision(method.module, precision)
    return method


def test_bf16_towers_give_fp32_features_close_to_fp32(backbone):
    images = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    batch = Batch(labels=torch.tensor([0, 1, 2, 0, 1, 2]), images=images)
    outputs = {}
    for precision in ("fp32", "bf16"):
        method = fedrsclip(backbone, precision)
        m = method.module
        assert m.text.autocast_dtype == m.visual.autocast_dtype == (torch.bfloat16 if precision == "bf16" else None)
        text = m.text_features()["combined"]
        image = m.image_features(images)
        loss, _ = method.loss(batch)
        loss.backward()
        grads = [p.grad for p in method.parameters()]
        assert text.dtype == image.dtype == loss.dtype == torch.float32  # features come back as fp32
        assert all(p.dtype == torch.float32 and g.dtype == torch.float32 for p, g in zip(method.parameters(), grads))
        assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
        outputs[precision] = (text, image, loss.detach(), grads)
    (t32, v32, l32, g32), (t16, v16, l16, g16) = outputs["fp32"], outputs["bf16"]
    # bf16 keeps 8 mantissa bits: unit-norm features agree to about 1e-2, not bit for bit
    assert not torch.equal(t32, t16) and not torch.equal(v32, v16)
    assert (t32 - t16).abs().max() < 5e-2 and (v32 - v16).abs().max() < 5e-2
    assert abs(float(l32 - l16)) < 5e-2 * abs(float(l32))
    assert all(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.95 for a, b in zip(g32, g16))
    with pytest.raises(PromptError, match="precision must be one of"):
        set_tower_precision(fedrsclip(backbone, "fp32").module, "fp16")


def test_bf16_run_on_cpu_is_finite_and_close_to_fp32(tmp_path):
    synth = make_dataset(tmp_path / "synth")
    metrics = {}
    for precision in ("fp32", "bf16"):
        cfg = run_config(tiny_config(train={"rounds": 2, "precision": precision}))
        metrics[precision] = run_experiment(cfg, tmp_path / precision, datasets=[synth], progress=False)
    fp32, bf16 = metrics["fp32"], metrics["bf16"]
    for key in ("personalised_accuracy", "global_accuracy", "final_train_loss"):
        assert bf16[key] == bf16[key] and abs(bf16[key]) < float("inf")  # finite
    assert abs(bf16["final_train_loss"] - fp32["final_train_loss"]) < 0.02 * abs(fp32["final_train_loss"])
    assert abs(bf16["personalised_accuracy"] - fp32["personalised_accuracy"]) <= 0.2
    assert (tmp_path / "bf16" / "params.yaml").read_text().count("precision: bf16") == 1


def test_device_settings_are_checked(monkeypatch):
    for name in ("auto", "cpu", "cuda", "cuda:1", "CPU"):
        assert run_config(tiny_config(backbone={"device": name})).backbone.device == name
    for name in ("gpu", "cuda:x", "cuda:", "mps"):
        with pytest.raises(ConfigError, match="unknown backbone device"):
            run_config(tiny_config(backbone={"device": name}))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(BackboneError, match="asks for a GPU but torch sees none"):
        resolve_device("cuda:0")
    with pytest.raises(BackboneError, match="unknown backbone device"):
        create_backbone("fedrs-rsclip-tiny", pretrained="random", device="gpu")


def test_loss_terms_returned_as_tensors_give_the_same_metrics_as_floats(backbone):
    """A method may hand back its loss terms as device tensors (no read-back per step): the client
    sums them on the device and reports exactly the means the Python floats gave."""
    gen = torch.Generator().manual_seed(0)
    data = ClientData(0, torch.arange(12) % 3, torch.arange(12), torch.arange(12),
                      features=torch.randn(12, backbone.embed_dim, generator=gen),
                      images=torch.randn(12, 3, 32, 32, generator=gen))
    cfg = LocalTrainConfig(lr=0.01, batch_size=4)
    results = []
    for as_tensors in (False, True):
        method = create_method({"name": "fedrsclip"}, backbone, CLASSES)
        if as_tensors:
            original = method.loss

            def loss(batch, original=original):
                total, terms = original(batch)
                return total, {k: torch.tensor(v, dtype=torch.float32) for k, v in terms.items()}

            method.loss = loss
        results.append(client_update(method, method.initial_global(), method.initial_private(0), data, cfg))
    floats, tensors = results
    assert set(floats.metrics) == {"ce", "dpa", "cma", "loss", "steps"}
    assert tensors.metrics == floats.metrics and all(type(v) is float for v in tensors.metrics.values())
    assert all(torch.equal(floats.shared[k], tensors.shared[k]) for k in floats.shared)
