"""FedPGP-style: a global prompt ``sigma`` plus a private low-rank ``U V``, with prompt-wise
contrastive regularisation (re-implemented from the description of Cui et al., ICML 2024).

Client k's prompt is ``P_k = sigma + U_k @ V_k`` (``sigma [M, W]``, ``U [M, r]``, ``V [r, W]``,
rank ``r`` = 8). Only ``sigma`` is uploaded and averaged; ``U`` and ``V`` never leave the client.
Objective on a batch::

    L = CE(logit_scale * v @ t_k.T, y) + weight * L_con

where ``t_k = g(P_k)`` (personalised), ``t_g = g(sigma)`` (global) and ``L_con`` is the
prompt-wise InfoNCE at ``temperature`` that, per class, pulls ``t_k`` towards ``t_g`` and pushes
it away from the hand-written prompt's features (``plain_template``); it is the ``contrastive``
kind of :func:`~fedrs.losses.classification.dual_prompt_alignment_loss`. Global accuracy uses
``sigma`` alone. FedPGP's published defaults: rank 8, temperature 0.5, weight 0.5 (its 25
rounds, 2 local epochs and 16 tokens are study settings here, shared with every method).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import torch

from fedrs.backbone.templates import DEFAULT_TEMPLATE, template_text_features
from fedrs.losses.classification import dual_prompt_alignment_loss
from fedrs.methods.text_prompt import TextPromptConfig, TextPromptMethod
from fedrs.prompts import TextPromptModule


@dataclass
class FedPGPConfig(TextPromptConfig):
    """FedPGP's ``method:`` section: the prompt keys plus its own (published defaults)."""

    name: str = "fedpgp"
    rank: int = 8                                     # r of the private U [M, r] V [r, W]
    contrastive_weight: float = 0.5
    temperature: float = 0.5
    plain_template: str = DEFAULT_TEMPLATE             # negatives of the contrastive term

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rank < 1:
            raise ValueError(f"method.rank must be >= 1, got {self.rank}")
        if self.contrastive_weight < 0 or self.temperature <= 0:
            raise ValueError(f"method.contrastive_weight must be >= 0 and method.temperature > 0, got "
                             f"{self.contrastive_weight}, {self.temperature}")
        if "{}" not in self.plain_template:
            raise ValueError(f"method.plain_template must contain '{{}}', got {self.plain_template!r}")


class FedPGP(TextPromptMethod):
    """Global ``sigma`` (uploaded) + private low-rank ``U V``; contrastive pull to the global prompt."""

    name = "fedpgp"
    config_class = FedPGPConfig
    cfg: FedPGPConfig

    @cached_property
    def plain_features(self) -> torch.Tensor:
        """Hand-written prompt features ``[C, D]`` (the contrastive negatives), computed once."""
        return template_text_features(self.backbone, self.classnames, self.cfg.plain_template)

    def add_prompts(self, module: TextPromptModule) -> None:
        module.sigma = module.context()
        module.U = module.matrix(module.text.n_ctx, self.cfg.rank)
        module.V = module.matrix(self.cfg.rank, module.text.width)

    def declare_uploads(self) -> Sequence[str]:
        return ["sigma"]

    def class_features(self, personalised: bool = True) -> torch.Tensor:
        m = self.module
        if not personalised:
            return m.text(m.sigma)
        return m.text(m.sigma + m.U @ m.V)

    def train_outputs(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, tuple[float, torch.Tensor]]]:
        c, m = self.cfg, self.module
        if c.contrastive_weight == 0:
            return super().train_outputs(image)
        personal, global_ = m.text(torch.stack([m.sigma + m.U @ m.V, m.sigma]))  # one encoder pass
        con = dual_prompt_alignment_loss(global_, personal, "contrastive", plain=self.plain_features,
                                         temperature=c.temperature)
        return m.logits(image, personal), {"con": (c.contrastive_weight, con)}


__all__ = ["FedPGPConfig", "FedPGP"]
