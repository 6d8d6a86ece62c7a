"""A dual-encoder retrieval model over a frozen open_clip CLIP, with pluggable PETL parts.

:class:`RetrievalModel` re-runs the frozen backbone's towers block by block (through
:func:`fedrs.retrieval.adapters.adapted_block`) so it can add, without touching the shared backbone:

* an adapter in every residual block of both towers (MRS-Adapter or plain bottleneck adapter);
* CoOp-style learnable text context tokens after ``[SOS]`` (``[SOS] ctx_1..ctx_M caption [EOS]``);
* VPT-deep learnable visual tokens after the class token, replaced at each of the first
  ``depth`` blocks and dropped before pooling;
* trainable copies of the projection heads (the "linear probe" of the PETL tables);
* the SimCSE-style augmented view of PE-RSITR: dropout on the input token embeddings (text) or
  after ``ln_pre`` (vision) when ``augment=True``.

The frozen backbone is *not* a registered submodule, so ``state_dict()``/``parameters()`` hold
only the trainable parts (what a federated client uploads) and ``model.train()`` never switches
the shared backbone's mode. Full fine-tuning (``finetune=True``) is the exception: it trains a
private deep copy registered as ``clip``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from fedrs.backbone.factory import Backbone
from fedrs.retrieval.adapters import AdapterError, adapted_block, count_parameters, tower_widths


class TextPrompt(nn.Module):
    """``n_ctx`` learnable context vectors inserted after ``[SOS]`` (CoOp, init N(0, 0.02^2))."""

    def __init__(self, n_ctx: int, width: int, std: float = 0.02):
        super().__init__()
        self.ctx = nn.Parameter(torch.randn(n_ctx, width) * std)

    @property
    def n_ctx(self) -> int:
        return int(self.ctx.shape[0])


class VisualPrompt(nn.Module):
    """VPT-deep: ``n_tokens`` learnable tokens for each of the first ``depth`` vision blocks."""

    def __init__(self, n_tokens: int, width: int, depth: int, std: float = 0.02):
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(depth, n_tokens, width) * std)

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def depth(self) -> int:
        return int(self.tokens.shape[0])


class ProjectionHeads(nn.Module):
    """Trainable copies of the image and text projection matrices, initialised from the backbone."""

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.visual = nn.Parameter(clip_model.visual.proj.detach().clone().float())
        self.text = nn.Parameter(clip_model.text_projection.detach().clone().float())


def _check_clip(clip_model: nn.Module) -> None:
    tower_widths(clip_model)
    if getattr(clip_model, "text_pool_type", "argmax") != "argmax" or clip_model.visual.proj is None:
        raise AdapterError(
            "retrieval models need an open_clip CLIP with argmax (EOT) text pooling and projection "
            "matrices (e.g. ViT-B-32, ViT-B-16, fedrs-rsclip-s)"
        )


class RetrievalModel(nn.Module):
    """Image and text encoders of ``backbone`` plus trainable parts.

    Args:
        backbone: the frozen, shared backbone (never modified).
        adapter: an adapter module (``forward(h, modality)``) applied in every block of both towers.
        text_prompt, visual_prompt: CoOp / VPT-deep parameters.
        heads: train copies of the projection matrices.
        finetune: train a private deep copy of the whole CLIP.
        text_dropout, vision_dropout: input dropout of the augmented view (PE-RSITR: 0.2).
    """

    def __init__(self, backbone: Backbone, *, adapter: nn.Module | None = None,
                 text_prompt: TextPrompt | None = None, visual_prompt: VisualPrompt | None = None,
                 heads: bool = False, finetune: bool = False,
                 text_dropout: float = 0.2, vision_dropout: float = 0.2):
        super().__init__()
        _check_clip(backbone.model)
        self.backbone_label = backbone.label
        self.tokenizer = backbone.tokenizer
        if finetune:
            self.clip = copy.deepcopy(backbone.model).float()
            self.clip.requires_grad_(True)
        else:
            object.__setattr__(self, "_frozen", backbone.model)  # not a submodule: see module doc
        self.adapter = adapter
        self.text_prompt = text_prompt
        self.visual_prompt = visual_prompt
        if visual_prompt is not None and visual_prompt.depth > len(self._clip.visual.transformer.resblocks):
            raise AdapterError(f"VPT depth {visual_prompt.depth} exceeds the "
                               f"{len(self._clip.visual.transformer.resblocks)} vision blocks")
        self.heads = ProjectionHeads(self._clip) if heads else None
        self.text_dropout = text_dropout
        self.vision_dropout = vision_dropout

    @property
    def _clip(self) -> nn.Module:
        return self.clip if "clip" in self._modules else self._frozen

    @property
    def device(self) -> torch.device:
        return self._clip.logit_scale.device

    def trainable_parameters(self) -> int:
        return count_parameters(self)

    def body_trains(self, modality: str) -> bool:
        """Whether a trainable tensor acts inside the ``modality`` tower's body (before the
        projection). If not, its pooled features are constants: no autograd through it, and
        training may compute them once (:func:`fedrs.retrieval.train.train_epochs`)."""
        prompt = self.visual_prompt if modality == "vision" else self.text_prompt
        return self.adapter is not None or prompt is not None or "clip" in self._modules

    def _body_grad(self, modality: str) -> torch.autograd.grad_mode.set_grad_enabled:
        return torch.set_grad_enabled(torch.is_grad_enabled() and self.body_trains(modality))

    def project(self, pooled: torch.Tensor, modality: str) -> torch.Tensor:
        """Pooled tower output -> joint embedding (the trainable heads of a linear probe, if any)."""
        clip = self._clip
        if modality == "vision":
            proj = self.heads.visual if self.heads is not None else clip.visual.proj
        else:
            proj = self.heads.text if self.heads is not None else clip.text_projection
        return proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj.to(pooled.dtype)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Name -> tensor of every trainable parameter (what training changes)."""
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    # --- text -------------------------------------------------------------------------------

    @property
    def text_context_length(self) -> int:
        """Caption tokens that fit next to the learnable context."""
        n_ctx = self.text_prompt.n_ctx if self.text_prompt is not None else 0
        return int(self._clip.context_length) - n_ctx

    def tokenize(self, captions: list[str]) -> torch.Tensor:
        """Token ids ``[N, context_length - n_ctx]`` (the context tokens are spliced in later)."""
        return self.tokenizer(list(captions), context_length=self.text_context_length)

    def encode_text(self, tokens: torch.Tensor, augment: bool = False) -> torch.Tensor:
        return self.project(self.text_body(tokens, augment), "text")

    def text_body(self, tokens: torch.Tensor, augment: bool = False) -> torch.Tensor:
        """Pooled ``[EOT]`` features ``[N, text width]`` before the projection."""
        clip = self._clip
        cast = clip.transformer.get_cast_dtype()
        eot = tokens.argmax(dim=-1)
        # causal attention: padding after the last [EOT] never reaches an [EOT] output, so dropping
        # it is exact (and saves most of the text tower on short captions)
        tokens = tokens[:, :int(eot.max()) + 1]
        with self._body_grad("text"):
            x = clip.token_embedding(tokens).to(cast)
            if augment and self.text_dropout > 0:
                x = F.dropout(x, self.text_dropout, training=True)
            if self.text_prompt is not None:
                ctx = self.text_prompt.ctx.to(cast).unsqueeze(0).expand(x.shape[0], -1, -1)
                x = torch.cat([x[:, :1], ctx, x[:, 1:]], dim=1)
                eot = eot + self.text_prompt.n_ctx
            length = x.shape[1]
            x = x + clip.positional_embedding[:length].to(cast)
            mask = clip.attn_mask[:length, :length] if clip.attn_mask is not None else None
            x = self._blocks(clip.transformer, x, mask, "text")
            x = clip.ln_final(x)
            return x[torch.arange(x.shape[0], device=x.device), eot]

    # --- images -----------------------------------------------------------------------------

    def encode_image(self, images: torch.Tensor, augment: bool = False) -> torch.Tensor:
        return self.project(self.image_body(images, augment), "vision")

    def image_body(self, images: torch.Tensor, augment: bool = False) -> torch.Tensor:
        """Pooled features ``[B, vision width]`` before the projection."""
        visual = self._clip.visual
        with self._body_grad("vision"):
            x = visual._embeds(images)  # conv, class token, positions, (patch dropout), ln_pre
            if augment and self.vision_dropout > 0:
                x = F.dropout(x, self.vision_dropout, training=True)
            x = self._blocks(visual.transformer, x, None, "vision", self.visual_prompt)
            return visual._pool(x)[0]

    # --- shared -----------------------------------------------------------------------------

    def _blocks(self, transformer: nn.Module, x: torch.Tensor, mask, modality: str,
                prompt: VisualPrompt | None = None) -> torch.Tensor:
        batch_first = getattr(transformer, "batch_first", True)
        n = prompt.n_tokens if prompt is not None else 0
        for i, block in enumerate(transformer.resblocks):
            if prompt is not None and i < prompt.depth:
                tokens = prompt.tokens[i].to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
                rest = x[:, 1 + n:] if i > 0 else x[:, 1:]
                x = torch.cat([x[:, :1], tokens, rest], dim=1)
            if not batch_first:
                x = x.transpose(0, 1)
            x = adapted_block(block, x, mask, self.adapter, modality)
            if not batch_first:
                x = x.transpose(0, 1)
        if n:
            x = torch.cat([x[:, :1], x[:, 1 + n:]], dim=1)
        return x

    def forward(self, images: torch.Tensor | None, tokens: torch.Tensor | None, augment: bool = False,
                image_body: torch.Tensor | None = None,
                text_body: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised image and text embeddings; ``*_body``: precomputed frozen body outputs."""
        image = self.project(image_body, "vision") if image_body is not None else self.encode_image(images, augment)
        text = self.project(text_body, "text") if text_body is not None else self.encode_text(tokens, augment)
        return F.normalize(image, dim=-1), F.normalize(text, dim=-1)


__all__ = ["RetrievalModel", "TextPrompt", "VisualPrompt", "ProjectionHeads"]
