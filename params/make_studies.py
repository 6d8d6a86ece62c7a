#!/usr/bin/env python
"""Generate the study's params files: one YAML per run (row x dataset x setting x seed).

    .venv/bin/python params/make_studies.py             # write every tier (quick, full, privacy), pilot, smoke
    .venv/bin/python params/make_studies.py --check     # write nothing; exit 1 if a file differs or is stale
    .venv/bin/python params/make_studies.py --estimate  # runs and estimated cost of each tier and part
    .venv/bin/python params/make_studies.py --measure-update-norms PARAMS  # the DP clipping norm's data

It needs fedrs installed (the project's venv): the rows, ablation variants and sensitivity values
are :mod:`fedrs.study.vocabulary`'s, and every file is named by
:func:`~fedrs.study.vocabulary.row_key` of its method section, the function the report reads
run folders back with.

Every run is ``params/studies/_base/study.yaml`` (the protocol shared by every run of both tiers:
backbone, clients, rounds R, optimiser, evaluation) + the row's method section, taken from
``params/offline/<source>_ucmerced.yaml`` (the method's published defaults, or the control's
file) with the row's switches + the setting (dataset, split, participation, few-shot) + the seed.
``fedrs sweep params/studies/<tier>`` writes ``results/<tier>/<part>/<run>/``.

The **full tier** is the study issue's five parts and the privacy issue's privacy-utility part,
in the order they run (folders sort so):

1. ``1_methods``       every row of the methods table (baselines, controls, FedRSCLIP, pooled
                       data), four datasets, Dirichlet 0.5, 5 seeds;
2. ``2_constraints``   the constraint ablation on Fed-UCMerced and Fed-EuroSAT, 5 seeds (the full
                       model and "V_s uploaded" are part 1's FedRSCLIP and text+visual shared rows);
3. ``3_heterogeneity`` IID and Dirichlet 0.1 on Fed-UCMerced and Fed-EuroSAT for six rows, 3 seeds;
4. ``4_realism``       partial participation (20 clients, 25% a round), 16-shot, cross-domain
                       (natural clients), base-to-novel (first half of the classes trained) and two
                       clients that never train (the global model on them) for the same six, 3 seeds;
5. ``5_sensitivity``   DPA kinds, loss weights 0.1/10 per term and prompt lengths 8/16 on
                       Fed-UCMerced, 3 seeds (the defaults are part 1's FedRSCLIP);
6. ``6_privacy``       FedRSCLIP with central differential privacy on its shared prompt at three
                       noise multipliers (epsilon about 49, 8 and 1 at delta 1e-5 after R rounds),
                       Fed-UCMerced, Dirichlet 0.5, seeds 0-2 (issue 15's privacy-utility table;
                       epsilon = infinity is part 1's FedRSCLIP of the same seeds).

The **quick tier** (``make study``) is the full tier's part-1 runs of FedRSCLIP, the published
baselines, local-only at both capacities and zero-shot (:data:`QUICK_ROWS`) on Fed-UCMerced,
Dirichlet 0.5, seeds 0-2: the same files (same names, same content) in ``params/studies/quick/``.
The **privacy tier** (``params/studies/privacy/``, run on its own) is part 6 and the three runs
of part 1 it is paired against (FedRSCLIP, Fed-UCMerced, Dirichlet 0.5, seeds 0-2), again the
full tier's files, so ``fedrs report results/privacy`` has the epsilon = infinity column; it is
not part of the quick tier.
``pilot/methods/`` is the convergence pilot (60 rounds, seed 0) scored on the test splits, and
``pilot/validation/`` the same runs scored on a validation split of the training images
(``data.holdout: validation``), whose curves choose R (:mod:`fedrs.study.convergence`);
``smoke/`` is one tiny run (the default of ``notebooks/02_federated_run.ipynb``).

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
GENERATED_ROOTS = ("quick", "full", "privacy", "pilot", "smoke")

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
#: the privacy part's dataset (the issue: Fed-UCMerced)
PRIVACY_DATASET = "UCMerced"
#: the quick tier's rows: FedRSCLIP, the published baselines, local-only at both capacities and
#: zero-shot. Measured cost decided the cut (the issue: `make study` within 60 minutes on 2 cores,
#: pretraining included): the other controls (PromptFL+VPT, text+visual shared, the pooled-data
#: models) and the constraint ablation are image-encoder runs, each about as costly as FedRSCLIP,
#: and stay in the full tier
QUICK_ROWS = ("zeroshot", "local", "fedrsclip-local", "promptfl", "fedpgp", "fedotp", "fedrsclip")
#: the six rows of parts 3 and 4
SIX_ROWS = ("fedrsclip", "promptfl", "fedpgp", "fedotp", "local", "fedrsclip-local")
#: cross-domain with natural clients: one group of 3 clients per dataset (each group an
#: institution's domain, in the harmonised label space); IID inside a group, so the heterogeneity
#: is the datasets' own (domain and label space), not an added label skew
CROSS_DOMAIN_DATA = {"dataset": CROSS_DOMAIN, "cross_domain": list(STUDY_DATASETS), "num_clients": 12,
                     "scheme": "iid"}


#: part 6: central differential privacy on FedRSCLIP's shared prompt (fedrs.federated.dp: the
#: server clips each client's update of the shared tensors to L2 norm C, averages the clipped
#: updates with equal weights and adds Gaussian noise of std z * C / m to the mean; an RDP
#: accountant gives epsilon at delta). Central rather than local DP: the table is about what the
#: released shared prompt leaks, and for the same z (the same epsilon per client, sampled every
#: round) local noise of std z * C on each of the m = 10 uploads leaves noise of std z * C /
#: sqrt(m) on their mean, sqrt(10) = 3.2 times the central noise.
PRIVACY_MODE = "central"
#: delta of every reported epsilon: PrivacyConfig's default, far below 1 / clients (10)
PRIVACY_DELTA = 1e-5
#: the noise multipliers z, by the epsilon they are meant to reach after R = 44 rounds of all 10
#: clients (sampling rate 1, so no amplification by sampling): epsilon from the run's own
#: accountant (fedrs.federated.dp.epsilon_spent, dp-accounting's RDP accountant) at delta 1e-5:
#: z = 1 -> 52.2 (weak), z = 4 -> 8.55 (moderate), z = 25 -> 1.08 (strong); chosen at R = 40
#: (48.80, 8.08, 1.03) and still within PRIVACY_TOLERANCE of their targets at 44. privacy_note()
#: recomputes them and refuses a z whose epsilon left its target by more than PRIVACY_TOLERANCE
#: (R changes epsilon: re-choose z then, with `--estimate`, which prints them).
PRIVACY_LEVELS = {25.0: 1.0, 4.0: 8.0, 1.0: 50.0}
PRIVACY_TOLERANCE = 1.25
#: the clipping norm C of the shared prompt's update (FedRSCLIP uploads 4 x 128 = 512 values). Chosen without test data:
#: the median of the per-client update norms ||upload - global||_2 of a run without DP (the
#: clipping quantile 0.5 that adaptive clipping targets, Andrew et al. 2021, "Differentially
#: Private Learning with Adaptive Clipping"), over all 40 rounds x 10 clients of part 1's
#: fedrsclip__ucmerced__dir0.5__s0 when R was 40 (training updates only; kept at R = 44, whose
#: cosine schedule differs little), measured by `make_studies.py
#: --measure-update-norms params/studies/full/1_methods/fedrsclip__ucmerced__dir0.5__s0.yaml`:
#: median 0.0356 (quartiles 0.0133 / 0.0634, max 0.334), rounded to one significant digit. The
#: norms follow the cosine learning rate (median 0.10 in rounds 1-4, 0.043 in 17-20, 0.0009 in
#: 37-40), so a fixed C clips early rounds and lets the noise outweigh the late ones.
PRIVACY_CLIP_NORM = 0.04
#: the privacy part's seeds (the issue: 3 seeds)
PRIVACY_SEEDS = SEEDS_3


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
    privacy: dict = field(default_factory=dict)  # the privacy section (none: no DP)

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


def base_to_novel(dataset: str) -> Setting:
    """Train on the first half of the classes (CoOp's base), test base and novel (FedTPG/FedPGP)."""
    return Setting(dataset, f"{MAIN_SPLIT}-base2novel", {**SPLITS[MAIN_SPLIT], "class_split": "base-to-novel"})


def unseen_clients(dataset: str) -> Setting:
    """10 training clients and 2 partitioned alike that never train: the global model on them."""
    return Setting(dataset, f"{MAIN_SPLIT}-10+2unseen", {**SPLITS[MAIN_SPLIT], "num_clients": 10,
                                                          "unseen_clients": 2})


def cross_domain() -> Setting:
    return Setting(CROSS_DOMAIN, "natural", dict(CROSS_DOMAIN_DATA))


def private(dataset: str, noise_multiplier: float) -> Setting:
    """The methods table's split with central DP at ``noise_multiplier`` (part 6)."""
    return Setting(dataset, f"{MAIN_SPLIT}-dp-z{noise_multiplier:g}", dict(SPLITS[MAIN_SPLIT]),
                   privacy={"mode": PRIVACY_MODE, "clip_norm": PRIVACY_CLIP_NORM,
                            "noise_multiplier": noise_multiplier, "delta": PRIVACY_DELTA})


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
    """The study issue's five parts and the privacy part, in order."""
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
         + [few_shot(d) for d in TWO_DATASETS] + [cross_domain()]
         + [base_to_novel(d) for d in TWO_DATASETS] + [unseen_clients(d) for d in TWO_DATASETS], SEEDS_3),
        ("5_sensitivity", sensitivity_keys(), [split_setting("UCMerced", MAIN_SPLIT)], SEEDS_3),
        ("6_privacy", [MAIN_METHOD], [private(PRIVACY_DATASET, z) for z in sorted(PRIVACY_LEVELS)], PRIVACY_SEEDS),
    ]
    return [Run(part, by_key[key], setting, seed)
            for part, keys, settings, seeds in parts
            for setting in settings for seed in seeds for key in keys]


def quick_tier() -> list[Run]:
    """The full tier's methods-table runs of :data:`QUICK_ROWS` on Fed-UCMerced, Dirichlet 0.5, seeds 0-2."""
    return [r for r in full_tier() if r.part == "1_methods" and r.row.key in QUICK_ROWS
            and r.setting.dataset == QUICK_DATASET and r.setting.tag == MAIN_SPLIT and r.seed in QUICK_SEEDS]


def privacy_tier() -> list[Run]:
    """The full tier's privacy part and the non-DP runs it is paired against (part 1's FedRSCLIP
    on the same dataset, split and seeds: the epsilon = infinity column)."""
    full = full_tier()
    clear = [r for r in full if r.part == "1_methods" and r.row.key == MAIN_METHOD
             and r.setting.dataset == PRIVACY_DATASET and r.setting.tag == MAIN_SPLIT and r.seed in PRIVACY_SEEDS]
    return clear + [r for r in full if r.part == "6_privacy"]


TIERS = {"quick": quick_tier, "full": full_tier, "privacy": privacy_tier}


def merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def compose(base: dict, name: str, method: dict, dataset: str, data: dict, train: dict, seed: int,
            privacy: dict | None = None) -> dict:
    """A run's configuration: ``base`` + dataset, ``data`` keys and seed + the method section +
    ``train`` keys and seed (+ a ``privacy`` section when given)."""
    data = {"dataset": dataset, **base.get("data", {}), **data, "seed": seed}
    cfg = merge({**base, "data": data}, {"name": name, "method": method, "train": {**train, "seed": seed}})
    if privacy:
        cfg["privacy"] = dict(privacy)
    return {k: cfg[k] for k in ("name", "backbone", "data", "method", "train", "eval", "privacy") if k in cfg}


@dataclass(frozen=True)
class File:
    """One generated params file."""

    study: str       # folder below params/studies/
    name: str
    cfg: dict
    base: str        # params/studies/_base/<base>.yaml
    source: str      # params/offline/<source>_ucmerced.yaml
    switches: dict
    note: str = ""   # an extra header comment line (the epsilon a DP run will spend)

    @property
    def path(self) -> Path:
        return STUDIES / self.study / f"{self.name}.yaml"

    def render(self) -> str:
        with_ = "".join(f" with {k}: {v}" for k, v in self.switches.items())
        header = (f"# Generated by params/make_studies.py (study {self.study}) "
                  f"from params/studies/_base/{self.base}.yaml\n"
                  f"# and params/offline/{self.source}_ucmerced.yaml{with_}: edit those, then regenerate.\n"
                  + (f"# {self.note}\n" if self.note else "")
                  + f"#   fedrs sweep params/studies/{self.study}/{self.name}.yaml\n")
        return header + yaml.safe_dump(self.cfg, sort_keys=False, default_flow_style=False, width=100)


def tier_files(tier: str) -> list[File]:
    base = load_yaml(BASES / f"{STUDY_BASE}.yaml")
    out = []
    for run in TIERS[tier]():
        cfg = compose(base, run.name, run.row.section, run.setting.dataset, run.setting.data, run.setting.train,
                      run.seed, run.setting.privacy)
        out.append(File(f"{tier}/{run.part}", run.name, cfg, STUDY_BASE, run.row.source, run.row.switches,
                        privacy_note(cfg)))
    return out


def planned_epsilon(cfg: dict) -> float | None:
    """The epsilon a run's configuration spends by its last round, from the accountant the run
    itself uses (:func:`fedrs.federated.dp.epsilon_spent`); ``None`` without DP."""
    from fedrs.config import from_dict
    from fedrs.federated.dp import epsilon_spent
    from fedrs.runs import PrivacyConfig

    if not cfg.get("privacy"):
        return None
    privacy = from_dict(PrivacyConfig, cfg["privacy"], "privacy")
    clients = cfg["data"]["num_clients"]
    per_round = max(1, round(clients * cfg["train"].get("sample_fraction", 1.0)))
    return epsilon_spent(privacy, clients, per_round, cfg["train"]["rounds"])


def privacy_note(cfg: dict) -> str:
    """The header line of a DP run naming the epsilon it will spend ('' without DP). Refuses a
    noise multiplier whose epsilon is off its :data:`PRIVACY_LEVELS` target by more than
    :data:`PRIVACY_TOLERANCE` (the rounds R or the clients changed: choose z again)."""
    epsilon = planned_epsilon(cfg)
    if epsilon is None:
        return ""
    z = cfg["privacy"]["noise_multiplier"]
    target = PRIVACY_LEVELS.get(z)
    if target is not None and not target / PRIVACY_TOLERANCE <= epsilon <= target * PRIVACY_TOLERANCE:
        raise SystemExit(f"noise multiplier {z:g} now spends epsilon {epsilon:.2f} (target {target:g}): the rounds or "
                         f"clients changed; choose PRIVACY_LEVELS again (params/make_studies.py --estimate)")
    return (f"central DP: epsilon {epsilon:.2f} at delta {cfg['privacy']['delta']:g} after "
            f"{cfg['train']['rounds']} rounds (fedrs.federated.dp.epsilon_spent)")


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
            # the same runs scored on a validation split of the training images (data.holdout):
            # the round budget R is chosen on these curves, never on test images
            val_name = f"{m}__{setting.slug}__{setting.tag}-val__s{PILOT['seed']}"
            val_cfg = compose(base, val_name, method_section(m), dataset, {**setting.data, "holdout": "validation"},
                              {}, PILOT["seed"])
            out.append(File("pilot/validation", val_name, val_cfg, "pilot", m, {}))
    return out


def smoke_files() -> list[File]:
    cfg = merge(load_yaml(BASES / "smoke.yaml"), {"name": "fedrsclip_tiny", "method": method_section(MAIN_METHOD)})
    cfg = {k: cfg[k] for k in ("name", "backbone", "data", "method", "train", "eval")}
    return [File("smoke", "fedrsclip_tiny", cfg, "smoke", MAIN_METHOD, {})]


def generate() -> list[File]:
    files = [f for tier in TIERS for f in tier_files(tier)] + pilot_files() + smoke_files()
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
    spent = {(f.cfg["privacy"]["noise_multiplier"], f.cfg["privacy"]["delta"], f.cfg["train"]["rounds"]):
             planned_epsilon(f.cfg) for f in files if f.cfg.get("privacy")}
    if spent:
        lines += ["", "Privacy part (central DP, fedrs.federated.dp.epsilon_spent):"]
        lines += [f"  noise multiplier {z:g}: epsilon {eps:.2f} at delta {delta:g} after {rounds} rounds"
                  for (z, delta, rounds), eps in sorted(spent.items())]
    return "\n".join(lines)


# --- the clipping norm of the privacy part -----------------------------------------------------------

def measure_update_norms(params: Path, out_dir: Path, datasets: list | None = None) -> list[list[float]]:
    """Run ``params`` (a run without DP) into ``out_dir`` and return, per round, each averaged
    client's L2 norm of its shared-tensor update ``upload - global`` (client order): what
    :data:`PRIVACY_CLIP_NORM` is chosen from. Training updates only; evaluation runs once, at the
    end, and its numbers are not used. The run itself is the run without the measurement.
    ``datasets``: as :func:`fedrs.experiment.run_experiment`'s (tests)."""
    from unittest import mock

    import fedrs.federated.dp as dp
    from fedrs.experiment import run_experiment
    from fedrs.runs import load_run_config

    cfg = load_run_config(params)
    if cfg.privacy.mode != "none":
        raise SystemExit(f"{params}: measure the update norms of a run without DP (privacy.mode: none)")
    cfg.eval.every = cfg.train.rounds
    norms: list[list[float]] = []
    central_dp = dp.apply_central_dp

    def recording(global_before, aggregate, results, privacy, generator):  # the engine's DP step, unchanged
        norms.append([dp.l2_norm(dp.update_of(global_before, r.shared))
                      for r in sorted(results, key=lambda r: r.client_id)])
        return central_dp(global_before, aggregate, results, privacy, generator)

    with mock.patch.object(dp, "apply_central_dp", recording):
        run_experiment(cfg, out_dir, progress=False, force=True, datasets=datasets)
    return norms


def norms_summary(norms: list[list[float]]) -> str:
    """Median and quartiles of the update norms over all rounds and clients, and per tenth of the run."""
    import numpy as np

    flat = np.array([x for row in norms for x in row])
    lines = [f"{len(flat)} client updates over {len(norms)} rounds: median {np.median(flat):.4f}, "
             f"quartiles {np.quantile(flat, 0.25):.4f} / {np.quantile(flat, 0.75):.4f}, "
             f"min {flat.min():.4f}, max {flat.max():.4f}"]
    step = max(1, len(norms) // 10)
    for start in range(0, len(norms), step):
        part = np.array([x for row in norms[start:start + step] for x in row])
        lines.append(f"  rounds {start + 1}-{min(start + step, len(norms))}: median {np.median(part):.4f}")
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
    parser.add_argument("--measure-update-norms", metavar="PARAMS", type=Path,
                        help="run PARAMS (no DP) and print its clients' update norms of the shared tensors, "
                             "from which the privacy part's clipping norm is chosen (minutes: a whole run)")
    parser.add_argument("--out", type=Path, default=Path("runs/update_norms"),
                        help="run folder of --measure-update-norms (default runs/update_norms)")
    args = parser.parse_args(argv)
    if args.measure_update_norms:
        print(norms_summary(measure_update_norms(args.measure_update_norms, args.out)))
        return 0
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
