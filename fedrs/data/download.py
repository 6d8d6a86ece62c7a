"""``download_dataset``: fetch a dataset's official archive (or a given URL) and import it.

Offline it fails fast (``$FEDRS_DOWNLOAD_TIMEOUT`` seconds, default 10), naming ``fedrs data
import`` for a copied archive.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

from fedrs.errors import DataError

from .importing import ImportResult, existing_manifest, files_in_place, import_sources
from .registry import AID_HOLDOUT, get_spec, normalise, resolve_root
from .sources import ARCHIVE_EXTENSIONS

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 10.0


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
    previous = existing_manifest(dest)
    if (not force and previous and previous.get("source", {}).get("url") == url
            and files_in_place(dest, previous)):
        result = ImportResult(spec.name, spec.kind, "skipped", dest, url,
                              num_images=len(previous.get("images", [])))
        if progress:
            logger.info(result.summary())
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
    if base.lower().endswith(ARCHIVE_EXTENSIONS):
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


__all__ = ["download_dataset", "DOWNLOAD_TIMEOUT_S"]
