"""Classification accuracy: counts from logits, and the federated summaries.

*Personalised* accuracy is each client's accuracy on its own test split with its own (shared +
private) tensors, summarised over clients both unweighted (mean of client accuracies) and
weighted (pooled correct / pooled total, i.e. weighted by test-split size). A client's test split
follows its own label distribution, so a client can score high by getting its dominant class
right; its *balanced* accuracy is the mean, over the classes present in its test split, of the
per-class recall (correct / total of that class), and the run's balanced personalised accuracy is
the mean of that over clients. *Global* accuracy is the server's model (shared tensors only) on
the pooled test set.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


def accuracy_counts(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """``(correct, total)`` of the arg-max of ``logits [B, C]`` against ``labels [B]``."""
    return int((logits.argmax(dim=-1) == labels).sum()), int(labels.numel())


def class_counts(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class ``(correct [C], total [C])`` (int64, on ``logits``' device) of the arg-max of
    ``logits [B, C]`` against ``labels [B]``. Labels in ``[0, C)`` sum to :func:`accuracy_counts`;
    a label outside has no class to count under and is left out. Nothing is read back from the
    device (no ``.item()``, no masking), so a batched evaluation can sum these and read once."""
    num_classes = int(logits.shape[-1])
    labels = labels.long().to(logits.device)
    hits = logits.argmax(dim=-1) == labels
    in_range = (labels >= 0) & (labels < num_classes)
    slots = labels.clamp(0, num_classes - 1)
    correct = torch.zeros(num_classes, dtype=torch.long, device=logits.device)
    total = torch.zeros(num_classes, dtype=torch.long, device=logits.device)
    correct.scatter_add_(0, slots, (hits & in_range).long())
    total.scatter_add_(0, slots, in_range.long())
    return correct, total


def balanced_accuracy(correct: Sequence[float] | torch.Tensor, total: Sequence[float] | torch.Tensor) -> float:
    """Mean per-class recall over the classes with at least one example (``total > 0``): a
    split's class-balanced accuracy; NaN when no class has an example."""
    recalls = [float(c) / float(n) for c, n in zip(torch.as_tensor(correct).tolist(),
                                                    torch.as_tensor(total).tolist()) if n > 0]
    return sum(recalls) / len(recalls) if recalls else float("nan")


def personalised_summary(counts: Sequence[tuple[float, float]]) -> dict[str, float]:
    """``{"weighted", "unweighted"}`` accuracy from per-client ``(correct, total)``."""
    counts = [(c, n) for c, n in counts if n > 0]
    if not counts:
        return {"weighted": float("nan"), "unweighted": float("nan")}
    return {
        "weighted": sum(c for c, _ in counts) / sum(n for _, n in counts),
        "unweighted": sum(c / n for c, n in counts) / len(counts),
    }


def harmonic_mean(base: float, novel: float) -> float:
    """``2 B N / (B + N)``: the base-to-novel summary of CoOp/CoCoOp (0 when both are 0, NaN when
    either is NaN)."""
    base, novel = float(base), float(novel)
    if math.isnan(base) or math.isnan(novel):
        return float("nan")
    return 2 * base * novel / (base + novel) if base + novel > 0 else 0.0


def balanced_summary(per_client: Sequence[float]) -> float:
    """Mean of the clients' balanced accuracies over the clients that have one (a client without
    test images has NaN); NaN when none has."""
    values = [float(v) for v in per_client if math.isfinite(float(v))]
    return sum(values) / len(values) if values else float("nan")


__all__ = ["accuracy_counts", "class_counts", "balanced_accuracy", "personalised_summary", "balanced_summary",
           "harmonic_mean"]
