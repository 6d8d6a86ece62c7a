"""Frozen image features, computed once in batches and cached on disk.

A frozen backbone maps the same image to the same feature forever, so methods that train no
visual prompt (text prompts only, zero-shot, linear probes) never run the image encoder twice.
The cache key is (backbone fingerprint, model, preprocessing, dataset name, file list), so
rebuilding the offline backbone or changing resolution invalidates it automatically.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image
from tqdm.auto import tqdm

from fedrs.backbone.factory import Backbone
from fedrs.io import save_torch_atomic
from fedrs.paths import cache_root


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


def cache_key(backbone: Backbone, dataset_name: str, paths: Sequence[str | Path], extra: str = "") -> str:
    """Stable hex key for (backbone weights, preprocessing, dataset, exact file list)."""
    digest = hashlib.sha256()
    digest.update(backbone.model_name.encode())
    digest.update(backbone.fingerprint.encode())
    digest.update(json.dumps(backbone.preprocess_cfg, sort_keys=True, default=str).encode())
    digest.update(dataset_name.encode())
    digest.update(extra.encode())
    for p in paths:
        # names relative to the dataset folder: moving the data root keeps the cache valid
        digest.update(("/".join(Path(p).parts[-3:]) + "\n").encode())
    return digest.hexdigest()[:24]


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


def image_features(
    backbone: Backbone,
    dataset,
    batch_size: int = 128,
    cache: bool = True,
    progress: bool = True,
) -> torch.Tensor:
    """Cached image features ``[len(dataset), embed_dim]`` for a scene dataset (``.name``, ``.paths``).

    The first call encodes and writes ``$FEDRS_CACHE/features/<model>/<key>.pt`` atomically; later
    calls (any process) read it back.
    """
    paths = list(dataset.paths)
    key = cache_key(backbone, dataset.name, paths)
    file = cache_root() / "features" / backbone.model_name / f"{dataset.name}-{key}.pt"
    if cache and file.is_file():
        blob = torch.load(file, map_location="cpu", weights_only=True)
        if blob["features"].shape[0] == len(paths):
            return blob["features"]
    feats = encode_images(backbone, paths, batch_size=batch_size,
                          progress=f"{dataset.name} features ({backbone.label})" if progress else False)
    if cache:
        save_torch_atomic(file, {"features": feats, "backbone": backbone.label, "dataset": dataset.name})
    return feats
