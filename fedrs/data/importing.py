"""Import and validate datasets into the data root.

``import_sources(["/path/to/AID.zip", "/path/to/UCM_Captions/"])`` recognises each dataset by its
layout (``layout``: class folders for scene datasets, caption files for caption sets), not by file
name; a source (``sources``) may be a zip or tar archive, a dataset folder, or a folder holding
several of those (and a ``SHA256SUMS`` file, which is then checked). For each dataset found it

1. skips it when ``<root>/<Name>/fedrs_manifest.json`` records the same source checksum and every
   recorded file is in place (idempotent re-runs);
2. validates the layout and the per-class image counts against the registry before anything
   heavy is done;
3. extracts into a temporary folder inside the root, hashing and fully decoding every image once
   (records sizes, reports exact duplicates, lists undecodable files: the import fails on them
   unless ``exclude_bad``, which leaves them out and records them in the manifest);
4. writes the manifest last and renames the folder into place: never anything half-written.

What it did is logged to the ``fedrs.data`` loggers (``fedrs data import`` shows it); downloads
are in ``download``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
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
from .registry import MANIFEST_NAME, normalise, resolve_root
from .sources import Source

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
    """Source class folder -> official name; whether the images are a subset. Raises on mismatch."""
    spec = hit.spec
    official = {normalise(c): c for c in spec.classes}
    folder_map = {d: official.get(normalise(d)) for d in hit.members}
    where = f"{hit.source.label}" + (f" ({hit.prefix}/)" if hit.prefix else "")
    unexpected = sorted(d for d, c in folder_map.items() if c is None)
    missing = sorted(set(spec.classes) - set(folder_map.values()))
    if unexpected or missing:
        parts = []
        if missing:
            parts.append(f"missing class folders {missing}")
        if unexpected:
            parts.append(f"unexpected folders {unexpected}")
        raise DataError(f"{where} is not the official {spec.name} layout ({spec.layout()}): "
                        f"{'; '.join(parts)}. Import the unmodified official release")
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
                f"{where}: per-class image counts differ from the official {spec.name} release: "
                f"{shown}. The archive is incomplete or not the official release: download it "
                f"again (`fedrs data download {spec.name}` or from {spec.homepage or 'its homepage'})"
            )
    return folder_map, subset


# --- image extraction: hash, decode, write ------------------------------------------------------

@dataclass
class _Image:
    member: str
    rel: str                       # path relative to the dataset folder
    label: str | None
    sha256: str = ""
    size: tuple[int, int] | None = None
    nbytes: int = 0
    error: str | None = None


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


def _check_and_write(data: bytes, dest: Path) -> tuple[str, tuple[int, int] | None, str | None]:
    from PIL import Image

    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            size = im.size
    except Exception as exc:  # noqa: BLE001 - any decoder failure makes the file bad
        return digest, None, f"{type(exc).__name__}: {exc}"
    dest.write_bytes(data)
    return digest, size, None


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
                im.sha256, im.size, im.error = fut.result()
                bar.update(1)

        for member, data in source.iter_read([im.member for im in images]):
            im = by_member[member]
            im.nbytes = len(data)
            pending.append((im, pool.submit(_check_and_write, data, dest_root / im.rel)))
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
            f"{name}: {len(bad)} image(s) cannot be decoded: {listed}{more}. Replace the damaged "
            f"source, or re-run with --exclude-bad to leave them out (recorded in the manifest)"
        )
    excluded = [{"path": im.rel, "source_member": im.member, "reason": im.error} for im in bad]
    kept = [im for im in images if not im.error]
    groups: dict[str, list[str]] = defaultdict(list)
    for im in kept:
        groups[im.sha256].append(im.rel)
    duplicates = sorted(sorted(g) for g in groups.values() if len(g) > 1)
    return kept, excluded, duplicates


def _size_summary(images: list[_Image]) -> dict[str, Any]:
    sizes = Counter(im.size for im in images if im.size)
    if not sizes:
        return {}
    ws, hs = [s[0] for s in sizes], [s[1] for s in sizes]
    return {"min": [min(ws), min(hs)], "max": [max(ws), max(hs)], "distinct": len(sizes),
            "common": [[w, h, n] for (w, h), n in sizes.most_common(5)]}


def _image_entries(images: list[_Image]) -> list[dict[str, Any]]:
    return [{"path": im.rel, "label": im.label, "size": list(im.size), "bytes": im.nbytes,
             "sha256": im.sha256} for im in images]


# --- the import of one dataset ------------------------------------------------------------------

@dataclass
class _Options:
    root: Path
    exclude_bad: bool = False
    force: bool = False
    progress: bool = True
    url: str | None = None


def existing_manifest(dest: Path) -> dict | None:
    try:
        return json.loads((dest / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def files_in_place(dest: Path, manifest: dict) -> bool:
    """Every file the manifest records is in place with its recorded size."""
    try:
        for entry in manifest.get("images", []) + manifest.get("files", []):
            if (dest / (entry.get("path") or entry["name"])).stat().st_size != entry["bytes"]:
                return False
    except (OSError, KeyError, TypeError):
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
        "name": spec.name,
        "kind": spec.kind,
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
    os.chmod(tmp, 0o777 & ~umask)
    os.chmod(tmp / MANIFEST_NAME, 0o666 & ~umask)
    if dest.exists():
        old = dest.with_name(f".fedrs-old-{dest.name}-{uuid.uuid4().hex[:8]}")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


def _import_one(hit, opts: _Options, layout: tuple[dict[str, str], bool] | None) -> ImportResult:
    spec = hit.spec
    dest = opts.root / spec.name
    start = time.perf_counter()
    if hit.source.path.resolve().is_relative_to(dest.resolve()):
        raise DataError(f"{hit.source.label} is inside the imported {spec.name} in {opts.root}: "
                        f"import from the original archive or folder instead")
    fingerprint = hit.source.fingerprint(hit.member_names())
    previous = existing_manifest(dest)
    if not opts.force and _same_source(previous, fingerprint, opts) and files_in_place(dest, previous):
        return ImportResult(spec.name, spec.kind, "skipped", dest, hit.source.label,
                            num_images=len(previous.get("images", [])),
                            num_classes=len(previous.get("classes", [])) or None)
    tmp = Path(tempfile.mkdtemp(prefix=f".fedrs-import-{spec.name}-", dir=opts.root))
    try:
        manifest = _manifest_head(hit, fingerprint, opts)
        if isinstance(hit, SceneHit):
            result = _build_scene(hit, *layout, tmp, manifest, opts)
        else:
            result = _build_captions(hit, tmp, manifest, opts)
        manifest["import_seconds"] = round(time.perf_counter() - start, 2)
        write_json_atomic(tmp / MANIFEST_NAME, manifest)
        _install(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.status = "replaced" if previous else "imported"
    result.path, result.seconds = dest, time.perf_counter() - start
    return result


def _build_scene(hit: SceneHit, folder_map: dict[str, str], subset: bool, tmp: Path,
                 manifest: dict, opts: _Options) -> ImportResult:
    spec = hit.spec
    images = []
    for folder, members in hit.members.items():
        cls = folder_map[folder]
        for m in members:
            images.append(_Image(m, f"{spec.class_root}/{cls}/{PurePosixPath(m).name}", cls))
    images.sort(key=lambda im: im.rel)
    _extract_images(hit.source, images, tmp, spec.name, opts.progress)
    kept, excluded, duplicates = _image_outcome(images, hit.source, spec.name, opts.exclude_bad)
    counts = Counter(im.label for im in kept)
    notes = []
    renamed = sorted(f"{d} -> {c}" for d, c in folder_map.items() if d != c)
    if renamed:
        notes.append(f"class folders renamed to the official names: {', '.join(renamed)}")
    if subset:
        notes.append(f"subset of the official release ({len(images):,} of {spec.total:,} images)")
    if spec.counts is None:
        notes.append("official per-class counts unknown: only the class folders were validated")
    manifest.update({
        "class_root": spec.class_root,
        "subset": subset,
        "classes": [{"name": c, "count": counts[c],
                     "official": spec.counts[c] if spec.counts else None} for c in spec.classes],
        "num_images": len(kept),
        "image_sizes": _size_summary(kept),
        "duplicates": duplicates,
        "excluded": excluded,
        "notes": notes,
        "images": _image_entries(kept),
    })
    return ImportResult(spec.name, "scene", "", tmp, hit.source.label, num_images=len(kept),
                        num_classes=len(spec.classes), duplicates=duplicates, excluded=excluded,
                        notes=notes)


def _build_captions(hit: CaptionHit, tmp: Path, manifest: dict, opts: _Options) -> ImportResult:
    spec = hit.spec
    files = []
    for member in hit.files:
        data = hit.source.read(member)
        name = PurePosixPath(member).name
        (tmp / name).write_bytes(data)
        files.append({"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    kept, excluded, duplicates = [], [], []
    if hit.images:
        under = join_member(hit.prefix, hit.image_dir or "") + "/"
        images = sorted((_Image(m, f"{hit.image_dir}/{m[len(under):]}", None) for m in hit.images),
                        key=lambda im: im.rel)
        _extract_images(hit.source, images, tmp, spec.name, opts.progress)
        kept, excluded, duplicates = _image_outcome(images, hit.source, spec.name, opts.exclude_bad)
    summary = validate_caption_folder(tmp, spec)
    n_images = sum(s["images"] for s in summary["splits"].values())
    notes = [] if hit.images else [
        f"no image folder: images resolve through {spec.scene_source}" if spec.scene_source
        else "no image folder imported: items have no images"]
    manifest.update({
        **summary,
        "files": files,
        "image_dir": hit.image_dir,
        "image_sizes": _size_summary(kept),
        "duplicates": duplicates,
        "excluded": excluded,
        "notes": notes,
        "images": _image_entries(kept),
    })
    return ImportResult(spec.name, "captions", "", tmp, hit.source.label, num_images=n_images,
                        duplicates=duplicates, excluded=excluded, notes=notes)


def import_sources(sources: Iterable[str | Path] | str | Path, root: str | Path | None = None,
                   exclude_bad: bool = False, force: bool = False, progress: bool = True,
                   expect: str | None = None, url: str | None = None) -> list[ImportResult]:
    """Import every dataset found in ``sources`` (archives, dataset folders, folders of those).

    ``force`` re-imports even what is present and verified; ``expect`` (a dataset name) fails
    unless that dataset is among those found; ``url`` is recorded as the origin (downloads).
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    opts = _Options(resolve_root(root), exclude_bad, force, progress, url)
    opts.root.mkdir(parents=True, exist_ok=True)
    opened: list[Source] = []
    try:
        hits = find_datasets(sources, opened)
        if expect and expect not in {h.name for h in hits}:
            raise DataError(f"{', '.join(s.label for s in opened)} holds "
                            f"{', '.join(h.name for h in hits)}, not {expect}")
        # every layout and count is checked before any dataset is hashed, decoded or written
        layouts = [_check_scene_layout(h) if isinstance(h, SceneHit) else None for h in hits]
        results = []
        for hit, layout in zip(hits, layouts):
            result = _import_one(hit, opts, layout)
            if progress:
                logger.info(result.summary())
            results.append(result)
        return results
    finally:
        for src in opened:
            src.close()


__all__ = ["ImportResult", "import_sources", "existing_manifest", "files_in_place"]
