"""What the Flower tests share: a tiny synthetic study the Flower processes can load, and a look
at the machine's processes that does not rely on fedrs's own bookkeeping.

Tiny random-init backbone, 30 synthetic 32 px images (3 classes), 2 clients. The images reach the
Flower processes through the app's ``datasets`` hook, a module written next to them and put on
their PYTHONPATH.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

CLIENTS = 2
SYNTH = "fedrs_flower_synth:load"
HOOK = '''"""Synthetic 3-class scenes for the Flower tests (the Flower app's datasets hook)."""
from pathlib import Path

FOLDER = Path({folder!r})
CLASSES = ["airplane", "beach", "forest"]


def load(data_cfg):
    from fedrs.data.scenes import SceneDataset

    paths = sorted(FOLDER.glob("*.png"))
    return [SceneDataset(name=data_cfg.dataset, classnames=CLASSES, prompt_names=CLASSES, paths=paths,
                         labels=[int(p.name[0]) for p in paths])]
'''


def make_study(base: Path, rounds: int = 2) -> SimpleNamespace:
    """Images, the hook module and params.yaml in ``base``; ``env``: what every Flower process
    needs besides fedrs's own settings (cache, the hook on PYTHONPATH, fast SuperExec polling)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (base / "images").mkdir(parents=True, exist_ok=True)
    for c in range(3):
        for i in range(10):
            arr = rng.integers(0, 90, (32, 32, 3)) + np.eye(3, dtype=int)[c] * 160
            Image.fromarray(arr.astype("uint8")).save(base / "images" / f"{c}_{i:02d}.png")
    (base / "fedrs_flower_synth.py").write_text(HOOK.format(folder=str(base / "images")))
    config = {
        "backbone": {"model": "fedrs-rsclip-tiny", "pretrained": "random"},
        "data": {"dataset": "Synth", "num_clients": CLIENTS, "scheme": "iid", "seed": 0},
        "method": {"name": "fedrsclip"},
        "train": {"rounds": rounds, "batch_size": 8, "lr": 0.01, "seed": 0},
    }
    params, every2 = base / "params.yaml", base / "params-eval-every-2.yaml"
    params.write_text(yaml.safe_dump(config))
    every2.write_text(yaml.safe_dump({**config, "eval": {"every": 2}}))  # one message wave fewer
    return SimpleNamespace(base=base, params=params, every2=every2, config=config,
                           env={"FEDRS_CACHE": str(base / "cache"), "PYTHONPATH": str(base),
                                "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2"})


def processes_carrying(text: str) -> list[tuple[int, str]]:
    """(pid, command line) of every running process (not a zombie, not this one) whose environment or command
    line contains ``text``, read from /proc directly."""
    found, needle = [], text.encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except (OSError, IndexError):
            continue
        if state != "Z" and (needle in cmdline or needle in environ):
            found.append((int(proc.name), cmdline.replace(b"\0", b" ").decode(errors="replace")))
    return found


@pytest.fixture(autouse=True)
def serverapp_identity(monkeypatch):
    """Flower sets the running task's identity in a ServerApp process; messages are stamped with it."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, attr, value)
