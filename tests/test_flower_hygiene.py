"""``fedrs flower local`` leaves nothing behind: no SuperLink, SuperNode, SuperExec, ServerApp or
ClientApp process and no temporary ``FLWR_HOME``, whether it is killed with SIGKILL or SIGTERM in
the middle of a run or the run fails.

First the watchdog alone (no Flower, a second): a process that started it and a marked process
tree, one of them in a new session and deaf to SIGTERM, is killed with SIGKILL. Then each
deployment case runs the real command in a subprocess whose ``TMPDIR`` is a folder of its own: every
process of the deployment inherits that variable, and the temporary ``FLWR_HOME`` is made inside
it, so survivors and leftovers are found by looking at the machine (``/proc``), not at fedrs's
bookkeeping.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

if not Path("/proc/self/environ").is_file():
    pytest.skip("needs Linux /proc to look for surviving processes", allow_module_level=True)

from flower_study import SYNTH, make_study, processes_carrying  # noqa: E402

from fedrs.federated.flower import reaper  # noqa: E402
from fedrs.federated.flower.reaper import MARKER_VAR  # noqa: E402

needs_flower = pytest.mark.skipif(importlib.util.find_spec("flwr") is None,
                                  reason="flwr is not installed (pip install 'fedrs[flower]')")
BIG_TREE = ("flwr-serverapp", "flwr-clientapp")  # both alive: the whole tree is up, training under way
SLEEPER = "import time; time.sleep(600)"
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
#: starts the watchdog, then a marked tree like a deployment's; killed by the test
OWNER = f"""
import importlib.util, os, subprocess, sys, time

# the reaper by its file (standard library only), so that this process starts without torch
spec = importlib.util.spec_from_file_location("reaper", {str(reaper.__file__)!r})
reaper = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reaper)
MARKER_VAR, Watchdog = reaper.MARKER_VAR, reaper.Watchdog
token, folder = sys.argv[1], sys.argv[2]
dog = Watchdog(token, [folder], grace=1.0)
env = {{**os.environ, MARKER_VAR: token}}
subprocess.Popen([sys.executable, "-c", {SLEEPER!r}], env=env, process_group=dog.group)
# like the SuperLink, which starts its SuperExec in a new session (outside the group)
launcher = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {STUBBORN!r}], " \\
           "start_new_session=True); time.sleep(600)"
subprocess.Popen([sys.executable, "-c", launcher], env=env, process_group=dog.group)
print("started", flush=True)
time.sleep(600)
"""


def test_watchdog_stops_a_marked_tree_and_removes_the_folder_when_its_owner_is_killed(tmp_path):
    token, folder = f"hygiene-{os.getpid()}-{time.monotonic_ns()}", tmp_path / "flwr-home"
    folder.mkdir()
    owner = subprocess.Popen([sys.executable, "-c", OWNER, token, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "started"
        assert wait_for(lambda: len(processes_carrying(f"{MARKER_VAR}={token}")) == 3, timeout=30), \
            processes_carrying(token)  # sleeper, launcher, stubborn grandchild (new session); not the watchdog
        owner.kill()
        owner.wait()
    finally:
        if owner.poll() is None:
            owner.kill()
    assert wait_for(lambda: not processes_carrying(token) and not folder.exists(), timeout=30)
    assert not processes_carrying(token) and not folder.exists()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("flower-hygiene"))


def start_local(study, tmp_path: Path, datasets: str = SYNTH) -> tuple[subprocess.Popen, Path, Path]:
    """``fedrs flower local`` on the study in a subprocess with ``TMPDIR=tmp_path/tmp``."""
    tmp, out = tmp_path / "tmp", tmp_path / "run"
    tmp.mkdir()
    env = {**os.environ, **study.env, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "fedrs.cli", "flower", "local", str(study.params), "--out", str(out),
           "--datasets", datasets]
    with open(tmp_path / "fedrs.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    return proc, tmp, out


def wait_for(condition, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def assert_nothing_left(tmp: Path, log: Path) -> None:
    """Within a minute: no process carries ``tmp`` and no ``fedrs-flower-*`` folder is left in it."""
    wait_for(lambda: not processes_carrying(str(tmp)) and not list(tmp.glob("fedrs-flower-*")), timeout=60)
    survivors = processes_carrying(str(tmp))
    assert not survivors, "survivors:\n" + "\n".join(f"{pid} {cmd[:160]}" for pid, cmd in survivors) + \
        f"\n--- fedrs log\n{log.read_text()[-3000:]}"
    assert not list(tmp.glob("fedrs-flower-*")), f"temporary FLWR_HOME left behind: {list(tmp.iterdir())}"


@needs_flower
@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 128 + signal.SIGTERM)],
                         ids=["SIGKILL", "SIGTERM"])
def test_killed_mid_run_leaves_no_process_and_no_flwr_home(study, tmp_path, sig, code):
    proc, tmp, out = start_local(study, tmp_path)
    try:
        def under_way() -> bool:
            running = " ".join(cmd for _, cmd in processes_carrying(str(tmp)))
            return proc.poll() is not None or all(name in running for name in BIG_TREE)

        assert wait_for(under_way, timeout=300), "the run did not get under way in 300 s"
        assert proc.poll() is None, f"fedrs flower local ended early:\n{(tmp_path / 'fedrs.log').read_text()[-3000:]}"
        tree = processes_carrying(str(tmp))
        homes = list(tmp.glob("fedrs-flower-*"))
        # watchdog, SuperLink + SuperExec, 2 x (SuperNode + SuperExec), apps
        assert len(homes) == 1 and len(tree) >= 7, tree
        proc.send_signal(sig)
        assert proc.wait(timeout=120) == code
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_nothing_left(tmp, tmp_path / "fedrs.log")
    assert not (out / "metrics.json").exists()


@needs_flower
def test_failed_run_leaves_no_process_and_no_flwr_home_but_keeps_its_logs(study, tmp_path):
    """The ServerApp cannot load the run's datasets: the command fails with one line naming the
    logs, which it copied into the run folder before removing its FLWR_HOME."""
    proc, tmp, out = start_local(study, tmp_path, datasets="fedrs_no_such_module:load")
    try:
        assert proc.wait(timeout=300) == 2
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "fedrs.log").read_text()
    assert f"fedrs: error: the Flower run did not finish {out}" in log and str(out / "flower-logs") in log
    assert (out / "flower-logs" / "superlink.log").is_file() and (out / "flower-logs" / "supernode1.log").is_file()
    assert_nothing_left(tmp, tmp_path / "fedrs.log")
