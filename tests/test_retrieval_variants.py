"""Every PETL variant trains a step on the tiny backbone and changes only its own tensors."""

import pytest
import torch

from fedrs.backbone.factory import create_backbone
from fedrs.retrieval.config import VARIANTS, AdapterConfig, PromptConfig, RetrievalConfig
from fedrs.retrieval.data import RetrievalSet, split_disjoint
from fedrs.retrieval.train import batch_terms, encode_set, evaluate, frozen_bodies, search_images, train_epochs
from fedrs.retrieval.variants import build_variant

TINY_CFG = RetrievalConfig(adapter=AdapterConfig(bottleneck=16, shared_dim=8),
                           prompts=PromptConfig(text_tokens=4, visual_tokens=2, visual_depth=0))


@pytest.fixture(scope="module")
def tiny():
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


def tiny_set(backbone, n_images=6, per_image=2) -> RetrievalSet:
    g = torch.Generator().manual_seed(1)
    images = torch.randn(n_images, 3, backbone.image_size, backbone.image_size, generator=g)
    words = ["river", "runway", "forest", "beach", "harbor", "tennis court", "farmland", "road"]
    caps = [f"a {words[i % 8]} seen from above number {j}" for i in range(n_images) for j in range(per_image)]
    owner = torch.arange(n_images).repeat_interleave(per_image)
    return RetrievalSet("tiny", [str(i) for i in range(n_images)], images, caps, owner)


def test_batches_hold_each_image_once_with_one_own_caption(tiny):
    data = tiny_set(tiny)
    seen = []
    for img, cap in data.batches(4, torch.Generator().manual_seed(0)):
        assert len(set(img.tolist())) == len(img)
        assert torch.equal(data.caption_image[cap], img)
        seen += img.tolist()
    assert sorted(seen) == list(range(len(data)))
    shards = split_disjoint(data, 3)
    assert sorted(sum(shards, [])) == list(range(len(data)))
    sub = data.subset(shards[1])
    assert len(sub) == 2 and sub.num_captions == 4 and sub.caption_image.tolist() == [0, 0, 1, 1]
    assert sub.captions == [data.captions[j] for i in shards[1] for j in data.captions_of()[i]]


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_trains_only_its_own_tensors(tiny, variant):
    data = tiny_set(tiny)
    frozen_before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    model, loss = build_variant(tiny, TINY_CFG, variant)
    assert (loss.lambda_v > 0) == (variant == "mrs-adapter-hmmc")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert model.trainable_parameters() == sum(p.numel() for p in before.values())
    stats = train_epochs(model, loss, data, epochs=1, batch_size=6, lr=1e-2, max_steps=1)
    after = dict(model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    if variant == "zero-shot":
        assert model.trainable_parameters() == 0 and stats["steps"] == 0
    else:
        assert stats["steps"] == 1 and changed
        assert all(after[n].requires_grad for n in changed)
    # the shared frozen backbone is untouched by every variant (full fine-tuning trains a copy)
    assert all(torch.equal(frozen_before[k], v) for k, v in tiny.model.state_dict().items())
    scores = evaluate(model, data)
    assert 0.0 <= scores.mr <= 100.0


def test_parameter_counts_on_vit_b32():
    backbone = create_backbone("ViT-B-32", pretrained="random")
    counts = {v: build_variant(backbone, RetrievalConfig(), v)[0].trainable_parameters()
              for v in VARIANTS if v != "full-finetune"}
    assert counts == {"zero-shot": 0, "linear-probe": 768 * 512 + 512 * 512, "coop": 16 * 512,
                      "vpt": 12 * 8 * 768, "adapter": 165_248, "mrs-adapter": 161_088,
                      "mrs-adapter-hmmc": 161_088}


@pytest.mark.parametrize("variant", ["linear-probe", "coop", "vpt"])
def test_cached_frozen_bodies_give_the_same_loss(tiny, variant):
    data = tiny_set(tiny)
    model, loss = build_variant(tiny, TINY_CFG, variant)
    tokens = model.tokenize(data.captions)
    cached = frozen_bodies(model, loss, data, tokens)
    assert set(cached) == {"linear-probe": {"image_body", "text_body"}, "coop": {"image_body"},
                           "vpt": {"text_body"}}[variant]
    img, cap = torch.arange(4), torch.tensor([0, 2, 4, 6])
    full = batch_terms(model, loss, data.images[img], tokens[cap])["loss"]
    bodies = {k: v[img if k == "image_body" else cap] for k, v in cached.items()}
    fast = batch_terms(model, loss, None if "image_body" in bodies else data.images[img],
                       None if "text_body" in bodies else tokens[cap], **bodies)["loss"]
    assert torch.allclose(full, fast, atol=1e-5)


def test_search_images_ranks_by_cosine(tiny):
    data = tiny_set(tiny)
    model, _ = build_variant(tiny, TINY_CFG, "zero-shot")
    img, txt = encode_set(model, data)
    idx, cos = search_images(model, data, [data.captions[3], "a runway"], k=3, image_features=img)
    assert idx.shape == (2, 3) and torch.all(cos[:, :-1] >= cos[:, 1:])
    expected = torch.nn.functional.normalize(txt[3], dim=0) @ torch.nn.functional.normalize(img, dim=1).T
    assert idx[0].tolist() == expected.topk(3).indices.tolist()
