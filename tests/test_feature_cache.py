"""The frozen-feature cache is keyed by image content, never by file names.

Imported datasets give each image's sha256 in their manifest; a file changed after its import and
files outside any import are hashed from their bytes. A changed image gets a new feature, the
others are reused; a failing cache write or a damaged cache file only warns.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import types
from collections import Counter
from pathlib import Path

import pytest
import torch

from fedrs.backbone import features
from fedrs.backbone.factory import create_backbone
from fedrs.data import import_sources, load_scene_dataset
from fedrs.data.registry import MANIFEST_NAME


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDRS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FEDRS_MODELS", str(tmp_path / "models"))


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


@pytest.fixture
def encoded(monkeypatch) -> list[list[Path]]:
    """Every list of paths the image encoder is run on, in call order."""
    calls: list[list[Path]] = []
    real = features.encode_images

    def spy(backbone, paths, *args, **kwargs):
        calls.append([Path(p) for p in paths])
        return real(backbone, paths, *args, **kwargs)

    monkeypatch.setattr(features, "encode_images", spy)
    return calls


def _direct(backbone, paths) -> torch.Tensor:
    with torch.inference_mode():
        images = torch.stack([backbone.preprocess(features.load_rgb(p)) for p in paths])
        return backbone.model.encode_image(images).float()


def _import(tree: Path, root: Path):
    import_sources([tree], root=root, progress=False)
    return load_scene_dataset("TinyScenes", root=root)


def test_changed_image_gets_a_new_feature_and_only_it_is_encoded(
        tiny_spec, data_factory, tmp_path, backbone, encoded):
    tree = data_factory.scene_tree("v1", "Tiny_Release/Images", tiny_spec.counts)
    first = _import(tree, tmp_path / "data1")
    f1 = features.image_features(backbone, first, progress=False)
    assert encoded == [first.paths]
    assert torch.equal(features.image_features(backbone, first, progress=False), f1)
    assert len(encoded) == 1  # read back from the cache

    # the corrected release: one image replaced under the same file name, imported elsewhere
    v2 = shutil.copytree(tree, data_factory.base / "v2")
    (v2 / "Tiny_Release/Images/Alpha/alpha_0.jpg").write_bytes(data_factory.jpeg((9, 7)))
    second = _import(v2, tmp_path / "data2")
    assert [p.parts[-3:] for p in second.paths] == [p.parts[-3:] for p in first.paths]
    changed = [p.name for p in second.paths].index("alpha_0.jpg")

    f2 = features.image_features(backbone, second, progress=False)
    assert encoded[1:] == [[second.paths[changed]]]
    assert not torch.allclose(f2[changed], f1[changed], atol=1e-3)
    assert torch.allclose(f2[changed], _direct(backbone, [second.paths[changed]])[0], atol=1e-5)
    others = [i for i in range(len(f1)) if i != changed]
    assert torch.equal(f2[others], f1[others])
    # both versions stay cached side by side
    assert torch.equal(features.image_features(backbone, first, progress=False), f1)
    assert torch.equal(features.image_features(backbone, second, progress=False), f2)
    assert len(encoded) == 2


def test_file_edited_after_import_is_hashed_not_trusted_to_the_manifest(
        tiny_spec, data_factory, tmp_path, backbone, encoded):
    tree = data_factory.scene_tree("v1", "Tiny_Release/Images", tiny_spec.counts)
    ds = _import(tree, tmp_path / "data")
    before = features.image_features(backbone, ds, progress=False)

    # swap two images of the same byte size in place: the manifest's sizes still match, only
    # the modification time tells them apart from the import
    by_size = Counter(p.stat().st_size for p in ds.paths)
    size = next(s for s, n in by_size.items() if n >= 2)
    i, j = [k for k, p in enumerate(ds.paths) if p.stat().st_size == size][:2]
    bytes_i, bytes_j = ds.paths[i].read_bytes(), ds.paths[j].read_bytes()
    ds.paths[i].write_bytes(bytes_j)
    ds.paths[j].write_bytes(bytes_i)
    manifest_ns = (tmp_path / "data" / "TinyScenes" / MANIFEST_NAME).stat().st_mtime_ns
    for k in (i, j):  # on a coarse-clock file system the edit could share the import's tick
        if ds.paths[k].stat().st_mtime_ns <= manifest_ns:
            os.utime(ds.paths[k], ns=(manifest_ns + 10**9, manifest_ns + 10**9))

    after = features.image_features(backbone, ds, progress=False)
    assert len(encoded) == 1  # both contents were cached already: nothing to encode
    assert torch.equal(after[i], before[j]) and torch.equal(after[j], before[i])
    rest = [k for k in range(len(ds)) if k not in (i, j)]
    assert torch.equal(after[rest], before[rest])


def test_the_manifest_hashes_are_used_for_unchanged_imports(
        tiny_spec, data_factory, tmp_path, monkeypatch):
    tree = data_factory.scene_tree("v1", "Tiny_Release/Images", tiny_spec.counts)
    ds = _import(tree, tmp_path / "data")
    monkeypatch.setattr(features, "file_sha256", lambda path: pytest.fail(f"hashed {path}"))
    assert features.content_hashes(ds.paths) == ds.hashes


def _loose_images(folder: Path, n: int = 5) -> types.SimpleNamespace:
    """A dataset object outside any import (no manifest): a name and image paths."""
    from PIL import Image

    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (i * 50, 255 - i * 50, 90)).save(p)
        paths.append(p)
    return types.SimpleNamespace(name="Loose", paths=paths)


def test_images_without_a_manifest_are_keyed_by_their_bytes(tmp_path, backbone, encoded):
    from PIL import Image

    ds = _loose_images(tmp_path / "imgs")
    f1 = features.image_features(backbone, ds, progress=False)
    Image.new("RGB", (20, 20), (10, 200, 30)).save(ds.paths[2])
    f2 = features.image_features(backbone, ds, progress=False)
    assert encoded[1:] == [[ds.paths[2]]]
    assert not torch.allclose(f2[2], f1[2], atol=1e-3)
    assert torch.equal(f2[[0, 1, 3, 4]], f1[[0, 1, 3, 4]])

    # the same contents under other names and in another order: nothing to encode
    moved = tmp_path / "renamed"
    moved.mkdir()
    order = [4, 3, 2, 1, 0]
    copies = [Path(shutil.copy(ds.paths[k], moved / f"other{k}.png")) for k in order]
    f3 = features.image_features(backbone, types.SimpleNamespace(name="Loose", paths=copies),
                                 progress=False)
    assert len(encoded) == 2
    assert torch.equal(f3, f2[order])


def test_a_fresh_cache_encodes_exactly_as_without_cache(tmp_path, backbone, encoded):
    # one pass over every image in dataset order (duplicates included), so results computed
    # with an empty cache are the same bits as before content keys
    ds = _loose_images(tmp_path / "imgs", n=3)
    dup = Path(shutil.copy(ds.paths[0], tmp_path / "imgs" / "copy.png"))
    both = types.SimpleNamespace(name="Dups", paths=[*ds.paths, dup])
    cached = features.image_features(backbone, both, batch_size=2, progress=False)
    assert encoded == [both.paths]
    plain = features.image_features(backbone, both, batch_size=2, cache=False, progress=False)
    assert torch.equal(cached, plain)
    # a further copy of a cached image is not encoded again
    dup2 = Path(shutil.copy(ds.paths[1], tmp_path / "imgs" / "copy2.png"))
    more = features.image_features(backbone, types.SimpleNamespace(name="Dups", paths=[*both.paths, dup2]),
                                   progress=False)
    assert len(encoded) == 2 and torch.equal(more[4], cached[1])


def test_failing_cache_write_warns_and_returns_the_features(tmp_path, monkeypatch, backbone, caplog):
    ds = _loose_images(tmp_path / "imgs", n=3)
    expected = _direct(backbone, ds.paths)

    def full_disk(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    real_save = features.save_torch_atomic
    monkeypatch.setattr(features, "save_torch_atomic", full_disk)
    with caplog.at_level(logging.WARNING, logger=features.__name__):
        feats = features.image_features(backbone, ds, progress=False)
    assert torch.allclose(feats, expected, atol=1e-5)
    assert "could not write the feature cache" in caplog.text and "No space left on device" in caplog.text

    # a cache location that cannot be created (a file is in the way): same, for real
    monkeypatch.setattr(features, "save_torch_atomic", real_save)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("FEDRS_CACHE", str(blocker))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=features.__name__):
        feats = features.image_features(backbone, ds, progress=False)
    assert torch.allclose(feats, expected, atol=1e-5)
    assert "could not write the feature cache" in caplog.text


def test_damaged_cache_file_is_recomputed_with_a_warning(tmp_path, backbone, encoded, caplog):
    ds = _loose_images(tmp_path / "imgs", n=3)
    f1 = features.image_features(backbone, ds, progress=False)
    (cached,) = (tmp_path / "cache").rglob("Loose-*.pt")
    cached.write_bytes(b"not a torch file")
    with caplog.at_level(logging.WARNING, logger=features.__name__):
        f2 = features.image_features(backbone, ds, progress=False)
    assert "unreadable" in caplog.text and str(cached) in caplog.text
    assert len(encoded) == 2 and torch.equal(f1, f2)
    # and the rewritten file serves the next call
    assert torch.equal(features.image_features(backbone, ds, progress=False), f1)
    assert len(encoded) == 2


def test_cache_off_writes_nothing(tmp_path, backbone):
    ds = _loose_images(tmp_path / "imgs", n=2)
    features.image_features(backbone, ds, cache=False, progress=False)
    assert not (tmp_path / "cache").exists()
