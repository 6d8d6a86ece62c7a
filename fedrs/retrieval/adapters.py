"""Adapters for frozen open_clip towers: the MRS-Adapter of PE-RSITR and a plain bottleneck adapter.

Both are *one module instance reused in every residual block of both towers*. They sit parallel
to each block's MLP and read the post-attention residual stream ``h = x + attn(ln_1(x))``::

    block(x) = h + mlp(ln_2(h)) + adapter(h, modality)

MRS-Adapter (Yuan et al., TGRS 2023), re-implemented from the paper's description:

* a modality-specific down-projection ``width_m -> bottleneck`` (64), ReLU, dropout (0.5);
* the output is the concatenation of a modality-specific up-projection
  ``bottleneck -> width_m - shared_dim`` and a **cross-modal shared** up-projection
  ``bottleneck -> shared_dim`` (64), so the last ``shared_dim`` output channels are produced by
  weights shared by both modalities;
* down-projections Kaiming-uniform (a = sqrt(5)), all up-projections and all biases zero, so the
  adapted model equals the frozen one before training; computed in float32, cast back.

On ViT-B-32 (vision width 768, text width 512) that is exactly 161,088 trainable parameters.
The plain bottleneck adapter (:class:`BottleneckAdapter`) is the same module without the shared
part (``shared_dim = 0``): a per-modality down/up pair, 165,248 parameters on ViT-B-32.

Injection never touches the frozen backbone: :class:`fedrs.retrieval.model.RetrievalModel` runs
the backbone's own blocks through :func:`adapted_block` (see there), so the cached backbone that
other methods share in the process stays exactly as created.

Parameter names are stable and federated code addresses them by prefix: ``down.<modality>``,
``up.<modality>``, ``up_shared`` (e.g. keep ``up.vision`` private on each client).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from fedrs.errors import FedrsError

MODALITIES = ("vision", "text")


class AdapterError(FedrsError):
    """An adapter that does not fit the backbone it is given."""


def tower_widths(clip_model: nn.Module) -> dict[str, int]:
    """Residual-stream widths ``{"vision": ..., "text": ...}`` of an open_clip ViT CLIP."""
    try:
        vision = int(clip_model.visual.transformer.width)
        text = int(clip_model.transformer.width)
    except AttributeError as exc:
        raise AdapterError(
            f"{type(clip_model).__name__} is not an open_clip ViT CLIP (no visual.transformer / "
            f"transformer): adapters need a ViT image tower and the standard text tower"
        ) from exc
    return {"vision": vision, "text": text}


class MRSAdapter(nn.Module):
    """Multimodal remote-sensing adapter: one instance for all blocks of both towers.

    Args:
        widths: residual width per modality, ``{"vision": 768, "text": 512}``
            (:func:`tower_widths`).
        bottleneck: the shared bottleneck size (64 in the paper).
        shared_dim: output channels produced by the cross-modal shared up-projection (64 in the
            paper); 0 gives a plain per-modality bottleneck adapter.
        dropout: dropout on the bottleneck activations (0.5 in the paper).
    """

    def __init__(self, widths: Mapping[str, int], bottleneck: int = 64, shared_dim: int = 64,
                 dropout: float = 0.5):
        super().__init__()
        if bottleneck < 1 or shared_dim < 0 or not 0.0 <= dropout < 1.0:
            raise AdapterError(f"adapter sizes must satisfy bottleneck >= 1, shared_dim >= 0 and "
                               f"0 <= dropout < 1; got {bottleneck}, {shared_dim}, {dropout}")
        for m, w in widths.items():
            if w <= shared_dim:
                raise AdapterError(
                    f"{m} width {w} is not larger than shared_dim {shared_dim}: choose a smaller "
                    f"adapter shared_dim (and bottleneck) for this backbone"
                )
        self.widths = dict(widths)
        self.bottleneck = bottleneck
        self.shared_dim = shared_dim
        self.down = nn.ModuleDict({m: nn.Linear(w, bottleneck) for m, w in self.widths.items()})
        self.up = nn.ModuleDict({m: nn.Linear(bottleneck, w - shared_dim)
                                 for m, w in self.widths.items()})
        self.up_shared = nn.Linear(bottleneck, shared_dim) if shared_dim else None
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform downs (a = sqrt(5)), zero ups and biases: the identity of the backbone."""
        for lin in self.down.values():
            nn.init.kaiming_uniform_(lin.weight, a=math.sqrt(5))
            nn.init.zeros_(lin.bias)
        for lin in [*self.up.values(), *([self.up_shared] if self.up_shared is not None else [])]:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, h: torch.Tensor, modality: str) -> torch.Tensor:
        if modality not in self.down:
            raise AdapterError(f"unknown modality {modality!r}: this adapter has {list(self.down)}")
        z = self.dropout(F.relu(self.down[modality](h.float())))
        out = self.up[modality](z)
        if self.up_shared is not None:
            out = torch.cat([out, self.up_shared(z)], dim=-1)
        return out.to(h.dtype)

    def extra_repr(self) -> str:
        return f"widths={self.widths}, bottleneck={self.bottleneck}, shared_dim={self.shared_dim}"


class BottleneckAdapter(MRSAdapter):
    """Plain bottleneck adapter: per-modality down/up pairs, nothing shared across modalities."""

    def __init__(self, widths: Mapping[str, int], bottleneck: int = 64, dropout: float = 0.5):
        super().__init__(widths, bottleneck=bottleneck, shared_dim=0, dropout=dropout)


def adapted_block(block: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None,
                  adapter: nn.Module | None, modality: str) -> torch.Tensor:
    """One open_clip ``ResidualAttentionBlock`` with a parallel adapter, without modifying it.

    Computes ``h = x + ls_1(attn(ln_1(x)))`` and ``h + ls_2(mlp(ln_2(h))) + adapter(h)`` from the
    block's own (frozen) submodules, which is exactly ``block(x)`` when ``adapter`` is None.
    """
    if not hasattr(block, "ln_2") or not hasattr(block, "attention"):
        raise AdapterError(
            f"{type(block).__name__} is not an open_clip ResidualAttentionBlock: adapters support the "
            f"standard ViT/text blocks only"
        )
    h = x + block.ls_1(block.attention(q_x=block.ln_1(x), attn_mask=attn_mask))
    out = h + block.ls_2(block.mlp(block.ln_2(h)))
    if adapter is not None:
        out = out + adapter(h, modality)
    return out


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "MODALITIES", "AdapterError", "MRSAdapter", "BottleneckAdapter", "tower_widths",
    "adapted_block", "count_parameters",
]
