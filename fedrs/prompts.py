"""Prompt learning on a frozen open_clip CLIP: text contexts, visual tokens, and the prompt modules.

The pieces (every method's trainable module is built from them):

* :class:`TextPromptEncoder` -- CoOp-style prompts in token-embedding space. For every class it
  keeps the token embeddings of ``[SOS]`` (prefix) and of ``<class name> . [EOS] <pad>`` (suffix)
  as *derived, non-persistent buffers*: they are never trained, never saved in a state dict and
  never uploaded. ``encoder(ctx)`` splices learnable context vectors ``ctx [M, W]`` (or a stack
  ``[S, M, W]``, or class-specific ``[S, C, M, W]``) between them and runs the frozen text
  transformer, giving class text features ``[S, C, D]`` (one pass for all prompt sets), on only
  as many tokens as the longest class prompt needs (exact truncation,
  :mod:`fedrs.backbone.text_tower`).
* :class:`VisualPromptEncoder` -- runs the pieces of open_clip's ``VisionTransformer`` itself
  (conv1, class token, positional embedding, patch dropout, ln_pre, transformer, pooling,
  ln_post, proj) with learnable tokens inserted after the class token once the positional
  embedding is added (shallow VPT), optionally re-inserted before each of the first ``depth``
  blocks (deep VPT). The prompt tokens are dropped again before pooling. With no prompt tokens it
  reproduces ``model.encode_image`` exactly.
* :class:`TextPromptModule` -- the base of every prompt module: the frozen CLIP (referenced, not
  registered), a :class:`TextPromptEncoder` over the class names, seeded initialisation of the
  learnable tensors (:meth:`~TextPromptModule.context`, :meth:`~TextPromptModule.matrix`, drawn
  from one generator in creation order), the backbone's logit scale and CLIP logits from
  normalised features. The text-prompt baselines (PromptFL, local-only, FedPGP, FedOTP) assign
  their named contexts on it; FedRSCLIP's module derives from it.
* :class:`DualPromptModel` -- FedRSCLIP's trainable module: shared and private text contexts
  (``text_shared``, ``text_private``) and shared and private visual tokens (``visual_shared``,
  ``visual_private``). Its parameters are *only* these tensors; the backbone is referenced, not
  registered, so ``state_dict()`` and ``parameters()`` never contain a backbone weight.

Class text features from hand-written templates (no learnable context) are
:func:`fedrs.backbone.templates.template_text_features`.

Supported backbones: open_clip ``CLIP`` (and ``CustomTextCLIP`` whose ``text`` is open_clip's own
``TextTransformer``) with the CLIP BPE tokenizer; visual prompts additionally need a
``VisionTransformer`` image tower. Anything else (ModifiedResNet, timm or Hugging Face towers)
raises :class:`PromptError` naming what is supported.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager, Sequence

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from torch import nn

from fedrs.backbone.templates import DEFAULT_INIT_PHRASE
from fedrs.backbone.text_tower import (
    SUPPORTED_TEXT,
    TextTowerError,
    encode_text_embeddings,
    resolve_text_tower,
    text_run_length,
)
from fedrs.errors import FedrsError

#: one token in CLIP's BPE vocabulary; stands in for each context vector while tokenising
PLACEHOLDER = "X"
SUPPORTED_VISION = "open_clip VisionTransformer (ViT-*) image towers"
#: how a text context is initialised: N(0, init_std^2) (CoOp) or the embeddings of a phrase
TEXT_INITS = ("random", "phrase")
#: precision the frozen towers run in (``train.precision``); prompts, losses and optimiser stay fp32
TOWER_DTYPES = {"fp32": None, "bf16": torch.bfloat16}


class PromptError(FedrsError):
    """A backbone or prompt setting that prompt learning cannot work with."""


def tower_autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    """Autocast to ``dtype`` on ``device`` for a frozen-tower pass; no context at all for fp32
    (``None``), so fp32 runs execute exactly the operations they did without one."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_tower_precision(module: nn.Module, precision: str) -> None:
    """Run every frozen-tower pass of ``module`` (its text and visual prompt encoders and the
    frozen image encoder of a :class:`TextPromptModule`, wherever they sit in it) in ``precision``:
    ``fp32``, or ``bf16`` (autocast; features come back as fp32, so the prompts, logits, losses
    and optimiser stay fp32). Modules without such passes (a zero-shot classifier) are unchanged."""
    if precision not in TOWER_DTYPES:
        raise PromptError(f"precision must be one of {list(TOWER_DTYPES)}, got {precision!r}")
    for sub in module.modules():
        if isinstance(sub, (TextPromptEncoder, VisualPromptEncoder, TextPromptModule)):
            sub.autocast_dtype = TOWER_DTYPES[precision]


class TextPromptEncoder(nn.Module):
    """Class text features from learnable context vectors: ``[SOS] ctx_1..ctx_M <name> . [EOS]``.

    The text tower runs through :func:`fedrs.backbone.text_tower.encode_text_embeddings` on
    ``run_length`` tokens: up to the last end-of-text token of the class prompts, fixed once at
    construction (the tokens after it cannot reach a causal tower's pooled output; a tower where
    they can keeps the full context). The derived buffers ``token_ids [C, run_length]``, ``prefix
    [C, 1, W]`` (``[SOS]``) and ``suffix [C, run_length - 1 - M, W]`` (name, ``.``, ``[EOS]``, the
    padding of shorter names) are cut to it, on the tower's device, and never saved.

    Args:
        model: the frozen open_clip CLIP (referenced, never registered as a submodule).
        tokenizer: its tokenizer (``list[str] -> [N, L]``).
        classnames: readable class names, in label order.
        n_ctx: number of context vectors M.
    """

    def __init__(self, model: nn.Module, tokenizer, classnames: Sequence[str], n_ctx: int):
        super().__init__()
        if n_ctx < 1:
            raise PromptError(f"prompt length must be >= 1, got {n_ctx}")
        if not classnames:
            raise PromptError("text prompts need at least one class name")
        try:
            text = resolve_text_tower(model)
        except TextTowerError as exc:
            raise PromptError(str(exc)) from exc
        object.__setattr__(self, "_text", text)  # not a submodule: stays out of state_dict
        self.autocast_dtype: torch.dtype | None = None  # set_tower_precision
        self.n_ctx = n_ctx
        self.width = text.width
        placeholder = " ".join([PLACEHOLDER] * n_ctx)
        ids = tokenizer([f"{placeholder} {name}." for name in classnames]).long()
        ctx_len = ids.shape[1]
        bare = tokenizer([placeholder]).long()[0]
        if not (bare[1:1 + n_ctx] == bare[1]).all() or bare[1 + n_ctx] == bare[1]:
            raise PromptError(f"the tokenizer does not map {PLACEHOLDER!r} to one token each; "
                              f"supported: {SUPPORTED_TEXT}")
        lengths = (ids != 0).sum(dim=1)
        too_long = [n for n, k in zip(classnames, lengths.tolist()) if k >= ctx_len]
        if too_long:
            raise PromptError(f"prompt length {n_ctx} + class name tokens exceed the text context length "
                              f"{ctx_len} for {too_long[:3]}: use fewer context tokens or shorter class names")
        #: tokens every pass runs: up to the last end-of-text token of the class prompts (the full
        #: context for a tower where later tokens reach the output); fixed here, once, on the host
        self.run_length = text_run_length(text, ids)
        device = text.token_embedding.weight.device
        ids = ids[:, :self.run_length].to(device)
        with torch.no_grad():
            emb = text.token_embedding(ids).float()
        self.register_buffer("token_ids", ids, persistent=False)
        self.register_buffer("prefix", emb[:, :1].clone(), persistent=False)
        self.register_buffer("suffix", emb[:, 1 + n_ctx:].clone(), persistent=False)

    @property
    def num_classes(self) -> int:
        return int(self.prefix.shape[0])

    def phrase_init(self, tokenizer, phrase: str) -> torch.Tensor:
        """Token embeddings ``[M, W]`` of a phrase with exactly M tokens (CoOp's phrase init)."""
        ids = tokenizer([phrase]).long()[0]
        n = int((ids != 0).sum()) - 2
        if n != self.n_ctx:
            raise PromptError(f"init phrase {phrase!r} has {n} tokens but the prompt length is {self.n_ctx}: "
                              f"set the prompt length to {n} or choose a phrase with {self.n_ctx} tokens")
        with torch.no_grad():
            return self._text.token_embedding(ids[1:1 + n].to(self.prefix.device)).float().clone()

    def forward(self, ctx: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Class text features for one or several prompt sets.

        Args:
            ctx: ``[M, W]`` (one set), ``[S, M, W]`` (S sets shared by all classes) or
                ``[S, C, M, W]`` (class-specific contexts).
        Returns:
            ``[C, D]`` for a single ``[M, W]`` input, otherwise ``[S, C, D]``; L2-normalised unless
            ``normalize=False``.
        """
        single = ctx.dim() == 2
        if single:
            ctx = ctx.unsqueeze(0)
        num_sets, num_classes = ctx.shape[0], self.num_classes
        if ctx.dim() == 3:
            ctx = ctx.unsqueeze(1).expand(num_sets, num_classes, *ctx.shape[1:])
        if ctx.shape[1:] != (num_classes, self.n_ctx, self.width):
            raise PromptError(f"context tensor of shape {tuple(ctx.shape)} does not fit "
                              f"{num_classes} classes x {self.n_ctx} tokens x width {self.width}")
        prefix = self.prefix.unsqueeze(0).expand(num_sets, -1, -1, -1)
        suffix = self.suffix.unsqueeze(0).expand(num_sets, -1, -1, -1)
        x = torch.cat([prefix, ctx.to(prefix.dtype), suffix], dim=2).flatten(0, 1)  # [S*C, run_length, W]
        ids = self.token_ids.repeat(num_sets, 1)
        with tower_autocast(x.device, self.autocast_dtype):
            x = encode_text_embeddings(self._text, x, ids, length=self.run_length).features
        x = x.float()
        if normalize:
            x = F.normalize(x, dim=-1)
        x = x.reshape(num_sets, num_classes, -1)
        return x[0] if single else x


class VisualPromptEncoder(nn.Module):
    """Image features of a frozen ViT with learnable tokens after the class token.

    ``forward(images [B,3,H,W], prompts [depth, P, W] or None) -> [B, D]``: the prompts of layer 0
    are inserted after the positional embedding (before ``ln_pre``); for ``depth > 1`` the
    prompt tokens entering block ``i < depth`` are replaced by ``prompts[i]`` (deep VPT).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        visual = getattr(model, "visual", None)
        if not isinstance(visual, VisionTransformer):
            raise PromptError(f"visual prompts cannot be inserted into a {type(visual).__name__} image tower; "
                              f"supported: {SUPPORTED_VISION}; or switch visual prompts off (text prompts "
                              f"work with any open_clip CLIP)")
        object.__setattr__(self, "_visual", visual)
        self.autocast_dtype: torch.dtype | None = None  # set_tower_precision
        self.width = int(visual.conv1.out_channels)
        self.depth_limit = len(visual.transformer.resblocks)

    def forward(self, images: torch.Tensor, prompts: torch.Tensor | None = None, normalize: bool = True,
                return_tokens: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Pooled image features ``[B, D]``; with ``return_tokens`` also the patch tokens projected
        into the same space ``[B, L, D]`` (prompt tokens excluded), e.g. for optimal-transport
        matching."""
        with tower_autocast(images.device, self.autocast_dtype):
            pooled, tokens = self._encode(images, prompts, return_tokens)
        pooled = pooled.float()
        pooled = F.normalize(pooled, dim=-1) if normalize else pooled
        if not return_tokens:
            return pooled
        tokens = tokens.float()
        return pooled, F.normalize(tokens, dim=-1) if normalize else tokens

    def _encode(self, images: torch.Tensor, prompts: torch.Tensor | None,
                return_tokens: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(pooled ``[B, D]``, projected patch tokens ``[B, L, D]`` or ``None`` unless
        ``return_tokens``) in the tower's dtype."""
        v = self._visual
        cast = v.conv1.weight.dtype
        x = v.conv1(images.to(cast))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype).reshape(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        x = v.patch_dropout(x)
        n_prompt = 0 if prompts is None else prompts.shape[1]
        if n_prompt:
            if prompts.dim() != 3 or prompts.shape[-1] != self.width or prompts.shape[0] > self.depth_limit:
                raise PromptError(f"visual prompts of shape {tuple(prompts.shape)} do not fit "
                                  f"[depth <= {self.depth_limit}, tokens, {self.width}]")
            x = self._insert(x, prompts[0], replace=False)
        x = v.ln_pre(x)
        if n_prompt and prompts.shape[0] > 1:
            x = self._deep(x, prompts)
        else:
            x = v.transformer(x)
        if n_prompt:
            x = torch.cat([x[:, :1], x[:, 1 + n_prompt:]], dim=1)
        pooled, tokens = v._pool(x)
        if v.proj is not None:
            pooled = pooled @ v.proj
            tokens = tokens @ v.proj if return_tokens else None
        return pooled, tokens if return_tokens else None

    @staticmethod
    def _insert(x: torch.Tensor, tokens: torch.Tensor, replace: bool) -> torch.Tensor:
        tokens = tokens.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
        rest = x[:, 1 + tokens.shape[1]:] if replace else x[:, 1:]
        return torch.cat([x[:, :1], tokens, rest], dim=1)

    def _deep(self, x: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        transformer = self._visual.transformer
        batch_first = getattr(transformer, "batch_first", True)
        for i, block in enumerate(transformer.resblocks):
            if 0 < i < prompts.shape[0]:
                x = self._insert(x, prompts[i], replace=True)
            x = block(x if batch_first else x.transpose(0, 1))
            x = x if batch_first else x.transpose(0, 1)
        return x


class TextPromptModule(nn.Module):
    """Base of every prompt module: a frozen CLIP (referenced, never registered), the text prompt
    encoder ``text`` over the class names, seeded initialisation, and CLIP logits.

    A subclass (or a method, on an instance) creates its learnable tensors with :meth:`context` and
    :meth:`matrix` and assigns them as attributes, so the parameter names are the names a method
    declares and uploads. Every random value comes from one generator seeded with ``seed``, drawn
    in the order the tensors are created (the order is part of the seeded result).

    Args:
        backbone: the frozen backbone (``.model`` an open_clip CLIP, ``.tokenizer``).
        classnames: readable class names, in label order.
        n_ctx: context vectors M per text prompt.
        init: ``"random"`` (N(0, ``init_std``^2), CoOp) or ``"phrase"`` (the token embeddings of
            ``init_phrase``, which must have exactly M tokens).
        init_std: standard deviation of every random initialisation (contexts and visual tokens).
        seed: seed of the initialisation generator.
    """

    def __init__(self, backbone, classnames: Sequence[str], n_ctx: int, *, init: str = "random",
                 init_phrase: str = DEFAULT_INIT_PHRASE, init_std: float = 0.02, seed: int = 0):
        super().__init__()
        object.__setattr__(self, "_backbone", backbone)  # not a submodule: stays out of state_dict
        self.text = TextPromptEncoder(backbone.model, backbone.tokenizer, classnames, n_ctx)
        self.autocast_dtype: torch.dtype | None = None  # set_tower_precision (frozen image encoder)
        # the frozen backbone's temperature, exponentiated once instead of on every logits call
        self.register_buffer("clip_scale", backbone.model.logit_scale.detach().exp(), persistent=False)
        if init not in TEXT_INITS:
            raise PromptError(f"text prompt init must be 'random' or 'phrase', got {init!r}")
        self.init, self.init_phrase, self.init_std = init, init_phrase, init_std
        self._gen = torch.Generator().manual_seed(seed)

    @property
    def _model(self) -> nn.Module:
        return self._backbone.model

    def matrix(self, *shape: int) -> nn.Parameter:
        """A parameter of ``shape`` drawn from N(0, init_std^2) by the module's seeded generator."""
        value = torch.randn(*shape, generator=self._gen) * self.init_std
        return nn.Parameter(value.to(self.text.prefix.device))

    def context(self) -> nn.Parameter:
        """A ``[M, W]`` text context: random (a draw of :meth:`matrix`) or the embeddings of
        ``init_phrase`` (no draw)."""
        if self.init == "phrase":
            return nn.Parameter(self.text.phrase_init(self._backbone.tokenizer, self.init_phrase))
        return self.matrix(self.text.n_ctx, self.text.width)

    @property
    def logit_scale(self) -> torch.Tensor:
        """The backbone's own temperature ``logit_scale.exp()`` (frozen, a scalar tensor, computed
        once at construction)."""
        return self.clip_scale

    def image_features(self, images: torch.Tensor | None = None,
                       features: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised frozen image features ``[B, D]``: the cached ``features`` when given, else
        the frozen image encoder on ``images``."""
        if features is not None:
            return F.normalize(features.float(), dim=-1)
        if images is None:
            raise PromptError("image features need the cached features or the images")
        with tower_autocast(images.device, self.autocast_dtype):
            features = self._model.encode_image(images)
        return F.normalize(features.float(), dim=-1)

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """``logit_scale.exp() * v @ t.T``: ``[B, C]`` for ``t [C, D]``, ``[S, B, C]`` for ``t [S, C, D]``
        (both L2-normalised)."""
        return self.logit_scale * image_features @ text_features.transpose(-1, -2)


class DualPromptModel(TextPromptModule):
    """FedRSCLIP's prompts on a frozen CLIP: shared + private text contexts and visual tokens.

    Parameters (the only tensors that require grad; names are what methods declare and upload):

    ==================  ====================  ===========================================
    ``text_shared``     ``[M, W_text]``       P_s, shared text context
    ``text_private``    ``[M, W_text]``       P_p, private text context (if ``private``)
    ``visual_shared``   ``[depth, V, W_vis]`` V_s (if ``visual_tokens > 0``)
    ``visual_private``  ``[depth, V, W_vis]`` V_p (if ``visual_tokens > 0`` and ``private``)
    ==================  ====================  ===========================================

    Created (and drawn from the seeded generator) in this order. Features: ``t_s = g(P_s)``,
    ``t_p = g(P_p)``, ``t = normalize(t_s + t_p)`` (each ``[C, D]``, L2-normalised);
    ``v = f(x; V_s, V_p)`` ``[B, D]`` L2-normalised; logits ``logit_scale.exp() * v @ t.T`` with
    the backbone's own temperature.
    """

    def __init__(self, backbone, classnames: Sequence[str], *, n_ctx: int = 4, private: bool = True,
                 visual_tokens: int = 2, visual_depth: int = 1, init: str = "random",
                 init_phrase: str = DEFAULT_INIT_PHRASE, init_std: float = 0.02, seed: int = 0):
        super().__init__(backbone, classnames, n_ctx, init=init, init_phrase=init_phrase, init_std=init_std,
                         seed=seed)
        self.visual = VisualPromptEncoder(backbone.model) if visual_tokens > 0 else None
        if self.visual is not None and not 1 <= visual_depth <= self.visual.depth_limit:
            raise PromptError(f"visual prompt depth must be in 1..{self.visual.depth_limit} for this backbone, "
                              f"got {visual_depth}")
        self.private = private
        visual_shape = (visual_depth, visual_tokens, self.visual.width) if self.visual is not None else None
        self.text_shared = self.context()
        self.text_private = self.context() if private else None
        self.visual_shared = self.matrix(*visual_shape) if self.visual is not None else None
        self.visual_private = self.matrix(*visual_shape) if self.visual is not None and private else None

    def text_features(self, private: bool = True) -> dict[str, torch.Tensor]:
        """``{"shared", "private", "combined"}`` class features ``[C, D]`` in one encoder pass.

        Without private prompts (or ``private=False``) ``private`` is ``None`` and ``combined`` is
        ``t_s``.
        """
        if private and self.text_private is not None:
            t_s, t_p = self.text(torch.stack([self.text_shared, self.text_private]))
            return {"shared": t_s, "private": t_p, "combined": F.normalize(t_s + t_p, dim=-1)}
        t_s = self.text(self.text_shared)
        return {"shared": t_s, "private": None, "combined": t_s}

    def visual_prompt_tokens(self, shared: bool = True, private: bool = True) -> torch.Tensor | None:
        parts = [p for p, on in ((self.visual_shared, shared), (self.visual_private, private)) if on and p is not None]
        return torch.cat(parts, dim=1) if parts else None

    def image_features(self, images: torch.Tensor | None = None, features: torch.Tensor | None = None,
                       shared: bool = True, private: bool = True) -> torch.Tensor:
        """L2-normalised image features ``[B, D]``.

        With visual prompts selected (``shared``/``private``) the images are encoded through the
        prompted ViT; otherwise the frozen cached ``features`` are used when given (no encoder pass).
        """
        tokens = self.visual_prompt_tokens(shared, private) if self.visual is not None else None
        if tokens is None and features is not None:
            return super().image_features(features=features)
        if images is None:
            raise PromptError("prompted image features need the images (visual prompts are on)")
        if self.visual is None:
            return super().image_features(images)
        return self.visual(images, tokens)


__all__ = [
    "PromptError", "TextPromptEncoder", "VisualPromptEncoder", "TextPromptModule", "DualPromptModel",
    "PLACEHOLDER", "TEXT_INITS", "TOWER_DTYPES", "tower_autocast", "set_tower_precision",
]
