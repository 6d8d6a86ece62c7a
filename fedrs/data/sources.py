"""Where dataset files are read from: zip and tar archives and folders, behind one interface.

A :class:`Source` lists its files as clean relative posix names (no unsafe ``..`` paths; OS junk
such as ``__MACOSX/``, ``.DS_Store`` or ``Thumbs.db`` is left out and kept in :attr:`Source.junk`
so the import can say what it skipped), their sizes and folders, reads them, and fingerprints
itself for idempotent re-imports; a ``SHA256SUMS`` file beside the archives is checked when present.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from fedrs.errors import DataError

from .registry import IMAGE_EXTENSIONS

ARCHIVE_EXTENSIONS = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_JUNK_FILES = {"thumbs.db", "desktop.ini"}


def _normal_name(name: str) -> str | None:
    """A member name as a relative posix path, or None for an unsafe or empty one."""
    name = name.replace("\\", "/").lstrip("/")
    while name.startswith("./"):
        name = name[2:]
    parts = [p for p in name.split("/") if p and p != "."]
    if not parts or any(p == ".." for p in parts):
        return None
    return "/".join(parts)


def is_junk(name: str) -> bool:
    """OS or editor litter: hidden files and folders (``.DS_Store``, ``._x``), ``__MACOSX/``,
    ``Thumbs.db``, ``desktop.ini``."""
    parts = name.split("/")
    return (any(p.startswith(".") or p == "__MACOSX" for p in parts)
            or parts[-1].lower() in _JUNK_FILES)


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Source:
    """A readable collection of files: archive or folder."""

    kind = ""

    def __init__(self, path: Path, expected_sha: dict[str, str] | None = None):
        self.path = path
        self.expected_sha = expected_sha or {}   # from a SHA256SUMS beside it
        self._names: list[str] = []
        self._sizes: dict[str, int] = {}
        self._dirs: set[str] = set()
        self.junk: list[str] = []                # OS junk left out (relative names)

    def _add(self, raw: str, size: int) -> None:
        """Record one file member: kept, or noted as junk (unsafe names are dropped)."""
        name = _normal_name(raw)
        if name is None:
            return
        if is_junk(name):
            self.junk.append(name)
            return
        self._names.append(name)
        self._sizes[name] = size
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self._dirs.add("/".join(parts[:i]))

    def _add_dir(self, raw: str) -> None:
        name = _normal_name(raw)
        if name is not None and not is_junk(name):
            parts = name.split("/")
            for i in range(1, len(parts) + 1):
                self._dirs.add("/".join(parts[:i]))

    @property
    def label(self) -> str:
        return str(self.path)

    @property
    def hint(self) -> str:
        """The dataset name the source's own name suggests."""
        name = self.path.name
        for ext in ARCHIVE_EXTENSIONS:
            if name.lower().endswith(ext):
                return name[: -len(ext)]
        return name

    def names(self) -> list[str]:
        return self._names

    def size(self, name: str) -> int:
        """Size in bytes of member ``name`` (as stored uncompressed), read from the index."""
        return self._sizes[name]

    def dirs(self) -> set[str]:
        """Every folder in the source, empty ones included (relative posix names)."""
        return self._dirs

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
                    f"the archive does not match its checksum in SHA256SUMS: {digest[:12]}... "
                    f"instead of {expected[:12]}... ({self.path}): the copy is damaged; copy it again"
                )
            self._fingerprint = {"sha256": digest, "bytes": self.path.stat().st_size}
        return self._fingerprint

    def close(self) -> None:
        pass

    def _damaged(self, name: str, exc: BaseException) -> DataError:
        return DataError(f"cannot read {name} in the archive: {exc} ({self.path}): the archive "
                         f"is damaged; copy or download it again")


class ZipSource(Source):
    kind = "zip"

    def __init__(self, path: Path, expected_sha: dict[str, str] | None = None):
        super().__init__(path, expected_sha)
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"not a readable zip archive: {exc} ({path}): copy or download it again") from exc
        self._orig = {}
        for info in self._zip.infolist():
            if info.is_dir():
                self._add_dir(info.filename)
                continue
            before = len(self._names)
            self._add(info.filename, info.file_size)
            if len(self._names) > before:
                self._orig[self._names[-1]] = info.filename

    def read(self, name: str) -> bytes:
        try:
            return self._zip.read(self._orig[name])
        except (zipfile.BadZipFile, OSError, EOFError) as exc:  # CRC error, truncated archive
            raise self._damaged(name, exc) from exc

    def close(self) -> None:
        self._zip.close()


class TarSource(Source):
    kind = "tar"

    def __init__(self, path: Path, expected_sha: dict[str, str] | None = None):
        super().__init__(path, expected_sha)
        try:
            self._tar = tarfile.open(path, "r:*")
            members = self._tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"not a readable tar archive: {exc} ({path}): copy or download it again") from exc
        self._members = {}
        for m in members:
            if m.isdir():
                self._add_dir(m.name)
            elif m.isfile():
                before = len(self._names)
                self._add(m.name, m.size)
                if len(self._names) > before:
                    self._members[self._names[-1]] = m

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


class DirSource(Source):
    kind = "folder"

    def __init__(self, path: Path, expected_sha: dict[str, str] | None = None):
        super().__init__(path, expected_sha)
        for dirpath, dirnames, filenames in os.walk(path):
            rel = Path(dirpath).relative_to(path).as_posix()

            def join(f: str) -> str:
                return f if rel == "." else f"{rel}/{f}"

            self.junk += [join(d) + "/" for d in sorted(dirnames) if is_junk(d)]
            dirnames[:] = sorted(d for d in dirnames if not is_junk(d))
            for d in dirnames:
                self._add_dir(join(d))
            for f in sorted(filenames):
                full = Path(dirpath) / f
                try:
                    size = full.stat().st_size
                except OSError:  # a dangling link: not a file to import
                    continue
                self._add(join(f), size)

    def read(self, name: str) -> bytes:
        data = (self.path / name).read_bytes()
        expected = self.expected_sha.get(name)
        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise DataError(f"the file does not match its checksum in SHA256SUMS ({self.path / name}): "
                            f"the copy is damaged; copy it again")
        return data

    def fingerprint(self, names: Sequence[str]) -> dict[str, Any]:
        """Folder identity: image paths and sizes, other files' content hashes."""
        h = hashlib.sha256()
        total = 0
        for name in sorted(names):
            size = self.size(name)
            total += size
            digest = "" if is_image(name) else hashlib.sha256(self.read(name)).hexdigest()
            h.update(f"{name}\t{size}\t{digest}\n".encode())
        return {"sha256": h.hexdigest(), "bytes": total}


def open_archive(path: Path, expected_sha: dict[str, str] | None = None) -> Source:
    if path.suffix.lower() == ".rar":
        raise DataError(f"RAR archives are not supported ({path}): extract it (e.g. `unrar x "
                        f"{path.name}`) and run `fedrs data import` on the extracted folder")
    lower = path.name.lower()
    try:
        # named as an archive: open it as one, so a damaged copy says so (a truncated zip has
        # no central directory and would not even be recognised as a zip)
        if lower.endswith(".zip") or zipfile.is_zipfile(path):
            return ZipSource(path, expected_sha)
        if lower.endswith(ARCHIVE_EXTENSIONS) or tarfile.is_tarfile(path):
            return TarSource(path, expected_sha)
    except OSError as exc:
        raise DataError(f"cannot read the archive: {exc.strerror or exc} ({path}): check that "
                        f"it is readable (permissions, a mounted disk)") from exc
    raise DataError(f"neither a zip/tar archive nor a folder ({path}): pass the dataset archive "
                    f"or the folder holding it")


def read_sha256sums(folder: Path) -> dict[str, str]:
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return {}
    out = {}
    for line in sums.read_text(encoding="utf-8", errors="replace").splitlines():
        digest, _, name = line.strip().partition(" ")
        if len(digest) == 64 and name.strip():
            out[name.strip().lstrip("*")] = digest.lower()
    return out


__all__ = ["ARCHIVE_EXTENSIONS", "Source", "ZipSource", "TarSource", "DirSource", "open_archive",
           "read_sha256sums", "is_image", "is_junk"]
