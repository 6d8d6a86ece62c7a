"""The PETL variants of the comparison harness, each a :class:`RetrievalModel` plus its loss.

==================  =====================================================  ViT-B-32 params
``zero-shot``       the frozen backbone                                     0
``linear-probe``    trainable image and text projection matrices            655,360
``coop``            CoOp-style text context tokens after ``[SOS]``          16 x 512
``vpt``             VPT-deep visual tokens (8 per block, all blocks)        12 x 8 x 768
``adapter``         plain bottleneck adapter (per modality, all blocks)     165,248
``mrs-adapter``     MRS-Adapter, trained with the cross-modal term only     161,088
``mrs-adapter-hmmc``MRS-Adapter with the HMMC loss (PE-RSITR)               161,088
``full-finetune``   a private trainable copy of the whole CLIP              ~151M
==================  =====================================================  ===============
"""

from __future__ import annotations

import torch

from fedrs.backbone.factory import Backbone
from fedrs.losses.retrieval import HMMCLoss
from fedrs.retrieval.adapters import BottleneckAdapter, MRSAdapter, tower_widths
from fedrs.retrieval.config import VARIANTS, RetrievalConfig
from fedrs.retrieval.model import RetrievalModel, TextPrompt, VisualPrompt


def build_variant(backbone: Backbone, cfg: RetrievalConfig | None = None,
                  variant: str | None = None, seed: int | None = None) -> tuple[RetrievalModel, HMMCLoss]:
    """The model (trainable parts only) and loss of ``variant`` (default ``cfg.variant``)."""
    cfg = cfg or RetrievalConfig()
    variant = variant or cfg.variant
    if variant not in VARIANTS:
        raise ValueError(f"unknown retrieval variant {variant!r}; choose one of {list(VARIANTS)}")
    torch.manual_seed(cfg.train.seed if seed is None else seed)
    widths = tower_widths(backbone.model)
    a, p, lc = cfg.adapter, cfg.prompts, cfg.loss
    parts: dict = {}
    if variant in ("mrs-adapter", "mrs-adapter-hmmc"):
        parts["adapter"] = MRSAdapter(widths, a.bottleneck, a.shared_dim, a.dropout)
    elif variant == "adapter":
        parts["adapter"] = BottleneckAdapter(widths, a.bottleneck, a.dropout)
    elif variant == "coop":
        parts["text_prompt"] = TextPrompt(p.text_tokens, widths["text"])
    elif variant == "vpt":
        depth = p.visual_depth or len(backbone.model.visual.transformer.resblocks)
        parts["visual_prompt"] = VisualPrompt(p.visual_tokens, widths["vision"], depth)
    elif variant == "linear-probe":
        parts["heads"] = True
    elif variant == "full-finetune":
        parts["finetune"] = True
    model = RetrievalModel(backbone, text_dropout=lc.text_dropout, vision_dropout=lc.vision_dropout,
                           **parts).to(backbone.device)
    hmmc = variant == "mrs-adapter-hmmc"
    # the other variants train with the cross-modal term alone; every other choice is the config's
    loss = HMMCLoss.from_config(lc, **({} if hmmc else {"lambda_v": 0.0, "lambda_t": 0.0}))
    return model, loss


__all__ = ["build_variant", "VARIANTS"]
