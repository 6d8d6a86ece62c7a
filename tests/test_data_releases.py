"""Another release of an imported dataset is never imported silently over it (issue 12):
refused naming --replace / --name / --merge; kept beside it as a variant (--name), merged when
asked and no file collides (--merge), or replaced (--replace). The same release again stays a
no-op."""

from __future__ import annotations

import json

import pytest

from fedrs.data import import_sources, list_datasets, load_scene_dataset
from fedrs.data.registry import MANIFEST_NAME, find_spec, get_spec
from fedrs.errors import DataError

COUNTS = {"Alpha": 4, "BetaGamma": 4, "delta": 4}


@pytest.fixture
def subset_spec(tiny_spec, patch_spec):
    """TinyScenes as EuroSAT is registered: subsets of the release are accepted."""
    return patch_spec("TinyScenes", counts=dict(COUNTS), subset_ok=True)


def _release(factory, folder, picks):
    """A subset release: ``picks[class]`` = the image numbers it holds (official file names)."""
    tree = factory.base / folder
    for cls, numbers in picks.items():
        d = tree / "Tiny_Release/Images" / cls
        d.mkdir(parents=True, exist_ok=True)
        for i in numbers:
            (d / f"{cls.lower()}_{i}.jpg").write_bytes(factory.jpeg())
    return factory.zip(tree, f"{folder}.zip")


def _state(root):
    """What the data root holds: folder names and each manifest's bytes."""
    return {p.name: (p / MANIFEST_NAME).read_bytes() if (p / MANIFEST_NAME).is_file() else None
            for p in sorted(root.iterdir())}


def test_another_release_is_refused_then_kept_beside_it_with_name(subset_spec, data_factory, tmp_path):
    root = tmp_path / "data"
    first = _release(data_factory, "shipped", {c: [0, 1] for c in COUNTS})
    other = _release(data_factory, "other", {c: [2, 3] for c in COUNTS})
    (r1,) = import_sources([first], root=root, progress=False)
    assert r1.status == "imported" and r1.num_images == 6
    before = _state(root)

    with pytest.raises(DataError) as err:
        import_sources([other], root=root, progress=False)
    msg = str(err.value)
    assert "TinyScenes is already imported from another release" in msg
    assert str(root / "TinyScenes") in msg and "shipped.zip" in msg
    assert "--replace" in msg and "--name NAME" in msg and "--merge" in msg
    assert _state(root) == before  # nothing written, no work folder left

    # the same release again: idempotent
    (again,) = import_sources([first], root=root, progress=False)
    assert again.status == "skipped" and _state(root) == before

    (r2,) = import_sources([other], root=root, progress=False, name="TinyScenes-other")
    assert (r2.name, r2.status, r2.num_images) == ("TinyScenes-other", "imported", 6)
    assert _state(root)["TinyScenes"] == before["TinyScenes"]
    m = json.loads((root / "TinyScenes-other" / MANIFEST_NAME).read_text())
    assert m["origin"] == "variant" and m["variant_of"] == "TinyScenes"
    spec = get_spec("TinyScenes-other", root)
    assert spec.variant_of == "TinyScenes" and spec.classname_overrides == {"delta": "delta area"}
    a = load_scene_dataset("TinyScenes", root=root)
    b = load_scene_dataset("TinyScenes-other", root=root)
    assert a.classnames == b.classnames and b.prompt_names[2] == "delta area"
    assert not set(a.hashes) & set(b.hashes)
    assert all("Tiny_Release/Images" in p.as_posix() for p in b.paths)
    entries = {e["name"]: e for e in list_datasets(root)}
    assert entries["TinyScenes-other"]["origin"] == "variant"
    # re-importing the variant is idempotent too
    (again,) = import_sources([other], root=root, progress=False, name="TinyScenes-other")
    assert again.status == "skipped"


def test_replace_replaces(subset_spec, data_factory, tmp_path):
    root = tmp_path / "data"
    import_sources([_release(data_factory, "a", {c: [0, 1] for c in COUNTS})], root=root, progress=False)
    (r,) = import_sources([_release(data_factory, "b", {c: [2] for c in COUNTS})], root=root,
                          progress=False, replace=True)
    assert r.status == "replaced" and len(load_scene_dataset("TinyScenes", root=root)) == 3
    assert sorted(p.name for p in root.iterdir()) == ["TinyScenes"]


def test_merge_adds_images_when_nothing_collides(subset_spec, data_factory, tmp_path):
    root = tmp_path / "data"
    first = _release(data_factory, "a", {c: [0, 1] for c in COUNTS})
    second = _release(data_factory, "b", {"Alpha": [2, 3], "BetaGamma": [2], "delta": [2]})
    import_sources([first], root=root, progress=False)
    before = load_scene_dataset("TinyScenes", root=root)
    (r,) = import_sources([second], root=root, progress=False, merge=True)
    assert (r.status, r.num_images) == ("merged", 10)
    after = load_scene_dataset("TinyScenes", root=root)
    assert after.class_counts() == [4, 3, 3]
    assert set(before.hashes) < set(after.hashes) and all(p.is_file() for p in after.paths)
    m = json.loads((root / "TinyScenes" / MANIFEST_NAME).read_text())
    assert m["subset"] is True and len(m["merged_from"]) == 1
    assert m["merged_from"][0]["path"].endswith("a.zip") and m["source"]["path"].endswith("b.zip")
    # merging the same source again changes nothing
    (again,) = import_sources([second], root=root, progress=False, merge=True)
    assert again.status == "skipped"
    assert sorted(p.name for p in root.iterdir()) == ["TinyScenes"]


def test_merge_refuses_colliding_files_and_more_than_the_release(subset_spec, data_factory, tmp_path):
    root = tmp_path / "data"
    import_sources([_release(data_factory, "a", {c: [0, 1] for c in COUNTS})], root=root, progress=False)
    before = _state(root)
    clash = _release(data_factory, "clash", {c: [1, 2] for c in COUNTS})  # *_1.jpg differ
    with pytest.raises(DataError, match=r"cannot merge into TinyScenes: 3 file\(s\) exist in both "
                                        r"with different contents.*alpha_1\.jpg.*--name NAME"):
        import_sources([clash], root=root, progress=False, merge=True)
    assert _state(root) == before


def test_the_same_files_from_another_copy_are_the_same_release(subset_spec, data_factory, tmp_path):
    root = tmp_path / "data"
    zipped = _release(data_factory, "a", {c: [0, 1] for c in COUNTS})
    import_sources([zipped], root=root, progress=False)
    (r,) = import_sources([data_factory.base / "a"], root=root, progress=False)  # its folder
    assert r.status == "replaced" and len(load_scene_dataset("TinyScenes", root=root)) == 6


def test_same_names_other_bytes_is_another_release(subset_spec, data_factory, tmp_path):
    root = tmp_path / "data"
    import_sources([_release(data_factory, "a", {c: [0, 1] for c in COUNTS})], root=root, progress=False)
    before = _state(root)
    # same file names and sizes (fresh JPEGs of the same size), other pixels
    with pytest.raises(DataError, match="already imported from another release"):
        import_sources([_release(data_factory, "b", {c: [0, 1] for c in COUNTS})], root=root,
                       progress=False)
    assert _state(root) == before


def test_variant_name_rules(subset_spec, data_factory, tmp_path):
    root = tmp_path / "data"
    src = _release(data_factory, "a", {c: [0, 1] for c in COUNTS})
    with pytest.raises(DataError, match="names the registered dataset UCMerced"):
        import_sources([src], root=root, progress=False, name="UCM")
    # naming a release after its own dataset is a plain import
    (r,) = import_sources([src], root=root, progress=False, name="tiny")
    assert r.name == "TinyScenes" and find_spec("TinyScenes", root).origin == "registry"
