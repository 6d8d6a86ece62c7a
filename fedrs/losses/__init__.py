"""Loss functions, one small documented function each (``classification``: CE, DPA, CMA)."""

from fedrs.losses.classification import (
    CMA_KINDS, DPA_KINDS, classification_loss, cross_modal_alignment_loss, dual_prompt_alignment_loss,
)

__all__ = [
    "CMA_KINDS", "DPA_KINDS", "classification_loss", "cross_modal_alignment_loss",
    "dual_prompt_alignment_loss",
]
