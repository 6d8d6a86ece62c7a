"""FedRSCLIP at the paper's scale on an accelerator: throughput, peak memory, fp32 vs bf16.

The paper configuration (``params/paper/fedrsclip_ucmerced.yaml``: ViT-B-16 at 224 px, 10 clients
over UC Merced, Dirichlet 0.5, visual + text prompts), with the backbone at random init (timing and
memory depend on the architecture only, and a random-init run needs no downloaded weights). For
``train.precision`` fp32 and bf16, from the same initial prompts, it runs ``--rounds`` rounds and
prints per precision

* training images/s (the sampled clients' training images x local epochs / time of the round's
  local updates and FedAvg) and evaluation images/s (every client's personalised test split plus
  the pooled global test split / time of the evaluation), from the rounds after the first;
* peak GPU memory (``torch.cuda.max_memory_allocated``; on the CPU the process's peak RSS);
* the bf16 accuracy drift: personalised and global accuracy after each round, bf16 minus fp32.

    .venv/bin/python benchmarks/bench_gpu.py                          # paper configuration, device auto
    .venv/bin/python benchmarks/bench_gpu.py --device cuda:0 --rounds 3
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --tiny      # CPU smoke test (tests/test_bench_gpu.py)

``--tiny`` swaps in the tiny backbone and a few synthetic images (no imported data needed; caches go
to a temporary folder), so the whole path runs on a CPU in seconds. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "params/paper/fedrsclip_ucmerced.yaml"
PRECISIONS = ("fp32", "bf16")


def synthetic_dataset(folder: Path, classes=("airplane", "beach", "forest"), per_class: int = 8):
    """A tiny scene dataset of 32 px PNGs, one colour cast per class (the smoke test's data)."""
    from fedrs.data.scenes import synthetic_scene_dataset

    return synthetic_scene_dataset(folder, classes, per_class=per_class)


def configuration(device: str, rounds: int, tiny: bool):
    from fedrs.runs import load_run_config

    settings = {"backbone.pretrained": "random", "backbone.device": device, "train.rounds": rounds}
    if tiny:
        settings.update({"backbone.model": "fedrs-rsclip-tiny", "data.dataset": "Synth", "data.num_clients": 3,
                         "data.scheme": "iid", "train.batch_size": 4})
    return load_run_config(PAPER, settings)


class Clock:
    """Wall time of a block, with the device's queue drained before reading the clock."""

    def __init__(self, device):
        import torch

        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def __call__(self, fn):
        self.sync()
        start = time.perf_counter()
        out = fn()
        self.sync()
        return out, time.perf_counter() - start


def peak_memory_mib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_precision(setup, cfg, precision: str) -> dict:
    """``cfg.train.rounds`` rounds from the seeded initial prompts with the towers in ``precision``."""
    import torch

    from fedrs.federated import client_update
    from fedrs.federated.engine import FederatedEngine
    from fedrs.methods import create_method
    from fedrs.prompts import set_tower_precision

    device = setup.backbone.device
    method = create_method(cfg.method, setup.backbone, setup.classnames, seed=cfg.train.seed)
    set_tower_precision(method.module, precision)
    engine = FederatedEngine(method, setup.clients, setup.pooled_test, cfg.train, cfg.eval, checkpoint=None)
    engine.initialise()
    clock = Clock(device)
    # warm-up (kernel selection, allocator): one client's update, discarded
    first = engine.clients[0]
    client_update(method, engine.global_shared, engine.client_states[0], first, engine.local_config(1, cfg.train.lr, 0))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rounds = []
    eval_images = (sum(int(c.test_indices.numel()) for c in engine.clients)
                   + int(engine.server_data.test_indices.numel()))
    for r in range(1, cfg.train.rounds + 1):
        (row, client_rows), train_s = clock(lambda r=r: engine.run_round(r))
        (accs, _), eval_s = clock(engine.evaluate)
        train_images = sum(c["num_examples"] for c in client_rows) * cfg.train.local_epochs
        rounds.append({"round": r, "train_s": train_s, "eval_s": eval_s, "train_images": train_images,
                       "eval_images": eval_images, **accs, "train_loss": row.get("train_loss")})
    timed = rounds[1:] or rounds  # the first round still settles caches when there are more
    return {
        "precision": precision, "rounds": rounds,
        "train_images_per_s": sum(r["train_images"] for r in timed) / sum(r["train_s"] for r in timed),
        "eval_images_per_s": sum(r["eval_images"] for r in timed) / sum(r["eval_s"] for r in timed),
        "peak_memory_mib": peak_memory_mib(device),
        "shared": engine.global_shared,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:<i> (default auto)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per precision (default 3)")
    parser.add_argument("--tiny", action="store_true", help="tiny backbone and a few synthetic images (smoke test)")
    args = parser.parse_args(argv)

    import torch

    from fedrs.classification import load_datasets, prepare_run

    with tempfile.TemporaryDirectory() as tmp:
        datasets = None
        if args.tiny:
            os.environ["FEDRS_CACHE"] = str(Path(tmp) / "cache")  # never the repository's caches
            datasets = [synthetic_dataset(Path(tmp) / "synth")]
        cfg = configuration(args.device, args.rounds, args.tiny)
        started = time.perf_counter()
        setup = prepare_run(cfg, datasets if datasets is not None else load_datasets(cfg.data), progress=False)
        setup_s = time.perf_counter() - started
        device = setup.backbone.device
        name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"CPU, {torch.get_num_threads()} threads")
        print(f"{setup.backbone.label} ({setup.backbone.image_size} px) on {device} ({name}); "
              f"torch {torch.__version__}; {setup.partition.dataset}, {len(setup.clients)} clients, "
              f"batch {cfg.train.batch_size}, "
              f"{args.rounds} rounds per precision; setup {setup_s:.1f} s")
        results = {p: run_precision(setup, cfg, p) for p in PRECISIONS}

    memory = "peak GPU memory" if device.type == "cuda" else "peak RSS (CPU)"
    print(f"\n| precision | train images/s | eval images/s | {memory} MiB |")
    print("|---|---|---|---|")
    for p, r in results.items():
        print(f"| {p} | {r['train_images_per_s']:.1f} | {r['eval_images_per_s']:.1f} | {r['peak_memory_mib']:.0f} |")
    fp32, bf16 = results["fp32"], results["bf16"]
    print(f"\nbf16 / fp32 speed: training {bf16['train_images_per_s'] / fp32['train_images_per_s']:.2f}x, "
          f"evaluation {bf16['eval_images_per_s'] / fp32['eval_images_per_s']:.2f}x")
    print("\nbf16 accuracy drift (bf16 - fp32, percentage points) after each round:")
    print("| round | personalised fp32 | personalised bf16 | drift | global fp32 | global bf16 | drift |")
    print("|---|---|---|---|---|---|---|")
    for a, b in zip(fp32["rounds"], bf16["rounds"]):
        pa, pb = 100 * a["personalised_acc_weighted"], 100 * b["personalised_acc_weighted"]
        ga, gb = 100 * a["global_acc"], 100 * b["global_acc"]
        print(f"| {a['round']} | {pa:.2f} | {pb:.2f} | {pb - pa:+.2f} | {ga:.2f} | {gb:.2f} | {gb - ga:+.2f} |")
    drift = max(float((fp32["shared"][k] - bf16["shared"][k]).abs().max()) for k in fp32["shared"])
    print(f"\nlargest |bf16 - fp32| of the averaged shared prompt after {args.rounds} rounds: {drift:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
