"""Image-caption sets: UCM-Captions, RSICD, RSITMD, Sydney-Captions.

Two caption formats are read, as released:

- Karpathy JSON (``dataset.json``, ``dataset_rsicd.json``, ``dataset_RSITMD.json``):
  ``{"images": [{"filename", "split", "sentences": [{"raw", "tokens"}, ...]}, ...]}``;
- split files (``<split>_filename.txt``, one image a line, and ``<split>_caps.txt``,
  ``captions_per_image`` consecutive lines per image, same order), as in the retrieval
  benchmarks' precomputed splits. Where both are present the split files are used.

An item's image is the set's own image folder when it was imported (``imgs/``, ``images/``,
``RSICD_images/``), else the scene image named by ``images.csv`` (``filename`` + the spec's
class and stem columns) in the imported scene dataset (UCM-Captions -> UCMerced,
RSICD -> AID), else, for UCM-Captions without ``images.csv``, the documented numbering rule
(image ``n`` is UC Merced class ``(n-1)//100`` in alphabetical order, file ``{class}{(n-1)%100:02d}``).
"""

from __future__ import annotations

import csv
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from fedrs.errors import DataError

from .registry import (
    MANIFEST_NAME, CaptionSetSpec, get_spec, normalise, not_imported, read_manifest, resolve_root,
)

SPLIT_ORDER = ("train", "val", "test")
MAPPING_CSV = "images.csv"


@dataclass
class CaptionedImage:
    image_id: str
    path: Path | None
    captions: list[str]
    split: str
    label: str | None = None


@dataclass(eq=False)
class CaptionSet:
    name: str
    split: str
    items: list[CaptionedImage]
    root: Path | None = None
    image_source: str = ""        # where images come from, in words
    missing_images: str = ""      # why no item can have an image ("" when some can)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[CaptionedImage]:
        return iter(self.items)

    def __getitem__(self, index: int) -> CaptionedImage:
        return self.items[index]

    @property
    def num_captions(self) -> int:
        return sum(len(it.captions) for it in self.items)

    def with_images(self) -> "CaptionSet":
        """Only the items whose image exists in the data root."""
        if self.missing_images:
            raise DataError(self.missing_images)
        return CaptionSet(self.name, self.split, [it for it in self.items if it.path is not None],
                          self.root, self.image_source)

    def __repr__(self) -> str:
        n_img = sum(it.path is not None for it in self.items)
        return (f"CaptionSet({self.name!r}, split={self.split!r}, {len(self.items)} images, "
                f"{self.num_captions} captions, {n_img} with images)")


# --- reading the caption files -------------------------------------------------------------------

@dataclass
class CaptionRecords:
    """What a caption folder holds: per split, (image id, captions) in file order."""

    format: str                       # "karpathy:<file>" or "split-files"
    splits: dict[str, list[tuple[str, list[str]]]]
    mapping: dict[str, tuple[str, str]] | None = None   # image id -> (class, stem), "" unmapped
    files: list[str] = field(default_factory=list)      # caption files read


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _split_files(folder: Path) -> dict[str, tuple[Path, Path]]:
    out = {}
    for names in sorted(folder.glob("*_filename.txt")):
        split = names.name[: -len("_filename.txt")]
        caps = folder / f"{split}_caps.txt"
        if caps.is_file():
            out[split] = (names, caps)
    return out


def find_json(folder: Path, spec: CaptionSetSpec) -> Path | None:
    for name in spec.json_names:
        if (folder / name).is_file():
            return folder / name
    return None


def read_caption_records(folder: Path, spec: CaptionSetSpec) -> CaptionRecords:
    """Parse the caption files in ``folder`` (cached while the files are unchanged)."""
    inputs = [p for pair in _split_files(folder).values() for p in pair]
    if not inputs:
        path = find_json(folder, spec)
        inputs = [path] if path else []
    if not inputs:
        raise DataError(
            f"no caption files for {spec.name} in {folder}: expected one of {list(spec.json_names)} "
            f"or <split>_filename.txt + <split>_caps.txt; re-import the caption folder"
        )
    mapping_csvs = [folder / MAPPING_CSV, *(folder / f"{split}_{MAPPING_CSV}" for split in _split_files(folder))]
    stamps = tuple((str(p), _stamp(p)) for p in [*inputs, *mapping_csvs])
    return _read_cached(str(folder), spec, stamps)


@functools.lru_cache(maxsize=16)
def _read_cached(folder: str, spec: CaptionSetSpec, stamps: tuple) -> CaptionRecords:
    path = Path(folder)
    pairs = _split_files(path)
    if pairs:
        records = CaptionRecords("split-files", {}, files=[])
        for split, (names, caps) in pairs.items():
            records.splits[split] = _read_split_files(names, caps, spec)
            records.files += [names.name, caps.name]
    else:
        jpath = find_json(path, spec)
        records = CaptionRecords(f"karpathy:{jpath.name}", _read_karpathy(jpath), files=[jpath.name])
    if (path / MAPPING_CSV).is_file() and spec.map_columns:
        records.mapping = _read_mapping(path / MAPPING_CSV, spec.map_columns)
        records.files.append(MAPPING_CSV)
        # a split may ship its own mapping (RSICD's test split: test_images.csv)
        for split in pairs:
            extra = path / f"{split}_{MAPPING_CSV}"
            if extra.is_file():
                records.mapping.update(_read_mapping(extra, spec.map_columns))
                records.files.append(extra.name)
    return records


def _read_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]


def _read_split_files(names: Path, caps: Path, spec: CaptionSetSpec) -> list[tuple[str, list[str]]]:
    files, lines = _read_lines(names), _read_lines(caps)
    if files and len(files) == len(lines) and len(set(files)) < len(files):
        # one file name per caption line (RSICD's test split): consecutive repeats are one image
        grouped: list[tuple[str, list[str]]] = []
        for f, line in zip(files, lines):
            if grouped and grouped[-1][0] == f:
                grouped[-1][1].append(line)
            else:
                grouped.append((f, [line]))
        odd = [f for f, c in grouped if spec.captions_per_image and len(c) != spec.captions_per_image]
        if odd:
            raise DataError(f"{names} lists {len(odd)} images without {spec.captions_per_image} "
                            f"consecutive caption lines (e.g. {odd[:3]}): the split files are not "
                            f"the {spec.name} ones")
        return grouped
    if not files or len(lines) % len(files):
        raise DataError(
            f"{caps} has {len(lines)} captions for {len(files)} images in {names.name}, not a whole "
            f"number per image: the split files do not belong together; copy them again"
        )
    k = len(lines) // len(files)
    if spec.captions_per_image and k != spec.captions_per_image:
        raise DataError(
            f"{caps} has {k} captions per image, {spec.name} has {spec.captions_per_image}: "
            f"the split files are not the {spec.name} ones"
        )
    return [(f, lines[i * k:(i + 1) * k]) for i, f in enumerate(files)]


def _read_karpathy(path: Path) -> dict[str, list[tuple[str, list[str]]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = data["images"]
        splits: dict[str, list[tuple[str, list[str]]]] = {}
        for im in images:
            caps = [(s.get("raw") or " ".join(s.get("tokens", []))).strip() for s in im["sentences"]]
            splits.setdefault(str(im.get("split", "train")), []).append((str(im["filename"]), caps))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(
            f"{path} is not a Karpathy-format caption file ({type(exc).__name__}: {exc}): "
            f"expected {{'images': [{{'filename', 'split', 'sentences': [{{'raw'}}]}}]}}"
        ) from exc
    return {s: splits[s] for s in _ordered(splits)}


def _read_mapping(path: Path, columns: tuple[str, str]) -> dict[str, tuple[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        need = {"filename", *columns}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise DataError(f"{path} lacks the columns {sorted(need)} (has {reader.fieldnames}): "
                            f"it is not this caption set's image mapping")
        return {row["filename"]: (row[columns[0]] or "", row[columns[1]] or "") for row in reader}


def _ordered(splits) -> list[str]:
    return [s for s in SPLIT_ORDER if s in splits] + sorted(set(splits) - set(SPLIT_ORDER))


# --- validation (used by the import) -------------------------------------------------------------

def validate_caption_folder(folder: Path, spec: CaptionSetSpec, where: str = "") -> dict[str, Any]:
    """Check the caption files in ``folder`` against the spec; a summary for the manifest.
    ``where`` names the files' origin in errors (default: ``folder``)."""
    rec = read_caption_records(folder, spec)
    problems = []
    for split, items in rec.splits.items():
        ids = [i for i, _ in items]
        if len(set(ids)) != len(ids):
            problems.append(f"split {split!r} lists {len(ids) - len(set(ids))} images twice")
        empty = [i for i, caps in items if not caps]
        if empty:
            problems.append(f"{len(empty)} images without captions (e.g. {empty[:3]})")
        if spec.captions_per_image and rec.format.startswith("karpathy"):
            odd = [i for i, caps in items if len(caps) != spec.captions_per_image]
            if odd:
                problems.append(f"{len(odd)} images without exactly {spec.captions_per_image} "
                                f"captions (e.g. {odd[:3]})")
    expected = spec.expected_split_files if rec.format == "split-files" else spec.expected_json
    found = {s: len(v) for s, v in rec.splits.items()}
    for split, n in (expected or {}).items():
        # split files come one split at a time (RSICD ships train, and now test, as pairs of files)
        if rec.format == "split-files" and split not in found and split != "train":
            continue
        if found.get(split) != n:
            problems.append(f"split {split!r} has {found.get(split, 0)} images, official {n}")
    mapped: dict[str, int] = {}
    if rec.mapping is not None:
        for split, items in rec.splits.items():
            absent = [i for i, _ in items if i not in rec.mapping]
            if absent:
                problems.append(f"{MAPPING_CSV} lacks {len(absent)} {split} images (e.g. {absent[:3]})")
            mapped[split] = sum(1 for i, _ in items if rec.mapping.get(i, ("", ""))[1])
        for split, n in (spec.expected_mapped or {}).items():
            if split in found and mapped.get(split) != n:
                problems.append(f"{MAPPING_CSV} maps {mapped.get(split, 0)} {split} images to "
                                f"{spec.scene_source}, official {n}")
    if problems:
        raise DataError(
            f"{spec.name} caption files do not match the official release: "
            + "; ".join(problems) + f" ({where or folder}): import the unmodified official files"
        )
    return {
        "format": rec.format,
        "splits": {s: {"images": len(v), "captions": sum(len(c) for _, c in v)}
                   for s, v in rec.splits.items()},
        "mapping": None if rec.mapping is None else {
            "file": MAPPING_CSV, "scene_dataset": spec.scene_source, "mapped": mapped},
    }


# --- image resolution ---------------------------------------------------------------------------

Resolver = Callable[[str], tuple[Path | None, str | None]]


def ucm_caption_image(image_id: str, ucm_classes: list[str]) -> tuple[str, str] | None:
    """(class, stem) of UCM-Captions image ``n.tif`` by the documented numbering rule."""
    m = re.fullmatch(r"(\d+)(\.\w+)?", image_id)
    if not m or not ucm_classes:
        return None
    n = int(m.group(1))
    if not 1 <= n <= 100 * len(ucm_classes):
        return None
    cls = sorted(ucm_classes)[(n - 1) // 100]
    return cls, f"{cls}{(n - 1) % 100:02d}"


def _locator(spec: CaptionSetSpec, rec: CaptionRecords) -> Callable[[str], tuple[str, str]] | None:
    """image id -> (scene class, scene stem), "" where unmapped; None without any mapping."""
    if rec.mapping is not None:
        return lambda image_id: rec.mapping.get(image_id, ("", ""))
    if spec.scene_source == "UCMerced":  # UCM-Captions' documented numbering rule
        classes = list(get_spec("UCMerced").classes)
        return lambda image_id: ucm_caption_image(image_id, classes) or ("", "")
    return None


def _resolver(root: Path, spec: CaptionSetSpec, manifest: dict,
              rec: CaptionRecords) -> tuple[Resolver, str, str]:
    """A function image id -> (path, label), where images come from, why none can resolve."""
    folder = root / spec.name
    locate = _locator(spec, rec) or (lambda image_id: ("", ""))
    own = {Path(im["path"]).name: folder / im["path"] for im in manifest.get("images", [])}
    if own:
        return ((lambda image_id: (own.get(image_id), locate(image_id)[0] or None)),
                f"own images in {spec.name}/{manifest.get('image_dir', '')}", "")
    scene = spec.scene_source
    if not scene or _locator(spec, rec) is None:
        return (lambda image_id: (None, None)), "none", (
            f"{spec.name} in {root} was imported without its image folder "
            f"({' or '.join(spec.image_dirs)})"
            + (f" or {MAPPING_CSV}" if scene else "")
            + ": re-import it from a release that includes them"
        )
    if not (root / scene / MANIFEST_NAME).is_file():
        err = not_imported(scene, root, why=f"{spec.name} images come from {scene}")
        return ((lambda image_id: (None, locate(image_id)[0] or None)),
                f"{scene}, not imported", str(err))
    scene_manifest = read_manifest(root, scene)
    by_key = {(im["label"], Path(im["path"]).stem): root / scene / im["path"]
              for im in scene_manifest["images"]}
    by_stem = {stem: p for (_, stem), p in by_key.items()}

    def from_scene(image_id: str):
        cls, stem = locate(image_id)
        path = (by_key.get((cls, stem)) or by_stem.get(stem)) if stem else None
        if path is not None and not path.is_file():
            path = None
        return path, cls or None

    how = f"{scene} via {MAPPING_CSV}" if rec.mapping is not None else f"{scene} via numbering rule"
    return from_scene, how, ""


def load_caption_set(name: str, split: str = "train", root: str | Path | None = None) -> CaptionSet:
    """An imported caption set; ``split`` is one of its splits or ``"all"``."""
    root = resolve_root(root)
    spec = get_spec(name, root)
    if not isinstance(spec, CaptionSetSpec):
        raise DataError(f"{spec.name!r} is a scene dataset, not a caption set: "
                        f"use load_scene_dataset({spec.name!r})")
    manifest = read_manifest(root, spec.name)
    rec = read_caption_records(root / spec.name, spec)
    if split == "all":
        chosen = list(rec.splits)
    elif split in rec.splits:
        chosen = [split]
    else:
        raise DataError(f"{spec.name} in {root} has no split {split!r}: use one of "
                        f"{list(rec.splits) + ['all']}, or import caption files that include it")
    resolve, how, missing = _resolver(root, spec, manifest, rec)
    items = []
    for s in chosen:
        for image_id, caps in rec.splits[s]:
            path, label = resolve(image_id)
            items.append(CaptionedImage(image_id, path, list(caps), s, label))
    return CaptionSet(spec.name, split, items, root / spec.name, how, missing)


def training_scene_stems(root: Path, name: str = "RSICD") -> set[str]:
    """Stems of the scene images that ``name``'s training split uses (via ``images.csv``)."""
    spec = get_spec(name, root)
    read_manifest(root, spec.name)
    rec = read_caption_records(root / spec.name, spec)
    if rec.mapping is None:
        raise DataError(
            f"{spec.name} in {root} has no {MAPPING_CSV} mapping its images to "
            f"{spec.scene_source}: import the caption folder that ships it"
        )
    train = {i for i, _ in rec.splits.get("train", [])}
    return {stem for image_id, (_, stem) in rec.mapping.items() if stem and image_id in train}


def identify_caption_set(folder_name: str, files: dict[str, Callable[[], bytes]],
                         hint: str = "") -> CaptionSetSpec | None:
    """Which caption set a folder holds, from its file names, folder name, CSV header, JSON tag.

    ``files`` maps the folder's file names to functions returning their bytes (read lazily).
    """
    from .registry import caption_specs, registry_spec

    specs = caption_specs()
    for spec in specs:  # a set-specific JSON name (dataset_rsicd.json, dataset_RSITMD.json)
        if any(n in files and n != "dataset.json" for n in spec.json_names):
            return spec
    for name in (folder_name, hint):
        spec = registry_spec(name) if name else None
        if isinstance(spec, CaptionSetSpec):
            return spec
    if MAPPING_CSV in files:
        header = files[MAPPING_CSV]().decode("utf-8-sig", "replace").splitlines()[:1]
        cols = set(header[0].split(",")) if header else set()
        for spec in specs:
            if spec.map_columns and set(spec.map_columns) <= cols:
                return spec
    if "dataset.json" in files:
        head = files["dataset.json"]()
        try:
            tag = normalise(str(json.loads(head).get("dataset", "")))
        except ValueError:
            tag = ""
        for spec in specs:
            if tag and tag in {normalise(t) for t in spec.json_tags}:
                return spec
    return None


__all__ = [
    "CaptionedImage", "CaptionSet", "CaptionRecords", "load_caption_set", "read_caption_records",
    "validate_caption_folder", "training_scene_stems", "ucm_caption_image", "identify_caption_set",
]
