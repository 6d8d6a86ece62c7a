"""Scene datasets from the data root: the loader API and the AID-holdout view."""

from __future__ import annotations

import shutil

import pytest

from fedrs.data import SceneDataset, import_sources, load_scene_dataset
from fedrs.errors import DataError


@pytest.fixture
def tiny_root(tiny_spec, data_factory, tmp_path):
    src = data_factory.scene_tree("release", "Tiny_Release/Images", tiny_spec.counts)
    root = tmp_path / "data"
    import_sources([src], root=root, progress=False)
    return root


def test_scene_dataset_api(tiny_root):
    ds = load_scene_dataset("TinyScenes", root=tiny_root)
    assert isinstance(ds, SceneDataset) and ds.name == "TinyScenes"
    assert ds.classnames == ["Alpha", "BetaGamma", "delta"]
    assert ds.prompt_names == ["alpha", "beta gamma", "delta area"]
    assert len(ds) == 8 and ds.class_counts() == [3, 3, 2]
    assert ds.stems[:3] == ["alpha_0", "alpha_1", "alpha_2"]
    path, label = ds[3]
    assert path == ds.paths[3] and path.is_absolute() and label == 1
    assert [p.parent.name for p in ds.paths] == [ds.classnames[y] for y in ds.labels]
    assert ds.paths == sorted(ds.paths, key=lambda p: (ds.classnames.index(p.parent.name), p.name))

    sub = ds.subset([7, 0])
    assert sub.classnames == ds.classnames and sub.labels == [2, 0]
    assert sub.stems == ["delta_1", "alpha_0"] and len(sub) == 2


def test_root_defaults_to_fedrs_data(tiny_root, monkeypatch):
    monkeypatch.setenv("FEDRS_DATA", str(tiny_root))
    assert len(load_scene_dataset("TinyScenes")) == 8


def test_user_classname_overrides(tiny_root):
    ds = load_scene_dataset("TinyScenes", root=tiny_root, classname_overrides={"Alpha": "first"})
    assert ds.prompt_names == ["first", "beta gamma", "delta area"]


def test_missing_dataset_message(tmp_path):
    with pytest.raises(DataError) as err:
        load_scene_dataset("AID", root=tmp_path)
    msg = str(err.value)
    assert "dataset 'AID' is not imported in" in msg
    assert "`fedrs data import AID.zip`" in msg and "`fedrs data download AID`" in msg


def test_caption_set_is_not_a_scene_dataset(tmp_path):
    with pytest.raises(DataError, match="caption set"):
        load_scene_dataset("RSICD", root=tmp_path)


# --- AID-holdout --------------------------------------------------------------------------------

@pytest.fixture
def aid_rsicd_root(patch_spec, data_factory, tmp_path):
    """AID with 2 images per class (60), RSICD training split using 45 of them (+5 unmapped)."""
    from fedrs.data.registry import SPECS

    aid = SPECS["AID"]
    patch_spec("AID", counts={c: 2 for c in aid.classes})
    tree = data_factory.scene_tree("aid", "AID", {c: 2 for c in aid.classes})
    stems = [(c, f"{c.lower()}_{i}") for c in aid.classes for i in range(2)]
    used = stems[:45]
    # an unused AID image that is a byte copy of a used one: also held out
    copy_src = tree / "AID" / used[0][0] / f"{used[0][1]}.jpg"
    shutil.copy(copy_src, tree / "AID" / stems[59][0] / f"{stems[59][1]}.jpg")

    rows = [f"{s}.jpg,{c},{s}" for c, s in used] + [f"{i:05d}.jpg,," for i in range(1, 6)]
    names = [r.split(",")[0] for r in rows]
    data_factory.write("RSICD/images.csv", "filename,aid_class,aid_stem\n" + "\n".join(rows) + "\n")
    data_factory.write("RSICD/train_filename.txt", "\n".join(names) + "\n")
    data_factory.write("RSICD/train_caps.txt", "".join(f"caption {n} {k}\n" for n in names for k in range(5)))
    patch_spec("RSICD", expected_split_files={"train": 50}, expected_mapped={"train": 45})
    root = tmp_path / "data"
    import_sources([tree, data_factory.base / "RSICD"], root=root, progress=False)
    return root, used, stems


def test_aid_holdout_excludes_rsicd_training_images_and_their_copies(aid_rsicd_root):
    root, used, stems = aid_rsicd_root
    hold = load_scene_dataset("AID-holdout", root=root)
    aid = load_scene_dataset("AID", root=root)
    assert hold.name == "AID-holdout"
    assert hold.classnames == aid.classnames and len(hold.classnames) == 30
    assert len(hold) == 60 - 45 - 1
    assert not {s for _, s in used} & set(hold.stems)
    assert stems[59][1] not in hold.stems  # byte copy of a training image
    assert [aid.classnames[y] for y in hold.labels] == [p.parent.name for p in hold.paths]


def test_aid_holdout_needs_rsicd(patch_spec, data_factory, tmp_path):
    from fedrs.data.registry import SPECS

    classes = SPECS["AID"].classes
    patch_spec("AID", counts={c: 1 for c in classes})
    tree = data_factory.scene_tree("aid", "AID", {c: 1 for c in classes})
    import_sources([tree], root=tmp_path / "data", progress=False)
    with pytest.raises(DataError, match=r"needs AID and RSICD.*missing: RSICD.*fedrs data import"):
        load_scene_dataset("AID-holdout", root=tmp_path / "data")
