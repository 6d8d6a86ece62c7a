"""Stop every process of a tree fedrs started, even when the fedrs process that started it is
killed: a local Flower deployment (:mod:`fedrs.federated.flower.deploy`) and a sweep's worker
processes and Jupyter kernels (:mod:`fedrs.study.sweep`).

Such a tree is one fedrs does not fully control: a Flower SuperLink starts its SuperExec in a
*new session* of its own, and a Jupyter kernel is started in a new session by ``jupyter_client``,
so signals to fedrs's children alone, or to one process group, miss part of it. So every process
of a tree is *marked*:

* its environment carries ``FEDRS_PROCESS_TREE=<token>`` (a random token per tree), which child
  processes inherit (Flower and Jupyter pass the environment on; they never replace it);
* the processes fedrs starts itself may join one process group, the watchdog's (below).

:func:`sweep` stops everything marked: SIGTERM, then SIGKILL for what is still running after a
grace period, again until nothing marked is left (a dying SuperNode may still start a process).

The **watchdog** is a small process (this file run as a script, standard library only, so it
starts in milliseconds and needs no torch) started before anything else. It waits until either
its standard input reaches end-of-file (the tree was closed, or its parent died: the kernel
closes the pipe in both cases, SIGKILL included) or it is re-parented (its parent died); then it
sweeps and removes the temporary folders it was given (``FLWR_HOME``, logs, certificates) and
exits. It ignores SIGINT, SIGTERM and SIGHUP so that a Ctrl-C or a terminal hang-up aimed at fedrs
cannot stop it before it has cleaned up.

Why not ``prctl(PR_SET_PDEATHSIG)`` on the children: it reaches only fedrs's direct children, not
a process started in a new session further down, it fires when the *thread* that started the
child exits, and it needs ``preexec_fn``, which is unsafe in a process with threads.

Linux: processes are found through ``/proc``; elsewhere only the process group is signalled.

:func:`process_alive` (a pid that is running, and the same process as when it was recorded) is
what a sweep's run lock uses to tell a live owner from a stale lock.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

#: the environment variable that marks the processes of one tree (a deployment, a sweep)
MARKER_VAR = "FEDRS_PROCESS_TREE"
PROC = Path("/proc")


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie has exited; only its parent's
    ``wait`` is missing)."""
    try:
        state = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        if PROC.is_dir():
            return False
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def _group_of(pid: int) -> int | None:
    try:
        return int((PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def _environ_has(pid: int, entry: bytes) -> bool:
    try:
        return entry in (PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:  # gone, or another user's process
        return False


def marked(token: str, group: int | None = None) -> list[int]:
    """Running processes (other than this one) whose environment carries the tree's marker
    or that belong to process group ``group``."""
    if not PROC.is_dir():
        return []
    entry, me = f"{MARKER_VAR}={token}".encode(), os.getpid()
    found = []
    for item in PROC.iterdir():
        if not item.name.isdigit() or int(item.name) == me:
            continue
        pid = int(item.name)
        if (_environ_has(pid, entry) or (group is not None and _group_of(pid) == group)) and _running(pid):
            found.append(pid)
    return found


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, ``/proc/<pid>/stat`` field 22), or None: with
    the pid it identifies one process, as a pid alone is reused once the process is gone."""
    try:
        return int((PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def process_alive(pid: int, start_time: int | None = None) -> bool:
    """Whether ``pid`` is running and, given ``start_time`` (:func:`process_start_time` when it was
    recorded), still the same process."""
    if not _running(pid):
        return False
    return start_time is None or process_start_time(pid) in (None, start_time)


def _signal(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def sweep(token: str, group: int | None = None, grace: float = 10.0, rounds: int = 5) -> list[int]:
    """Stop every process of the tree ``token`` (and of process group ``group``): SIGTERM,
    SIGKILL after ``grace`` seconds, repeated until none is left (at most ``rounds`` times).
    Returns every pid that was signalled."""
    stopped: list[int] = []
    if not PROC.is_dir():  # no /proc: the process group is all we can reach
        if group is not None:
            try:
                os.killpg(group, signal.SIGTERM)
            except OSError:
                pass
        return stopped
    for _ in range(rounds):
        pids = marked(token, group)
        if not pids:
            break
        stopped += [p for p in pids if p not in stopped]
        _signal(pids, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_running(p) for p in pids):
            time.sleep(0.1)
        _signal([p for p in pids if _running(p)], signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(_running(p) for p in pids):
            time.sleep(0.05)
    return stopped


def watch(parent: int, token: str, remove: Sequence[str | Path] = (), grace: float = 10.0) -> None:
    """The watchdog's loop: wait for end-of-file on stdin or the death of ``parent``, then sweep
    the tree (its process group is this process's) and remove the folders ``remove``."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    stdin = sys.stdin.fileno()
    while os.getppid() == parent:
        ready, _, _ = select.select([stdin], [], [], 0.5)
        if ready and not os.read(stdin, 4096):
            break
    sweep(token, os.getpgrp(), grace)
    for folder in remove:
        shutil.rmtree(folder, ignore_errors=True)


class Watchdog:
    """Start the watchdog for the tree ``token``; :attr:`group` is the process group the
    processes fedrs starts may join (``subprocess.Popen(..., process_group=watchdog.group)``).

    :meth:`close` is the normal end: it closes the pipe and waits until the watchdog has stopped
    every marked process and removed ``remove``; if the watchdog does not answer, the same sweep
    runs here.
    """

    def __init__(self, token: str, remove: Sequence[str | Path] = (), grace: float = 10.0):
        self.token, self.remove, self.grace = token, [str(p) for p in remove], grace
        cmd = [sys.executable, "-I", str(Path(__file__).resolve()), "--parent", str(os.getpid()),
               "--token", token, "--grace", str(grace), *(a for f in self.remove for a in ("--remove", f))]
        env = {k: v for k, v in os.environ.items() if k != MARKER_VAR}
        self.process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env,
                                        process_group=0)
        self.group = self.process.pid

    def close(self) -> None:
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=self.grace * 5 + 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            sweep(self.token, self.group, self.grace)
            for folder in self.remove:
                shutil.rmtree(folder, ignore_errors=True)


__all__ = ["MARKER_VAR", "marked", "process_alive", "process_start_time", "sweep", "watch", "Watchdog"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fedrs process-tree watchdog (started by fedrs)")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--remove", action="append", default=[])
    args = parser.parse_args(argv)
    watch(args.parent, args.token, args.remove, args.grace)
    return 0


if __name__ == "__main__":
    sys.exit(main())

