"""Loss functions, one small documented function each (``classification``: CE, DPA, CMA;
``retrieval``: PE-RSITR's HMMC in its hinge and InfoNCE forms, caption groups for
false-negative masking)."""

from fedrs.losses.classification import (
    CMA_KINDS,
    DPA_KINDS,
    classification_loss,
    cross_modal_alignment_loss,
    dual_prompt_alignment_loss,
)
from fedrs.losses.retrieval import (
    HMMCConfig,
    HMMCLoss,
    bidirectional_hinge,
    caption_groups,
    hinge_on_similarity,
    info_nce,
)

__all__ = [
    "CMA_KINDS", "DPA_KINDS", "classification_loss", "cross_modal_alignment_loss",
    "dual_prompt_alignment_loss", "HMMCConfig", "HMMCLoss", "bidirectional_hinge", "caption_groups",
    "hinge_on_similarity", "info_nce",
]
