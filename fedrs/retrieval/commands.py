"""``fedrs retrieval select-lr PARAMS.yaml --lr 1e-3 3e-3 ... --out DIR [--centralised]``: the
command-line face of :func:`fedrs.retrieval.selection.select_lr`.

PARAMS is a ``fedrs run`` configuration with ``method: {name: pe-rsitr}``. By default the sweep
trains it as the run would (client SGD through the federated engine); ``--centralised`` trains the
same model, loss, splits and validation with the PETL harness's AdamW for ``--epochs`` epochs.
"""

from __future__ import annotations

import argparse
import json
import sys

from fedrs.config import parse_overrides
from fedrs.errors import FedrsError
from fedrs.retrieval.config import RetrievalTrainConfig
from fedrs.retrieval.method import PERSITRConfig
from fedrs.retrieval.selection import select_lr
from fedrs.runs import load_run_config


def _cmd_select_lr(args: argparse.Namespace) -> int:
    from fedrs.backbone.factory import create_backbone

    cfg = load_run_config(args.params, parse_overrides(args.set))
    if not isinstance(cfg.method, PERSITRConfig):
        raise FedrsError(f"{args.params}: select-lr needs a retrieval configuration (method: pe-rsitr)")
    backbone = create_backbone(cfg.backbone.model, cfg.backbone.pretrained, cfg.backbone.device)
    if args.centralised:
        epochs = args.epochs if args.epochs is not None else cfg.train.rounds * cfg.train.local_epochs
        sweep_cfg = cfg.method.retrieval_config(cfg.data.dataset, RetrievalTrainConfig(
            epochs=epochs, batch_size=cfg.train.batch_size, seed=cfg.train.seed))
    else:
        sweep_cfg = cfg
    lr, rows = select_lr(sweep_cfg, args.lr, backbone=backbone, out=args.out, progress=not args.no_progress)
    json.dump({"chosen_lr": lr, "rows": rows, "out": args.out}, sys.stdout, indent=2, default=str)
    print()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    retrieval = subparsers.add_parser("retrieval", help="retrieval tools (learning-rate selection)")
    rsub = retrieval.add_subparsers(dest="retrieval_command", metavar="COMMAND")
    rsub.required = True
    sel = rsub.add_parser(
        "select-lr", help="choose a learning rate on the validation split of the training images",
        description="Train PARAMS.yaml once per --lr on the training images minus the validation "
                    "split (method.validation), score the validation split after every epoch/round "
                    "and choose the rate with the best final validation mR. The test split is never "
                    "loaded. Writes lr_sweep.csv and lr_sweep.json into --out.")
    sel.add_argument("params", metavar="PARAMS.yaml")
    sel.add_argument("--lr", type=float, nargs="+", required=True, help="candidate learning rates")
    sel.add_argument("--out", required=True, metavar="DIR", help="folder for the sweep table")
    sel.add_argument("--centralised", action="store_true",
                     help="AdamW on one training set (the PETL harness) instead of the run's client SGD")
    sel.add_argument("--epochs", type=int, default=None,
                     help="epochs with --centralised (default: train.rounds x train.local_epochs)")
    sel.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value (dotted key, YAML value), e.g. --set train.rounds=5")
    sel.add_argument("--no-progress", action="store_true", help="no progress bars")
    sel.set_defaults(func=_cmd_select_lr, console_loggers=("fedrs.retrieval",))


__all__ = ["register"]
