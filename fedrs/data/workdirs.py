"""Hidden work folders in the data root, and the removal of those a killed process left behind.

An import builds each dataset in ``<root>/.fedrs-import-<name>-<random>/`` and renames it into
place when complete; a download fetches into ``.fedrs-download-...``; a replaced import is moved
to ``.fedrs-old-...`` before it is deleted. Each folder records its owner (host, process id and
the process's start time) in ``.fedrs-owner.json`` as soon as it exists, so the next import can
tell a folder whose process is gone (removed) from one that another live import is writing (left
alone). A folder without an owner record (written by an older fedrs, or killed within the instant
between creating the folder and writing the record) is removed once it is an hour old.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

WORKDIR_PREFIX = ".fedrs-"
KINDS = ("import", "download", "old")
OWNER_FILE = ".fedrs-owner.json"
#: age after which a work folder without an owner record counts as abandoned
UNOWNED_STALE_S = 3600.0


def _process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ")"
    fields = stat.rpartition(")")[2].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def owner_record() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": _process_start(pid)}


def _alive(owner: dict[str, Any]) -> bool:
    """Whether the process that wrote ``owner`` (on this host) still runs."""
    try:
        pid = int(owner["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    started = owner.get("started")
    now = _process_start(pid)
    return started is None or now is None or now == started  # else the pid was reused


def new_workdir(root: Path, kind: str, name: str) -> Path:
    """A fresh hidden work folder ``<root>/.fedrs-<kind>-<name>-<random>`` with its owner record."""
    assert kind in KINDS
    path = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{kind}-{name}-", dir=root))
    claim(path)
    return path


def claim(path: Path) -> None:
    """Record this process as the owner of work folder ``path``."""
    (path / OWNER_FILE).write_text(json.dumps(owner_record()), encoding="utf-8")


def release(path: Path) -> None:
    """Drop the owner record (before the folder becomes a dataset)."""
    (path / OWNER_FILE).unlink(missing_ok=True)


def _is_workdir(path: Path) -> bool:
    return path.is_dir() and any(path.name.startswith(f"{WORKDIR_PREFIX}{k}-") for k in KINDS)


def _stale(path: Path) -> tuple[bool, str]:
    """Whether work folder ``path`` was abandoned, and who owns it when it was not."""
    try:
        owner = json.loads((path / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            return False, ""
        return age > UNOWNED_STALE_S, "no owner record, recent"
    if not isinstance(owner, dict):
        return True, ""
    if owner.get("host") != socket.gethostname():
        return False, f"host {owner.get('host')}, pid {owner.get('pid')}"
    if _alive(owner):
        return False, f"pid {owner.get('pid')}, still running"
    return True, ""


def _size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def clean_stale_workdirs(root: Path) -> list[Path]:
    """Remove the work folders in ``root`` that a killed import or download left behind; the
    removed folders. A ``.fedrs-old-<name>-...`` folder whose dataset folder is missing (a kill
    between the two renames of an install) is moved back into place instead."""
    removed = []
    try:
        children = sorted(root.iterdir())
    except OSError:
        return removed
    for path in children:
        if not _is_workdir(path):
            continue
        stale, who = _stale(path)
        if not stale:
            if who:
                logger.debug("left %s alone (%s)", path, who)
            continue
        if path.name.startswith(f"{WORKDIR_PREFIX}old-"):
            if _restore_old(root, path):
                continue
        size = _size(path)
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
            logger.info(f"removed {path.name}: left by an interrupted import ({size / 1e6:.1f} MB)")
    return removed


def _restore_old(root: Path, old: Path) -> bool:
    """Move a replaced import back when its dataset folder is missing; whether it did."""
    from .registry import MANIFEST_NAME

    try:
        manifest = json.loads((old / MANIFEST_NAME).read_text(encoding="utf-8"))
        name = manifest["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    dest = root / name
    if dest.exists() or not isinstance(name, str) or "/" in name:
        return False
    release(old)
    os.replace(old, dest)
    logger.info(f"restored {dest}: an interrupted import had moved it aside")
    return True


__all__ = ["new_workdir", "claim", "release", "clean_stale_workdirs", "owner_record", "OWNER_FILE",
           "WORKDIR_PREFIX"]
