"""Where a sweep's runs execute: local worker processes, or jobs of a scheduler through submitit.

A sweep hands every run to an executor as one picklable call without arguments (the sweep's
:class:`~fedrs.study.sweep.RunJob`, which calls :func:`~fedrs.study.sweep.execute_run`), so the
lock, resume and status logic is the same wherever the run executes. Three executors:

* ``local`` (default): a pool of ``jobs`` worker processes (spawned) on this machine;
* ``submitit-local``: each run a job of submitit's ``LocalExecutor`` (a process on this machine,
  the scheduler path without a cluster: what the tests use);
* ``slurm``: each run a Slurm job through submitit (``sbatch``); run the sweep on a login node
  of a cluster whose nodes share the checkout, its data and results folders.

Why submitit (https://github.com/facebookincubator/submitit) rather than a home-made scheduler
or Ray: it is a small, maintained client of the scheduler clusters already run (Slurm), used by
fairseq and detectron2; a job is a pickled call whose logs and result land in a folder; it needs
no server or cluster of its own; and its ``LocalExecutor`` runs the same path on one machine.
It is optional (``pip install submitit``, or the ``cluster`` extra): only the submitit executors
import it.

The sweep keeps at most ``jobs`` runs submitted at once and waits for any of them
(:meth:`Pool.wait`); a run slot (0 .. jobs-1) stays with its run until it ends, so a local sweep
on several GPUs gives slot ``i`` the GPU ``i mod n`` (:func:`gpu_environment`): never two runs on
one GPU while ``jobs`` <= GPUs.
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Literal

from fedrs.errors import FedrsError

Executor = Literal["local", "submitit-local", "slurm"]
EXECUTORS: tuple[str, ...] = ("local", "submitit-local", "slurm")
#: the folder below the results root that holds submitit's job files (pickled call, result, logs)
SUBMITIT_FOLDER = ".submitit"
#: job time limit when --slurm-time is not given (minutes); a run cut off by it resumes from its
#: last finished round on the next sweep
DEFAULT_JOB_MINUTES = 240
#: seconds between two looks at submitted jobs (submitit rate-limits its own sacct calls)
POLL_SECONDS = {"submitit-local": 0.5, "slurm": 15.0}
INSTALL_HINT = "pip install submitit (or the extra: pip install -e '.[cluster]')"
_NO_SLURM = ("--executor slurm: no Slurm on this machine (srun is not on PATH): run the sweep on the cluster's "
             "login node, or try the same path here with --executor submitit-local")


class ExecutorError(FedrsError):
    """An executor that cannot be used here (submitit not installed, no Slurm on this machine)."""


class JobCrashed(Exception):
    """A submitted call that returned nothing: its process or job died (killed, out of memory,
    time limit). ``log``: the job's own log (submitit's stderr file), or ''."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class JobOptions:
    """Scheduler options of the submitit executors (None: the scheduler's or submitit's default).

    ``time_min``: wall-time limit of one run's job in minutes (also the local executor's timeout);
    ``cpus``: CPU cores per job (its runs' thread count); ``gpus``: GPUs per job;
    ``partition``: the Slurm partition (Slurm only)."""

    partition: str | None = None
    time_min: int | None = None
    cpus: int | None = None
    gpus: int | None = None

    def given(self) -> list[str]:
        """The options that were set, as their command-line names."""
        return [f"--slurm-{name}" for name, value in (("partition", self.partition), ("time", self.time_min),
                                                      ("cpus", self.cpus), ("gpus", self.gpus))
                if value is not None]


def check_executor(executor: str, options: JobOptions) -> None:
    """Refuse an unknown executor, scheduler options the local executor would ignore, and a
    submitit executor without submitit installed (:class:`ExecutorError`, before anything runs)."""
    if executor not in EXECUTORS:
        raise ExecutorError(f"unknown executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    if executor == "local" and options.given():
        raise ExecutorError(f"{', '.join(options.given())} only apply to --executor slurm or submitit-local "
                            f"(the local executor runs --jobs processes on this machine)")
    if executor != "local":
        require_submitit(executor)
    if executor == "slurm" and shutil.which("srun") is None:  # what submitit's SlurmExecutor checks
        raise ExecutorError(_NO_SLURM)


def require_submitit(executor: str = "slurm") -> Any:
    """The ``submitit`` module, or :class:`ExecutorError` naming how to install it."""
    # submitit configures logging when first imported (logging.config.dictConfig), which shuts down
    # every handler already installed (the user's, a notebook's, pytest's) and binds its own to the
    # sys.stdout/sys.stderr of that moment; NOCONFIG skips that here (its records then reach the root
    # logger like any library's). Only this import is affected: submitted jobs import it afresh.
    saved = os.environ.get("SUBMITIT_LOG_LEVEL")
    os.environ.setdefault("SUBMITIT_LOG_LEVEL", "NOCONFIG")
    try:
        import submitit
    except ImportError:
        raise ExecutorError(f"--executor {executor} needs submitit, which is not installed: "
                            f"{INSTALL_HINT}") from None
    finally:
        if saved is None:
            os.environ.pop("SUBMITIT_LOG_LEVEL", None)
        else:
            os.environ["SUBMITIT_LOG_LEVEL"] = saved
    return submitit


def submitit_parameters(options: JobOptions, name: str = "fedrs-sweep") -> dict[str, Any]:
    """The ``AutoExecutor.update_parameters`` keywords for ``options``: submitit's shared names
    (``timeout_min``, ``cpus_per_task``, ``gpus_per_node``; each cluster translates them, e.g.
    Slurm's ``--time``, ``--cpus-per-task``, ``--gpus-per-node``) and the Slurm-only
    ``slurm_partition``, which other clusters ignore. One task on one node per run."""
    params: dict[str, Any] = {"name": name, "nodes": 1, "tasks_per_node": 1,
                              "timeout_min": options.time_min or DEFAULT_JOB_MINUTES}
    if options.cpus is not None:
        params["cpus_per_task"] = options.cpus
    if options.gpus is not None:
        params["gpus_per_node"] = options.gpus
    if options.partition is not None:
        params["slurm_partition"] = options.partition
    return params


def submitit_executor(executor: str, folder: str | Path, options: JobOptions) -> Any:
    """A ``submitit.AutoExecutor`` for ``executor`` (``submitit-local``: cluster ``local``;
    ``slurm``: cluster ``slurm``) writing its job files under ``folder/<job id>``, with
    :func:`submitit_parameters` applied."""
    submitit = require_submitit(executor)
    cluster = {"submitit-local": "local", "slurm": "slurm"}[executor]
    folder = Path(folder)
    _ignored_folder(folder)
    try:
        auto = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    except RuntimeError:  # SlurmExecutor: no srun on PATH
        raise ExecutorError(_NO_SLURM) from None
    auto.update_parameters(**submitit_parameters(options))
    return auto


def _ignored_folder(folder: Path) -> None:
    """Create ``folder`` holding a ``.gitignore`` of ``*``: submitit's job files (pickles, logs
    with local paths) stay out of the committed results without touching the project's ignores."""
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# submitit's job files (fedrs sweep --executor): local, never committed\n*\n",
                          encoding="utf-8")


# --- GPUs ----------------------------------------------------------------------------------------

def visible_cuda_devices() -> list[str]:
    """The CUDA devices this process sees, as ``CUDA_VISIBLE_DEVICES`` entries: the variable's own
    entries when it is set (so a child picks among them), else ``0 .. n-1``; [] without CUDA."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if "CUDA_VISIBLE_DEVICES" in os.environ and len(listed) >= count:
        return listed[:count]
    return [str(i) for i in range(count)]


def gpu_environment(slot: int, devices: list[str]) -> dict[str, str]:
    """The environment of run slot ``slot`` on ``devices`` (:func:`visible_cuda_devices`): with
    several GPUs, ``CUDA_VISIBLE_DEVICES`` is the slot's own, ``devices[slot mod n]``; with one or
    none, nothing changes ({})."""
    if len(devices) < 2:
        return {}
    return {"CUDA_VISIBLE_DEVICES": devices[slot % len(devices)]}


# --- pools ----------------------------------------------------------------------------------------

class Pool:
    """Submitted calls, whatever executes them. ``submit`` returns a handle; ``wait`` returns the
    handles that have ended; ``result`` is the call's return value or raises :class:`JobCrashed`;
    ``close`` waits for nothing and, with ``cancel``, stops what is still running."""

    #: whether a submitted call starts at once (a free worker), so the time since submission is
    #: the time it has been running; a scheduler's job may wait in its queue first
    starts_on_submit = True

    def submit(self, call: Callable[[], Any], name: str = "") -> Any:
        raise NotImplementedError

    def wait(self, handles: set) -> set:
        raise NotImplementedError

    def result(self, handle: Any) -> Any:
        raise NotImplementedError

    def log(self, handle: Any) -> str:
        """The job's own log file ('' where the job has none of its own: a local worker)."""
        return ""

    def close(self, cancel: bool = False) -> None:
        raise NotImplementedError


class LocalPool(Pool):
    """``jobs`` spawned worker processes: a crashing kernel or library cannot take the sweep down,
    and each worker's stderr goes to its run's log."""

    def __init__(self, jobs: int) -> None:
        self._pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"))

    def submit(self, call: Callable[[], Any], name: str = "") -> Future:
        return self._pool.submit(call)

    def wait(self, handles: set) -> set:
        finished, _ = wait(handles, return_when=FIRST_COMPLETED)
        return set(finished)

    def result(self, handle: Future) -> Any:
        try:
            return handle.result()
        except Exception as exc:  # noqa: BLE001 - a crashed worker (BrokenProcessPool) is one failed call
            raise JobCrashed(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc

    def close(self, cancel: bool = False) -> None:
        # interrupted: drop what has not started; the process tree (workers, kernels) is stopped
        # by the sweep on the way out, not waited for
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


class SubmititPool(Pool):
    """Each call one submitit job (:func:`submitit_executor`); ``wait`` looks at the jobs every
    :data:`POLL_SECONDS` until one has ended."""

    def __init__(self, executor: str, folder: str | Path, options: JobOptions) -> None:
        self.executor = executor
        self._auto = submitit_executor(executor, folder, options)
        self._poll = POLL_SECONDS[executor]
        self._outstanding: set = set()  # submitted, result not taken yet
        self.starts_on_submit = executor == "submitit-local"

    def submit(self, call: Callable[[], Any], name: str = "") -> Any:
        if name:
            self._auto.update_parameters(name=name)
        job = self._auto.submit(call)
        self._outstanding.add(job)
        return job

    def wait(self, handles: set) -> set:
        while True:
            finished = {job for job in handles if job.done()}
            if finished or not handles:
                return finished
            time.sleep(self._poll)

    def result(self, handle: Any) -> Any:
        self._outstanding.discard(handle)
        try:
            return handle.result()
        except Exception as exc:  # noqa: BLE001 - FailedJobError, UncompletedJobError: the job died
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise JobCrashed(f"{self.executor} job {handle.job_id} ended without a result: {first}",
                             self.log(handle)) from exc

    def log(self, handle: Any) -> str:
        return str(handle.paths.stderr)

    def close(self, cancel: bool = False) -> None:
        """With ``cancel`` (an interrupted sweep), cancel the jobs still queued or running
        (Slurm: ``scancel``; a local job gets SIGINT), so none runs on without its sweep."""
        if cancel:
            for job in self._outstanding:
                try:
                    job.cancel(check=False)
                except Exception:  # noqa: BLE001 - best effort on the way out of an interrupted sweep
                    pass
        self._outstanding.clear()


def open_pool(executor: str, jobs: int, folder: str | Path, options: JobOptions) -> Pool:
    """The pool of ``executor`` (:data:`EXECUTORS`): ``local`` runs ``jobs`` worker processes,
    the submitit ones write their job files under ``folder``."""
    check_executor(executor, options)
    if executor == "local":
        return LocalPool(jobs)
    return SubmititPool(executor, folder, options)


__all__ = ["DEFAULT_JOB_MINUTES", "EXECUTORS", "INSTALL_HINT", "SUBMITIT_FOLDER", "Executor", "ExecutorError",
           "JobCrashed", "JobOptions", "LocalPool", "Pool", "SubmititPool", "check_executor", "gpu_environment",
           "open_pool", "require_submitit", "submitit_executor", "submitit_parameters", "visible_cuda_devices"]
