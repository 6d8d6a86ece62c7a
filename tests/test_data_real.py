"""The shipped archives (../shared/data or $FEDRS_SOURCE), imported once per session
(`real_data_root`), against the official numbers. Skipped, with the reason, when absent."""

from __future__ import annotations

import pytest

from fedrs.data import import_sources, list_datasets, load_caption_set, load_scene_dataset
from fedrs.data.captions import training_scene_stems
from fedrs.data.registry import get_spec

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.mark.parametrize("name, n_classes, n_images, sizes", [
    ("UCMerced", 21, 2100, None),   # 256x256 but 44 slightly smaller, as released
    ("AID", 30, 10000, (150, 150)),
    ("RSSCN7", 7, 2800, (224, 224)),
    ("EuroSAT", 10, 6000, (64, 64)),
])
def test_scene_datasets_match_official_counts(real_data_root, name, n_classes, n_images, sizes):
    ds = load_scene_dataset(name, root=real_data_root)
    spec = get_spec(name)
    assert len(ds.classnames) == n_classes and len(ds) == n_images
    assert ds.classnames == sorted(spec.classes)
    counts = dict(zip(ds.classnames, ds.class_counts()))
    if spec.subset_ok:  # EuroSAT: the first 600 per class
        assert set(counts.values()) == {600}
    else:
        assert counts == dict(spec.counts)
    if sizes:
        assert set(ds.sizes) == {sizes}
    assert ds.paths[0].is_file() and ds.paths[-1].is_file()


def test_listing_of_the_shipped_data(real_data_root):
    entries = {e["name"]: e for e in list_datasets(real_data_root)}
    assert list(entries) == ["UCMerced", "AID", "AID-holdout", "RSSCN7", "EuroSAT",
                             "UCM-Captions", "RSICD"]
    assert entries["AID"]["duplicates"] == 1 and entries["EuroSAT"]["subset"] is True
    assert entries["AID-holdout"]["num_images"] == 1027
    ucm = entries["UCM-Captions"]
    assert ucm["splits"] == {"train": {"images": 1680, "captions": 8400, "with_images": 1680},
                             "val": {"images": 210, "captions": 1050, "with_images": 210},
                             "test": {"images": 210, "captions": 1050, "with_images": 210}}
    rsicd = entries["RSICD"]
    # train 9,828 images (8,973 on AID) + the shipped test split's 1,093 (1,027 on AID), 5 captions each
    assert rsicd["splits"]["train"] == {"images": 9828, "captions": 49140, "with_images": 8973}
    assert rsicd["splits"]["test"] == {"images": 1093, "captions": 5465, "with_images": 1027}
    assert (rsicd["num_images"], rsicd["num_captions"], rsicd["with_images"]) == (10921, 54605, 10000)


def test_aid_duplicate_pair_reported(real_data_root):
    import json

    manifest = json.loads((real_data_root / "AID" / "fedrs_manifest.json").read_text())
    assert manifest["duplicates"] == [["AID/Industrial/industrial_203.jpg",
                                       "AID/Industrial/industrial_205.jpg"]]


def test_aid_holdout_is_aid_minus_rsicd_train(real_data_root):
    hold = load_scene_dataset("AID-holdout", root=real_data_root)
    used = training_scene_stems(real_data_root, "RSICD")
    assert len(used) == 8973 and len(hold) == 10000 - 8973 == 1027
    assert not used & set(hold.stems)
    assert len(hold.classnames) == 30 and all(n > 0 for n in hold.class_counts())


def test_caption_sets(real_data_root):
    rsicd = load_caption_set("RSICD", split="train", root=real_data_root)
    assert len(rsicd) == 9828 and rsicd.num_captions == 49140
    with_img = rsicd.with_images()
    assert len(with_img) == 8973
    assert all(it.label in get_spec("AID").classes for it in with_img.items)

    ucm = load_caption_set("UCM-Captions", split="all", root=real_data_root)
    assert len(ucm) == 2100 and all(len(it.captions) == 5 for it in ucm.items)
    item = next(it for it in ucm.items if it.image_id == "189.tif")  # known label noise
    assert item.label == "airplane" and item.path.name == "airplane88.jpg"


def test_reimport_skips_everything(real_data_root, real_data_source):
    results = import_sources([real_data_source], root=real_data_root, progress=False)
    assert {r.status for r in results} == {"skipped"}
    assert len(results) == 6
