"""FedPGP (Cui et al., ICML 2024): a global prompt ``sigma`` plus a private low-rank ``U V``, with
the prompt-wise contrastive term anchored on the global prompt. Re-implemented from the paper and
the official code (github.com/TianyuCuiOvO/FedPGP, ``trainers/fedpgp.py`` and
``federated_main.py``; that repository has no licence, so no code is taken from it).

Client k's prompt is ``P_k = sigma + U_k @ V_k`` (``sigma [M, W]``, ``U [M, r]``, ``V [r, W]``,
rank ``r < M`` so that ``U V`` is low rank). Only ``sigma`` is uploaded and averaged; ``U`` and
``V`` never leave the client. With L2-normalised class text features

* ``t_0 = g(X X ... X {class}.)`` -- the frozen text encoder on the un-learned initial prompt: the
  token embeddings of the literal placeholder words ``X`` in the M context slots (CLIP's prior;
  frozen, computed once). With ``text_init: phrase`` (not in FedPGP, whose code initialises only
  at random) the initial prompt is ``init_phrase``, so ``t_0`` is the frozen encoder on it,
* ``t_sigma = g(sigma)`` -- the global prompt alone,
* ``t = g(sigma + U V)`` -- the personalised prompt,

the objective on a batch is::

    L = CE(logit_scale * v @ t.T, y) + mu * L_con
    L_con = mean over classes c of CE([pos_c, neg_c] / temperature, target 0)
    pos_c = cos(t_0(c), t_sigma(c)),   neg_c = cos(t_sigma(c), t(c))

so the global prompt is pulled towards CLIP's prior and pushed away from the personalised prompt
(:func:`prompt_wise_contrastive_loss`). Personalised accuracy uses ``sigma + U V`` (as FedPGP
evaluates); global accuracy uses ``sigma`` alone, the only tensor the server holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import torch
import torch.nn.functional as F

from fedrs.methods.text_prompt import TextPromptConfig, TextPromptMethod
from fedrs.prompts import PLACEHOLDER, TextPromptModule


def prompt_wise_contrastive_loss(prior: torch.Tensor, global_: torch.Tensor, personal: torch.Tensor,
                                 temperature: float) -> torch.Tensor:
    """FedPGP's prompt-wise contrastive term, anchored on the global prompt's class features.

    Args:
        prior: ``t_0 [C, D]``, frozen features of the un-learned placeholder prompt (positive).
        global_: ``t_sigma [C, D]``, features of the global prompt (the anchor).
        personal: ``t [C, D]``, features of the personalised prompt (negative).
        temperature: divides both similarities (FedPGP: 0.5).
    Returns:
        the mean over classes of ``-log softmax([cos(t_0, t_sigma), cos(t_sigma, t)] / T)[0]``,
        a scalar (``F.cross_entropy`` with target 0, as ``FedPGP.forward_backward`` computes it).
    """
    pos = F.cosine_similarity(prior, global_, dim=-1)
    neg = F.cosine_similarity(global_, personal, dim=-1)
    logits = torch.stack([pos, neg], dim=-1) / temperature
    return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device))


@dataclass
class FedPGPConfig(TextPromptConfig):
    """FedPGP's ``method:`` section. Every default is FedPGP's own, from the official
    ``federated_main.py`` argument defaults (github.com/TianyuCuiOvO/FedPGP):

    * ``n_ctx`` 16 -- ``--n_ctx`` default 16 (the shared protocol's 4 is not FedPGP's);
    * ``rank`` 4 -- ``--bottleneck`` default 4, the inner size of ``U [n_ctx, r] V [r, W]``
      (``PromptLearner.__init__`` in ``trainers/fedpgp.py``); must be < ``n_ctx``;
    * ``contrastive_weight`` 1.0 -- FedPGP's ``mu`` (``--mu`` default 1; ``loss += self.mu * loss2``
      in ``FedPGP.forward_backward``); some later benchmarks use 0.5;
    * ``temperature`` 0.5 -- ``--temp`` default 0.5 (``logits /= self.temp``);
    * ``text_init`` random, ``init_std`` 0.02 -- ``--ctx_init`` default False: ``sigma``, ``U``,
      ``V`` drawn from N(0, 0.02^2) and the placeholder prompt ``"X X ... X"`` (``PromptLearner``).
    """

    name: str = "fedpgp"
    n_ctx: int = 16
    rank: int = 4                                     # r of the private U [M, r] V [r, W]
    contrastive_weight: float = 1.0                   # FedPGP's mu
    temperature: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rank < 1:
            raise ValueError(f"method.rank must be >= 1, got {self.rank}")
        if self.rank >= self.n_ctx:
            raise ValueError(f"method.rank ({self.rank}) must be smaller than method.n_ctx ({self.n_ctx}): "
                             f"U [n_ctx, rank] @ V [rank, width] has rank min(rank, n_ctx), so rank >= "
                             f"n_ctx makes the private part full rank (FedPGP: rank 4 with 16 tokens)")
        if self.contrastive_weight < 0 or self.temperature <= 0:
            raise ValueError(f"method.contrastive_weight must be >= 0 and method.temperature > 0, got "
                             f"{self.contrastive_weight}, {self.temperature}")


class FedPGP(TextPromptMethod):
    """Global ``sigma`` (uploaded) + private low-rank ``U V``; the global prompt is pulled towards
    CLIP's prior and pushed away from the personalised prompt."""

    name = "fedpgp"
    config_class = FedPGPConfig
    SHAREABLE = ("sigma",)  # only the global prompt ever leaves a client, never U or V
    cfg: FedPGPConfig

    @cached_property
    def prior_features(self) -> torch.Tensor:
        """``t_0 [C, D]``: the frozen text encoder on the un-learned initial prompt, the placeholder
        words ``X X ... X {class}.`` (or ``init_phrase`` with ``text_init: phrase``); no trained
        tensor enters it, so it is computed once."""
        text, c = self.module.text, self.cfg
        words = c.init_phrase if c.text_init == "phrase" else " ".join([PLACEHOLDER] * text.n_ctx)
        with torch.no_grad():
            return text(text.phrase_init(self.backbone.tokenizer, words))

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
        con = prompt_wise_contrastive_loss(self.prior_features, global_, personal, c.temperature)
        return m.logits(image, personal), {"con": (c.contrastive_weight, con)}


__all__ = ["FedPGPConfig", "FedPGP", "prompt_wise_contrastive_loss"]
