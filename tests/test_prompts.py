"""Prompt modules on the tiny random-init backbone: shapes, exactness, gradients, supported towers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedrs.backbone.factory import create_backbone
from fedrs.methods import create_method
from fedrs.methods.base import Batch
from fedrs.prompts import DualPromptModel, PromptError, TextPromptEncoder, VisualPromptEncoder

NAMES = ["airplane", "dense residential", "golf course"]


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


def test_text_prompt_from_phrase_equals_the_hand_written_prompt(backbone):
    enc = TextPromptEncoder(backbone.model, backbone.tokenizer, NAMES, n_ctx=4)
    ctx = enc.phrase_init(backbone.tokenizer, "a satellite photo of")
    tokens = backbone.tokenizer([f"a satellite photo of {n}." for n in NAMES])
    expected = F.normalize(backbone.model.encode_text(tokens), dim=-1)
    assert enc(ctx).shape == (3, backbone.embed_dim)
    assert torch.allclose(enc(ctx), expected, atol=1e-6)
    # several prompt sets in one pass, and class-specific contexts
    assert enc(torch.stack([ctx, ctx])).shape == (2, 3, backbone.embed_dim)
    assert enc(ctx.expand(1, 3, 4, -1)).shape == (1, 3, backbone.embed_dim)
    assert enc.state_dict() == {}  # class-name buffers are derived, never saved


def test_visual_encoder_without_prompts_is_encode_image(backbone):
    enc = VisualPromptEncoder(backbone.model)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(enc(x, None), F.normalize(backbone.model.encode_image(x), dim=-1))
    shallow = enc(x, torch.randn(1, 2, enc.width))
    deep = enc(x, torch.randn(2, 2, enc.width))
    assert shallow.shape == deep.shape == (2, backbone.embed_dim)
    assert not torch.allclose(shallow, enc(x, None))


@pytest.mark.parametrize("n_ctx", [4, 8, 16])
def test_dual_prompt_parameters_are_only_prompts(backbone, n_ctx):
    model = DualPromptModel(backbone, NAMES, n_ctx=n_ctx, visual_tokens=2, visual_depth=2)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert shapes == {"text_shared": (n_ctx, 64), "text_private": (n_ctx, 64),
                      "visual_shared": (2, 2, 64), "visual_private": (2, 2, 64)}
    assert set(model.state_dict()) == set(shapes)
    feats = model.text_features()
    assert all(feats[k].shape == (3, backbone.embed_dim) for k in ("shared", "private", "combined"))
    assert torch.allclose(feats["combined"], F.normalize(feats["shared"] + feats["private"], dim=-1))
    assert model.logits(model.image_features(torch.randn(5, 3, 32, 32)), feats["combined"]).shape == (5, 3)


def test_training_changes_only_prompts_and_backbone_stays_bit_identical(backbone):
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    method = create_method({"name": "fedrsclip"}, backbone, NAMES)
    prompts = method.get_tensors(method.trainable_names)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.1)
    batch = Batch(labels=torch.tensor([0, 1, 2, 0]), images=torch.randn(4, 3, 32, 32))
    for _ in range(2):
        loss, terms = method.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert set(terms) == {"ce", "dpa", "cma", "loss"}
    assert all(not p.requires_grad and p.grad is None for p in backbone.model.parameters())
    after = backbone.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    changed = method.get_tensors(method.trainable_names)
    assert all(not torch.equal(prompts[n], changed[n]) for n in prompts)


def test_unsupported_towers_and_prompt_settings_are_clear_errors(backbone):
    resnet_like = nn.Module()
    resnet_like.visual = nn.Conv2d(3, 8, 3)
    with pytest.raises(PromptError, match="VisionTransformer"):
        VisualPromptEncoder(resnet_like)
    hf_like = nn.Module()
    hf_like.text = nn.Linear(4, 4)
    with pytest.raises(PromptError, match="Linear text tower; supported: open_clip CLIP"):
        TextPromptEncoder(hf_like, backbone.tokenizer, NAMES, 4)
    with pytest.raises(PromptError, match="has 5 tokens but the prompt length is 4"):
        DualPromptModel(backbone, NAMES, init="phrase", init_phrase="a satellite photo of a")
    with pytest.raises(PromptError, match="exceed the text context length"):
        TextPromptEncoder(backbone.model, backbone.tokenizer, NAMES, 30)
    with pytest.raises(PromptError, match="depth must be in 1..2"):
        DualPromptModel(backbone, NAMES, visual_depth=3)
