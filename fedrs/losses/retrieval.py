"""HMMC: the hybrid multi-modal contrastive loss of PE-RSITR, in its published hinge form and an
InfoNCE variant, with masking of false negatives from repeated caption strings.

``L = lambda_cm * L_cm + lambda_v * L_v + lambda_t * L_t`` over a batch of ``B`` image-caption
pairs (one caption per image, so the positive of each anchor is on the diagonal):

* ``L_cm``: images against captions (cross-modal);
* ``L_v``: each image against its augmented view (a second, dropout-perturbed pass);
* ``L_t``: each caption against its augmented view.

The intra-modal terms push *different* images (captions) apart, which matters for remote-sensing
scenes that all look alike. Features are L2-normalised here (cosine similarity).

Forms (``HMMCConfig.form``):

* ``hinge`` (default, the published form): every term is a VSE++ bidirectional hinge (triplet)
  loss on the cosine-similarity matrix (:func:`hinge_on_similarity`), margin 0.2, the hardest
  negative per anchor, diagonal excluded, no temperature, summed over the anchors of both
  directions, equal weights. Sources: the corrected note ``shared/reference/pe-rsitr.md`` (the
  authors' early ``loss.py``/``train.py``, ZhanYang-nwpu/PE-RSITR commit dd24050: margin 0.2,
  ``max_violation`` on, ``cost_s.sum() + cost_im.sum()``, ``loss = cross + intra_v + intra_t``)
  and VSE++ (Faghri et al., BMVC 2018, "VSE++: Improving Visual-Semantic Embeddings with Hard
  Negatives"; ``negatives: sum`` is their VSE0 baseline).
* ``infonce``: fedrs's earlier form, unchanged in its numbers: symmetric InfoNCE for ``L_cm``,
  one-way InfoNCE (anchor -> view) for ``L_v`` and ``L_t``, cosine / ``temperature`` (0.07, not
  published; a variant, not the paper's loss).

False negatives from repeated captions (``duplicate_captions``). Caption sets repeat caption
strings verbatim (UCM-Captions: 91% of train+val captions are used by 2+ images), so a batch with
one caption per image can still hold the *same string* twice. Pass the batch's caption group ids
(:func:`caption_groups`: equal after case and whitespace normalisation -> equal id) or a boolean
``same_caption [B, B]`` matrix to :meth:`HMMCLoss.terms`; then, for pair ``(i, j)``, ``i != j``,
whose captions are the same string:

* ``mask`` (default): the pair is no negative (excluded from the hinge's negatives and from the
  InfoNCE softmax denominator);
* ``positive``: InfoNCE treats the pair as a second positive (multi-positive cross-entropy with a
  uniform target over the positives, SupCon's ``L_out``). The hinge form has one positive per
  anchor by construction, so there ``positive`` equals ``mask``: in ``L_cm`` and ``L_t`` the extra
  positive is (up to dropout) the same string's embedding as the diagonal one, so it would add
  nothing but noise;
* ``ignore``: no masking (fedrs's earlier behaviour; for comparison).

``duplicate_terms`` says which terms this applies to; all three by default, as issue 14 asks. In
``L_cm`` and ``L_t`` a repeated string is an exact false negative (``L_t``'s hinge on two equal
strings is even unsatisfiable: they score like the positive). In ``L_v`` two images sharing a
caption string need not be the same image, but the cross-modal term pulls both towards that one
caption embedding while ``L_v`` would push them a margin apart, so the two terms would fight; the
images are (almost always) the same scene type, so fedrs masks them there too by default. Drop
``"v"`` from ``duplicate_terms`` to keep such images as negatives of each other.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from fedrs.config import ConfigError

logger = logging.getLogger(__name__)

#: allowed values of the :class:`HMMCConfig` choice fields
HMMC_FORMS = ("hinge", "infonce")
NEGATIVE_MODES = ("hardest", "sum")
REDUCTIONS = ("sum", "mean")
DUPLICATE_MODES = ("mask", "positive", "ignore")
HMMC_TERMS = ("cm", "v", "t")


# -- caption groups ---------------------------------------------------------------------------------

def normalise_caption(caption: str) -> str:
    """The caption compared for duplicates: case-folded, whitespace runs collapsed, ends stripped.

    Punctuation stays as written ("farmland ." and "farmland." differ).
    """
    return " ".join(caption.casefold().split())


def caption_groups(captions: Sequence[str]) -> torch.Tensor:
    """``LongTensor [N]``: equal id for captions equal after :func:`normalise_caption`.

    Ids are numbered in order of first appearance. Compute once for a whole caption set and index
    it with a batch's caption indices (``groups[cap_idx]``).
    """
    ids: dict[str, int] = {}
    return torch.tensor([ids.setdefault(normalise_caption(c), len(ids)) for c in captions],
                        dtype=torch.long)


def same_caption_matrix(same_caption: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Boolean ``[B, B]`` (True where captions ``i`` and ``j`` are the same string) from caption
    group ids ``[B]`` or from such a matrix itself (checked for shape)."""
    same_caption = torch.as_tensor(same_caption)
    if same_caption.dim() == 1 and same_caption.dtype != torch.bool:
        if len(same_caption) != batch_size:
            raise ValueError(f"caption group ids have {len(same_caption)} entries for a batch of {batch_size}")
        return same_caption.unsqueeze(1) == same_caption.unsqueeze(0)
    if same_caption.dtype != torch.bool or same_caption.shape != (batch_size, batch_size):
        raise ValueError(f"same_caption must be caption group ids [B] or a boolean [B, B] matrix "
                         f"(B = {batch_size}), got {same_caption.dtype} {tuple(same_caption.shape)}")
    return same_caption


# -- the two pairwise losses ------------------------------------------------------------------------

def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T


def hinge_on_similarity(sim: torch.Tensor, margin: float = 0.2, negatives: str = "hardest",
                        reduction: str = "sum", exclude: torch.Tensor | None = None) -> torch.Tensor:
    """VSE++ bidirectional hinge on a similarity matrix ``sim [B, B]`` (row ``i`` of ``a`` against
    column ``j`` of ``b``; positives on the diagonal).

    For anchor ``a_i`` and each negative ``b_j`` the cost is ``max(0, margin + sim[i, j] - sim[i, i])``;
    for anchor ``b_j`` and each negative ``a_i`` it is ``max(0, margin + sim[i, j] - sim[j, j])``.
    ``negatives="hardest"`` keeps the largest cost per anchor (max violation), ``"sum"`` adds all.
    The diagonal is never a negative, nor are pairs where ``exclude [B, B]`` is True (an anchor
    left without negatives costs 0). ``reduction="sum"`` adds the per-anchor costs of both
    directions (VSE++ and the PE-RSITR code); ``"mean"`` divides that sum by ``B``. A scalar, in
    units of cosine similarity.
    """
    if negatives not in NEGATIVE_MODES:
        raise ValueError(f"negatives must be one of {list(NEGATIVE_MODES)}, got {negatives!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    n = sim.shape[0]
    positive = sim.diagonal()
    not_negative = torch.eye(n, dtype=torch.bool, device=sim.device)
    if exclude is not None:
        not_negative = not_negative | exclude.to(sim.device)
    # every cost is >= 0, so a zero fill removes a pair from both the max and the sum
    cost_a = (margin + sim - positive.unsqueeze(1)).clamp(min=0).masked_fill(not_negative, 0.0)
    cost_b = (margin + sim - positive.unsqueeze(0)).clamp(min=0).masked_fill(not_negative, 0.0)
    if negatives == "hardest":
        total = cost_a.amax(dim=1).sum() + cost_b.amax(dim=0).sum()
    else:
        total = cost_a.sum() + cost_b.sum()
    return total if reduction == "sum" else total / n


def bidirectional_hinge(a: torch.Tensor, b: torch.Tensor, margin: float = 0.2, negatives: str = "hardest",
                        reduction: str = "sum", exclude: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`hinge_on_similarity` of the cosine similarities of ``a [B, D]`` and ``b [B, D]``."""
    return hinge_on_similarity(_cosine(a, b), margin, negatives, reduction, exclude)


def _cross_entropy(logits: torch.Tensor, positives: torch.Tensor | None) -> torch.Tensor:
    """Mean over rows; target the diagonal, or uniform over ``positives [B, B]`` (diagonal included)."""
    if positives is None:
        return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))
    log_prob = F.log_softmax(logits, dim=1)
    target = positives.float() / positives.sum(dim=1, keepdim=True)
    return -torch.where(positives, target * log_prob, torch.zeros_like(log_prob)).sum(dim=1).mean()


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.07, symmetric: bool = True,
             exclude: torch.Tensor | None = None, positives: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE of row ``i`` of ``a [B, D]`` against row ``i`` of ``b [B, D]`` (cosine / temperature).

    ``symmetric`` averages the a->b and b->a cross-entropies. ``exclude [B, B]``: pairs ``(a_i, b_j)``
    left out of the softmax (the diagonal never is). ``positives [B, B]``: extra positives
    (the diagonal always is one); the target is uniform over an anchor's positives. A scalar (nats).
    """
    logits = _cosine(a, b) / temperature
    n = logits.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=logits.device)
    if exclude is not None:
        logits = logits.masked_fill(exclude.to(logits.device) & ~eye, float("-inf"))
    if positives is not None:
        positives = positives.to(logits.device) | eye
    loss = _cross_entropy(logits, positives)
    if symmetric:
        loss = (loss + _cross_entropy(logits.T, None if positives is None else positives.T)) / 2
    return loss


# -- configuration and the loss ---------------------------------------------------------------------

@dataclass
class HMMCConfig:
    """HMMC settings (see the module docstring). Published form: the defaults, except
    ``temperature``, which only the ``infonce`` form reads.

    ``lambda_cm``, ``lambda_v``, ``lambda_t``: term weights (paper: all 1). ``margin``: hinge margin
    in cosine units (paper 0.2). ``negatives``: ``hardest`` (VSE++, paper) or ``sum`` (VSE0).
    ``reduction``: ``sum`` over anchors (paper, VSE++) or ``mean`` (``sum / B``: a loss scale that
    does not grow with the batch, which matters for plain SGD). ``duplicate_captions``: ``mask``,
    ``positive`` or ``ignore``; ``duplicate_terms``: the terms it applies to.
    """

    # the first three keep their positions: HMMCLoss(temperature, lambda_v, lambda_t) predates the rest
    temperature: float = 0.07
    lambda_v: float = 1.0
    lambda_t: float = 1.0
    lambda_cm: float = 1.0
    form: Literal["hinge", "infonce"] = "hinge"
    margin: float = 0.2
    negatives: Literal["hardest", "sum"] = "hardest"
    reduction: Literal["sum", "mean"] = "sum"
    duplicate_captions: Literal["mask", "positive", "ignore"] = "mask"
    duplicate_terms: tuple[Literal["cm", "v", "t"], ...] = HMMC_TERMS

    def __post_init__(self) -> None:
        for key, allowed in (("form", HMMC_FORMS), ("negatives", NEGATIVE_MODES),
                             ("reduction", REDUCTIONS), ("duplicate_captions", DUPLICATE_MODES)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key} must be one of {list(allowed)}, got {getattr(self, key)!r}")
        self.duplicate_terms = tuple(self.duplicate_terms)
        bad = [t for t in self.duplicate_terms if t not in HMMC_TERMS]
        if bad or len(set(self.duplicate_terms)) != len(self.duplicate_terms):
            raise ConfigError(f"duplicate_terms must list distinct terms out of {list(HMMC_TERMS)}, "
                              f"got {list(self.duplicate_terms)}")
        for key in ("temperature", "margin", "lambda_cm", "lambda_v", "lambda_t"):
            value = getattr(self, key)
            if not math.isfinite(value) or value < 0 or (key == "temperature" and value == 0):
                bound = "> 0" if key == "temperature" else ">= 0"
                raise ConfigError(f"{key} must be a finite number {bound}, got {value}")


@dataclass
class HMMCLoss(HMMCConfig):
    """The HMMC loss for an :class:`HMMCConfig`; with ``lambda_v = lambda_t = 0`` it is the
    cross-modal term alone (the ``mrs-adapter`` and other PETL baselines)."""

    @classmethod
    def from_config(cls, cfg: HMMCConfig, **changes) -> HMMCLoss:
        """The loss of ``cfg`` (any object with the :class:`HMMCConfig` fields, e.g. a subclass with
        more), with ``changes`` (e.g. ``lambda_v=0.0``) applied."""
        values = {f.name: getattr(cfg, f.name) for f in fields(HMMCConfig)}
        return cls(**{**values, **changes})

    @property
    def needs_augmented(self) -> bool:
        return bool(self.lambda_v or self.lambda_t)

    def _pair_loss(self, a: torch.Tensor, b: torch.Tensor, symmetric: bool,
                   duplicates: torch.Tensor | None) -> torch.Tensor:
        mode = self.duplicate_captions if duplicates is not None else "ignore"
        if self.form == "hinge":
            exclude = duplicates if mode in ("mask", "positive") else None  # one positive per anchor
            return bidirectional_hinge(a, b, self.margin, self.negatives, self.reduction, exclude)
        return info_nce(a, b, self.temperature, symmetric,
                        exclude=duplicates if mode == "mask" else None,
                        positives=duplicates if mode == "positive" else None)

    def terms(self, image: torch.Tensor, text: torch.Tensor,
              image_aug: torch.Tensor | None = None, text_aug: torch.Tensor | None = None,
              same_caption: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The unweighted terms ``"cm"``, ``"v"``, ``"t"`` (the last two only with a weight) and the
        weighted sum ``"loss"``.

        ``image``, ``text``, ``image_aug``, ``text_aug``: ``[B, D]`` features (any scale). The
        intra terms need the augmented views. ``same_caption``: the batch's caption group ids
        ``[B]`` (:func:`caption_groups`) or a boolean ``[B, B]`` matrix; without it no pair is
        known to repeat a caption and ``duplicate_captions`` has no effect (a warning says so once).
        """
        duplicates = None
        if same_caption is not None:
            duplicates = same_caption_matrix(same_caption, image.shape[0]).to(image.device)
        elif self.duplicate_captions != "ignore" and not getattr(self, "_warned_no_groups", False):
            self._warned_no_groups = True
            logger.warning("HMMC duplicate_captions=%r but the batch's caption groups were not passed: "
                           "repeated captions stay negatives", self.duplicate_captions)
        out = {"cm": self._pair_loss(image, text, True, duplicates if "cm" in self.duplicate_terms else None)}
        loss = self.lambda_cm * out["cm"]
        for key, weight, anchor, view in (("v", self.lambda_v, image, image_aug),
                                          ("t", self.lambda_t, text, text_aug)):
            if weight:
                if view is None:
                    raise ValueError(f"HMMC lambda_{key}={weight} needs the augmented {key} view")
                out[key] = self._pair_loss(anchor, view, False,
                                           duplicates if key in self.duplicate_terms else None)
                loss = loss + weight * out[key]
        out["loss"] = loss
        return out

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        return self.terms(*args, **kwargs)["loss"]


__all__ = [
    "HMMC_FORMS", "NEGATIVE_MODES", "REDUCTIONS", "DUPLICATE_MODES", "HMMC_TERMS",
    "normalise_caption", "caption_groups", "same_caption_matrix",
    "hinge_on_similarity", "bidirectional_hinge", "info_nce", "HMMCConfig", "HMMCLoss",
]
