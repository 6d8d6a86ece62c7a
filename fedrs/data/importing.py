"""Import, validate and download datasets into the data root.

``import_sources(["/path/to/AID.zip", "/path/to/UCM_Captions/"])`` recognises each dataset by its
layout (class folders for scene datasets, caption files for caption sets), not by file name; a
source may be a zip or tar archive, a dataset folder, or a folder holding several of those (and a
``SHA256SUMS`` file, which is then checked). For each dataset found it

1. skips it when ``<root>/<Name>/fedrs_manifest.json`` records the same source checksum and every
   recorded file is in place (idempotent re-runs);
2. validates the layout and the per-class image counts against the registry before anything
   heavy is done;
3. extracts into a temporary folder inside the root, hashing and fully decoding every image once
   (records sizes, reports exact duplicates, lists undecodable files: the import fails on them
   unless ``exclude_bad``, which leaves them out and records them in the manifest);
4. writes the manifest last and renames the folder into place: never anything half-written.

``download_dataset(name)`` fetches a spec's URL (or ``url=``, e.g. a ``file://`` archive) into the
root and imports it the same way; offline it fails fast, naming ``fedrs data import``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator, Sequence

from fedrs.errors import DataError
from fedrs.io import write_json_atomic

from .captions import identify_caption_set, validate_caption_folder
from .registry import (
    AID_HOLDOUT, IMAGE_EXTENSIONS, MANIFEST_NAME, SPECS, CaptionSetSpec, SceneDatasetSpec,
    caption_specs, find_spec, get_spec, normalise, resolve_root, scene_specs,
)

DOWNLOAD_TIMEOUT_S = 10.0
_CAPTION_FILE_EXT = (".json", ".txt", ".csv", ".tsv", ".md")
_ARCHIVE_EXT = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_JUNK_FILES = {"thumbs.db", "desktop.ini"}
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


# --- sources: archives and folders --------------------------------------------------------------

def _clean_name(name: str) -> str | None:
    """A member name as a relative posix path, or None for junk / unsafe names."""
    name = name.replace("\\", "/").lstrip("/")
    while name.startswith("./"):
        name = name[2:]
    parts = [p for p in name.split("/") if p]
    if not parts or any(p == ".." for p in parts):
        return None
    if any(p.startswith(".") or p == "__MACOSX" for p in parts) or parts[-1].lower() in _JUNK_FILES:
        return None
    return "/".join(parts)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _Source:
    """A readable collection of files: archive or folder."""

    kind = ""

    def __init__(self, path: Path, expected_sha: dict[str, str] | None = None):
        self.path = path
        self.expected_sha = expected_sha or {}   # from a SHA256SUMS beside it
        self._names: list[str] = []

    @property
    def label(self) -> str:
        return str(self.path)

    @property
    def hint(self) -> str:
        """The dataset name the source's own name suggests."""
        name = self.path.name
        for ext in _ARCHIVE_EXT:
            if name.lower().endswith(ext):
                return name[: -len(ext)]
        return name

    def names(self) -> list[str]:
        return self._names

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def iter_read(self, names: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        for name in names:
            yield name, self.read(name)

    def fingerprint(self, names: Sequence[str]) -> dict[str, Any]:
        """Identity of the source for idempotent re-imports (archive: its sha256 and size)."""
        if not hasattr(self, "_fingerprint"):
            digest = _sha256_file(self.path)
            expected = self.expected_sha.get(self.path.name)
            if expected and expected != digest:
                raise DataError(
                    f"{self.path} does not match its checksum in SHA256SUMS ({digest[:12]}... "
                    f"instead of {expected[:12]}...): the copy is damaged; copy it again"
                )
            self._fingerprint = {"sha256": digest, "bytes": self.path.stat().st_size}
        return self._fingerprint

    def close(self) -> None:
        pass

    def _damaged(self, name: str, exc: BaseException) -> DataError:
        return DataError(f"{self.path}: cannot read {name} ({exc}): the archive is damaged; "
                         f"copy or download it again")


class _ZipSource(_Source):
    kind = "zip"

    def __init__(self, path: Path, expected_sha: dict[str, str] | None = None):
        super().__init__(path, expected_sha)
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{path} is not a readable zip archive ({exc}): copy or download it again") from exc
        self._orig = {}
        for info in self._zip.infolist():
            clean = None if info.is_dir() else _clean_name(info.filename)
            if clean:
                self._orig[clean] = info.filename
        self._names = list(self._orig)

    def read(self, name: str) -> bytes:
        try:
            return self._zip.read(self._orig[name])
        except (zipfile.BadZipFile, OSError, EOFError) as exc:  # CRC error, truncated archive
            raise self._damaged(name, exc) from exc

    def close(self) -> None:
        self._zip.close()


class _TarSource(_Source):
    kind = "tar"

    def __init__(self, path: Path, expected_sha: dict[str, str] | None = None):
        super().__init__(path, expected_sha)
        try:
            self._tar = tarfile.open(path, "r:*")
            members = self._tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"{path} is not a readable tar archive ({exc}): copy or download it again") from exc
        self._members = {}
        for m in members:
            clean = _clean_name(m.name) if m.isfile() else None
            if clean:
                self._members[clean] = m
        self._names = list(self._members)

    def read(self, name: str) -> bytes:
        try:
            fh = self._tar.extractfile(self._members[name])
            return fh.read() if fh is not None else b""
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise self._damaged(name, exc) from exc

    def iter_read(self, names: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        # a compressed tar is read front to back: follow the archive order
        order = {n: m.offset for n, m in self._members.items()}
        for name in sorted(names, key=order.__getitem__):
            yield name, self.read(name)

    def close(self) -> None:
        self._tar.close()


class _DirSource(_Source):
    kind = "folder"

    def __init__(self, path: Path, expected_sha: dict[str, str] | None = None):
        super().__init__(path, expected_sha)
        names = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
            rel = Path(dirpath).relative_to(path).as_posix()
            for f in sorted(filenames):
                clean = _clean_name(f if rel == "." else f"{rel}/{f}")
                if clean:
                    names.append(clean)
        self._names = names

    def read(self, name: str) -> bytes:
        data = (self.path / name).read_bytes()
        expected = self.expected_sha.get(name)
        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise DataError(f"{self.path / name} does not match its checksum in SHA256SUMS: "
                            f"the copy is damaged; copy it again")
        return data

    def fingerprint(self, names: Sequence[str]) -> dict[str, Any]:
        """Folder identity: image paths and sizes, other files' content hashes."""
        h = hashlib.sha256()
        total = 0
        for name in sorted(names):
            p = self.path / name
            size = p.stat().st_size
            total += size
            digest = "" if _is_image(name) else hashlib.sha256(self.read(name)).hexdigest()
            h.update(f"{name}\t{size}\t{digest}\n".encode())
        return {"sha256": h.hexdigest(), "bytes": total}


def _open_file(path: Path, expected_sha: dict[str, str] | None = None) -> _Source:
    if path.suffix.lower() == ".rar":
        raise DataError(f"{path}: RAR archives are not supported: extract it (e.g. `unrar x "
                        f"{path.name}`) and run `fedrs data import` on the extracted folder")
    if zipfile.is_zipfile(path):
        return _ZipSource(path, expected_sha)
    if tarfile.is_tarfile(path):
        return _TarSource(path, expected_sha)
    raise DataError(f"{path} is neither a zip/tar archive nor a folder: pass the dataset archive "
                    f"or the folder holding it")


def _read_sha256sums(folder: Path) -> dict[str, str]:
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return {}
    out = {}
    for line in sums.read_text(encoding="utf-8", errors="replace").splitlines():
        digest, _, name = line.strip().partition(" ")
        if len(digest) == 64 and name.strip():
            out[name.strip().lstrip("*")] = digest.lower()
    return out


# --- recognising datasets by layout -------------------------------------------------------------

@dataclass
class _SceneHit:
    spec: SceneDatasetSpec
    source: _Source
    prefix: str                                  # folder holding the class folders ("" = top)
    members: dict[str, list[str]]                # source class folder -> image member names
    score: float

    @property
    def name(self) -> str:
        return self.spec.name

    def member_names(self) -> list[str]:
        return [m for ms in self.members.values() for m in ms]


@dataclass
class _CaptionHit:
    spec: CaptionSetSpec
    source: _Source
    prefix: str                                  # folder holding the caption files
    files: list[str]                             # caption files (member names)
    image_dir: str | None = None                 # image folder name inside the set
    images: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def member_names(self) -> list[str]:
        return self.files + self.images


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _name_matches(spec, *names: str) -> bool:
    keys = {normalise(spec.name), *(normalise(a) for a in spec.aliases),
            *(normalise(PurePosixPath(a).stem) for a in spec.archive_names)}
    return any(normalise(n) in keys for n in names if n)


def _detect_scenes(source: _Source) -> list[_SceneHit]:
    """Folders whose sub-folders of images match a spec's class folders (Jaccard >= 0.5)."""
    tree: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name in source.names():
        parts = name.split("/")
        if len(parts) >= 2 and _is_image(name):
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
        hits.append(_SceneHit(spec, source, prefix, dict(tree[prefix]), score))
    return hits


def _is_caption_folder(files: set[str]) -> bool:
    jsons = {j for s in caption_specs() for j in s.json_names}
    return bool(files & jsons) or any(
        f.endswith("_filename.txt") and f"{f[:-len('_filename.txt')]}_caps.txt" in files for f in files)


def _detect_captions(source: _Source) -> tuple[list[_CaptionHit], list[str]]:
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
            f: (lambda f=f: source.read(_join(folder, f))) for f in files}
        spec = identify_caption_set(PurePosixPath(folder).name, readers,
                                    source.hint if not folder else "")
        if spec is None:
            unknown.append(_join(folder, "") or "./")
            continue
        hit = _CaptionHit(spec, source, folder, sorted(
            _join(folder, f) for f in files if f.lower().endswith(_CAPTION_FILE_EXT)))
        for image_dir in spec.image_dirs:
            under = _join(folder, image_dir) + "/"
            images = [n for n in source.names() if n.startswith(under) and _is_image(n)]
            if images:
                hit.image_dir, hit.images = image_dir, images
                break
        hits.append(hit)
    return hits, unknown


def _layout_examples() -> str:
    return "; ".join(f"{s.name}: {s.layout()}" for s in scene_specs()[:4])


def _detect(source: _Source, explicit: bool) -> list[_SceneHit | _CaptionHit]:
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


def _collect(paths: Iterable[str | Path], sources: list[_Source]) -> list:
    """Open every source (expanding folders of archives, appended to ``sources`` for closing)
    and recognise what each holds."""
    hits, notes = [], []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise DataError(f"{path}: no such archive or folder: check the path (the shipped "
                            f"archives are in the shared data folder, e.g. ../shared/data)")
        if path.is_file():
            src = _open_file(path)
            sources.append(src)
            hits += _detect(src, explicit=True)
            continue
        sums = _read_sha256sums(path)
        folder = _DirSource(path, sums)
        sources.append(folder)
        found = _detect(folder, explicit=False)
        for child in sorted(path.iterdir()):
            if child.is_file() and (child.name.lower().endswith(_ARCHIVE_EXT) or child.suffix.lower() == ".rar"):
                src = _open_file(child, sums)
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
        print(f"fedrs: {note}")
    return hits


# --- validation before extraction ---------------------------------------------------------------

def _check_scene_layout(hit: _SceneHit) -> tuple[dict[str, str], bool]:
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


def _extract_images(source: _Source, images: list[_Image], dest_root: Path, desc: str,
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


def _image_outcome(images: list[_Image], source: _Source, name: str,
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


def _existing_manifest(dest: Path) -> dict | None:
    try:
        return json.loads((dest / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _verified(dest: Path, manifest: dict) -> bool:
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
    previous = _existing_manifest(dest)
    if not opts.force and _same_source(previous, fingerprint, opts) and _verified(dest, previous):
        return ImportResult(spec.name, spec.kind, "skipped", dest, hit.source.label,
                            num_images=len(previous.get("images", [])),
                            num_classes=len(previous.get("classes", [])) or None)
    tmp = Path(tempfile.mkdtemp(prefix=f".fedrs-import-{spec.name}-", dir=opts.root))
    try:
        manifest = _manifest_head(hit, fingerprint, opts)
        if isinstance(hit, _SceneHit):
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


def _build_scene(hit: _SceneHit, folder_map: dict[str, str], subset: bool, tmp: Path,
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


def _build_captions(hit: _CaptionHit, tmp: Path, manifest: dict, opts: _Options) -> ImportResult:
    spec = hit.spec
    files = []
    for member in hit.files:
        data = hit.source.read(member)
        name = PurePosixPath(member).name
        (tmp / name).write_bytes(data)
        files.append({"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    kept, excluded, duplicates = [], [], []
    if hit.images:
        under = _join(hit.prefix, hit.image_dir or "") + "/"
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
    opened: list[_Source] = []
    try:
        hits = _collect(sources, opened)
        if expect and expect not in {h.name for h in hits}:
            raise DataError(f"{', '.join(s.label for s in opened)} holds "
                            f"{', '.join(h.name for h in hits)}, not {expect}")
        # every layout and count is checked before any dataset is hashed, decoded or written
        layouts = [_check_scene_layout(h) if isinstance(h, _SceneHit) else None for h in hits]
        results = []
        for hit, layout in zip(hits, layouts):
            result = _import_one(hit, opts, layout)
            if progress:
                print(result.summary())
            results.append(result)
        return results
    finally:
        for src in opened:
            src.close()


# --- download -----------------------------------------------------------------------------------

def _timeout() -> float:
    return float(os.environ.get("FEDRS_DOWNLOAD_TIMEOUT", DOWNLOAD_TIMEOUT_S))


def download_dataset(name: str, root: str | Path | None = None, url: str | None = None,
                     sha256: str | None = None, force: bool = False,
                     progress: bool = True) -> list[ImportResult]:
    """Download a dataset's official archive (or ``url``) and import it."""
    if normalise(name) == normalise(AID_HOLDOUT):
        raise DataError(f"{AID_HOLDOUT} is a view of AID, not a download: "
                        f"run `fedrs data download AID` and import RSICD")
    spec = get_spec(name)
    url = url or spec.url
    if not url:
        raise DataError(
            f"{spec.name} has no direct download: get the official release from "
            f"{spec.homepage or 'its authors'} and run `fedrs data import <archive or folder>`"
        )
    root = resolve_root(root)
    dest = root / spec.name
    previous = _existing_manifest(dest)
    if (not force and previous and previous.get("source", {}).get("url") == url
            and _verified(dest, previous)):
        result = ImportResult(spec.name, spec.kind, "skipped", dest, url,
                              num_images=len(previous.get("images", [])))
        if progress:
            print(result.summary())
        return [result]
    root.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".fedrs-download-{spec.name}-", dir=root))
    try:
        archive = tmpdir / _archive_name(url, spec)
        digest = _fetch(url, archive, spec.name, progress)
        expected = sha256 or spec.sha256
        if expected and digest != expected.lower():
            raise DataError(f"{url} downloaded with sha256 {digest}, expected {expected}: the "
                            f"download is damaged or the file changed; try again or import a copy")
        if spec.sha256 is None and getattr(spec, "archive_bytes", None):
            size = archive.stat().st_size
            if size != spec.archive_bytes:
                raise DataError(f"{url} downloaded {size} bytes, expected {spec.archive_bytes}: "
                                f"the download is incomplete; try again")
        return import_sources([archive], root, force=force, progress=progress,
                              expect=spec.name, url=url)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _archive_name(url: str, spec) -> str:
    base = PurePosixPath(urllib.parse.urlparse(url).path).name
    if base.lower().endswith(_ARCHIVE_EXT):
        return base
    return spec.archive_names[0] if spec.archive_names else f"{spec.name}.zip"


def _fetch(url: str, target: Path, name: str, progress: bool) -> str:
    """Stream ``url`` into ``target``; its sha256. Network failures become a DataError."""
    from tqdm import tqdm

    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=_timeout()) as resp, target.open("wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, desc=f"download {name}", unit="B", unit_scale=True,
                      disable=None if progress else True) as bar:
                for block in iter(lambda: resp.read(1 << 20), b""):
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(
            f"cannot download {name} from {url} ({reason}): no network or the server is "
            f"unreachable; copy the archive to this machine and run `fedrs data import <archive>`"
        ) from exc
    return h.hexdigest()


__all__ = ["ImportResult", "import_sources", "download_dataset", "DOWNLOAD_TIMEOUT_S"]
