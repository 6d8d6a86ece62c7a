"""Baselines table: the seven methods of the study on Fed-UCMerced, Dirichlet 0.5, 10 clients.

Runs ``params/offline/<method>_ucmerced.yaml`` (zero-shot, local-only, PromptFL, FedPGP-style,
FedOTP-style, FedRSCLIP, centralised) through ``run_experiment`` (what ``fedrs run`` calls) for
several training seeds (prompt init and batch order; the partition stays ``data.seed``), with the
shared ``train`` section overridden the same way for every method. The table is the study's own
methods table, built from those run folders by the same code as ``fedrs report``
(:mod:`fedrs.study`: one summary, mean +- sample std over seeds, one Markdown and CSV writer), plus
the benchmark's wall times, into ``results/baselines/``:

* ``tables/methods.{csv,md}``    personalised and global accuracy, uploaded values per client per round
* ``tables/wall_time.{csv,md}``  wall time per run (backbone/feature setup + rounds), with the command
* ``tables/runs.csv``            one row per run

    .venv/bin/python benchmarks/bench_baselines.py                       # 3 seeds, the YAMLs' rounds
    .venv/bin/python benchmarks/bench_baselines.py --rounds 5 --local-epochs 2 --seeds 0 1 2
    .venv/bin/python benchmarks/bench_baselines.py --methods promptfl fedpgp --seeds 0   # a subset

Run folders go to ``--runs`` (default ``$FEDRS_CACHE/bench_baselines``); a finished folder with
the same parameters is reused, so an interrupted table resumes where it stopped (``--force``
re-runs). Wall times are whatever the machine gave while the run was going (2 shared cores here).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

from fedrs.experiment import run_experiment
from fedrs.paths import cache_root, results_root
from fedrs.runs import load_run_config
from fedrs.study.collect import SETTING, read_runs
from fedrs.study.report import write_runs_table, write_tables
from fedrs.study.tables import Table, fmt_mean_std, methods_table, summarise
from fedrs.study.vocabulary import METHODS, method_label

REPO = Path(__file__).resolve().parents[1]


def run_method(method: str, seeds: list[int], overrides: dict, runs: Path, force: bool) -> list[Path]:
    """Run one method for every seed; its run folders."""
    folders = []
    for seed in seeds:
        cfg = load_run_config(REPO / "params" / "offline" / f"{method}_ucmerced.yaml",
                              {**overrides, "train.seed": seed})
        folder = runs / f"{method}_seed{seed}"
        m = run_experiment(cfg, folder, progress=False, force=force)
        print(f"{method:12s} seed {seed}: personalised {m['personalised_accuracy']:.4f}  global "
              f"{m['global_accuracy']:.4f}  up {m['upload_values_per_client_round']}  "
              f"{m['wall_time_s']:.1f} s", flush=True)
        folders.append(folder)
    return folders


def wall_time_table(runs: pd.DataFrame, note: str) -> Table:
    """Wall time per run (s), mean +- sample std over seeds, per method (the study's summary)."""
    s = summarise(runs, SETTING + ["method"], values=("wall_s",))
    sections = []
    for backbone, part in s.groupby("backbone", sort=True):
        sections.append((f"backbone `{backbone}`", pd.DataFrame({
            "Method": part["method"].map(method_label).values,
            "Seeds": part["seeds"].astype(str).values,
            "Wall time / run (s)": [fmt_mean_std(m, sd, digits=1)
                                    for m, sd in zip(part["wall_s_mean"], part["wall_s_std"])],
        })))
    return Table("wall_time", "Wall time per run", s, note, sections)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--rounds", type=int, help="override train.rounds for every method")
    p.add_argument("--local-epochs", type=int, help="override train.local_epochs for every method")
    p.add_argument("--lr", type=float, help="override train.lr for every method")
    p.add_argument("--runs", type=Path, default=None, help="run folders (default $FEDRS_CACHE/bench_baselines)")
    p.add_argument("--out", type=Path, default=None, help="table folder (default results/baselines)")
    p.add_argument("--force", action="store_true", help="re-run finished run folders")
    p.add_argument("--threads", type=int, help="torch threads (default torch's; 1 is faster on a busy machine)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    overrides = {k: v for k, v in (("train.rounds", args.rounds), ("train.local_epochs", args.local_epochs),
                                   ("train.lr", args.lr)) if v is not None}
    run_root = args.runs or cache_root() / "bench_baselines"
    folders = [f for m in args.methods for f in run_method(m, args.seeds, overrides, run_root, args.force)]

    runs = read_runs(folders, run_root)
    cfg = load_run_config(REPO / "params" / "offline" / f"{args.methods[0]}_ucmerced.yaml", overrides)
    command = "python benchmarks/bench_baselines.py " + " ".join(argv if argv is not None else sys.argv[1:])
    note = (f"Wall time = backbone/feature setup + rounds, mean ± sample std over training seeds "
            f"{' '.join(map(str, args.seeds))} (the partition is fixed), on a shared CPU with "
            f"{torch.get_num_threads()} torch thread(s). Every method ran the same data and train sections "
            f"(`params/offline/<method>_ucmerced.yaml`): {cfg.train.rounds} rounds x {cfg.train.local_epochs} "
            f"local epoch(s), SGD lr {cfg.train.lr}. Command: `{command.strip()}`")
    tables = {"methods": methods_table(runs), "wall_time": wall_time_table(runs, note)}
    out = args.out or results_root() / "baselines"
    files = write_tables(tables, out) + [write_runs_table(runs, out)]
    for table in tables.values():
        print(table.to_markdown())
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
