"""Import and validate datasets into the data root.

``import_sources(["/path/to/AID.zip", "/path/to/UCM_Captions/"])`` recognises each dataset by its
layout (``layout``: class folders for scene datasets, caption files for caption sets), not by file
name; a source (``sources``) may be a zip or tar archive, a dataset folder, or a folder holding
several of those (and a ``SHA256SUMS`` file, which is then checked). For each dataset found it

1. skips it when ``<root>/<Name>/fedrs_manifest.json`` records the same source checksum and every
   recorded file is in place (idempotent re-runs);
2. validates the layout and the per-class image counts against the registry before anything
   heavy is done;
3. refuses, before writing anything, to replace an import of another release of the same
   dataset (other files, or the same names with other bytes, found after hashing) unless told
   how: ``replace``, ``merge`` (add this source's images when no file collides) or ``name``
   (import this one beside it, under a name of its own);
4. extracts into a hidden work folder inside the root (``workdirs``: it records its owner, so a
   killed import's folder is removed by the next import), hashing and fully decoding every image
   once (records sizes, reports exact duplicates, lists undecodable files: the import fails on
   them unless ``exclude_bad``, which leaves them out and records them in the manifest); a custom
   dataset's images that are not RGB are stored as RGB PNGs;
5. writes the manifest last and renames the folder into place: never anything half-written.

A full or read-only disk ends as one :class:`~fedrs.errors.DataError` naming the path
(:func:`disk_error`). What it did is logged to the ``fedrs.data`` loggers (``fedrs data import``
shows it); downloads are in ``download``, the study's datasets in ``ensure``.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import shutil
import time
import unicodedata
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator

from fedrs.errors import DataError
from fedrs.io import write_json_atomic

from .captions import validate_caption_folder
from .layout import CaptionHit, SceneHit, find_datasets, join_member
from .registry import MANIFEST_NAME, normalise, writable_root
from .sources import Source
from .workdirs import WORKDIR_PREFIX, claim, clean_stale_workdirs, new_workdir, release

logger = logging.getLogger(__name__)

_MAX_LISTED = 20


@dataclass
class ImportResult:
    """What one dataset import did."""

    name: str
    kind: str                      # "scene" | "captions"
    status: str                    # "imported" | "replaced" | "skipped"
    path: Path
    source: str
    num_images: int = 0
    num_classes: int | None = None
    duplicates: list[list[str]] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    kept: list = field(default_factory=list, repr=False)  # the images written (internal)

    def summary(self) -> str:
        if self.status == "skipped":
            return f"{self.name}: already imported and verified in {self.path} (skipped)"
        what = (f"{self.num_classes} classes, {self.num_images:,} images" if self.kind == "scene"
                else f"{self.num_images:,} images" if self.num_images else "caption files")
        lines = [f"{self.name}: {self.status} {what} from {self.source} into {self.path} "
                 f"in {self.seconds:.1f} s"]
        for group in self.duplicates[:_MAX_LISTED]:
            lines.append(f"  note: exact duplicates (same bytes): {', '.join(group)}")
        if len(self.duplicates) > _MAX_LISTED:
            lines.append(f"  note: ... and {len(self.duplicates) - _MAX_LISTED} more duplicate groups")
        for bad in self.excluded:
            lines.append(f"  excluded (undecodable): {bad['path']}: {bad['reason']}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# --- validation before extraction ---------------------------------------------------------------

def _check_scene_layout(hit: SceneHit) -> tuple[dict[str, str], bool]:
    """Source class folder -> official name; whether the images are a subset. Raises on mismatch.

    A custom dataset's classes are its folders (NFC-normalised names): nothing to check."""
    spec = hit.spec
    if spec.origin == "custom":
        return {d: unicodedata.normalize("NFC", d) for d in hit.members}, False
    official = {normalise(c): c for c in spec.classes}
    folder_map = {d: official.get(normalise(d)) for d in hit.members}
    where = f"{hit.source.label}" + (f"/{hit.prefix}" if hit.prefix else "")
    unexpected = sorted(d for d, c in folder_map.items() if c is None)
    missing = sorted(set(spec.classes) - set(folder_map.values()))
    if unexpected or missing:
        parts = []
        if missing:
            parts.append(f"missing class folders {missing}")
        if unexpected:
            parts.append(f"unexpected folders {unexpected}")
        raise DataError(f"not the official {spec.name} layout {spec.layout()}: "
                        f"{'; '.join(parts)} ({where}): import the unmodified official release, "
                        f"or import this folder as a dataset of your own with --name NAME")
    subset = False
    if spec.counts:
        wrong = []
        for d, members in sorted(hit.members.items()):
            cls = folder_map[d]
            n, want = len(members), spec.counts[cls]
            if n < want and spec.subset_ok:
                subset = True
            elif n != want:
                wrong.append(f"{cls} {n} (official {want})")
        if wrong:
            shown = ", ".join(wrong[:10]) + (f", ... ({len(wrong)} classes)" if len(wrong) > 10 else "")
            raise DataError(
                f"per-class image counts differ from the official {spec.name} release: {shown} "
                f"({where}): the archive is incomplete or not the official release; download it "
                f"again (`fedrs data download {spec.name}` or from {spec.homepage or 'its homepage'}), "
                f"or import it as a dataset of your own with --name NAME"
            )
    return folder_map, subset


# --- image extraction: hash, decode, write ------------------------------------------------------

@dataclass
class _Image:
    member: str
    rel: str                       # path relative to the dataset folder, as stored
    label: str | None
    sha256: str = ""               # of the stored bytes
    size: tuple[int, int] | None = None
    nbytes: int = 0                # stored bytes
    error: str | None = None
    source_rel: str = ""           # the path the source's file maps to (rel unless converted)
    source_sha256: str = ""
    source_nbytes: int = 0
    convert_rel: str | None = None  # where a non-RGB image goes as RGB PNG (custom datasets)
    converted_from: str | None = None  # its PIL mode when it was converted

    def __post_init__(self) -> None:
        self.source_rel = self.source_rel or self.rel


@contextmanager
def _strict_decoding() -> Iterator[None]:
    """Truncated images must fail to decode during import, whatever a notebook set globally."""
    from PIL import ImageFile

    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def _write_file(path: Path, data: bytes) -> None:
    """Write one extracted file (the one place an import writes image bytes)."""
    path.write_bytes(data)


def _to_rgb(im):
    """An RGB copy of ``im``: as ``Image.convert("RGB")`` (which the feature loader applies, so
    alpha is dropped the same way), but 16-bit and float images are scaled to 0..255 first
    instead of clipped."""
    from PIL import Image

    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        import numpy as np

        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        im = Image.fromarray(scaled.round().astype(np.uint8), "L")
    return im.convert("RGB")


def _check_and_write(data: bytes, dest: Path, convert_to: Path | None) -> dict[str, Any]:
    """Hash and fully decode ``data``; write it to ``dest`` (or, when ``convert_to`` is given and
    the image is not RGB, an RGB PNG of it there). What happened, as a dict."""
    from PIL import Image

    out: dict[str, Any] = {"source_sha256": hashlib.sha256(data).hexdigest()}
    converted = None
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            out["size"] = im.size
            if convert_to is not None and im.mode != "RGB":
                buf = io.BytesIO()
                _to_rgb(im).save(buf, "PNG")
                converted, out["converted_from"] = buf.getvalue(), im.mode
    except Exception as exc:  # noqa: BLE001 - any decoder failure makes the file bad
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    if converted is not None:
        _write_file(convert_to, converted)
        out["sha256"], out["nbytes"] = hashlib.sha256(converted).hexdigest(), len(converted)
    else:
        _write_file(dest, data)
        out["sha256"], out["nbytes"] = out["source_sha256"], len(data)
    return out


def _workers() -> int:
    env = os.environ.get("FEDRS_IMPORT_WORKERS")
    return max(1, int(env)) if env else max(1, min(4, os.cpu_count() or 1))


def _extract_images(source: Source, images: list[_Image], dest_root: Path, desc: str,
                    progress: bool) -> None:
    """Read, hash, decode and write every image (decode and write in a thread pool)."""
    from tqdm import tqdm

    by_member = {im.member: im for im in images}
    for d in {(dest_root / im.rel).parent for im in images}:
        d.mkdir(parents=True, exist_ok=True)
    pending = []
    with _strict_decoding(), ThreadPoolExecutor(_workers()) as pool, \
            tqdm(total=len(images), desc=desc, unit="img", disable=None if progress else True) as bar:
        def drain(limit: int) -> None:
            while len(pending) > limit:
                im, fut = pending.pop(0)
                done = fut.result()
                im.source_sha256 = done["source_sha256"]
                im.size, im.error = done.get("size"), done.get("error")
                if not im.error:
                    im.sha256, im.nbytes = done["sha256"], done["nbytes"]
                    if done.get("converted_from"):
                        im.converted_from, im.rel = done["converted_from"], im.convert_rel
                bar.update(1)

        for member, data in source.iter_read([im.member for im in images]):
            im = by_member[member]
            im.source_nbytes = len(data)
            convert_to = dest_root / im.convert_rel if im.convert_rel else None
            pending.append((im, pool.submit(_check_and_write, data, dest_root / im.rel, convert_to)))
            drain(64)
        drain(0)


def _image_outcome(images: list[_Image], source: Source, name: str,
                   exclude_bad: bool) -> tuple[list[_Image], list[dict], list[list[str]]]:
    """Kept images, excluded ones (or a DataError listing them), exact-duplicate groups."""
    bad = [im for im in images if im.error]
    if bad and not exclude_bad:
        listed = "; ".join(f"{source.label}:{im.member}: {im.error}" for im in bad[:_MAX_LISTED])
        more = f"; ... ({len(bad)} in all)" if len(bad) > _MAX_LISTED else ""
        raise DataError(
            f"{len(bad)} image(s) of {name} cannot be decoded: {listed}{more} ({source.label}): "
            f"replace the damaged files, or re-run with --exclude-bad to leave them out "
            f"(recorded in the manifest)"
        )
    excluded = [{"path": im.rel, "source_member": im.member, "reason": im.error} for im in bad]
    kept = [im for im in images if not im.error]
    return kept, excluded, _duplicates([(im.rel, im.sha256) for im in kept])


def _duplicates(entries: Iterable[tuple[str, str]]) -> list[list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for rel, digest in entries:
        groups[digest].append(rel)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def _size_summary(sizes_of: Iterable[tuple[int, int] | list[int] | None]) -> dict[str, Any]:
    sizes = Counter(tuple(s) for s in sizes_of if s)
    if not sizes:
        return {}
    ws, hs = [s[0] for s in sizes], [s[1] for s in sizes]
    return {"min": [min(ws), min(hs)], "max": [max(ws), max(hs)], "distinct": len(sizes),
            "common": [[w, h, n] for (w, h), n in sizes.most_common(5)]}


def _image_entries(images: list[_Image]) -> list[dict[str, Any]]:
    out = []
    for im in images:
        entry = {"path": im.rel, "label": im.label, "size": list(im.size), "bytes": im.nbytes,
                 "sha256": im.sha256}
        if im.converted_from:
            entry.update(converted_from=im.converted_from, source_path=im.source_rel,
                         source_bytes=im.source_nbytes, source_sha256=im.source_sha256)
        out.append(entry)
    return out


# --- the import of one dataset ------------------------------------------------------------------

@dataclass
class _Options:
    root: Path
    exclude_bad: bool = False
    force: bool = False
    progress: bool = True
    url: str | None = None
    replace: bool = False
    merge: bool = False


def existing_manifest(dest: Path) -> dict | None:
    try:
        manifest = json.loads((dest / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def files_in_place(dest: Path, manifest: dict) -> bool:
    """Every file the manifest records is in place with its recorded size."""
    try:
        for entry in manifest.get("images", []) + manifest.get("files", []):
            if (dest / (entry.get("path") or entry["name"])).stat().st_size != entry["bytes"]:
                return False
    except (OSError, KeyError, TypeError, AttributeError):
        return False
    return True


def _same_source(manifest: dict | None, fingerprint: dict, opts: _Options) -> bool:
    if not manifest:
        return False
    src = manifest.get("source", {})
    return src.get("sha256") == fingerprint["sha256"] and (opts.url is None or src.get("url") == opts.url)


def _manifest_head(hit, fingerprint: dict, opts: _Options) -> dict[str, Any]:
    from fedrs import __version__

    spec = hit.spec
    return {
        "format": 1,
        "name": hit.name,
        "kind": spec.kind,
        "origin": spec.origin if not hit.as_name or spec.origin == "custom" else "variant",
        "variant_of": spec.name if hit.as_name and spec.origin != "custom" else None,
        "fedrs_version": __version__,
        "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {"path": None if opts.url else str(hit.source.path.resolve()),
                   "type": hit.source.kind, "url": opts.url, "member_root": hit.prefix,
                   **fingerprint},
        "citation": spec.citation,
        "licence": spec.licence,
    }


def _install(tmp: Path, dest: Path) -> None:
    """Rename the finished folder into place (replacing an older import), readable by others
    as the umask allows (mkdtemp/mkstemp create them private)."""
    umask = os.umask(0)
    os.umask(umask)
    release(tmp)
    os.chmod(tmp, 0o777 & ~umask)
    os.chmod(tmp / MANIFEST_NAME, 0o666 & ~umask)
    if dest.exists():
        old = dest.with_name(f"{WORKDIR_PREFIX}old-{dest.name}-{uuid.uuid4().hex[:8]}")
        os.replace(dest, old)
        try:
            claim(old)  # a kill before the next rename: the next import moves it back
        except OSError:
            pass
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


# previous import vs this source ---------------------------------------------------------------

def _recorded_content(manifest: dict) -> dict[str, tuple[int, str]]:
    """Path in the source's terms -> (bytes, sha256) of every image and file an import holds."""
    out = {}
    for e in manifest.get("images", []):
        out[e.get("source_path", e["path"])] = (e.get("source_bytes", e["bytes"]),
                                                e.get("source_sha256", e["sha256"]))
    for f in manifest.get("files", []):
        out[f["name"]] = (f["bytes"], f["sha256"])
    return out


def _source_words(manifest: dict) -> str:
    src = manifest.get("source", {})
    origin = src.get("url") or src.get("path") or "an unknown source"
    n = len(manifest.get("images", []))
    what = f"{n:,} images" if n else f"{len(manifest.get('files', []))} files"
    merged = f" and {len(manifest['merged_from'])} merged source(s)" if manifest.get("merged_from") else ""
    return f"{what} from {origin}{merged}, imported {manifest.get('imported_at', '?')}"


def _conflict(name: str, dest: Path, previous: dict, planned: dict[str, int],
              recorded: dict[str, tuple[int, str]], differing: int | None = None) -> DataError:
    if differing is None:
        differing = sum(1 for rel, n in planned.items() if recorded.get(rel, (None,))[0] != n)
    return DataError(
        f"{name} is already imported from another release ({dest}: {_source_words(previous)}; "
        f"this source has {len(planned):,} files, {differing:,} of them not in that import): "
        f"importing it would replace that release, and runs made with it could no longer be "
        f"reproduced. Re-run with --replace to replace it, --name NAME to keep both (this one "
        f"as the dataset NAME), or --merge to add this source's images to it"
    )


def _collision_error(name: str, dest: Path, collisions: list[str]) -> DataError:
    return DataError(
        f"cannot merge into {name}: {len(collisions)} file(s) exist in both with different "
        f"contents ({dest}: {', '.join(collisions[:5])}{', ...' if len(collisions) > 5 else ''}): "
        f"keep the two apart with --name NAME, or replace the import with --replace"
    )


def _policy(hit, previous: dict | None, fingerprint: dict, planned: dict[str, int],
            dest: Path, opts: _Options) -> str:
    """How this import relates to the one in ``dest``: "new", "same" (the same release again:
    reinstall, after checking the contents), "replace" or "merge". Refuses to replace another
    release silently."""
    if previous is None:
        return "new"
    if opts.replace:
        return "replace"
    same_archive = (previous.get("source", {}).get("sha256") == fingerprint["sha256"]
                    and not previous.get("merged_from"))
    if same_archive:
        return "same"
    recorded = _recorded_content(previous)
    if not opts.merge:
        if planned != {rel: n for rel, (n, _) in recorded.items()}:
            raise _conflict(hit.name, dest, previous, planned, recorded)
        return "same"  # the same files from another copy (zip vs folder): checked after hashing
    if isinstance(hit, CaptionHit):
        raise DataError(f"--merge adds images to a scene dataset; {hit.name} is a caption set "
                        f"({dest}): use --replace, or --name NAME to keep both")
    return "merge"  # collisions are found by content, after hashing


def _differing(kept: list[_Image], recorded: dict[str, tuple[int, str]]) -> list[str]:
    return sorted(im.source_rel for im in kept
                  if im.source_rel in recorded and recorded[im.source_rel][1] != im.source_sha256)


# ----------------------------------------------------------------------------------------------

def _check_not_inside(hit, dest: Path, opts: _Options) -> None:
    if hit.source.path.resolve().is_relative_to(dest.resolve()):
        raise DataError(f"the source is inside the imported {hit.name} ({hit.source.label}): "
                        f"import from the original archive or folder instead")


def _import_one(hit, opts: _Options, layout: tuple[dict[str, str], bool] | None) -> ImportResult:
    spec = hit.spec
    dest = opts.root / hit.name
    start = time.perf_counter()
    _check_not_inside(hit, dest, opts)
    fingerprint = hit.source.fingerprint(hit.member_names())
    previous = existing_manifest(dest)
    if not opts.force and _same_source(previous, fingerprint, opts) and files_in_place(dest, previous):
        return ImportResult(hit.name, spec.kind, "skipped", dest, opts.url or hit.source.label,
                            num_images=len(previous.get("images", [])),
                            num_classes=len(previous.get("classes", [])) or None)
    if isinstance(hit, SceneHit):
        images = _plan_scene(hit, layout[0])
        planned = {im.source_rel: hit.source.size(im.member) for im in images}
    else:
        images, files = _plan_captions(hit)
        planned = {**{PurePosixPath(m).name: hit.source.size(m) for m in files},
                   **{im.source_rel: hit.source.size(im.member) for im in images}}
    policy = _policy(hit, previous, fingerprint, planned, dest, opts)
    tmp = new_workdir(opts.root, "import", hit.name)
    try:
        manifest = _manifest_head(hit, fingerprint, opts)
        if isinstance(hit, SceneHit):
            result = _build_scene(hit, images, *layout, tmp, manifest, opts)
        else:
            result = _build_captions(hit, images, files, tmp, manifest, opts)
        if policy in ("same", "merge"):
            recorded = _recorded_content(previous)
            differing = _differing(result.kept, recorded)
            if differing and policy == "merge":
                raise _collision_error(hit.name, dest, differing)
            if policy == "same" and (differing or set(planned) != set(recorded)) \
                    and previous.get("source", {}).get("sha256") != fingerprint["sha256"]:
                raise _conflict(hit.name, dest, previous, planned, recorded, len(differing))
            if policy == "merge":
                _merge_previous(hit, previous, dest, tmp, manifest, result)
        manifest["import_seconds"] = round(time.perf_counter() - start, 2)
        write_json_atomic(tmp / MANIFEST_NAME, manifest)
        _install(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.status = {"new": "imported", "merge": "merged"}.get(policy, "replaced")
    result.path, result.seconds = dest, time.perf_counter() - start
    result.source = opts.url or result.source  # a download: its URL, not the temporary file
    return result


def _plan_scene(hit: SceneHit, folder_map: dict[str, str]) -> list[_Image]:
    """Where each image of the source goes in the dataset folder."""
    spec = hit.spec
    images = []
    for folder, members in hit.members.items():
        cls = folder_map[folder]
        for m in members:
            base = unicodedata.normalize("NFC", PurePosixPath(m).name)
            images.append(_Image(m, f"{spec.class_root}/{cls}/{base}", cls))
    images.sort(key=lambda im: im.rel)
    if spec.origin == "custom":  # non-RGB images become RGB PNGs: <stem>.png, else <name>.png
        # (when another image of the class already maps to <stem>.png)
        taken = Counter(im.rel for im in images) + Counter(
            str(PurePosixPath(im.rel).with_suffix(".png")) for im in images)
        for im in images:
            png = str(PurePosixPath(im.rel).with_suffix(".png"))
            if im.rel.lower().endswith(".png"):
                im.convert_rel = im.rel  # a PNG stays a PNG of the same name
            else:
                im.convert_rel = png if taken[png] == 1 else f"{im.rel}.png"
    return images


def _build_scene(hit: SceneHit, images: list[_Image], folder_map: dict[str, str], subset: bool,
                 tmp: Path, manifest: dict, opts: _Options) -> ImportResult:
    spec = hit.spec
    _extract_images(hit.source, images, tmp, hit.name, opts.progress)
    kept, excluded, duplicates = _image_outcome(images, hit.source, hit.name, opts.exclude_bad)
    counts = Counter(im.label for im in kept)
    notes = list(hit.notes)
    renamed = sorted(f"{d} -> {c}" for d, c in folder_map.items() if d != c)
    if renamed and spec.origin != "custom":
        notes.append(f"class folders renamed to the official names: {', '.join(renamed)}")
    if subset:
        notes.append(f"subset of the official release ({len(images):,} of {spec.total:,} images)")
    if spec.counts is None and spec.origin != "custom":
        notes.append("official per-class counts unknown: only the class folders were validated")
    converted = Counter(im.converted_from for im in kept if im.converted_from)
    if converted:
        modes = ", ".join(f"{m} {n}" for m, n in sorted(converted.items()))
        notes.append(f"converted {sum(converted.values())} image(s) that were not RGB to RGB PNG ({modes})")
    if hit.as_name and spec.origin != "custom":
        notes.append(f"a release of {spec.name} imported as {hit.name} (--name)")
    if spec.origin == "custom":
        classes = [{"name": c, "count": counts[c], "official": None} for c in spec.classes if counts[c]]
        emptied = [c for c in spec.classes if not counts[c]]
        if emptied:  # every image of these folders was undecodable and excluded
            notes.append(f"class folder(s) with no decodable image left out: {', '.join(emptied)}")
    else:
        classes = [{"name": c, "count": counts[c],
                    "official": spec.counts[c] if spec.counts else None} for c in spec.classes]
    manifest.update({
        "class_root": spec.class_root,
        "subset": subset,
        "classes": classes,
        "num_images": len(kept),
        "image_sizes": _size_summary(im.size for im in kept),
        "duplicates": duplicates,
        "excluded": excluded,
        "notes": notes,
        "images": _image_entries(kept),
    })
    result = ImportResult(hit.name, "scene", "", tmp, hit.source.label, num_images=len(kept),
                          num_classes=len(classes), duplicates=duplicates, excluded=excluded,
                          notes=notes)
    result.kept = kept
    return result


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _merge_previous(hit: SceneHit, previous: dict, dest: Path, tmp: Path, manifest: dict,
                    result: ImportResult) -> None:
    """Add the previous import's images that this source lacks to ``tmp`` and the manifest."""
    spec = hit.spec
    new_paths = {e["path"] for e in manifest["images"]}
    new_sources = {im.source_rel for im in result.kept}
    carried = [e for e in previous.get("images", [])
               if e.get("source_path", e["path"]) not in new_sources]
    clash = sorted(e["path"] for e in carried if e["path"] in new_paths)
    if clash:
        raise _collision_error(hit.name, dest, clash)
    for e in carried:
        _link_or_copy(dest / e["path"], tmp / e["path"])
    images = sorted(manifest["images"] + carried, key=lambda e: e["path"])
    counts = Counter(e["label"] for e in images)
    if spec.origin == "custom":
        names = sorted({c["name"] for c in previous.get("classes", [])} | set(counts))
        classes = [{"name": c, "count": counts[c], "official": None} for c in names if counts[c]]
        subset = False
    else:
        over = sorted(f"{c} {counts[c]} (official {spec.counts[c]})" for c in spec.classes
                      if spec.counts and counts[c] > spec.counts[c])
        if over:
            raise DataError(
                f"merged, {hit.name} would hold more images than the official {spec.name} release: "
                f"{', '.join(over[:5])} ({dest}): these are not parts of one release; keep this "
                f"one apart with --name NAME, or replace the import with --replace")
        classes = [{"name": c, "count": counts[c],
                    "official": spec.counts[c] if spec.counts else None} for c in spec.classes]
        subset = bool(spec.counts) and any(counts[c] < spec.counts[c] for c in spec.classes)
    excluded = previous.get("excluded", []) + manifest["excluded"]
    duplicates = _duplicates((e["path"], e["sha256"]) for e in images)
    note = (f"merged with the previous import ({len(carried):,} of its images kept beside "
            f"{len(manifest['images']):,} from this source)")
    notes = [n for n in manifest["notes"] if not n.startswith("subset of")] + [note]
    if subset and spec.total:
        notes.append(f"subset of the official release ({len(images):,} of {spec.total:,} images)")
    manifest.update(
        classes=classes, subset=subset, num_images=len(images), images=images,
        image_sizes=_size_summary(e["size"] for e in images), duplicates=duplicates,
        excluded=excluded, notes=notes,
        merged_from=[previous.get("source", {})] + previous.get("merged_from", []))
    result.num_images, result.num_classes = len(images), len(classes)
    result.duplicates, result.notes = duplicates, notes


def _plan_captions(hit: CaptionHit) -> tuple[list[_Image], list[str]]:
    images = []
    if hit.images:
        under = join_member(hit.prefix, hit.image_dir or "") + "/"
        images = sorted((_Image(m, f"{hit.image_dir}/{m[len(under):]}", None) for m in hit.images),
                        key=lambda im: im.rel)
    return images, list(hit.files)


def _build_captions(hit: CaptionHit, images: list[_Image], members: list[str], tmp: Path,
                    manifest: dict, opts: _Options) -> ImportResult:
    spec = hit.spec
    files = []
    for member in members:
        data = hit.source.read(member)
        name = PurePosixPath(member).name
        _write_file(tmp / name, data)
        files.append({"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    kept, excluded, duplicates = [], [], []
    if images:
        _extract_images(hit.source, images, tmp, hit.name, opts.progress)
        kept, excluded, duplicates = _image_outcome(images, hit.source, hit.name, opts.exclude_bad)
    summary = validate_caption_folder(tmp, spec, join_member(hit.source.label, hit.prefix))
    n_images = sum(s["images"] for s in summary["splits"].values())
    notes = list(hit.notes) + ([] if hit.images else [
        f"no image folder: images resolve through {spec.scene_source}" if spec.scene_source
        else "no image folder imported: items have no images"])
    if hit.as_name:
        notes.append(f"a release of {spec.name} imported as {hit.name} (--name)")
    manifest.update({
        **summary,
        "files": files,
        "image_dir": hit.image_dir,
        "image_sizes": _size_summary(im.size for im in kept),
        "duplicates": duplicates,
        "excluded": excluded,
        "notes": notes,
        "images": _image_entries(kept),
    })
    result = ImportResult(hit.name, "captions", "", tmp, hit.source.label, num_images=n_images,
                          duplicates=duplicates, excluded=excluded, notes=notes)
    result.kept = kept + [_Image(f["name"], f["name"], None, sha256=f["sha256"],
                                 source_sha256=f["sha256"]) for f in files]
    return result


# --- errors of the environment, in words --------------------------------------------------------

def disk_error(exc: OSError, root: Path, doing: str) -> DataError:
    """``exc`` (an OSError while ``doing``) as a one-line DataError naming the path and the fix."""
    path = Path(exc.filename) if exc.filename else root
    writing = path.resolve().is_relative_to(root.resolve()) if path.is_absolute() else True
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DataError(
            f"no space left on the device while {doing} ({path}): free space there, or import "
            f"into a data root on a larger disk (--root, or FEDRS_DATA); nothing was changed "
            f"(the partial copy was removed)")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = ("choose a data root you can write to (--root, or FEDRS_DATA)" if writing
               else "check the file's permissions")
        return DataError(f"{reason} while {doing} ({path}): {fix}")
    return DataError(f"{reason} while {doing} ({path}): check the disk and the path, then re-run")


def import_sources(sources: Iterable[str | Path] | str | Path, root: str | Path | None = None,
                   exclude_bad: bool = False, force: bool = False, progress: bool = True,
                   expect: str | None = None, url: str | None = None, *,
                   name: str | None = None, replace: bool = False, merge: bool = False,
                   only: Iterable[str] | None = None) -> list[ImportResult]:
    """Import every dataset found in ``sources`` (archives, dataset folders, folders of those).

    ``force`` re-imports even what is present and verified; ``expect`` (a dataset name) fails
    unless that dataset is among those found; ``url`` is recorded as the origin (downloads);
    ``only`` (dataset names) imports just those of the datasets found.

    A dataset already imported from another release is never replaced silently: the import
    fails naming the choices, ``replace`` (replace it), ``merge`` (add this source's images to
    it, when no file collides) or ``name`` (import this one under a name of its own, beside it).
    ``name`` also imports a folder of class sub-folders that is no registered dataset as a
    custom dataset. Work folders that a killed import left in the data root are removed first.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    if replace and merge:
        raise DataError("--replace and --merge exclude each other: --replace drops the previous "
                        "import, --merge keeps its images beside this source's")
    opts = _Options(writable_root(root), exclude_bad, force, progress, url, replace, merge)
    opened: list[Source] = []
    created = not opts.root.exists()
    try:
        hits = find_datasets(sources, opened, name=name)
        if expect and expect not in {h.spec.name for h in hits}:
            raise DataError(f"the source holds {', '.join(h.name for h in hits) or 'no dataset'}, "
                            f"not {expect} ({', '.join(s.label for s in opened)}): check the URL "
                            f"or the archive")
        if only is not None:
            wanted = set(only)
            hits = [h for h in hits if h.name in wanted]
        # every layout and count is checked before any dataset is hashed, decoded or written
        layouts = [_check_scene_layout(h) if isinstance(h, SceneHit) else None for h in hits]
        try:
            opts.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise disk_error(exc, opts.root, "creating the data root") from exc
        clean_stale_workdirs(opts.root)
        results = []
        for hit, layout in zip(hits, layouts):
            try:
                result = _import_one(hit, opts, layout)
            except BrokenPipeError:
                raise
            except OSError as exc:
                raise disk_error(exc, opts.root, f"importing {hit.name}") from exc
            if progress:
                logger.info(result.summary())
            results.append(result)
        return results
    except BaseException:
        if created:  # a failed first import leaves no empty data root behind
            try:
                opts.root.rmdir()
            except OSError:
                pass
        raise
    finally:
        for src in opened:
            src.close()


__all__ = ["ImportResult", "import_sources", "existing_manifest", "files_in_place", "disk_error"]
