"""SIGKILL at the worst moment (issue 12): `fedrs run` killed mid-run resumes to exactly the metrics
of an uninterrupted run, and `fedrs sweep` killed mid-sweep leaves no worker or Jupyter kernel
running and never executes a run twice, neither on the re-run nor beside a second sweep.

Every command runs in a subprocess of its own, as a user would start it, and is killed with
SIGKILL (no handler runs); survivors are found by looking at the machine (``/proc``), not at
fedrs's bookkeeping. Small on purpose: the tiny random-init backbone over a 3-class folder of
32 px images imported as a custom dataset, and a stand-in run notebook for the sweeps.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml

if not Path("/proc/self/environ").is_file():
    pytest.skip("needs Linux /proc to look for surviving processes", allow_module_level=True)

from flower_study import processes_carrying  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FINAL = ("personalised_accuracy", "personalised_accuracy_unweighted", "global_accuracy", "final_train_loss",
         "rounds", "final_round")


def wait_for(condition, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def hidden_leftovers(folder: Path) -> list[str]:
    """Temporary files of interrupted atomic writes (``.<name>.<hex>.tmp``) anywhere below ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*.tmp"))


# --- fedrs run ---------------------------------------------------------------------------------------

#: `fedrs run`, each round slowed down by 0.4 s (sleeping, not computing: the numbers are those of
#: a normal run) so that the test can kill it between two rounds of a run that takes seconds
SLOW_RUN = """
import sys, time
from fedrs.federated import engine
real = engine.FederatedEngine.run_round
def slow(self, r):
    time.sleep(0.4)
    return real(self, r)
engine.FederatedEngine.run_round = slow
from fedrs.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def run_env(tmp_path_factory) -> tuple[dict, Path]:
    """An environment whose data root holds a 3-class custom dataset "KillScenes", and its YAML."""
    from PIL import Image

    from fedrs.cli import main

    base = tmp_path_factory.mktemp("kill-run")
    src = base / "My Scenes"
    rng = np.random.default_rng(0)
    for c, cls in enumerate(("field", "lake", "town")):
        (src / cls).mkdir(parents=True)
        for i in range(8):
            arr = rng.integers(0, 90, (32, 32, 3)) + np.eye(3, dtype=int)[c] * 160
            Image.fromarray(arr.astype("uint8")).save(src / cls / f"{i}.png")
    env = {**os.environ, "FEDRS_DATA": str(base / "data"), "FEDRS_CACHE": str(base / "cache"),
           "FEDRS_MODELS": str(base / "models"), "OMP_NUM_THREADS": "1"}
    assert main(["data", "import", str(src), "--name", "KillScenes", "--root", str(base / "data")]) == 0
    params = base / "kill.yaml"
    params.write_text(yaml.safe_dump({
        "backbone": {"model": "fedrs-rsclip-tiny", "pretrained": "random"},
        "data": {"dataset": "KillScenes", "num_clients": 3, "scheme": "iid", "seed": 0},
        "method": {"name": "fedrsclip"},
        "train": {"rounds": 6, "batch_size": 8, "lr": 0.01, "seed": 0},
    }))
    return env, params


def rounds_rows(folder: Path) -> list[dict]:
    with open(folder / "rounds.csv") as fh:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(fh)]


def test_run_killed_mid_run_resumes_to_the_uninterrupted_metrics(run_env, tmp_path):
    env, params = run_env
    fedrs = [sys.executable, "-m", "fedrs.cli"]
    reference = tmp_path / "reference"
    done = subprocess.run([*fedrs, "run", str(params), "--out", str(reference), "--no-progress"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, "run", str(params), "--out", str(out), "--no-progress"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # two rounds trained and checkpointed, four to go
        assert wait_for(lambda: (out / "rounds.csv").is_file() and len(rounds_rows(out)) >= 3, timeout=300), \
            proc.stderr.read() if proc.poll() is not None else "no round finished"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists() and (out / "checkpoint.pt").is_file()
    killed_at = len(rounds_rows(out)) - 1
    assert 2 <= killed_at < 6

    refused = subprocess.run([*fedrs, "run", str(params), "--out", str(out)], env=env, capture_output=True,
                             text=True, timeout=600)
    assert refused.returncode == 2 and "interrupted run: pass --resume" in refused.stderr
    resumed = subprocess.run([*fedrs, "run", str(params), "--out", str(out), "--resume", "--no-progress"], env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (out, reference))
    assert {k: got[k] for k in FINAL} == {k: want[k] for k in FINAL}
    assert rounds_rows(out) == rounds_rows(reference)
    assert hidden_leftovers(out) == []
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())


# --- fedrs sweep ---------------------------------------------------------------------------------

#: a stand-in for 02_federated_run: records its kernel's pid and parent (the worker), counts its
#: executions, and holds while the file named by $FEDRS_TEST_HOLD exists
HOLDING_CELLS = [
    ("params_file: str = ''\nout_dir: str = ''\nresume: bool = False\nprogress: bool = True", ["parameters"]),
    ("import json, os, pathlib, time, yaml\n"
     "out = pathlib.Path(out_dir)\n"
     "with open(out / 'calls.txt', 'a') as f:\n"
     "    f.write(f'resume={resume}\\n')\n"
     "(out / 'pids.json').write_text(json.dumps({'kernel': os.getpid(), 'worker': os.getppid()}))\n"
     "hold = os.environ.get('FEDRS_TEST_HOLD')\n"
     "while hold and pathlib.Path(hold).exists():\n"
     "    time.sleep(0.1)\n"
     "(out / 'params.yaml').write_text(pathlib.Path(params_file).read_text())\n"
     "(out / 'metrics.json').write_text(json.dumps({'method': 'fedrsclip', 'personalised_accuracy': 0.5}))", []),
]

#: `fedrs sweep` with the input preparation left out (the stand-in notebook reads no data)
SWEEP = """
import sys
import fedrs.study.sweep as sw
sw.ensure_inputs = lambda configs: None
from fedrs.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def sweep_setup(tmp_path) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": tags}) for src, tags in HOLDING_CELLS]
    notebook = tmp_path / "holding_run.ipynb"
    nbformat.write(nb, notebook)
    params = tmp_path / "params"
    params.mkdir()
    for seed, name in enumerate(("a", "b")):
        (params / f"{name}.yaml").write_text(yaml.safe_dump({
            "data": {"dataset": "UCMerced"}, "method": {"name": "fedrsclip"}, "train": {"seed": seed, "rounds": 1}}))
    hold = tmp_path / "HOLD"
    results = tmp_path / "results"
    argv = ["sweep", str(params), "--results", str(results), "--notebook", str(notebook), "--no-progress"]
    return {"argv": argv, "hold": hold, "results": results / "params",
            "env": {**os.environ, "FEDRS_TEST_HOLD": str(hold), "OMP_NUM_THREADS": "1"}}


def calls(run: Path) -> list[str]:
    return (run / "calls.txt").read_text().split() if (run / "calls.txt").is_file() else []


def pids(run: Path) -> dict:
    try:
        return json.loads((run / "pids.json").read_text())
    except (OSError, ValueError):
        return {}


def test_sweep_killed_mid_sweep_leaves_no_kernel_and_reruns_each_run_once(sweep_setup):
    s = sweep_setup
    s["hold"].write_text("hold")
    sweep = subprocess.Popen([sys.executable, "-c", SWEEP, *s["argv"], "--jobs", "2"], env=s["env"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker = f"FEDRS_PROCESS_TREE=sweep-{sweep.pid}-"
    runs = [s["results"] / name for name in ("a", "b")]
    try:
        assert wait_for(lambda: all(pids(r) for r in runs), timeout=300), \
            sweep.stderr.read() if sweep.poll() is not None else "the kernels did not start"
        tree = [p for r in runs for p in pids(r).values()]
        assert all(alive(p) for p in tree)
        assert {pid for pid, _ in processes_carrying(marker)} >= set(tree)  # workers and kernels are marked
        sweep.send_signal(signal.SIGKILL)
        sweep.wait(timeout=30)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    # the watchdog stops the tree: no worker, no kernel (nor the watchdog) survives the sweep
    assert wait_for(lambda: not any(alive(p) for p in tree) and not processes_carrying(marker), timeout=60), \
        processes_carrying(marker)
    assert all(calls(r) == ["resume=False"] for r in runs)
    assert not any((r / "metrics.json").exists() for r in runs)

    # the re-run takes the stale locks over and finishes each run exactly once (resumed)
    s["hold"].unlink()
    again = subprocess.run([sys.executable, "-c", SWEEP, *s["argv"], "--jobs", "2"], env=s["env"],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 done (2 resumed)" in again.stdout
    assert all(calls(r) == ["resume=False", "resume=True"] for r in runs)
    assert not list(s["results"].glob(".*.lock*")) and hidden_leftovers(s["results"]) == []


def test_a_second_sweep_never_executes_a_run_the_first_is_executing(sweep_setup):
    s = sweep_setup
    s["hold"].write_text("hold")
    first = subprocess.Popen([sys.executable, "-c", SWEEP, *s["argv"], "--jobs", "1"], env=s["env"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    a, b = (s["results"] / name for name in ("a", "b"))
    try:
        assert wait_for(lambda: bool(pids(a)), timeout=300), \
            first.stderr.read() if first.poll() is not None else "run a did not start"
        # meanwhile a second sweep: run a is busy (left alone), run b is executed here
        env = {k: v for k, v in s["env"].items() if k != "FEDRS_TEST_HOLD"}
        second = subprocess.run([sys.executable, "-c", SWEEP, *s["argv"]], env=env, capture_output=True,
                                text=True, timeout=600)
        assert second.returncode == 1, second.stdout + second.stderr  # not everything complete: a is busy
        assert "1 done" in second.stdout and "1 busy" in second.stdout and "BUSY params/a" in second.stdout
        assert calls(a) == ["resume=False"] and calls(b) == ["resume=False"]
        s["hold"].unlink()
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out + err
    # the first sweep finished a, and found b completed by the second one under b's lock: skipped
    assert "1 done" in out and "1 skipped" in out
    assert calls(a) == ["resume=False"] and calls(b) == ["resume=False"]
    assert not list(s["results"].glob(".*.lock*"))
