"""Classification accuracy: counts from logits, and the two federated summaries.

*Personalised* accuracy is each client's accuracy on its own test split with its own (shared +
private) tensors, summarised over clients both unweighted (mean of client accuracies) and
weighted (pooled correct / pooled total, i.e. weighted by test-split size). *Global* accuracy is
the server's model (shared tensors only) on the pooled test set.
"""

from __future__ import annotations

from typing import Sequence

import torch


def accuracy_counts(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """``(correct, total)`` of the arg-max of ``logits [B, C]`` against ``labels [B]``."""
    return int((logits.argmax(dim=-1) == labels).sum()), int(labels.numel())


def personalised_summary(counts: Sequence[tuple[float, float]]) -> dict[str, float]:
    """``{"weighted", "unweighted"}`` accuracy from per-client ``(correct, total)``."""
    counts = [(c, n) for c, n in counts if n > 0]
    if not counts:
        return {"weighted": float("nan"), "unweighted": float("nan")}
    return {
        "weighted": sum(c for c, _ in counts) / sum(n for _, n in counts),
        "unweighted": sum(c / n for c, n in counts) / len(counts),
    }


__all__ = ["accuracy_counts", "personalised_summary"]
