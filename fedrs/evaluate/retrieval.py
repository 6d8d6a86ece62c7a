"""Image-text retrieval metrics: recall@K both ways and mR, from a similarity matrix in batches.

Conventions (the usual ones of the RSITR benchmarks, made explicit):

* image->text: an image's rank is the best (lowest) rank among *all* its captions;
* text->image: a caption has exactly one relevant image;
* a rank is the number of *non-relevant* items placed before the best relevant one (0 = retrieved
  first); other relevant captions of the same image never push an image down;
* R@K = 100 * fraction of queries with rank < K; mR = mean of R@1/5/10 of both directions.

Ties (``ties``, :data:`TIES`) decide where a non-relevant item that scores *exactly as high* as
the best relevant one is placed:

* ``"pessimistic"`` (the default): before it, so ties count against the model and a degenerate
  model that scores everything equally gets recall 0, never 100 (a lower bound);
* ``"optimistic"``: after it: only strictly higher items count (an upper bound);
* ``"argsort"``: the order of the papers' evaluation scripts (VSE++, SCAN and the RSITR code built
  on them: ``inds = np.argsort(scores)[::-1]``, rank = position of the first relevant index):
  descending score, equal scores in *descending index* order, i.e. a tied item placed before the
  relevant one exactly when its index is higher. NumPy's default sort is not stable, so the
  scripts' own order of ties is implementation-defined; fedrs fixes it as the stable version of
  their expression (``np.argsort(scores, kind="stable")[::-1]``), always between the two bounds.
  Use this column to set numbers beside published ones.

Ties are not rare: UCM-Captions repeats caption strings verbatim across images (155 of its 210
test images have only captions that another test image also has), and equal strings have equal
embeddings, so image->text recall moves with the convention.

The similarity matrix ``[n_images, n_captions]`` is either given whole or computed block by block
from features (:func:`retrieval_scores`), so memory stays ``O(batch * n)``. :func:`scores_by_ties`
computes every convention in one pass; :func:`tie_row` flattens them into one table row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

KS = (1, 5, 10)


@dataclass
class RetrievalScores:
    """Recall@K (percent) image->text and text->image, mR, and the per-query ranks."""

    i2t: dict[int, float]
    t2i: dict[int, float]
    i2t_ranks: torch.Tensor = field(repr=False)
    t2i_ranks: torch.Tensor = field(repr=False)

    @property
    def mr(self) -> float:
        values = [*self.i2t.values(), *self.t2i.values()]
        return sum(values) / len(values)

    def as_row(self, suffix: str = "") -> dict[str, float]:
        """Flat ``{"i2t_r1": .., ..., "t2i_r10": .., "mR": ..}`` for tables (each key + ``suffix``)."""
        row = {f"i2t_r{k}{suffix}": v for k, v in self.i2t.items()}
        row.update({f"t2i_r{k}{suffix}": v for k, v in self.t2i.items()})
        row[f"mR{suffix}"] = self.mr
        return row

    def __str__(self) -> str:
        fmt = "/".join
        return (f"I2T R@{fmt(str(k) for k in self.i2t)} {fmt(f'{v:.2f}' for v in self.i2t.values())} | "
                f"T2I {fmt(f'{v:.2f}' for v in self.t2i.values())} | mR {self.mr:.2f}")


TIES = ("pessimistic", "optimistic", "argsort")


def _check_ties(ties: Sequence[str]) -> None:
    bad = [t for t in ties if t not in TIES]
    if bad or not ties:
        raise ValueError(f"ties must be one of {TIES}, got {bad[0] if bad else ties!r}")


def _ranks(rows: Callable[[int, int], torch.Tensor], n_rows: int,
           positives: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
           ties: Sequence[str] = ("pessimistic",)) -> dict[str, torch.Tensor]:
    """Rank of each query row under each tie convention (see the module docstring): non-relevant
    items scoring above the best relevant one, plus those tying with it that the convention
    places first (all, none, or those with a higher index than the last best relevant one)."""
    out: dict[str, list[torch.Tensor]] = {t: [] for t in ties}
    for start in range(0, n_rows, batch_size):
        stop = min(start + batch_size, n_rows)
        sim = rows(start, stop).float()
        pos = positives(torch.arange(start, stop, device=sim.device))
        if not bool(pos.any(dim=1).all()):
            raise ValueError("every query needs at least one relevant item (check caption_image)")
        best = sim.masked_fill(~pos, float("-inf")).max(dim=1, keepdim=True).values
        higher = ((sim > best) & ~pos).sum(dim=1)
        tied = (sim == best) & ~pos
        for t in ties:
            if t == "pessimistic":
                extra = tied.sum(dim=1)
            elif t == "optimistic":
                extra = torch.zeros_like(higher)
            else:  # argsort: descending index among equal scores
                column = torch.arange(sim.shape[1], device=sim.device).expand_as(sim)
                last_best = torch.where(pos & (sim == best), column, -1).max(dim=1, keepdim=True).values
                extra = (tied & (column > last_best)).sum(dim=1)
            out[t].append((higher + extra).cpu())
    return {t: torch.cat(v) if v else torch.zeros(0, dtype=torch.long) for t, v in out.items()}


def _recalls(ranks: torch.Tensor, ks: Sequence[int]) -> dict[int, float]:
    return {k: 100.0 * float((ranks < k).double().mean()) for k in ks}


def _scores(image_rows: Callable[[int, int], torch.Tensor], caption_rows: Callable[[int, int], torch.Tensor],
            caption_image: Sequence[int] | torch.Tensor, n_images: int, ks: Sequence[int],
            batch_size: int, ties: Sequence[str]) -> dict[str, RetrievalScores]:
    _check_ties(ties)
    cap_img = torch.as_tensor(caption_image, dtype=torch.long).cpu()
    if cap_img.numel() and (int(cap_img.min()) < 0 or int(cap_img.max()) >= n_images):
        raise ValueError(f"caption_image must index the {n_images} images")

    def image_pos(idx):  # [b, n_captions]: caption belongs to the query image
        return cap_img.to(idx.device)[None, :] == idx[:, None]

    def caption_pos(idx):  # [b, n_images]: the caption's own image
        return torch.arange(n_images, device=idx.device)[None, :] == cap_img.to(idx.device)[idx][:, None]

    i2t = _ranks(image_rows, n_images, image_pos, batch_size, ties)
    t2i = _ranks(caption_rows, len(cap_img), caption_pos, batch_size, ties)
    return {t: RetrievalScores(_recalls(i2t[t], ks), _recalls(t2i[t], ks), i2t[t], t2i[t]) for t in ties}


def scores_from_rows(image_rows: Callable[[int, int], torch.Tensor],
                     caption_rows: Callable[[int, int], torch.Tensor],
                     caption_image: Sequence[int] | torch.Tensor, n_images: int,
                     ks: Sequence[int] = KS, batch_size: int = 512,
                     ties: str = "pessimistic") -> RetrievalScores:
    """Scores from two row providers: ``image_rows(a, b)`` = ``S[a:b]``, ``caption_rows(a, b)`` = ``S[:, a:b].T``."""
    return _scores(image_rows, caption_rows, caption_image, n_images, ks, batch_size, (ties,))[ties]


def scores_from_similarity(similarity: torch.Tensor, caption_image: Sequence[int] | torch.Tensor,
                           ks: Sequence[int] = KS, batch_size: int = 512,
                           ties: str = "pessimistic") -> RetrievalScores:
    """Scores from a full similarity matrix ``[n_images, n_captions]`` (processed in row blocks)."""
    return scores_from_rows(lambda a, b: similarity[a:b], lambda a, b: similarity[:, a:b].T,
                            caption_image, similarity.shape[0], ks, batch_size, ties)


def _feature_rows(image_features: torch.Tensor, text_features: torch.Tensor):
    img = F.normalize(image_features.float(), dim=-1)
    txt = F.normalize(text_features.float(), dim=-1)
    return (lambda a, b: img[a:b] @ txt.T), (lambda a, b: txt[a:b] @ img.T), img.shape[0]


def retrieval_scores(image_features: torch.Tensor, text_features: torch.Tensor,
                     caption_image: Sequence[int] | torch.Tensor, ks: Sequence[int] = KS,
                     batch_size: int = 512, ties: str = "pessimistic") -> RetrievalScores:
    """Scores of cosine similarities between features ``[n_images, D]`` and ``[n_captions, D]``,
    computed block by block."""
    image_rows, caption_rows, n = _feature_rows(image_features, text_features)
    return scores_from_rows(image_rows, caption_rows, caption_image, n, ks, batch_size, ties)


def scores_by_ties(image_features: torch.Tensor, text_features: torch.Tensor,
                   caption_image: Sequence[int] | torch.Tensor, ks: Sequence[int] = KS,
                   batch_size: int = 512, ties: Sequence[str] = TIES) -> dict[str, RetrievalScores]:
    """:func:`retrieval_scores` under every convention of ``ties`` (default all three), from one
    pass over the similarities."""
    image_rows, caption_rows, n = _feature_rows(image_features, text_features)
    return _scores(image_rows, caption_rows, caption_image, n, ks, batch_size, tuple(ties))


def tie_row(by_ties: dict[str, RetrievalScores], primary: str = "pessimistic") -> dict[str, float]:
    """One flat table row: the ``primary`` convention's recalls and mR under their plain names
    (``i2t_r1`` .. ``mR``), every other convention's with its name as suffix (``mR_optimistic``,
    ``i2t_r1_argsort``, ...)."""
    row = dict(by_ties[primary].as_row())
    for t, scores in by_ties.items():
        if t != primary:
            row.update(scores.as_row(f"_{t}"))
    return row


__all__ = ["KS", "TIES", "RetrievalScores", "retrieval_scores", "scores_by_ties", "scores_from_similarity",
           "scores_from_rows", "tie_row"]
