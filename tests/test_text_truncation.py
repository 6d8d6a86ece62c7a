"""Exact text truncation (fedrs.backbone.text_tower): running a causal text tower only up to the
last end-of-text token gives the full-context features and gradients; other towers keep the full
context."""

from __future__ import annotations

import dataclasses

import open_clip
import pytest
import torch
from open_clip.transformer import TextTransformer, text_global_pool
from torch import nn

from fedrs.backbone.factory import create_backbone
from fedrs.backbone.text_tower import (
    TextTowerError,
    encode_text_embeddings,
    encode_text_tokens,
    full_context_passes,
    resolve_text_tower,
    text_run_length,
)

NAMES = ["airplane", "dense residential", "golf course", "storage tanks"]
N_CTX = 4
ATOL = 1e-5


def close(value: torch.Tensor, reference: torch.Tensor) -> bool:
    """Equal to float rounding: max error within ATOL of the reference's scale (gradients into a
    0.02-std context pass through layer norms and reach magnitudes in the hundreds)."""
    value, reference = value.detach(), reference.detach()
    return bool((value - reference).abs().max() <= ATOL * max(1.0, float(reference.abs().max())))


def full_context(tower, embeddings: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Reference: open_clip's encode_text written out, on however many tokens it is given."""
    n = embeddings.shape[1]
    x = embeddings + tower.positional_embedding[:n]
    x = tower.transformer(x, attn_mask=None if tower.attn_mask is None else tower.attn_mask[:n, :n])
    x = text_global_pool(tower.ln_final(x), ids, tower.pool_type, eos_token_id=tower.eos_id)
    proj = tower.text_projection
    return x if proj is None else (proj(x) if isinstance(proj, nn.Linear) else x @ proj)


def prompted(tower, tokenizer, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CoOp-style prompted class texts: ids [C, L] of ``X X X X <name>.`` and embeddings [C, L, W]
    with the learned ``ctx [M, W]`` in place of the X's (as fedrs.prompts builds them)."""
    ids = tokenizer([" ".join(["X"] * N_CTX) + f" {name}." for name in NAMES]).long()
    with torch.no_grad():
        emb = tower.token_embedding(ids)
    ctx = ctx.unsqueeze(0).expand(len(NAMES), -1, -1)
    return ids, torch.cat([emb[:, :1], ctx, emb[:, 1 + N_CTX:]], dim=1)


@pytest.fixture(scope="module")
def tiny():
    backbone = create_backbone("fedrs-rsclip-tiny", pretrained="random")
    return backbone.model, backbone.tokenizer


@pytest.fixture(scope="module")
def vit_b16():
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16", pretrained=None).eval()
    model.requires_grad_(False)
    return model, open_clip.get_tokenizer("ViT-B-16")


@pytest.fixture(scope="module")
def custom_text_tiny():
    """The tiny architecture as a CustomTextCLIP (text tower is a TextTransformer in ``model.text``)."""
    torch.manual_seed(0)
    model = open_clip.create_model("fedrs-rsclip-tiny", pretrained=None, force_custom_text=True).eval()
    model.requires_grad_(False)
    return model, open_clip.get_tokenizer("fedrs-rsclip-tiny")


@pytest.mark.parametrize("which", ["tiny", "custom_text_tiny", "vit_b16"])
def test_prompted_features_and_gradients_equal_full_context(which, request):
    model, tokenizer = request.getfixturevalue(which)
    tower = resolve_text_tower(model)
    ctx = (torch.randn(N_CTX, tower.width, generator=torch.Generator().manual_seed(1)) * 0.02).requires_grad_()
    ids, emb = prompted(tower, tokenizer, ctx)
    # the longest prompt ends well before the context: truncation has something to cut
    eot = int(ids.argmax(dim=-1).max())
    assert eot + 1 < tower.context_length

    run = encode_text_embeddings(tower, emb, ids)
    weights = torch.randn(run.features.shape, generator=torch.Generator().manual_seed(2))
    (grad,) = torch.autograd.grad((run.features * weights).sum(), ctx)
    ref = full_context(tower, emb, ids)
    (ref_grad,) = torch.autograd.grad((ref * weights).sum(), ctx)

    assert run.tokens_run == eot + 1 == text_run_length(tower, ids)
    assert run.features.shape == ref.shape == (len(NAMES), tower.text_projection.shape[1])
    assert close(run.features, ref)
    assert grad.abs().sum() > 0
    assert close(grad, ref_grad)
    # embeddings already cut to the run length, and a precomputed length, give the same features
    cut = encode_text_embeddings(tower, emb[:, :run.tokens_run], ids, length=run.tokens_run)
    assert torch.equal(cut.features, run.features)


@pytest.mark.parametrize("which", ["tiny", "custom_text_tiny", "vit_b16"])
def test_template_tokens_equal_encode_text(which, request):
    model, tokenizer = request.getfixturevalue(which)
    ids = tokenizer([f"a satellite photo of a {name}." for name in NAMES])
    run = encode_text_tokens(model, ids)
    with torch.no_grad():
        expected = model.encode_text(ids)
    assert run.tokens_run == int(ids.argmax(dim=-1).max()) + 1 < ids.shape[1]
    assert close(run.features, expected)


def test_bidirectional_tower_keeps_full_context():
    torch.manual_seed(0)
    text = TextTransformer(context_length=16, width=32, heads=2, layers=2, output_dim=8, no_causal_mask=True).eval()
    tower = resolve_text_tower(text)
    assert not tower.causal and not tower.truncatable
    ids = torch.zeros(3, 16, dtype=torch.long)
    ids[:, 0] = 49406
    ids[0, 1:4] = torch.tensor([320, 1125, 49407])
    ids[1, 1:3] = torch.tensor([1125, 49407])
    ids[2, 1:6] = torch.tensor([320, 321, 322, 1125, 49407])
    emb = text.token_embedding(ids)
    with torch.no_grad():
        run = encode_text_embeddings(tower, emb, ids)
        tokens = encode_text_tokens(text, ids)
        expected = text(ids)
        # padding does reach the output here, so cutting after the last end-of-text would be wrong
        cut_short = full_context(tower, emb[:, :6], ids[:, :6])
    assert run.tokens_run == tokens.tokens_run == 16 == text_run_length(tower, ids)
    assert close(run.features, expected) and close(tokens.features, expected)
    assert not torch.allclose(cut_short, expected, atol=1e-3)
    with pytest.raises(ValueError, match="cannot run 16 tokens"):
        encode_text_embeddings(tower, emb[:, :6], ids[:, :6])


def test_clip_without_causal_mask_and_last_token_pooling_keep_full_context(tiny):
    model, tokenizer = tiny
    ids = tokenizer([f"a satellite photo of a {name}." for name in NAMES])
    tower = resolve_text_tower(model)
    for changed in (dataclasses.replace(tower, attn_mask=None), dataclasses.replace(tower, pool_type="last")):
        with torch.no_grad():
            run = encode_text_embeddings(changed, changed.token_embedding(ids), ids)
            expected = full_context(changed, changed.token_embedding(ids), ids)
        assert run.tokens_run == ids.shape[1]
        assert close(run.features, expected)


def test_unsupported_towers(tiny):
    model, tokenizer = tiny
    hf_like = nn.Module()
    hf_like.text = nn.Linear(4, 4)
    with pytest.raises(TextTowerError, match="Linear text tower cannot be run from token embeddings"):
        resolve_text_tower(hf_like)
    coca_like = TextTransformer(context_length=8, width=32, heads=2, layers=1, output_dim=8, embed_cls=True)
    with pytest.raises(TextTowerError, match="CoCa-style"):
        resolve_text_tower(coca_like)

    # the token helper falls back to the model's own encode_text on the full context
    class Opaque(nn.Module):
        def encode_text(self, ids):
            return model.encode_text(ids)

    ids = tokenizer(["a satellite photo of a golf course."])
    run = encode_text_tokens(Opaque(), ids)
    assert run.tokens_run == ids.shape[1]
    assert torch.equal(run.features, model.encode_text(ids))
    # embeddings shorter than the last end-of-text position cannot be run
    tower = resolve_text_tower(model)
    with pytest.raises(ValueError, match="cannot run"):
        encode_text_embeddings(tower, tower.token_embedding(ids)[:, :3], ids)


def test_full_context_switch_is_scoped(tiny):
    """full_context_passes() (benchmarks' 'before truncation') answers the full context inside the
    block only, also when the block raises."""
    model, tokenizer = tiny
    tower = resolve_text_tower(model)
    ids = tokenizer([f"a satellite photo of a {name}." for name in NAMES])
    cut = text_run_length(tower, ids)
    assert cut < ids.shape[1]
    with pytest.raises(RuntimeError, match="inside"):
        with full_context_passes():
            assert text_run_length(tower, ids) == ids.shape[1]
            assert encode_text_tokens(model, ids).tokens_run == ids.shape[1]
            raise RuntimeError("inside")
    assert text_run_length(tower, ids) == cut
