"""Frozen image features, computed once in batches and cached on disk by image content.

A frozen backbone maps the same image to the same feature forever, so methods that train no
visual prompt (text prompts only, zero-shot, linear probes) never run the image encoder twice.

The cache is keyed by what determines a feature: the backbone (model, weights fingerprint,
preprocessing) and the *content* of each image (its sha256), never its file name, so a
re-imported or edited image can never reuse the feature of the image it replaced. Content hashes
come from the import manifest (``<dataset folder>/fedrs_manifest.json``) where the file still
matches it (same size, not modified after the manifest was written), else from the file bytes.

Layout: ``$FEDRS_CACHE/features/<model>/<backbone key>/<dataset>-<list key>.pt`` holding the
``features [N, D]`` of one ordered list of image hashes. When the list changes (one image
replaced), the rows of unchanged images are taken from the dataset's earlier cache files and only
the changed images are encoded. The cache is optional: a failing read or write warns and the
features are computed (and returned) all the same.

Two representations are cached, each by the same keys (:data:`IMAGE_REPRESENTATIONS`):

* ``"pooled"`` -- :func:`image_features`, ``[N, D]`` float32: ``model.encode_image``, what every
  method without a patch-level matching trains on;
* ``"patch_tokens"`` -- :func:`image_patch_tokens`, ``[N, L, D]`` float16 in
  ``<backbone key>/patch_tokens/``: the frozen ViT's patch tokens after ``ln_post`` and the
  projection (the class token excluded), as FedOTP matches them to class text features by optimal
  transport. float16 halves the file (UC Merced on ``fedrs-rsclip-s``: 2,100 x 64 x 256 values,
  69 MB instead of 138 MB); the tokens are L2-normalised before use, where float16's relative
  rounding (< 2^-11) moves a cosine similarity by about 1e-4 at most.

:func:`frozen_image_representation` returns either by name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image
from tqdm.auto import tqdm

from fedrs.backbone.factory import Backbone
from fedrs.data.registry import MANIFEST_NAME
from fedrs.io import save_torch_atomic
from fedrs.paths import cache_root

logger = logging.getLogger(__name__)


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image file as RGB (remote-sensing JPEG/TIFF/PNG, any mode)."""
    with Image.open(path) as img:
        return img.convert("RGB")


def load_images(
    paths: Sequence[str | Path],
    transform: Callable[[Image.Image], torch.Tensor],
    threads: int = 2,
) -> Callable[[int, int], torch.Tensor]:
    """Return ``batch(start, stop) -> [B, 3, H, W]`` decoding ``paths[start:stop]`` in threads."""
    pool = ThreadPoolExecutor(max_workers=threads)

    def one(path):
        return transform(load_rgb(path))

    def batch(start: int, stop: int) -> torch.Tensor:
        return torch.stack(list(pool.map(one, paths[start:stop])))

    return batch


# --- content hashes -----------------------------------------------------------------------------

def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (the same digest ``fedrs data import`` records)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class _Manifests:
    """Per-image records of the import manifests above a set of files, read once per folder."""

    def __init__(self) -> None:
        self._folder_of: dict[Path, Path | None] = {}  # directory -> its dataset folder (or None)
        self._records: dict[Path, tuple[dict[str, dict], int]] = {}  # folder -> (images, mtime_ns)

    def _dataset_folder(self, directory: Path) -> Path | None:
        if directory not in self._folder_of:
            if (directory / MANIFEST_NAME).is_file():
                self._folder_of[directory] = directory
            elif directory.parent == directory:
                self._folder_of[directory] = None
            else:
                self._folder_of[directory] = self._dataset_folder(directory.parent)
        return self._folder_of[directory]

    def _read(self, folder: Path) -> tuple[dict[str, dict], int]:
        if folder not in self._records:
            file = folder / MANIFEST_NAME
            try:
                stamp = file.stat().st_mtime_ns
                images = json.loads(file.read_text(encoding="utf-8")).get("images", [])
                records = {im["path"]: im for im in images if im.get("sha256") and im.get("path")}
            except (OSError, ValueError, AttributeError, TypeError) as exc:
                logger.warning("%s is unreadable (%s): hashing its images from their bytes", file, exc)
                records, stamp = {}, 0
            self._records[folder] = (records, stamp)
        return self._records[folder]

    def sha256(self, path: Path) -> str | None:
        """The manifest's sha256 for ``path`` if the file still matches its record, else None.

        A file changed after the import (size differs, or modified after the manifest was
        written) is not trusted: the caller hashes its bytes.
        """
        folder = self._dataset_folder(path.parent)
        if folder is None:
            return None
        records, manifest_mtime_ns = self._read(folder)
        try:
            record = records.get(path.relative_to(folder).as_posix())
            if record is None:
                return None
            stat = path.stat()
        except (ValueError, OSError):
            return None
        if "bytes" in record and stat.st_size != record["bytes"]:
            return None
        if stat.st_mtime_ns > manifest_mtime_ns:
            return None
        return record["sha256"]


def content_hashes(paths: Sequence[str | Path]) -> list[str]:
    """sha256 of each image: the import manifest's where the file matches it, else its bytes."""
    manifests = _Manifests()
    out = []
    for p in paths:
        path = Path(p).absolute()
        out.append(manifests.sha256(path) or file_sha256(path))
    return out


# --- cache keys and files -----------------------------------------------------------------------

def backbone_key(backbone: Backbone, extra: str = "") -> str:
    """Stable hex key of what maps an image to a feature: model, weights, preprocessing."""
    digest = hashlib.sha256()
    digest.update(backbone.model_name.encode())
    digest.update(backbone.fingerprint.encode())
    digest.update(json.dumps(backbone.preprocess_cfg, sort_keys=True, default=str).encode())
    digest.update(extra.encode())
    return digest.hexdigest()[:24]


def cache_key(backbone: Backbone, dataset_name: str, hashes: Sequence[str], extra: str = "") -> str:
    """Stable hex key for (backbone, preprocessing, dataset, ordered image content hashes)."""
    digest = hashlib.sha256()
    digest.update(backbone_key(backbone, extra).encode())
    digest.update(dataset_name.encode())
    for h in hashes:
        digest.update((str(h) + "\n").encode())
    return digest.hexdigest()[:24]


def _cache_folder(backbone: Backbone) -> Path:
    return cache_root() / "features" / backbone.model_name / backbone_key(backbone)


def _load_blob(file: Path, ndim: int = 2) -> dict | None:
    """A cache file's content, or None (with a warning) when it cannot be read or its rows are not
    ``ndim``-dimensional (2: pooled ``[N, D]``, 3: patch tokens ``[N, L, D]``)."""
    try:
        blob = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged cache file is recomputed, whatever the damage
        logger.warning("feature cache %s is unreadable (%s: %s): recomputing", file, type(exc).__name__, exc)
        return None
    if not isinstance(blob, dict) or not isinstance(blob.get("hashes"), list) \
            or not isinstance(blob.get("features"), torch.Tensor) \
            or blob["features"].ndim != ndim or blob["features"].shape[0] != len(blob["hashes"]):
        logger.warning("feature cache %s is not a fedrs feature cache: recomputing", file)
        return None
    return blob


def _earlier_rows(folder: Path, dataset_name: str, wanted: set[str], ndim: int = 2) -> dict[str, torch.Tensor]:
    """Features of ``wanted`` image hashes found in this dataset's earlier cache files.

    Only the same dataset's files: a reused row can differ from a fresh batch encoding in float
    rounding, so sharing rows across datasets (AID and AID-holdout) would make one dataset's
    results depend on whether the other was encoded first.
    """
    found: dict[str, torch.Tensor] = {}
    pattern = re.compile(re.escape(dataset_name) + r"-[0-9a-f]{24}\.pt")
    try:
        files = sorted(f for f in folder.iterdir() if pattern.fullmatch(f.name))
    except OSError:
        return found
    for file in files:
        if not wanted - found.keys():
            break
        blob = _load_blob(file, ndim)
        if blob is None:
            continue
        for h, row in zip(blob["hashes"], blob["features"]):
            if h in wanted and h not in found:
                found[h] = row
    return found


def _write_cache(file: Path, blob: dict) -> None:
    """Write a cache file; the cache is optional, so a failure (full or read-only disk) only warns."""
    try:
        save_torch_atomic(file, blob)
    except OSError as exc:
        logger.warning("could not write the feature cache %s (%s): continuing without it; free "
                       "space or set FEDRS_CACHE to a writable folder to keep the features",
                       file, exc.strerror or exc)


@torch.inference_mode()
def encode_images(
    backbone: Backbone,
    paths: Sequence[str | Path],
    batch_size: int = 128,
    progress: bool | str = True,
) -> torch.Tensor:
    """Image features ``[N, embed_dim]`` (float32, not normalised) of the frozen backbone."""
    batch = load_images(paths, backbone.preprocess)
    out = []
    desc = progress if isinstance(progress, str) else "image features"
    for start in tqdm(range(0, len(paths), batch_size), desc=desc, disable=progress is False, unit="batch"):
        images = batch(start, min(start + batch_size, len(paths))).to(backbone.device)
        out.append(backbone.model.encode_image(images).float().cpu())
    if not out:
        return torch.zeros(0, backbone.embed_dim)
    return torch.cat(out)


def _cached_rows(
    backbone: Backbone,
    dataset,
    folder: Path,
    encode: Callable[[Sequence[Path | str], str | bool], torch.Tensor],
    ndim: int,
    key_extra: str,
    cache: bool,
    progress: bool | str,
) -> torch.Tensor:
    """Rows of ``encode(paths, progress)`` for a dataset's images, cached in ``folder`` by content.

    The file is ``<folder>/<dataset>-<key>.pt`` with the key of (backbone, ``key_extra``, dataset,
    ordered image hashes); rows of images unchanged since an earlier file of the same dataset are
    reused and only the others encoded.
    """
    paths = list(dataset.paths)
    if not cache:
        return encode(paths, progress)
    hashes = content_hashes(paths)
    file = folder / f"{dataset.name}-{cache_key(backbone, dataset.name, hashes, key_extra)}.pt"
    if file.is_file():
        blob = _load_blob(file, ndim)
        if blob is not None and blob["hashes"] == hashes:
            return blob["features"]
    known = _earlier_rows(folder, dataset.name, set(hashes), ndim)
    missing = [i for i, h in enumerate(hashes) if h not in known]
    if len(missing) == len(paths):
        # nothing cached: one plain pass in dataset order, exactly as an uncached encoding
        rows_out = encode(paths, progress)
    else:
        if missing:
            logger.info("%s: %d of %d images are new or changed since they were cached: encoding "
                        "only those", dataset.name, len(missing), len(paths))
        encoded = encode([paths[i] for i in missing], progress) if missing else None
        rows = [known.get(h) for h in hashes]
        for k, i in enumerate(missing):
            rows[i] = encoded[k]
        rows_out = torch.stack(rows).contiguous()
    _write_cache(file, {"features": rows_out, "hashes": hashes, "backbone": backbone.label,
                        "dataset": dataset.name})
    return rows_out


def image_features(
    backbone: Backbone,
    dataset,
    batch_size: int = 128,
    cache: bool = True,
    progress: bool = True,
) -> torch.Tensor:
    """Cached image features ``[len(dataset), embed_dim]`` for a scene dataset (``.name``, ``.paths``).

    The first call encodes and writes ``$FEDRS_CACHE/features/<model>/<backbone key>/
    <dataset>-<key>.pt`` atomically; later calls (any process) read it back while every image's
    content is unchanged. After images change, only the changed ones are encoded. (Recomputed rows
    may differ from a from-scratch encoding in float rounding, ~1e-6, as batching changes.)
    """
    label = f"{dataset.name} features ({backbone.label})" if progress else False

    def encode(paths, progress_label):
        return encode_images(backbone, paths, batch_size=batch_size, progress=progress_label)

    return _cached_rows(backbone, dataset, _cache_folder(backbone), encode, 2, "", cache, label)


#: the dtype of cached patch tokens (see the module docstring for why half precision suffices)
PATCH_TOKEN_DTYPE = torch.float16


@torch.inference_mode()
def encode_patch_tokens(
    backbone: Backbone,
    paths: Sequence[str | Path],
    batch_size: int = 128,
    progress: bool | str = True,
    dtype: torch.dtype = PATCH_TOKEN_DTYPE,
) -> torch.Tensor:
    """Patch tokens ``[N, L, embed_dim]`` (``dtype``, not normalised) of the frozen ViT image tower:
    every patch token after ``ln_post`` and the projection, the class token excluded (the
    :class:`~fedrs.prompts.VisualPromptEncoder` without prompt tokens, which reproduces
    ``encode_image`` for the pooled output)."""
    from fedrs.prompts import VisualPromptEncoder  # the prompt layer builds on the backbone, not the reverse

    encoder = VisualPromptEncoder(backbone.model)
    batch = load_images(paths, backbone.preprocess)
    out = []
    desc = progress if isinstance(progress, str) else "patch tokens"
    for start in tqdm(range(0, len(paths), batch_size), desc=desc, disable=progress is False, unit="batch"):
        images = batch(start, min(start + batch_size, len(paths))).to(backbone.device)
        _, tokens = encoder(images, None, normalize=False, return_tokens=True)
        out.append(tokens.to("cpu", dtype))
    if not out:
        grid = backbone.image_size // int(backbone.model.visual.conv1.kernel_size[0])
        return torch.zeros(0, grid * grid, backbone.embed_dim, dtype=dtype)
    return torch.cat(out)


def image_patch_tokens(
    backbone: Backbone,
    dataset,
    batch_size: int = 128,
    cache: bool = True,
    progress: bool = True,
) -> torch.Tensor:
    """Cached patch tokens ``[len(dataset), L, embed_dim]`` (float16) of a scene dataset, keyed and
    reused exactly as :func:`image_features`, in ``<backbone key>/patch_tokens/``."""
    label = f"{dataset.name} patch tokens ({backbone.label})" if progress else False

    def encode(paths, progress_label):
        return encode_patch_tokens(backbone, paths, batch_size=batch_size, progress=progress_label)

    return _cached_rows(backbone, dataset, _cache_folder(backbone) / "patch_tokens", encode, 3,
                        f"patch_tokens:{PATCH_TOKEN_DTYPE}", cache, label)


#: what a method trains on from the frozen image encoder: name -> cached function
IMAGE_REPRESENTATIONS = {"pooled": image_features, "patch_tokens": image_patch_tokens}


def frozen_image_representation(
    backbone: Backbone,
    dataset,
    representation: str = "pooled",
    batch_size: int = 128,
    cache: bool = True,
    progress: bool = True,
) -> torch.Tensor:
    """The cached frozen ``representation`` of a dataset's images: ``"pooled"`` ``[N, D]`` or
    ``"patch_tokens"`` ``[N, L, D]`` (a method names the one it trains on)."""
    try:
        function = IMAGE_REPRESENTATIONS[representation]
    except KeyError:
        raise ValueError(f"unknown image representation {representation!r}; choose one of "
                         f"{sorted(IMAGE_REPRESENTATIONS)}") from None
    return function(backbone, dataset, batch_size=batch_size, cache=cache, progress=progress)
