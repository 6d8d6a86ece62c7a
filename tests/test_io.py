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
    read_json_object,
    read_yaml_mapping,
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


class _ShelfError(FedrsError):
    """Stands for a reader's own error type (ReportError, PETLError, ...)."""


@pytest.mark.parametrize("text, problem", [
    ('{"accuracy": NaN}', "not valid JSON (NaN is not a JSON number)"),
    ('{"accuracy": Infinity}', "not valid JSON (Infinity is not a JSON number)"),
    ('{"accuracy": 0.5', "not valid JSON (Expecting"),
    ("[1, 2]", "expected a JSON object"),
])
def test_read_json_object_refuses_what_json_text_never_writes(tmp_path, text, problem):
    path = tmp_path / "metrics.json"
    path.write_text(text)
    with pytest.raises(_ShelfError) as info:
        read_json_object(path, _ShelfError, fix="delete it")
    message = str(info.value)
    assert message.startswith(f"{path}: {problem}") and message.endswith("; delete it")


def test_read_json_object_round_trips_what_write_json_atomic_wrote(tmp_path):
    data = {"rounds": [{"acc": 0.25}], "name": "run"}
    write_json_atomic(tmp_path / "m.json", data)
    assert read_json_object(tmp_path / "m.json") == data
    with pytest.raises(FedrsError, match="missing.json: not valid JSON .*re-run that run or delete its folder"):
        read_json_object(tmp_path / "missing.json")


def test_read_yaml_mapping(tmp_path):
    good, empty, broken = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    good.write_text("train: {rounds: 40}\n")
    empty.write_text("")
    broken.write_text("train: [rounds\n")
    assert read_yaml_mapping(good) == {"train": {"rounds": 40}}
    assert read_yaml_mapping(empty) == {}
    with pytest.raises(_ShelfError, match=r"c.yaml: not readable YAML \(.*\); fix it"):
        read_yaml_mapping(broken, _ShelfError, fix="fix it")
    with pytest.raises(_ShelfError, match="nothing.yaml: not readable YAML"):
        read_yaml_mapping(tmp_path / "nothing.yaml", _ShelfError)
