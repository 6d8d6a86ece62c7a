"""Prompt modules on the tiny random-init backbone: shapes, exactness, gradients, supported towers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedrs.backbone.factory import create_backbone
from fedrs.backbone.templates import DEFAULT_INIT_PHRASE, DEFAULT_TEMPLATE, RS_TEMPLATES, template_text_features
from fedrs.methods import create_method
from fedrs.methods.base import Batch
from fedrs.prompts import DualPromptModel, PromptError, TextPromptEncoder, TextPromptModule, VisualPromptEncoder

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


def test_text_prompts_run_only_to_the_last_end_of_text_token(backbone):
    from fedrs.backbone.text_tower import full_context_passes

    enc = TextPromptEncoder(backbone.model, backbone.tokenizer, NAMES, n_ctx=4)
    ids = backbone.tokenizer([f"X X X X {n}." for n in NAMES])
    last_eot = int(ids.argmax(dim=-1).max())
    # fixed once at construction; the derived buffers are cut to it
    assert enc.run_length == last_eot + 1 < ids.shape[1]
    assert enc.token_ids.shape == (3, enc.run_length) and enc.suffix.shape[1] == enc.run_length - 1 - 4
    with full_context_passes():
        full = TextPromptEncoder(backbone.model, backbone.tokenizer, NAMES, n_ctx=4)
    assert full.run_length == ids.shape[1] and full.suffix.shape[1] == ids.shape[1] - 1 - 4
    ctx = (torch.randn(2, 4, enc.width, generator=torch.Generator().manual_seed(0)) * 0.02).requires_grad_()
    weights = torch.randn(2, 3, backbone.embed_dim, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad((enc(ctx) * weights).sum(), ctx)
    (full_grad,) = torch.autograd.grad((full(ctx) * weights).sum(), ctx)
    assert torch.allclose(enc(ctx), full(ctx), atol=1e-6)
    assert grad.abs().sum() > 0 and torch.allclose(grad, full_grad, atol=1e-5 * float(full_grad.abs().max()))


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
    unsupported = "Linear text tower cannot be run from token embeddings; supported: open_clip CLIP"
    with pytest.raises(PromptError, match=unsupported):
        TextPromptEncoder(hf_like, backbone.tokenizer, NAMES, 4)
    with pytest.raises(PromptError, match="has 5 tokens but the prompt length is 4"):
        DualPromptModel(backbone, NAMES, init="phrase", init_phrase=DEFAULT_INIT_PHRASE)
    with pytest.raises(PromptError, match="exceed the text context length"):
        TextPromptEncoder(backbone.model, backbone.tokenizer, NAMES, 30)
    with pytest.raises(PromptError, match="depth must be in 1..2"):
        DualPromptModel(backbone, NAMES, visual_depth=3)
    with pytest.raises(PromptError, match="init must be 'random' or 'phrase', got 'zeros'"):
        TextPromptModule(backbone, NAMES, 4, init="zeros")


def test_prompt_module_draws_every_tensor_from_one_seeded_generator_in_creation_order(backbone):
    base = TextPromptModule(backbone, NAMES, 4, init_std=0.5, seed=7)
    ctx, u = base.context(), base.matrix(4, 3)
    gen = torch.Generator().manual_seed(7)
    assert torch.equal(ctx, torch.randn(4, 64, generator=gen) * 0.5)
    assert torch.equal(u, torch.randn(4, 3, generator=gen) * 0.5)
    assert ctx.requires_grad and list(base.parameters()) == [] and base.state_dict() == {}  # nothing assigned yet
    # FedRSCLIP's module is the same base: its four tensors are the first four draws, in order
    dual = DualPromptModel(backbone, NAMES, n_ctx=4, visual_tokens=2, init_std=0.5, seed=7)
    gen = torch.Generator().manual_seed(7)
    expected = [torch.randn(*p.shape, generator=gen) * 0.5 for p in dual.parameters()]
    names = [n for n, _ in dual.named_parameters()]
    assert names == ["text_shared", "text_private", "visual_shared", "visual_private"]
    assert all(torch.equal(p, e) for p, e in zip(dual.parameters(), expected))
    # a phrase initialisation draws nothing: the next draw is the generator's first
    phrase = TextPromptModule(backbone, NAMES, 5, init="phrase", seed=7)
    assert torch.equal(phrase.context(), phrase.text.phrase_init(backbone.tokenizer, DEFAULT_INIT_PHRASE))
    assert torch.equal(phrase.matrix(1, 2), TextPromptModule(backbone, NAMES, 5, seed=7).matrix(1, 2))


def test_prompt_module_logits_are_clip_logits_of_normalised_features(backbone):
    module = TextPromptModule(backbone, NAMES, 4)
    raw = torch.randn(5, backbone.embed_dim)
    image = module.image_features(features=raw)
    assert torch.allclose(image.norm(dim=-1), torch.ones(5))
    text = template_text_features(backbone, NAMES)
    scale = backbone.model.logit_scale.exp()
    assert torch.allclose(module.logits(image, text), scale * image @ text.t())
    assert module.logits(image, torch.stack([text, text])).shape == (2, 5, 3)  # several prompt sets
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(module.image_features(x), F.normalize(backbone.model.encode_image(x), dim=-1))


def test_template_features_single_and_ensemble(backbone):
    from open_clip import build_zero_shot_classifier

    single = template_text_features(backbone, NAMES)
    tokens = backbone.tokenizer([DEFAULT_TEMPLATE.format(n) for n in NAMES])
    # truncated passes (issue 13): encode_text's features up to float rounding
    assert torch.allclose(single, F.normalize(backbone.model.encode_text(tokens), dim=-1), atol=1e-6)
    # a one-template ensemble is the same direction, renormalised (equal up to rounding)
    assert torch.allclose(template_text_features(backbone, NAMES, [DEFAULT_TEMPLATE]), single, atol=1e-6)
    # the ensemble form is open_clip's zero-shot classifier (up to the truncated passes' rounding),
    # across class groups of 16
    names = [f"{n} {i}" for i in range(7) for n in NAMES]  # 21 classes: two encoder passes
    ours = template_text_features(backbone, names, RS_TEMPLATES)
    theirs = build_zero_shot_classifier(backbone.model, backbone.tokenizer, names, list(RS_TEMPLATES),
                                        num_classes_per_batch=16)
    assert ours.shape == (21, backbone.embed_dim) and torch.allclose(ours, theirs.t(), atol=1e-6)
    assert not torch.allclose(ours, template_text_features(backbone, names), atol=1e-3)
