"""Training and evaluation of a :class:`RetrievalModel` (centralised; a client's local update)."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fedrs.evaluate.retrieval import TIES, RetrievalScores, retrieval_scores, scores_by_ties
from fedrs.losses.retrieval import HMMCLoss, caption_groups
from fedrs.retrieval.data import RetrievalSet
from fedrs.retrieval.model import RetrievalModel


def batch_terms(model: RetrievalModel, loss: HMMCLoss, images: torch.Tensor | None,
                tokens: torch.Tensor | None, same_caption: torch.Tensor | None = None,
                **bodies: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Loss terms of one batch; a second, augmented pass only when the loss uses it.

    ``same_caption``: the batch's caption group ids ``[B]`` (``caption_groups(captions)[cap_idx]``),
    so that another image's identical caption string is no negative (``loss.duplicate_captions``).
    ``image_body``/``text_body``: precomputed outputs of a frozen tower body (see :func:`frozen_bodies`).
    """
    image, text = model(images, tokens, **bodies)
    image_aug = text_aug = None
    if loss.needs_augmented:
        image_aug, text_aug = model(images, tokens, augment=True)
    return loss.terms(image, text, image_aug, text_aug, same_caption=same_caption)


@torch.no_grad()
def frozen_bodies(model: RetrievalModel, loss: HMMCLoss, data: RetrievalSet, tokens: torch.Tensor,
                  batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Body outputs of the towers nothing trains inside, for every image / caption, computed once.

    Exact, since a frozen body is deterministic; nothing is cached when the loss needs the
    augmented view (it re-runs the bodies with input dropout).
    """
    if loss.needs_augmented:
        return {}
    device, out = model.device, {}
    if not model.body_trains("vision"):
        out["image_body"] = torch.cat([model.image_body(data.images[i:i + batch_size].to(device))
                                       for i in range(0, len(data), batch_size)])
    if not model.body_trains("text"):
        out["text_body"] = torch.cat([model.text_body(tokens[i:i + batch_size].to(device))
                                      for i in range(0, len(tokens), batch_size)])
    return out


def make_optimizer(model: RetrievalModel, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer | None:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay) if params else None


def train_epochs(model: RetrievalModel, loss: HMMCLoss, data: RetrievalSet, *, epochs: int,
                 batch_size: int, lr: float, weight_decay: float = 0.0, seed: int = 0,
                 optimizer: torch.optim.Optimizer | None = None, max_steps: int | None = None,
                 progress: bool | str = False, val: RetrievalSet | None = None,
                 on_epoch: Callable[[dict], None] | None = None, lr_decay_every: int = 0,
                 lr_decay: float = 0.7, val_every: int = 1) -> dict[str, Any]:
    """Train the model's trainable parts with AdamW (unless ``optimizer``); ``lr_decay_every`` > 0
    multiplies the learning rate by ``lr_decay`` after every that many epochs (a step schedule).

    Batches hold every image once per epoch with one random caption each; another image's
    identical caption string is no negative (the loss's ``duplicate_captions``). With ``val`` (a
    validation split of the *training* images, :meth:`RetrievalSet.split_validation`), mR
    (pessimistic ties) on it is computed at the end of every ``val_every``-th epoch and of the
    last. Returns ``{"loss"}`` (mean over
    all steps), ``"steps"``, ``"samples"`` and ``"history"``: one ``{"epoch", "loss", "steps"[,
    "val_mR"]}`` per epoch, also passed to ``on_epoch``. A model without trainable parameters
    (zero-shot) is returned untouched.
    """
    optimizer = optimizer or make_optimizer(model, lr, weight_decay)
    if optimizer is None or epochs <= 0:
        return {"loss": float("nan"), "steps": 0, "samples": 0, "history": []}
    tokens = model.tokenize(data.captions)
    groups = caption_groups(data.captions)  # once per training set: equal strings, equal id
    gen = torch.Generator().manual_seed(seed)
    device = model.device
    model.eval()
    cached = frozen_bodies(model, loss, data, tokens)
    model.train()
    total, steps, samples, history = 0.0, 0, 0, []
    desc = progress if isinstance(progress, str) else "train"
    for epoch in tqdm(range(1, epochs + 1), desc=desc, disable=not progress, unit="epoch"):
        epoch_total, epoch_steps = 0.0, 0
        for img_idx, cap_idx in data.batches(batch_size, gen):
            if len(img_idx) < 2:  # a contrastive batch needs a negative
                continue
            bodies = {"image_body": cached["image_body"][img_idx] if "image_body" in cached else None,
                      "text_body": cached["text_body"][cap_idx] if "text_body" in cached else None}
            images = data.images[img_idx].to(device) if bodies["image_body"] is None else None
            text = tokens[cap_idx].to(device) if bodies["text_body"] is None else None
            terms = batch_terms(model, loss, images, text, groups[cap_idx], **bodies)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            epoch_total += float(terms["loss"].detach())
            epoch_steps += 1
            samples += len(img_idx)
            if max_steps is not None and steps + epoch_steps >= max_steps:
                break
        total, steps = total + epoch_total, steps + epoch_steps
        row: dict[str, float] = {"epoch": epoch, "loss": epoch_total / max(epoch_steps, 1), "steps": epoch_steps,
                                 "lr": optimizer.param_groups[0]["lr"]}
        if lr_decay_every and epoch % lr_decay_every == 0:
            for group in optimizer.param_groups:
                group["lr"] *= lr_decay
        last = epoch == epochs or (max_steps is not None and steps >= max_steps)
        if val is not None and (epoch % val_every == 0 or last):
            row["val_mR"] = evaluate(model, val).mr  # encode_set keeps the training mode
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        if max_steps is not None and steps >= max_steps:
            break
    model.eval()
    return {"loss": total / max(steps, 1), "steps": steps, "samples": samples, "history": history}


def validation_summary(history: list[dict], key: str = "val_mR", unit: str = "epoch") -> dict[str, Any]:
    """The validation curve of a training history (rows with ``unit`` and ``key``): ``val_mR``
    (the curve) at ``val_<unit>s``, ``best_<unit>`` and ``best_val_mR`` (first maximum),
    ``final_val_mR``. The best epoch is for reading the curve; reported numbers are the final
    epoch's."""
    rows = [r for r in history if key in r]
    if not rows:
        return {"val_mR": [], f"val_{unit}s": [], f"best_{unit}": None, "best_val_mR": None, "final_val_mR": None}
    curve = [float(r[key]) for r in rows]
    best = max(range(len(curve)), key=lambda i: (curve[i] == curve[i], curve[i], -i))  # NaN never best
    return {"val_mR": curve, f"val_{unit}s": [int(r[unit]) for r in rows], f"best_{unit}": int(rows[best][unit]),
            "best_val_mR": curve[best], "final_val_mR": curve[-1]}


@torch.no_grad()
def encode_set(model: RetrievalModel, data: RetrievalSet,
               batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and caption embeddings ``([N, D], [n_captions, D])`` in eval mode."""
    was_training = model.training
    model.eval()
    device = model.device
    tokens = model.tokenize(data.captions)
    img = torch.cat([model.encode_image(data.images[i:i + batch_size].to(device)).float().cpu()
                     for i in range(0, len(data), batch_size)])
    txt = torch.cat([model.encode_text(tokens[i:i + batch_size].to(device)).float().cpu()
                     for i in range(0, len(tokens), batch_size)])
    model.train(was_training)
    return img, txt


def evaluate(model: RetrievalModel, data: RetrievalSet, batch_size: int = 256,
             ties: str = "pessimistic") -> RetrievalScores:
    """Recall@1/5/10 both ways and mR on ``data`` (every caption, every image)."""
    img, txt = encode_set(model, data, batch_size)
    return retrieval_scores(img, txt, data.caption_image, ties=ties)


def evaluate_by_ties(model: RetrievalModel, data: RetrievalSet, batch_size: int = 256,
                     ties=TIES) -> dict[str, RetrievalScores]:
    """:func:`evaluate` under every tie convention (:data:`fedrs.evaluate.retrieval.TIES`), encoding once;
    :func:`fedrs.evaluate.retrieval.tie_row` makes it one table row."""
    img, txt = encode_set(model, data, batch_size)
    return scores_by_ties(img, txt, data.caption_image, ties=ties)


@torch.no_grad()
def search_images(model: RetrievalModel, data: RetrievalSet, queries: list[str], k: int = 5,
                  image_features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` images of ``data`` for each query caption: ``(indices [Q, k], cosines [Q, k])``.

    ``image_features``: the first output of :func:`encode_set`, to avoid re-encoding the images.
    """
    model.eval()
    if image_features is None:
        image_features = encode_set(model, data)[0]
    text = model.encode_text(model.tokenize(queries).to(model.device)).float().cpu()
    sim = F.normalize(text, dim=-1) @ F.normalize(image_features.float(), dim=-1).T
    top = sim.topk(min(k, sim.shape[1]), dim=1)
    return top.indices, top.values


__all__ = ["search_images", "batch_terms", "frozen_bodies", "make_optimizer", "train_epochs", "encode_set",
           "evaluate", "evaluate_by_ties", "validation_summary"]
