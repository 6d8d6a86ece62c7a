"""Retrieval data: preprocessed images, their captions, and one-caption-per-image batches.

:class:`RetrievalSet` turns a :class:`fedrs.data.captions.CaptionSet` (``load_caption_set``) into
what training and evaluation need: the images preprocessed once for a backbone (a tensor kept
in memory; UCM-Captions at 64 px is ~100 MB, at 224 px ~1.2 GB), the flat caption list and the
caption -> image index. Training batches hold each image at most once with *one* of its captions
drawn at random, so no other row of the batch is the same image's caption. Another image's
caption can still be the *same string* (UCM-Captions repeats 91% of its captions verbatim): the
loss masks those by caption group (:func:`fedrs.losses.retrieval.caption_groups`). Clients of a
federated run hold disjoint image subsets (:meth:`RetrievalSet.subset`),
drawn at random (IID) or skewed by the images' scene classes (:func:`split_clients`: Dirichlet or
pathological, the same splitter as the classification partitions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from fedrs.backbone.factory import CHECKPOINT_NAME, Backbone
from fedrs.backbone.features import load_images
from fedrs.errors import DataError


@dataclass(eq=False)
class RetrievalSet:
    """Images (preprocessed) and captions of one caption-set split."""

    name: str
    image_ids: list[str]
    images: torch.Tensor            # [N, 3, H, W] preprocessed for the backbone
    captions: list[str]             # flat, grouped by image
    caption_image: torch.Tensor     # [n_captions] -> image index
    labels: list[str | None] | None = None  # scene class per image, when the caption set names it
    #: what the set is, for table labels: "RSICD test: the 1,027 of 1,093 images present in the shipped AID copy"
    description: str = ""

    def __len__(self) -> int:
        return len(self.image_ids)

    def describe(self) -> str:
        """The label every table of this set carries (:attr:`description`, else name and size)."""
        return self.description or f"{self.name}: {len(self):,} images"

    @property
    def num_captions(self) -> int:
        return len(self.captions)

    @classmethod
    def from_items(cls, name: str, items: Sequence, backbone: Backbone,
                   limit: int | None = None, threads: int = 2) -> RetrievalSet:
        """From ``CaptionedImage`` items with image paths (``limit``: the first N, for smoke runs)."""
        items = [it for it in items if it.path is not None][:limit]
        if not items:
            raise DataError(f"{name}: no images to retrieve: import the caption set with its images "
                            f"(`fedrs data import ../shared/data`)")
        batch = load_images([it.path for it in items], backbone.preprocess, threads=threads)
        images = batch(0, len(items))
        captions, owner = [], []
        for i, it in enumerate(items):
            captions += list(it.captions)
            owner += [i] * len(it.captions)
        return cls(name, [it.image_id for it in items], images, captions, torch.tensor(owner),
                   [it.label for it in items])

    @classmethod
    def load(cls, dataset: str, split: str, backbone: Backbone, limit: int | None = None,
             root=None) -> RetrievalSet:
        """``load_caption_set(dataset, split)`` with its images, preprocessed for ``backbone``.

        ``split`` may join several with ``+`` (``"train+val"``: the paper's 1,890 UCM training images).
        """
        from fedrs.data import load_caption_set

        items, name, listed, source = [], dataset, 0, ""
        for part in split.split("+"):
            cs = load_caption_set(dataset, split=part, root=root)
            listed += len(cs.items)
            cs = cs.with_images()
            items += cs.items
            name, source = cs.name, cs.image_source.split(" via ")[0]
        out = cls.from_items(f"{name}/{split}", items, backbone, limit=limit)
        out.description = split_description(name, split, len(items), listed, source)
        if limit is not None and len(out) < len(items):
            out.description += f", first {len(out):,} only"
        return out

    def subset(self, indices: Sequence[int], name: str | None = None) -> RetrievalSet:
        """The given images with all their captions (a client's shard)."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        remap = torch.full((len(self),), -1, dtype=torch.long)
        remap[idx] = torch.arange(len(idx))
        keep = [j for j, i in enumerate(self.caption_image.tolist()) if remap[i] >= 0]
        return RetrievalSet(name or f"{self.name}[{len(idx)}]", [self.image_ids[i] for i in idx.tolist()],
                            self.images[idx], [self.captions[j] for j in keep],
                            remap[self.caption_image[keep]],
                            None if self.labels is None else [self.labels[i] for i in idx.tolist()])

    def split_validation(self, fraction: float, seed: int = 0) -> tuple[RetrievalSet, RetrievalSet | None]:
        """``(train, val)``: :func:`validation_indices` as two subsets (``val`` None for fraction 0)."""
        train_idx, val_idx = validation_indices(len(self), fraction, seed)
        if not val_idx:
            return self, None
        return (self.subset(train_idx, f"{self.name} minus val"),
                self.subset(val_idx, f"{self.name} val ({fraction:.0%}, seed {seed})"))

    def captions_of(self) -> list[list[int]]:
        """Caption indices per image."""
        out: list[list[int]] = [[] for _ in range(len(self))]
        for j, i in enumerate(self.caption_image.tolist()):
            out[i].append(j)
        return out

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch: ``(image indices, caption indices)`` per batch; every image once, one caption each."""
        per_image = self.captions_of()
        order = torch.randperm(len(self), generator=generator)
        for start in range(0, len(order), batch_size):
            img = order[start:start + batch_size]
            cap = [per_image[i][int(torch.randint(len(per_image[i]), (1,), generator=generator))]
                   for i in img.tolist()]
            yield img, torch.tensor(cap)


def split_description(dataset: str, split: str, with_images: int, listed: int, source: str = "") -> str:
    """``"RSICD test: the 1,027 of 1,093 images present in the shipped AID copy"``, or
    ``"UCM-Captions test: 210 images"`` when every listed image is present."""
    if with_images == listed:
        return f"{dataset} {split}: {listed:,} images"
    return (f"{dataset} {split}: the {with_images:,} of {listed:,} images present in the shipped "
            f"{source or 'local'} copy")


def validation_indices(n_images: int, fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """``(train, val)`` image indices: a seeded random ``round(fraction * n)`` images (at least one,
    and at least one left to train) for validation, the rest for training; both sorted.
    ``fraction`` 0: every image trains."""
    if fraction <= 0:
        return list(range(n_images)), []
    if n_images < 2:
        raise DataError(f"cannot hold out a validation split from {n_images} image(s)")
    n_val = min(max(1, round(fraction * n_images)), n_images - 1)
    order = torch.randperm(n_images, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[n_val:]), sorted(order[:n_val])


#: caption sets each offline build (``fedrs backbone pretrain``, fedrs.pretrain.training) trained on
OFFLINE_PRETRAINING = {"RSICD": "RSICD training captions (over their AID images)"}


def zeroshot_note(backbone: Backbone, dataset: str) -> str:
    """Why a zero-shot row is not zero-shot, or ``""``: the offline backbones were pretrained on
    RSICD training captions, so their zero-shot RSICD row is in-domain."""
    # the rule Backbone.label uses to call weights an offline build
    ckpt = backbone.checkpoint
    offline = ckpt is not None and (backbone.pretrained is None or ckpt.name == CHECKPOINT_NAME)
    if offline and dataset in OFFLINE_PRETRAINING:
        return f"in-domain: {backbone.label} was pretrained on {OFFLINE_PRETRAINING[dataset]}"
    return ""


def split_disjoint(data: RetrievalSet, num_clients: int, seed: int = 0) -> list[list[int]]:
    """Disjoint, near-equal random image shards (IID) for ``num_clients`` clients."""
    if not 1 <= num_clients <= len(data):
        raise DataError(f"cannot split {len(data)} images over {num_clients} clients")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    return [sorted(order[c::num_clients]) for c in range(num_clients)]


def split_clients(data: RetrievalSet, cfg) -> list[list[int]]:
    """Disjoint image shards per client for a run's ``data`` section (a ``PartitionConfig``).

    ``scheme: iid`` is :func:`split_disjoint` (seed ``cfg.seed``); ``dirichlet`` / ``pathological``
    skew the clients by the images' scene classes with :func:`fedrs.data.partition.split_by_label`,
    so retrieval clients can be as heterogeneous as the classification ones."""
    if cfg.scheme == "iid":
        return split_disjoint(data, cfg.num_clients, seed=cfg.seed)
    from fedrs.data.partition import split_by_label

    if data.labels is None or any(label is None for label in data.labels):
        raise DataError(f"{data.name}: scheme {cfg.scheme!r} needs the scene class of every image, and "
                        f"this caption set does not name them all: use scheme: iid")
    classes = sorted(set(data.labels))
    index = {c: i for i, c in enumerate(classes)}
    return split_by_label([index[label] for label in data.labels], cfg)


__all__ = ["OFFLINE_PRETRAINING", "RetrievalSet", "split_clients", "split_description", "split_disjoint",
           "validation_indices", "zeroshot_note"]
