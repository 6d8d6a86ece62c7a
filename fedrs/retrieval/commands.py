"""``fedrs retrieval ...``: the command-line faces of the retrieval library.

* ``select-lr PARAMS.yaml [PARAMS.yaml ...] --lr 1e-3 3e-3 ... --out DIR [--centralised]``:
  :func:`fedrs.retrieval.selection.select_lr`, or with several params files (replicates that
  differ in their seeds) :func:`~fedrs.retrieval.selection.select_lr_replicates`. PARAMS is a
  ``fedrs run`` configuration with ``method: {name: pe-rsitr}``. By default the sweep trains it as
  the run would (client SGD through the federated engine); ``--centralised`` trains the same
  model, loss, splits and validation with the PETL harness's AdamW for ``--epochs`` epochs.
* ``petl PARAMS.yaml [--seeds ...] [--rows ...] [--out DIR]``: :func:`fedrs.retrieval.petl.run_petl`,
  the PETL table over seeds (``params/retrieval/petl_*.yaml``), resumable row by row;
* ``petl-table FOLDER``: :func:`fedrs.retrieval.petl.write_petl_table`, the table again from the
  row files of a dataset folder.
"""

from __future__ import annotations

import argparse
import json
import sys

from fedrs.config import parse_overrides
from fedrs.errors import FedrsError
from fedrs.retrieval.config import RetrievalTrainConfig
from fedrs.retrieval.method import PERSITRConfig
from fedrs.retrieval.petl import load_petl_config, run_petl, write_petl_table
from fedrs.retrieval.selection import select_lr, select_lr_replicates
from fedrs.runs import load_run_config


def _cmd_select_lr(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fedrs.backbone.factory import create_backbone

    overrides = parse_overrides(args.set)
    cfgs = [load_run_config(path, overrides) for path in args.params]
    for path, cfg in zip(args.params, cfgs):
        if not isinstance(cfg.method, PERSITRConfig):
            raise FedrsError(f"{path}: select-lr needs a retrieval configuration (method: pe-rsitr)")
    names = [Path(path).stem for path in args.params]  # each replicate's folder (distinct: checked there)
    first = cfgs[0]
    backbone = create_backbone(first.backbone.model, first.backbone.pretrained, first.backbone.device)
    if args.centralised:
        cfgs = [cfg.method.retrieval_config(cfg.data.dataset, RetrievalTrainConfig(
            epochs=args.epochs if args.epochs is not None else cfg.train.rounds * cfg.train.local_epochs,
            batch_size=cfg.train.batch_size, seed=cfg.train.seed)) for cfg in cfgs]
    if len(cfgs) == 1:
        lr, rows = select_lr(cfgs[0], args.lr, backbone=backbone, out=args.out, progress=not args.no_progress)
    else:
        lr, rows = select_lr_replicates(cfgs, names, args.lr, backbone=backbone, out=args.out,
                                        progress=not args.no_progress)
    json.dump({"chosen_lr": lr, "rows": rows, "out": args.out}, sys.stdout, indent=2, default=str)
    print()
    return 0


def _cmd_petl(args: argparse.Namespace) -> int:
    cfg = load_petl_config(args.params, parse_overrides(args.set))
    folder = run_petl(cfg, out=args.out, seeds=args.seeds, rows=args.rows, progress=not args.no_progress)
    print(f"table: {folder / 'petl_table.md'} (and petl_table.csv); row results: {folder}/s<seed>/<row>.json")
    return 0


def _cmd_petl_table(args: argparse.Namespace) -> int:
    csv, md = write_petl_table(args.folder)
    print(f"wrote {md} and {csv}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    retrieval = subparsers.add_parser("retrieval", help="retrieval tools (learning-rate selection, the PETL table)")
    rsub = retrieval.add_subparsers(dest="retrieval_command", metavar="COMMAND")
    rsub.required = True
    sel = rsub.add_parser(
        "select-lr", help="choose a learning rate on the validation split of the training images",
        description="Train PARAMS.yaml once per --lr on the training images minus the validation "
                    "split (method.validation), score the validation split after every epoch/round "
                    "and choose the rate with the best final validation mR. The test split is never "
                    "loaded. Writes lr_sweep.csv and lr_sweep.json into --out.")
    sel.add_argument("params", metavar="PARAMS.yaml", nargs="+",
                     help="one run configuration, or several that differ only in their seeds (replicates: "
                          "each gets OUT/<file name>/, and the rate with the best mean final validation mR "
                          "over them is chosen; finished replicates are read back)")
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

    petl = rsub.add_parser(
        "petl", help="the PETL table over seeds, resumable (params/retrieval/petl_*.yaml)",
        description="Train every row of PARAMS.yaml (zero-shot, linear probe, CoOp, VPT, adapter, MRS-Adapter, "
                    "MRS-Adapter + HMMC in both forms, full fine-tuning) for every seed on the training images "
                    "minus the validation split, score the final epoch on test, and write each result as "
                    "OUT/<dataset>/s<seed>/<row>.json as soon as it is scored. Rows already on disk are "
                    "skipped, so an interrupted run continues where it stopped. Then writes petl_table.md/.csv "
                    "(mean +- std over seeds, paired differences to MRS-Adapter + HMMC with 95% t-intervals).")
    petl.add_argument("params", metavar="PARAMS.yaml")
    petl.add_argument("--seeds", type=int, nargs="+", default=None, help="a subset of the params file's seeds")
    petl.add_argument("--rows", nargs="+", default=None, metavar="ROW", help="a subset of the params file's rows")
    petl.add_argument("--out", default=None, metavar="DIR",
                      help="parent of the dataset folders (default: results/retrieval/petl)")
    petl.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config value (dotted key, YAML value), e.g. --set train.epochs=2")
    petl.add_argument("--no-progress", action="store_true", help="no progress bars")
    petl.set_defaults(func=_cmd_petl, console_loggers=("fedrs.retrieval",))

    table = rsub.add_parser("petl-table", help="rewrite a PETL table from its row files",
                            description="Regenerate FOLDER/petl_table.md and .csv from FOLDER/s<seed>/<row>.json.")
    table.add_argument("folder", metavar="FOLDER", help="a dataset folder, e.g. results/retrieval/petl/UCM-Captions")
    table.set_defaults(func=_cmd_petl_table)


__all__ = ["register"]
