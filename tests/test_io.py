"""fedrs.io: strict JSON (a NaN is an error naming its place) and files readable as the umask allows."""

from __future__ import annotations

import json
import math
import os
import stat
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from fedrs.errors import FedrsError
from fedrs.io import (
    NonFiniteJSONError,
    atomic_path,
    json_text,
    save_torch_atomic,
    write_json_atomic,
    write_text_atomic,
)


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _temp_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


SAMPLE = {
    "method": "fedrsclip", "rounds": 2, "global_accuracy": 0.1234567890123,
    "per_round": [{"round": 0, "acc": 0.25, "loss": 1e-12}, {"round": 1, "acc": 1.0, "loss": 3.5e20}],
    "float32": np.float32(0.1), "path": Path("results/x"), "nested": {"empty": [], "none": None},
    "unicode": "Zoë's scenes", "big": 10**20, "negative": -0.0,
}


def test_json_bytes_are_unchanged_for_finite_data(tmp_path):
    # what fedrs wrote before strict JSON: the committed results must regenerate byte for byte
    before = json.dumps(SAMPLE, indent=2, sort_keys=False, default=str) + "\n"
    path = write_json_atomic(tmp_path / "metrics.json", SAMPLE)
    assert path.read_text(encoding="utf-8") == before
    assert json_text(SAMPLE) + "\n" == before


@pytest.mark.parametrize("obj, place, shown", [
    ({"global_accuracy": math.nan}, "global_accuracy", "nan"),
    ({"per_round": [{"acc": 0.5}, {"acc": 0.1, "loss": math.inf}]}, "per_round[1].loss", "inf"),
    ({"clients": {"3": {"update_norm": -math.inf}}}, "clients.3.update_norm", "-inf"),
    ({"acc": np.float64("nan")}, "acc", "nan"),
    ({"acc": np.float32("inf")}, "acc", "inf"),      # not a float subclass: written via str before
    ([1.0, [2.0, math.nan]], "[1][1]", "nan"),
    (math.nan, "<top level>", "nan"),
])
def test_non_finite_numbers_are_refused_naming_their_place(tmp_path, obj, place, shown):
    path = tmp_path / "metrics.json"
    with pytest.raises(NonFiniteJSONError) as err:
        write_json_atomic(path, obj)
    message = str(err.value)
    assert message.startswith(f"{path}: {place} is ") and shown in message
    assert isinstance(err.value, FedrsError)  # the CLI prints it as one line
    assert not path.exists() and _temp_leftovers(tmp_path) == []


def test_refused_json_keeps_the_previous_file(tmp_path):
    path = write_json_atomic(tmp_path / "metrics.json", {"acc": 0.5})
    with pytest.raises(NonFiniteJSONError):
        write_json_atomic(path, {"acc": math.nan})
    assert json.loads(path.read_text()) == {"acc": 0.5}
    assert _temp_leftovers(tmp_path) == []


def test_other_json_errors_are_not_reworded():
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        json_text(loop)


WRITERS = {
    "text": lambda p: write_text_atomic(p, "name: run\n"),
    "json": lambda p: write_json_atomic(p, {"acc": 0.5}),
    "torch": lambda p: save_torch_atomic(p, {"w": torch.zeros(2)}),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_files_get_the_users_umask_not_0600(tmp_path, writer, mask):
    with umask(mask):
        path = WRITERS[writer](tmp_path / "out" / f"file.{writer}")
        assert _mode(path) == 0o666 & ~mask
        assert _mode(path.parent) == 0o777 & ~mask
        # replacing a private file (as written before this fix) also gives the umask's mode
        path.chmod(0o600)
        WRITERS[writer](path)
        assert _mode(path) == 0o666 & ~mask
    assert _temp_leftovers(path.parent) == []


def test_atomic_path_failure_leaves_nothing(tmp_path):
    target = tmp_path / "checkpoint.pt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert not target.exists() and _temp_leftovers(tmp_path) == []
