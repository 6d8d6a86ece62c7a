#!/usr/bin/env python
"""Generate the study's params files: one YAML per run (row x dataset x setting x seed).

    .venv/bin/python params/make_studies.py             # write every tier (quick, full), the pilot and smoke
    .venv/bin/python params/make_studies.py --check     # write nothing; exit 1 if a file differs or is stale
    .venv/bin/python params/make_studies.py --estimate  # runs and estimated cost of each tier and part

It needs fedrs installed (the project's venv): the rows, ablation variants and sensitivity values
are :mod:`fedrs.study.vocabulary`'s, and every file is named by
:func:`~fedrs.study.vocabulary.row_key` of its method section, the function the report reads
run folders back with.

Every run is ``params/studies/_base/study.yaml`` (the protocol shared by every run of both tiers:
backbone, clients, rounds R, optimiser, evaluation) + the row's method section, taken from
``params/offline/<source>_ucmerced.yaml`` (the method's published defaults, or the control's
file) with the row's switches + the setting (dataset, split, participation, few-shot) + the seed.
``fedrs sweep params/studies/<tier>`` writes ``results/<tier>/<part>/<run>/``.

The **full tier** is the study issue's five parts, in the order they run (folders sort so):

1. ``1_methods``       every row of the methods table (baselines, controls, FedRSCLIP, pooled
                       data), four datasets, Dirichlet 0.5, 5 seeds;
2. ``2_constraints``   the constraint ablation on Fed-UCMerced and Fed-EuroSAT, 5 seeds (the full
                       model and "V_s uploaded" are part 1's FedRSCLIP and text+visual shared rows);
3. ``3_heterogeneity`` IID and Dirichlet 0.1 on Fed-UCMerced and Fed-EuroSAT for six rows, 3 seeds;
4. ``4_realism``       partial participation (20 clients, 25% a round), 16-shot and cross-domain
                       (natural clients) for the same six, 3 seeds; base-to-novel is missing (the
                       partitioner has no class split);
5. ``5_sensitivity``   DPA kinds, loss weights 0.1/10 per term and prompt lengths 8/16 on
                       Fed-UCMerced, 3 seeds (the defaults are part 1's FedRSCLIP).

The **quick tier** (``make study``) is the full tier's runs on Fed-UCMerced, Dirichlet 0.5, seeds
0-2 of parts 1 and 2: the same files (same names, same content) in ``params/studies/quick/``.
``pilot/methods/`` is the convergence pilot (60 rounds, seed 0) and ``smoke/`` one tiny run (the
default of ``notebooks/02_federated_run.ipynb``).

Seed ``s`` sets both ``train.seed`` and ``data.seed``: every row of one seed sees the same split
and initialisation (a paired design). Edit this file, the bases or params/offline, then re-run
it; never edit the generated files by hand.
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fedrs.study.cost import estimate_run_seconds
from fedrs.study.vocabulary import (
    ABLATIONS,
    CROSS_DOMAIN,
    DPA_KINDS,
    LAMBDAS,
    MAIN_METHOD,
    METHOD_ROWS,
    PROMPT_LENGTHS,
    STUDY_DATASETS,
    STUDY_DEFAULTS,
    row_key,
)

HERE = Path(__file__).resolve().parent
STUDIES = HERE / "studies"
BASES = STUDIES / "_base"
METHOD_SOURCES = HERE / "offline"
#: the base both tiers share (rounds R live there, once)
STUDY_BASE = "study"
#: folders below params/studies/ this script writes (and may prune)
GENERATED_ROOTS = ("quick", "full", "pilot", "smoke")

#: heterogeneity splits: file tag -> data section keys
SPLITS = {
    "iid": {"scheme": "iid"},
    "dir0.5": {"scheme": "dirichlet", "alpha": 0.5},
    "dir0.1": {"scheme": "dirichlet", "alpha": 0.1},
}
#: the methods table's split
MAIN_SPLIT = "dir0.5"
#: seeds of the parts the issue gives 5 seeds (1, 2), of those it gives 3 (3, 4, 5), of the quick tier
SEEDS_5, SEEDS_3, QUICK_SEEDS = (0, 1, 2, 3, 4), (0, 1, 2), (0, 1, 2)
#: the datasets of the constraint ablation, the heterogeneity and the realism parts: the
#: smallest (Fed-UCMerced) and the largest (Fed-EuroSAT) of the study
TWO_DATASETS = ("UCMerced", "EuroSAT")
#: the quick tier's dataset
QUICK_DATASET = "UCMerced"
#: the six rows of parts 3 and 4
SIX_ROWS = ("fedrsclip", "promptfl", "fedpgp", "fedotp", "local", "fedrsclip-local")
#: cross-domain with natural clients: one group of 3 clients per dataset (each group an
#: institution's domain, in the harmonised label space); IID inside a group, so the heterogeneity
#: is the datasets' own (domain and label space), not an added label skew
CROSS_DOMAIN_DATA = {"dataset": CROSS_DOMAIN, "cross_domain": list(STUDY_DATASETS), "num_clients": 12,
                     "scheme": "iid"}


#: part 5: FedRSCLIP with one of the study defaults changed (the default values are part 1's run)
SENSITIVITY_SWITCHES: list[dict[str, Any]] = (
    [{"dpa": k} for k in DPA_KINDS] + [{key: w} for key in ("lambda_dpa", "lambda_cma") for w in LAMBDAS]
    + [{"n_ctx": n} for n in PROMPT_LENGTHS])


# --- rows: method sections --------------------------------------------------------------------------

def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def method_section(source: str) -> dict:
    """The method section of ``params/offline/<source>_ucmerced.yaml`` (its own defaults)."""
    path = METHOD_SOURCES / f"{source}_ucmerced.yaml"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: a row's method section is taken from it")
    return load_yaml(path)["method"]


@dataclass(frozen=True)
class Row:
    """One row of the study: its method section and where it came from."""

    key: str
    source: str                                   # params/offline/<source>_ucmerced.yaml
    switches: dict = field(default_factory=dict)  # set on top of the source's section

    @property
    def section(self) -> dict:
        section = {**method_section(self.source), **self.switches}
        if row_key(section) != self.key:
            raise SystemExit(f"row {self.key!r}: its method section reads back as {row_key(section)!r} "
                             f"(fedrs.study.vocabulary.row_key); fix the vocabulary or the source file")
        return section


def rows() -> dict[str, Row]:
    """Every row the tiers run, by key (methods table, ablation, sensitivity)."""
    main = method_section(MAIN_METHOD)
    wrong = {k: (main.get(k), v) for k, v in STUDY_DEFAULTS.items() if main.get(k) != v}
    if wrong:
        raise SystemExit(f"params/offline/{MAIN_METHOD}_ucmerced.yaml and vocabulary.STUDY_DEFAULTS "
                         f"disagree (file, vocabulary): {wrong}")
    out = {r.key: Row(r.key, r.source) for r in METHOD_ROWS}
    for v in ABLATIONS:
        if not v.in_study or v.key in out:
            continue
        if v.source != MAIN_METHOD and method_section(v.source) != {**main, **v.switches}:
            raise SystemExit(f"params/offline/{v.source}_ucmerced.yaml is not {MAIN_METHOD}'s section with "
                             f"{v.switches} (the ablation variant {v.label!r}); make them agree")
        out[v.key] = Row(v.key, v.source, {} if v.source != MAIN_METHOD else dict(v.switches))
    for switches in SENSITIVITY_SWITCHES:
        key = row_key({**main, **switches})
        if key != MAIN_METHOD:
            out[key] = Row(key, MAIN_METHOD, switches)
    for row in out.values():
        row.section  # noqa: B018 - checks that every row reads back as its key
    return out


def sensitivity_keys() -> list[str]:
    """Part 5's rows in the issue's order (DPA kinds, loss weights, prompt lengths), defaults left out."""
    main = method_section(MAIN_METHOD)
    return [k for k in dict.fromkeys(row_key({**main, **s}) for s in SENSITIVITY_SWITCHES) if k != MAIN_METHOD]


# --- settings -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """Where a row runs: dataset and data/train keys on top of the base."""

    dataset: str
    tag: str                                   # the setting's part of the file name
    data: dict = field(default_factory=dict)   # data keys (split, clients, few-shot, cross-domain)
    train: dict = field(default_factory=dict)  # train keys (participation)

    @property
    def slug(self) -> str:
        return self.dataset.lower().replace("fed-", "").replace("-", "")


def split_setting(dataset: str, split: str) -> Setting:
    return Setting(dataset, split, dict(SPLITS[split]))


def partial_participation(dataset: str) -> Setting:
    return Setting(dataset, f"{MAIN_SPLIT}-20clients-frac0.25", {**SPLITS[MAIN_SPLIT], "num_clients": 20},
                   {"sample_fraction": 0.25})


def few_shot(dataset: str) -> Setting:
    return Setting(dataset, f"{MAIN_SPLIT}-16shot", {**SPLITS[MAIN_SPLIT], "few_shot": 16})


def cross_domain() -> Setting:
    return Setting(CROSS_DOMAIN, "natural", dict(CROSS_DOMAIN_DATA))


# --- tiers ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    part: str        # the part folder (1_methods, ...)
    row: Row
    setting: Setting
    seed: int

    @property
    def name(self) -> str:
        return f"{self.row.key}__{self.setting.slug}__{self.setting.tag}__s{self.seed}"


def full_tier() -> list[Run]:
    """The study issue's five parts, in order."""
    by_key = rows()
    methods = [r.key for r in METHOD_ROWS]
    # the ablation's full model and "V_s uploaded" are methods-table rows: run once, in part 1
    constraints = [v.key for v in ABLATIONS if v.in_study and v.key not in methods]
    parts: list[tuple[str, list[str], list[Setting], tuple[int, ...]]] = [
        ("1_methods", methods, [split_setting(d, MAIN_SPLIT) for d in STUDY_DATASETS], SEEDS_5),
        ("2_constraints", constraints, [split_setting(d, MAIN_SPLIT) for d in TWO_DATASETS], SEEDS_5),
        ("3_heterogeneity", list(SIX_ROWS), [split_setting(d, s) for d in TWO_DATASETS for s in ("iid", "dir0.1")],
         SEEDS_3),
        ("4_realism", list(SIX_ROWS), [partial_participation(d) for d in TWO_DATASETS]
         + [few_shot(d) for d in TWO_DATASETS] + [cross_domain()], SEEDS_3),
        ("5_sensitivity", sensitivity_keys(), [split_setting("UCMerced", MAIN_SPLIT)], SEEDS_3),
    ]
    return [Run(part, by_key[key], setting, seed)
            for part, keys, settings, seeds in parts
            for setting in settings for seed in seeds for key in keys]


def quick_tier() -> list[Run]:
    """The full tier's methods and constraint runs on Fed-UCMerced, Dirichlet 0.5, seeds 0-2."""
    return [r for r in full_tier() if r.part in ("1_methods", "2_constraints") and r.setting.dataset == QUICK_DATASET
            and r.setting.tag == MAIN_SPLIT and r.seed in QUICK_SEEDS]


TIERS = {"quick": quick_tier, "full": full_tier}


def merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def compose(base: dict, name: str, method: dict, dataset: str, data: dict, train: dict, seed: int) -> dict:
    """A run's configuration: ``base`` + dataset, ``data`` keys and seed + the method section +
    ``train`` keys and seed."""
    data = {"dataset": dataset, **base.get("data", {}), **data, "seed": seed}
    cfg = merge({**base, "data": data}, {"name": name, "method": method, "train": {**train, "seed": seed}})
    return {k: cfg[k] for k in ("name", "backbone", "data", "method", "train", "eval") if k in cfg}


@dataclass(frozen=True)
class File:
    """One generated params file."""

    study: str       # folder below params/studies/
    name: str
    cfg: dict
    base: str        # params/studies/_base/<base>.yaml
    source: str      # params/offline/<source>_ucmerced.yaml
    switches: dict

    @property
    def path(self) -> Path:
        return STUDIES / self.study / f"{self.name}.yaml"

    def render(self) -> str:
        with_ = "".join(f" with {k}: {v}" for k, v in self.switches.items())
        header = (f"# Generated by params/make_studies.py (study {self.study}) "
                  f"from params/studies/_base/{self.base}.yaml\n"
                  f"# and params/offline/{self.source}_ucmerced.yaml{with_}: edit those, then regenerate.\n"
                  f"#   fedrs sweep params/studies/{self.study}/{self.name}.yaml\n")
        return header + yaml.safe_dump(self.cfg, sort_keys=False, default_flow_style=False, width=100)


def tier_files(tier: str) -> list[File]:
    base = load_yaml(BASES / f"{STUDY_BASE}.yaml")
    out = []
    for run in TIERS[tier]():
        cfg = compose(base, run.name, run.row.section, run.setting.dataset, run.setting.data, run.setting.train,
                      run.seed)
        out.append(File(f"{tier}/{run.part}", run.name, cfg, STUDY_BASE, run.row.source, run.row.switches))
    return out


#: the convergence pilot of the study issue: 60 rounds, seed 0, four methods on two datasets, to
#: choose the number of rounds R at which the curves have flattened
PILOT = {"datasets": ("UCMerced", "EuroSAT"), "split": MAIN_SPLIT, "seed": 0,
         "methods": ("fedrsclip", "promptfl", "local", "fedotp")}


def pilot_files() -> list[File]:
    base = load_yaml(BASES / "pilot.yaml")
    out = []
    for dataset in PILOT["datasets"]:
        setting = split_setting(dataset, PILOT["split"])
        for m in PILOT["methods"]:
            name = f"{m}__{setting.slug}__{setting.tag}__s{PILOT['seed']}"
            cfg = compose(base, name, method_section(m), dataset, setting.data, {}, PILOT["seed"])
            out.append(File("pilot/methods", name, cfg, "pilot", m, {}))
    return out


def smoke_files() -> list[File]:
    cfg = merge(load_yaml(BASES / "smoke.yaml"), {"name": "fedrsclip_tiny", "method": method_section(MAIN_METHOD)})
    cfg = {k: cfg[k] for k in ("name", "backbone", "data", "method", "train", "eval")}
    return [File("smoke", "fedrsclip_tiny", cfg, "smoke", MAIN_METHOD, {})]


def generate() -> list[File]:
    files = tier_files("quick") + tier_files("full") + pilot_files() + smoke_files()
    paths = [f.path for f in files]
    if len(set(paths)) != len(paths):
        raise SystemExit("two generated runs share a file name: make their rows or settings differ")
    return files


def validate(files: list[File]) -> None:
    """Every generated file must load as a RunConfig (unknown key / wrong type = error)."""
    import tempfile

    from fedrs.runs import load_run_config

    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            probe = Path(tmp) / f"{f.name}.yaml"
            probe.write_text(f.render(), encoding="utf-8")
            load_run_config(probe)


def stale_files(files: list[File]) -> list[Path]:
    """YAML files under the generated folders that the generator no longer writes."""
    wanted = {f.path for f in files}
    return sorted(p for root in GENERATED_ROOTS for p in (STUDIES / root).rglob("*.yaml") if p not in wanted)


# --- cost -----------------------------------------------------------------------------------------------

def estimate(files: list[File], jobs: int) -> str:
    """Runs and estimated core-hours of each tier and part (fedrs.study.cost)."""
    lines = ["Estimated cost (fedrs.study.cost: FedRSCLIP-like round 13 s, text-prompt round 3 s of one core on",
             f"Fed-UCMerced at evaluation every 2 rounds, scaled by images; wall time = core time / {jobs} jobs)", ""]
    for tier in TIERS:
        parts: dict[str, list[float]] = {}
        for f in files:
            if f.study.split("/")[0] == tier:
                parts.setdefault(f.study.split("/", 1)[1], []).append(estimate_run_seconds(f.cfg))
        total = [s for v in parts.values() for s in v]
        lines.append(f"{tier}: {len(total)} runs, {sum(total) / 3600:.1f} core-h, "
                     f"~{sum(total) / 3600 / jobs:.1f} h wall on {jobs} cores")
        for part, secs in parts.items():
            lines.append(f"  {part:16s} {len(secs):4d} runs  {sum(secs) / 3600:6.1f} core-h  "
                         f"~{sum(secs) / 3600 / jobs:5.1f} h wall")
    return "\n".join(lines)


def _shown(path: Path) -> str:
    """``path`` relative to the checkout when inside it."""
    try:
        return path.relative_to(HERE.parent).as_posix()
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a file on disk differs from the generator or is stale")
    parser.add_argument("--estimate", action="store_true", help="print each tier's runs and estimated cost")
    parser.add_argument("--jobs", type=int, default=2, help="parallel runs for the wall-time estimate (default 2)")
    args = parser.parse_args(argv)
    files = generate()
    if args.estimate:
        print(estimate(files, args.jobs))
        return 0
    validate(files)
    stale = stale_files(files)
    if args.check:
        differ = [f.path for f in files if not f.path.is_file() or f.path.read_text(encoding="utf-8") != f.render()]
        for p in differ:
            print(f"differs from the generator: {_shown(p)}", file=sys.stderr)
        for p in stale:
            print(f"stale (not generated any more): {_shown(p)}", file=sys.stderr)
        return 1 if differ or stale else 0
    for f in files:
        text = f.render()
        f.path.parent.mkdir(parents=True, exist_ok=True)
        if not f.path.is_file() or f.path.read_text(encoding="utf-8") != text:
            f.path.write_text(text, encoding="utf-8")
    for p in stale:
        p.unlink()
        print(f"removed stale {_shown(p)}")
    by_study: dict[str, int] = {}
    for f in files:
        by_study[f.study] = by_study.get(f.study, 0) + 1
    for study, n in sorted(by_study.items()):
        print(f"params/studies/{study}: {n} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
