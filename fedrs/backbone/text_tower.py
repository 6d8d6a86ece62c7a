"""open_clip's text tower run only as far as the pooled token needs: exact text truncation.

A causal text transformer (CLIP, OpenCLIP, EVA-style towers built from open_clip's
``TextTransformer``) computes the feature of position ``p`` from positions ``0..p`` only: the
attention mask is lower-triangular and everything else (layer norms, MLPs) acts per token. Its
output is pooled at one position per text (the end-of-text token for ``argmax``/``eos`` pooling),
so the tokens after the *last* pooled position of a batch cannot change any output. Running the
batch on ``length = max(pooled position) + 1`` tokens, with the positional embedding and the
causal mask sliced to ``[:length]``, therefore gives the same features as the full context (up to
float rounding), at ``length / context_length`` of the cost: 9-16 of 77 tokens for class prompts.

Towers without a causal mask (SigLIP-style bidirectional towers, ``attn_mask is None``) and
pooling that depends on the last position (``last``) or on every position (``none``) keep the full
context: there every token can influence the output.

Two entry points, both returning :class:`TextTowerRun` (features and the number of tokens run):

* :func:`encode_text_embeddings` -- token *embeddings* ``[N, L, W]`` (prompted class texts, after
  learned context vectors were spliced in) plus the token ids ``[N, L]`` that locate each text's
  pooled (end-of-text) token. Differentiable in the embeddings.
* :func:`encode_text_tokens` -- token ids ``[N, L]`` of hand-written texts (zero-shot class
  features); falls back to ``model.encode_text`` for towers it cannot run piecewise.

:func:`text_run_length` gives the number of tokens a batch needs; compute it once for fixed token
ids and pass it as ``length`` so the step loop does no host synchronisation.

:func:`full_context_passes` (a context manager) makes :func:`text_run_length` answer the full
context while it is active, so that what is built inside it runs every text pass untruncated: the
pre-truncation cost, for ``benchmarks/bench_round.py`` to compare against. Nothing else uses it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import torch
from open_clip.transformer import TextTransformer, text_global_pool
from torch import nn

from fedrs.errors import BackboneError

SUPPORTED_TEXT = ("open_clip CLIP with its built-in text transformer, or CustomTextCLIP whose text "
                  "tower is open_clip's TextTransformer, with the CLIP BPE tokenizer")
#: pool types whose pooled position is found from the token ids (and so allow truncation)
POSITIONAL_POOLS = ("argmax", "eos", "first")

#: set only by :func:`full_context_passes` (benchmarks): every run length is the full context
_FULL_CONTEXT = False


class TextTowerError(BackboneError):
    """A text tower that cannot be run from token embeddings (not an open_clip text transformer)."""


@dataclass(frozen=True)
class TextTower:
    """The pieces of an open_clip text tower, whichever class holds them.

    ``CLIP`` keeps them on the model itself (``text_pool_type``/``text_eos_id``), ``CustomTextCLIP``
    on its ``text`` (a ``TextTransformer``: ``pool_type``/``eos_id``). ``attn_mask`` is the additive
    causal mask ``[context_length, context_length]`` or ``None`` for a bidirectional tower.
    """

    token_embedding: nn.Embedding
    positional_embedding: torch.Tensor  # [context_length, W]
    transformer: nn.Module  # open_clip Transformer: [N, L, W] -> [N, L, W] (handles batch_first itself)
    attn_mask: torch.Tensor | None
    ln_final: nn.Module
    text_projection: torch.Tensor | nn.Linear | None  # [W, D] parameter, Linear(W, D) or none
    pool_type: str
    eos_id: int | None

    @property
    def causal(self) -> bool:
        return self.attn_mask is not None

    @property
    def context_length(self) -> int:
        return int(self.positional_embedding.shape[0])

    @property
    def width(self) -> int:
        return int(self.token_embedding.weight.shape[1])

    @property
    def truncatable(self) -> bool:
        """Whether tokens after the last pooled position cannot influence the output."""
        return self.causal and self.pool_type in POSITIONAL_POOLS


class TextTowerRun(NamedTuple):
    """Output of one text-tower pass."""

    features: torch.Tensor  # [N, D] pooled, projected, not normalised (tower dtype)
    tokens_run: int  # sequence length the transformer ran on (<= context length)


def resolve_text_tower(model: nn.Module) -> TextTower:
    """The :class:`TextTower` of an open_clip ``CLIP`` or ``CustomTextCLIP`` (or a bare ``TextTransformer``).

    Raises:
        TextTowerError: a tower that is not open_clip's own text transformer (Hugging Face towers),
            or a CoCa-style one (appended class token, padding mask) whose output is not the
            pooled end-of-text token of a plain transformer pass.
    """
    if isinstance(model, TextTransformer):
        text = model
    elif hasattr(model, "token_embedding") and hasattr(model, "ln_final") and hasattr(model, "transformer"):
        return TextTower(
            token_embedding=model.token_embedding, positional_embedding=model.positional_embedding,
            transformer=model.transformer, attn_mask=getattr(model, "attn_mask", None),
            ln_final=model.ln_final, text_projection=getattr(model, "text_projection", None),
            pool_type=getattr(model, "text_pool_type", "argmax"), eos_id=getattr(model, "text_eos_id", None),
        )
    else:
        text = getattr(model, "text", None)
    if not isinstance(text, TextTransformer):
        found = type(text).__name__ if text is not None else type(model).__name__
        raise TextTowerError(f"a {found} text tower cannot be run from token embeddings; supported: {SUPPORTED_TEXT}")
    if text.cls_emb is not None or getattr(text, "use_pad_mask", False):
        raise TextTowerError(f"a CoCa-style text tower (class token or padding mask) cannot be run from token "
                             f"embeddings; supported: {SUPPORTED_TEXT}")
    return TextTower(
        token_embedding=text.token_embedding, positional_embedding=text.positional_embedding,
        transformer=text.transformer, attn_mask=text.attn_mask, ln_final=text.ln_final,
        text_projection=text.text_projection, pool_type=text.pool_type, eos_id=getattr(text, "eos_id", None),
    )


def pooled_positions(tower: TextTower, token_ids: torch.Tensor) -> torch.Tensor | None:
    """Position ``[N]`` (long) each text is pooled at, as open_clip's ``text_global_pool`` picks it;
    ``None`` for ``last``/``none`` pooling (no single position found from the ids)."""
    if tower.pool_type == "argmax":
        return token_ids.argmax(dim=-1)
    if tower.pool_type == "eos":
        return (token_ids == tower.eos_id).int().argmax(dim=-1)
    if tower.pool_type == "first":
        return torch.zeros(token_ids.shape[0], dtype=torch.long, device=token_ids.device)
    return None


@contextmanager
def full_context_passes() -> Iterator[None]:
    """While active, :func:`text_run_length` returns the full context (no truncation).

    For benchmarks that time the untruncated passes: prompt encoders and template features built
    inside the block run at the full context for as long as they live (an encoder fixes its run
    length at construction). Not thread-safe; not for library use.
    """
    global _FULL_CONTEXT
    previous, _FULL_CONTEXT = _FULL_CONTEXT, True
    try:
        yield
    finally:
        _FULL_CONTEXT = previous


def text_run_length(tower: TextTower, token_ids: torch.Tensor) -> int:
    """Tokens the tower must run for ``token_ids [N, L]``: ``max(pooled position) + 1`` for a
    truncatable tower, else ``L``. Reads a value back from the device: call once for fixed ids."""
    full = int(token_ids.shape[1])
    if not tower.truncatable or token_ids.shape[0] == 0 or _FULL_CONTEXT:
        return full
    return min(full, int(pooled_positions(tower, token_ids).max()) + 1)


def _project(x: torch.Tensor, proj: torch.Tensor | nn.Linear | None) -> torch.Tensor:
    if proj is None:
        return x
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj


def encode_text_embeddings(tower: TextTower, embeddings: torch.Tensor, token_ids: torch.Tensor,
                           length: int | None = None) -> TextTowerRun:
    """Text features from token embeddings, run on only as many tokens as pooling needs.

    Equivalent to open_clip's ``encode_text`` with ``token_embedding(ids)`` replaced by
    ``embeddings``: add positional embeddings, causal transformer, ``ln_final``, pool, project.

    Args:
        tower: from :func:`resolve_text_tower`.
        embeddings: ``[N, L, W]`` token embeddings (e.g. ``[SOS] ctx... name . [EOS] pad``); ``L``
            may be the full context or already cut to ``length``.
        token_ids: ``[N, L_ids]`` token ids of the same texts (``L_ids >= length``); they locate the
            pooled (end-of-text) token, the placeholder ids of learned context are fine.
        length: tokens to run, from :func:`text_run_length` on the same ids (precompute it for fixed
            ids to avoid a device read-back every call); ``None`` computes it here. Towers that are
            not :attr:`TextTower.truncatable` always run (and need) the full context.
    Returns:
        :class:`TextTowerRun` with features ``[N, D]`` and the number of tokens run.
    """
    if embeddings.dim() != 3 or token_ids.dim() != 2 or embeddings.shape[0] != token_ids.shape[0]:
        raise ValueError(f"embeddings [N, L, W] and token ids [N, L] must match, got "
                         f"{tuple(embeddings.shape)} and {tuple(token_ids.shape)}")
    if not tower.truncatable:
        length = tower.context_length  # every token can reach the pooled output
    elif length is None:
        length = text_run_length(tower, token_ids)
    if not 1 <= length <= min(embeddings.shape[1], token_ids.shape[1], tower.context_length):
        raise ValueError(f"cannot run {length} tokens on embeddings {tuple(embeddings.shape)} with token ids "
                         f"{tuple(token_ids.shape)} (context length {tower.context_length})")
    cast = tower.transformer.get_cast_dtype()
    x = embeddings[:, :length].to(cast) + tower.positional_embedding[:length].to(cast)
    mask = tower.attn_mask[:length, :length] if tower.attn_mask is not None else None
    x = tower.transformer(x, attn_mask=mask)
    x = tower.ln_final(x)
    x = text_global_pool(x, token_ids[:, :length], tower.pool_type, eos_token_id=tower.eos_id)
    return TextTowerRun(_project(x, tower.text_projection), length)


def encode_text_tokens(model: nn.Module, token_ids: torch.Tensor) -> TextTowerRun:
    """Text features ``[N, D]`` (not normalised) of tokenised texts, truncated like
    :func:`encode_text_embeddings`; same values as ``model.encode_text(token_ids)``.

    Towers that cannot be run piecewise (Hugging Face, CoCa-style) go through ``model.encode_text``
    on the full context.
    """
    try:
        tower = resolve_text_tower(model)
    except TextTowerError:
        return TextTowerRun(model.encode_text(token_ids), int(token_ids.shape[1]))
    length = text_run_length(tower, token_ids)
    ids = token_ids[:, :length]
    return encode_text_embeddings(tower, tower.token_embedding(ids), ids, length)


__all__ = [
    "SUPPORTED_TEXT", "TextTower", "TextTowerError", "TextTowerRun", "resolve_text_tower", "pooled_positions",
    "text_run_length", "full_context_passes", "encode_text_embeddings", "encode_text_tokens",
]
