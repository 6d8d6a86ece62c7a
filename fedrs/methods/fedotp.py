"""FedOTP-style: a global and a local prompt as two parallel prompt sets; only the global one is
averaged (re-implemented from the description of Li et al., CVPR 2024).

Each client holds ``ctx_global [M, W]`` (uploaded, sample-weighted FedAvg) and ``ctx_local [M, W]``
(private). Both give class text features ``t_g, t_l [C, D]``; the personalised class score is

* ``matching: average`` (default): the mean of the two logit sets,
  ``logit_scale * v @ (t_g + t_l).T / 2``, on the cached pooled image features;
* ``matching: ot``: FedOTP's matching of the image's patch features ``z_1..z_L`` (from the frozen
  ViT, so this needs the images) to the two prompts' features by entropic *unbalanced* optimal
  transport: with the cost ``1 - cos(z_i, t_j(c))``, uniform marginals ``1/L`` and ``1/2``
  relaxed by a KL penalty of strength ``ot_tau``, and entropy ``ot_eps``, a log-domain Sinkhorn
  gives the plan ``T`` (no gradient, as in PLOT/FedOTP) and the score is
  ``logit_scale * sum_ij T_ij cos(z_i, t_j(c))``. ``ot_tau: null`` is the balanced problem.

Training minimises cross-entropy on the personalised scores. Global accuracy uses the global
prompt alone on the pooled features. The Sinkhorn is a few lines of torch (no dependency).
FedOTP's published defaults kept here: ``ot_eps`` 0.1, at most 100 iterations, stop at 1e-3
(its 10 rounds, 1 local epoch, 16 tokens are study settings, shared with every method);
``ot_tau`` is fedrs's choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from fedrs.methods.base import Batch
from fedrs.methods.text_prompt import TextPromptConfig, TextPromptMethod
from fedrs.prompts import TextPromptModule, VisualPromptEncoder


@dataclass
class FedOTPConfig(TextPromptConfig):
    """FedOTP's ``method:`` section: the prompt keys plus the matching of the two prompt sets."""

    name: str = "fedotp"
    matching: Literal["average", "ot"] = "average"
    ot_eps: float = 0.1                 # entropic regularisation
    ot_tau: float | None = 1.0          # KL marginal relaxation (None: balanced)
    ot_iters: int = 100
    ot_thresh: float = 1e-3             # stop when the potentials change less than this

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ot_eps <= 0 or (self.ot_tau is not None and self.ot_tau <= 0) or self.ot_iters < 1:
            raise ValueError(f"method.ot_eps and method.ot_tau must be > 0 and method.ot_iters >= 1, got "
                             f"{self.ot_eps}, {self.ot_tau}, {self.ot_iters}")


@torch.no_grad()
def unbalanced_sinkhorn(cost: torch.Tensor, eps: float, tau: float | None, iters: int = 100,
                        thresh: float = 1e-3) -> torch.Tensor:
    """Entropic OT plans ``[..., L, N]`` between uniform marginals ``1/L`` and ``1/N``.

    Log-domain Sinkhorn with KL-relaxed marginals (Chizat et al. 2018): each potential update is
    damped by ``tau / (tau + eps)``; ``tau=None`` gives the balanced problem.
    """
    *_, n_rows, n_cols = cost.shape
    log_a, log_b = -torch.log(torch.tensor(float(n_rows))), -torch.log(torch.tensor(float(n_cols)))
    damp = 1.0 if tau is None else tau / (tau + eps)
    log_k = -cost / eps
    u = torch.zeros(cost.shape[:-1], dtype=cost.dtype, device=cost.device)
    v = torch.zeros(*cost.shape[:-2], n_cols, dtype=cost.dtype, device=cost.device)
    for _ in range(iters):
        previous = u
        u = damp * (log_a - torch.logsumexp(log_k + v.unsqueeze(-2), dim=-1))
        v = damp * (log_b - torch.logsumexp(log_k + u.unsqueeze(-1), dim=-2))
        if (u - previous).abs().max() < thresh:
            break
    return torch.exp(u.unsqueeze(-1) + log_k + v.unsqueeze(-2))


class FedOTP(TextPromptMethod):
    """Global (uploaded) and local (private) prompt sets, matched by averaging or unbalanced OT."""

    name = "fedotp"
    config_class = FedOTPConfig
    cfg: FedOTPConfig

    def add_prompts(self, module: TextPromptModule) -> None:
        module.ctx_global = module.context()
        module.ctx_local = module.context()
        if self.cfg.matching == "ot":
            module.patches = VisualPromptEncoder(self.backbone.model)

    def declare_uploads(self) -> Sequence[str]:
        return ["ctx_global"]

    def needs_images(self, train: bool, personalised: bool = True) -> bool:
        return self.cfg.matching == "ot" and (train or personalised)

    def class_features(self, personalised: bool = True) -> torch.Tensor:
        m = self.module
        if not personalised:
            return m.text(m.ctx_global)
        return m.text(torch.stack([m.ctx_global, m.ctx_local]))  # [2, C, D], one encoder pass

    def image_features(self, batch: Batch) -> torch.Tensor:
        if batch.images is None:
            return super().image_features(batch)
        with torch.no_grad():
            return self.module.patches(batch.images, return_tokens=True)[1]  # [B, L, D]

    def scores(self, image: torch.Tensor, personalised: bool) -> torch.Tensor:
        text = self.class_features(personalised)
        if text.dim() == 2:
            return self.module.logits(image, text)
        if image.dim() == 2:  # average of the two logit sets
            return self.module.logits(image, text).mean(dim=0)
        c = self.cfg
        sim = torch.einsum("bld,scd->bcls", image, text)  # [B, C, L, 2]
        plan = unbalanced_sinkhorn(1.0 - sim.detach(), c.ot_eps, c.ot_tau, c.ot_iters, c.ot_thresh)
        return self.module.logit_scale * (plan * sim).sum(dim=(-2, -1))


__all__ = ["FedOTPConfig", "FedOTP", "unbalanced_sinkhorn"]
