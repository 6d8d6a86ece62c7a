"""FedOTP as published (Li et al., CVPR 2024; official trainers/GLP_OT.py): global and local
prompts matched to the frozen encoder's patch tokens by unbalanced optimal transport (each patch
sends at most 1/L, each prompt receives exactly gamma/N), the plan without gradient; patch tokens
read from the content-keyed cache, so FedOTP trains without images.
"""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from test_federated import CLASSES, make_dataset

from fedrs.backbone import features
from fedrs.backbone.factory import create_backbone
from fedrs.config import ConfigError
from fedrs.errors import FedrsError
from fedrs.federated import ClientData
from fedrs.federated.engine import FederatedEngine
from fedrs.methods import create_method, method_config
from fedrs.methods.base import Batch
from fedrs.methods.fedotp import partial_sinkhorn, transport_scores
from fedrs.prompts import VisualPromptEncoder
from fedrs.runs import EvalConfig, TrainConfig

EPS = 0.1


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synth"), per_class=6)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDRS_CACHE", str(tmp_path / "cache"))


# -- the transport --------------------------------------------------------------------------------

def test_balanced_plan_of_a_symmetric_problem_is_the_normalised_kernel_with_exact_marginals():
    # two patches, two prompts, cost 0 on the diagonal and 1 off it: by symmetry T = K / sum(K)
    cost = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    plan = partial_sinkhorn(cost, EPS, mass=1.0, iters=1000, thresh=0.0)
    diagonal = 1 / (2 * (1 + math.exp(-1 / EPS)))
    expected = torch.tensor([[diagonal, 0.5 - diagonal], [0.5 - diagonal, diagonal]], dtype=torch.float64)
    assert torch.allclose(plan, expected, atol=1e-12)
    assert torch.allclose(plan.sum(-1), torch.full((2,), 0.5, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(plan.sum(-2), torch.full((2,), 0.5, dtype=torch.float64), atol=1e-12)


def test_unbalanced_plan_caps_each_patch_at_1_over_L_and_gives_each_prompt_exactly_its_mass():
    # one prompt receives mass 0.8 from two patches (each may send at most 1/2); the near patch
    # (cost 0) would send almost all of it, but is capped at 0.5: the far one (cost 1) sends 0.3
    cost = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    plan = partial_sinkhorn(cost, EPS, mass=0.8, iters=1000, thresh=0.0)
    assert torch.allclose(plan, torch.tensor([[0.5], [0.3]], dtype=torch.float64), atol=1e-12)


def test_on_random_batches_columns_are_exact_and_rows_within_their_bound():
    gen = torch.Generator().manual_seed(0)
    cost = 1 - torch.rand(4, 3, 9, 2, generator=gen, dtype=torch.float64) * 0.6  # [B, C, L, N]
    for mass in (0.8, 0.5):
        plan = partial_sinkhorn(cost, EPS, mass=mass, iters=2000, thresh=0.0)
        assert torch.allclose(plan.sum(-2), torch.full((4, 3, 2), mass / 2, dtype=torch.float64), atol=1e-10)
        assert (plan.sum(-1) <= 1 / 9 + 1e-10).all() and (plan >= 0).all()
        assert torch.allclose(plan.sum((-2, -1)), torch.full((4, 3), mass, dtype=torch.float64), atol=1e-10)
    balanced = partial_sinkhorn(cost, EPS, mass=1.0, iters=2000, thresh=0.0)
    assert torch.allclose(balanced.sum(-1), torch.full((4, 3, 9), 1 / 9, dtype=torch.float64), atol=1e-8)
    assert torch.allclose(balanced.sum(-2), torch.full((4, 3, 2), 1 / 2, dtype=torch.float64), atol=1e-10)


def test_fedotps_stopping_rule_stops_early_and_a_small_eps_does_not_underflow():
    gen = torch.Generator().manual_seed(1)
    cost = 1 - torch.rand(8, 16, 2, generator=gen) * 0.4
    default = partial_sinkhorn(cost, EPS, mass=0.8)  # 100 iterations at most, stop at 1e-3
    converged = partial_sinkhorn(cost, EPS, mass=0.8, iters=5000, thresh=0.0)
    assert torch.allclose(default.sum(-2), converged.sum(-2), atol=1e-6)
    assert (default - converged).abs().max() < 1e-3
    tiny_eps = partial_sinkhorn(2 * cost, 0.005, mass=0.8, iters=500)  # exp(-400) underflows float32
    assert torch.isfinite(tiny_eps).all()
    assert torch.allclose(tiny_eps.sum(-2), torch.full((8, 2), 0.4), atol=1e-5)


def test_scores_weight_cosine_similarities_by_a_constant_plan():
    gen = torch.Generator().manual_seed(2)
    patches = F.normalize(torch.randn(3, 5, 8, generator=gen), dim=-1)          # [B, L, D]
    text = F.normalize(torch.randn(2, 4, 8, generator=gen), dim=-1).requires_grad_()  # [N, C, D]
    scores = transport_scores(patches, text, EPS, 0.8, 100, 1e-3)
    sim = torch.einsum("bld,ncd->bcln", patches, text.detach())
    plan = partial_sinkhorn(1 - sim, EPS, 0.8, 100, 1e-3)
    assert torch.allclose(scores, (plan * sim).sum((-2, -1)), atol=1e-6)
    scores.sum().backward()
    # the plan is a constant: d score / d t_n(c) = sum_b sum_l T_bcln z_bl
    assert torch.allclose(text.grad, torch.einsum("bcln,bld->ncd", plan, patches), atol=1e-6)


# -- the cached patch tokens ----------------------------------------------------------------------

def test_patch_tokens_are_the_frozen_vits_projected_tokens_cached_by_content(backbone, synth, monkeypatch):
    calls = []
    real = features.encode_patch_tokens

    def spy(backbone, paths, *args, **kwargs):
        calls.append(len(paths))
        return real(backbone, paths, *args, **kwargs)

    monkeypatch.setattr(features, "encode_patch_tokens", spy)
    tokens = features.image_patch_tokens(backbone, synth, progress=False)
    grid = backbone.image_size // 8  # the tiny ViT: 32 px, patch 8
    assert tokens.shape == (len(synth.paths), grid * grid, backbone.embed_dim)
    assert tokens.dtype == features.PATCH_TOKEN_DTYPE
    assert torch.equal(features.image_patch_tokens(backbone, synth, progress=False), tokens) and calls == [18]
    files = list((features._cache_folder(backbone) / "patch_tokens").glob("Synth-*.pt"))
    assert len(files) == 1
    with torch.no_grad():
        images = torch.stack([backbone.preprocess(features.load_rgb(p)) for p in synth.paths[:4]])
        pooled, direct = VisualPromptEncoder(backbone.model)(images, normalize=False, return_tokens=True)
        assert torch.allclose(pooled, backbone.model.encode_image(images).float(), atol=1e-5)
    assert torch.allclose(tokens[:4].float(), direct, rtol=2e-3, atol=2e-3)
    # half precision moves the cosine similarities FedOTP transports by far less than they differ
    text = F.normalize(torch.randn(3, backbone.embed_dim), dim=-1)
    half = F.normalize(tokens[:4].float(), dim=-1) @ text.t()
    full = F.normalize(direct, dim=-1) @ text.t()
    assert (half - full).abs().max() < 1e-3


def test_frozen_image_representation_names_pooled_or_patch_tokens(backbone, synth):
    pooled = features.frozen_image_representation(backbone, synth, "pooled", progress=False)
    assert torch.equal(pooled, features.image_features(backbone, synth, progress=False))
    assert features.frozen_image_representation(backbone, synth, "patch_tokens", progress=False).dim() == 3
    with pytest.raises(ValueError, match="patch_tokens"):
        features.frozen_image_representation(backbone, synth, "pixels", progress=False)


# -- the method -----------------------------------------------------------------------------------

def test_defaults_are_fedotps_own():
    cfg = method_config({"name": "fedotp"})
    assert (cfg.matching, cfg.n_ctx, cfg.ot_eps, cfg.ot_mass, cfg.ot_iters, cfg.ot_thresh, cfg.text_init) == \
        ("ot", 16, 0.1, 0.8, 100, 1e-3, "random")


def test_the_ensemble_is_a_labelled_variant_and_average_its_deprecated_name(backbone, caplog):
    with caplog.at_level(logging.WARNING, logger="fedrs.methods.fedotp"):
        assert method_config({"name": "fedotp", "matching": "average"}).matching == "ensemble"
    assert "'average' is deprecated" in caplog.text and "ensemble" in caplog.text
    with pytest.raises(ConfigError, match="matching"):
        method_config({"name": "fedotp", "matching": "sum"})
    with pytest.raises(ConfigError, match="ot_mass"):
        method_config({"name": "fedotp", "ot_mass": 1.5})
    ensemble = create_method({"name": "fedotp", "matching": "ensemble", "n_ctx": 4}, backbone, CLASSES)
    assert ensemble.image_representation() == "pooled"
    image = F.normalize(torch.randn(5, backbone.embed_dim), dim=-1)
    m = ensemble.module
    expected = (m.logits(image, m.text(m.ctx_global)) + m.logits(image, m.text(m.ctx_local))) / 2
    assert torch.allclose(ensemble.scores(image, personalised=True), expected, atol=1e-5)


def test_ot_needs_patch_tokens_not_images_and_refuses_pooled_features(backbone):
    method = create_method({"name": "fedotp", "n_ctx": 4}, backbone, CLASSES)
    assert method.image_representation() == "patch_tokens"
    assert not method.needs_images(train=True) and not method.needs_images(train=False)
    with pytest.raises(FedrsError, match="patch tokens.*image_representation"):
        method.logits(Batch(labels=torch.zeros(2, dtype=torch.long), features=torch.randn(2, backbone.embed_dim)))


def test_global_scores_transport_to_the_global_prompt_alone(backbone):
    method = create_method({"name": "fedotp", "n_ctx": 4}, backbone, CLASSES)
    m, c = method.module, method.cfg
    patches = F.normalize(torch.randn(3, 16, backbone.embed_dim), dim=-1)
    both = torch.stack([m.text(m.ctx_global), m.text(m.ctx_local)])
    assert torch.allclose(method.scores(patches, personalised=True),
                          m.logit_scale * transport_scores(patches, both, c.ot_eps, c.ot_mass, c.ot_iters,
                                                           c.ot_thresh), atol=1e-5)
    assert torch.allclose(method.scores(patches, personalised=False),
                          m.logit_scale * transport_scores(patches, both[:1], c.ot_eps, c.ot_mass, c.ot_iters,
                                                           c.ot_thresh), atol=1e-5)


def test_fedotp_trains_from_cached_patch_tokens_without_images(backbone, synth):
    method = create_method({"name": "fedotp", "n_ctx": 4}, backbone, CLASSES)
    tokens = features.frozen_image_representation(backbone, synth, method.image_representation(), progress=False)
    labels = torch.as_tensor(synth.labels)
    n = len(labels)
    clients = [ClientData(k, labels, torch.arange(k, n, 3), torch.arange(k, n, 3), features=tokens, images=None)
               for k in range(3)]
    engine = FederatedEngine(method, clients, torch.arange(n), TrainConfig(rounds=2, lr=0.05, batch_size=4),
                             EvalConfig())
    engine.run(progress=False)
    assert set(engine.global_shared) == {"ctx_global"}
    initial = method.initial_global()["ctx_global"]
    assert not torch.equal(engine.global_shared["ctx_global"], initial)
    locals_ = [s["ctx_local"] for s in engine.client_states]
    assert not torch.equal(locals_[0], locals_[1])
    last = engine.history[-1]
    assert 0 <= last["global_acc"] <= 1 and 0 <= last["personalised_acc_weighted"] <= 1
    assert math.isfinite(last["train_loss"])


def test_the_offline_row_uses_fedotps_published_method_section():
    from pathlib import Path

    from fedrs.runs import load_run_config

    cfg = load_run_config(Path(__file__).resolve().parents[1] / "params" / "offline" / "fedotp_ucmerced.yaml")
    assert cfg.method == method_config({"name": "fedotp"})
