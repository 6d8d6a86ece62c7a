"""Catalogue of bad inputs to `fedrs run`, `describe`, `sweep`, `report`, `backbone` and `flower`
(issue 12; the `fedrs data` catalogue is tests/test_data_bad_inputs.py), one row each.

Every row runs a command line through ``fedrs.cli.main`` and asserts: the exit status (2: the
input is wrong, 1: the machine refused a write), one error on stderr, ``fedrs: error: ...``
naming the problem (and the path involved, where there is one) in its first line, no traceback
anywhere, and an output folder left exactly as it was (nothing written, changed or left
behind; a folder that did not exist still does not). Run: ``pytest tests/test_bad_inputs.py``.

A row marked ``known`` is a case not handled well yet: it runs as a strict xfail (it fails the
suite once fixed, so that the mark is removed) and its reason names what is wrong and where.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pathlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
LINUX = Path("/proc/self").is_dir()
#: a path no process may create (Linux: sysfs refuses new entries, also to root)
UNWRITABLE = Path("/sys/fedrs-catalogue/out")
TINY = {"backbone": {"model": "fedrs-rsclip-tiny", "pretrained": "random"},
        "data": {"dataset": "Tiny3", "num_clients": 2, "scheme": "iid", "seed": 0},
        "method": {"name": "fedrsclip"},
        "train": {"rounds": 1, "batch_size": 8, "lr": 0.01, "seed": 0}}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """A data root holding "Tiny3": three classes of six 32 px images (a custom dataset)."""
    from PIL import Image

    from fedrs.data import import_sources

    base = tmp_path_factory.mktemp("catalogue-data")
    rng = np.random.default_rng(0)
    for c, cls in enumerate(("field", "lake", "town")):
        (base / "src" / cls).mkdir(parents=True)
        for i in range(6):
            arr = rng.integers(0, 90, (32, 32, 3)) + np.eye(3, dtype=int)[c] * 160
            Image.fromarray(arr.astype("uint8")).save(base / "src" / cls / f"{i}.png")
    import_sources([base / "src"], root=base / "data", progress=False, name="Tiny3")
    return base / "data"


@dataclass
class Ctx:
    """What a row's setup may use: ``out`` is the folder whose state the row checks."""

    tmp: Path
    out: Path
    monkeypatch: pytest.MonkeyPatch

    def params(self, name: str = "p.yaml", text: str | None = None, **sections) -> Path:
        """A params file: ``text`` as is, else the tiny config with ``sections`` merged in (a
        section given as None is removed)."""
        path = self.tmp / name
        if text is None:
            cfg = {k: dict(v) for k, v in TINY.items()}
            for key, value in sections.items():
                if value is None:
                    cfg.pop(key, None)
                elif isinstance(value, dict):
                    cfg[key] = {**cfg.get(key, {}), **value}
                else:
                    cfg[key] = value
            text = yaml.safe_dump(cfg)
        path.write_text(text)
        return path

    def run(self, *extra, **sections) -> list[str]:
        return ["run", str(self.params(**sections)), "--out", str(self.out), "--no-progress", *map(str, extra)]

    def stored_run(self, files: dict[str, object], **sections) -> Path:
        """``out`` as a run left it: params.yaml (the tiny config with ``sections``), env.json and
        ``files`` (name -> text, or a torch object saved as is)."""
        from fedrs.config import dump_yaml
        from fedrs.runs import run_config

        self.out.mkdir(parents=True, exist_ok=True)
        cfg = {k: dict(v) for k, v in TINY.items()}
        for key, value in sections.items():
            cfg[key] = {**cfg[key], **value}
        (self.out / "params.yaml").write_text(dump_yaml(run_config(cfg)))
        (self.out / "env.json").write_text("{}")
        for name, content in files.items():
            if isinstance(content, str):
                (self.out / name).write_text(content)
            else:
                torch.save(content, self.out / name)
        return self.out

    def interrupted(self, checkpoint: bytes | object) -> Path:
        """``out`` as a real run interrupted after its first round, with ``checkpoint`` (bytes as
        they are, or a torch object) in place of its checkpoint."""
        from fedrs.experiment import run_experiment
        from fedrs.runs import run_config

        def stop(r, row):
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            run_experiment(run_config({**TINY, "train": {**TINY["train"], "rounds": 2}}), self.out, progress=False,
                           on_round=stop)
        if isinstance(checkpoint, bytes):
            (self.out / "checkpoint.pt").write_bytes(checkpoint)
        else:
            torch.save(checkpoint, self.out / "checkpoint.pt")
        return self.out

    def disk_full_on(self, suffix: str) -> None:
        """Writes of files ending in ``suffix`` below ``out`` fail as on a full disk (the OSError
        of a full disk names no file)."""
        out = self.out

        def fail_if_ours(write):
            def patched(path, *args, **kwargs):
                # the target itself, or the temporary file an atomic write renames onto it
                if path.parent == out and (path.name == suffix or path.name.startswith(f".{suffix}.")):
                    raise OSError(errno.ENOSPC, "No space left on device")
                return write(path, *args, **kwargs)
            return patched

        self.monkeypatch.setattr(pathlib.Path, "write_text", fail_if_ours(pathlib.Path.write_text))
        self.monkeypatch.setattr(pathlib.Path, "write_bytes", fail_if_ours(pathlib.Path.write_bytes))

    def sweep(self, *params, extra=()) -> list[str]:
        return ["sweep", *map(str, params), "--results", str(self.out), "--no-progress", *extra]


@dataclass
class Case:
    id: str
    setup: Callable[[Ctx], list[str]]          # -> argv after "fedrs"
    says: list[str]                            # substrings of the error line
    path: Callable[[Ctx], Path | str] | None = None  # the path the line must name
    rc: int = 2
    known: str = ""                            # not handled well yet: why, and where (strict xfail)
    needs: str = ""                            # "linux" | "no-gpu": skipped elsewhere


# --- fedrs run: the configuration --------------------------------------------------------------------

def _yaml_text(text: str) -> Callable[[Ctx], list[str]]:
    return lambda c: ["run", str(c.params(text=text)), "--out", str(c.out)]


RUN_CONFIG = [
    Case("run-params-missing", lambda c: ["run", str(c.tmp / "nope.yaml"), "--out", str(c.out)],
         ["no such configuration file"], lambda c: c.tmp / "nope.yaml"),
    Case("run-params-is-a-folder", lambda c: ["run", str(c.tmp), "--out", str(c.out)], ["is a folder"],
         lambda c: c.tmp),
    Case("run-yaml-syntax", _yaml_text("train: {rounds: 2\n"), [], lambda c: c.tmp / "p.yaml"),
    Case("run-yaml-a-list", _yaml_text("- data\n- method\n"), [], lambda c: c.tmp / "p.yaml"),
    Case("run-yaml-empty", _yaml_text(""), [], lambda c: c.tmp / "p.yaml"),
    Case("run-unknown-section", lambda c: c.run(trian={"rounds": 2}), ["trian"], lambda c: c.tmp / "p.yaml"),
    Case("run-unknown-train-key", lambda c: c.run(train={"epochs": 2}), ["epochs"], lambda c: c.tmp / "p.yaml"),
    Case("run-rounds-a-word", lambda c: c.run(train={"rounds": "ten"}), ["train.rounds", "integer"],
         lambda c: c.tmp / "p.yaml"),
    Case("run-lr-infinite", _yaml_text(yaml.safe_dump(TINY).replace("lr: 0.01", "lr: .inf")),
         ["train.lr", "finite"], lambda c: c.tmp / "p.yaml"),
    Case("run-lr-nan", _yaml_text(yaml.safe_dump(TINY).replace("lr: 0.01", "lr: .nan")),
         ["train.lr", "finite"], lambda c: c.tmp / "p.yaml"),
    Case("run-lr-negative", lambda c: c.run(train={"lr": -0.1}), ["train.lr", "> 0"], lambda c: c.tmp / "p.yaml"),
    Case("run-zero-rounds", lambda c: c.run(train={"rounds": 0}), ["train.rounds=0", "train.rounds >= 1"],
         lambda c: c.tmp / "p.yaml"),
    Case("run-no-clients-sampled", lambda c: c.run(train={"sample_fraction": 0.0}), ["train.sample_fraction"]),
    Case("run-diverged-share-above-one", lambda c: c.run(train={"max_diverged_fraction": 2}),
         ["train.max_diverged_fraction", "[0, 1]"]),
    Case("run-unknown-aggregation", lambda c: c.run(train={"aggregation": "max"}), ["train.aggregation", "median"]),
    Case("run-trim-half", lambda c: c.run(train={"trim_fraction": 0.5}), ["train.trim_fraction", "[0, 0.5)"]),
    Case("run-unknown-method", lambda c: c.run(method={"name": "fedprox"}), ["unknown method 'fedprox'"]),
    Case("run-no-method", lambda c: c.run(method=None), ["method"], lambda c: c.tmp / "p.yaml"),
    Case("run-unknown-method-key", lambda c: c.run(method={"colour": 1}), ["colour"]),
    Case("run-no-dataset", lambda c: c.run(data={"dataset": None}), ["data.dataset"]),
    Case("run-no-clients", lambda c: c.run(data={"num_clients": 0}), ["num_clients"]),
    Case("run-dirichlet-alpha-zero", lambda c: c.run(data={"scheme": "dirichlet", "alpha": 0}), ["alpha"]),
    Case("run-unknown-backbone", lambda c: c.run(backbone={"model": "ViT-Z-99"}), ["ViT-Z-99"]),
    Case("run-unknown-device", lambda c: c.run(backbone={"device": "gpu"}), ["gpu", "cpu"]),
    Case("run-eval-every-zero", lambda c: c.run(eval={"every": 0}), ["eval.every"]),
    Case("run-template-without-slot", lambda c: c.run(eval={"zeroshot_template": "a photo"}),
         ["eval.zeroshot_template", "{}"]),
    Case("run-privacy-clip-zero", lambda c: c.run(privacy={"mode": "central", "clip_norm": 0}),
         ["privacy.clip_norm"]),
    Case("run-set-without-value", lambda c: c.run("--set", "train.rounds"), ["--set", "KEY=VALUE"]),
    Case("run-set-unknown-key", lambda c: c.run("--set", "train.epochs=3"), ["epochs"]),
    Case("run-no-out", lambda c: ["run", str(c.params())], ["--out"]),
]

# --- fedrs run: data, backbone and run folder ---------------------------------------------------------

RUN_SETUP = [
    Case("run-dataset-not-imported", lambda c: c.run(data={"dataset": "EuroSAT"}), ["EuroSAT", "fedrs data import"]),
    Case("run-few-shot-above-the-data", lambda c: c.run(data={"few_shot": 1000}),
         ["data.few_shot=1000", "at most", "drop few_shot"]),
    Case("run-device-without-gpu", lambda c: c.run(backbone={"device": "cuda"}), ["GPU", "cpu"], needs="no-gpu"),
    Case("run-checkpoint-file-missing", lambda c: c.run(backbone={"pretrained": str(c.tmp / "w.pt")}),
         [], lambda c: c.tmp / "w.pt"),
    Case("run-checkpoint-file-garbage",
         lambda c: ((c.tmp / "w.pt").write_bytes(os.urandom(4096))
                    and c.run(backbone={"pretrained": str(c.tmp / "w.pt")})),
         ["damaged"], lambda c: c.tmp / "w.pt"),
    Case("run-checkpoint-file-empty-dict",
         lambda c: torch.save({}, c.tmp / "w.pt") or c.run(backbone={"pretrained": str(c.tmp / "w.pt")}),
         ["no state dict"], lambda c: c.tmp / "w.pt"),
    Case("run-offline-backbone-not-built", lambda c: c.run(backbone={"model": "fedrs-rsclip-s", "pretrained": None}),
         ["fedrs backbone pretrain"]),
    Case("run-out-is-a-file", lambda c: c.out.write_text("mine") and c.run(), ["is a file", "--out"], lambda c: c.out),
    Case("run-out-not-writable", lambda c: ["run", str(c.params()), "--out", str(UNWRITABLE)],
         ["not permitted", "choose another location"], lambda c: UNWRITABLE.parent, rc=1, needs="linux"),
    Case("run-out-holds-the-users-params",
         lambda c: (c.out.mkdir(), (c.out / "params.yaml").write_text("# mine\n")) and c.run(),
         ["params.yaml that is not a run's", "--force"], lambda c: c.out / "params.yaml"),
    Case("run-resume-into-the-users-params",
         lambda c: (c.out.mkdir(), (c.out / "params.yaml").write_text("# mine\n")) and c.run("--resume"),
         ["params.yaml that is not a run's"], lambda c: c.out / "params.yaml"),
    Case("run-finished-with-other-params",
         lambda c: c.stored_run({"metrics.json": "{}"}, train={"rounds": 3}) and c.run(),
         ["finished run with other parameters", "--force"], lambda c: c.out),
    Case("run-interrupted-without-resume",
         lambda c: c.stored_run({"checkpoint.pt": {"format": "x"}}) and c.run(),
         ["interrupted run", "--resume"], lambda c: c.out),
    Case("run-resume-with-other-params",
         lambda c: c.stored_run({"checkpoint.pt": {"format": "x"}}, train={"rounds": 3}) and c.run("--resume"),
         ["other parameters"], lambda c: c.out / "params.yaml"),
    Case("run-resume-garbage-checkpoint",
         lambda c: c.interrupted(b"not a checkpoint") and c.run("--resume", train={"rounds": 2}),
         ["not a readable checkpoint", "--force"], lambda c: c.out / "checkpoint.pt"),
    Case("run-resume-empty-dict-checkpoint", lambda c: c.interrupted({}) and c.run("--resume", train={"rounds": 2}),
         ["not a fedrs run checkpoint", "--force"], lambda c: c.out / "checkpoint.pt"),
    Case("run-resume-incomplete-checkpoint",
         lambda c: (c.interrupted({"format": "fedrs-checkpoint-v1", "round": 1})
                    and c.run("--resume", train={"rounds": 2})),
         ["incomplete", "--force"], lambda c: c.out / "checkpoint.pt"),
    Case("run-disk-full-at-params", lambda c: c.disk_full_on("params.yaml") or c.run(),
         ["no space left on device", "free space"], lambda c: c.out, rc=1),
    Case("run-disk-full-at-checkpoint", lambda c: c.disk_full_on("checkpoint.pt") or c.run(),
         ["no space left on device", "free space"], lambda c: c.out, rc=1),
]

# --- fedrs describe ------------------------------------------------------------------------------------

DESCRIBE = [
    Case("describe-params-missing", lambda c: ["describe", str(c.tmp / "nope.yaml")], [],
         lambda c: c.tmp / "nope.yaml"),
    Case("describe-unknown-method", lambda c: ["describe", str(c.params(method={"name": "x"})), "--no-weights"],
         ["unknown method 'x'"]),
    Case("describe-set-without-value", lambda c: ["describe", str(c.params()), "--set", "method"], ["KEY=VALUE"]),
    Case("describe-unknown-backbone", lambda c: ["describe", str(c.params(backbone={"model": "ViT-Z-99"}))],
         ["ViT-Z-99"]),
    Case("describe-checkpoint-file-missing",
         lambda c: ["describe", str(c.params(backbone={"pretrained": str(c.tmp / "w.pt")}))], [],
         lambda c: c.tmp / "w.pt"),
    Case("describe-lr-infinite", lambda c: ["describe", str(c.params(
        text=yaml.safe_dump(TINY).replace("lr: 0.01", "lr: -.inf")))], ["train.lr", "finite"]),
    Case("describe-zero-rounds", lambda c: ["describe", str(c.params(train={"rounds": 0})), "--no-weights"],
         ["train.rounds"]),
]

# --- fedrs sweep ---------------------------------------------------------------------------------------

def _notebook(c: Ctx) -> Path:
    nb = c.tmp / "stand_in.ipynb"
    nb.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    return nb


def _two_invalid(c: Ctx) -> list[str]:
    folder = c.tmp / "study"
    folder.mkdir()
    c.params("study/ok.yaml")
    c.params("study/typo.yaml", trian={})
    c.params("study/zero.yaml", train={"rounds": 0})
    return c.sweep(folder, extra=["--notebook", str(_notebook(c))])


def _clash(c: Ctx) -> list[str]:
    for sub in ("one", "two"):
        (c.tmp / sub).mkdir()
        c.params(f"{sub}/a.yaml")
    return c.sweep(c.tmp / "one", c.tmp / "two", extra=["--study", "same", "--notebook", str(_notebook(c))])


SWEEP = [
    Case("sweep-params-missing", lambda c: c.sweep(c.tmp / "nope.yaml"), ["no such params file"],
         lambda c: c.tmp / "nope.yaml"),
    Case("sweep-folder-without-params", lambda c: (c.tmp / "empty").mkdir() or c.sweep(c.tmp / "empty"),
         ["no params files"], lambda c: c.tmp / "empty"),
    Case("sweep-invalid-params-run-nothing", _two_invalid,
         ["2 of 3 params files are invalid, nothing was run", "trian", "train.rounds=0"],
         lambda c: c.tmp / "study" / "typo.yaml"),
    Case("sweep-notebook-missing",
         lambda c: c.sweep(c.params(), extra=["--notebook", str(c.tmp / "nb.ipynb")]), ["--notebook"],
         lambda c: c.tmp / "nb.ipynb"),
    Case("sweep-runs-clash", _clash, ["would all write"]),
    Case("sweep-results-is-a-file",
         lambda c: c.out.write_text("mine") and c.sweep(c.params(), extra=["--notebook", str(_notebook(c))]),
         ["results folder is a file", "--results"], lambda c: c.out),
    Case("sweep-jobs-zero", lambda c: c.sweep(c.params(), extra=["--jobs", "0"]), ["--jobs", "greater than 0"]),
    Case("sweep-jobs-a-word", lambda c: c.sweep(c.params(), extra=["--jobs", "all"]), ["--jobs", "integer"]),
    Case("sweep-timeout-negative", lambda c: c.sweep(c.params(), extra=["--timeout", "-5"]), ["--timeout"]),
    Case("sweep-no-params", lambda c: ["sweep"], ["PARAMS"]),
]

# --- fedrs report --------------------------------------------------------------------------------------

def _run_folder(c: Ctx, name: str, metrics: str, params: bool = True) -> Path:
    run = c.tmp / "results" / "study" / name
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(metrics)
    if params:
        (run / "params.yaml").write_text(yaml.safe_dump(TINY))
    return run


REPORT = [
    Case("report-results-missing", lambda c: ["report", str(c.tmp / "nope"), "--out", str(c.out)],
         ["no results folder", "fedrs sweep"], lambda c: c.tmp / "nope"),
    Case("report-no-runs",
         lambda c: (c.tmp / "results").mkdir() or ["report", str(c.tmp / "results"), "--out", str(c.out)],
         ["no run folders", "fedrs sweep"], lambda c: c.tmp / "results"),
    Case("report-out-is-a-file",
         lambda c: _run_folder(c, "a", '{"personalised_accuracy": 0.5}') and c.out.write_text("mine")
         and ["report", str(c.tmp / "results"), "--out", str(c.out)], ["--out is a file"], lambda c: c.out),
    Case("report-out-not-writable",
         lambda c: _run_folder(c, "a", json.dumps({"method": "fedrsclip", "personalised_accuracy": 0.5,
                                                    "global_accuracy": 0.4, "seed": 0}))
         and ["report", str(c.tmp / "results"), "--out", str(UNWRITABLE), "--no-figures"],
         ["fix its permissions or choose another location"], lambda c: UNWRITABLE.parent, rc=1, needs="linux"),
    Case("report-only-a-nan-run", lambda c: _run_folder(c, "a", '{"personalised_accuracy": NaN}')
         and ["report", str(c.tmp / "results"), "--out", str(c.out)], ["every run folder", "damaged"],
         lambda c: c.tmp / "results"),
    Case("report-only-broken-json", lambda c: _run_folder(c, "a", '{"personalised_accuracy": 0.')
         and ["report", str(c.tmp / "results"), "--out", str(c.out)], ["every run folder", "damaged"]),
    Case("report-only-a-run-without-params", lambda c: _run_folder(c, "a", "{}", params=False)
         and ["report", str(c.tmp / "results"), "--out", str(c.out)], ["every run folder", "damaged"]),
]

# --- fedrs backbone ------------------------------------------------------------------------------------

class _RunsCode:
    """Unpickling this runs a command (what a crafted pretrain_state.pt did)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _state(c: Ctx, content) -> list[str]:
    c.out.mkdir()
    torch.save(content, c.out / "pretrain_state.pt")
    return ["backbone", "pretrain", "--model", "fedrs-rsclip-tiny", "--out", str(c.out), "--no-card"]


def _crafted(c: Ctx) -> list[str]:
    return _state(c, {"config": _RunsCode(c.tmp / "PWNED"), "model": {}, "optimizer": {}, "scheduler": {},
                      "epoch": 1, "history": [], "elapsed": 0.0})


def _garbage_state(c: Ctx) -> list[str]:
    argv = _state(c, None)
    (c.out / "pretrain_state.pt").write_bytes(b"\x00garbage")
    return argv


def _other_recipe(c: Ctx) -> list[str]:
    return _state(c, {"config": {"model": "fedrs-rsclip-tiny", "epochs": 999}, "model": {}, "optimizer": {},
                      "scheduler": {}, "epoch": 1, "history": [], "elapsed": 0.0})


BACKBONE = [
    Case("backbone-pretrain-unknown-model", lambda c: ["backbone", "pretrain", "--model", "nope", "--out", str(c.out)],
         ["no pretraining recipe", "fedrs-rsclip-tiny"]),
    Case("backbone-pretrain-recipe-missing",
         lambda c: ["backbone", "pretrain", "--recipe", str(c.tmp / "r.yaml"), "--out", str(c.out)], [],
         lambda c: c.tmp / "r.yaml"),
    Case("backbone-pretrain-unknown-key",
         lambda c: ["backbone", "pretrain", "--model", "fedrs-rsclip-tiny", "--set", "epochz=2", "--out", str(c.out)],
         ["epochz"]),
    Case("backbone-pretrain-set-without-value",
         lambda c: ["backbone", "pretrain", "--model", "fedrs-rsclip-tiny", "--set", "epochs", "--out", str(c.out)],
         ["KEY=VALUE"]),
    Case("backbone-pretrain-lr-infinite",
         lambda c: ["backbone", "pretrain", "--model", "fedrs-rsclip-tiny", "--set", "lr=.inf", "--out", str(c.out)],
         ["lr", "finite"]),
    Case("backbone-pretrain-state-runs-code", _crafted, ["never unpickles", "--restart"],
         lambda c: c.out / "pretrain_state.pt"),
    Case("backbone-pretrain-state-garbage", _garbage_state, ["damaged", "--restart"],
         lambda c: c.out / "pretrain_state.pt"),
    Case("backbone-pretrain-state-empty-dict", lambda c: _state(c, {}), ["not one fedrs wrote", "--restart"],
         lambda c: c.out / "pretrain_state.pt"),
    Case("backbone-pretrain-state-other-recipe", _other_recipe, ["different recipe", "--restart"],
         lambda c: c.out / "pretrain_state.pt"),
    Case("backbone-pretrain-out-is-a-file",
         lambda c: c.out.write_text("mine") and ["backbone", "pretrain", "--model", "fedrs-rsclip-tiny",
                                                 "--out", str(c.out)], ["is a file", "--out"], lambda c: c.out),
    Case("backbone-card-not-built", lambda c: ["backbone", "card", "--model", "fedrs-rsclip-tiny"],
         ["no model card", "fedrs backbone pretrain"]),
    Case("backbone-no-action", lambda c: ["backbone"], ["ACTION"]),
]

# --- fedrs flower (argument errors) ---------------------------------------------------------------------

FLOWER = [
    Case("flower-no-command", lambda c: ["flower"], ["COMMAND", "fedrs flower --help"]),
    Case("flower-unknown-command", lambda c: ["flower", "launch"], ["invalid choice: 'launch'"]),
    Case("flower-local-no-out", lambda c: ["flower", "local", str(c.params())], ["--out"]),
    Case("flower-local-no-params", lambda c: ["flower", "local", "--out", str(c.out)], ["PARAMS.yaml"]),
    Case("flower-local-clients-a-word", lambda c: ["flower", "local", str(c.params()), "--out", str(c.out),
                                                   "--clients", "many"], ["--clients", "'many'"]),
    Case("flower-local-params-missing", lambda c: ["flower", "local", str(c.tmp / "nope.yaml"), "--out", str(c.out)],
         ["no such configuration file"], lambda c: c.tmp / "nope.yaml"),
    Case("flower-supernode-no-partition", lambda c: ["flower", "supernode"], ["--partition-id"]),
]

CASES = RUN_CONFIG + RUN_SETUP + DESCRIBE + SWEEP + REPORT + BACKBONE + FLOWER


def _snapshot(path: Path):
    """Everything at ``path``: None (absent), a file's bytes, or a folder's files and their contents."""
    if not path.exists():
        return None
    if path.is_file():
        return path.read_bytes()
    return sorted((p.relative_to(path).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/")
                  for p in path.rglob("*"))


@pytest.fixture
def ctx(tmp_path, monkeypatch, data_root) -> Ctx:
    for var, folder in (("FEDRS_DATA", data_root), ("FEDRS_CACHE", tmp_path / "cache"),
                        ("FEDRS_MODELS", tmp_path / "models"), ("FEDRS_RESULTS", tmp_path / "results-root")):
        monkeypatch.setenv(var, str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import fedrs.study.sweep as sw

    monkeypatch.setattr(sw, "ensure_inputs", lambda configs: None)  # rows never get that far; never import
    return Ctx(tmp_path / "case", tmp_path / "out", monkeypatch)


def _params(case: Case):
    marks = []
    if case.known:
        marks.append(pytest.mark.xfail(reason=case.known, strict=True))
    if case.needs == "linux" and not LINUX:
        marks.append(pytest.mark.skip(reason="needs Linux /sys"))
    if case.needs == "no-gpu" and torch.cuda.is_available():
        marks.append(pytest.mark.skip(reason="this machine has a GPU"))
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_params(c) for c in CASES])
def test_bad_input(case: Case, ctx: Ctx, capsys):
    from fedrs.cli import main

    ctx.tmp.mkdir()
    argv = case.setup(ctx)
    before = _snapshot(ctx.out)
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    out, err = capsys.readouterr()
    assert rc == case.rc, (out, err)
    assert "Traceback" not in out + err and '  File "' not in out + err
    assert err.startswith("fedrs: error: ") and err.count("fedrs: error: ") == 1, err
    line = err.strip().splitlines()[0]  # the error; more lines only as its own detail (a YAML problem mark)
    for words in case.says:
        assert words in line, (words, line)
    if case.path is not None:
        assert str(case.path(ctx)) in line, line
    assert _snapshot(ctx.out) == before  # nothing written, changed or left behind
    assert not (ctx.tmp / "PWNED").exists()  # no code ran from a file


def test_catalogue_covers_at_least_fifty_cases_across_the_commands():
    assert len(CASES) >= 50 and len({c.id for c in CASES}) == len(CASES)
    assert {c.id.split("-")[0] for c in CASES} == {"run", "describe", "sweep", "report", "backbone", "flower"}


def test_a_report_skips_a_damaged_run_folder_with_a_note(tmp_path, capsys):
    """One damaged folder among good ones: a note names it, the others are tabled (exit 0)."""
    from fedrs.cli import main

    ctx = Ctx(tmp_path, tmp_path / "out", pytest.MonkeyPatch())
    good = {"method": "fedrsclip", "personalised_accuracy": 0.5, "global_accuracy": 0.4, "seed": 0,
            "backbone": "fedrs-rsclip-tiny/random-init", "dataset": "Tiny3", "num_clients": 2, "rounds": 1}
    _run_folder(ctx, "good", json.dumps(good))
    bad = _run_folder(ctx, "bad", '{"personalised_accuracy": NaN}')
    assert main(["report", str(tmp_path / "results"), "--out", str(ctx.out), "--no-figures"]) == 0
    out, err = capsys.readouterr()
    assert f"fedrs: skipped a damaged run folder: {bad / 'metrics.json'}" in out and "NaN" in out
    assert "1 runs" in err and "1 damaged run folder(s) skipped" in err
    assert "Traceback" not in out + err
