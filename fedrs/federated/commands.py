"""``fedrs run PARAMS.yaml --out DIR [--resume]`` and ``fedrs describe PARAMS.yaml [--no-weights]``."""

from __future__ import annotations

import argparse
import json
import sys


from fedrs.config import parse_overrides
from fedrs.runs import RunConfig, load_run_config


def dataset_classnames(data_cfg) -> list[str]:
    """Readable class names of the configured dataset(s) from the registry, without any data.

    Only the number of classes affects nothing that ``describe`` reports, but the prompts are
    built for the real classes where the registry knows them (one placeholder otherwise).
    """
    from fedrs.data.partition import harmonised_classnames
    from fedrs.data.registry import AID_HOLDOUT, SceneDatasetSpec, find_spec, prompt_names

    def spec_of(name: str):
        spec = find_spec("AID" if name == AID_HOLDOUT else name)
        return spec if isinstance(spec, SceneDatasetSpec) else None

    if data_cfg.cross_domain:
        specs = [(n, spec_of(n)) for n in data_cfg.cross_domain]
        if all(s is not None for _, s in specs):
            return sorted(set().union(*(harmonised_classnames(n, list(s.classes), data_cfg.label_map)
                                        for n, s in specs)))
        return ["scene"]
    spec = spec_of(data_cfg.dataset)
    return prompt_names(spec, list(spec.classes)) if spec is not None else ["scene"]


def describe_run(cfg: RunConfig, no_weights: bool = False) -> dict:
    """Trainable parameters, uploaded tensors and their shapes, values per client and round.

    With ``no_weights`` the backbone is built with random weights (nothing is downloaded or read).
    """
    from fedrs.backbone.factory import create_backbone
    from fedrs.methods import create_method

    pretrained = "random" if no_weights else cfg.backbone.pretrained
    backbone = create_backbone(cfg.backbone.model, pretrained, cfg.backbone.device)
    classnames = dataset_classnames(cfg.data)
    method = create_method(cfg.method, backbone, classnames, seed=cfg.train.seed)
    out = {
        "backbone": f"{cfg.backbone.model}/{cfg.backbone.pretrained}",
        "built_with": backbone.label,
        "dataset": cfg.data.dataset,
        "num_classes": len(classnames),
        "num_clients": cfg.data.num_clients,
        "clients_per_round": max(1, round(cfg.train.sample_fraction * cfg.data.num_clients)),
        "rounds": cfg.train.rounds,
        **method.describe(),
    }
    out["upload_values_total"] = out["upload_values_per_client_round"] * out["clients_per_round"] * cfg.train.rounds
    return out


def _cmd_run(args: argparse.Namespace) -> int:
    from fedrs.federated.engine import run_experiment

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
