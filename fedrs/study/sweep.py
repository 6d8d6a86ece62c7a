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
  and ``git diff results/`` then shows whether the regeneration matched.
* Runs execute in ``jobs`` parallel worker processes, each kernel limited to its share of CPU
  threads (``OMP_NUM_THREADS``). A failed run does not stop the others; its ``sweep.log`` and
  partially executed notebook are kept, and the summary names them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable, Iterator, Literal, Sequence

from fedrs.errors import FedrsError
from fedrs.io import write_json_atomic
from fedrs.study import find_project_file, project_root

NOTEBOOK_NAME = "02_federated_run.ipynb"
STATUS_FILE = "sweep.json"
LOG_FILE = "sweep.log"
DEFAULT_KERNEL = "python3"  # the kernel of the running interpreter (the project's venv)

Status = Literal["complete", "partial", "new", "stale", "committed"]


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
            found = sorted(f for f in p.rglob("*.yaml") if not any(part.startswith("_") for part in f.relative_to(p).parts))
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
    ``committed`` (results not executed in this checkout: rerun from scratch) or ``new``."""
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


# --- executing one run ------------------------------------------------------------------------

@dataclass
class RunOutcome:
    label: str
    status: Literal["done", "skipped", "failed"]
    out_dir: str
    seconds: float = 0.0
    error: str = ""
    log: str = ""
    resumed: bool = False


def execute_run(spec: RunSpec, notebook: str | Path, resume: bool, kernel: str | None = DEFAULT_KERNEL,
                timeout: float | None = None, threads: int | None = None, capture_fd: bool = False,
                fresh: bool = False) -> RunOutcome:
    """Execute the run notebook for one params file; never raises (failures become outcomes).

    ``capture_fd`` (worker processes) also sends this process's file descriptor 2 to the run's
    log, so the kernel's own messages land there instead of under the progress bar. ``fresh``
    empties the run folder first (committed or forced runs), only when this run starts, so an
    interrupted sweep leaves the runs it did not reach as they were."""
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
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(threads))
    error = ""
    with open(log, "a", encoding="utf-8") as fh, _stderr_to(fh if capture_fd else None):
        fh.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {spec.label} "
                 f"({'resume' if resume else 'start'}) params={spec.params}\n")
        fh.flush()
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
            error = _one_line(exc)
            fh.write("\n" + "".join(traceback.format_exception(exc)))
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


# --- the sweep --------------------------------------------------------------------------------

@dataclass
class SweepSummary:
    outcomes: list[RunOutcome]
    seconds: float

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def text(self) -> str:
        lines = [f"sweep: {len(self.outcomes)} runs in {self.seconds / 60:.1f} min: "
                 f"{self.count('done')} done ({sum(o.resumed for o in self.outcomes if o.status == 'done')} resumed), "
                 f"{self.count('skipped')} skipped (complete), {self.count('failed')} failed"]
        for o in self.failed:
            lines.append(f"  FAILED {o.label}: {o.error}")
            if o.log:
                lines.append(f"         log: {o.log}")
        if self.failed:
            lines.append("  re-run the same command to retry the failed runs (completed runs are skipped)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"seconds": round(self.seconds, 1), "runs": [asdict(o) for o in self.outcomes]}


def sweep(params: Sequence[str | Path], study: str | None = None, results: str | Path | None = None,
          jobs: int = 1, notebook: str | Path | None = None, kernel: str | None = DEFAULT_KERNEL,
          timeout: float | None = None, force: bool = False, progress: bool = True) -> SweepSummary:
    """Execute every params file's run (see the module docstring); returns the outcomes."""
    from tqdm.auto import tqdm

    notebook = Path(notebook) if notebook else default_notebook()
    if not notebook.is_file():
        raise SweepError(f"run notebook {notebook} not found: pass --notebook PATH")
    specs = plan(params, study, results)
    started = time.time()
    outcomes: dict[str, RunOutcome] = {}
    todo: list[tuple[RunSpec, bool, bool]] = []  # (run, resume, start from an empty folder)
    for spec in specs:
        status = run_status(spec)
        if status == "committed" or (force and status != "new"):
            todo.append((spec, False, True))
        elif status == "complete":
            outcomes[spec.label] = RunOutcome(spec.label, "skipped", str(spec.out_dir))
        elif status == "stale":
            outcomes[spec.label] = RunOutcome(
                spec.label, "failed", str(spec.out_dir),
                error=f"{spec.params} changed after this run completed: pass --force to rerun it "
                      f"from scratch (or delete {spec.out_dir})")
        else:
            todo.append((spec, status == "partial", False))
    jobs = max(1, min(jobs, len(todo) or 1))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    bar = tqdm(total=len(specs), initial=len(outcomes), unit="run", desc="sweep", disable=not progress)
    bar.set_postfix(failed=sum(o.status == "failed" for o in outcomes.values()))

    def record(outcome: RunOutcome) -> None:
        outcomes[outcome.label] = outcome
        bar.update(1)
        bar.set_postfix(failed=sum(o.status == "failed" for o in outcomes.values()))
        if outcome.status == "failed":
            bar.write(f"FAILED {outcome.label}: {outcome.error} (log: {outcome.log})")

    try:
        # always worker processes: a crashing kernel or library cannot take the sweep down, and
        # each worker's stderr goes to its run's log
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures: dict[Future, RunSpec] = {
                pool.submit(execute_run, spec, notebook, resume, kernel, timeout, threads, True, fresh): spec
                for spec, resume, fresh in todo
            }
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    spec = futures[fut]
                    try:
                        record(fut.result())
                    except Exception as exc:  # noqa: BLE001 - a crashed worker is one failed run
                        record(RunOutcome(spec.label, "failed", str(spec.out_dir), error=_one_line(exc),
                                          log=str(spec.out_dir / LOG_FILE)))
    finally:
        bar.close()
    ordered = [outcomes[s.label] for s in specs if s.label in outcomes]
    return SweepSummary(ordered, time.time() - started)


__all__ = ["RunOutcome", "RunSpec", "SweepError", "SweepSummary", "default_notebook", "execute_run",
           "expand_params", "plan", "run_status", "study_of", "sweep"]
