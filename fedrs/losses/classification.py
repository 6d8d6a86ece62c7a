"""Loss terms for prompt learning on scene classification (FedRSCLIP and its baselines).

All features are expected L2-normalised. Shapes: ``B`` batch, ``C`` classes, ``D`` feature width.

FedRSCLIP's objective is ``CE(logits, y) + lambda_dpa * L_dpa + lambda_cma * L_cma``; each term is
one function here so ablations and baselines pick them by name (:data:`DPA_KINDS`,
:data:`CMA_KINDS`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DPA_KINDS = ("cosine", "kl", "contrastive")
CMA_KINDS = ("infonce", "cosine")


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits [B, C]`` against integer ``labels [B]`` (mean over the batch)."""
    return F.cross_entropy(logits, labels)


def _cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean of ``1 - cos(a_i, b_i)`` over rows of ``a, b [N, D]``."""
    return (1.0 - F.cosine_similarity(a, b, dim=-1)).mean()


def dual_prompt_alignment_loss(
    shared: torch.Tensor,
    private: torch.Tensor,
    kind: str = "cosine",
    *,
    image_features: torch.Tensor | None = None,
    logit_scale: torch.Tensor | float | None = None,
    plain: torch.Tensor | None = None,
    temperature: float = 0.5,
) -> torch.Tensor:
    """Dual Prompt Alignment Constraint between shared and private class text features.

    Args:
        shared: ``t_s [C, D]``, class features from the shared prompt.
        private: ``t_p [C, D]``, class features from the private prompt.
        kind: ``"cosine"``: mean over classes of ``1 - cos(t_s(c), t_p(c))``;
            ``"kl"``: ``KL(p_s || p_p)`` between the class distributions that the batch's images
            ``image_features [B, D]`` get with shared-only and private-only features (scaled by
            ``logit_scale``), mean over the batch;
            ``"contrastive"``: FedRSCLIP's own prompt-wise InfoNCE at ``temperature``: for each
            class the *private* feature is the anchor, its shared feature the positive and the
            plain (hand-written prompt) feature ``plain [C, D]`` the negative, i.e.
            ``-log softmax([cos(t_p, t_s), cos(t_p, plain)] / temperature)[0]``, mean over
            classes. It pulls the private prompt towards the shared one and away from the
            hand-written prompt. It is not FedPGP's term, which anchors the *global* prompt, takes
            the frozen placeholder prompt (CLIP's prior) as the positive and the personalised
            prompt as the negative (:func:`fedrs.methods.fedpgp.prompt_wise_contrastive_loss`).
    Returns:
        a scalar tensor.
    """
    if kind == "cosine":
        return _cosine_distance(shared, private)
    if kind == "kl":
        if image_features is None or logit_scale is None:
            raise ValueError("the 'kl' dual prompt alignment needs image_features and logit_scale")
        log_p_shared = F.log_softmax(logit_scale * image_features @ shared.t(), dim=-1)
        log_p_private = F.log_softmax(logit_scale * image_features @ private.t(), dim=-1)
        return F.kl_div(log_p_private, log_p_shared, log_target=True, reduction="batchmean")
    if kind == "contrastive":
        if plain is None:
            raise ValueError("the 'contrastive' dual prompt alignment needs the plain class features")
        pos = F.cosine_similarity(private, shared, dim=-1) / temperature
        neg = F.cosine_similarity(private, plain, dim=-1) / temperature
        return -(pos - torch.logsumexp(torch.stack([pos, neg]), dim=0)).mean()
    raise ValueError(f"unknown dual prompt alignment {kind!r}; choose one of {list(DPA_KINDS)}")


def cross_modal_alignment_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    labels: torch.Tensor,
    kind: str = "infonce",
    *,
    temperature: float = 0.07,
) -> torch.Tensor:
    """Cross-Modal Feature Alignment Constraint between prompted image and text features.

    Args:
        image_features: ``v [B, D]``, prompted image features of the batch.
        text_features: ``t(y) [B, D]``, prompted text features of each image's ground-truth class
            (``t[labels]``).
        labels: ``[B]``; pairs of the same class count as positives.
        kind: ``"infonce"``: symmetric image->text and text->image InfoNCE over the batch's
            ``[B, B]`` similarity matrix ``v @ t(y).T / temperature``, where the loss of row ``i``
            is ``-log(sum_{j: y_j = y_i} exp(s_ij) / sum_j exp(s_ij))``;
            ``"cosine"``: mean of ``1 - cos(v_i, t(y_i))``.
    Returns:
        a scalar tensor.
    """
    if kind == "cosine":
        return _cosine_distance(image_features, text_features)
    if kind == "infonce":
        sim = image_features @ text_features.t() / temperature
        positive = labels.unsqueeze(0) == labels.unsqueeze(1)
        masked = sim.masked_fill(~positive, float("-inf"))
        i2t = torch.logsumexp(sim, dim=1) - torch.logsumexp(masked, dim=1)
        t2i = torch.logsumexp(sim, dim=0) - torch.logsumexp(masked, dim=0)
        return 0.5 * (i2t.mean() + t2i.mean())
    raise ValueError(f"unknown cross-modal alignment {kind!r}; choose one of {list(CMA_KINDS)}")


__all__ = [
    "DPA_KINDS", "CMA_KINDS", "classification_loss", "dual_prompt_alignment_loss",
    "cross_modal_alignment_loss",
]
