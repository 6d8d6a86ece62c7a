"""A user's own folder of class sub-folders, imported as itself with --name (issue 12), and a
folder that merely shares a registered dataset's class names not taken for that dataset."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from fedrs.data import import_sources, list_datasets, load_scene_dataset
from fedrs.data.registry import MANIFEST_NAME, SPECS, find_spec, get_spec
from fedrs.errors import DataError


def _image(mode: str, fmt: str, size=(6, 5), seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    else:
        bands = len(Image.new(mode, (1, 1)).getbands())
        arr = rng.integers(0, 255, (size[1], size[0], bands), dtype=np.uint8)
        im = Image.fromarray(arr[..., 0] if bands == 1 else arr, mode)
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def messy(data_factory):
    """'My Scenes': spaces and unicode in names, mixed formats and case, grayscale/RGBA/16-bit,
    a broken file, OS junk, a non-image, an empty class folder, an image outside the classes."""
    w = data_factory.write
    w("My Scenes/Wind Turbines/A.JPG", _image("RGB", "JPEG", seed=1))
    w("My Scenes/Wind Turbines/b.png", _image("RGBA", "PNG", seed=2))
    w("My Scenes/Wind Turbines/c.TIF", _image("L", "TIFF", seed=3))
    w("My Scenes/Wind Turbines/d.tif", _image("I;16", "TIFF", seed=4))
    w("My Scenes/Wind Turbines/notes.txt", "shot from a drone")
    w("My Scenes/Wind Turbines/.DS_Store", b"\0\0\0\1Bud1")
    w("My Scenes/Wind Turbines/Thumbs.db", b"\xd0\xcf\x11\xe0")
    w("My Scenes/Église romane/1.jpeg", _image("RGB", "JPEG", seed=5))
    w("My Scenes/Église romane/2.PNG", _image("L", "PNG", seed=6))
    w("My Scenes/Église romane/broken.jpg", b"not really a jpeg")
    w("My Scenes/__MACOSX/Wind Turbines/._A.JPG", b"\0\5\26\7")
    w("My Scenes/cover.jpg", _image("RGB", "JPEG", seed=7))
    (data_factory.base / "My Scenes" / "Empty class").mkdir()
    return data_factory.base / "My Scenes"


def _zip_with_folders(folder, out):
    """As a zip tool writes it: folder entries too (so an empty class folder is seen)."""
    import zipfile

    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, p.relative_to(folder.parent).as_posix() + ("/" if p.is_dir() else ""))
    return out


@pytest.mark.parametrize("packing", ["folder", "zip"])
def test_messy_folder_imports_as_itself(messy, data_factory, tmp_path, packing):
    src = messy if packing == "folder" else _zip_with_folders(messy, tmp_path / "my-scenes.zip")
    root = tmp_path / "data"
    with pytest.raises(DataError) as err:  # broken files are listed by path, as for any import
        import_sources([src], root=root, progress=False, name="My Scenes")
    assert "Église romane/broken.jpg" in str(err.value) and "--exclude-bad" in str(err.value)
    assert not (root / "My Scenes").exists()

    (r,) = import_sources([src], root=root, progress=False, name="My Scenes", exclude_bad=True)
    assert (r.name, r.kind, r.num_classes, r.num_images) == ("My Scenes", "scene", 2, 6)
    notes = "\n".join(r.notes)
    assert "skipped 3 OS file(s)" in notes and ".DS_Store" in notes and "Thumbs.db" in notes
    assert "__MACOSX" in notes
    assert "1 file(s) that are not images" in notes and "notes.txt" in notes
    assert "image(s) outside the class folders" in notes and "cover.jpg" in notes
    assert "without images: Empty class" in notes
    assert "converted 4 image(s) that were not RGB to RGB PNG (I;16 1, L 2, RGBA 1)" in notes

    m = json.loads((root / "My Scenes" / MANIFEST_NAME).read_text())
    assert m["origin"] == "custom" and m["variant_of"] is None
    assert m["citation"] == "" and m["licence"] == ""
    assert [e["path"] for e in m["excluded"]] == ["images/Église romane/broken.jpg"]

    ds = load_scene_dataset("My Scenes", root=root)
    assert ds.classnames == ["Wind Turbines", "Église romane"]
    assert ds.prompt_names == ["wind turbines", "église romane"]
    assert ds.class_counts() == [4, 2]
    stored = sorted(p.relative_to(root / "My Scenes").as_posix() for p in ds.paths)
    assert stored == ["images/Wind Turbines/A.JPG", "images/Wind Turbines/b.png",
                      "images/Wind Turbines/c.png", "images/Wind Turbines/d.png",
                      "images/Église romane/1.jpeg", "images/Église romane/2.PNG"]
    for p in ds.paths:
        with Image.open(p) as im:
            assert im.mode == "RGB"
    with Image.open(root / "My Scenes/images/Wind Turbines/d.png") as im:  # 16-bit scaled, not clipped
        arr = np.asarray(im)
        assert arr.min() == 0 and arr.max() == 255
    converted = {e["source_path"]: e["converted_from"] for e in m["images"] if "converted_from" in e}
    assert converted == {"images/Wind Turbines/b.png": "RGBA", "images/Wind Turbines/c.TIF": "L",
                         "images/Wind Turbines/d.tif": "I;16", "images/Église romane/2.PNG": "L"}

    # the registry knows it, by its name ignoring case: run configs (data.dataset) resolve it
    spec = find_spec("my scenes", root)
    assert spec is get_spec("My Scenes", root) and spec.origin == "custom"
    assert spec.classes == ("Wind Turbines", "Église romane")
    entry = {e["name"]: e for e in list_datasets(root)}["My Scenes"]
    assert entry["origin"] == "custom" and entry["num_images"] == 6

    # idempotent
    (again,) = import_sources([src], root=root, progress=False, name="My Scenes", exclude_bad=True)
    assert again.status == "skipped"


def test_run_config_dataset_resolves_a_custom_import(messy, tmp_path, monkeypatch):
    from fedrs.classification import load_datasets
    from fedrs.data.partition import PartitionConfig, partition_dataset
    from fedrs.experiment import dataset_classnames

    root = tmp_path / "data"
    import_sources([messy], root=root, progress=False, name="My Scenes", exclude_bad=True)
    monkeypatch.setenv("FEDRS_DATA", str(root))
    cfg = PartitionConfig(dataset="My Scenes", num_clients=2, scheme="iid", test_fraction=0.5)
    (ds,) = load_datasets(cfg)
    assert ds.name == "My Scenes" and len(ds) == 6
    part = partition_dataset(ds, cfg)
    assert part.classnames == ["Wind Turbines", "Église romane"]
    assert dataset_classnames(cfg) == ["wind turbines", "église romane"]


def test_a_folder_with_a_registered_datasets_class_names_is_not_that_dataset(data_factory, tmp_path):
    """'My Scenes/<EuroSAT's class names>/img_N.jpg': neither EuroSAT's counts, file names nor
    root folder. Without --name it is refused with the way out; with --name it is the user's."""
    classes = SPECS["EuroSAT"].classes
    for cls in classes:
        for i in range(2):
            data_factory.write(f"My Scenes/{cls}/img_{i}.jpg", data_factory.jpeg())
    src = data_factory.base / "My Scenes"
    root = tmp_path / "data"
    with pytest.raises(DataError) as err:
        import_sources([src], root=root, progress=False)
    msg = str(err.value)
    assert "EuroSAT's class folders but not its release" in msg and str(src) in msg
    assert f"fedrs data import {src} --name NAME" in msg
    assert not root.exists() or list(root.iterdir()) == []

    (r,) = import_sources([src], root=root, progress=False, name="My Scenes")
    m = json.loads((root / "My Scenes" / MANIFEST_NAME).read_text())
    assert m["origin"] == "custom" and m["citation"] == "" and "Helber" not in json.dumps(m)
    assert r.num_images == 20 and not (root / "EuroSAT").exists()
    # readable names from the folder names (EuroSAT's own wording stays EuroSAT's)
    assert load_scene_dataset("My Scenes", root=root).prompt_names[0] == "annual crop"

    with pytest.raises(DataError, match="names the registered dataset EuroSAT"):
        import_sources([src], root=tmp_path / "d2", progress=False, name="EuroSAT")


def test_the_same_folder_with_eurosat_file_names_is_eurosat(patch_spec, data_factory, tmp_path):
    """One more sign than the class names (the official file naming) makes it the release."""
    classes = SPECS["EuroSAT"].classes
    for cls in classes:
        for i in range(1, 3):
            data_factory.write(f"My Scenes/{cls}/{cls}_{i}.jpg", data_factory.jpeg())
    (r,) = import_sources([data_factory.base / "My Scenes"], root=tmp_path / "data", progress=False)
    assert r.name == "EuroSAT" and any("subset of the official release" in n for n in r.notes)


def test_other_class_names_without_name_say_how(data_factory, tmp_path):
    for cls in ("cats", "dogs"):
        data_factory.write(f"pets/{cls}/a.jpg", data_factory.jpeg())
    with pytest.raises(DataError, match=r"no known dataset layout.*sub-folders of images \(cats, dogs\)"
                                        r".*--name NAME"):
        import_sources([data_factory.base / "pets"], root=tmp_path / "data", progress=False)


def test_custom_dataset_needs_two_class_folders(data_factory, tmp_path):
    data_factory.write("one/only/a.jpg", data_factory.jpeg())
    with pytest.raises(DataError, match="only one class folder with images.*at least two"):
        import_sources([data_factory.base / "one"], root=tmp_path / "data", progress=False, name="One")


def test_custom_class_folders_differing_only_in_case(data_factory, tmp_path):
    for cls in ("Forest", "forest", "Water"):
        data_factory.write(f"mix/{cls}/a.jpg", data_factory.jpeg())
    with pytest.raises(DataError, match=r"differ only in case.*Forest / forest"):
        import_sources([data_factory.base / "mix"], root=tmp_path / "data", progress=False, name="Mix")
