"""``download_dataset``: fetch a dataset's official archive (or a given URL) and import it.

The archive is checked against the registry's published checksum (SHA-256, else MD5, else size)
or the one given, before anything is imported. :func:`download_files` fetches a set of files (a
caption folder on a mirror) the same way. Offline it fails fast (``$FEDRS_DOWNLOAD_TIMEOUT``
seconds, default 10) with a :class:`DownloadError`, naming ``fedrs data import`` for a copied
archive.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fedrs.errors import DataError

from .importing import ImportResult, disk_error, existing_manifest, files_in_place, import_sources
from .registry import AID_HOLDOUT, get_spec, normalise, writable_root
from .sources import ARCHIVE_EXTENSIONS
from .workdirs import clean_stale_workdirs, new_workdir

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 10.0


class DownloadError(DataError):
    """A file could not be fetched: no network, an unreachable server, a missing file.
    ``url`` and ``reason`` say which and why."""

    def __init__(self, message: str, url: str = "", reason: str = ""):
        super().__init__(message)
        self.url, self.reason = url, reason


def _timeout() -> float:
    return float(os.environ.get("FEDRS_DOWNLOAD_TIMEOUT", DOWNLOAD_TIMEOUT_S))


@dataclass(frozen=True)
class Checksums:
    """What a downloaded file must match (any that is given)."""

    sha256: str | None = None
    md5: str | None = None
    nbytes: int | None = None

    def __bool__(self) -> bool:
        return bool(self.sha256 or self.md5 or self.nbytes)


def download_dataset(name: str, root: str | Path | None = None, url: str | None = None,
                     sha256: str | None = None, force: bool = False,
                     progress: bool = True, *, as_name: str | None = None,
                     replace: bool = False) -> list[ImportResult]:
    """Download a dataset's official archive (or ``url``) and import it (as ``as_name``, a
    variant, when given; ``replace`` replaces another release already imported)."""
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
    expected = Checksums(sha256=sha256 or spec.sha256, md5=None if sha256 else spec.md5,
                         nbytes=spec.archive_bytes if not (sha256 or spec.sha256) else None)
    return _download_and_import(spec.name, [(url, _archive_name(url, spec), expected)], url,
                                root, force, progress, as_name=as_name, replace=replace)


def download_files(name: str, base_url: str, files: dict[str, str], root: str | Path | None = None,
                   force: bool = False, progress: bool = True) -> list[ImportResult]:
    """Fetch ``files`` (path relative to ``base_url`` -> sha256) into one folder and import it
    as ``name`` (a caption folder on a mirror)."""
    spec = get_spec(name)
    base = base_url.rstrip("/") + "/"
    items = [(base + urllib.parse.quote(rel), rel, Checksums(sha256=digest))
             for rel, digest in sorted(files.items())]
    folder = PurePosixPath(sorted(files)[0]).parts[0]
    return _download_and_import(spec.name, items, base + urllib.parse.quote(folder), root, force,
                                progress, import_path=folder)


def _download_and_import(name: str, items: list[tuple[str, str, Checksums]], origin: str,
                         root: str | Path | None, force: bool, progress: bool, *,
                         import_path: str | None = None, as_name: str | None = None,
                         replace: bool = False) -> list[ImportResult]:
    root = writable_root(root)
    dest = root / (as_name or name)
    previous = existing_manifest(dest)
    if (not force and previous and previous.get("source", {}).get("url") == origin
            and files_in_place(dest, previous)):
        result = ImportResult(as_name or name, previous.get("kind", "scene"), "skipped", dest,
                              origin, num_images=len(previous.get("images", [])))
        if progress:
            logger.info(result.summary())
        return [result]
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        clean_stale_workdirs(root)
        tmpdir = new_workdir(root, "download", name)
    except OSError as exc:
        raise disk_error(exc, root, f"preparing the download of {name}") from exc
    failed = True
    try:
        for url, rel, expected in items:
            target = tmpdir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                digests = _fetch(url, target, name, progress)
            except BrokenPipeError:
                raise
            except DataError:
                raise
            except OSError as exc:
                raise disk_error(exc, root, f"downloading {name}") from exc
            _verify(url, target, digests, expected, name)
        source = tmpdir / (import_path or items[0][1])
        results = import_sources([source], root, force=force, progress=progress, expect=name,
                                 url=origin, name=as_name, replace=replace)
        failed = False
        return results
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
        if failed and created:  # a failed first download leaves no empty data root behind
            try:
                root.rmdir()
            except OSError:
                pass


def _verify(url: str, target: Path, digests: dict[str, str], expected: Checksums, name: str) -> None:
    fix = ("the download is damaged or the URL serves another file; try again, import a copy, "
           "or give that file's checksum with --sha256")
    if expected.sha256 and digests["sha256"] != expected.sha256.lower():
        raise DataError(f"downloaded with sha256 {digests['sha256']}, expected {expected.sha256} "
                        f"({url}): {fix}")
    if expected.md5 and digests["md5"] != expected.md5.lower():
        raise DataError(f"downloaded with MD5 {digests['md5']}, expected {expected.md5} ({url}): {fix}")
    if expected.nbytes:
        size = target.stat().st_size
        if size != expected.nbytes:
            raise DataError(f"downloaded {size} bytes, expected {expected.nbytes} ({url}): the "
                            f"download is incomplete; try again")
    if not expected:
        logger.warning(f"no published checksum for {name} ({url}): downloaded file recorded with "
                       f"sha256 {digests['sha256']}, not verified")


def _archive_name(url: str, spec) -> str:
    base = PurePosixPath(urllib.parse.urlparse(url).path).name
    if base.lower().endswith(ARCHIVE_EXTENSIONS):
        return urllib.parse.unquote(base)
    return spec.archive_names[0] if spec.archive_names else f"{spec.name}.zip"


def fetch_bytes(url: str, what: str) -> bytes:
    """A small file's bytes (a mirror's SHA256SUMS); network failures become a DownloadError."""
    try:
        with urllib.request.urlopen(url, timeout=_timeout()) as resp:
            return resp.read()
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as exc:
        raise _network_error(what, url, exc) from exc


def _network_error(what: str, url: str, exc: BaseException) -> DownloadError:
    reason = getattr(exc, "reason", None) or exc
    return DownloadError(
        f"cannot download {what} from {url} ({reason}): no network or the server is "
        f"unreachable; copy the archive to this machine and run `fedrs data import <archive>`",
        url, str(reason))


def _fetch(url: str, target: Path, name: str, progress: bool) -> dict[str, str]:
    """Stream ``url`` into ``target``; its sha256 and md5. Network failures become a
    DownloadError; a failing write (full disk) stays an OSError."""
    from tqdm import tqdm

    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    try:
        resp = urllib.request.urlopen(url, timeout=_timeout())
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as exc:
        raise _network_error(name, url, exc) from exc
    with resp, target.open("wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, desc=f"download {name}", unit="B", unit_scale=True,
                  disable=None if progress else True) as bar:
            while True:
                try:
                    block = resp.read(1 << 20)
                except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
                    raise _network_error(name, url, exc) from exc
                if not block:
                    break
                out.write(block)
                sha.update(block)
                md5.update(block)
                bar.update(len(block))
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest()}


__all__ = ["download_dataset", "download_files", "fetch_bytes", "DownloadError", "Checksums",
           "DOWNLOAD_TIMEOUT_S"]
