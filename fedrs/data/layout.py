"""Recognising datasets by their layout, not by file names.

A scene dataset is a folder whose sub-folders of images match a spec's official class folders; a
caption set is a folder holding a known set's caption files. :func:`find_datasets` opens every
source given to ``fedrs data import`` (expanding folders of archives) and returns what each holds,
or raises a :class:`~fedrs.errors.DataError` saying what layout was expected.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

from fedrs.errors import DataError

from .captions import identify_caption_set
from .registry import (
    SPECS, CaptionSetSpec, SceneDatasetSpec, caption_specs, find_spec, normalise, scene_specs,
)
from .sources import ARCHIVE_EXTENSIONS, DirSource, Source, is_image, open_archive, read_sha256sums

logger = logging.getLogger(__name__)

_CAPTION_FILE_EXT = (".json", ".txt", ".csv", ".tsv", ".md")


@dataclass
class SceneHit:
    """A scene dataset found in a source: where its class folders are and which images they hold."""

    spec: SceneDatasetSpec
    source: Source
    prefix: str                                  # folder holding the class folders ("" = top)
    members: dict[str, list[str]]                # source class folder -> image member names
    score: float

    @property
    def name(self) -> str:
        return self.spec.name

    def member_names(self) -> list[str]:
        return [m for ms in self.members.values() for m in ms]


@dataclass
class CaptionHit:
    """A caption set found in a source: its caption files and, if it has one, its image folder."""

    spec: CaptionSetSpec
    source: Source
    prefix: str                                  # folder holding the caption files
    files: list[str]                             # caption files (member names)
    image_dir: str | None = None                 # image folder name inside the set
    images: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def member_names(self) -> list[str]:
        return self.files + self.images


def join_member(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _name_matches(spec, *names: str) -> bool:
    keys = {normalise(spec.name), *(normalise(a) for a in spec.aliases),
            *(normalise(PurePosixPath(a).stem) for a in spec.archive_names)}
    return any(normalise(n) in keys for n in names if n)


def _detect_scenes(source: Source) -> list[SceneHit]:
    """Folders whose sub-folders of images match a spec's class folders (Jaccard >= 0.5)."""
    tree: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name in source.names():
        parts = name.split("/")
        if len(parts) >= 2 and is_image(name):
            tree["/".join(parts[:-2])][parts[-2]].append(name)
    candidates = []
    for prefix, classes in tree.items():
        found = {normalise(c) for c in classes}
        for spec in scene_specs():
            official = {normalise(c) for c in spec.classes}
            common = len(found & official)
            score = common / len(found | official)
            if score >= 0.5 and common >= 2:
                named = _name_matches(spec, PurePosixPath(prefix).name, *prefix.split("/")[:1],
                                      source.hint)
                candidates.append((score, named, spec, prefix))
    candidates.sort(key=lambda c: (-c[0], not c[1], c[3]))
    hits, used_specs, used_prefixes = [], set(), set()
    for score, _, spec, prefix in candidates:
        if spec.name in used_specs or prefix in used_prefixes:
            continue
        used_specs.add(spec.name)
        used_prefixes.add(prefix)
        hits.append(SceneHit(spec, source, prefix, dict(tree[prefix]), score))
    return hits


def _is_caption_folder(files: set[str]) -> bool:
    jsons = {j for s in caption_specs() for j in s.json_names}
    return bool(files & jsons) or any(
        f.endswith("_filename.txt") and f"{f[:-len('_filename.txt')]}_caps.txt" in files for f in files)


def _detect_captions(source: Source) -> tuple[list[CaptionHit], list[str]]:
    """Folders holding caption files, identified; and the caption folders not identified."""
    folders: dict[str, set[str]] = defaultdict(set)
    for name in source.names():
        folder, _, base = name.rpartition("/")
        folders[folder].add(base)
    hits, unknown = [], []
    for folder, files in sorted(folders.items()):
        if not _is_caption_folder(files):
            continue
        readers: dict[str, Callable[[], bytes]] = {
            f: (lambda f=f: source.read(join_member(folder, f))) for f in files}
        spec = identify_caption_set(PurePosixPath(folder).name, readers,
                                    source.hint if not folder else "")
        if spec is None:
            unknown.append(join_member(folder, "") or "./")
            continue
        hit = CaptionHit(spec, source, folder, sorted(
            join_member(folder, f) for f in files if f.lower().endswith(_CAPTION_FILE_EXT)))
        for image_dir in spec.image_dirs:
            under = join_member(folder, image_dir) + "/"
            images = [n for n in source.names() if n.startswith(under) and is_image(n)]
            if images:
                hit.image_dir, hit.images = image_dir, images
                break
        hits.append(hit)
    return hits, unknown


def _layout_examples() -> str:
    return "; ".join(f"{s.name}: {s.layout()}" for s in scene_specs()[:4])


def _detect(source: Source, explicit: bool) -> list[SceneHit | CaptionHit]:
    hits: list = _detect_scenes(source)
    caption_hits, unknown = _detect_captions(source)
    hits += caption_hits
    if hits or not explicit:
        return hits
    if unknown:
        raise DataError(
            f"caption files in {source.label} ({', '.join(unknown)}) belong to no known caption "
            f"set: name the folder after the set ({', '.join(s.name for s in caption_specs())})"
        )
    top = sorted({n.split("/")[0] for n in source.names() if "/" in n})
    spec = next((s for s in map(find_spec, [source.hint, *top]) if s is not None), None)
    if isinstance(spec, SceneDatasetSpec):
        raise DataError(
            f"{source.label} looks like {spec.name} by its name but does not have its official "
            f"layout: expected {spec.layout()} with the {len(spec.classes)} class folders "
            f"({', '.join(spec.classes[:5])}, ...); import the unmodified official release"
        )
    if isinstance(spec, CaptionSetSpec):
        raise DataError(
            f"{source.label} looks like {spec.name} by its name but holds none of its caption "
            f"files ({', '.join(spec.json_names)} or <split>_filename.txt + <split>_caps.txt)"
        )
    raise DataError(
        f"no known dataset layout in {source.label}: expected an official release layout "
        f"({_layout_examples()}; ...) or caption files; known datasets: "
        f"{', '.join(s.name for s in scene_specs() + caption_specs())}"
    )


def find_datasets(paths: Iterable[str | Path], sources: list[Source]) -> list[SceneHit | CaptionHit]:
    """Open every source (expanding folders of archives, appended to ``sources`` for closing)
    and recognise what each holds, in registry order. An archive beside others that holds no
    known dataset is skipped with a warning; a source given by name that holds none is an error."""
    hits, notes = [], []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise DataError(f"{path}: no such archive or folder: check the path (the shipped "
                            f"archives are in the shared data folder, e.g. ../shared/data)")
        if path.is_file():
            src = open_archive(path)
            sources.append(src)
            hits += _detect(src, explicit=True)
            continue
        sums = read_sha256sums(path)
        folder = DirSource(path, sums)
        sources.append(folder)
        found = _detect(folder, explicit=False)
        for child in sorted(path.iterdir()):
            if child.is_file() and (child.name.lower().endswith(ARCHIVE_EXTENSIONS) or child.suffix.lower() == ".rar"):
                src = open_archive(child, sums)
                sources.append(src)
                inner = _detect(src, explicit=False)
                if not inner:
                    notes.append(f"skipped {child}: no known dataset layout inside")
                found += inner
        if not found:
            _detect(folder, explicit=True)  # raises with the reason
        hits += found
    seen: dict[str, Any] = {}
    for hit in hits:
        if hit.name in seen:
            raise DataError(
                f"{hit.name} was found twice: in {seen[hit.name].source.label} and "
                f"{hit.source.label}: import only one of them"
            )
        seen[hit.name] = hit
    order = list(SPECS)
    hits.sort(key=lambda h: order.index(h.name))
    for note in notes:
        logger.warning(note)
    return hits


__all__ = ["SceneHit", "CaptionHit", "find_datasets", "join_member"]
