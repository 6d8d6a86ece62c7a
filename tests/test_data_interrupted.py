"""A killed import leaves nothing behind for long (issue 12): its hidden work folder records its
owner, and the next import removes the folders whose process is gone, not those another live
import is writing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedrs.data import import_sources, load_scene_dataset, workdirs
from fedrs.data.registry import MANIFEST_NAME

REPO = Path(__file__).resolve().parents[1]

# `fedrs data import` (only the data commands, to start fast) with every image write slowed
# down, so that the test can kill it in the middle of writing images
SLOW_CLI = """
import sys, time
import fedrs.cli as cli
import fedrs.data.importing as importing
real = importing._write_file
def slow(path, data):
    real(path, data)
    time.sleep(float(sys.argv[1]))
importing._write_file = slow
cli.COMMAND_MODULES = ["fedrs.data.commands"]
sys.exit(cli.main(sys.argv[2:]))
"""


def _fedrs(args: list[str], delay: float = 0.0, **kw) -> subprocess.Popen:
    env = {**os.environ, "FEDRS_IMPORT_WORKERS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", SLOW_CLI, str(delay), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _hidden(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith("."))


@pytest.fixture
def scenes(data_factory) -> Path:
    """A folder of 3 class sub-folders x 20 images (imported with --name: no registry patch
    needed in the subprocess)."""
    for cls in ("fields", "lakes", "towns"):
        for i in range(20):
            data_factory.write(f"scenes/{cls}/{i:02d}.jpg", data_factory.jpeg())
    return data_factory.base / "scenes"


def test_sigkill_mid_import_then_reimport_leaves_nothing_and_imports_right(scenes, tmp_path):
    root = tmp_path / "data"
    args = ["data", "import", str(scenes), "--name", "Scenes", "--root", str(root)]
    proc = _fedrs(args, delay=0.05)
    deadline = time.monotonic() + 120
    partial: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:  # until images are being written
        partial = [p for p in root.glob(".fedrs-import-*/**/*.jpg")] if root.is_dir() else []
        if len(partial) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the import ended before it could be killed: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    proc.stderr.close()
    (left,) = _hidden(root)  # what a kill leaves: a work folder of partial images, its owner
    assert left.name.startswith(".fedrs-import-Scenes-") and len(list(left.rglob("*.jpg"))) >= 3
    owner = json.loads((left / workdirs.OWNER_FILE).read_text())
    assert owner["pid"] == proc.pid and owner["host"] == socket.gethostname()
    assert not (root / "Scenes").exists()

    again = _fedrs(args)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"removed {left.name}: left by an interrupted import" in out
    assert "Scenes: imported 3 classes, 60 images" in out
    assert _hidden(root) == [] and sorted(p.name for p in root.iterdir()) == ["Scenes"]
    ds = load_scene_dataset("Scenes", root=root)
    assert ds.class_counts() == [20, 20, 20] and all(p.is_file() for p in ds.paths)
    assert "Traceback" not in err


def _workdir(root: Path, name: str, owner: dict | None, age_s: float = 0.0) -> Path:
    path = root / name
    (path / "images").mkdir(parents=True)
    (path / "images" / "partial.jpg").write_bytes(b"\xff\xd8partial")
    if owner is not None:
        (path / workdirs.OWNER_FILE).write_text(json.dumps(owner))
    if age_s:
        old = time.time() - age_s
        os.utime(path, (old, old))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_abandoned_work_folders_are_removed(tiny_spec, data_factory, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    me = workdirs.owner_record()
    host = socket.gethostname()
    live = _workdir(root, ".fedrs-import-TinyScenes-live", me)
    dead = _workdir(root, ".fedrs-import-TinyScenes-dead", {"host": host, "pid": _dead_pid()})
    reused = _workdir(root, ".fedrs-download-TinyScenes-reused",  # this pid, another process
                      {**me, "started": (me["started"] or 0) - 1})
    elsewhere = _workdir(root, ".fedrs-import-TinyScenes-elsewhere", {"host": host + "-other", "pid": 1})
    legacy_old = _workdir(root, ".fedrs-import-TinyScenes-legacy", None, age_s=2 * 3600)
    legacy_new = _workdir(root, ".fedrs-import-TinyScenes-recent", None)
    unrelated = root / ".my-notes"
    unrelated.mkdir()

    src = data_factory.scene_tree("release", "Tiny_Release/Images", tiny_spec.counts)
    (r,) = import_sources([src], root=root, progress=False)
    assert r.status == "imported"
    assert {p.name for p in _hidden(root)} == {live.name, elsewhere.name, legacy_new.name, unrelated.name}
    assert not dead.exists() and not legacy_old.exists()
    if me["started"] is not None:  # the pid's start time tells a reused pid apart (Linux)
        assert not reused.exists()


def test_an_install_killed_between_its_renames_is_put_back(tiny_spec, data_factory, tmp_path):
    root = tmp_path / "data"
    src = data_factory.scene_tree("release", "Tiny_Release/Images", tiny_spec.counts)
    import_sources([src], root=root, progress=False)
    # the state after `os.replace(dest, old)` and a kill: the dataset moved aside, owner gone
    aside = root / ".fedrs-old-TinyScenes-1234abcd"
    os.replace(root / "TinyScenes", aside)
    (aside / workdirs.OWNER_FILE).write_text(json.dumps({"host": socket.gethostname(),
                                                         "pid": _dead_pid()}))
    (again,) = import_sources([src], root=root, progress=False)
    assert again.status == "skipped"  # it was put back, and is the same import
    assert _hidden(root) == [] and (root / "TinyScenes" / MANIFEST_NAME).is_file()
    assert not (root / "TinyScenes" / workdirs.OWNER_FILE).exists()
    assert len(load_scene_dataset("TinyScenes", root=root)) == 8
