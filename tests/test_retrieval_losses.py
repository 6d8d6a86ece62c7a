"""HMMC loss terms on hand-made similarity matrices and tiny tensors."""

import math

import pytest
import torch

from fedrs.config import ConfigError, from_dict
from fedrs.losses.retrieval import (
    HMMCConfig,
    HMMCLoss,
    bidirectional_hinge,
    caption_groups,
    hinge_on_similarity,
    info_nce,
    normalise_caption,
    same_caption_matrix,
)

# rows: anchors a_i (positive sim[i, i]); columns: anchors b_j (positive sim[j, j]); margin 0.2
#   row 0: negatives .6 -> 0, .8 -> .1           hardest .1   sum .1
#   row 1: .1 -> 0, .3 -> 0                       hardest 0    sum 0
#   row 2: .75 -> .55, .3 -> .1                   hardest .55  sum .65
#   col 0: .1 -> 0, .75 -> .05                    hardest .05  sum .05
#   col 1: .6 -> .1, .3 -> 0                      hardest .1   sum .1
#   col 2: .8 -> .6, .3 -> .1                     hardest .6   sum .7
HAND_SIM = torch.tensor([[0.9, 0.6, 0.8],
                         [0.1, 0.7, 0.3],
                         [0.75, 0.3, 0.4]])
HAND_HARDEST, HAND_SUM = 1.4, 1.6


def _random_features(seed=14, n=5, d=8):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g) for _ in range(4)]


# -- caption groups ---------------------------------------------------------------------------------

def test_caption_groups_normalise_case_and_whitespace_only():
    caps = ["There is a piece of farmland .", "there is a  piece of\tfarmland . ", "A river",
            "there is a piece of farmland.", "a river"]
    assert normalise_caption(caps[1]) == "there is a piece of farmland ."
    groups = caption_groups(caps)
    assert groups.dtype == torch.long and groups.tolist() == [0, 0, 1, 2, 1]  # punctuation is kept
    assert caption_groups([]).tolist() == []
    same = same_caption_matrix(groups, 5)
    assert same.dtype == torch.bool and same[0, 1] and same[2, 4] and not same[0, 3]
    assert torch.equal(same_caption_matrix(same, 5), same)
    with pytest.raises(ValueError):
        same_caption_matrix(groups[:3], 5)
    with pytest.raises(ValueError):
        same_caption_matrix(same.float(), 5)


# -- hinge form on hand-made similarity matrices ----------------------------------------------------

def test_hinge_hardest_negative_hand_value_and_selection():
    sim = HAND_SIM.clone().requires_grad_(True)
    loss = hinge_on_similarity(sim, margin=0.2, negatives="hardest")
    assert float(loss.detach()) == pytest.approx(HAND_HARDEST, abs=1e-6)
    loss.backward()
    # row 2's hardest negative is sim[2, 0] (.75), its other violator sim[2, 1] (.3) is not used by
    # row 2 and not by column 1 either (.3 is below .7 - .2): no gradient; sim[2, 0] is also column
    # 0's hardest negative, so it carries both directions
    assert float(sim.grad[2, 1]) == 0.0
    assert float(sim.grad[2, 0]) == pytest.approx(2.0)
    assert float(sim.grad[1, 2]) == 0.0  # violates column 2 (.1) but .8 is column 2's hardest
    assert float(sim.grad[0, 2]) == pytest.approx(2.0)  # hardest of row 0 and of column 2


def test_hinge_sum_over_negatives_and_mean_reduction():
    sim = HAND_SIM.clone().requires_grad_(True)
    loss = hinge_on_similarity(sim, margin=0.2, negatives="sum")
    assert float(loss.detach()) == pytest.approx(HAND_SUM, abs=1e-6)
    loss.backward()
    assert float(sim.grad[2, 1]) == pytest.approx(1.0) and float(sim.grad[1, 2]) == pytest.approx(1.0)
    assert float(hinge_on_similarity(HAND_SIM, 0.2, "hardest", "mean")) == pytest.approx(HAND_HARDEST / 3)
    assert float(hinge_on_similarity(HAND_SIM, 0.2, "sum", "mean")) == pytest.approx(HAND_SUM / 3)
    with pytest.raises(ValueError, match="negatives"):
        hinge_on_similarity(HAND_SIM, negatives="all")


def test_hinge_margin_zero_loss_below_positive_minus_margin():
    sim = torch.full((4, 4), 0.49) + 0.51 * torch.eye(4)  # positives 1.0, negatives .49 < 1 - .5
    assert float(hinge_on_similarity(sim, margin=0.5)) == 0.0
    # a negative .05 inside the margin costs .05 for its row and .05 for its column
    sim[0, 1] = 0.55
    assert float(hinge_on_similarity(sim, margin=0.5)) == pytest.approx(0.1, abs=1e-6)
    assert float(hinge_on_similarity(sim, margin=0.4)) == 0.0
    # margin .6: every negative violates; the hardest costs .15 (.55) for row 0 and column 1 and
    # .09 (.49) for the other 6 anchors
    assert float(hinge_on_similarity(sim, margin=0.6)) == pytest.approx(2 * 0.15 + 6 * 0.09, abs=1e-6)


def test_hinge_excludes_the_diagonal():
    # a perfect batch: were the diagonal a negative of itself it would cost the margin per anchor
    sim = torch.eye(3)
    assert float(hinge_on_similarity(sim, margin=0.2)) == 0.0
    assert float(hinge_on_similarity(sim, margin=0.2, negatives="sum")) == 0.0
    # a batch of one has no negative at all
    assert float(hinge_on_similarity(torch.tensor([[0.3]]), margin=0.2)) == 0.0


def test_hinge_exclude_mask_removes_a_pair_and_an_anchor_without_negatives_costs_nothing():
    exclude = torch.zeros(3, 3, dtype=torch.bool)
    exclude[2, 0] = True  # row 2's hardest (.55) and column 0's only violator (.05)
    # row 2 falls back to .1 (sim[2, 1]); column 0 to 0: 1.4 - .55 + .1 - .05
    assert float(hinge_on_similarity(HAND_SIM, 0.2, exclude=exclude)) == pytest.approx(0.9, abs=1e-6)
    assert float(hinge_on_similarity(HAND_SIM, 0.2, exclude=~torch.eye(3, dtype=torch.bool))) == 0.0


def test_bidirectional_hinge_is_cosine_and_scale_free():
    a, b = _random_features()[:2]
    sim = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    assert float(bidirectional_hinge(3 * a, b)) == pytest.approx(float(hinge_on_similarity(sim)), rel=1e-6)


# -- InfoNCE form -----------------------------------------------------------------------------------

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


# values of fedrs.losses.retrieval at commit 2b7a841 (InfoNCE-only HMMC), on _random_features(14)
INFONCE_BEFORE = {
    (0.1, 0.5, 2.0): {"cm": 6.519718647003174, "v": 3.048779249191284, "t": 2.6025564670562744,
                      "loss": 13.249221801757812},
    (0.07, 1.0, 1.0): {"cm": 9.116104125976562, "v": 4.1771321296691895, "t": 3.5607166290283203,
                       "loss": 16.853952407836914},
}


@pytest.mark.parametrize("setting", sorted(INFONCE_BEFORE))
@pytest.mark.parametrize("groups", ["none", "distinct", "ignored"])
def test_infonce_form_is_unchanged(setting, groups):
    img, txt, img2, txt2 = _random_features()
    temperature, lambda_v, lambda_t = setting
    duplicate = "ignore" if groups == "ignored" else "mask"
    loss = HMMCLoss(temperature, lambda_v, lambda_t, form="infonce", duplicate_captions=duplicate)
    same = {"none": None, "distinct": torch.arange(5), "ignored": torch.tensor([0, 0, 1, 1, 2])}[groups]
    terms = loss.terms(img, txt, img2, txt2, same_caption=same)
    for key, value in INFONCE_BEFORE[setting].items():
        assert float(terms[key]) == pytest.approx(value, rel=1e-6), key


def test_infonce_mask_and_positive_of_a_repeated_caption():
    img, txt, img2, txt2 = _random_features(n=3)
    same = torch.tensor([0, 0, 1])  # captions 0 and 1 are the same string
    logits = torch.nn.functional.normalize(img, dim=1) @ torch.nn.functional.normalize(txt, dim=1).T / 0.1

    def ce(row, target, keep):
        return -(row[target] - torch.logsumexp(row[keep], 0))

    # mask: pair (0, 1) leaves both softmaxes it is in; every other row is plain
    rows = [ce(logits[0], 0, [0, 2]), ce(logits[1], 1, [1, 2]), ce(logits[2], 2, [0, 1, 2])]
    cols = [ce(logits[:, 0], 0, [0, 2]), ce(logits[:, 1], 1, [1, 2]), ce(logits[:, 2], 2, [0, 1, 2])]
    masked = (sum(rows) / 3 + sum(cols) / 3) / 2
    loss = HMMCLoss(0.1, 0.0, 0.0, form="infonce", duplicate_captions="mask")
    assert float(loss(img, txt, same_caption=same)) == pytest.approx(float(masked), rel=1e-6)
    # positive: rows 0 and 1 average the log-probabilities of both positives
    rows = [(ce(logits[0], 0, [0, 1, 2]) + ce(logits[0], 1, [0, 1, 2])) / 2,
            (ce(logits[1], 0, [0, 1, 2]) + ce(logits[1], 1, [0, 1, 2])) / 2, ce(logits[2], 2, [0, 1, 2])]
    cols = [(ce(logits[:, 0], 0, [0, 1, 2]) + ce(logits[:, 0], 1, [0, 1, 2])) / 2,
            (ce(logits[:, 1], 0, [0, 1, 2]) + ce(logits[:, 1], 1, [0, 1, 2])) / 2,
            ce(logits[:, 2], 2, [0, 1, 2])]
    as_positive = (sum(rows) / 3 + sum(cols) / 3) / 2
    loss = HMMCLoss(0.1, 0.0, 0.0, form="infonce", duplicate_captions="positive")
    assert float(loss(img, txt, same_caption=same)) == pytest.approx(float(as_positive), rel=1e-6)
    ignored = HMMCLoss(0.1, 0.0, 0.0, form="infonce", duplicate_captions="ignore")(img, txt, same_caption=same)
    assert float(ignored) == pytest.approx(float(info_nce(img, txt, 0.1)), rel=1e-6)
    assert float(ignored) != pytest.approx(float(masked), rel=1e-3)


# -- HMMC: the published hinge form with a repeated caption -----------------------------------------

def _batch_with_a_repeated_caption():
    """Images e0, e1, e2; captions 0 and 1 are one string, embedded alike (between e0 and e1)."""
    img = torch.eye(3)
    shared = torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2)
    txt = torch.stack([shared, shared, torch.tensor([0.0, 0.0, 1.0])])
    return img, txt, caption_groups(["There is a piece of farmland .", "there is a piece of  farmland .",
                                     "a river runs through the forest"])


def test_default_is_the_published_hinge_form():
    loss = HMMCLoss()
    assert (loss.form, loss.margin, loss.negatives, loss.reduction) == ("hinge", 0.2, "hardest", "sum")
    assert (loss.lambda_cm, loss.lambda_v, loss.lambda_t) == (1.0, 1.0, 1.0)
    assert (loss.duplicate_captions, loss.duplicate_terms) == ("mask", ("cm", "v", "t"))
    img, txt, img2, txt2 = _random_features()
    terms = loss.terms(img, txt, img2, txt2, same_caption=torch.arange(5))
    assert float(terms["cm"]) == pytest.approx(float(bidirectional_hinge(img, txt)), rel=1e-6)
    assert float(terms["v"]) == pytest.approx(float(bidirectional_hinge(img, img2)), rel=1e-6)
    assert float(terms["t"]) == pytest.approx(float(bidirectional_hinge(txt, txt2)), rel=1e-6)
    assert float(terms["loss"]) == pytest.approx(float(terms["cm"] + terms["v"] + terms["t"]), rel=1e-6)


def test_hinge_masks_a_repeated_caption_in_every_term(caplog):
    img, txt, groups = _batch_with_a_repeated_caption()
    # ignore: in L_cm, image 0 scores caption 1 exactly like its own caption (cos .707), so the pair
    # costs the whole margin .2 for row 0, row 1, column 0 and column 1 (.8); in L_t caption 0 and
    # the view of caption 1 are the same vector (cos 1 = positive): another 4 x .2; L_v is 0
    ignored = HMMCLoss(duplicate_captions="ignore").terms(img, txt, img, txt, same_caption=groups)
    assert float(ignored["cm"]) == pytest.approx(0.8, abs=1e-6)
    assert float(ignored["t"]) == pytest.approx(0.8, abs=1e-6)
    assert float(ignored["v"]) == 0.0 and float(ignored["loss"]) == pytest.approx(1.6, abs=1e-6)
    masked = HMMCLoss().terms(img, txt, img, txt, same_caption=groups)
    assert float(masked["loss"]) == 0.0
    # hinge has one positive per anchor: "positive" is "mask"
    positive = HMMCLoss(duplicate_captions="positive").terms(img, txt, img, txt, same_caption=groups)
    assert float(positive["loss"]) == 0.0
    # the same matrix as a boolean [B, B]
    assert float(HMMCLoss()(img, txt, img, txt, same_caption=same_caption_matrix(groups, 3))) == 0.0
    # without the groups nothing is known to repeat (and a warning says so)
    with caplog.at_level("WARNING", logger="fedrs.losses.retrieval"):
        assert float(HMMCLoss()(img, txt, img, txt)) == pytest.approx(1.6, abs=1e-6)
    assert "caption groups were not passed" in caplog.text


def test_image_term_masking_follows_duplicate_terms():
    # two different images that share a caption string and look alike (cos .9)
    img = torch.tensor([[1.0, 0.0], [0.9, math.sqrt(1 - 0.81)]])
    txt = img.clone()
    same = torch.tensor([0, 0])
    # L_v with the pair as negatives: each of 2 rows and 2 columns costs .2 + .9 - 1 = .1
    kept = HMMCLoss(lambda_t=0.0, duplicate_terms=("cm", "t")).terms(img, txt, img, same_caption=same)
    assert float(kept["v"]) == pytest.approx(0.4, abs=1e-6) and float(kept["cm"]) == 0.0
    masked = HMMCLoss(lambda_t=0.0).terms(img, txt, img, same_caption=same)
    assert float(masked["v"]) == 0.0


def test_weights_margin_and_negatives_are_configurable():
    img, txt, img2, txt2 = _random_features()
    loss = HMMCLoss(lambda_cm=0.5, lambda_v=2.0, lambda_t=0.0, margin=0.3, negatives="sum", reduction="mean")
    terms = loss.terms(img, txt, img2)
    assert set(terms) == {"cm", "v", "loss"}
    cm = bidirectional_hinge(img, txt, 0.3, "sum", "mean")
    v = bidirectional_hinge(img, img2, 0.3, "sum", "mean")
    assert float(terms["cm"]) == pytest.approx(float(cm), rel=1e-6)
    assert float(terms["loss"]) == pytest.approx(float(0.5 * cm + 2.0 * v), rel=1e-6)


def test_positional_signature_and_augmented_views():
    plain = HMMCLoss(0.07, 0.0, 0.0)  # how the PETL baselines build it: cross-modal term only
    img, txt = _random_features()[:2]
    assert not plain.needs_augmented and set(plain.terms(img, txt)) == {"cm", "loss"}
    loss = HMMCLoss(0.1, 0.5, 2.0)
    assert loss.needs_augmented and loss.form == "hinge"
    with pytest.raises(ValueError, match="augmented"):
        loss.terms(img, txt)


# -- configuration ----------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, words", [
    ("form", "triplet", ["form", "hinge", "infonce"]),
    ("negatives", "all", ["negatives", "hardest", "sum"]),
    ("reduction", "max", ["reduction", "sum", "mean"]),
    ("duplicate_captions", "drop", ["duplicate_captions", "mask", "positive", "ignore"]),
    ("duplicate_terms", ("cm", "x"), ["duplicate_terms", "cm", "v", "t"]),
    ("margin", -0.1, ["margin", ">= 0"]),
    ("temperature", 0.0, ["temperature", "> 0"]),
    ("lambda_v", float("nan"), ["lambda_v"]),
])
def test_config_rejects_bad_values_naming_key_and_allowed(key, value, words):
    with pytest.raises(ConfigError) as err:
        HMMCConfig(**{key: value})
    assert all(w in str(err.value) for w in words)
    with pytest.raises(ValueError):  # ConfigError is a ValueError, as before
        HMMCLoss(**{key: value})


def test_config_loads_from_yaml_data_and_builds_the_loss():
    cfg = from_dict(HMMCConfig, {"form": "infonce", "duplicate_captions": "positive",
                                 "duplicate_terms": ["cm", "t"], "lambda_v": 0.5}, "loss")
    assert cfg.duplicate_terms == ("cm", "t") and cfg.form == "infonce"
    loss = HMMCLoss.from_config(cfg, lambda_t=0.0)
    assert (loss.form, loss.lambda_v, loss.lambda_t, loss.duplicate_captions) == ("infonce", 0.5, 0.0, "positive")
    with pytest.raises(ConfigError, match="loss.form"):
        from_dict(HMMCConfig, {"form": "svm"}, "loss")
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(HMMCConfig, {"max_violation": True}, "loss")
