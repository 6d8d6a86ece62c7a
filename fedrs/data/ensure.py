"""Make the datasets a study needs present: from local archives, else by download.

:func:`ensure_datasets` is what ``fedrs data import`` (no source), ``make data`` / ``make study``
and the notebooks' ``ensure_ready`` call. For each dataset that is not imported and verified in
the data root it

1. imports it from a local folder of archives (``source``, else ``$FEDRS_SOURCE``, else
   ``../shared/data``) when that folder exists; then
2. downloads what is still missing and imports it, each file checked against its published
   checksum: from the mirror ``$FEDRS_MIRROR`` when set (an ``http(s)://`` or ``file://`` copy of
   a shared data folder: the archives and caption folders, with a ``SHA256SUMS`` listing them),
   else from the dataset's official release (the registry's URL).

When a dataset can be had neither way (offline, or no download known for it) it fails at once,
before downloading anything else, with one message naming both routes: a local folder of
archives (``fedrs data import PATH``, or ``FEDRS_SOURCE=PATH`` for ``make study``) or a machine
with internet access.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Iterable

from fedrs.errors import DataError

from .download import DownloadError, download_dataset, download_files, fetch_bytes
from .importing import ImportResult, existing_manifest, files_in_place, import_sources
from .registry import (
    AID_HOLDOUT, CaptionSetSpec, SceneDatasetSpec, find_spec, get_spec, normalise, resolve_root,
    writable_root,
)

logger = logging.getLogger(__name__)

#: what ``make study`` uses: the shipped datasets (AID-holdout needs AID and RSICD)
STUDY_DATASETS = ("UCMerced", "AID", "RSSCN7", "EuroSAT", "UCM-Captions", "RSICD")
SOURCE_ENV = "FEDRS_SOURCE"
MIRROR_ENV = "FEDRS_MIRROR"
DEFAULT_SOURCE = "../shared/data"


def default_source() -> Path:
    """The local folder of archives: ``$FEDRS_SOURCE``, else ``../shared/data`` (from the
    current directory, as ``make`` runs in the checkout)."""
    return Path(os.environ.get(SOURCE_ENV) or DEFAULT_SOURCE).expanduser()


def needed_datasets(names: Iterable[str], root: Path) -> list[str]:
    """Canonical names of the datasets behind ``names`` (AID-holdout -> AID and RSICD)."""
    out: list[str] = []
    for name in names:
        parts = ["AID", "RSICD"] if normalise(name) == normalise(AID_HOLDOUT) else [get_spec(name, root).name]
        out += [p for p in parts if p not in out]
    return out


def is_ready(name: str, root: Path) -> bool:
    """Whether ``name`` is imported in ``root`` with every recorded file in place."""
    dest = root / name
    manifest = existing_manifest(dest)
    return manifest is not None and files_in_place(dest, manifest)


def missing_datasets(names: Iterable[str] = STUDY_DATASETS, root: str | Path | None = None) -> list[str]:
    """Which of ``names`` are not imported and verified in the data root."""
    root = resolve_root(root)
    return [n for n in needed_datasets(names, root) if not is_ready(n, root)]


# --- where a missing dataset can be downloaded from --------------------------------------------

class _Route:
    """How to download one dataset: an archive URL (with its checksum) or a folder of files."""

    def __init__(self, name: str, url: str, sha256: str | None = None,
                 files: dict[str, str] | None = None, base: str = ""):
        self.name, self.url, self.sha256, self.files, self.base = name, url, sha256, files, base

    def fetch(self, root: Path, progress: bool) -> list[ImportResult]:
        if self.files:
            return download_files(self.name, self.base, self.files, root, progress=progress)
        return download_dataset(self.name, root, url=self.url, sha256=self.sha256, progress=progress)


def _mirror_listing(mirror: str) -> dict[str, str]:
    """``<mirror>/SHA256SUMS`` as {relative path: sha256}."""
    url = mirror.rstrip("/") + "/SHA256SUMS"
    text = fetch_bytes(url, "the mirror's SHA256SUMS").decode("utf-8", "replace")
    out = {}
    for line in text.splitlines():
        digest, _, rel = line.strip().partition(" ")
        rel = rel.strip().lstrip("*")
        if len(digest) == 64 and rel and ".." not in PurePosixPath(rel).parts:
            out[rel] = digest.lower()
    if not out:
        raise DataError(f"the mirror's SHA256SUMS lists no files ({url}): point {MIRROR_ENV} at "
                        f"a folder holding the archives and a SHA256SUMS that lists them")
    return out


def _names_of(spec) -> set[str]:
    return {normalise(spec.name), *(normalise(a) for a in spec.aliases),
            *(normalise(PurePosixPath(a).stem) for a in spec.archive_names)}


def _mirror_route(spec, mirror: str, listing: dict[str, str]) -> _Route | None:
    """The mirror's archive of ``spec`` (by its archive names), or its folder of files (caption
    sets: a top folder named after the set)."""
    base = mirror.rstrip("/") + "/"
    keys = _names_of(spec)
    for rel, digest in sorted(listing.items()):
        if "/" in rel:
            continue
        stem = rel
        for ext in (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"):
            if rel.lower().endswith(ext):
                stem = rel[: -len(ext)]
        if rel in spec.archive_names or (stem != rel and normalise(stem) in keys):
            return _Route(spec.name, base + urllib.parse.quote(rel), digest)
    folders: dict[str, dict[str, str]] = {}
    for rel, digest in listing.items():
        top, _, rest = rel.partition("/")
        if rest and normalise(top) in keys:
            folders.setdefault(top, {})[rel] = digest
    if folders and isinstance(spec, CaptionSetSpec):
        top = sorted(folders)[0]
        return _Route(spec.name, base + urllib.parse.quote(top), files=folders[top], base=mirror)
    return None


def _routes(missing: list[str], root: Path) -> tuple[dict[str, _Route], list[str], str]:
    """Download routes of the missing datasets, those without one, and where they were sought."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    routes: dict[str, _Route] = {}
    if mirror:
        listing = _mirror_listing(mirror)
        for name in missing:
            route = _mirror_route(get_spec(name, root), mirror, listing)
            if route is not None:
                routes[name] = route
        return routes, [n for n in missing if n not in routes], f"the mirror {mirror}"
    for name in missing:
        spec = find_spec(name, root)
        if isinstance(spec, (SceneDatasetSpec, CaptionSetSpec)) and spec.url and spec.origin == "registry":
            routes[name] = _Route(name, spec.url)
    return routes, [n for n in missing if n not in routes], "the official releases"


# --- the one message when nothing works ---------------------------------------------------------

def _unavailable(missing: list[str], root: Path, source: Path, reason: str,
                 downloadable: list[str], no_route: list[str], origin: str = "") -> DataError:
    """The one message: what is missing, why, and the two routes (local archives, internet)."""
    homes = []
    for name in no_route:
        spec = find_spec(name, root)
        if spec is not None and spec.homepage and spec.homepage not in homes:
            homes.append(spec.homepage)
    mirror = (f"{', '.join(no_route)} from a copy of a shared data folder that {MIRROR_ENV} "
              f"names (official pages: {', '.join(homes) or 'see the README'})") if no_route else ""
    fetched = f"{', '.join(downloadable)} from {origin or 'their official releases'}" if downloadable else ""
    how = "; ".join(x for x in (fetched, mirror) if x)
    return DataError(
        f"{len(missing)} dataset(s) are not imported and cannot be had here: {', '.join(missing)} "
        f"({'not in' if source.exists() else 'no archives at'} {source}; data root {root}): "
        f"{reason}. Either copy the archives to a "
        f"folder on this machine and run `fedrs data import PATH` (for make study: "
        f"`make study FEDRS_SOURCE=PATH`), or run on a machine with internet access, where "
        f"`fedrs data import` downloads them{': ' + how if how else ''}"
    )


def ensure_datasets(names: Iterable[str] = STUDY_DATASETS, root: str | Path | None = None,
                    source: str | Path | None = None, allow_download: bool = True,
                    progress: bool = True) -> list[ImportResult]:
    """Make ``names`` imported and verified in the data root; what was imported.

    Missing datasets come from the local folder of archives ``source`` (default
    :func:`default_source`) when it exists, then by download (see the module docstring) unless
    ``allow_download`` is False. A no-op (no network, nothing read) when all are present.
    Raises one :class:`~fedrs.errors.DataError` naming both routes when a dataset can be had
    neither way.
    """
    root = writable_root(root)
    names = list(names)
    missing = missing_datasets(names, root)
    if not missing:
        if progress:
            logger.info(f"all {len(needed_datasets(names, root))} datasets are imported and "
                        f"verified in {root}")
        return []
    results: list[ImportResult] = []
    local = Path(source).expanduser() if source is not None else default_source()
    if local.exists():
        results += import_sources([local], root, progress=progress, only=missing)
        missing = missing_datasets(names, root)
        if not missing:
            return results
    if not allow_download:
        raise _unavailable(missing, root, local, "downloads are off (--no-download)", [], [])
    try:
        routes, no_route, origin = _routes(missing, root)
    except DownloadError as exc:
        raise _unavailable(missing, root, local, f"no network ({exc.url}: {exc.reason})",
                           missing, [], f"the mirror {os.environ.get(MIRROR_ENV)}") from exc
    if no_route:  # fail before downloading anything: the user has to act anyway
        have = [n for n in missing if n in routes]
        raise _unavailable(missing, root, local, f"{', '.join(no_route)} cannot be downloaded "
                           f"from {origin}", have, no_route, origin)
    if progress:
        logger.info(f"no archives for {', '.join(missing)} in {local} ({SOURCE_ENV}): "
                    f"downloading them from {origin}")
    for name in missing:
        try:
            results += routes[name].fetch(root, progress)
        except DownloadError as exc:
            raise _unavailable(missing, root, local, f"no network ({exc.url}: {exc.reason})",
                               list(routes), [], origin) from exc
    return results


__all__ = ["ensure_datasets", "missing_datasets", "needed_datasets", "default_source",
           "STUDY_DATASETS", "SOURCE_ENV", "MIRROR_ENV"]
