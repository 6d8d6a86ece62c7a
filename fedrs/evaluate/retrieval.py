"""Image-text retrieval metrics: recall@K both ways and mR, from a similarity matrix in batches.

Conventions (the usual ones of the RSITR benchmarks, made explicit):

* image->text: an image's rank is the best (lowest) rank among *all* its captions;
* text->image: a caption has exactly one relevant image;
* a rank is the number of *non-relevant* items scoring **at least as high** as the best relevant
  one (0 = retrieved first). Ties therefore count against the model (``ties="pessimistic"``, the
  default), so a degenerate model that scores everything equally gets recall 0, never 100;
  other relevant captions of the same image never push an image down. ``ties="optimistic"``
  counts only strictly higher non-relevant items (an upper bound; the argsort-based scripts of
  the literature land in between, depending on index order). Ties are not rare: UCM-Captions
  repeats caption strings verbatim across images (155 of its 210 test images have only
  captions that another test image also has), and equal strings have equal embeddings;
* R@K = 100 * fraction of queries with rank < K; mR = mean of R@1/5/10 of both directions.

The similarity matrix ``[n_images, n_captions]`` is either given whole or computed block by block
from features (:func:`retrieval_scores`), so memory stays ``O(batch * n)``.
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

    def as_row(self) -> dict[str, float]:
        """Flat ``{"i2t_r1": .., ..., "t2i_r10": .., "mR": ..}`` for tables."""
        row = {f"i2t_r{k}": v for k, v in self.i2t.items()}
        row.update({f"t2i_r{k}": v for k, v in self.t2i.items()})
        row["mR"] = self.mr
        return row

    def __str__(self) -> str:
        fmt = "/".join
        return (f"I2T R@{fmt(str(k) for k in self.i2t)} {fmt(f'{v:.2f}' for v in self.i2t.values())} | "
                f"T2I {fmt(f'{v:.2f}' for v in self.t2i.values())} | mR {self.mr:.2f}")


TIES = ("pessimistic", "optimistic")


def _ranks(rows: Callable[[int, int], torch.Tensor], n_rows: int,
           positives: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
           ties: str = "pessimistic") -> torch.Tensor:
    """Rank of each query row: non-relevant items scoring >= the best relevant one."""
    out = []
    for start in range(0, n_rows, batch_size):
        stop = min(start + batch_size, n_rows)
        sim = rows(start, stop).float()
        pos = positives(torch.arange(start, stop, device=sim.device))
        if not bool(pos.any(dim=1).all()):
            raise ValueError("every query needs at least one relevant item (check caption_image)")
        best = sim.masked_fill(~pos, float("-inf")).max(dim=1).values
        above = sim >= best[:, None] if ties == "pessimistic" else sim > best[:, None]
        out.append((above & ~pos).sum(dim=1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def _recalls(ranks: torch.Tensor, ks: Sequence[int]) -> dict[int, float]:
    return {k: 100.0 * float((ranks < k).double().mean()) for k in ks}


def scores_from_rows(image_rows: Callable[[int, int], torch.Tensor],
                     caption_rows: Callable[[int, int], torch.Tensor],
                     caption_image: Sequence[int] | torch.Tensor, n_images: int,
                     ks: Sequence[int] = KS, batch_size: int = 512,
                     ties: str = "pessimistic") -> RetrievalScores:
    """Scores from two row providers: ``image_rows(a, b)`` = ``S[a:b]``, ``caption_rows(a, b)`` = ``S[:, a:b].T``."""
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    cap_img = torch.as_tensor(caption_image, dtype=torch.long).cpu()
    if cap_img.numel() and (int(cap_img.min()) < 0 or int(cap_img.max()) >= n_images):
        raise ValueError(f"caption_image must index the {n_images} images")

    def image_pos(idx):  # [b, n_captions]: caption belongs to the query image
        return cap_img.to(idx.device)[None, :] == idx[:, None]

    def caption_pos(idx):  # [b, n_images]: the caption's own image
        return torch.arange(n_images, device=idx.device)[None, :] == cap_img.to(idx.device)[idx][:, None]

    i2t = _ranks(image_rows, n_images, image_pos, batch_size, ties)
    t2i = _ranks(caption_rows, len(cap_img), caption_pos, batch_size, ties)
    return RetrievalScores(_recalls(i2t, ks), _recalls(t2i, ks), i2t, t2i)


def scores_from_similarity(similarity: torch.Tensor, caption_image: Sequence[int] | torch.Tensor,
                           ks: Sequence[int] = KS, batch_size: int = 512,
                           ties: str = "pessimistic") -> RetrievalScores:
    """Scores from a full similarity matrix ``[n_images, n_captions]`` (processed in row blocks)."""
    return scores_from_rows(lambda a, b: similarity[a:b], lambda a, b: similarity[:, a:b].T,
                            caption_image, similarity.shape[0], ks, batch_size, ties)


def retrieval_scores(image_features: torch.Tensor, text_features: torch.Tensor,
                     caption_image: Sequence[int] | torch.Tensor, ks: Sequence[int] = KS,
                     batch_size: int = 512, ties: str = "pessimistic") -> RetrievalScores:
    """Scores of cosine similarities between features, computed block by block."""
    img = F.normalize(image_features.float(), dim=-1)
    txt = F.normalize(text_features.float(), dim=-1)
    return scores_from_rows(lambda a, b: img[a:b] @ txt.T, lambda a, b: txt[a:b] @ img.T,
                            caption_image, img.shape[0], ks, batch_size, ties)


__all__ = ["KS", "TIES", "RetrievalScores", "retrieval_scores", "scores_from_similarity", "scores_from_rows"]
