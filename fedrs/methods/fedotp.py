"""FedOTP (Li et al., CVPR 2024, "Global and Local Prompts Cooperation via Optimal Transport for
Federated Learning"): a global and a local prompt, matched to the image's patch tokens by
unbalanced optimal transport. Re-implemented from the paper and the official code
(github.com/HongxiaLee/FedOTP, ``trainers/GLP_OT.py``, ``federated_main.py`` and ``scripts/``;
that repository has no licence, so no code is taken from it).

Each client holds ``ctx_global [M, W]`` (uploaded, sample-weighted FedAvg) and ``ctx_local [M, W]``
(private). With L2-normalised patch tokens ``z_1..z_L`` of the frozen image encoder (after
``ln_post`` and the projection, class token excluded) and L2-normalised class text features
``t_n(c)`` of the ``N = 2`` prompts, each (image, class) pair is one transport problem between the
L patches and the N prompts:

* cost ``C_ln = 1 - cos(z_l, t_n(c))``, kernel ``K = exp(-C / eps)``;
* FedOTP's unbalanced ("COT") constraints: every patch sends *at most* ``1/L``
  (``T 1_N <= 1/L``), every prompt receives *exactly* ``gamma/N`` (``T^T 1_L = gamma/N``), so a
  fraction ``gamma`` (``ot_mass``) of the image's patch mass is transported; ``gamma = 1`` is the
  balanced problem;
* the plan is found without gradient (``torch.no_grad`` in ``CustomCLIP.forward``) by
  :func:`partial_sinkhorn`;
* the class score is ``logit_scale * sum_ln T_ln cos(z_l, t_n(c))`` (gradient through the cosine
  similarities only).

Training minimises cross-entropy on these scores with both prompts (personalised accuracy too).
Global accuracy scores with the global prompt alone (``N = 1``, the only prompt the server holds)
by the same transport: fedrs's choice, FedOTP evaluates only the personalised model.

The patch tokens do not depend on any trained tensor: the run reads them from the content-keyed
cache (:func:`fedrs.backbone.features.image_patch_tokens`), so FedOTP needs no images and costs
about what the text-prompt methods cost. ``matching: ensemble`` is the earlier global+local logit
ensemble on pooled features (no transport), kept as a labelled variant.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from fedrs.errors import FedrsError
from fedrs.methods.base import Batch
from fedrs.methods.text_prompt import TextPromptConfig, TextPromptMethod
from fedrs.prompts import TextPromptModule

logger = logging.getLogger(__name__)

#: FedOTP's matchings: "ot" (unbalanced optimal transport over patch tokens, FedOTP as published)
#: and "ensemble" (mean of the global and local prompts' logits on pooled features, no transport)
MATCHINGS = ("ot", "ensemble")


@dataclass
class FedOTPConfig(TextPromptConfig):
    """FedOTP's ``method:`` section. Defaults are FedOTP's own (github.com/HongxiaLee/FedOTP):

    * ``n_ctx`` 16 -- ``federated_main.py`` ``--n_ctx`` default 16, as ``scripts/fedotp_few_shot.sh``
      (``NCTX=16``); its CIFAR-100 label-skew script uses 4;
    * ``matching`` ot -- ``--OT`` default ``COT`` (the unbalanced transport; ``Sinkhorn`` is the
      balanced one, here ``ot_mass: 1``);
    * ``ot_eps`` 0.1 -- ``--eps`` default 0.1 (``KK = exp(-wdist / eps)`` in ``CustomCLIP.forward``),
      as ``scripts/fedotp_cifar100.sh`` (``EPS=0.1``, ViT-B/16, Dirichlet label skew; its few-shot
      RN50 script uses 0.01);
    * ``ot_mass`` 0.8 -- ``--top_percent`` (gamma): both published scripts set
      ``TOP_PERCENT=0.8`` (the argument default 1 makes the problem balanced at convergence);
    * ``ot_iters`` 100 -- ``--max_iter`` default 100 (scripts: ``MAX_ITER=100``);
    * ``ot_thresh`` 1e-3 -- ``--thresh`` default 1e-3: stop when the mean absolute change of the
      prompts' scaling ``v`` is below it (``entropic_COT_fast``);
    * ``text_init`` random, ``init_std`` 0.02 -- ``--ctx_init`` default False, N(0, 0.02^2)
      (``PromptLearner.__init__`` in ``trainers/GLP_OT.py``).

    ``matching: average`` (the name before the OT matching was the default) is read as
    ``ensemble`` with a deprecation warning.
    """

    name: str = "fedotp"
    n_ctx: int = 16
    matching: Literal["ot", "ensemble", "average"] = "ot"
    ot_eps: float = 0.1                 # entropic regularisation of the transport
    ot_mass: float = 0.8                # gamma: the fraction of patch mass transported (1: balanced)
    ot_iters: int = 100
    ot_thresh: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.matching == "average":
            logger.warning("method.matching 'average' is deprecated: read as 'ensemble' (the global+local "
                           "logit ensemble, not FedOTP's optimal transport, which is 'ot')")
            self.matching = "ensemble"
        if self.matching not in MATCHINGS:
            raise ValueError(f"method.matching must be one of {list(MATCHINGS)}, got {self.matching!r}")
        if self.ot_eps <= 0 or not 0 < self.ot_mass <= 1 or self.ot_iters < 1 or self.ot_thresh < 0:
            raise ValueError(f"method.ot_eps must be > 0, method.ot_mass in (0, 1], method.ot_iters >= 1 and "
                             f"method.ot_thresh >= 0, got {self.ot_eps}, {self.ot_mass}, {self.ot_iters}, "
                             f"{self.ot_thresh}")


@torch.no_grad()
def partial_sinkhorn(cost: torch.Tensor, eps: float, mass: float = 1.0, iters: int = 100,
                     thresh: float = 1e-3) -> torch.Tensor:
    """Entropic transport plans ``[..., L, N]`` with FedOTP's unbalanced constraints.

    For each cost matrix ``cost [..., L, N]`` (any leading batch dimensions), the plan
    ``T = diag(u) K diag(v)``, ``K = exp(-cost / eps)``, satisfies

    * rows (patches): ``T 1_N <= 1/L`` (at most the uniform mass);
    * columns (prompts): ``T^T 1_L = mass / N`` exactly, so ``mass`` is transported in total.

    The scalings alternate ``u = min(a / (K v), 1)`` (the projection onto the row inequality: a row
    whose bound is slack keeps ``u = 1``) and ``v = b / (K^T u)``, from ``u = v = 1``, in the log
    domain so that a small ``eps`` cannot underflow ``K``; they stop after ``iters`` or when the
    mean absolute change of ``v`` (over the whole batch) falls below ``thresh``. With
    ``mass = 1`` every row bound is met with equality at the fixed point: the balanced problem.
    The columns are exact after every iteration (``v`` is updated last); the rows reach their
    bounds at convergence.
    """
    *_, n_rows, n_cols = cost.shape
    log_a = -torch.log(torch.tensor(float(n_rows), dtype=cost.dtype, device=cost.device))
    log_b = torch.log(torch.tensor(mass / n_cols, dtype=cost.dtype, device=cost.device))
    log_k = -cost / eps
    log_u = torch.zeros(cost.shape[:-1], dtype=cost.dtype, device=cost.device)
    log_v = torch.zeros(*cost.shape[:-2], n_cols, dtype=cost.dtype, device=cost.device)
    for _ in range(iters):
        previous = log_v
        log_u = torch.clamp(log_a - torch.logsumexp(log_k + log_v.unsqueeze(-2), dim=-1), max=0.0)
        log_v = log_b - torch.logsumexp(log_k + log_u.unsqueeze(-1), dim=-2)
        if (log_v.exp() - previous.exp()).abs().mean() < thresh:
            break
    return torch.exp(log_u.unsqueeze(-1) + log_k + log_v.unsqueeze(-2))


def transport_scores(patches: torch.Tensor, text: torch.Tensor, eps: float, mass: float, iters: int,
                     thresh: float) -> torch.Tensor:
    """FedOTP's class scores (before ``logit_scale``): ``[B, C]`` from L2-normalised patch tokens
    ``patches [B, L, D]`` and class features ``text [N, C, D]`` of N prompts: for each image and
    class, ``sum_ln T_ln cos(z_l, t_n(c))`` with the plan of :func:`partial_sinkhorn` on the cost
    ``1 - cos`` (no gradient through the plan)."""
    sim = torch.einsum("bld,ncd->bcln", patches, text)  # [B, C, L, N]
    plan = partial_sinkhorn(1.0 - sim.detach(), eps, mass, iters, thresh)
    return (plan * sim).sum(dim=(-2, -1))


class FedOTP(TextPromptMethod):
    """Global (uploaded) and local (private) prompts, matched to patch tokens by unbalanced OT
    (``matching: ot``) or ensembled on pooled features (``matching: ensemble``)."""

    name = "fedotp"
    config_class = FedOTPConfig
    SHAREABLE = ("ctx_global",)  # only the global prompt ever leaves a client, never ctx_local
    cfg: FedOTPConfig

    def add_prompts(self, module: TextPromptModule) -> None:
        module.ctx_global = module.context()
        module.ctx_local = module.context()

    def declare_uploads(self) -> Sequence[str]:
        return ["ctx_global"]

    def image_representation(self) -> str:
        """What the run's data pool holds for this method (``Batch.features``): the frozen
        encoder's cached ``"patch_tokens"`` ``[N, L, D]`` for the transport, else ``"pooled"``
        ``[N, D]`` (:func:`fedrs.backbone.features.frozen_image_representation`)."""
        return "patch_tokens" if self.cfg.matching == "ot" else "pooled"

    def class_features(self, personalised: bool = True) -> torch.Tensor:
        m = self.module
        if not personalised:
            return m.text(m.ctx_global)
        return m.text(torch.stack([m.ctx_global, m.ctx_local]))  # [2, C, D], one encoder pass

    def image_features(self, batch: Batch) -> torch.Tensor:
        """L2-normalised cached frozen patch tokens ``[B, L, D]`` (``matching: ot``) or pooled
        features ``[B, D]`` (``matching: ensemble``)."""
        if self.cfg.matching == "ensemble":
            return super().image_features(batch)
        if batch.features is None or batch.features.dim() != 3:
            shape = None if batch.features is None else tuple(batch.features.shape)
            raise FedrsError(f"FedOTP's optimal transport matches the frozen encoder's patch tokens "
                             f"[B, L, D], but the batch holds features of shape {shape}: the data pool "
                             f"must be built from the method's image_representation() "
                             f"({self.image_representation()!r}, fedrs.backbone.features."
                             f"frozen_image_representation)")
        return F.normalize(batch.features.float(), dim=-1)

    def scores(self, image: torch.Tensor, personalised: bool) -> torch.Tensor:
        text = self.class_features(personalised)
        if self.cfg.matching == "ensemble":
            logits = self.module.logits(image, text)
            return logits.mean(dim=0) if personalised else logits
        c = self.cfg
        text = text if personalised else text.unsqueeze(0)  # [N, C, D]
        return self.module.logit_scale * transport_scores(image, text, c.ot_eps, c.ot_mass, c.ot_iters,
                                                          c.ot_thresh)


__all__ = ["FedOTPConfig", "FedOTP", "MATCHINGS", "partial_sinkhorn", "transport_scores"]
