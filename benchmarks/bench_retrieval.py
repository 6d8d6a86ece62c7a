"""PE-RSITR PETL table: every variant on a caption set's test split, plus federated vs centralised.

Writes ``results/retrieval/petl_table.{csv,md}`` (atomic), each row labelled with the backbone:
method, trainable parameters, R@1/5/10 image->text and text->image, mR, training seconds.

    .venv/bin/python benchmarks/bench_retrieval.py                    # offline backbone, UCM-Captions
    .venv/bin/python benchmarks/bench_retrieval.py --epochs 2 --limit 64 --test-limit 32  # smoke
    .venv/bin/python benchmarks/bench_retrieval.py --model ViT-B-32 --pretrained openai

The federated rows train the MRS-Adapter (HMMC) through the federated engine (the same client
update and FedAvg as FedRSCLIP): ``--clients`` clients with disjoint training images, against the
same engine with one client holding every image (centralised, identical optimiser and budget).
"""

from __future__ import annotations

import argparse
import dataclasses
import csv
import io
import time
from pathlib import Path

import torch

from fedrs.backbone.factory import create_backbone
from fedrs.io import write_text_atomic
from fedrs.paths import results_root
from fedrs.retrieval.config import VARIANTS, AdapterConfig, RetrievalConfig, TrainConfig
from fedrs.retrieval.data import RetrievalSet
from fedrs.retrieval.train import evaluate, train_epochs
from fedrs.retrieval.variants import build_variant

COLUMNS = ["method", "trainable_params", "i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10",
           "mR", "train_s", "backbone"]


def petl_rows(backbone, train, test, cfg: RetrievalConfig, variants) -> list[dict]:
    rows = []
    for variant in variants:
        model, loss = build_variant(backbone, cfg, variant)
        vcfg = dataclasses.replace(cfg, variant=variant)
        start = time.perf_counter()
        t = cfg.train
        stats = train_epochs(model, loss, train, epochs=t.epochs, batch_size=t.batch_size, lr=vcfg.lr,
                             weight_decay=t.weight_decay, seed=t.seed)
        seconds = time.perf_counter() - start
        scores = evaluate(model, test)
        print(f"{variant:18s} {model.trainable_parameters():>11,d} params  {scores}  "
              f"({seconds:.0f} s, final loss {stats['loss']:.3f})", flush=True)
        rows.append({"method": variant, "trainable_params": model.trainable_parameters(),
                     **scores.as_row(), "train_s": seconds, "backbone": backbone.label})
        del model
    return rows


def federated_rows(backbone, train, test, cfg: RetrievalConfig, clients: int, rounds: int,
                   local_epochs: int, lr: float) -> list[dict]:
    from fedrs.methods.pe_rsitr import federated_retrieval

    rows = []
    for n in (1, clients):
        start = time.perf_counter()
        out = federated_retrieval(backbone, train, test, cfg, num_clients=n, rounds=rounds,
                                  local_epochs=local_epochs, lr=lr)
        seconds = time.perf_counter() - start
        label = "mrs-adapter-hmmc centralised (engine, 1 client)" if n == 1 else \
            f"mrs-adapter-hmmc federated ({n} clients, FedAvg)"
        print(f"{label:48s} {out.scores}  ({seconds:.0f} s)", flush=True)
        rows.append({"method": label, "trainable_params": out.trainable_params, **out.scores.as_row(),
                     "train_s": seconds, "backbone": backbone.label})
    return rows


def to_markdown(rows: list[dict], title: str) -> str:
    head = "| method | trainable params | I2T R@1 | R@5 | R@10 | T2I R@1 | R@5 | R@10 | mR | train s |"
    lines = [f"# {title}", "", head, "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['method']} | {r['trainable_params']:,} | " + " | ".join(
            f"{r[k]:.2f}" for k in COLUMNS[2:9]) + f" | {r['train_s']:.0f} |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="fedrs-rsclip-s")
    ap.add_argument("--pretrained", default=None, help="tag or checkpoint (offline models: their local one)")
    ap.add_argument("--dataset", default="UCM-Captions")
    ap.add_argument("--train-split", default="train+val")
    ap.add_argument("--test-split", default="test")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--bottleneck", type=int, default=64, help="adapter bottleneck (paper: 64)")
    ap.add_argument("--shared-dim", type=int, default=64, help="MRS-Adapter shared channels (paper: 64)")
    ap.add_argument("--limit", type=int, default=None, help="first N training images (smoke runs)")
    ap.add_argument("--test-limit", type=int, default=None)
    ap.add_argument("--clients", type=int, default=5, help="federated clients (0: skip the federated rows)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--local-epochs", type=int, default=1)
    ap.add_argument("--fed-lr", type=float, default=0.05, help="client SGD learning rate")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="default: results/retrieval")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    backbone = create_backbone(args.model, args.pretrained)
    cfg = RetrievalConfig(dataset=args.dataset, adapter=AdapterConfig(args.bottleneck, args.shared_dim),
                          train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size))
    train = RetrievalSet.load(args.dataset, args.train_split, backbone, limit=args.limit)
    test = RetrievalSet.load(args.dataset, args.test_split, backbone, limit=args.test_limit)
    print(f"{backbone.label}: train {len(train)} images / {train.num_captions} captions, "
          f"test {len(test)} / {test.num_captions}", flush=True)
    rows = petl_rows(backbone, train, test, cfg, args.variants)
    if args.clients:
        rows += federated_rows(backbone, train, test, cfg, args.clients, args.rounds, args.local_epochs,
                               args.fed_lr)
    out = args.out or results_root() / "retrieval"
    title = (f"PETL on {args.dataset} ({args.test_split}: {len(test)} images, {test.num_captions} captions; "
             f"train {args.train_split}: {len(train)} images), backbone {backbone.label}, "
             f"{args.epochs} epochs, pessimistic ties")
    write_text_atomic(out / "petl_table.csv", to_csv(rows))
    write_text_atomic(out / "petl_table.md", to_markdown(rows, title))
    print(f"wrote {out / 'petl_table.csv'} and {out / 'petl_table.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
