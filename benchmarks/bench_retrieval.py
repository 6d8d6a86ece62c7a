"""PE-RSITR on one seed: every PETL row and the federated rows, with their training seconds.

The table of record is the one over seeds (``fedrs retrieval petl params/retrieval/petl_*.yaml``:
mean +- std over 3 seeds, paired intervals to MRS-Adapter + HMMC). This benchmark measures one seed
of the same rows, through the same function (:func:`fedrs.retrieval.compare.train_row`), plus
MRS-Adapter + HMMC through the federated engine (:func:`fedrs.retrieval.compare.compare_federated`:
the centralised reference with one client, the whole adapter averaged, only the cross-modal shared
part averaged with the clients' personalised mean), and how long each takes. Writes
``results/retrieval/bench/<dataset>/bench_table.{csv,md}`` (atomic); every row names its backbone,
test set, validation split and seed.

    .venv/bin/python benchmarks/bench_retrieval.py                    # offline backbone, UCM-Captions
    .venv/bin/python benchmarks/bench_retrieval.py --epochs 1 --limit 64 --test-limit 32 --rounds 1  # smoke
    .venv/bin/python benchmarks/bench_retrieval.py --dataset RSICD --train-split train
    .venv/bin/python benchmarks/bench_retrieval.py --model ViT-B-32 --pretrained openai

Protocol as ``fedrs.retrieval.compare`` states it: the training images minus a seeded validation
split (20%) train, the final epoch/round is scored on test; learning rates are the library's
validated constants (``DEFAULT_LR["mrs-adapter-hmmc"]``, ``FEDERATED_SGD_LR``) where they exist;
recalls under all three tie conventions, pessimistic primary.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import pandas as pd
import torch

from fedrs.backbone.factory import create_backbone
from fedrs.io import write_text_atomic
from fedrs.paths import results_root
from fedrs.retrieval import AdapterConfig, RetrievalConfig, RetrievalSet, RetrievalTrainConfig, ValidationConfig
from fedrs.retrieval.compare import (
    HEADLINE,
    PETL_ROWS,
    PRIMARY_TIES,
    compare_federated,
    compare_variants,
    markdown_table,
)
from fedrs.retrieval.config import FEDERATED_SGD_LR

MD_COLUMNS = [("method", "method"), ("trainable_params", "trainable params"), ("lr", "lr"),
              ("i2t", "I2T R@1/5/10"), ("t2i", "T2I R@1/5/10"), ("mR", "mR"),
              ("mR_argsort", "mR, papers' tie order"), ("mR_optimistic", "mR, optimistic ties"),
              ("final_val_mR", "val mR (final)"),
              ("upload_values_per_client_round", "uploaded values / client / round"),
              ("train_s", "train s"), ("seed", "seed"), ("backbone", "backbone"), ("protocol", "protocol")]


def _cell(row: dict, key: str) -> str:
    if key in ("i2t", "t2i"):
        return "/".join(f"{row[f'{key}_r{k}']:.2f}" for k in (1, 5, 10))
    if key == "protocol":
        return f"{row['test_set']}; trained on {row['train_set']} minus {row['validation']}"
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key == "trainable_params" or key == "upload_values_per_client_round":
        return f"{int(value):,}"
    if key == "lr":
        return f"{value:g}" if value else "-"
    if key == "train_s":
        return f"{value:.0f}"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def to_markdown(rows: list[dict], title: str) -> str:
    body = [[_cell(r, k) for k, _ in MD_COLUMNS] for r in rows]
    for line, r in zip(body, rows):
        if r["method"] == HEADLINE:
            line[0] = f"**{line[0]}**"
        elif r.get("note"):
            line[0] += f" ({r['note']})"
    notes = (f"One seed; the table of record is `fedrs retrieval petl` (3 seeds, paired intervals). Headline: "
             f"{PETL_ROWS[HEADLINE].label}. Recalls in percent, primary ties {PRIMARY_TIES} (a lower bound); "
             f"the papers' tie order (np.argsort, descending) is the column to set beside published numbers. "
             f"Each row trains on the training images minus the validation split and reports its final "
             f"epoch/round on test. Federated rows: client SGD (momentum 0.9, cosine over rounds) at "
             f"FEDERATED_SGD_LR unless --fed-lr; 'cross-modal part averaged' uploads only the MRS-Adapter's "
             f"shared up-projection, so its server model holds the initial private parts and the clients' "
             f"personalised mean is the row to read.")
    return "\n".join([f"# {title}", "", markdown_table([h for _, h in MD_COLUMNS], body), "", notes]) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="fedrs-rsclip-s")
    ap.add_argument("--pretrained", default=None, help="tag or checkpoint (offline models: their local one)")
    ap.add_argument("--dataset", default="UCM-Captions")
    ap.add_argument("--train-split", default="train+val", help="RSICD: train")
    ap.add_argument("--test-split", default="test")
    ap.add_argument("--rows", nargs="+", default=list(PETL_ROWS), choices=list(PETL_ROWS))
    ap.add_argument("--epochs", type=int, default=5, help="the budget the validated AdamW rate was chosen at")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0, help="validation split, initialisation, batch order, shards")
    ap.add_argument("--validation", type=float, default=0.2, help="share of the training images held out")
    ap.add_argument("--bottleneck", type=int, default=64, help="adapter bottleneck (paper: 64)")
    ap.add_argument("--shared-dim", type=int, default=64, help="MRS-Adapter shared channels (paper: 64)")
    ap.add_argument("--limit", type=int, default=None, help="first N training images (smoke runs)")
    ap.add_argument("--test-limit", type=int, default=None)
    ap.add_argument("--clients", type=int, default=5, help="federated clients (0: skip the federated rows)")
    ap.add_argument("--scheme", default="iid", choices=["iid", "dirichlet", "pathological"])
    ap.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--local-epochs", type=int, default=1)
    ap.add_argument("--fed-lr", type=float, default=FEDERATED_SGD_LR,
                    help="client SGD learning rate (default: the validated FEDERATED_SGD_LR)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="default: results/retrieval/bench/<dataset>")
    args = ap.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the comparison's progress lines
    torch.set_num_threads(args.threads)
    backbone = create_backbone(args.model, args.pretrained)
    cfg = RetrievalConfig(dataset=args.dataset, train_split=args.train_split, eval_split=args.test_split,
                          adapter=AdapterConfig(args.bottleneck, args.shared_dim),
                          train=RetrievalTrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed),
                          validation=ValidationConfig(fraction=args.validation, seed=args.seed))
    train = RetrievalSet.load(args.dataset, args.train_split, backbone, limit=args.limit)
    test = RetrievalSet.load(args.dataset, args.test_split, backbone, limit=args.test_limit)
    print(f"{backbone.label}: {train.describe()} ({train.num_captions} captions); {test.describe()} "
          f"({test.num_captions} captions)", flush=True)
    rows, _ = compare_variants(backbone, train, test, cfg, args.rows)
    if args.clients:
        rows += compare_federated(backbone, train, test, cfg, clients=args.clients, rounds=args.rounds,
                                  local_epochs=args.local_epochs, lr=args.fed_lr, scheme=args.scheme,
                                  alpha=args.alpha, cross_modal=True)
    out = args.out or results_root() / "retrieval" / "bench" / args.dataset
    title = (f"PE-RSITR on {test.describe()}, backbone {backbone.label}, seed {args.seed}: {args.epochs} epochs "
             f"(PETL rows), {args.rounds} rounds x {args.local_epochs} local epochs (engine rows)")
    write_text_atomic(out / "bench_table.csv", pd.DataFrame(rows).to_csv(index=False, float_format="%.4f"))
    write_text_atomic(out / "bench_table.md", to_markdown(rows, title))
    print(f"wrote {out / 'bench_table.csv'} and {out / 'bench_table.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
