"""The data step of `make study` on a machine without the shipped-data folder (issue 17).

`make data` runs `fedrs data import` with no source: the study's datasets come from
$FEDRS_SOURCE when that folder exists, else by download, each archive checked against its
checksum. The network is stood in for by file:// URLs to tiny archives in the official layouts,
built here; the registry entries that point at them (URL, checksum, tiny official counts) come
from the test, so validation stays as strict as for real users.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from fedrs.data import (
    STUDY_DATASETS,
    download,
    ensure_datasets,
    load_caption_set,
    load_scene_dataset,
)
from fedrs.data.importing import files_in_place
from fedrs.data.registry import AID_HOLDOUT, MANIFEST_NAME, SPECS
from fedrs.errors import DataError

REPO = Path(__file__).resolve().parents[1]
REAL_URLOPEN = urllib.request.urlopen
PER_CLASS = 2
SPLITS = ["train", "train", "val", "test"]


def makefile_data_command() -> list[str]:
    """The fedrs arguments of the Makefile's `data` step that imports (the README's first
    command, `make study`, runs it through `backbone: data`)."""
    text = (REPO / "Makefile").read_text()
    recipe = re.search(r"^data:.*\n((?:\t.*\n)+)", text, re.M).group(1)
    for line in recipe.splitlines():
        words = line.split()
        if words[0].endswith("/fedrs") and words[1:3] == ["data", "import"]:
            return words[1:]
    raise AssertionError(f"the Makefile's data step runs no `fedrs data import`: {recipe!r}")


def _zip_tree(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    return out


class StudyRelease:
    """Tiny copies of the study's six datasets, as archives (official inner layouts) and as the
    shared data folder lays them out (archives + caption folders + SHA256SUMS)."""

    def __init__(self, factory, patch_spec):
        self.factory = factory
        base = factory.base
        counts = {name: {c: PER_CLASS for c in SPECS[name].classes}
                  for name in ("UCMerced", "AID", "RSSCN7", "EuroSAT")}
        for name, c in counts.items():
            patch_spec(name, counts=c)
        trees = {
            "UCMerced": factory.scene_tree("t/ucm", "UCMerced_LandUse/Images", counts["UCMerced"],
                                           stem="{cls}{i:02d}"),
            "AID": factory.scene_tree("t/aid", "AID", counts["AID"], stem="{cls}_{i}"),
            "RSSCN7": factory.scene_tree("t/rsscn7", "RSSCN7", counts["RSSCN7"], stem="{cls[0]}{i:03d}"),
            "EuroSAT": factory.scene_tree("t/eurosat", "EuroSAT_RGB", counts["EuroSAT"], stem="{cls}_{i}"),
        }
        ucm = sorted(SPECS["UCMerced"].classes)
        factory.karpathy("t/ucmcap/UCM_Captions/dataset.json",
                         [(f"{n + 1}.tif", SPLITS[n], [f"ucm {n} says {k} ." for k in range(5)])
                          for n in range(4)], tag="UCM")
        factory.write("t/ucmcap/UCM_Captions/images.csv", "filename,split,ucmerced_class,ucmerced_stem\n"
                      + "".join(f"{n + 1}.tif,{SPLITS[n]},{ucm[n]},{ucm[n].lower()}00\n" for n in range(4)))
        patch_spec("UCM-Captions", expected_json={"train": 2, "val": 1, "test": 1})
        aid = sorted(SPECS["AID"].classes)[:3]
        train = [f"{c.lower()}_0.jpg" for c in aid] + ["00001.jpg"]
        factory.write("t/rsicd/RSICD/train_filename.txt", "\n".join(train) + "\n")
        factory.write("t/rsicd/RSICD/train_caps.txt",
                      "".join(f"{n} says {k} .\n" for n in train for k in range(5)))
        factory.write("t/rsicd/RSICD/images.csv", "filename,aid_class,aid_stem\n" + "".join(
            f"{c.lower()}_0.jpg,{c},{c.lower()}_0\n" for c in aid) + "00001.jpg,,\n")
        patch_spec("RSICD", expected_split_files={"train": 4}, expected_mapped={"train": 3})
        self.aid_train = {f"{c.lower()}_0" for c in aid}

        # the archives the registry points at (official archive names)
        self.archives = base / "releases"
        self.archives.mkdir()
        names = {"UCMerced": "UCMerced_LandUse.zip", "AID": "AID.zip", "RSSCN7": "RSSCN7.zip",
                 "EuroSAT": "EuroSAT_RGB.zip"}
        self.files = {n: _zip_tree(trees[n], self.archives / a) for n, a in names.items()}
        self.files["UCM-Captions"] = _zip_tree(base / "t/ucmcap", self.archives / "UCM_Captions.zip")
        self.files["RSICD"] = _zip_tree(base / "t/rsicd", self.archives / "RSICD.zip")
        self.sha256 = {n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in self.files.items()}
        self.patch_spec = patch_spec

    def point_registry_here(self) -> None:
        """Every study dataset's official download becomes its file:// archive and checksum."""
        for name, path in self.files.items():
            self.patch_spec(name, url=path.as_uri(), sha256=self.sha256[name], md5=None,
                            archive_bytes=None)

    def shared_folder(self, where: Path) -> Path:
        """The shared data folder's layout: scene archives, caption folders, SHA256SUMS."""
        where.mkdir(parents=True)
        for name in ("UCMerced", "AID", "RSSCN7", "EuroSAT"):
            shutil.copy(self.files[name], where / self.files[name].name)
        shutil.copytree(self.factory.base / "t/ucmcap/UCM_Captions", where / "UCM_Captions")
        shutil.copytree(self.factory.base / "t/rsicd/RSICD", where / "RSICD")
        lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(where).as_posix()}"
                 for p in sorted(where.rglob("*")) if p.is_file()]
        (where / "SHA256SUMS").write_text("\n".join(lines) + "\n")
        return where


@pytest.fixture
def release(data_factory, patch_spec) -> StudyRelease:
    return StudyRelease(data_factory, patch_spec)


@pytest.fixture
def clean_machine(tmp_path, monkeypatch) -> Path:
    """No shipped-data folder, no mirror, an empty data root ($FEDRS_DATA); the data root."""
    monkeypatch.setenv("FEDRS_SOURCE", str(tmp_path / "shared" / "data"))  # absent
    monkeypatch.delenv("FEDRS_MIRROR", raising=False)
    root = tmp_path / "fresh-data"
    monkeypatch.setenv("FEDRS_DATA", str(root))
    return root


@pytest.fixture
def offline(monkeypatch) -> list[str]:
    """Every URL open fails as without network; the URLs tried."""
    tried: list[str] = []

    def no_network(url, timeout=None):
        tried.append(url)
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(download.urllib.request, "urlopen", no_network)
    return tried


def _assert_study_data_ready(root: Path, release: StudyRelease, origin: dict[str, str]) -> None:
    """Every study dataset imported, verified, loadable; ``origin``: dataset -> recorded URL."""
    assert sorted(p.name for p in root.iterdir()) == sorted(STUDY_DATASETS)  # nothing else left
    for name in STUDY_DATASETS:
        manifest = json.loads((root / name / MANIFEST_NAME).read_text())
        assert manifest["name"] == name and files_in_place(root / name, manifest)
        assert manifest["source"]["url"] == origin[name]
    for name in ("UCMerced", "AID", "RSSCN7", "EuroSAT"):
        ds = load_scene_dataset(name, root=root)
        assert len(ds) == PER_CLASS * len(SPECS[name].classes) and all(p.is_file() for p in ds.paths)
    hold = load_scene_dataset(AID_HOLDOUT, root=root)
    assert len(hold) == len(load_scene_dataset("AID", root=root)) - len(release.aid_train)
    assert not release.aid_train & set(hold.stems)
    assert len(load_caption_set("UCM-Captions", "all", root=root).with_images()) == 4
    assert len(load_caption_set("RSICD", "train", root=root).with_images()) == 3


def test_makefile_data_step_is_fedrs_data_import_without_a_source():
    assert makefile_data_command() == ["data", "import"]


def test_data_step_downloads_verifies_and_imports_every_study_dataset(
        release, clean_machine, cli_data_only, capsys, monkeypatch):
    release.point_registry_here()
    assert cli_data_only(makefile_data_command()) == 0
    out = capsys.readouterr().out
    assert "no archives for UCMerced, AID" in out and "downloading them from the official releases" in out
    root = clean_machine
    _assert_study_data_ready(root, release, {n: p.as_uri() for n, p in release.files.items()})
    for name in STUDY_DATASETS:  # the archive imported is the one whose checksum the registry has
        assert json.loads((root / name / MANIFEST_NAME).read_text())["source"]["sha256"] == release.sha256[name]

    # run again offline: nothing to do, nothing fetched
    tried: list[str] = []
    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout=None: tried.append(url))
    assert cli_data_only(makefile_data_command()) == 0
    assert "all 6 datasets are imported and verified" in capsys.readouterr().out and tried == []


def test_a_damaged_download_is_refused_before_import(release, clean_machine, patch_spec):
    release.point_registry_here()
    patch_spec("AID", sha256="0" * 64)
    with pytest.raises(DataError, match=r"downloaded with sha256 .* expected 0000.*AID\.zip"):
        ensure_datasets(progress=False)
    assert not (clean_machine / "AID").exists()
    assert not [p for p in clean_machine.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("registry", ["as released", "every dataset downloadable"])
def test_offline_without_archives_fails_fast_naming_both_routes(
        release, clean_machine, offline, cli_data_only, capsys, registry):
    if registry == "every dataset downloadable":
        release.point_registry_here()
        for name in STUDY_DATASETS:  # a real server, not a file: unreachable offline
            release.patch_spec(name, url=f"https://example.org/{release.files[name].name}")
    assert cli_data_only(makefile_data_command()) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fedrs: error:") and "\n" not in err and "Traceback" not in err
    assert "fedrs data import PATH" in err and "FEDRS_SOURCE=PATH" in err      # route 1
    assert "machine with internet access" in err                               # route 2
    assert str(clean_machine.parent / "shared" / "data") in err
    if registry == "as released":
        # AID, RSSCN7 and the caption sets have no direct download: said before any fetch
        assert offline == []
        assert "AID, RSSCN7, UCM-Captions, RSICD cannot be downloaded from the official releases" in err
        assert "captain-whu.github.io/AID" in err and "FEDRS_MIRROR" in err
    else:
        assert len(offline) == 1 and "no network" in err and "name resolution" in err
    assert not clean_machine.exists() or list(clean_machine.iterdir()) == []


def test_offline_message_from_the_real_command_line(tmp_path):
    """The installed command, as `make data` runs it: exit 2, one line, no traceback."""
    env = {**os.environ, "FEDRS_SOURCE": str(tmp_path / "absent"), "FEDRS_DATA": str(tmp_path / "d"),
           "FEDRS_DOWNLOAD_TIMEOUT": "2"}
    env.pop("FEDRS_MIRROR", None)
    proc = subprocess.run([sys.executable, "-m", "fedrs.cli", *makefile_data_command()],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedrs: error:"), proc.stderr
    assert "fedrs data import PATH" in lines[0] and "internet" in lines[0]


def test_no_download_flag_refuses_to_fetch(release, clean_machine, cli_data_only, capsys, offline):
    release.point_registry_here()
    assert cli_data_only(["data", "import", "--no-download"]) == 2
    err = capsys.readouterr().err
    assert "downloads are off" in err and "fedrs data import PATH" in err and offline == []


def test_mirror_of_the_shared_data_folder(release, clean_machine, cli_data_only, tmp_path, monkeypatch):
    """FEDRS_MIRROR: a copy of the shared data folder behind a URL (file:// here), its files
    checked against its SHA256SUMS; the registry's own URLs are not used."""
    mirror = release.shared_folder(tmp_path / "mirror")
    monkeypatch.setenv("FEDRS_MIRROR", mirror.as_uri())
    assert cli_data_only(makefile_data_command()) == 0
    origin = {n: (mirror / release.files[n].name).as_uri()
              for n in ("UCMerced", "AID", "RSSCN7", "EuroSAT")}
    origin |= {"UCM-Captions": (mirror / "UCM_Captions").as_uri(), "RSICD": (mirror / "RSICD").as_uri()}
    _assert_study_data_ready(clean_machine, release, origin)


def test_mirror_checksums_are_checked(release, clean_machine, tmp_path, monkeypatch):
    mirror = release.shared_folder(tmp_path / "mirror")
    (mirror / "RSICD" / "train_caps.txt").write_text("tampered\n")
    monkeypatch.setenv("FEDRS_MIRROR", mirror.as_uri())
    with pytest.raises(DataError, match=r"downloaded with sha256 .*train_caps\.txt"):
        ensure_datasets(progress=False)


def test_local_archives_first_then_download_only_what_they_lack(
        release, clean_machine, tmp_path, monkeypatch, offline):
    shared = release.shared_folder(tmp_path / "shared-copy")
    shutil.rmtree(shared / "RSICD")
    monkeypatch.setenv("FEDRS_SOURCE", str(shared))
    with pytest.raises(DataError, match=r"1 dataset\(s\) are not imported.*RSICD"):
        ensure_datasets(progress=False)   # offline, and RSICD has no direct download
    assert {p.name for p in clean_machine.iterdir()} == set(STUDY_DATASETS) - {"RSICD"}

    release.point_registry_here()
    monkeypatch.setattr(download.urllib.request, "urlopen", REAL_URLOPEN)  # the network is back
    results = ensure_datasets(progress=False)
    assert [(r.name, r.source) for r in results] == [("RSICD", release.files["RSICD"].as_uri())]


def test_ensure_is_a_no_op_when_ready_and_repairs_a_damaged_import(
        release, clean_machine, tmp_path, monkeypatch):
    shared = release.shared_folder(tmp_path / "shared-copy")
    monkeypatch.setenv("FEDRS_SOURCE", str(shared))
    assert {r.name for r in ensure_datasets(progress=False)} == set(STUDY_DATASETS)
    assert ensure_datasets(progress=False) == []
    next((clean_machine / "EuroSAT").rglob("*.jpg")).unlink()
    (r,) = ensure_datasets(progress=False)
    assert (r.name, r.status) == ("EuroSAT", "replaced")
