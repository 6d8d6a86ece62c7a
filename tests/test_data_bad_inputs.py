"""Catalogue of bad inputs to `fedrs data ...` (issue 12), one row each.

Every row runs the command line through ``fedrs.cli.main`` and asserts: the exit status, one
line on stderr reading ``fedrs: error: <what> (<path>): <fix>`` that names the problem (and the
path involved, where there is one), no traceback, and a data root left exactly as it was (no
dataset written or changed, no work folder left). Run: ``pytest tests/test_data_bad_inputs.py``.
Outside the table: a broken stdout pipe (``fedrs data list | head``), which ends quietly.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import urllib.error
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from fedrs.data import download, import_sources, importing
from fedrs.data.registry import SPECS

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Ctx:
    """What a row's setup may use; ``root`` is the data root the command is pointed at."""

    factory: object
    tmp: Path
    root: Path
    monkeypatch: pytest.MonkeyPatch
    patch_spec: Callable
    tiny_counts: dict

    def tiny(self, folder: str = "release", counts: dict | None = None) -> Path:
        return self.factory.scene_tree(folder, "Tiny_Release/Images", counts or self.tiny_counts)

    def imported(self, src: Path, **kw) -> None:
        import_sources([src], root=self.root, progress=False, **kw)

    def classes(self, folder: str, names, per: int = 1, stem: str = "img_{i}") -> Path:
        for cls in names:
            for i in range(per):
                self.factory.write(f"{folder}/{cls}/{stem.format(i=i)}.jpg", self.factory.jpeg())
        return self.factory.base / folder

    def offline(self) -> None:
        def no_network(url, timeout=None):
            raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

        self.monkeypatch.setattr(download.urllib.request, "urlopen", no_network)

    def failing_write(self, code: int, text: str) -> None:
        def fail(path, data):
            raise OSError(code, text, str(path))

        self.monkeypatch.setattr(importing, "_write_file", fail)


@dataclass
class Case:
    id: str
    setup: Callable[[Ctx], list[str]]          # -> argv after "fedrs"
    says: list[str]                            # substrings of the error line
    path: Callable[[Ctx], Path | str] | None = None  # the path the line must name
    rc: int = 2
    tags: list[str] = field(default_factory=list)


def imp(*args) -> list[str]:
    return ["data", "import", *map(str, args)]


def root_args(c: Ctx) -> list[str]:
    return ["--root", str(c.root)]


# --- row setups ---------------------------------------------------------------------------------

def _truncated_zip(c: Ctx) -> list[str]:
    z = c.factory.zip(c.tiny(), "Tiny_Release.zip")
    z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    return imp(z, *root_args(c))


def _corrupt_member(c: Ctx) -> list[str]:
    tree = c.tiny()
    out = c.factory.base / "Tiny_Release.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(tree.rglob("*.jpg")):
            zf.write(p, p.relative_to(tree).as_posix())
    first = sorted(tree.rglob("*.jpg"))[0].read_bytes()
    data = bytearray(out.read_bytes())
    at = data.find(first) + len(first) // 2
    data[at] ^= 0xFF  # the stored bytes no longer match the member's CRC
    out.write_bytes(bytes(data))
    return imp(out, *root_args(c))


def _truncated_tar(c: Ctx) -> list[str]:
    t = c.factory.tar(c.tiny(), "Tiny_Release.tar.gz")
    t.write_bytes(t.read_bytes()[:200])
    return imp(t, *root_args(c))


def _empty_zip(c: Ctx) -> list[str]:
    out = c.factory.base / "empty.zip"
    zipfile.ZipFile(out, "w").close()
    return imp(out, *root_args(c))


def _unsafe_zip(c: Ctx) -> list[str]:
    out = c.factory.base / "evil.zip"
    with zipfile.ZipFile(out, "w") as zf:
        for cls in ("a", "b"):
            zf.writestr(f"../../{cls}/x.jpg", c.factory.jpeg())
    return imp(out, *root_args(c))


def _undecodable(c: Ctx) -> list[str]:
    tree = c.tiny()
    (tree / "Tiny_Release/Images/Alpha/alpha_1.jpg").write_bytes(b"not an image")
    return imp(tree, *root_args(c))


def _sha256sums_mismatch(c: Ctx) -> list[str]:
    box = c.factory.base / "box"
    box.mkdir()
    c.factory.zip(c.tiny(), "box/Tiny_Release.zip")
    (box / "SHA256SUMS").write_text(f"{'0' * 64}  Tiny_Release.zip\n")
    return imp(box, *root_args(c))


def _other_release(c: Ctx) -> list[str]:
    c.imported(c.factory.zip(c.tiny("a"), "a.zip"))
    return imp(c.factory.zip(c.tiny("b"), "b.zip"), *root_args(c))


def _merge_collision(c: Ctx) -> list[str]:
    c.imported(c.factory.zip(c.tiny("a"), "a.zip"))
    return imp(c.factory.zip(c.tiny("b"), "b.zip"), "--merge", *root_args(c))


def _variant_other_release(c: Ctx) -> list[str]:
    c.imported(c.factory.zip(c.tiny("a"), "a.zip"), name="Tiny-v2")
    return imp(c.factory.zip(c.tiny("b"), "b.zip"), "--name", "Tiny-v2", *root_args(c))


def _ucm_captions(c: Ctx, folder: str, n: int = 4) -> Path:
    c.factory.karpathy(f"{folder}/UCM_Captions/dataset.json",
                       [(f"{i + 1}.tif", ["train", "train", "val", "test"][i % 4],
                         [f"{folder} {i} {k}" for k in range(5)]) for i in range(n)], tag="UCM")
    return c.factory.base / folder / "UCM_Captions"


def _merge_captions(c: Ctx) -> list[str]:
    c.patch_spec("UCM-Captions", expected_json={"train": 2, "val": 1, "test": 1})
    c.imported(_ucm_captions(c, "a"))
    return imp(_ucm_captions(c, "b"), "--merge", *root_args(c))


def _caption_count(c: Ctx) -> list[str]:
    return imp(_ucm_captions(c, "a"), *root_args(c))  # official counts: 1,680 / 210 / 210


def _unknown_captions(c: Ctx) -> list[str]:
    c.factory.write("mystery/train_filename.txt", "a.jpg\n")
    c.factory.write("mystery/train_caps.txt", "x\n" * 5)
    return imp(c.factory.base / "mystery", *root_args(c))


def _two_datasets_one_name(c: Ctx) -> list[str]:
    c.patch_spec("UCM-Captions", expected_json={"train": 2, "val": 1, "test": 1})
    c.tiny("both/tiny")
    _ucm_captions(c, "both")
    return imp(c.factory.base / "both", "--name", "Mine", *root_args(c))


def _inside_root(c: Ctx) -> list[str]:
    c.imported(c.tiny())
    return imp(c.root / "TinyScenes", "--force", *root_args(c))


def _root_file(c: Ctx) -> list[str]:
    c.root.parent.mkdir(parents=True, exist_ok=True)
    c.root.write_text("I am a file")
    return imp(c.tiny(), *root_args(c))


def _list_root_file(c: Ctx) -> list[str]:
    c.root.parent.mkdir(parents=True, exist_ok=True)
    c.root.write_text("I am a file")
    return ["data", "list", *root_args(c)]


def _disk_full(c: Ctx) -> list[str]:
    c.failing_write(errno.ENOSPC, "No space left on device")
    return imp(c.tiny(), *root_args(c))


def _read_only(c: Ctx) -> list[str]:
    c.failing_write(errno.EROFS, "Read-only file system")
    return imp(c.tiny(), *root_args(c))


def _quota(c: Ctx) -> list[str]:
    c.failing_write(errno.EDQUOT, "Disk quota exceeded")
    return imp(c.tiny(), "--name", "Quota", *root_args(c))


def _download_offline(c: Ctx) -> list[str]:
    c.offline()
    return ["data", "download", "EuroSAT", *root_args(c)]


def _download_bad_sha(c: Ctx) -> list[str]:
    z = c.factory.zip(c.tiny(), "Tiny_Release.zip")
    return ["data", "download", "TinyScenes", "--url", z.as_uri(), "--sha256", "0" * 64, *root_args(c)]


def _download_official_checksum(c: Ctx) -> list[str]:
    z = c.factory.zip(c.tiny(), "EuroSAT_RGB.zip")
    return ["data", "download", "EuroSAT", "--url", z.as_uri(), *root_args(c)]


def _download_wrong_dataset(c: Ctx) -> list[str]:
    z = c.factory.zip(c.tiny(), "Tiny_Release.zip")
    digest = hashlib.sha256(z.read_bytes()).hexdigest()
    return ["data", "download", "UCMerced", "--url", z.as_uri(), "--sha256", digest, *root_args(c)]


def _download_missing_file(c: Ctx) -> list[str]:
    return ["data", "download", "TinyScenes", "--url", (c.tmp / "gone.zip").as_uri(), *root_args(c)]


def _study_offline(c: Ctx) -> list[str]:
    c.monkeypatch.setenv("FEDRS_SOURCE", str(c.tmp / "no-shared-data"))
    c.monkeypatch.delenv("FEDRS_MIRROR", raising=False)
    c.offline()
    return ["data", "import", *root_args(c)]


def _study_no_download(c: Ctx) -> list[str]:
    c.monkeypatch.setenv("FEDRS_SOURCE", str(c.tmp / "no-shared-data"))
    c.monkeypatch.delenv("FEDRS_MIRROR", raising=False)
    return ["data", "import", "--no-download", *root_args(c)]


def _mirror_offline(c: Ctx) -> list[str]:
    c.monkeypatch.setenv("FEDRS_SOURCE", str(c.tmp / "no-shared-data"))
    c.monkeypatch.setenv("FEDRS_MIRROR", "https://mirror.example.org/fedrs-data")
    c.offline()
    return ["data", "import", *root_args(c)]


def _mirror_without_sums(c: Ctx) -> list[str]:
    (c.tmp / "mirror").mkdir()
    (c.tmp / "mirror" / "SHA256SUMS").write_text("# nothing listed\n")
    c.monkeypatch.setenv("FEDRS_SOURCE", str(c.tmp / "no-shared-data"))
    c.monkeypatch.setenv("FEDRS_MIRROR", (c.tmp / "mirror").as_uri())
    return ["data", "import", *root_args(c)]


CASES = [
    # --- sources that are not there or not archives
    Case("missing-path", lambda c: imp(c.tmp / "nope.zip", *root_args(c)),
         ["no such archive or folder", "check the path"], lambda c: c.tmp / "nope.zip"),
    Case("text-file-named-zip", lambda c: imp(c.factory.write("notes.zip", "hello"), *root_args(c)),
         ["not a readable zip archive", "download it again"], lambda c: c.factory.base / "notes.zip"),
    Case("not-an-archive", lambda c: imp(c.factory.write("notes.bin", "hello"), *root_args(c)),
         ["neither a zip/tar archive nor a folder"], lambda c: c.factory.base / "notes.bin"),
    Case("rar", lambda c: imp(c.factory.write("NWPU-RESISC45.rar", b"Rar!\x1a\x07\x00"), *root_args(c)),
         ["RAR archives are not supported", "unrar x"], lambda c: c.factory.base / "NWPU-RESISC45.rar"),
    Case("truncated-zip", _truncated_zip, ["not a readable zip archive"],
         lambda c: c.factory.base / "Tiny_Release.zip"),
    Case("corrupt-zip-member", _corrupt_member, ["the archive is damaged", "alpha_0.jpg"],
         lambda c: c.factory.base / "Tiny_Release.zip"),
    Case("truncated-tar", _truncated_tar, ["not a readable tar archive"],
         lambda c: c.factory.base / "Tiny_Release.tar.gz"),
    Case("empty-zip", _empty_zip, ["no known dataset layout"], lambda c: c.factory.base / "empty.zip"),
    Case("unsafe-member-paths", _unsafe_zip, ["no known dataset layout"],
         lambda c: c.factory.base / "evil.zip"),
    # --- folders that are no known dataset
    Case("empty-folder", lambda c: imp(c.factory.write("empty/.keep", "").parent, *root_args(c)),
         ["no known dataset layout", "--name NAME"], lambda c: c.factory.base / "empty"),
    Case("readme-only", lambda c: imp(c.factory.write("stuff/README.md", "hi").parent, *root_args(c)),
         ["no known dataset layout"], lambda c: c.factory.base / "stuff"),
    Case("own-classes-without-name", lambda c: imp(c.classes("pets", ["cats", "dogs"]), *root_args(c)),
         ["no known dataset layout", "sub-folders of images (cats, dogs)", "--name NAME"],
         lambda c: c.factory.base / "pets"),
    Case("eurosat-class-names-only",
         lambda c: imp(c.classes("My Scenes", SPECS["EuroSAT"].classes), *root_args(c)),
         ["EuroSAT's class folders but not its release", "--name NAME"],
         lambda c: c.factory.base / "My Scenes"),
    Case("unknown-caption-set", _unknown_captions, ["belong to no known caption set"],
         lambda c: c.factory.base / "mystery"),
    Case("looks-like-by-name", lambda c: imp(c.factory.write("Tiny_Release/a.jpg", c.factory.jpeg()).parent,
                                             *root_args(c)),
         ["looks like TinyScenes by its name", "Tiny_Release/Images/<class>/<image>"],
         lambda c: c.factory.base / "Tiny_Release"),
    # --- official layouts that are not the release
    Case("missing-class-folder", lambda c: imp(c.tiny(counts={"Alpha": 3, "BetaGamma": 3}), *root_args(c)),
         ["not the official TinyScenes layout", "missing class folders ['delta']", "--name NAME"],
         lambda c: c.factory.base / "release"),
    Case("count-mismatch", lambda c: imp(c.tiny(counts={"Alpha": 2, "BetaGamma": 3, "delta": 2}),
                                         *root_args(c)),
         ["per-class image counts differ", "Alpha 2 (official 3)"], lambda c: c.factory.base / "release"),
    Case("undecodable-image", _undecodable,
         ["1 image(s) of TinyScenes cannot be decoded", "Alpha/alpha_1.jpg", "--exclude-bad"],
         lambda c: c.factory.base / "release"),
    Case("sha256sums-mismatch", _sha256sums_mismatch, ["does not match its checksum in SHA256SUMS"],
         lambda c: c.factory.base / "box" / "Tiny_Release.zip"),
    Case("caption-count-mismatch", _caption_count,
         ["UCM-Captions caption files do not match the official release", "official 1680"],
         lambda c: c.factory.base / "a" / "UCM_Captions"),
    Case("same-dataset-twice", lambda c: imp(c.factory.zip(c.tiny(), "a.zip"), c.factory.base / "release",
                                             *root_args(c)),
         ["TinyScenes was found twice", "import only one of them"], lambda c: c.factory.base / "a.zip"),
    Case("import-from-inside-the-root", _inside_root, ["the source is inside the imported TinyScenes"],
         lambda c: c.root / "TinyScenes"),
    # --- another release, names
    Case("another-release", _other_release,
         ["already imported from another release", "--replace", "--name NAME", "--merge"],
         lambda c: c.root / "TinyScenes"),
    Case("merge-collision", _merge_collision,
         ["cannot merge into TinyScenes", "exist in both with different contents", "--name NAME"],
         lambda c: c.root / "TinyScenes"),
    Case("variant-name-taken", _variant_other_release, ["Tiny-v2 is already imported from another release"],
         lambda c: c.root / "Tiny-v2"),
    Case("merge-caption-set", _merge_captions, ["UCM-Captions is a caption set", "--replace"],
         lambda c: c.root / "UCM-Captions"),
    Case("name-with-slash", lambda c: imp(c.classes("pets", ["cats", "dogs"]), "--name", "a/b", *root_args(c)),
         ["'a/b' cannot name a dataset", "path separator"]),
    Case("name-of-registered-dataset",
         lambda c: imp(c.classes("pets", ["cats", "dogs"]), "--name", "EuroSAT", *root_args(c)),
         ["'EuroSAT' cannot name a dataset", "registered dataset EuroSAT"]),
    Case("name-starting-with-dot",
         lambda c: imp(c.classes("pets", ["cats", "dogs"]), "--name", ".pets", *root_args(c)),
         ["cannot name a dataset", "starts with a dot"]),
    Case("name-too-long", lambda c: imp(c.classes("pets", ["cats", "dogs"]), "--name", "x" * 70, *root_args(c)),
         ["cannot name a dataset", "longer than 64"]),
    Case("name-of-the-holdout-view",
         lambda c: imp(c.classes("pets", ["cats", "dogs"]), "--name", "aid holdout", *root_args(c)),
         ["cannot name a dataset", "AID-holdout"]),
    Case("custom-one-class", lambda c: imp(c.classes("one", ["only"]), "--name", "One", *root_args(c)),
         ["only one class folder with images", "at least two"], lambda c: c.factory.base / "one"),
    Case("custom-no-images", lambda c: imp(c.factory.write("docs/a/readme.txt", "x").parents[1], "--name",
                                           "Docs", *root_args(c)),
         ["no images in class sub-folders"], lambda c: c.factory.base / "docs"),
    Case("custom-case-clash", lambda c: imp(c.classes("mix", ["Forest", "forest"]), "--name", "Mix",
                                            *root_args(c)),
         ["differ only in case", "Forest / forest"], lambda c: c.factory.base / "mix"),
    Case("name-for-two-datasets", _two_datasets_one_name, ["--name Mine names one dataset", "one at a time"]),
    Case("name-without-source", lambda c: ["data", "import", "--name", "Mine", *root_args(c)],
         ["--name needs a source", "fedrs data import PATH --name"]),
    # --- the data root and the disk
    Case("root-is-a-file", _root_file, ["the data root is a file, not a folder", "FEDRS_DATA"],
         lambda c: c.root),
    Case("list-root-is-a-file", _list_root_file, ["the data root is a file, not a folder"],
         lambda c: c.root),
    Case("disk-full", _disk_full, ["no space left on the device while importing TinyScenes",
                                   "larger disk", "nothing was changed"],
         lambda c: c.root / ".fedrs-import-TinyScenes-"),
    Case("read-only-root", _read_only, ["Read-only file system while importing TinyScenes",
                                        "a data root you can write to"],
         lambda c: c.root / ".fedrs-import-TinyScenes-"),
    Case("quota-exceeded", _quota, ["no space left on the device while importing Quota"],
         lambda c: c.root / ".fedrs-import-Quota-"),
    # --- downloads
    Case("download-unknown-name", lambda c: ["data", "download", "CIFAR10", *root_args(c)],
         ["unknown dataset 'CIFAR10'", "known datasets are", "--name CIFAR10"]),
    Case("download-no-direct-url", lambda c: ["data", "download", "AID", *root_args(c)],
         ["AID has no direct download", "captain-whu.github.io/AID"]),
    Case("download-a-view", lambda c: ["data", "download", "AID-holdout", *root_args(c)],
         ["AID-holdout is a view of AID"]),
    Case("download-offline", _download_offline, ["cannot download EuroSAT", "name resolution",
                                                 "fedrs data import"],
         lambda c: "https://zenodo.org/records/7711810/files/EuroSAT_RGB.zip"),
    Case("download-missing-file", _download_missing_file, ["cannot download TinyScenes"],
         lambda c: (c.tmp / "gone.zip").as_uri()),
    Case("download-bad-sha256", _download_bad_sha, ["downloaded with sha256", "expected 0000"],
         lambda c: (c.factory.base / "Tiny_Release.zip").as_uri()),
    Case("download-not-the-official-file", _download_official_checksum,
         ["expected b4f5b234", "give that file's checksum with --sha256"],
         lambda c: (c.factory.base / "EuroSAT_RGB.zip").as_uri()),
    Case("download-holds-another-dataset", _download_wrong_dataset,
         ["holds TinyScenes, not UCMerced", "check the URL"]),
    # --- the study's datasets (fedrs data import without a source, as make data runs it)
    Case("study-data-offline", _study_offline,
         ["6 dataset(s) are not imported", "fedrs data import PATH", "FEDRS_SOURCE=PATH",
          "machine with internet access", "cannot be downloaded from the official releases",
          "FEDRS_MIRROR", "captain-whu.github.io/AID"],
         lambda c: c.tmp / "no-shared-data"),
    Case("study-data-no-download", _study_no_download, ["downloads are off", "fedrs data import PATH"],
         lambda c: c.tmp / "no-shared-data"),
    Case("study-data-mirror-offline", _mirror_offline,
         ["no network", "mirror.example.org", "fedrs data import PATH", "internet access"],
         lambda c: c.tmp / "no-shared-data"),
    Case("study-data-mirror-lists-nothing", _mirror_without_sums,
         ["SHA256SUMS lists no files", "FEDRS_MIRROR"], lambda c: (c.tmp / "mirror").as_uri()),
]


def _snapshot(root: Path):
    """Everything under the data root (hidden work folders included): path, size, mtime."""
    if not root.exists():
        return None
    if root.is_file():
        return root.read_bytes()
    return sorted((p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in root.rglob("*"))


@pytest.fixture
def ctx(tiny_spec, patch_spec, data_factory, tmp_path, monkeypatch) -> Ctx:
    monkeypatch.setenv("FEDRS_DOWNLOAD_TIMEOUT", "3")
    return Ctx(data_factory, tmp_path, tmp_path / "data", monkeypatch, patch_spec, dict(tiny_spec.counts))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, ctx: Ctx, cli_data_only, capsys):
    argv = case.setup(ctx)
    before = _snapshot(ctx.root)
    capsys.readouterr()
    rc = cli_data_only(argv)
    out, err = capsys.readouterr()
    assert rc == case.rc, (out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("fedrs: error: "), line
    for words in case.says:
        assert words in line, (words, line)
    if case.path is not None:
        assert str(case.path(ctx)) in line, line
        assert " (" in line and "): " in line, line  # <what> (<path>): <fix>
    assert _snapshot(ctx.root) == before  # nothing written, changed or left behind


def test_catalogue_covers_at_least_fifty_data_cases():
    assert len(CASES) >= 50 and len({c.id for c in CASES}) == len(CASES)


def test_broken_pipe_ends_quietly(tmp_path):
    """`fedrs data list | head`: the reader is gone before the first write."""
    root = tmp_path / "data"
    root.mkdir()
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = "import sys, fedrs.cli as c; c.COMMAND_MODULES = ['fedrs.data.commands']; sys.exit(c.main(sys.argv[1:]))"
    try:
        proc = subprocess.run([sys.executable, "-c", code, "data", "list", "--root", str(root)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == ""
