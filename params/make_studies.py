#!/usr/bin/env python
"""Generate the study's params files: one YAML per run (method x dataset x split x seed).

    .venv/bin/python params/make_studies.py               # offline (the README's default study) + smoke
    .venv/bin/python params/make_studies.py --grid full   # + the full grid (every offline dataset and split)
    .venv/bin/python params/make_studies.py --check       # exit 1 if a committed file differs

It needs fedrs installed (the project's venv): the methods, ablation variants and prompt lengths
are :mod:`fedrs.study.vocabulary`'s, the ones the report reads back.

Every run is ``params/studies/_base/<grid>.yaml`` (the protocol shared by every method: backbone,
clients, rounds, optimiser, evaluation) + the method's own section, taken from
``params/offline/<method>_ucmerced.yaml`` (its published defaults, owned by the method) + what the
study varies. A set of runs is a folder, and ``fedrs sweep`` writes ``results/<folder>/<run>/``:

* ``<grid>/methods/``        the seven methods x datasets x splits x seeds
* ``<grid>/constraints/``    FedRSCLIP without DPA, CMA, both, private or visual prompts (the full
                             model is ``methods/fedrsclip__*``, so it runs once)
* ``<grid>/prompt_length/``  FedRSCLIP with 8 and 16 context tokens (4 is ``methods/fedrsclip__*``)
* ``pilot/methods/``         the convergence pilot (60 rounds, seed 0, four methods, two datasets)
* ``smoke/``                 one tiny run: the default of ``notebooks/02_federated_run.ipynb``

Seed ``s`` sets both ``train.seed`` and ``data.seed`` (a different partition per seed; every method
of one seed sees the same partition). Edit this file or the bases, then re-run it; never edit the
generated files by hand.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Iterator

import yaml

from fedrs.study.vocabulary import (
    ABLATIONS, DEFAULT_PROMPT_LENGTH, MAIN_METHOD, METHODS, PROMPT_LENGTHS, STUDY_DATASETS,
)

HERE = Path(__file__).resolve().parent
STUDIES = HERE / "studies"
BASES = STUDIES / "_base"
METHOD_SOURCES = HERE / "offline"

# What the study compares comes from fedrs.study.vocabulary, which the report reads back:
# METHODS (each method's section is params/offline/<method>_ucmerced.yaml, its published
# defaults), the constraint ablation and the prompt lengths.
#: constraint ablation: file tag -> method switches (the full model is the methods study's run)
CONSTRAINTS = {v.tag: v.switches for v in ABLATIONS if v.switches}
#: prompt lengths with runs of their own (the default one is the methods study's run)
LENGTHS = tuple(n for n in PROMPT_LENGTHS if n != DEFAULT_PROMPT_LENGTH)

#: heterogeneity splits: file tag -> data section keys
SPLITS = {
    "iid": {"scheme": "iid"},
    "dir1.0": {"scheme": "dirichlet", "alpha": 1.0},
    "dir0.5": {"scheme": "dirichlet", "alpha": 0.5},
    "dir0.1": {"scheme": "dirichlet", "alpha": 0.1},
}
#: grid -> datasets, splits, seeds (the offline grid is the reduced one the README's command runs)
GRIDS = {
    "offline": {"datasets": ("UCMerced", "RSSCN7"), "splits": ("dir0.5",), "seeds": (0, 1, 2),
                "constraints_on": ("UCMerced",), "lengths_on": ("UCMerced",)},
    "full": {"datasets": STUDY_DATASETS, "splits": tuple(SPLITS), "seeds": (0, 1, 2),
             "constraints_on": STUDY_DATASETS, "lengths_on": STUDY_DATASETS},
    # the convergence pilot of the study issue: 60 rounds, seed 0, four methods on two datasets,
    # to choose the number of rounds R at which the curves have flattened
    "pilot": {"datasets": ("UCMerced", "EuroSAT"), "splits": ("dir0.5",), "seeds": (0,),
              "methods": ("fedrsclip", "promptfl", "local", "fedotp"),
              "constraints_on": (), "lengths_on": ()},
}
DEFAULT_GRIDS = ("offline",)


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def method_section(name: str) -> dict:
    """The method's section from its offline params file (its own defaults)."""
    path = METHOD_SOURCES / f"{name}_ucmerced.yaml"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: the method section of {name!r} is taken from it")
    return load_yaml(path)["method"]


def merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def slug(dataset: str) -> str:
    return dataset.lower().replace("-", "")


def runs_of(grid: str) -> Iterator[tuple[str, str, dict]]:
    """``(study folder, run name, config)`` of every run of ``grid``."""
    spec = GRIDS[grid]
    base = load_yaml(BASES / f"{grid}.yaml")
    main = method_section(MAIN_METHOD)

    def config(name: str, method: dict, dataset: str, split: str, seed: int) -> dict:
        data = {"dataset": dataset, **base.get("data", {}), **SPLITS[split], "seed": seed}
        cfg = merge({**base, "data": data}, {"name": name, "method": method, "train": {"seed": seed}})
        return {k: cfg[k] for k in ("name", "backbone", "data", "method", "train", "eval") if k in cfg}

    for dataset in spec["datasets"]:
        for split in spec["splits"]:
            for seed in spec["seeds"]:
                tail = f"{slug(dataset)}__{split}__s{seed}"
                for m in spec.get("methods", METHODS):
                    name = f"{m}__{tail}"
                    yield f"{grid}/methods", name, config(name, method_section(m), dataset, split, seed)
                if dataset in spec["constraints_on"]:
                    for tag, switches in CONSTRAINTS.items():
                        name = f"{MAIN_METHOD}-{tag}__{tail}"
                        yield f"{grid}/constraints", name, config(name, {**main, **switches}, dataset, split, seed)
                if dataset in spec["lengths_on"]:
                    for n_ctx in LENGTHS:
                        name = f"{MAIN_METHOD}-m{n_ctx}__{tail}"
                        yield f"{grid}/prompt_length", name, config(name, {**main, "n_ctx": n_ctx}, dataset, split, seed)


def smoke_runs() -> Iterator[tuple[str, str, dict]]:
    cfg = load_yaml(BASES / "smoke.yaml")
    cfg = merge(cfg, {"name": "fedrsclip_tiny", "method": method_section("fedrsclip")})
    yield "smoke", "fedrsclip_tiny", {k: cfg[k] for k in ("name", "backbone", "data", "method", "train", "eval")}


def render(study: str, name: str, cfg: dict) -> str:
    base = "smoke" if study == "smoke" else study.split("/")[0]
    header = (f"# Generated by params/make_studies.py (study {study}) from params/studies/_base/{base}.yaml\n"
              f"# and params/offline/{cfg['method']['name']}_ucmerced.yaml: edit those, then regenerate.\n"
              f"#   fedrs sweep params/studies/{study}/{name}.yaml\n")
    return header + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False, width=100)


def generate(grids: tuple[str, ...]) -> dict[Path, str]:
    files = {}
    for grid in grids:
        for study, name, cfg in runs_of(grid):
            files[STUDIES / study / f"{name}.yaml"] = render(study, name, cfg)
    for study, name, cfg in smoke_runs():
        files[STUDIES / study / f"{name}.yaml"] = render(study, name, cfg)
    return files


def validate(files: dict[Path, str]) -> None:
    """Every generated file must load as a RunConfig (unknown key / wrong type = error)."""
    import tempfile

    from fedrs.runs import load_run_config

    with tempfile.TemporaryDirectory() as tmp:
        for path, text in files.items():
            probe = Path(tmp) / path.name
            probe.write_text(text, encoding="utf-8")
            load_run_config(probe)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", action="append", choices=sorted(GRIDS),
                        help=f"grids to generate (default: {', '.join(DEFAULT_GRIDS)}); repeatable")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a file on disk differs from the generator")
    args = parser.parse_args(argv)
    grids = tuple(args.grid or DEFAULT_GRIDS)
    files = generate(grids)
    validate(files)
    if args.check:
        stale = sorted(str(p.relative_to(HERE)) for p, text in files.items()
                       if not p.is_file() or p.read_text(encoding="utf-8") != text)
        for p in stale:
            print(f"differs from the generator: params/{p}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    by_study: dict[str, int] = {}
    for path in files:
        key = path.parent.relative_to(STUDIES).as_posix()
        by_study[key] = by_study.get(key, 0) + 1
    for study, n in sorted(by_study.items()):
        print(f"params/studies/{study}: {n} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
