"""Batches of runs: execute ``notebooks/02_federated_run.ipynb`` through papermill once per YAML.

``fedrs sweep params/studies/offline/methods`` (folders expand to their ``*.yaml``, files whose
name starts with ``_`` are shared bases and are skipped) writes every run into
``results/<study>/<run>/``: the executed notebook, the run folder files of ``run_experiment``
(``params.yaml``, ``split.json``, ``rounds.csv``, ``metrics.json``, ``env.json``), the run's log
``sweep.log`` and ``sweep.json`` (status, source params file and its checksum, wall time).

* ``<study>``: ``--study``, else the YAML's folder below ``params/studies/`` (so results mirror
  the params tree), else the YAML's folder name; ``<run>``: the YAML's stem.
* A run is **complete** when its ``metrics.json`` exists and its ``sweep.json`` says so: it is
  skipped. A folder without ``metrics.json`` (interrupted) is **resumed**: the notebook gets
  ``resume=True`` and passes it to ``run_experiment``. A complete run whose params file changed
  since is reported as failed (stale) unless ``force`` reruns it from scratch.
* ``sweep.json`` is this checkout's own record (git-ignored: it holds local paths and wall time).
  A run folder with ``metrics.json`` but no ``sweep.json`` came from elsewhere (the committed
  results of a fresh clone): it is **committed**, not executed here, so the sweep runs it again
  from scratch, in place. That is how ``make study`` regenerates ``results/`` from a fresh clone,
  and ``git diff results/`` then shows whether the regeneration matched. ``keep_committed``
  (``--keep-committed``) instead continues a study that other machines started: committed runs
  count as finished and only the others execute, after a check that this machine's offline
  backbone is the build the committed runs used (:func:`check_committed_backbones`).
* Runs execute in ``jobs`` parallel worker processes, each kernel limited to its share of CPU
  threads (``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS``, or the value the user set for either:
  :func:`thread_environment`). A failed run does not stop the others; its ``sweep.log`` and
  partially executed notebook are kept, and the summary names them. With several GPUs visible
  (and a run's ``backbone.device`` ``cuda`` or ``auto``), run slot ``i`` of ``jobs`` gets
  ``CUDA_VISIBLE_DEVICES`` = GPU ``i mod n``.
* ``executor`` ``submitit-local`` or ``slurm`` (:mod:`fedrs.study.executors`) submits each run
  as a job through submitit instead, at most ``jobs`` at once: the job calls the same
  :class:`RunJob`, so locks, resume and status work the same way; its job files and logs go to
  ``<results>/.submitit/<job id>/``.
* Progress and time left (:func:`fedrs.study.cost.time_left`): the cost model's estimate of every
  run left, scaled by measured over estimated seconds of the runs finished (this sweep's and those
  complete on disk), shared by the ``jobs`` parallel runs; on the progress bar, in the log
  (``12/48 runs done, ~37 min left (estimate x1.3 calibrated on 12 runs)``) and in the summary.

Before any kernel starts, every params file is validated (one error lists every invalid file) and
the inputs the runs share are made ready once (:func:`ensure_inputs`: datasets imported, offline
backbones pretrained), so parallel kernels never race to import data or pretrain a backbone.

No orphans, no run executed twice: the worker processes and their Jupyter kernels form one marked
process tree (:mod:`fedrs.procs`) that dies with the sweep, whether it ends, fails, is
interrupted (Ctrl-C, SIGTERM, SIGHUP: the tree is stopped, then the sweep exits) or is killed with
SIGKILL (the watchdog stops the tree); an interrupted sweep also cancels the scheduler jobs it
submitted. A run being executed holds a lock beside its folder
(``.<run>.lock``: pid, host and start of the process executing it); another sweep reports such
a run as **busy** and leaves it alone, and takes over a lock whose process is gone (killed).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import traceback
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Literal, Mapping, Sequence

import yaml

from fedrs.errors import FedrsError
from fedrs.io import json_text, write_json_atomic
from fedrs.procs import MARKER_VAR, Watchdog, process_alive, process_start_time
from fedrs.study import executors, project_root, use_project_roots
from fedrs.study.cost import TimeLeft, estimate_run_seconds, format_duration, time_left

logger = logging.getLogger(__name__)

NOTEBOOK_NAME = "02_federated_run.ipynb"
STATUS_FILE = "sweep.json"
LOG_FILE = "sweep.log"
DEFAULT_KERNEL = "python3"  # the kernel of the running interpreter (the project's venv)

Status = Literal["complete", "partial", "new", "stale", "committed", "busy"]


class SweepError(FedrsError):
    """A sweep that cannot start (no params files, clashing run names, missing notebook)."""


def default_notebook() -> Path:
    return project_root() / "notebooks" / NOTEBOOK_NAME


# --- planning ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunSpec:
    params: Path
    study: str
    name: str
    out_dir: Path

    @property
    def label(self) -> str:
        return f"{self.study}/{self.name}" if self.study else self.name


def expand_params(paths: Iterable[str | Path]) -> list[Path]:
    """Params files from files and folders (folders: every ``*.yaml`` below, bases ``_*`` skipped)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*.yaml")
                           if not any(part.startswith("_") for part in f.relative_to(p).parts))
            if not found:
                raise SweepError(f"{p}: no params files (*.yaml) in this folder: generate them with "
                                 f"`python params/make_studies.py` or name the YAML files directly")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise SweepError(f"{p}: no such params file or folder")
    return [p.resolve() for p in dict.fromkeys(out)]


def study_of(params: Path) -> str:
    """``params/studies/<a>/<b>/x.yaml`` -> ``<a>/<b>``; elsewhere the parent folder's name."""
    parts = params.resolve().parent.parts
    if "studies" in parts:
        below = parts[len(parts) - parts[::-1].index("studies"):]
        if below:
            return "/".join(below)
    return params.resolve().parent.name


def plan(params: Sequence[str | Path], study: str | None = None, results: str | Path | None = None) -> list[RunSpec]:
    """One :class:`RunSpec` per params file; two runs may not share an output folder."""
    from fedrs.paths import results_root

    root = Path(results) if results is not None else results_root()
    if root.exists() and not root.is_dir():
        raise SweepError(f"the results folder is a file ({root}): give --results a folder path")
    specs = []
    for p in expand_params(params):
        s = study if study is not None else study_of(p)
        specs.append(RunSpec(p, s, p.stem, (root / s / p.stem).resolve()))
    clashes = {}
    for spec in specs:
        clashes.setdefault(spec.out_dir, []).append(str(spec.params))
    dup = {k: v for k, v in clashes.items() if len(v) > 1}
    if dup:
        out, files = next(iter(dup.items()))
        raise SweepError(f"params files {files} would all write {out}: rename one of them or sweep them "
                         f"with different --study names")
    return specs


def params_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_status(out_dir: Path) -> dict:
    try:
        return json.loads((out_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_status(spec: RunSpec) -> Status:
    """``complete`` (skip), ``stale`` (complete but its params file changed), ``partial`` (resume),
    ``committed`` (results not executed in this checkout: rerun from scratch), ``busy`` (another
    process is executing it: :func:`lock_owner`) or ``new``."""
    if lock_owner(spec) is not None:
        return "busy"
    return _folder_status(spec)


def _folder_status(spec: RunSpec) -> Status:
    """:func:`run_status` from the run folder alone (whoever holds its lock)."""
    out = spec.out_dir
    if not out.is_dir() or not any(out.iterdir()):
        return "new"
    marker = read_status(out)
    if (out / "metrics.json").is_file() and not marker:
        return "committed"
    if (out / "metrics.json").is_file() and marker.get("status") == "complete":
        recorded = marker.get("params_sha256")
        return "stale" if recorded and recorded != params_digest(spec.params) else "complete"
    return "partial"


# --- run locks ---------------------------------------------------------------------------------

def lock_path(spec: RunSpec) -> Path:
    """The run's lock file, beside its folder (a fresh run empties its folder, not the lock)."""
    return spec.out_dir.parent / f".{spec.out_dir.name}.lock"


def _read_lock(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written, or damaged: an owner we cannot check


def _alive(owner: dict) -> bool:
    """Whether the lock's owner still runs. On another host only Slurm can tell: a run executed
    as a Slurm job records its job id; gone from ``squeue``, the job ended; the same id as this
    process's job, it is this job's earlier attempt on another node (requeued after its time
    limit: :meth:`RunJob.checkpoint`). Otherwise assume it runs."""
    if owner.get("host") != socket.gethostname():
        job = owner.get("slurm_job_id")
        if job and job == os.environ.get("SLURM_JOB_ID"):
            return False
        alive = slurm_job_alive(str(job)) if job else None
        return True if alive is None else alive
    pid = owner.get("pid")
    return isinstance(pid, int) and process_alive(pid, owner.get("start_time"))


def slurm_job_alive(job_id: str) -> bool | None:
    """Whether Slurm job ``job_id`` is still queued or running (``squeue``); None when this
    machine cannot tell (no ``squeue``, or it failed)."""
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    try:
        out = subprocess.run([squeue, "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode == 0:
        return bool(out.stdout.strip())
    return False if "invalid job id" in out.stderr.lower() else None


def lock_owner(spec: RunSpec) -> dict | None:
    """``{"pid", "host", ...}`` of the live process executing ``spec``, or None (no lock, or a
    stale lock: its process is gone)."""
    owner = _read_lock(lock_path(spec))
    if owner is None:
        return None
    if not owner:  # unreadable: a lock written this instant, or garbage; garbage older than a minute is stale
        try:
            return {"pid": "?", "host": "?"} if time.time() - lock_path(spec).stat().st_mtime < 60 else None
        except OSError:
            return None
    return owner if _alive(owner) else None


def acquire_lock(spec: RunSpec) -> dict | None:
    """Lock ``spec`` for this process; None on success, else the live owner's record. A stale
    lock (its process died: a killed sweep) is taken over."""
    path = lock_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "start_time": process_start_time(os.getpid()),
          "sweep_pid": os.getppid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    if os.environ.get("SLURM_JOB_ID"):  # a Slurm job: another host's sweep asks squeue whether it still runs
        me["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            owner = lock_owner(spec)
            if owner is not None:
                return owner
            # stale: move it aside under a unique name (only one taker succeeds), then retry
            try:
                os.replace(path, path.with_name(f"{path.name}.stale-{secrets.token_hex(4)}"))
            except FileNotFoundError:
                pass
            for stale in path.parent.glob(f"{path.name}.stale-*"):
                stale.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json_text(me) + "\n")
        return None
    return lock_owner(spec) or {"pid": "?", "host": "?"}


def release_lock(spec: RunSpec) -> None:
    """Remove ``spec``'s lock if this process holds it."""
    owner = _read_lock(lock_path(spec))
    if owner and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        lock_path(spec).unlink(missing_ok=True)


def _busy(spec: RunSpec, owner: dict) -> RunOutcome:
    return RunOutcome(spec.label, "busy", str(spec.out_dir),
                      error=f"being executed by pid {owner.get('pid')} on host {owner.get('host')} "
                            f"(lock {lock_path(spec)}): re-run once that sweep is done")


# --- executing one run ------------------------------------------------------------------------

@dataclass
class RunOutcome:
    label: str
    status: Literal["done", "skipped", "failed", "busy"]
    out_dir: str
    seconds: float = 0.0
    error: str = ""
    log: str = ""
    resumed: bool = False
    #: the scheduler job's own log (submitit's stderr file) when a submitit executor ran it
    job_log: str = ""


def execute_run(spec: RunSpec, notebook: str | Path, resume: bool, kernel: str | None = DEFAULT_KERNEL,
                timeout: float | None = None, threads: int | None = None, capture_fd: bool = False,
                fresh: bool = False) -> RunOutcome:
    """Execute the run notebook for one params file; never raises (failures become outcomes).

    The run is locked while it executes (:func:`acquire_lock`): a run another process is
    executing is not touched and comes back ``busy``. ``capture_fd`` (worker processes) also
    sends this process's file descriptor 2 to the run's log, so the kernel's own messages land
    there instead of under the progress bar. ``fresh`` empties the run folder first (committed or
    forced runs), only when this run starts, so an interrupted sweep leaves the runs it did not
    reach as they were."""
    owner = acquire_lock(spec)
    if owner is not None:
        return _busy(spec, owner)
    try:
        if not fresh and _folder_status(spec) == "complete":
            # another sweep completed it between this sweep's plan and now: never execute it twice
            return RunOutcome(spec.label, "skipped", str(spec.out_dir))
        return _execute_locked(spec, notebook, resume, kernel, timeout, threads, capture_fd, fresh)
    finally:
        release_lock(spec)


#: how many kernels a run may start when one dies before answering (a kernel's start can lose a
#: race for its ports when several runs start at once on a loaded machine)
KERNEL_START_ATTEMPTS = 3


def kernel_did_not_start(exc: BaseException) -> bool:
    """``exc`` says the notebook's kernel died or timed out before it ran a cell (jupyter_client's
    ``Kernel died before replying to kernel_info`` / ``Kernel didn't respond``): retrying is safe."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("before replying to kernel_info" in text
                                              or "didn't respond" in text)


#: the variables that size torch's CPU thread pools (OpenMP, and MKL, which torch also reads)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_environment(threads: int | None, environ: Mapping[str, str]) -> dict[str, str]:
    """The :data:`THREAD_VARIABLES` to set for a kernel given ``environ``: every unset one gets
    the value the user already chose for another (OMP first), else ``threads``.

    They must agree: torch sizes its intra-op pool from either, so a user's
    ``OMP_NUM_THREADS=1`` beside a sweep-set ``MKL_NUM_THREADS=2`` ran two threads on a core
    shared with other work (a retrieval round measured 3.2x slower: 211 s against 65.6 s).
    """
    chosen = next((environ[v] for v in THREAD_VARIABLES if environ.get(v)), None)
    value = chosen or (str(threads) if threads else None)
    return {v: value for v in THREAD_VARIABLES if value and not environ.get(v)}


def _execute_locked(spec: RunSpec, notebook: str | Path, resume: bool, kernel: str | None,
                    timeout: float | None, threads: int | None, capture_fd: bool, fresh: bool) -> RunOutcome:
    import papermill as pm

    out = spec.out_dir
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / LOG_FILE
    digest = params_digest(spec.params)
    started = time.time()
    marker = {"status": "running", "params": str(spec.params), "params_sha256": digest,
              "notebook": str(notebook), "resumed": resume}
    write_json_atomic(out / STATUS_FILE, marker)
    os.environ.update(thread_environment(threads, os.environ))
    error = ""
    with open(log, "a", encoding="utf-8") as fh, _stderr_to(fh if capture_fd else None):
        fh.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {spec.label} "
                 f"({'resume' if resume else 'start'}) params={spec.params}\n")
        fh.flush()
        for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            try:
                pm.execute_notebook(
                    str(notebook), str(out / NOTEBOOK_NAME),
                    parameters={"params_file": str(spec.params), "out_dir": str(out), "resume": resume,
                                "progress": False},
                    kernel_name=kernel, progress_bar=False, stdout_file=fh, stderr_file=fh,
                    cwd=str(Path(notebook).resolve().parent), execution_timeout=timeout,
                )
                if not (out / "metrics.json").is_file():
                    error = f"the notebook finished but wrote no {out / 'metrics.json'}"
            except Exception as exc:  # noqa: BLE001 - one failed run must not stop the sweep
                if kernel_did_not_start(exc) and attempt < KERNEL_START_ATTEMPTS:
                    # no cell ran, so nothing of the run was written: start a new kernel
                    fh.write(f"\n=== the kernel did not start ({_one_line(exc)}); starting another "
                             f"(attempt {attempt + 1} of {KERNEL_START_ATTEMPTS})\n")
                    fh.flush()
                    time.sleep(attempt + random.random())  # parallel starts that collided spread out
                    continue
                error = _one_line(exc)
                fh.write("\n" + "".join(traceback.format_exception(exc)))
            break
        fh.write(f"=== {'failed: ' + error if error else 'complete'} after {time.time() - started:.1f} s\n")
    seconds = time.time() - started
    marker.update(status="failed" if error else "complete", seconds=round(seconds, 1), error=error)
    write_json_atomic(out / STATUS_FILE, marker)
    return RunOutcome(spec.label, "failed" if error else "done", str(out), seconds, error, str(log), resume)


@contextmanager
def _stderr_to(fh) -> Iterator[None]:
    if fh is None:
        yield
        return
    fh.flush()
    saved = os.dup(2)
    os.dup2(fh.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _one_line(exc: BaseException) -> str:
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:  # papermill.PapermillExecutionError: the exception raised inside the notebook
        return f"{ename}: {evalue}".splitlines()[0]
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


@dataclass(frozen=True)
class RunJob:
    """One run as a picklable call without arguments: what every executor executes (a local
    worker process, a submitit job), so each applies :func:`execute_run`'s lock, resume and
    status logic the same way. ``env``: environment variables set while the run executes (its
    kernel inherits them), e.g. the run slot's ``CUDA_VISIBLE_DEVICES``."""

    spec: RunSpec
    notebook: Path
    resume: bool
    fresh: bool
    kernel: str | None = DEFAULT_KERNEL
    timeout: float | None = None
    threads: int | None = None
    env: tuple[tuple[str, str], ...] = ()

    def __call__(self) -> RunOutcome:
        with _environment(dict(self.env)):
            return execute_run(self.spec, self.notebook, self.resume, self.kernel, self.timeout, self.threads,
                               capture_fd=True, fresh=self.fresh)

    def checkpoint(self, *args, **kwargs):
        """submitit's requeue hook: a Slurm job at its time limit is requeued with the call this
        returns, the same run resumed from its last finished round (a fresh run whose folder was
        not emptied yet starts fresh again)."""
        from submitit.helpers import DelayedSubmission

        fresh = self.fresh and _folder_status(self.spec) == "committed"
        return DelayedSubmission(dataclasses.replace(self, resume=not fresh, fresh=fresh))


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` set in ``os.environ`` inside the block, the previous values restored after (a
    worker process executes several runs)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- the sweep --------------------------------------------------------------------------------

@dataclass
class SweepSummary:
    outcomes: list[RunOutcome]
    seconds: float
    #: the time left the sweep estimated before it ran anything (:func:`fedrs.study.cost.time_left`)
    estimate: TimeLeft | None = None
    #: its progress at the end: the cost model's calibration on every finished run
    progress: TimeLeft | None = None
    executor: str = "local"

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def busy(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status == "busy"]

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def text(self) -> str:
        lines = [f"sweep: {len(self.outcomes)} runs in {self.seconds / 60:.1f} min: "
                 f"{self.count('done')} done ({sum(o.resumed for o in self.outcomes if o.status == 'done')} resumed), "
                 f"{self.count('skipped')} skipped (complete), {self.count('failed')} failed"
                 + (f", {self.count('busy')} busy (being executed by another sweep)" if self.busy else "")]
        for o in self.busy:
            lines.append(f"  BUSY {o.label}: {o.error}")
        for o in self.failed:
            lines.append(f"  FAILED {o.label}: {o.error}")
            if o.log:
                lines.append(f"         log: {o.log}")
            if o.job_log:
                lines.append(f"         job log: {o.job_log}")
        if self.failed:
            lines.append("  re-run the same command to retry the failed runs (completed runs are skipped)")
        if self.estimate is not None and self.progress is not None:
            lines.append(f"  time: ~{format_duration(self.estimate.seconds)} estimated at the start "
                         f"({self.estimate.basis()}), took {format_duration(self.seconds)}; "
                         f"{self.progress.calibration_text()}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"seconds": round(self.seconds, 1), "executor": self.executor,
                "estimate": self.estimate.to_dict() if self.estimate else None,
                "progress": self.progress.to_dict() if self.progress else None,
                "runs": [asdict(o) for o in self.outcomes]}


def validate_params(specs: Sequence[RunSpec]) -> list:
    """Every run's configuration (:func:`fedrs.runs.load_run_config`), read before anything runs;
    one :class:`SweepError` lists every invalid params file (each with its key and fix)."""
    from fedrs.runs import load_run_config

    configs, problems = [], []
    for spec in specs:
        try:
            configs.append(load_run_config(spec.params))
        except FedrsError as exc:
            problems.append(str(exc))
    if problems:
        raise SweepError(f"{len(problems)} of {len(specs)} params files are invalid, nothing was run: "
                         + "; ".join(problems))
    return configs


def ensure_inputs(configs: Sequence) -> None:
    """Make what the runs share ready once, before any kernel starts: every dataset they read
    imported (:func:`fedrs.data.ensure_datasets`) and every offline backbone they load built
    (:func:`fedrs.pretrain.ensure_offline_backbone`), in the checkout's roots the kernels use
    (:func:`fedrs.study.use_project_roots`). Each kernel's own check is then a no-op, so parallel
    kernels never import the same archive or pretrain the same backbone at once."""
    from fedrs.backbone.factory import OFFLINE_MODELS

    if not configs:
        return
    use_project_roots()
    datasets = sorted({name for cfg in configs for name in (cfg.data.cross_domain or [cfg.data.dataset])})
    models = sorted({cfg.backbone.model for cfg in configs
                     if cfg.backbone.pretrained is None and cfg.backbone.model in OFFLINE_MODELS})
    from fedrs.data import ensure_datasets

    ensure_datasets(datasets, progress=False)
    if models:
        from fedrs.pretrain import ensure_offline_backbone

        for model in models:
            ensure_offline_backbone(model)


def offline_backbone_label(model: str) -> str | None:
    """The label (``model/offline-<sha256[:8]>``, as :attr:`fedrs.backbone.factory.Backbone.label`
    names it) of this machine's build of the offline backbone ``model``; None when not built."""
    from fedrs.backbone.factory import CHECKPOINT_NAME, file_fingerprint
    from fedrs.paths import models_root

    checkpoint = models_root() / model / CHECKPOINT_NAME
    return f"{model}/offline-{file_fingerprint(checkpoint)[:8]}" if checkpoint.is_file() else None


def check_committed_backbones(configs: Sequence, committed: Sequence[RunSpec]) -> None:
    """Continuing a committed study here must not mix backbones: every offline backbone the runs
    to execute load (``configs``) has to be the very build the committed runs of that model were
    trained on (their ``metrics.json`` ``backbone`` label carries the checkpoint's sha256 prefix).
    Pretraining is bit-identical only with the same torch build and CPU, so another machine can
    build another checkpoint under the same name. Raises :class:`SweepError` naming both builds."""
    from fedrs.backbone.factory import OFFLINE_MODELS

    models = sorted({cfg.backbone.model for cfg in configs
                     if cfg.backbone.pretrained is None and cfg.backbone.model in OFFLINE_MODELS})
    if not models:
        return
    used: dict[str, set[str]] = {}
    for spec in committed:
        try:
            label = json.loads((spec.out_dir / "metrics.json").read_text(encoding="utf-8")).get("backbone")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(label, str) and "/offline-" in label:
            used.setdefault(label.split("/offline-")[0], set()).add(label)
    for model in models:
        here = offline_backbone_label(model)
        theirs = sorted(used.get(model, ()))
        if theirs and here not in theirs:
            raise SweepError(
                f"the committed runs were trained on {', '.join(theirs)} but this machine's {model} is "
                f"{here or 'not built'}: new runs would use another checkpoint than the runs they are compared "
                f"with (pretraining is bit-identical only with the same torch build and CPU). Put that "
                f"checkpoint at {model}/open_clip_model.pt under $FEDRS_MODELS, or drop --keep-committed to "
                f"rerun every run here on this machine's build")


class SweepInterrupted(KeyboardInterrupt):
    """The sweep received SIGTERM or SIGHUP: it stops its process tree and ends like a Ctrl-C."""


@contextmanager
def _process_tree(grace: float = 5.0) -> Iterator[None]:
    """Mark every process started inside (worker processes, and the Jupyter kernels they start)
    as one tree that dies with this process: a :class:`~fedrs.procs.Watchdog` stops it when the
    block ends (normally or by an exception: Ctrl-C, or SIGTERM/SIGHUP turned into
    :class:`SweepInterrupted`) and when this process is killed outright (SIGKILL)."""
    from multiprocessing import resource_tracker

    # the pool's resource tracker is this process's helper for the whole session, not part of the
    # tree: started before the marker is set, it is not stopped with the tree
    resource_tracker.ensure_running()
    token = f"sweep-{os.getpid()}-{secrets.token_hex(8)}"
    dog = Watchdog(token, grace=grace)
    saved_env = os.environ.get(MARKER_VAR)
    os.environ[MARKER_VAR] = token  # inherited by the workers and, through them, the kernels
    handlers = {}

    def interrupted(signum, frame):
        raise SweepInterrupted(f"received {signal.Signals(signum).name}")

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            handlers[sig] = signal.signal(sig, interrupted)
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if saved_env is None:
            os.environ.pop(MARKER_VAR, None)
        else:
            os.environ[MARKER_VAR] = saved_env
        dog.close()  # stops whatever of the tree is still running, then returns


#: the ``backbone.device`` settings that may land on a GPU (an explicit ``cuda:<i>`` is left alone)
ROUND_ROBIN_DEVICES = ("cuda", "auto")


def estimate_seconds(spec: RunSpec, done_rounds: int = 0) -> float:
    """The cost model's seconds for ``spec``'s run (:func:`fedrs.study.cost.estimate_run_seconds`
    of its params file), its rounds from ``done_rounds`` on."""
    return estimate_run_seconds(yaml.safe_load(spec.params.read_text(encoding="utf-8")) or {}, done_rounds)


def measured_seconds(out_dir: Path) -> float | None:
    """A finished run's wall time: ``metrics.json``'s ``wall_time_s``, else the seconds its
    ``sweep.json`` recorded; None without either."""
    for name, key in (("metrics.json", "wall_time_s"), (STATUS_FILE, "seconds")):
        try:
            value = json.loads((out_dir / name).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    return None


def finished_rounds(out_dir: Path) -> int:
    """The last round an interrupted run finished (``rounds.csv``), 0 when none."""
    try:
        with open(out_dir / "rounds.csv", newline="", encoding="utf-8") as fh:
            return max((int(row["round"]) for row in csv.DictReader(fh) if row.get("round", "").isdigit()),
                       default=0)
    except (OSError, ValueError, KeyError):
        return 0


@dataclass
class SweepClock:
    """A sweep's progress and time left (:func:`fedrs.study.cost.time_left`) as its runs end.

    ``remaining``: the cost model's seconds of each run still to execute (label -> seconds, a
    resumed run's rounds left only); ``full``: each one's whole-run estimate, what its measured
    wall time is compared with; ``finished``: ``(estimated, measured)`` seconds of the finished
    runs so far (those complete on disk when the sweep starts)."""

    remaining: dict[str, float]
    full: dict[str, float]
    finished: list[tuple[float, float]]
    jobs: int
    done: int
    total: int
    started: dict[str, float] = field(default_factory=dict)

    def start(self, label: str, now: float | None = None) -> None:
        """``label``'s run starts executing now."""
        self.started[label] = time.time() if now is None else now

    def end(self, outcome: RunOutcome) -> None:
        """A run ended (any outcome); a done run with a measured wall time calibrates the model."""
        self.done += 1
        self.started.pop(outcome.label, None)
        self.remaining.pop(outcome.label, None)
        if outcome.status == "done":
            measured = measured_seconds(Path(outcome.out_dir)) or outcome.seconds
            if measured and outcome.label in self.full:
                self.finished.append((self.full[outcome.label], measured))

    def now(self, at: float | None = None) -> TimeLeft:
        at = time.time() if at is None else at
        labels = sorted(self.remaining, key=lambda label: label not in self.started)  # running ones first
        elapsed = [at - self.started[label] for label in labels if label in self.started]
        return time_left([self.remaining[label] for label in labels], self.finished, self.jobs,
                         self.done, self.total, elapsed)


# --- where a tier stands, without executing anything ------------------------------------------

#: run statuses a status table shows, in its column order (:func:`run_status`)
STATUS_COLUMNS: tuple[Status, ...] = ("complete", "committed", "partial", "busy", "new", "stale")


@dataclass
class StudyProgress:
    """One study folder of a sweep (``full/1_methods``): how many runs are in each
    :func:`run_status`, the measured wall seconds of its finished runs (complete or committed:
    :func:`measured_seconds`) against the cost model's seconds of the same runs, and the
    calibrated core-seconds its runs left still need (a partial or busy run: its rounds left)."""

    study: str
    counts: dict[str, int]
    measured_s: float = 0.0
    estimated_done_s: float = 0.0
    left_core_s: float = 0.0

    @property
    def runs(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict:
        return {"study": self.study, "runs": self.runs, "counts": dict(self.counts),
                "measured_hours": round(self.measured_s / 3600, 3),
                "estimated_hours_of_measured": round(self.estimated_done_s / 3600, 3),
                "left_core_hours": round(self.left_core_s / 3600, 3)}


@dataclass
class SweepStatus:
    """``fedrs sweep PARAMS --status``: every study folder's :class:`StudyProgress` and the whole
    sweep's time left at ``jobs`` parallel runs (:func:`fedrs.study.cost.time_left`)."""

    studies: list[StudyProgress]
    left: TimeLeft

    def text(self) -> str:
        import pandas as pd

        rows = []
        for st in self.studies + [self._total()]:
            ratio = f"x{st.measured_s / st.estimated_done_s:.2f}" if st.estimated_done_s > 0 else "-"
            rows.append({"study": st.study, "runs": st.runs, **{k: st.counts.get(k, 0) for k in STATUS_COLUMNS},
                         "measured job-h": f"{st.measured_s / 3600:.2f}", "x estimate": ratio,
                         "left core-h": f"{st.left_core_s / 3600:.1f}"})
        lines = [pd.DataFrame(rows).to_string(index=False)]
        lines.append(f"sweep status: {self.left.text()} at {self.left.jobs} job{'s' if self.left.jobs != 1 else ''}"
                     if self.left.done < self.left.total else f"sweep status: {self.left.text()}")
        lines.append("  measured job-h: wall hours of the finished runs (complete or committed), each on its "
                     "share of the cores; x estimate: those hours over the cost model's; left core-h: the cost "
                     "model's hours of the runs left, scaled by that calibration")
        return "\n".join(lines)

    def _total(self) -> StudyProgress:
        total = StudyProgress("all", {k: sum(st.counts.get(k, 0) for st in self.studies) for k in STATUS_COLUMNS})
        total.measured_s = sum(st.measured_s for st in self.studies)
        total.estimated_done_s = sum(st.estimated_done_s for st in self.studies)
        total.left_core_s = sum(st.left_core_s for st in self.studies)
        return total

    def to_dict(self) -> dict:
        return {"studies": [st.to_dict() for st in self.studies], "all": self._total().to_dict(),
                "left": self.left.to_dict()}


def sweep_status(params: Sequence[str | Path], study: str | None = None, results: str | Path | None = None,
                 jobs: int = 1, keep_committed: bool = False) -> SweepStatus:
    """Where the sweep of ``params`` stands, from its run folders alone: nothing is validated,
    imported, locked or executed, so it is safe beside a running sweep. Done: the complete runs.
    Left: what a sweep here would still execute (new runs, partial and busy ones from their last
    finished round, committed ones from scratch: :func:`run_status`); stale ones wait for
    ``--force``; with ``keep_committed`` committed runs are done, not left, as that sweep would
    skip them. The runs left are estimated with the cost model as :func:`sweep` does, calibrated
    per kind of run on the finished runs' measured wall times; unlike a sweep, which calibrates on
    the runs complete here only, this also counts committed runs' wall times (real measurements
    of the same configurations, the only ones a fresh clone has)."""
    specs = plan(params, study, results)
    per_study: dict[str, StudyProgress] = {}
    finished: list[tuple[float, float]] = []
    left: list[tuple[str, float]] = []  # (study, estimated seconds) of each run left
    for spec in specs:
        st = per_study.setdefault(spec.study, StudyProgress(spec.study, {k: 0 for k in STATUS_COLUMNS}))
        status = run_status(spec)
        st.counts[status] = st.counts.get(status, 0) + 1
        measured = measured_seconds(spec.out_dir) if status in ("complete", "committed") else None
        if measured:  # calibrates the estimate, as a sweep's finished runs do
            estimate = estimate_seconds(spec)
            finished.append((estimate, measured))
            st.measured_s += measured
            st.estimated_done_s += float(estimate)
        executes = ("new", "partial", "busy") if keep_committed else ("committed", "new", "partial", "busy")
        if status in executes:  # what a sweep here still executes
            resume_from = finished_rounds(spec.out_dir) if status in ("partial", "busy") else 0
            left.append((spec.study, estimate_seconds(spec, resume_from)))
    done = sum(st.counts["complete"] + (st.counts["committed"] if keep_committed else 0)
               for st in per_study.values())
    for name, st in per_study.items():
        remaining = [seconds for s, seconds in left if s == name]
        st.left_core_s = time_left(remaining, finished, 1, 0, len(remaining)).seconds if remaining else 0.0
    return SweepStatus(list(per_study.values()),
                       time_left([seconds for _, seconds in left], finished, max(1, jobs), done, len(specs)))


def sweep(params: Sequence[str | Path], study: str | None = None, results: str | Path | None = None,
          jobs: int = 1, notebook: str | Path | None = None, kernel: str | None = DEFAULT_KERNEL,
          timeout: float | None = None, force: bool = False, progress: bool = True,
          executor: str = "local", job_options: executors.JobOptions | None = None,
          keep_committed: bool = False) -> SweepSummary:
    """Execute every params file's run (see the module docstring); returns the outcomes.

    ``keep_committed``: committed run folders (no ``sweep.json``: results another machine made and
    git brought) are skipped like complete ones instead of executed again, so a fresh clone
    continues the committed study; raises :class:`SweepError` when this machine's offline backbone
    is not the build those runs were trained on (:func:`check_committed_backbones`).

    ``executor``: ``local`` (``jobs`` worker processes), ``submitit-local`` or ``slurm``
    (:mod:`fedrs.study.executors`: at most ``jobs`` submitted at once, ``job_options`` their
    scheduler options). ``progress``: a progress bar; without it, one log line per finished run."""
    from tqdm.auto import tqdm

    from fedrs.paths import results_root

    job_options = job_options or executors.JobOptions()
    executors.check_executor(executor, job_options)
    notebook = Path(notebook) if notebook else default_notebook()
    if not notebook.is_file():
        raise SweepError(f"run notebook {notebook} not found: pass --notebook PATH")
    specs = plan(params, study, results)
    configs = dict(zip(specs, validate_params(specs)))
    started = time.time()
    outcomes: dict[str, RunOutcome] = {}
    todo: list[tuple[RunSpec, bool, bool]] = []  # (run, resume, start from an empty folder)
    calibration: list[tuple[float, float]] = []  # (estimated, measured) seconds of complete runs on disk
    kept: list[RunSpec] = []  # committed runs counted as finished (keep_committed)
    for spec in specs:
        status = run_status(spec)
        if status == "busy":
            outcomes[spec.label] = _busy(spec, lock_owner(spec) or {"pid": "?", "host": "?"})
        elif status == "committed" and keep_committed and not force:
            outcomes[spec.label] = RunOutcome(spec.label, "skipped", str(spec.out_dir))
            kept.append(spec)
            measured = measured_seconds(spec.out_dir)
            if measured:
                calibration.append((estimate_seconds(spec), measured))
        elif status == "committed" or (force and status != "new"):
            todo.append((spec, False, True))
        elif status == "complete":
            outcomes[spec.label] = RunOutcome(spec.label, "skipped", str(spec.out_dir))
            measured = measured_seconds(spec.out_dir)
            if measured:
                calibration.append((estimate_seconds(spec), measured))
        elif status == "stale":
            outcomes[spec.label] = RunOutcome(
                spec.label, "failed", str(spec.out_dir),
                error=f"{spec.params} changed after this run completed: pass --force to rerun it "
                      f"from scratch (or delete {spec.out_dir})")
        else:
            todo.append((spec, status == "partial", False))
    ensure_inputs([configs[spec] for spec, _, _ in todo])
    if kept and todo:
        check_committed_backbones([configs[spec] for spec, _, _ in todo], kept)
    jobs = max(1, min(jobs, len(todo) or 1))
    if executor == "slurm":
        threads = job_options.cpus  # the job's own cores (None: the kernel's default)
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
    clock = SweepClock(
        remaining={spec.label: estimate_seconds(spec, finished_rounds(spec.out_dir) if resume else 0)
                   for spec, resume, _ in todo},
        full={spec.label: estimate_seconds(spec) for spec, _, _ in todo},
        finished=calibration, jobs=jobs, done=len(outcomes), total=len(specs))
    estimate = clock.now()
    logger.info("sweep: %d runs, %d to execute (%s, %d at once): %s", len(specs), len(todo), executor, jobs,
                estimate.text())
    # several GPUs and parallel local runs: each run slot its own GPU
    gpu_runs = [spec for spec, _, _ in todo if configs[spec].backbone.device in ROUND_ROBIN_DEVICES]
    devices = executors.visible_cuda_devices() if executor == "local" and jobs > 1 and gpu_runs else []
    if len(devices) > 1:
        logger.info("sweep: %d GPUs visible (%s): run slot i of %d uses GPU i mod %d", len(devices),
                    ",".join(devices), jobs, len(devices))

    bar = tqdm(total=len(specs), initial=len(outcomes), unit="run", desc="sweep", disable=not progress)

    def show() -> None:
        left = clock.now()
        failed = sum(o.status == "failed" for o in outcomes.values())
        bar.set_postfix_str(f"failed={failed}" + ("" if left.done >= left.total else f", {left.left_text()}"))

    def record(outcome: RunOutcome) -> None:
        outcomes[outcome.label] = outcome
        clock.end(outcome)
        bar.update(1)
        show()
        if outcome.status == "failed":
            job_log = f", job log: {outcome.job_log}" if outcome.job_log else ""
            bar.write(f"FAILED {outcome.label}: {outcome.error} (log: {outcome.log}{job_log})")
        if not progress:
            logger.info("%s: %s", outcome.label, clock.now().text())

    show()
    try:
        with _process_tree():
            pool = executors.open_pool(executor, jobs, Path(results or results_root()) / executors.SUBMITIT_FOLDER,
                                       job_options)
            try:
                queue = deque(todo)
                free_slots = list(range(jobs))
                running: dict = {}  # pool handle -> (run, slot)
                while queue or running:
                    while queue and free_slots:
                        spec, resume, fresh = queue.popleft()
                        slot = free_slots.pop(0)
                        env = (executors.gpu_environment(slot, devices)
                               if configs[spec].backbone.device in ROUND_ROBIN_DEVICES else {})
                        job = RunJob(spec, notebook, resume, fresh, kernel, timeout, threads,
                                     tuple(sorted(env.items())))
                        running[pool.submit(job, name=f"fedrs:{spec.label}")] = (spec, slot)
                        if pool.starts_on_submit:
                            clock.start(spec.label)
                    for handle in pool.wait(set(running)):
                        spec, slot = running.pop(handle)
                        free_slots.append(slot)
                        free_slots.sort()
                        try:
                            outcome = pool.result(handle)
                        except executors.JobCrashed as exc:  # a crashed worker or job is one failed run
                            outcome = RunOutcome(spec.label, "failed", str(spec.out_dir), error=str(exc),
                                                 log=str(spec.out_dir / LOG_FILE), job_log=exc.log)
                        outcome.job_log = outcome.job_log or pool.log(handle)
                        record(outcome)
            except BaseException:
                # interrupted: drop what has not started, cancel submitted jobs; the local process
                # tree (workers, kernels, local jobs) is stopped by _process_tree on the way out
                pool.close(cancel=True)
                raise
            pool.close()
    finally:
        bar.close()
    ordered = [outcomes[s.label] for s in specs if s.label in outcomes]
    return SweepSummary(ordered, time.time() - started, estimate, clock.now(), executor)


__all__ = ["ROUND_ROBIN_DEVICES", "RunJob", "RunOutcome", "RunSpec", "SweepClock", "SweepError", "SweepInterrupted",
           "SweepSummary", "acquire_lock", "default_notebook", "ensure_inputs", "estimate_seconds", "execute_run",
           "expand_params", "finished_rounds", "lock_owner", "lock_path", "measured_seconds", "plan", "release_lock",
           "run_status", "slurm_job_alive", "study_of", "sweep", "validate_params"]
