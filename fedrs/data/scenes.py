"""Scene-classification datasets as lists of (image path, label).

``load_scene_dataset(name)`` reads ``$FEDRS_DATA/<name>/fedrs_manifest.json`` (written by
``fedrs data import``) and returns a :class:`SceneDataset`: classes are the official folder names
sorted (label ``i`` is ``classnames[i]``), samples sorted by class then file. Nothing is decoded
here; the images were all decoded once at import.

``"AID-holdout"`` is AID minus every AID image used by RSICD training (``RSICD/images.csv``),
and minus exact copies of them (content hash), in AID's 30-class label space: the only AID view
allowed for evaluation, since the offline backbone is pretrained on RSICD-train AID images.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from fedrs.errors import DataError

from .registry import (
    AID_HOLDOUT, SceneDatasetSpec, get_spec, normalise, prompt_names, read_manifest,
    resolve_root,
)


@dataclass(eq=False)
class SceneDataset:
    """Image paths and integer labels of one scene-classification dataset (or a view of it)."""

    name: str
    classnames: list[str]
    prompt_names: list[str]
    paths: list[Path]
    labels: list[int]
    stems: list[str] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    root: Path | None = None  # the dataset folder in the data root

    def __post_init__(self) -> None:
        n = len(self.paths)
        if not self.stems:
            self.stems = [p.stem for p in self.paths]
        if len(self.labels) != n or len(self.stems) != n:
            raise ValueError("paths, labels and stems must have the same length")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Path, int]:
        i = operator.index(index)
        return self.paths[i], self.labels[i]

    def __iter__(self) -> Iterator[tuple[Path, int]]:
        return iter(zip(self.paths, self.labels))

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def class_counts(self) -> list[int]:
        counts = [0] * len(self.classnames)
        for label in self.labels:
            counts[label] += 1
        return counts

    def subset(self, indices: Iterable[int], name: str | None = None) -> "SceneDataset":
        """The samples at ``indices`` (in that order), with the same class list."""
        idx = [operator.index(i) for i in indices]

        def pick(values: list) -> list:
            return [values[i] for i in idx] if values else []

        return replace(self, name=name or self.name, paths=pick(self.paths),
                       labels=pick(self.labels), stems=pick(self.stems), sizes=pick(self.sizes),
                       hashes=pick(self.hashes))

    def __repr__(self) -> str:
        return (f"SceneDataset({self.name!r}, {len(self.classnames)} classes, "
                f"{len(self.paths)} images, root={str(self.root)!r})")


def load_scene_dataset(name: str, root: str | Path | None = None,
                       classname_overrides: Mapping[str, str] | None = None) -> SceneDataset:
    """An imported scene dataset (or the ``"AID-holdout"`` view) from the data root: a registered
    one, or one imported under a name of its own (``fedrs data import PATH --name NAME``).

    ``classname_overrides`` maps official folder names to the readable names used in prompts.
    """
    root = resolve_root(root)
    if normalise(name) == normalise(AID_HOLDOUT):
        return _load_aid_holdout(root, classname_overrides)
    spec = get_spec(name, root)
    if not isinstance(spec, SceneDatasetSpec):
        raise DataError(f"{spec.name!r} is a caption set, not a scene dataset: "
                        f"use load_caption_set({spec.name!r})")
    return _from_manifest(read_manifest(root, spec.name), root, spec, classname_overrides)


def _from_manifest(manifest: dict, root: Path, spec: SceneDatasetSpec | None,
                   overrides: Mapping[str, str] | None) -> SceneDataset:
    name = manifest["name"]
    folder = root / name
    classnames = sorted(c["name"] for c in manifest["classes"])
    label_of = {c: i for i, c in enumerate(classnames)}
    images = sorted(manifest["images"], key=lambda im: (label_of[im["label"]], im["path"]))
    return SceneDataset(
        name=name,
        classnames=classnames,
        prompt_names=prompt_names(spec, classnames, overrides),
        paths=[folder / im["path"] for im in images],
        labels=[label_of[im["label"]] for im in images],
        stems=[Path(im["path"]).stem for im in images],
        sizes=[tuple(im["size"]) for im in images],
        hashes=[im.get("sha256", "") for im in images],
        root=folder,
    )


def _load_aid_holdout(root: Path, overrides: Mapping[str, str] | None) -> SceneDataset:
    from .captions import training_scene_stems  # captions resolve through scenes: import late

    missing = [n for n in ("AID", "RSICD") if not (root / n / "fedrs_manifest.json").is_file()]
    if missing:
        raise DataError(
            f"{AID_HOLDOUT} needs AID and RSICD imported in {root}; missing: {', '.join(missing)}: "
            f"run `fedrs data import AID.zip RSICD/` (or `fedrs data import <folder holding both>`)"
        )
    aid = load_scene_dataset("AID", root, overrides)
    used = training_scene_stems(root, "RSICD")
    index = {stem: i for i, stem in enumerate(aid.stems)}
    unknown = sorted(used - set(index))
    if unknown:
        raise DataError(
            f"RSICD/images.csv maps {len(unknown)} training images to AID images that the AID "
            f"import lacks (e.g. {unknown[:3]}): re-import the official AID release "
            f"(`fedrs data import AID.zip --force`)"
        )
    used_hashes = {aid.hashes[index[s]] for s in used} - {""}
    keep = [i for i, (stem, digest) in enumerate(zip(aid.stems, aid.hashes))
            if stem not in used and digest not in used_hashes]
    return aid.subset(keep, name=AID_HOLDOUT)


def synthetic_scene_dataset(folder: str | Path, classnames: Sequence[str], per_class: int = 10,
                            name: str = "Synth") -> SceneDataset:
    """A tiny scene dataset of 32 px PNGs written into ``folder``, one colour cast per class
    (class ``c`` adds 160 to RGB channel ``c % 3``), seeded: the data of the test suite and of
    benchmarks' smoke runs, learnable in a few steps by any backbone."""
    import numpy as np
    from PIL import Image

    folder = Path(folder)
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for c in range(len(classnames)):
        for i in range(per_class):
            arr = rng.integers(0, 90, (32, 32, 3)) + np.eye(3, dtype=int)[c % 3] * 160
            path = folder / f"{c}_{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr.astype("uint8")).save(path)
            paths.append(path)
            labels.append(c)
    return SceneDataset(name=name, classnames=list(classnames), prompt_names=list(classnames), paths=paths,
                        labels=labels)


__all__ = ["SceneDataset", "load_scene_dataset", "synthetic_scene_dataset"]
