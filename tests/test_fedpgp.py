"""FedPGP as published (Cui et al., ICML 2024; official trainers/fedpgp.py): the prompt-wise
contrastive term is anchored on the *global* prompt (positive: the frozen placeholder prompt,
CLIP's prior; negative: the personalised prompt), and the private U V is low rank (rank < n_ctx).

The hand-made feature tests fail for the inverted form (the personalised prompt as the anchor,
the global prompt as its positive), which fedrs implemented before issue #11.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_federated import CLASSES

from fedrs.backbone.factory import create_backbone
from fedrs.config import ConfigError
from fedrs.methods import create_method, method_config
from fedrs.methods.fedpgp import prompt_wise_contrastive_loss

E1, E2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])


def inverted(prior, global_, personal, temperature):
    """The form fedrs had before issue #11: personalised anchor, global positive, prior negative."""
    pos = F.cosine_similarity(personal, global_, dim=-1) / temperature
    neg = F.cosine_similarity(personal, prior, dim=-1) / temperature
    return -(pos - torch.logsumexp(torch.stack([pos, neg]), dim=0)).mean()


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


def test_global_prompt_at_the_prior_and_away_from_the_personal_one_costs_little():
    # t_0 = t_sigma = e1, t = e2: pos = cos(t_0, t_sigma) = 1, neg = cos(t_sigma, t) = 0
    loss = prompt_wise_contrastive_loss(E1, E1, E2, temperature=0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)  # 0.127
    assert inverted(E1, E1, E2, 0.5).item() == pytest.approx(math.log(2), abs=1e-6)  # the old form: 0.693


def test_global_prompt_equal_to_the_personal_one_and_away_from_the_prior_costs_much():
    # t_0 = e1, t_sigma = t = e2: pos = 0, neg = 1; the inverted form calls this the ideal (0.127)
    loss = prompt_wise_contrastive_loss(E1, E2, E2, temperature=0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(2)), abs=1e-6)  # 2.127
    assert inverted(E1, E2, E2, 0.5).item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)


def test_the_term_is_a_mean_over_classes_of_a_two_way_cross_entropy_at_the_temperature():
    gen = torch.Generator().manual_seed(0)
    prior, global_, personal = (F.normalize(torch.randn(5, 8, generator=gen), dim=-1) for _ in range(3))
    pos = (prior * global_).sum(-1)
    neg = (global_ * personal).sum(-1)
    expected = torch.log1p(torch.exp((neg - pos) / 0.3)).mean()
    assert torch.allclose(prompt_wise_contrastive_loss(prior, global_, personal, 0.3), expected, atol=1e-6)
    assert not torch.allclose(inverted(prior, global_, personal, 0.3), expected, atol=1e-3)


def test_a_gradient_step_moves_the_global_prompt_towards_the_prior_and_away_from_the_personal_one():
    prior = F.normalize(torch.tensor([[1.0, 0.2, 0.0]]), dim=-1)
    personal = F.normalize(torch.tensor([[0.1, 1.0, 0.3]]), dim=-1)
    global_ = torch.tensor([[0.5, 0.5, 0.5]], requires_grad=True)
    before = (F.cosine_similarity(prior, global_).item(), F.cosine_similarity(global_, personal).item())
    prompt_wise_contrastive_loss(prior, global_, personal, 0.5).backward()
    with torch.no_grad():
        stepped = global_ - 0.1 * global_.grad
    assert F.cosine_similarity(prior, stepped).item() > before[0]
    assert F.cosine_similarity(stepped, personal).item() < before[1]


def test_the_prior_is_the_frozen_encoder_on_the_placeholder_prompt_computed_once(backbone):
    method = create_method({"name": "fedpgp", "n_ctx": 4, "rank": 2}, backbone, CLASSES)
    prior = method.prior_features
    assert prior is method.prior_features and not prior.requires_grad
    # the literal string FedPGP embeds as its initial prompt: "X X X X <class>."
    ids = backbone.tokenizer([f"X X X X {name}." for name in CLASSES])
    with torch.no_grad():
        direct = F.normalize(backbone.model.encode_text(ids).float(), dim=-1)
    assert torch.allclose(prior, direct, atol=1e-5)


def test_with_a_phrase_initialisation_the_prior_is_the_initial_global_prompt(backbone):
    method = create_method({"name": "fedpgp", "n_ctx": 4, "rank": 2, "text_init": "phrase",
                            "init_phrase": "a satellite photo of"}, backbone, CLASSES)
    assert torch.allclose(method.prior_features, method.class_features(personalised=False), atol=1e-6)


def test_the_method_adds_the_published_term_with_weight_mu(backbone):
    method = create_method({"name": "fedpgp", "n_ctx": 4, "rank": 2, "contrastive_weight": 0.7},
                           backbone, CLASSES)
    m = method.module
    image = F.normalize(torch.randn(6, backbone.embed_dim), dim=-1)
    logits, extra = method.train_outputs(image)
    weight, value = extra["con"]
    personal, global_ = m.text(m.sigma + m.U @ m.V), m.text(m.sigma)
    assert weight == 0.7
    assert torch.allclose(value, prompt_wise_contrastive_loss(method.prior_features, global_, personal, 0.5),
                          atol=1e-6)
    assert torch.allclose(logits, m.logits(image, personal), atol=1e-5)
    assert torch.allclose(method.class_features(personalised=False), global_, atol=1e-6)


def test_defaults_are_fedpgps_own():
    cfg = method_config({"name": "fedpgp"})
    assert (cfg.n_ctx, cfg.rank, cfg.contrastive_weight, cfg.temperature, cfg.text_init, cfg.init_std) == \
        (16, 4, 1.0, 0.5, "random", 0.02)


@pytest.mark.parametrize("n_ctx, rank", [(4, 4), (4, 8), (16, 16)])
def test_a_rank_that_is_not_below_the_prompt_length_is_refused_naming_both(n_ctx, rank):
    with pytest.raises(ConfigError, match=rf"method\.rank \({rank}\) must be smaller than method\.n_ctx \({n_ctx}\)"):
        method_config({"name": "fedpgp", "n_ctx": n_ctx, "rank": rank})


def test_a_low_rank_private_part_is_low_rank(backbone):
    method = create_method({"name": "fedpgp", "n_ctx": 8, "rank": 3}, backbone, CLASSES)
    m = method.module
    assert tuple(m.U.shape) == (8, 3) and tuple(m.V.shape) == (3, m.text.width)
    assert torch.linalg.matrix_rank(m.U @ m.V).item() == 3
    with pytest.raises(ConfigError, match="rank"):
        method_config({"name": "fedpgp", "n_ctx": 8, "rank": 0})


def test_the_offline_row_uses_fedpgps_published_method_section():
    from pathlib import Path

    from fedrs.runs import load_run_config

    cfg = load_run_config(Path(__file__).resolve().parents[1] / "params" / "offline" / "fedpgp_ucmerced.yaml")
    assert cfg.method == method_config({"name": "fedpgp"})
