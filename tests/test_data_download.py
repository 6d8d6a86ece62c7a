"""`fedrs data download`: file:// archives stand in for the network; offline fails fast."""

from __future__ import annotations

import hashlib
import json
import urllib.error

import pytest

from fedrs.data import download, download_dataset, load_scene_dataset
from fedrs.data.registry import MANIFEST_NAME
from fedrs.errors import DataError


@pytest.fixture
def tiny_archive(tiny_spec, data_factory):
    tree = data_factory.scene_tree("release", "Tiny_Release/Images", tiny_spec.counts)
    return data_factory.zip(tree, "Tiny_Release.zip")


def test_download_from_file_url_imports_and_then_skips(tiny_archive, tmp_path):
    root = tmp_path / "data"
    url = tiny_archive.as_uri()
    (r,) = download_dataset("tiny", root=root, url=url, progress=False)
    assert (r.name, r.status, r.num_images) == ("TinyScenes", "imported", 8)
    m = json.loads((root / "TinyScenes" / MANIFEST_NAME).read_text())
    assert m["source"]["url"] == url and m["source"]["path"] is None
    assert m["source"]["sha256"] == hashlib.sha256(tiny_archive.read_bytes()).hexdigest()
    assert len(load_scene_dataset("TinyScenes", root=root)) == 8
    assert sorted(p.name for p in root.iterdir()) == ["TinyScenes"]  # no temp files left

    tiny_archive.unlink()  # a second run does not fetch again
    (again,) = download_dataset("TinyScenes", root=root, url=url, progress=False)
    assert again.status == "skipped"


def test_download_checks_sha256(tiny_archive, tmp_path):
    root = tmp_path / "data"
    with pytest.raises(DataError, match="expected 0000"):
        download_dataset("TinyScenes", root=root, url=tiny_archive.as_uri(), sha256="0" * 64,
                         progress=False)
    assert not root.exists()  # nothing left, not even an empty data root
    good = hashlib.sha256(tiny_archive.read_bytes()).hexdigest()
    (r,) = download_dataset("TinyScenes", root=root, url=tiny_archive.as_uri(), sha256=good,
                            progress=False)
    assert r.status == "imported"


def test_download_of_another_dataset_is_refused(tiny_archive, tmp_path):
    # the official checksum is checked first, whatever the URL
    with pytest.raises(DataError, match="expected 5b7ec567.*--sha256"):
        download_dataset("UCMerced", root=tmp_path / "data", url=tiny_archive.as_uri(),
                         progress=False)
    digest = hashlib.sha256(tiny_archive.read_bytes()).hexdigest()
    with pytest.raises(DataError, match="holds TinyScenes, not UCMerced"):
        download_dataset("UCMerced", root=tmp_path / "data", url=tiny_archive.as_uri(),
                         sha256=digest, progress=False)


def test_offline_fails_fast_naming_import(tiny_spec, tmp_path, monkeypatch):
    seen = {}

    def offline(url, timeout=None):
        seen["timeout"] = timeout
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as err:
        download_dataset("UCMerced", root=tmp_path / "data", progress=False)
    msg = str(err.value)
    assert "cannot download UCMerced" in msg and "fedrs data import" in msg
    assert "name resolution" in msg
    assert seen["timeout"] is not None and seen["timeout"] <= 10
    assert not (tmp_path / "data" / "UCMerced").exists()


def test_unreachable_file_url(tiny_spec, tmp_path):
    with pytest.raises(DataError, match=r"cannot download TinyScenes.*fedrs data import"):
        download_dataset("TinyScenes", root=tmp_path / "data",
                         url=(tmp_path / "absent.zip").as_uri(), progress=False)


def test_no_direct_download_points_to_homepage_and_import(tmp_path):
    with pytest.raises(DataError, match=r"AID has no direct download.*captain-whu.*fedrs data import"):
        download_dataset("AID", root=tmp_path / "data", progress=False)


def test_unknown_name_lists_known(tmp_path):
    with pytest.raises(DataError, match=r"unknown dataset 'CIFAR10'.*UCMerced.*EuroSAT"):
        download_dataset("CIFAR10", root=tmp_path / "data", progress=False)
