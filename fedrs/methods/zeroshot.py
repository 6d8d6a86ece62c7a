"""Zero-shot CLIP: no training, class features from a hand-written template (or an ensemble).

Class features are :func:`fedrs.backbone.templates.template_text_features` (its ensemble form,
as ``fedrs zeroshot`` computes them) over the readable class names: the single template
:data:`~fedrs.backbone.templates.DEFAULT_TEMPLATE` (FedRSCLIP's zero-shot baseline) or, with
``ensemble: true``, the mean of the normalised features of ``ensemble_templates`` (default the
remote-sensing ensemble :data:`~fedrs.backbone.templates.RS_TEMPLATES`). Scores are
``logit_scale * v @ t.T`` on the cached frozen image features. Nothing is trainable and nothing is
uploaded; the engine evaluates it on each client's test split (personalised, which here is the
same model for every client) and on the pooled test set (global), and skips local training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from fedrs.backbone.templates import DEFAULT_TEMPLATE, RS_TEMPLATES, template_text_features
from fedrs.methods.base import Batch, Method, MethodConfig


@dataclass
class ZeroShotConfig(MethodConfig):
    """Zero-shot's ``method:`` section."""

    name: str = "zeroshot"
    template: str = DEFAULT_TEMPLATE
    ensemble: bool = False
    ensemble_templates: list[str] = field(default_factory=lambda: list(RS_TEMPLATES))

    def __post_init__(self) -> None:
        bad = [t for t in [self.template, *self.ensemble_templates] if "{}" not in t]
        if bad:
            raise ValueError(f"method: templates must contain '{{}}' for the class name, got {bad}")
        if self.ensemble and not self.ensemble_templates:
            raise ValueError("method.ensemble_templates is empty but method.ensemble is true")

    @property
    def templates(self) -> list[str]:
        return list(self.ensemble_templates) if self.ensemble else [self.template]


class ZeroShot(Method):
    """The frozen backbone with fixed class features; ``trains = False``."""

    name = "zeroshot"
    config_class = ZeroShotConfig
    trains = False
    cfg: ZeroShotConfig

    def build_module(self) -> nn.Module:
        module = nn.Module()
        # [D, C], one column per class (the layout of fedrs zeroshot's classifier: the operand
        # layout of the logits' matrix product is part of the float operation order)
        weights = template_text_features(self.backbone, self.classnames, self.cfg.templates).t().contiguous()
        module.register_buffer("classifier", weights.to(self.device), persistent=False)
        return module

    def declare_uploads(self) -> list[str]:
        return []

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError("zero-shot CLIP has nothing to train")

    def logits(self, batch: Batch, personalised: bool = True) -> torch.Tensor:
        scale = self.backbone.model.logit_scale.exp().detach()
        return scale * F.normalize(batch.features.float(), dim=-1) @ self.module.classifier


__all__ = ["ZeroShotConfig", "ZeroShot"]
