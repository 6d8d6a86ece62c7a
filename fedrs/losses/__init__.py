"""Loss functions, one small documented function each (``classification``: CE, DPA, CMA;
``retrieval``: InfoNCE and PE-RSITR's HMMC)."""

from fedrs.losses.classification import (
    CMA_KINDS, DPA_KINDS, classification_loss, cross_modal_alignment_loss, dual_prompt_alignment_loss,
)
from fedrs.losses.retrieval import HMMCLoss, info_nce

__all__ = [
    "CMA_KINDS", "DPA_KINDS", "classification_loss", "cross_modal_alignment_loss",
    "dual_prompt_alignment_loss", "HMMCLoss", "info_nce",
]
