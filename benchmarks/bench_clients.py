"""Round time and peak memory of the in-process engine for 10 and 100 simulated clients.

Each client count runs in its own process (so peak RSS is that run's own) through the real
``run_experiment`` path: the offline FedRSCLIP configuration with ``data.num_clients`` and
``train.rounds`` overridden. Prints one table; not a test.

    .venv/bin/python benchmarks/bench_clients.py                      # 10 and 100 clients, 2 rounds
    .venv/bin/python benchmarks/bench_clients.py --clients 10 100 --rounds 3 --set method.visual_prompts=false

``round_time_s`` is wall time per training round (with its evaluation); ``cpu_s`` is the whole
run's process CPU time (setup included), the load-independent figure on a shared machine. Falls
back to the tiny random-init backbone when the offline backbone has not been built yet (the
table says which backbone was used).

What grows with the number of clients is small: a client's state is a few KiB of prompts and its
data are index tensors into one shared pool. The peak RSS difference between 100 and 10 clients
(+62 to +69 MiB before exact text truncation, +17 MiB after, on fedrs-rsclip-s) is not live data:
it is glibc's allocator keeping freed activation buffers in a fragmented heap (its dynamic mmap
threshold rises after the first large frees, so later activations come from the heap); 100 small
clients allocate batches of many more sizes (the likely reason it grows with the client count).
The same pre-truncation run with
``MALLOC_MMAP_THRESHOLD_=131072`` (large blocks always mmapped and returned) peaks at 1278 MiB
with 10 clients and 1276 MiB with 100, but costs CPU (45 instead of 24 CPU s for the 10-client run
here: every large activation is a fresh mmap); see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PARAMS = REPO / "params/offline/fedrsclip_ucmerced.yaml"


def _rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _one(params: str, clients: int, rounds: int, overrides: dict, queue) -> None:
    import torch

    from fedrs.backbone.factory import OFFLINE_DEFAULT, offline_checkpoint_path
    from fedrs.experiment import run_experiment
    from fedrs.runs import load_run_config

    settings = {"data.num_clients": clients, "train.rounds": rounds, **overrides}
    if not offline_checkpoint_path(OFFLINE_DEFAULT).is_file():
        settings.update({"backbone.model": "fedrs-rsclip-tiny", "backbone.pretrained": "random"})
    cfg = load_run_config(params, settings)
    with tempfile.TemporaryDirectory() as out:
        before = _rss_mib()
        cpu = time.process_time()
        metrics = run_experiment(cfg, out, progress=False)
        cpu = time.process_time() - cpu
        state = torch.load(Path(out) / "checkpoint.pt", map_location="cpu", weights_only=True)
        client_bytes = sum(t.numel() * t.element_size() for c in state["clients"] for t in c.values())
    queue.put({
        "clients": clients, "backbone": metrics["backbone"], "dataset": metrics["dataset"],
        "rounds": rounds, "setup_s": round(metrics["setup_time_s"], 2),
        "round_time_s": round(metrics["round_time_s"], 2), "cpu_s": round(cpu, 1),
        "load_avg_1min": round(os.getloadavg()[0], 1),
        "peak_rss_mib": round(_rss_mib(), 1), "rss_before_run_mib": round(before, 1),
        "client_state_kib": round(client_bytes / 1024, 1),
        "upload_values_per_client_round": metrics["upload_values_per_client_round"],
        "personalised_acc": round(metrics["personalised_accuracy"], 4),
        "global_acc": round(metrics["global_accuracy"], 4),
        "torch_threads": torch.get_num_threads(),
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(DEFAULT_PARAMS))
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args(argv)
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    ctx = mp.get_context("spawn")
    rows = []
    for n in args.clients:
        queue = ctx.Queue()
        started = time.perf_counter()
        proc = ctx.Process(target=_one, args=(args.params, n, args.rounds, overrides, queue))
        proc.start()
        row = queue.get()
        proc.join()
        row["process_s"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        print(f"{n} clients done in {row['process_s']} s", file=sys.stderr)
    cols = ["clients", "round_time_s", "cpu_s", "load_avg_1min", "peak_rss_mib", "client_state_kib", "setup_s",
            "process_s", "personalised_acc", "global_acc", "upload_values_per_client_round"]
    print(f"backbone {rows[0]['backbone']}, dataset {rows[0]['dataset']}, {args.rounds} rounds, "
          f"torch threads {rows[0]['torch_threads']}, overrides {overrides or 'none'}")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in cols) + " |")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
