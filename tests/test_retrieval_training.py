"""The retrieval training paths (centralised ``train_epochs`` and the federated method's ``loss``)
with repeated caption strings, validation splits and the learning-rate sweep."""

import pytest
import torch

from fedrs.backbone.factory import create_backbone
from fedrs.config import ConfigError, dump_yaml, from_dict, to_dict
from fedrs.losses.retrieval import HMMCLoss, caption_groups
from fedrs.retrieval.config import AdapterConfig, LossConfig, RetrievalConfig
from fedrs.retrieval.data import RetrievalSet
from fedrs.retrieval.method import PERSITR, PERSITRConfig
from fedrs.retrieval.train import train_epochs
from fedrs.retrieval.variants import build_variant

from test_retrieval_variants import TINY_CFG, tiny_set


@pytest.fixture(scope="module")
def tiny():
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


def repeated_set(backbone, captions: list[str]) -> RetrievalSet:
    """One image per caption (random pixels), so a batch is exactly these captions."""
    g = torch.Generator().manual_seed(3)
    n = len(captions)
    images = torch.randn(n, 3, backbone.image_size, backbone.image_size, generator=g)
    return RetrievalSet("repeated", [str(i) for i in range(n)], images, list(captions), torch.arange(n))


def spy_terms(monkeypatch) -> list:
    """Record the ``same_caption`` argument of every HMMC call."""
    seen, real = [], HMMCLoss.terms

    def spy(self, *args, same_caption=None, **kw):
        seen.append(None if same_caption is None else torch.as_tensor(same_caption).clone())
        return real(self, *args, same_caption=same_caption, **kw)

    monkeypatch.setattr(HMMCLoss, "terms", spy)
    return seen


# -- repeated captions through the training path -----------------------------------------------------

def test_loss_config_records_every_hmmc_choice_and_validates_dropout():
    cfg = RetrievalConfig()
    data = to_dict(cfg)["loss"]
    assert {"form", "margin", "negatives", "reduction", "duplicate_captions", "duplicate_terms",
            "text_dropout", "vision_dropout"} <= set(data)
    assert data["form"] == "hinge" and data["duplicate_captions"] == "mask"
    assert "duplicate_captions: mask" in dump_yaml(cfg)
    loaded = from_dict(LossConfig, {"form": "infonce", "margin": 0.1, "text_dropout": 0.1}, "loss")
    assert loaded.form == "infonce" and loaded.margin == 0.1 and loaded.text_dropout == 0.1
    with pytest.raises(ConfigError, match="text_dropout"):
        LossConfig(text_dropout=1.5)
    with pytest.raises(ConfigError, match="form"):
        LossConfig(form="svm")
    # the variants build their loss from the config: every choice carries over
    _, loss = build_variant(create_backbone("fedrs-rsclip-tiny", pretrained="random"),
                            RetrievalConfig(adapter=AdapterConfig(bottleneck=16, shared_dim=8),
                                            loss=LossConfig(margin=0.3, negatives="sum")), "mrs-adapter")
    assert loss.margin == 0.3 and loss.negatives == "sum" and loss.lambda_v == 0.0 and loss.lambda_t == 0.0


def test_train_epochs_passes_the_batch_caption_groups(tiny, monkeypatch):
    caps = ["there is a piece of farmland .", "a river", "There is a  piece of farmland .", "a runway",
            "a beach"]
    data = repeated_set(tiny, caps)
    seen = spy_terms(monkeypatch)
    model, loss = build_variant(tiny, TINY_CFG, "mrs-adapter-hmmc")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))  # the loop's first draw
    train_epochs(model, loss, data, epochs=1, batch_size=8, lr=1e-3, seed=0)
    assert len(seen) == 1 and seen[0] is not None
    groups = seen[0]
    # images 0 and 2 hold the same string (case and spacing aside), wherever the shuffle put them
    assert groups.tolist() == caption_groups(caps)[order].tolist()
    pos = {int(i): k for k, i in enumerate(order)}
    assert groups[pos[0]] == groups[pos[2]] and len(set(groups.tolist())) == 4


@pytest.mark.parametrize("mode", ["mask", "ignore"])
def test_a_batch_of_one_repeated_caption_trains_nothing_when_masked(tiny, mode):
    """Every image carries the same caption string: with masking no pair is a negative, so the
    loss is exactly 0 and nothing moves; without it the identical strings are negatives."""
    data = repeated_set(tiny, ["there is a piece of farmland ."] * 4)
    cfg = RetrievalConfig(adapter=AdapterConfig(bottleneck=16, shared_dim=8),
                          loss=LossConfig(duplicate_captions=mode))
    model, loss = build_variant(tiny, cfg, "mrs-adapter-hmmc")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    stats = train_epochs(model, loss, data, epochs=1, batch_size=4, lr=1e-2)
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert stats["steps"] == 1
    if mode == "mask":
        assert stats["loss"] == 0.0 and not changed
    else:
        assert stats["loss"] > 0.0 and changed


def test_federated_method_loss_masks_repeated_pool_captions(tiny, monkeypatch):
    from fedrs.methods.base import Batch

    caps = ["a farmland", "a river", "A farmland", "a runway"]
    pool = repeated_set(tiny, caps)
    method = PERSITR(PERSITRConfig(adapter=AdapterConfig(bottleneck=16, shared_dim=8)), tiny)
    method.set_pool(pool, [3])
    seen = spy_terms(monkeypatch)
    idx = torch.tensor([2, 0, 1])
    loss, terms = method.loss(Batch(labels=idx, images=pool.images[idx]))
    assert seen[0].tolist() == caption_groups(caps)[idx].tolist() == [0, 0, 1]
    assert set(terms) >= {"cm", "v", "t", "loss"} and torch.isfinite(loss)
