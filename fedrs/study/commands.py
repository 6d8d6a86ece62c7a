"""``fedrs sweep`` (batches of runs through the run notebook) and ``fedrs report`` (tables, figures)."""

from __future__ import annotations

import argparse
import json
import sys


def _positive(kind):
    """An argparse type: a number of ``kind`` greater than 0."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    return parse


def _non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def cmd_sweep(args: argparse.Namespace) -> int:
    from fedrs.study.executors import JobOptions
    from fedrs.study.sweep import sweep, sweep_status

    if args.status:
        status = sweep_status(args.params, study=args.study, results=args.results, jobs=args.jobs,
                              keep_committed=args.keep_committed)
        print(status.text())
        if args.json:
            print(json.dumps(status.to_dict(), indent=2))
        return 0
    options = JobOptions(partition=args.slurm_partition, time_min=args.slurm_time, cpus=args.slurm_cpus,
                         gpus=args.slurm_gpus)
    summary = sweep(args.params, study=args.study, results=args.results, jobs=args.jobs,
                    notebook=args.notebook, kernel=args.kernel, timeout=args.timeout,
                    force=args.force, progress=not args.no_progress, executor=args.executor, job_options=options,
                    keep_committed=args.keep_committed)
    print(summary.text())
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    return 1 if summary.failed or summary.busy else 0  # 0: every run is complete


def cmd_report(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from pathlib import Path

    from fedrs.study.collect import ReportError
    from fedrs.study.report import write_report

    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ReportError(f"report --out is a file ({args.out}): give a folder (tables/ and figures/ go inside it)")
    if _report_retrieval(args):
        return 0
    report = write_report(args.results_dir, out_dir=args.out, figures=not args.no_figures)
    for table in report.tables.values():
        print(table.to_markdown())
    backbones = ", ".join(sorted(report.runs["backbone"].unique()))
    skipped = report.runs.attrs.get("skipped", [])
    note = f", {len(skipped)} damaged run folder(s) skipped (see above)" if skipped else ""
    print(f"{len(report.runs)} runs ({backbones}){note} -> {len(report.files)} files:", file=sys.stderr)
    for path in report.files:
        print(f"  {path}", file=sys.stderr)
    for path in report.removed:
        print(f"  removed {path} (no run folder gives it any more)", file=sys.stderr)
    return 0


def _report_retrieval(args: argparse.Namespace) -> bool:
    """Write the retrieval table when RESULTS_DIR holds retrieval results (PETL row files or
    ``pe-rsitr`` run folders: :func:`fedrs.retrieval.report.write_retrieval_report`); False when it
    holds none. A folder mixing retrieval and classification runs is refused."""
    from pathlib import Path

    from fedrs.retrieval.report import is_petl_folder, retrieval_run_dirs, write_retrieval_report
    from fedrs.study.collect import ReportError, find_run_dirs

    folder = Path(args.results_dir)
    if not folder.is_dir():
        return False  # the study report says what is missing
    retrieval = retrieval_run_dirs(folder)
    if not retrieval and not is_petl_folder(folder):
        return False
    others = [d for d in find_run_dirs(folder) if d not in set(retrieval)]
    if others:
        raise ReportError(f"{folder} holds both retrieval runs ({len(retrieval)}) and other runs ({len(others)}, e.g. "
                          f"{others[0]}): report each kind from a folder of its own")
    if args.out is not None:
        raise ReportError("report --out is for study folders: a retrieval table is written into its own folder; "
                          "leave --out out")
    files = write_retrieval_report(folder)
    md = next(p for p in files if p.suffix == ".md")
    print(md.read_text(encoding="utf-8"))
    print(f"-> {len(files)} files:", file=sys.stderr)
    for path in files:
        print(f"  {path}", file=sys.stderr)
    return True


def register(sub) -> None:
    p = sub.add_parser(
        "sweep", help="execute the run notebook once per params file (papermill), skipping complete runs",
        description="Execute notebooks/02_federated_run.ipynb through papermill once per params YAML into "
                    "RESULTS/<study>/<run>/ (executed notebook, params.yaml, metrics.json, rounds.csv, "
                    "env.json, sweep.log). Every params file is validated and the datasets and offline "
                    "backbones the runs need are made ready before any run starts. Complete runs are "
                    "skipped, interrupted ones resumed, runs another sweep is executing left alone (busy); "
                    "a failed run does not stop the others, and the exit status is 1 if any failed or was "
                    "busy. Stopping the sweep (Ctrl-C, SIGTERM, even SIGKILL) stops its kernels too. Progress "
                    "shows the time left: the cost model's estimate, calibrated on the runs finished so far. "
                    "--executor slurm submits each run as a Slurm job through submitit (pip install submitit) "
                    "from a cluster's login node; --executor submitit-local runs the same path on this machine.")
    p.add_argument("params", nargs="+", metavar="PARAMS",
                   help="params YAML files or folders (folders: every *.yaml below, except _* bases)")
    p.add_argument("--study", help="results sub-folder (default: the YAML's folder below params/studies/)")
    p.add_argument("--results", metavar="DIR", help="results root (default: $FEDRS_RESULTS or results/)")
    p.add_argument("--jobs", "-j", type=_positive(int), default=1,
                   help="runs in parallel (default 1): local worker processes, or submitted jobs at once; with "
                        "several GPUs visible, local run slot i uses GPU i mod n")
    p.add_argument("--executor", choices=("local", "submitit-local", "slurm"), default="local",
                   help="where runs execute: local (default: worker processes here), slurm (one Slurm job per "
                        "run through submitit; job files in RESULTS/.submitit/), submitit-local (the same "
                        "path as local processes, for trying it without a cluster)")
    p.add_argument("--slurm-partition", metavar="NAME", help="Slurm partition of the jobs (--executor slurm)")
    p.add_argument("--slurm-time", type=_positive(int), metavar="MIN",
                   help="time limit of one run's job in minutes (default 240; a run cut off by it is requeued "
                        "and resumes from its last finished round)")
    p.add_argument("--slurm-cpus", type=_positive(int), metavar="N",
                   help="CPU cores per job, also the run's thread count (--executor slurm)")
    p.add_argument("--slurm-gpus", type=_non_negative_int, metavar="N", help="GPUs per job")
    p.add_argument("--notebook", help="run notebook (default: notebooks/02_federated_run.ipynb)")
    p.add_argument("--kernel", default="python3",
                   help="Jupyter kernel (default python3: this interpreter, i.e. the project's venv)")
    p.add_argument("--timeout", type=_positive(float), default=None, help="seconds per notebook cell (default: none)")
    p.add_argument("--force", action="store_true", help="rerun the given runs from scratch, even complete ones")
    p.add_argument("--keep-committed", action="store_true",
                   help="continue a study other machines started: committed run folders (a clone's results, no "
                        "sweep.json) count as finished instead of being executed again; the sweep stops first "
                        "if this machine's offline backbone is another build than the one they were trained on")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--status", action="store_true",
                   help="execute nothing: print each study folder's runs by status (complete, committed, partial, "
                        "busy, new, stale), the measured hours of its finished runs against the cost model's, "
                        "and the hours left (at --jobs runs at once); safe beside a running sweep")
    p.add_argument("--json", action="store_true", help="also print the outcomes (or the --status) as JSON")
    p.set_defaults(func=cmd_sweep, console_loggers=("fedrs.study",))

    r = sub.add_parser(
        "report", help="tables (CSV + Markdown) and figures (PNG + PDF) from every run folder",
        description="Read every run folder (metrics.json + params.yaml [+ rounds.csv]) under RESULTS_DIR and "
                    "write RESULTS_DIR/tables/{methods,constraints,prompt_length,communication,runs}.{csv,md} "
                    "and RESULTS_DIR/figures/*.{png,pdf}. A retrieval folder gets its own table: PETL row files "
                    "(fedrs retrieval petl) -> RESULTS_DIR/petl_table.{md,csv}; federated-retrieval run folders "
                    "(method pe-rsitr) -> RESULTS_DIR/tables/federated.{md,csv}. Deterministic: regenerated "
                    "files equal committed ones.")
    r.add_argument("results_dir", metavar="RESULTS_DIR", help="folder holding the run folders (e.g. results)")
    r.add_argument("--out", help="where tables/ and figures/ go (default: RESULTS_DIR)")
    r.add_argument("--no-figures", action="store_true", help="tables only")
    r.set_defaults(func=cmd_report, console_loggers=("fedrs.study",))
