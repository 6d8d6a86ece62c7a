"""Recognising datasets by their layout, not by file names.

A scene dataset is a folder whose sub-folders of images match a spec's official class folders
*and* show one more sign of the release: the official per-class image counts, the official file
naming, or the root folder's name (a user's "My Scenes/<EuroSAT's class names>/img_001.jpg" is not
EuroSAT); a caption set is a folder holding a known set's caption files. With ``--name NAME`` a
folder that is no registered dataset is imported as a *custom* dataset: its sub-folders of images
are the classes. :func:`find_datasets` opens every source given to ``fedrs data import``
(expanding folders of archives) and returns what each holds, or raises a
:class:`~fedrs.errors.DataError` saying what layout was expected and how to import it otherwise.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

from fedrs.errors import DataError

from .captions import identify_caption_set
from .registry import (
    SPECS, CaptionSetSpec, SceneDatasetSpec, caption_specs, normalise, registry_spec, scene_specs,
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
    evidence: tuple[str, ...] = ()               # signs of the release beyond the class names
    as_name: str | None = None                   # imported under this name (--name)
    notes: list[str] = field(default_factory=list)  # what was skipped, and why

    @property
    def name(self) -> str:
        return self.as_name or self.spec.name

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
    as_name: str | None = None                   # imported under this name (--name)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.as_name or self.spec.name

    def member_names(self) -> list[str]:
        return self.files + self.images


def join_member(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _name_matches(spec, *names: str) -> bool:
    keys = {normalise(spec.name), *(normalise(a) for a in spec.aliases),
            *(normalise(PurePosixPath(a).stem) for a in spec.archive_names)}
    return any(normalise(n) in keys for n in names if n)


def _scene_tree(source: Source) -> dict[str, dict[str, list[str]]]:
    """prefix -> class folder -> image members directly inside it."""
    tree: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name in source.names():
        parts = name.split("/")
        if len(parts) >= 2 and is_image(name):
            tree["/".join(parts[:-2])][parts[-2]].append(name)
    return tree


def _stem_matches(spec: SceneDatasetSpec, folder: str, member: str) -> bool:
    pattern = (spec.file_pattern.replace("{class}", re.escape(folder))
               .replace("{initial}", re.escape(folder[:1])))
    return re.fullmatch(pattern, PurePosixPath(member).stem, re.IGNORECASE) is not None


def release_evidence(spec: SceneDatasetSpec, source: Source, prefix: str,
                     classes: dict[str, list[str]]) -> tuple[str, ...]:
    """Signs beyond the class names that ``classes`` (folder -> images) are ``spec``'s release:
    the root folder's name, the official per-class counts, the official file naming."""
    signs = []
    root_named = _name_matches(spec, PurePosixPath(prefix).name, *prefix.split("/")[:1], source.hint)
    if root_named or (prefix and normalise(prefix).endswith(normalise(spec.class_root))):
        signs.append("root folder")
    if spec.counts:
        official = {normalise(c): n for c, n in spec.counts.items()}
        if len(classes) == len(official) and all(
                official.get(normalise(d)) == len(m) for d, m in classes.items()):
            signs.append("image counts")
    members = [(d, m) for d, ms in classes.items() for m in ms]
    if members and sum(_stem_matches(spec, d, m) for d, m in members) >= 0.9 * len(members):
        signs.append("file names")
    return tuple(signs)


@dataclass
class NearMiss:
    """A folder with a registered dataset's class names but no other sign of its release."""

    spec: SceneDatasetSpec
    source: Source
    prefix: str


def _detect_scenes(source: Source) -> tuple[list[SceneHit], list[NearMiss]]:
    """Folders whose sub-folders of images match a spec's class folders (Jaccard >= 0.5) and show
    another sign of its release; and those that match by class names only."""
    tree = _scene_tree(source)
    candidates, misses = [], []
    for prefix, classes in tree.items():
        found = {normalise(c) for c in classes}
        for spec in scene_specs():
            official = {normalise(c) for c in spec.classes}
            common = len(found & official)
            score = common / len(found | official)
            if score >= 0.5 and common >= 2:
                evidence = release_evidence(spec, source, prefix, classes)
                if not evidence:
                    misses.append(NearMiss(spec, source, prefix))
                    continue
                candidates.append((score, "root folder" in evidence, spec, prefix, evidence))
    candidates.sort(key=lambda c: (-c[0], not c[1], c[3]))
    hits, used_specs, used_prefixes = [], set(), set()
    for score, _, spec, prefix, evidence in candidates:
        if spec.name in used_specs or prefix in used_prefixes:
            continue
        used_specs.add(spec.name)
        used_prefixes.add(prefix)
        hit = SceneHit(spec, source, prefix, dict(tree[prefix]), score, evidence)
        hit.notes += _skipped_notes(source, prefix, hit.members)
        hits.append(hit)
    return hits, misses


# --- what an import leaves out, in words ------------------------------------------------------

def _examples(names: list[str], n: int = 3) -> str:
    shown = ", ".join(names[:n])
    return shown + (f", ... ({len(names)} in all)" if len(names) > n else "")


def _under(prefix: str, name: str) -> bool:
    return not prefix or name.startswith(prefix + "/")


def _skipped_notes(source: Source, prefix: str, classes: dict[str, list[str]]) -> list[str]:
    """Notes on the OS junk and the non-image files inside the class folders that are left out."""
    notes = []
    junk = sorted(j for j in source.junk if _under(prefix, j))
    if junk:
        notes.append(f"skipped {len(junk)} OS file(s) ({_examples(junk)})")
    folders = {join_member(prefix, d) for d in classes}
    other = sorted(n for n in source.names() if not is_image(n) and n.rpartition("/")[0] in folders)
    if other:
        notes.append(f"skipped {len(other)} file(s) that are not images ({_examples(other)}; "
                     f"images are {', '.join(e.lstrip('.') for e in _image_exts())})")
    return notes


def _image_exts() -> tuple[str, ...]:
    from .registry import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS


# --- a folder of class sub-folders as a dataset of its own (--name) ----------------------------

def detect_custom(source: Source, name: str) -> SceneHit:
    """``source``'s folder of class sub-folders as the custom dataset ``name``.

    The class folders are the sub-folders of images of the folder that holds the most images
    (the source's top, or its one top folder). OS junk, non-image files, images outside the class
    folders and empty class folders are left out, each with a note.
    """
    tree = _scene_tree(source)
    if not tree:
        raise DataError(
            f"no images in class sub-folders ({source.label}): a dataset of your own is a folder "
            f"with one sub-folder of images per class (e.g. Forest/img1.jpg, Water/img7.png)")
    prefix = min(tree, key=lambda p: (-sum(len(m) for m in tree[p].values()), p.count("/"), p))
    classes = {d: sorted(ms) for d, ms in sorted(tree[prefix].items())}
    if len(classes) < 2:
        raise DataError(
            f"only one class folder with images ({source.label}{'/' + prefix if prefix else ''}: "
            f"{next(iter(classes))}): a classification dataset needs at least two; put each "
            f"class's images in a sub-folder of its own")
    by_key: dict[str, list[str]] = defaultdict(list)
    for d in classes:
        by_key[unicodedata.normalize("NFC", d).casefold()].append(d)
    clashes = [sorted(ds) for ds in by_key.values() if len(ds) > 1]
    if clashes:
        raise DataError(
            f"class folders that differ only in case ({source.label}: "
            f"{'; '.join(' / '.join(c) for c in clashes)}): merge or rename them")
    spec = SceneDatasetSpec(
        name=name, classes=tuple(sorted(unicodedata.normalize("NFC", d) for d in classes)),
        counts=None, class_root="images", origin="custom",
        note="your own dataset (fedrs data import --name)")
    hit = SceneHit(spec, source, prefix, classes, 1.0, ("--name",), as_name=name)
    hit.notes += _skipped_notes(source, prefix, classes)
    folders = {join_member(prefix, d) for d in classes}
    loose = sorted(n for n in source.names() if is_image(n) and _under(prefix, n)
                   and n.rpartition("/")[0] not in folders)
    if loose:
        where = f"{prefix}/" if prefix else "the top folder"
        notes = f"skipped {len(loose)} image(s) outside the class folders of {where} ({_examples(loose)})"
        hit.notes.append(notes)
    empty = sorted(d.rpartition("/")[2] for d in source.dirs()
                   if d.rpartition("/")[0] == prefix and d != prefix
                   and d.rpartition("/")[2] not in classes)
    if empty:
        hit.notes.append(f"skipped {len(empty)} class folder(s) without images: {_examples(empty, 10)}")
    return hit


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
    hits: list = []
    scene_hits, misses = _detect_scenes(source)
    hits += scene_hits
    caption_hits, unknown = _detect_captions(source)
    hits += caption_hits
    if hits or not explicit:
        return hits
    if unknown:
        raise DataError(
            f"caption files that belong to no known caption set ({source.label}: "
            f"{', '.join(unknown)}): name the folder after the set "
            f"({', '.join(s.name for s in caption_specs())})"
        )
    if misses:
        miss = misses[0]
        where = source.label + (f"/{miss.prefix}" if miss.prefix else "")
        raise DataError(
            f"the folder has {miss.spec.name}'s class folders but not its release (neither the official "
            f"per-class counts, file names nor root folder) ({where}): if it is "
            f"a dataset of your own, import it under a name of its own with `fedrs data import "
            f"{source.path} --name NAME`; if it is {miss.spec.name}, import the unmodified official "
            f"release")
    top = sorted({n.split("/")[0] for n in source.names() if "/" in n})
    spec = next((s for s in map(registry_spec, [source.hint, *top]) if s is not None), None)
    if isinstance(spec, SceneDatasetSpec):
        raise DataError(
            f"looks like {spec.name} by its name but does not have its official layout "
            f"({source.label}): expected {spec.layout()} with the {len(spec.classes)} class "
            f"folders ({', '.join(spec.classes[:5])}, ...); import the unmodified official release"
        )
    if isinstance(spec, CaptionSetSpec):
        raise DataError(
            f"looks like {spec.name} by its name but holds none of its caption files "
            f"({source.label}): expected {', '.join(spec.json_names)} or <split>_filename.txt + "
            f"<split>_caps.txt"
        )
    tree = _scene_tree(source)
    own = (f" It holds sub-folders of images ({_examples(sorted(max(tree.values(), key=len)), 4)}): "
           f"to import it as a dataset of your own, run `fedrs data import {source.path} "
           f"--name NAME`." if tree else
           " A dataset of your own needs one sub-folder of images per class, imported with "
           "`fedrs data import PATH --name NAME`.")
    raise DataError(
        f"no known dataset layout ({source.label}): expected an official release layout "
        f"({_layout_examples()}; ...) or caption files; known datasets: "
        f"{', '.join(s.name for s in scene_specs() + caption_specs())}.{own}"
    )


def find_datasets(paths: Iterable[str | Path], sources: list[Source],
                  name: str | None = None) -> list[SceneHit | CaptionHit]:
    """Open every source (expanding folders of archives, appended to ``sources`` for closing)
    and recognise what each holds, in registry order. An archive beside others that holds no
    known dataset is skipped with a warning; a source given by name that holds none is an error.

    With ``name`` the sources must hold one dataset, imported under that name: a registered
    dataset's release becomes a variant of it, any other folder of class sub-folders a custom
    dataset (:func:`detect_custom`).
    """
    hits, notes, given = [], [], []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise DataError(f"no such archive or folder ({path}): check the path (the shipped "
                            f"archives are in the shared data folder, e.g. ../shared/data)")
        if path.is_file():
            src = open_archive(path)
            sources.append(src)
            given.append(src)
            hits += _detect(src, explicit=name is None)
            continue
        sums = read_sha256sums(path)
        folder = DirSource(path, sums)
        sources.append(folder)
        given.append(folder)
        found = _detect(folder, explicit=False)
        for child in sorted(path.iterdir()):
            if child.is_file() and (child.name.lower().endswith(ARCHIVE_EXTENSIONS) or child.suffix.lower() == ".rar"):
                src = open_archive(child, sums)
                sources.append(src)
                inner = _detect(src, explicit=False)
                if not inner:
                    notes.append(f"skipped {child}: no known dataset layout inside")
                found += inner
        if not found and name is None:
            _detect(folder, explicit=True)  # raises with the reason
        hits += found
    if name is not None:
        hits = _named(hits, given, name)
        notes = []
    seen: dict[str, Any] = {}
    for hit in hits:
        if hit.name in seen:
            raise DataError(
                f"{hit.name} was found twice ({seen[hit.name].source.label} and "
                f"{hit.source.label}): import only one of them"
            )
        seen[hit.name] = hit
    order = list(SPECS)
    hits.sort(key=lambda h: order.index(h.spec.name) if h.spec.name in order else len(order))
    for note in notes:
        logger.warning(note)
    return hits


def _named(hits: list, given: list[Source], name: str) -> list:
    """The one dataset of the sources, to be imported as ``name`` (see :func:`find_datasets`)."""
    from .registry import check_dataset_name

    if len(hits) > 1:
        raise DataError(
            f"--name {name} names one dataset, but the sources hold {len(hits)} "
            f"({', '.join(h.name for h in hits)}): import them one at a time")
    if hits:
        hit = hits[0]
        if registry_spec(name) is not hit.spec:
            hit.as_name = check_dataset_name(name)
        return hits
    if len(given) > 1:
        raise DataError(f"--name {name} names one dataset: give one folder or archive, "
                        f"not {len(given)}")
    return [detect_custom(given[0], check_dataset_name(name))]


__all__ = ["SceneHit", "CaptionHit", "NearMiss", "find_datasets", "detect_custom",
           "release_evidence", "join_member"]
