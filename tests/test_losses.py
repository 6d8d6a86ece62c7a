"""Loss terms on hand-checkable tensors, and switching a term off."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fedrs.losses import classification_loss, cross_modal_alignment_loss, dual_prompt_alignment_loss

E = torch.eye(3)


def test_cosine_dual_prompt_alignment():
    assert dual_prompt_alignment_loss(E, E).item() == 0.0
    assert dual_prompt_alignment_loss(E, E.roll(1, dims=0)).item() == pytest.approx(1.0)


def test_kl_dual_prompt_alignment():
    v = F.normalize(torch.randn(4, 3), dim=-1)
    assert (dual_prompt_alignment_loss(E, E, "kl", image_features=v, logit_scale=10.0).item()
            == pytest.approx(0.0, abs=1e-7))
    assert dual_prompt_alignment_loss(E, E.roll(1, dims=0), "kl", image_features=v, logit_scale=10.0).item() > 0
    with pytest.raises(ValueError, match="needs image_features"):
        dual_prompt_alignment_loss(E, E, "kl")


def test_contrastive_dual_prompt_alignment_by_hand():
    # private = shared (cos 1), orthogonal to plain (cos 0): -log(e^2 / (e^2 + e^0)) at T=0.5
    loss = dual_prompt_alignment_loss(E, E, "contrastive", plain=E.roll(1, dims=0), temperature=0.5)
    assert loss.item() == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 1)), rel=1e-6)


def test_infonce_with_same_class_positives_by_hand():
    v = F.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), dim=-1)
    t = F.normalize(torch.tensor([[0.8, 0.6], [0.8, 0.6], [0.0, 1.0]]), dim=-1)
    y = torch.tensor([0, 0, 1])
    s = (v @ t.t() / 0.5).tolist()
    pos = [[0, 1], [0, 1], [2]]

    def side(sim):
        return sum(-math.log(sum(math.exp(sim[i][j]) for j in pos[i]) / sum(math.exp(x) for x in sim[i]))
                   for i in range(3)) / 3

    expected = 0.5 * (side(s) + side([list(c) for c in zip(*s)]))
    got = cross_modal_alignment_loss(v, t, y, "infonce", temperature=0.5)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # all one class: every pair is positive, nothing to contrast
    assert cross_modal_alignment_loss(v, t, torch.zeros(3, dtype=torch.long)).item() == pytest.approx(0.0, abs=1e-6)
    assert cross_modal_alignment_loss(v, v, y, "cosine").item() == pytest.approx(0.0, abs=1e-6)


def test_cross_entropy_and_unknown_kinds():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    assert classification_loss(logits, torch.tensor([0, 1])).item() == pytest.approx(math.log(1 + math.exp(-2)))
    with pytest.raises(ValueError, match="choose one of"):
        dual_prompt_alignment_loss(E, E, "l2")
    with pytest.raises(ValueError, match="choose one of"):
        cross_modal_alignment_loss(E, E, torch.arange(3), "mse")


def test_zero_weight_skips_the_term(monkeypatch):
    from fedrs.backbone.factory import create_backbone
    from fedrs.methods import create_method, fedrsclip
    from fedrs.methods.base import Batch

    def boom(*args, **kwargs):
        raise AssertionError("a switched-off term was computed")

    monkeypatch.setattr(fedrsclip, "dual_prompt_alignment_loss", boom)
    monkeypatch.setattr(fedrsclip, "cross_modal_alignment_loss", boom)
    backbone = create_backbone("fedrs-rsclip-tiny", pretrained="random")
    method = create_method({"name": "fedrsclip", "lambda_dpa": 0.0, "lambda_cma": 0.0, "visual_prompts": False},
                           backbone, ["a", "b"])
    loss, terms = method.loss(Batch(labels=torch.tensor([0, 1]), features=torch.randn(2, backbone.embed_dim)))
    assert set(terms) == {"ce", "loss"} and terms["ce"] == pytest.approx(loss.item())
