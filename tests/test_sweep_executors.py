"""fedrs sweep beyond one process pool: runs as submitit jobs (submitit's LocalExecutor here, the
Slurm path's parameters and flow without a cluster), GPUs assigned round-robin to local run slots,
and the run locks of jobs on other hosts."""

from __future__ import annotations

import functools
import json
import os
import pickle
import socket
import sys
from pathlib import Path

import pytest
from test_study_sweep import calls, write_fake_notebook, write_params

from fedrs.study import executors as ex
from fedrs.study import sweep as sw


def needs_submitit():
    """submitit through fedrs's import (which keeps submitit from reconfiguring logging: a plain
    ``import submitit`` shuts down every installed handler, pytest's included), or skip."""
    try:
        return ex.require_submitit("submitit-local")
    except ex.ExecutorError:
        pytest.skip("submitit is not installed")


@pytest.fixture(autouse=True)
def no_inputs(monkeypatch) -> None:
    """No data import or pretraining: the stand-in notebook reads neither."""
    monkeypatch.setattr(sw, "ensure_inputs", lambda configs: None)


@pytest.fixture
def fake_notebook(tmp_path) -> Path:
    return write_fake_notebook(tmp_path / "fake_run.ipynb")


def fake_command(folder: Path, name: str, script: str = "exit 0") -> None:
    """An executable ``folder/name`` running the shell ``script`` (a stand-in for srun or squeue)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """A PATH with an ``srun``, which is how submitit (and the sweep) detect a Slurm cluster."""
    bin_dir = tmp_path / "fakebin"
    fake_command(bin_dir, "srun")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def kernel_gpus(out: Path) -> str | None:
    return json.loads((out / "kernel_env.json").read_text())["CUDA_VISIBLE_DEVICES"]


# --- errors before anything runs ---------------------------------------------------------------------

def test_a_submitit_executor_without_submitit_is_one_error_line(tmp_path, fake_notebook, monkeypatch, capsys):
    from fedrs.cli import main

    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    path = write_params(tmp_path / "p", "a")
    for executor in ("slurm", "submitit-local"):
        argv = ["sweep", str(path), "--results", str(tmp_path / "r"), "--notebook", str(fake_notebook),
                "--no-progress", "--executor", executor]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"fedrs: error: --executor {executor} needs submitit") and err.count("\n") == 1
        assert "pip install submitit" in err and ".[cluster]" in err
    assert not (tmp_path / "r").exists()  # nothing ran


def test_scheduler_options_need_a_scheduler_and_slurm_needs_srun(tmp_path, fake_notebook, monkeypatch, capsys):
    from fedrs.cli import main

    needs_submitit()
    path = write_params(tmp_path / "p", "a")
    argv = ["sweep", str(path), "--results", str(tmp_path / "r"), "--notebook", str(fake_notebook), "--no-progress"]
    assert main(argv + ["--slurm-partition", "gpu", "--slurm-time", "30"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedrs: error: --slurm-partition, --slurm-time only apply to --executor slurm")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no srun: not a Slurm machine
    assert main(argv + ["--executor", "slurm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedrs: error: --executor slurm: no Slurm on this machine (srun is not on PATH)")
    assert err.count("\n") == 1 and "--executor submitit-local" in err
    assert not (tmp_path / "r").exists()


# --- the Slurm path without a cluster -------------------------------------------------------------------

def test_slurm_options_map_to_the_sbatch_parameters(tmp_path, fake_slurm):
    needs_submitit()
    options = ex.JobOptions(partition="gpu", time_min=90, cpus=4, gpus=2)
    assert ex.submitit_parameters(options) == {
        "name": "fedrs-sweep", "nodes": 1, "tasks_per_node": 1, "timeout_min": 90, "cpus_per_task": 4,
        "gpus_per_node": 2, "slurm_partition": "gpu"}
    slurm = ex.submitit_executor("slurm", tmp_path / "jobs", options)
    assert slurm.cluster == "slurm"
    assert {k: slurm._executor.parameters[k] for k in ("partition", "time", "cpus_per_task", "gpus_per_node",
                                                        "nodes", "ntasks_per_node")} == \
        {"partition": "gpu", "time": 90, "cpus_per_task": 4, "gpus_per_node": 2, "nodes": 1, "ntasks_per_node": 1}
    sbatch = slurm._executor._make_submission_file_text("python -m x", "uid")
    for line in ("--partition=gpu", "--time=90", "--cpus-per-task=4", "--gpus-per-node=2"):
        assert f"#SBATCH {line}\n" in sbatch
    assert f"#SBATCH --error={tmp_path / 'jobs' / '%j'}/%j_0_log.err" in sbatch  # job files under the folder
    assert (tmp_path / "jobs" / ".gitignore").read_text().endswith("*\n")  # never committed with results
    # the same options on submitit's local executor: the shared ones only (no partition), and the
    # default time limit when none is given (submitit's own local default would be 2 minutes)
    local = ex.submitit_executor("submitit-local", tmp_path / "jobs", options)
    assert local._executor.parameters == {"name": "fedrs-sweep", "nodes": 1, "tasks_per_node": 1,
                                          "timeout_min": 90, "cpus_per_task": 4, "gpus_per_node": 2}
    default = ex.submitit_executor("slurm", tmp_path / "jobs", ex.JobOptions())
    assert default._executor.parameters["time"] == ex.DEFAULT_JOB_MINUTES
    assert "partition" not in default._executor.parameters


def test_a_slurm_sweep_submits_each_run_as_a_job_with_the_cli_options(tmp_path, fake_notebook, fake_slurm,
                                                                      monkeypatch, capsys):
    """The CLI's --slurm-* options reach the Slurm executor; the jobs themselves run in this
    process through submitit's DebugExecutor (no cluster here), through the same sweep loop."""
    from fedrs.cli import main

    submitit = needs_submitit()
    made, real = {}, ex.submitit_executor

    def slurm_then_debug(executor, folder, options):
        made["slurm"] = dict(real(executor, folder, options)._executor.parameters)
        debug = submitit.AutoExecutor(folder=Path(folder) / "%j", cluster="debug")
        real_submit = debug.submit

        def submit(call):
            made.setdefault("calls", []).append(call)
            return real_submit(call)

        debug.submit = submit
        return debug

    monkeypatch.setattr(ex, "submitit_executor", slurm_then_debug)
    params = tmp_path / "p"
    write_params(params, "a", seed=0)
    write_params(params, "b", seed=1)
    results = tmp_path / "r"
    argv = ["sweep", str(params), "--results", str(results), "--notebook", str(fake_notebook), "--no-progress",
            "--executor", "slurm", "--slurm-partition", "gpu", "--slurm-time", "30", "--slurm-cpus", "2",
            "--slurm-gpus", "1", "--jobs", "2", "--json"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert {k: made["slurm"][k] for k in ("partition", "time", "cpus_per_task", "gpus_per_node")} == \
        {"partition": "gpu", "time": 30, "cpus_per_task": 2, "gpus_per_node": 1}
    assert [c.spec.name for c in made["calls"]] == ["a", "b"]
    assert all(isinstance(c, sw.RunJob) and c.threads == 2 and c.env == () for c in made["calls"])
    assert "2 done" in out and "sweep: 2 runs, 2 to execute (slurm, 2 at once)" in out
    assert json.loads(out[out.index("{"):])["executor"] == "slurm"
    for name in ("a", "b"):
        run = results / "p" / name
        assert json.loads((run / "sweep.json").read_text())["status"] == "complete"
        assert calls(run) == ["resume=False"]


def test_a_run_job_is_picklable_and_requeues_as_a_resume(tmp_path, fake_notebook):
    submitit = needs_submitit()
    spec = sw.plan([write_params(tmp_path / "p", "a")], results=tmp_path / "r")[0]
    job = sw.RunJob(spec, fake_notebook, resume=False, fresh=False, threads=2, env=(("CUDA_VISIBLE_DEVICES", "1"),))
    assert pickle.loads(pickle.dumps(job)) == job
    again = job.checkpoint()  # what submitit requeues when a Slurm job reaches its time limit
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert again.function == sw.RunJob(spec, fake_notebook, resume=True, fresh=False, threads=2,
                                       env=(("CUDA_VISIBLE_DEVICES", "1"),))


# --- submitit's LocalExecutor: the scheduler path on this machine -----------------------------------------

def test_a_submitit_local_sweep_runs_the_same_runs_as_the_local_one(tmp_path, fake_notebook):
    needs_submitit()
    params = tmp_path / "p"
    write_params(params, "good", seed=0)
    write_params(params, "broken", fail=True)
    results = tmp_path / "r"
    kw = dict(results=results, notebook=fake_notebook, progress=False, executor="submitit-local")
    summary = sw.sweep([params], jobs=2, **kw)
    assert summary.count("done") == 1 and summary.count("failed") == 1 and summary.executor == "submitit-local"
    good, broken = results / "p" / "good", results / "p" / "broken"
    assert json.loads((good / "sweep.json").read_text())["status"] == "complete" and calls(good) == ["resume=False"]
    failed = summary.failed[0]
    assert failed.error.startswith("ValueError: deliberate failure") and failed.log == str(broken / "sweep.log")
    # the job's own log, beside the run's: submitit's files under the results root, git-ignored
    assert Path(failed.job_log).is_file() and Path(failed.job_log).parent.parent == results / ".submitit"
    assert f"job log: {failed.job_log}" in summary.text()
    assert (results / ".submitit" / ".gitignore").is_file()
    assert not list((results / "p").glob(".*.lock*"))  # the jobs released their locks
    # resume and skip work the same way through the jobs
    (good / "metrics.json").unlink()
    write_params(params, "broken", seed=2)  # fixed
    summary = sw.sweep([params], **kw)
    assert summary.count("done") == 2 and all(o.resumed for o in summary.outcomes)
    assert calls(good) == ["resume=False", "resume=True"]
    assert sw.sweep([params], **kw).count("skipped") == 2


def test_a_job_that_dies_is_one_failed_call_with_its_log(tmp_path):
    needs_submitit()
    pool = ex.open_pool("submitit-local", 1, tmp_path / "jobs", ex.JobOptions(time_min=5))
    handle = pool.submit(functools.partial(os._exit, 3))
    assert pool.wait({handle}) == {handle}
    with pytest.raises(ex.JobCrashed, match="submitit-local job .* ended without a result") as crash:
        pool.result(handle)
    assert crash.value.log == pool.log(handle) and Path(crash.value.log).is_file()
    pool.close()


# --- GPUs round-robin ---------------------------------------------------------------------------------

@pytest.fixture
def gpus(monkeypatch):
    """Fake the number of CUDA devices torch sees."""
    import torch

    def fake(count: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return fake


def test_visible_devices_and_each_slots_gpu(gpus, monkeypatch):
    gpus(0)
    assert ex.visible_cuda_devices() == [] and ex.gpu_environment(3, []) == {}
    gpus(1)
    assert ex.visible_cuda_devices() == ["0"] and ex.gpu_environment(1, ["0"]) == {}  # one GPU: nothing changes
    gpus(3)
    assert [ex.gpu_environment(slot, ex.visible_cuda_devices()) for slot in range(4)] == [
        {"CUDA_VISIBLE_DEVICES": d} for d in ("0", "1", "2", "0")]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6,7")  # this process's own share of the machine
    assert ex.visible_cuda_devices() == ["4", "6", "7"]


def test_parallel_local_runs_get_a_gpu_each_round_robin(tmp_path, fake_notebook, gpus):
    params = tmp_path / "p"
    for name, device in (("a", "cuda"), ("b", "auto"), ("c", "cpu"), ("d", "cuda")):
        write_params(params, name, backbone={"device": device})
    kw = dict(results=tmp_path / "r", notebook=fake_notebook, progress=False)
    gpus(2)
    assert sw.sweep([params], jobs=4, **kw).count("done") == 4
    got = {name: kernel_gpus(tmp_path / "r" / "p" / name) for name in "abcd"}
    # slots 0..3 in plan order: GPU slot mod 2 for cuda/auto runs; a cpu run's kernel is left alone
    assert got == {"a": "0", "b": "1", "c": None, "d": "1"}

    gpus(1)  # one GPU: nothing changes
    assert sw.sweep([params], jobs=4, force=True, **kw).count("done") == 4
    assert {kernel_gpus(tmp_path / "r" / "p" / name) for name in "abcd"} == {None}


# --- locks of runs executed as jobs on other hosts ------------------------------------------------------

def test_a_lock_held_by_a_slurm_job_on_another_host_asks_squeue(tmp_path, monkeypatch):
    spec = sw.plan([write_params(tmp_path / "p", "a")], results=tmp_path / "r")[0]
    sw.lock_path(spec).parent.mkdir(parents=True)
    other = {"pid": 12345, "host": f"not-{socket.gethostname()}", "slurm_job_id": "777"}
    sw.lock_path(spec).write_text(json.dumps(other))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(bin_dir))  # no squeue: another host's lock is assumed alive
    assert sw.run_status(spec) == "busy"
    fake_command(bin_dir, "squeue", 'echo RUNNING')  # the job still runs
    assert sw.run_status(spec) == "busy"
    fake_command(bin_dir, "squeue", "exit 0")  # the job is gone from the queue: its lock is stale
    assert sw.lock_owner(spec) is None and sw.run_status(spec) == "new"
    fake_command(bin_dir, "squeue", "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1")
    assert sw.lock_owner(spec) is None
    fake_command(bin_dir, "squeue", "echo 'slurm_load_jobs error: Socket timed out' >&2; exit 1")
    assert sw.run_status(spec) == "busy"  # squeue cannot tell: assume it runs
    # this very job, requeued onto another node after its time limit, takes over its own lock
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    assert sw.lock_owner(spec) is None
    assert sw.acquire_lock(spec) is None
    assert json.loads(sw.lock_path(spec).read_text())["slurm_job_id"] == "777"
    sw.release_lock(spec)
    assert not sw.lock_path(spec).exists()


def test_importing_submitit_leaves_installed_logging_handlers_alone(tmp_path, monkeypatch):
    """A plain first ``import submitit`` runs logging.config.dictConfig, which closes every handler
    already installed (here a file handler of the user's); fedrs's import does not."""
    import logging

    needs_submitit()
    for name in [m for m in sys.modules if m == "submitit" or m.startswith("submitit.")]:
        monkeypatch.delitem(sys.modules, name)  # a first import again
    handler = logging.FileHandler(tmp_path / "user.log")
    logger = logging.getLogger("a_user_logger")
    logger.addHandler(handler)
    try:
        ex.require_submitit("slurm")
        logger.warning("still open")
        assert handler.stream is not None and not handler.stream.closed
        assert "still open" in (tmp_path / "user.log").read_text()
        assert "SUBMITIT_LOG_LEVEL" not in os.environ or os.environ["SUBMITIT_LOG_LEVEL"] != "NOCONFIG"
    finally:
        logger.removeHandler(handler)
        handler.close()
