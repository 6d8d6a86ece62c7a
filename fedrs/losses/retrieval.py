"""HMMC: the hybrid multi-modal contrastive loss of PE-RSITR, and its InfoNCE building block.

``L = L_cm + lambda_v * L_v + lambda_t * L_t`` where, over a batch of ``B`` image-caption pairs
(one caption per image, so the only positive of each row is on the diagonal):

* ``L_cm``: symmetric InfoNCE between images and captions (image->text and text->image averaged);
* ``L_v``: InfoNCE from each image to its augmented view (a second, dropout-perturbed pass);
* ``L_t``: InfoNCE from each caption to its augmented view.

The intra-modal terms push *different* images (captions) apart, which matters for remote-sensing
scenes that all look alike. Weights and the temperature are not published: fedrs defaults to
1.0 and 0.07, both configurable. Features are L2-normalised here (cosine similarity).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.07,
             symmetric: bool = True) -> torch.Tensor:
    """InfoNCE of row ``i`` of ``a`` against row ``i`` of ``b`` (cosine similarity / temperature).

    ``symmetric`` averages the a->b and b->a cross-entropies.
    """
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    logits = a @ b.T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = (loss + F.cross_entropy(logits.T, target)) / 2
    return loss


@dataclass
class HMMCLoss:
    """``L_cm + lambda_v L_v + lambda_t L_t``; with both lambdas 0 it is plain CLIP InfoNCE."""

    temperature: float = 0.07
    lambda_v: float = 1.0
    lambda_t: float = 1.0

    @property
    def needs_augmented(self) -> bool:
        return bool(self.lambda_v or self.lambda_t)

    def terms(self, image: torch.Tensor, text: torch.Tensor,
              image_aug: torch.Tensor | None = None,
              text_aug: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The three terms and their weighted sum (``"loss"``); intra terms need the views."""
        out = {"cm": info_nce(image, text, self.temperature, symmetric=True)}
        loss = out["cm"]
        for key, weight, anchor, view in (("v", self.lambda_v, image, image_aug),
                                          ("t", self.lambda_t, text, text_aug)):
            if weight:
                if view is None:
                    raise ValueError(f"HMMC lambda_{key}={weight} needs the augmented {key} view")
                out[key] = info_nce(anchor, view, self.temperature, symmetric=False)
                loss = loss + weight * out[key]
        out["loss"] = loss
        return out

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        return self.terms(*args, **kwargs)["loss"]


__all__ = ["info_nce", "HMMCLoss"]
