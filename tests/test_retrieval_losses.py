"""HMMC loss terms on tiny tensors."""

import math

import pytest
import torch

from fedrs.losses.retrieval import HMMCLoss, info_nce


def test_info_nce_hand_values():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # cosine logits [[1, 0], [0, 1]] / T; CE = log(1 + e^{-1/T})
    expected = math.log(1 + math.exp(-1 / 0.5))
    assert float(info_nce(a, a, temperature=0.5)) == pytest.approx(expected, rel=1e-6)
    b = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # asymmetric pair
    one_way = info_nce(a, b, 0.5, symmetric=False)
    other = info_nce(b, a, 0.5, symmetric=False)
    assert float(info_nce(a, b, 0.5)) == pytest.approx(float(one_way + other) / 2)
    assert float(info_nce(3 * a, a, 0.5)) == pytest.approx(expected, rel=1e-6)  # cosine: scale-free


def test_hmmc_combines_terms_with_weights():
    g = torch.Generator().manual_seed(0)
    img, txt, img2, txt2 = (torch.randn(4, 6, generator=g) for _ in range(4))
    loss = HMMCLoss(temperature=0.1, lambda_v=0.5, lambda_t=2.0)
    t = loss.terms(img, txt, img2, txt2)
    assert float(t["cm"]) == pytest.approx(float(info_nce(img, txt, 0.1)))
    assert float(t["v"]) == pytest.approx(float(info_nce(img, img2, 0.1, symmetric=False)))
    assert float(t["t"]) == pytest.approx(float(info_nce(txt, txt2, 0.1, symmetric=False)))
    assert float(t["loss"]) == pytest.approx(float(t["cm"] + 0.5 * t["v"] + 2.0 * t["t"]), rel=1e-6)
    plain = HMMCLoss(lambda_v=0.0, lambda_t=0.0)
    assert not plain.needs_augmented and set(plain.terms(img, txt)) == {"cm", "loss"}
    with pytest.raises(ValueError):
        loss.terms(img, txt)


def test_intra_terms_push_apart_similar_views():
    # identical images (remote-sensing look-alikes): L_v is high; distinct ones: low
    same = torch.ones(3, 4) + 1e-3 * torch.randn(3, 4)
    distinct = torch.eye(3, 4)
    assert float(info_nce(same, same, 0.07, False)) > float(info_nce(distinct, distinct, 0.07, False))
