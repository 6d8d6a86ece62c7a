"""Caption sets on tiny fixtures: UCM-Captions (Karpathy + images.csv), RSICD (split files),
RSITMD and Sydney-Captions (Karpathy JSON with their own image folders)."""

from __future__ import annotations

import json

import pytest

from fedrs.data import CaptionSet, import_sources, load_caption_set
from fedrs.data.captions import ucm_caption_image
from fedrs.data.registry import MANIFEST_NAME, SPECS
from fedrs.errors import DataError

SPLITS = ["train", "train", "val", "test"]


def _sentences(i: int) -> list[str]:
    return [f"image {i} sentence {k} ." for k in range(5)]


@pytest.fixture
def ucm_setup(patch_spec, data_factory, tmp_path):
    """UC Merced with one image per class, UCM-Captions over 4 of them (images.csv mapping)."""
    classes = SPECS["UCMerced"].classes
    patch_spec("UCMerced", counts={c: 1 for c in classes})
    patch_spec("UCM-Captions", expected_json={"train": 2, "val": 1, "test": 1})
    scenes = data_factory.scene_tree("ucm", "UCMerced_LandUse/Images", {c: 1 for c in classes},
                                     stem="{cls}00")
    picked = [classes[0], classes[1], classes[5], classes[20]]
    data_factory.karpathy("UCM_Captions/dataset.json",
                          [(f"{n + 1}.tif", SPLITS[n], _sentences(n)) for n in range(4)], tag="UCM")
    data_factory.write("UCM_Captions/images.csv", "filename,split,ucmerced_class,ucmerced_stem\n" + "".join(
        f"{n + 1}.tif,{SPLITS[n]},{c},{c}00\n" for n, c in enumerate(picked)))
    return scenes, data_factory.base / "UCM_Captions", picked, tmp_path / "data"


def test_ucm_captions_resolve_through_ucmerced(ucm_setup):
    scenes, captions, picked, root = ucm_setup
    results = import_sources([captions, scenes], root=root, progress=False)
    assert [r.name for r in results] == ["UCMerced", "UCM-Captions"]
    for name in ("dataset.json", "images.csv", MANIFEST_NAME):
        assert (root / "UCM-Captions" / name).is_file()

    test = load_caption_set("UCM-Captions", split="test", root=root)
    assert isinstance(test, CaptionSet) and len(test) == 1
    (item,) = test.items
    assert item.image_id == "4.tif" and item.split == "test" and item.label == picked[3]
    assert item.captions == _sentences(3)
    assert item.path == root / "UCMerced" / "UCMerced_LandUse/Images" / picked[3] / f"{picked[3]}00.jpg"

    every = load_caption_set("UCM_Captions", split="all", root=root)
    assert [it.split for it in every.items] == SPLITS
    assert len(every.with_images()) == 4 and every.num_captions == 20
    with pytest.raises(DataError, match=r"no split 'dev'"):
        load_caption_set("UCM-Captions", split="dev", root=root)


def test_ucm_images_missing_until_ucmerced_is_imported(ucm_setup):
    _, captions, _, root = ucm_setup
    import_sources([captions], root=root, progress=False)
    cs = load_caption_set("UCM-Captions", split="all", root=root)
    assert len(cs) == 4 and all(it.path is None for it in cs.items)
    with pytest.raises(DataError, match=r"'UCMerced' is not imported.*fedrs data import UCMerced_LandUse.zip"):
        cs.with_images()


def test_ucm_numbering_rule():
    classes = sorted(SPECS["UCMerced"].classes)
    assert ucm_caption_image("1.tif", classes) == ("agricultural", "agricultural00")
    assert ucm_caption_image("189.tif", classes) == ("airplane", "airplane88")
    assert ucm_caption_image("2100.tif", classes) == ("tenniscourt", "tenniscourt99")
    assert ucm_caption_image("2101.tif", classes) is None


def test_caption_count_mismatch_fails(ucm_setup, patch_spec):
    _, captions, _, root = ucm_setup
    patch_spec("UCM-Captions", expected_json={"train": 1680, "val": 210, "test": 210})
    with pytest.raises(DataError, match=r"split 'train' has 2 images, official 1680"):
        import_sources([captions], root=root, progress=False)
    assert not (root / "UCM-Captions").exists()


def test_rsicd_split_files_and_mapping(patch_spec, data_factory, tmp_path):
    names = ["airport_1.jpg", "beach_2.jpg", "00001.jpg"]
    data_factory.write("rsicd_release/train_filename.txt", "\n".join(names) + "\n")
    data_factory.write("rsicd_release/train_caps.txt",
                       "".join(f"{n} says {k} .\n" for n in names for k in range(5)))
    data_factory.write("rsicd_release/images.csv", "filename,aid_class,aid_stem\n"
                       "airport_1.jpg,Airport,airport_1\nbeach_2.jpg,Beach,beach_2\n00001.jpg,,\n")
    patch_spec("RSICD", expected_split_files={"train": 3}, expected_mapped={"train": 2})
    root = tmp_path / "data"
    # recognised by images.csv's columns although the folder has another name
    (r,) = import_sources([data_factory.base / "rsicd_release"], root=root, progress=False)
    assert r.name == "RSICD"
    m = json.loads((root / "RSICD" / MANIFEST_NAME).read_text())
    assert m["splits"] == {"train": {"images": 3, "captions": 15}}
    assert m["mapping"]["mapped"] == {"train": 2}

    cs = load_caption_set("RSICD", root=root)
    assert [it.image_id for it in cs.items] == names
    assert cs.items[0].captions == [f"airport_1.jpg says {k} ." for k in range(5)]
    assert cs.items[0].label == "Airport" and cs.items[2].label is None
    assert all(it.path is None for it in cs.items)  # AID not imported


def test_rsicd_split_files_must_align(patch_spec, data_factory, tmp_path):
    data_factory.write("RSICD/train_filename.txt", "a.jpg\nb.jpg\n")
    data_factory.write("RSICD/train_caps.txt", "one\ntwo\nthree\n")
    patch_spec("RSICD", expected_split_files=None, expected_mapped=None)
    with pytest.raises(DataError, match="not a whole number per image"):
        import_sources([data_factory.base / "RSICD"], root=tmp_path / "data", progress=False)


def test_rsitmd_karpathy_with_own_images(data_factory, tmp_path):
    items = [("airport_1.tif", "train", _sentences(0)), ("beach_7.tif", "test", _sentences(1)),
             ("bridge_3.tif", "test", _sentences(2))]
    data_factory.karpathy("RSITMD/dataset_RSITMD.json", items)
    for f, _, _ in items[:2]:  # one image absent from the release copy
        data_factory.write(f"RSITMD/images/{f}", data_factory.jpeg())
    src = data_factory.tar(data_factory.base, "rsitmd.tar.gz")
    root = tmp_path / "data"
    (r,) = import_sources([src], root=root, progress=False)
    assert r.name == "RSITMD" and (root / "RSITMD/images/airport_1.tif").is_file()

    test = load_caption_set("RSITMD", split="test", root=root)
    assert [it.image_id for it in test.items] == ["beach_7.tif", "bridge_3.tif"]
    assert test.items[0].path == root / "RSITMD" / "images" / "beach_7.tif"
    assert test.items[1].path is None
    assert [it.image_id for it in test.with_images().items] == ["beach_7.tif"]


def test_sydney_identified_by_json_tag(data_factory, tmp_path):
    items = [(f"{i}.tif", "train" if i < 3 else "test", _sentences(i)) for i in range(1, 5)]
    data_factory.karpathy("release/dataset.json", items, tag="sydney")
    for f, _, _ in items:
        data_factory.write(f"release/imgs/{f}", data_factory.jpeg())
    root = tmp_path / "data"
    (r,) = import_sources([data_factory.base / "release"], root=root, progress=False)
    assert r.name == "Sydney-Captions"
    cs = load_caption_set("Sydney-Captions", split="all", root=root)
    assert len(cs) == 4 and len(cs.with_images()) == 4
    assert cs.items[0].path == root / "Sydney-Captions" / "imgs" / "1.tif"


def test_unidentified_caption_folder(data_factory, tmp_path):
    data_factory.karpathy("mystery/dataset.json", [("1.tif", "train", _sentences(1))])
    with pytest.raises(DataError, match="belong to no known caption set"):
        import_sources([data_factory.base / "mystery"], root=tmp_path / "data", progress=False)


def test_corrupt_caption_image_listed(data_factory, tmp_path):
    data_factory.karpathy("Sydney_captions/dataset.json",
                          [("1.tif", "train", _sentences(1)), ("2.tif", "train", _sentences(2))])
    data_factory.write("Sydney_captions/imgs/1.tif", data_factory.jpeg())
    data_factory.write("Sydney_captions/imgs/2.tif", b"\x00broken")
    with pytest.raises(DataError, match=r"imgs/2.tif.*--exclude-bad"):
        import_sources([data_factory.base / "Sydney_captions"], root=tmp_path / "data",
                       progress=False)
    (r,) = import_sources([data_factory.base / "Sydney_captions"], root=tmp_path / "data",
                          exclude_bad=True, progress=False)
    assert [e["path"] for e in r.excluded] == ["imgs/2.tif"]
    cs = load_caption_set("Sydney-Captions", root=tmp_path / "data")
    assert [it.path is not None for it in cs.items] == [True, False]
