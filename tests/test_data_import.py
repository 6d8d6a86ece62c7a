"""`fedrs data import` on tiny synthetic datasets in official layouts (zip, tar, folder)."""

from __future__ import annotations

import json
import shutil

import pytest

from fedrs.data import import_sources, load_scene_dataset
from fedrs.data.registry import MANIFEST_NAME
from fedrs.errors import DataError


def _leftovers(root):
    """Hidden work folders left in the data root (a failed first import leaves no root at all)."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".")) if root.exists() else []


def _manifest(root, name="TinyScenes"):
    return json.loads((root / name / MANIFEST_NAME).read_text())


@pytest.mark.parametrize("packing", ["zip", "tar.gz", "tar", "folder"])
def test_import_official_layout(tiny_spec, data_factory, tmp_path, packing):
    tree = data_factory.scene_tree("release", "Tiny_Release/Images", tiny_spec.counts)
    if packing == "zip":
        src = data_factory.zip(tree, "whatever.zip")
    elif packing.startswith("tar"):
        src = data_factory.tar(tree, f"whatever.{packing}", "w:gz" if packing == "tar.gz" else "w")
    else:
        src = tree
    root = tmp_path / "data"
    (result,) = import_sources([src], root=root, progress=False)
    assert (result.name, result.status, result.num_images) == ("TinyScenes", "imported", 8)

    m = _manifest(root)
    assert m["kind"] == "scene" and m["name"] == "TinyScenes"
    assert {c["name"]: c["count"] for c in m["classes"]} == tiny_spec.counts
    assert m["source"]["sha256"] and m["source"]["type"] == ("folder" if packing == "folder" else packing.split(".")[0])
    assert len(m["images"]) == 8 and all(im["size"] == [8, 6] for im in m["images"])
    assert m["image_sizes"]["min"] == [8, 6] and m["duplicates"] == [] and m["excluded"] == []
    assert (root / "TinyScenes" / "Tiny_Release" / "Images" / "Alpha" / "alpha_0.jpg").is_file()
    assert _leftovers(root) == []

    ds = load_scene_dataset("tiny", root=root)
    assert ds.classnames == ["Alpha", "BetaGamma", "delta"]
    assert ds.labels == [0, 0, 0, 1, 1, 1, 2, 2]
    assert all(p.is_file() for p in ds.paths)


def test_reimport_skips_when_verified_and_replaces_when_changed(tiny_spec, data_factory, tmp_path):
    tree = data_factory.scene_tree("release", "Tiny_Release/Images", tiny_spec.counts)
    src = data_factory.zip(tree, "Tiny_Release.zip")
    root = tmp_path / "data"
    import_sources([src], root=root, progress=False)
    manifest = root / "TinyScenes" / MANIFEST_NAME
    stamp = manifest.stat().st_mtime_ns

    (again,) = import_sources([src], root=root, progress=False)
    assert again.status == "skipped"
    assert manifest.stat().st_mtime_ns == stamp

    # a damaged import (a file missing) is not "verified": it is imported again
    next((root / "TinyScenes").rglob("*.jpg")).unlink()
    (repaired,) = import_sources([src], root=root, progress=False)
    assert repaired.status == "replaced"
    assert len(list((root / "TinyScenes").rglob("*.jpg"))) == 8

    # a different release is never replaced silently: refused, naming the choices
    (tree / "Tiny_Release/Images/Alpha/alpha_0.jpg").write_bytes(data_factory.jpeg((9, 9)))
    src2 = data_factory.zip(tree, "Tiny_Release_v2.zip")
    stamp = manifest.stat().st_mtime_ns
    with pytest.raises(DataError, match=r"already imported from another release.*--replace.*--name.*--merge"):
        import_sources([src2], root=root, progress=False)
    assert manifest.stat().st_mtime_ns == stamp and _leftovers(root) == []
    (replaced,) = import_sources([src2], root=root, progress=False, replace=True)
    assert replaced.status == "replaced"
    assert _manifest(root)["source"]["path"].endswith("Tiny_Release_v2.zip")
    assert _leftovers(root) == []


def test_force_reimports(tiny_spec, data_factory, tmp_path):
    src = data_factory.scene_tree("release", "Tiny_Release/Images", tiny_spec.counts)
    import_sources([src], root=tmp_path / "d", progress=False)
    (r,) = import_sources([src], root=tmp_path / "d", force=True, progress=False)
    assert r.status == "replaced"


def test_count_mismatch_names_class_and_counts(tiny_spec, data_factory, tmp_path):
    tree = data_factory.scene_tree("release", "Tiny_Release/Images", {**tiny_spec.counts, "Alpha": 2})
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"Alpha 2 \(official 3\)"):
        import_sources([tree], root=root, progress=False)
    assert not (root / "TinyScenes").exists() and _leftovers(root) == []


def test_subset_accepted_only_where_the_spec_allows(tiny_spec, patch_spec, data_factory, tmp_path):
    tree = data_factory.scene_tree("release", "Tiny_Release/Images", {**tiny_spec.counts, "Alpha": 1})
    patch_spec("TinyScenes", subset_ok=True)
    (r,) = import_sources([tree], root=tmp_path / "data", progress=False)
    m = _manifest(tmp_path / "data")
    assert r.num_images == 6 and m["subset"] is True
    assert {c["name"]: c["official"] for c in m["classes"]}["Alpha"] == 3


def test_missing_and_unexpected_class_folders(tiny_spec, data_factory, tmp_path):
    tree = data_factory.scene_tree("release", "Tiny_Release/Images",
                                   {"Alpha": 3, "BetaGamma": 3, "epsilon": 2})
    with pytest.raises(DataError, match=r"missing class folders \['delta'\].*unexpected folders \['epsilon'\]"):
        import_sources([tree], root=tmp_path / "data", progress=False)


def test_wrong_layout_recognised_by_name(tiny_spec, data_factory, tmp_path):
    flat = data_factory.base / "Tiny_Release"
    for i in range(3):
        data_factory.write(f"Tiny_Release/img_{i}.jpg", data_factory.jpeg())
    src = data_factory.zip(flat, "Tiny_Release.zip")
    with pytest.raises(DataError, match=r"looks like TinyScenes.*Tiny_Release/Images/<class>/<image>"):
        import_sources([src], root=tmp_path / "data", progress=False)


def test_unknown_layout(data_factory, tmp_path):
    data_factory.write("stuff/a/readme.txt", "hello")
    with pytest.raises(DataError, match="no known dataset layout"):
        import_sources([data_factory.base / "stuff"], root=tmp_path / "data", progress=False)


def test_missing_archive(tmp_path):
    with pytest.raises(DataError, match=r"no such archive or folder"):
        import_sources([tmp_path / "nope.zip"], root=tmp_path / "data", progress=False)


def test_not_an_archive(tmp_path):
    (tmp_path / "notes.zip").write_text("not a zip")
    with pytest.raises(DataError, match=r"not a readable zip archive.*notes\.zip.*download it again"):
        import_sources([tmp_path / "notes.zip"], root=tmp_path / "data", progress=False)
    (tmp_path / "notes.bin").write_text("not an archive")
    with pytest.raises(DataError, match="neither a zip/tar archive nor a folder"):
        import_sources([tmp_path / "notes.bin"], root=tmp_path / "data", progress=False)


def test_rar_is_refused_with_the_fix(tmp_path):
    (tmp_path / "NWPU-RESISC45.rar").write_bytes(b"Rar!\x1a\x07\x00")
    with pytest.raises(DataError, match=r"RAR archives are not supported.*extracted folder"):
        import_sources([tmp_path / "NWPU-RESISC45.rar"], root=tmp_path / "data", progress=False)


@pytest.mark.parametrize("bad_bytes", ["garbage", "truncated"])
def test_corrupt_image_fails_listing_it_then_exclude_bad(tiny_spec, data_factory, tmp_path, bad_bytes):
    tree = data_factory.scene_tree("release", "Tiny_Release/Images", tiny_spec.counts)
    bad = tree / "Tiny_Release/Images/BetaGamma/betagamma_1.jpg"
    good = bad.read_bytes()
    bad.write_bytes(b"this is not an image" if bad_bytes == "garbage" else good[: len(good) // 2])
    src = data_factory.zip(tree, "t.zip")
    root = tmp_path / "data"
    with pytest.raises(DataError) as err:
        import_sources([src], root=root, progress=False)
    assert "Tiny_Release/Images/BetaGamma/betagamma_1.jpg" in str(err.value)
    assert "--exclude-bad" in str(err.value)
    assert not (root / "TinyScenes").exists() and _leftovers(root) == []

    (r,) = import_sources([src], root=root, exclude_bad=True, progress=False)
    m = _manifest(root)
    assert r.num_images == 7 and [e["path"] for e in r.excluded] == [
        "Tiny_Release/Images/BetaGamma/betagamma_1.jpg"]
    assert m["excluded"][0]["path"].endswith("betagamma_1.jpg") and m["excluded"][0]["reason"]
    assert {c["name"]: c["count"] for c in m["classes"]}["BetaGamma"] == 2
    ds = load_scene_dataset("TinyScenes", root=root)
    assert len(ds) == 7 and "betagamma_1" not in ds.stems


def test_exact_duplicates_reported_not_failed(tiny_spec, data_factory, tmp_path):
    tree = data_factory.scene_tree("release", "Tiny_Release/Images", tiny_spec.counts)
    a = tree / "Tiny_Release/Images/delta/delta_0.jpg"
    shutil.copy(a, tree / "Tiny_Release/Images/delta/delta_1.jpg")
    (r,) = import_sources([tree], root=tmp_path / "data", progress=False)
    expected = [["Tiny_Release/Images/delta/delta_0.jpg", "Tiny_Release/Images/delta/delta_1.jpg"]]
    assert r.duplicates == expected
    assert _manifest(tmp_path / "data")["duplicates"] == expected
    assert "exact duplicates" in r.summary()


def test_class_folders_normalised_to_official_names(tiny_spec, data_factory, tmp_path):
    # a mirror with other case/separators: folders are renamed to the official names
    tree = data_factory.scene_tree("mirror", "", {"alpha": 3, "beta_gamma": 3, "Delta": 2})
    (r,) = import_sources([tree], root=tmp_path / "data", progress=False)
    ds = load_scene_dataset("TinyScenes", root=tmp_path / "data")
    assert ds.classnames == ["Alpha", "BetaGamma", "delta"]
    assert all("Tiny_Release/Images/" in p.as_posix() for p in ds.paths)
    assert any("renamed" in n for n in r.notes)


def test_container_folder_recognises_by_layout_and_checks_sha256sums(
        tiny_spec, data_factory, tmp_path):
    import hashlib

    tree = data_factory.scene_tree("release", "Tiny_Release/Images", tiny_spec.counts)
    box = tmp_path / "box"
    box.mkdir()
    archive = data_factory.zip(tree, "renamed-download.zip")
    shutil.move(archive, box / "renamed-download.zip")
    (box / "README.md").write_text("not data")
    digest = hashlib.sha256((box / "renamed-download.zip").read_bytes()).hexdigest()
    (box / "SHA256SUMS").write_text(f"{digest}  renamed-download.zip\n")
    (r,) = import_sources([box], root=tmp_path / "data", progress=False)
    assert r.name == "TinyScenes" and r.status == "imported"

    (box / "SHA256SUMS").write_text(f"{'0' * 64}  renamed-download.zip\n")
    with pytest.raises(DataError, match="does not match its checksum in SHA256SUMS"):
        import_sources([box], root=tmp_path / "data2", progress=False)


def test_same_dataset_twice_is_refused(tiny_spec, data_factory, tmp_path):
    tree = data_factory.scene_tree("release", "Tiny_Release/Images", tiny_spec.counts)
    src = data_factory.zip(tree, "a.zip")
    with pytest.raises(DataError, match="found twice"):
        import_sources([src, tree], root=tmp_path / "data", progress=False)


def test_manifest_is_complete(tiny_spec, data_factory, tmp_path):
    src = data_factory.scene_tree("release", "Tiny_Release/Images", tiny_spec.counts)
    import_sources([src], root=tmp_path / "data", progress=False)
    m = _manifest(tmp_path / "data")
    for key in ("name", "kind", "source", "classes", "images", "duplicates", "excluded",
                "fedrs_version", "imported_at", "num_images", "image_sizes", "subset"):
        assert key in m, key
    im = m["images"][0]
    assert set(im) >= {"path", "label", "size", "bytes", "sha256"}


def test_batch_checks_every_layout_before_importing_any(tiny_spec, patch_spec, data_factory, tmp_path):
    from fedrs.data.registry import SPECS

    classes = SPECS["RSSCN7"].classes
    patch_spec("RSSCN7", counts={c: 2 for c in classes})
    good = data_factory.scene_tree("tiny", "Tiny_Release/Images", tiny_spec.counts)
    bad = data_factory.scene_tree("rsscn7", "RSSCN7", {c: 2 for c in classes[:-1]} | {classes[-1]: 1})
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"gParking 1 \(official 2\)"):
        import_sources([good, bad], root=root, progress=False)
    assert not (root / "TinyScenes").exists()


def test_import_from_inside_the_data_root_is_refused(tiny_spec, data_factory, tmp_path):
    src = data_factory.scene_tree("release", "Tiny_Release/Images", tiny_spec.counts)
    root = tmp_path / "data"
    import_sources([src], root=root, progress=False)
    with pytest.raises(DataError, match="inside the imported TinyScenes"):
        import_sources([root / "TinyScenes"], root=root, force=True, progress=False)
    assert len(load_scene_dataset("TinyScenes", root=root)) == 8
