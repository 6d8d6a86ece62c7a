"""``fedrs run PARAMS.yaml --out DIR [--resume]`` and ``fedrs describe PARAMS.yaml [--no-weights]``:
the command-line face of :func:`fedrs.experiment.run_experiment` and :func:`fedrs.experiment.describe_run`."""

from __future__ import annotations

import argparse
import json
import sys

from fedrs.config import parse_overrides
from fedrs.experiment import describe_run, run_experiment
from fedrs.runs import load_run_config


def _cmd_run(args: argparse.Namespace) -> int:
    cfg = load_run_config(args.params, parse_overrides(args.set))
    metrics = run_experiment(cfg, args.out, resume=args.resume, progress=not args.no_progress, force=args.force)
    keys = ("method", "backbone", "dataset", "split", "seed", "personalised_accuracy",
            "personalised_accuracy_unweighted", "global_accuracy", "global", "personalised",
            "upload_values_per_client_round", "wall_time_s")  # global/personalised: retrieval recalls
    json.dump({k: metrics[k] for k in keys if k in metrics} | {"out": str(args.out)}, sys.stdout, indent=2)
    print()
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    cfg = load_run_config(args.params, parse_overrides(args.set))
    json.dump(describe_run(cfg, no_weights=args.no_weights), sys.stdout, indent=2)
    print()
    return 0


def _config_args(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument("params", metavar="PARAMS.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config value (dotted key, YAML value), e.g. {example}")


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run", help="run one federated configuration into a run folder",
        description="Run PARAMS.yaml and write params.yaml, split.json, rounds.csv, clients.csv, "
                    "metrics.json and env.json into --out. A finished folder with the same "
                    "parameters is not re-run (use --force).")
    _config_args(run, "--set train.rounds=2")
    run.add_argument("--out", required=True, metavar="DIR", help="the run folder")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    run.add_argument("--force", action="store_true", help="start over even if DIR holds a run")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_cmd_run)

    describe = subparsers.add_parser(
        "describe", help="trainable parameters and uploaded tensors of a configuration (JSON)",
        description="Build the configuration's method and print, as JSON, its trainable parameter "
                    "count, the uploaded tensors with their shapes and the values uploaded per "
                    "client per round.")
    _config_args(describe, "--set method.n_ctx=16")
    describe.add_argument("--no-weights", action="store_true",
                          help="build the backbone with random weights (no download, no checkpoint)")
    describe.set_defaults(func=_cmd_describe)
