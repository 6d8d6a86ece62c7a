"""Baselines table: the seven methods of issue #4 on Fed-UCMerced, Dirichlet 0.5, 10 clients.

Runs ``params/offline/<method>_ucmerced.yaml`` (zero-shot, local-only, PromptFL, FedPGP-style,
FedOTP-style, FedRSCLIP, centralised) through ``run_experiment`` (what ``fedrs run`` calls) for
several training seeds (prompt init and batch order; the partition stays ``data.seed``), with the
shared ``train`` section overridden the same way for every method, and writes
``results/baselines/fed_ucmerced_dir0.5.{csv,md}`` (atomic), labelled with the backbone: final
personalised (weighted) and global accuracy as mean +- std over seeds, uploaded values per client
per round, wall time per run (setup + rounds) and rounds time.

    .venv/bin/python benchmarks/bench_baselines.py                       # 3 seeds, the YAMLs' rounds
    .venv/bin/python benchmarks/bench_baselines.py --rounds 5 --local-epochs 2 --seeds 0 1 2
    .venv/bin/python benchmarks/bench_baselines.py --methods promptfl fedpgp --seeds 0   # a subset

Run folders go to ``--runs`` (default ``$FEDRS_CACHE/bench_baselines``); a finished folder with
the same parameters is reused, so an interrupted table resumes where it stopped (``--force``
re-runs). Wall times are whatever the machine gave while the run was going (2 shared cores here).
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
from pathlib import Path

import torch

from fedrs.federated.engine import run_experiment
from fedrs.io import write_text_atomic
from fedrs.paths import cache_root, results_root
from fedrs.runs import load_run_config

REPO = Path(__file__).resolve().parents[1]
METHODS = ("zeroshot", "local", "promptfl", "fedpgp", "fedotp", "fedrsclip", "centralised")
LABELS = {"zeroshot": "zero-shot CLIP", "local": "local-only", "promptfl": "PromptFL",
          "fedpgp": "FedPGP-style", "fedotp": "FedOTP-style", "fedrsclip": "FedRSCLIP",
          "centralised": "centralised (1 client, all data)"}
#: methods whose "global accuracy" is not a trained server model (local-only: the server holds nothing)
NO_GLOBAL = {"local"}
COLUMNS = ["method", "seeds", "personalised_mean", "personalised_std", "global_mean", "global_std",
           "upload_values_per_client_round", "wall_s_mean", "wall_s_std", "rounds_s_mean", "rounds",
           "local_epochs", "lr", "torch_threads", "backbone"]


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def run_method(method: str, seeds: list[int], overrides: dict, runs: Path, force: bool) -> dict:
    per_seed = []
    for seed in seeds:
        cfg = load_run_config(REPO / "params" / "offline" / f"{method}_ucmerced.yaml",
                              {**overrides, "train.seed": seed})
        m = run_experiment(cfg, runs / f"{method}_seed{seed}", progress=False, force=force)
        print(f"{method:12s} seed {seed}: personalised {m['personalised_accuracy']:.4f}  global "
              f"{m['global_accuracy']:.4f}  up {m['upload_values_per_client_round']}  "
              f"{m['wall_time_s']:.1f} s", flush=True)
        per_seed.append((cfg, m))
    cfg, first = per_seed[0]
    pers = mean_std([m["personalised_accuracy"] * 100 for _, m in per_seed])
    glob = mean_std([m["global_accuracy"] * 100 for _, m in per_seed])
    wall = mean_std([m["wall_time_s"] for _, m in per_seed])
    return {"method": method, "seeds": " ".join(map(str, seeds)),
            "personalised_mean": pers[0], "personalised_std": pers[1],
            "global_mean": glob[0], "global_std": glob[1],
            "upload_values_per_client_round": first["upload_values_per_client_round"],
            "wall_s_mean": wall[0], "wall_s_std": wall[1],
            "rounds_s_mean": statistics.fmean(m["rounds_time_s"] for _, m in per_seed),
            "rounds": cfg.train.rounds, "local_epochs": cfg.train.local_epochs, "lr": cfg.train.lr,
            "torch_threads": torch.get_num_threads(), "backbone": first["backbone"]}


def to_markdown(rows: list[dict], command: str) -> str:
    r0 = rows[0]
    lines = [
        f"# Baselines on Fed-UCMerced, Dirichlet 0.5, 10 clients - backbone `{r0['backbone']}`", "",
        f"{r0['rounds']} rounds x {r0['local_epochs']} local epoch(s) (SGD lr {r0['lr']}, cosine), every method with the same data "
        f"and train sections (`params/offline/<method>_ucmerced.yaml`); mean +- std over training seeds "
        f"{r0['seeds']} (the partition is fixed). Accuracy in %: personalised = each client's test "
        f"split with its own tensors (pooled over clients), global = the server's tensors on the pooled "
        f"test set.", "",
        "| method | personalised acc | global acc | uploaded values / client / round | wall time s | rounds s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        glob = "n/a (server holds nothing)" if r["method"] in NO_GLOBAL else \
            f"{r['global_mean']:.2f} +- {r['global_std']:.2f}"
        up = f"{r['upload_values_per_client_round']:,}"
        if r["method"] == "centralised":
            up = f"({up}: whole model; raw data pooled)"
        lines.append(f"| {LABELS[r['method']]} | {r['personalised_mean']:.2f} +- {r['personalised_std']:.2f} | "
                     f"{glob} | {up} | {r['wall_s_mean']:.1f} +- {r['wall_s_std']:.1f} | {r['rounds_s_mean']:.1f} |")
    lines += ["", "Centralised: FedRSCLIP's model trained by one client holding every client's training "
              "data, evaluated with its whole model. Zero-shot: template 'a satellite photo of a {}.'. "
              f"Wall time = backbone/feature setup + rounds, on a shared 2-core CPU with "
              f"{r0['torch_threads']} torch thread(s).", "",
              f"Command: `{command}`", ""]
    return "\n".join(lines)


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
    runs = args.runs or cache_root() / "bench_baselines"
    rows = [run_method(m, args.seeds, overrides, runs, args.force) for m in args.methods]

    out = args.out or results_root() / "baselines"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    stem = "fed_ucmerced_dir0.5"
    write_text_atomic(out / f"{stem}.csv", buf.getvalue())
    command = "python benchmarks/bench_baselines.py " + " ".join(argv if argv is not None else sys.argv[1:])
    md = write_text_atomic(out / f"{stem}.md", to_markdown(rows, command.strip()))
    print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
