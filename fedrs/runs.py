"""Run configurations and run folders.

A run is one YAML file (:class:`RunConfig`) and one self-describing folder, filled by
:func:`fedrs.experiment.run_experiment`::

    DIR/params.yaml     the full configuration, defaults filled in
    DIR/split.json      the clients' data: the Fed-RSIC partition manifest (a retrieval run: image shards)
    DIR/rounds.csv      one row per round (accuracies, loss terms, communication, time)
    DIR/clients.csv     one row per client and round (examples, bytes up/down, personalised accuracy)
    DIR/metrics.json    the final summary (written last: its presence marks a finished run)
    DIR/env.json        versions, git commit, host
    DIR/checkpoint.pt   state after the last finished round (for --resume)

YAML layout (every key optional except ``data.dataset`` and ``method.name``)::

    backbone: {model: fedrs-rsclip-s, pretrained: null, device: cpu}
    data:     {dataset: UCMerced, num_clients: 10, scheme: dirichlet, alpha: 0.5, seed: 0, ...}
    method:   {name: fedrsclip, n_ctx: 4, ...}     # the method's own section (fedrs.methods)
    train:    {rounds: 10, local_epochs: 1, lr: 0.002, momentum: 0.9, batch_size: 32,
               sample_fraction: 1.0, lr_schedule: cosine, seed: 0, ...}
    eval:     {every: 1, batch_size: 256, zeroshot_reference: true}
    privacy:  {mode: none, clip_norm: 1.0, noise_multiplier: 1.0, delta: 1.0e-5}   # none|central|local

An unknown key or a value of the wrong type is an error naming the key and the file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from fedrs.backbone.factory import check_device_name
from fedrs.backbone.templates import DEFAULT_TEMPLATE
from fedrs.config import ConfigError, dump_yaml, from_dict, load_config, to_dict
from fedrs.data.partition import PartitionConfig
from fedrs.errors import FedrsError
from fedrs.hardware import cpu_identity
from fedrs.io import write_json_atomic, write_text_atomic
from fedrs.methods import MethodConfig, get_method_class, method_config


@dataclass
class BackboneConfig:
    """Which frozen CLIP: an open_clip name with a hub tag / checkpoint file / ``random``, or the
    offline default ``fedrs-rsclip-s`` with ``pretrained: null`` (its local checkpoint)."""

    model: str = "fedrs-rsclip-s"
    pretrained: str | None = None
    #: where the frozen backbone, the prompts and the run's data pool live: ``auto`` (cuda when a
    #: GPU is available, else cpu), ``cpu``, ``cuda`` or ``cuda:<i>``; checked for form here and for
    #: existence when the backbone is built
    device: str = "cpu"
    #: refuse a checkpoint file that loads only partially (missing or unexpected keys); set false
    #: only for a file whose missing keys you have checked (the registry lists known ones)
    strict: bool = True

    def __post_init__(self) -> None:
        try:
            check_device_name(self.device)
        except FedrsError as exc:
            raise ValueError(str(exc)) from None


@dataclass
class LocalTrainConfig:
    """What a client needs for one local update (a Flower server sends it with the round).

    For a client, ``seed`` orders its batches (the engine derives it from the run seed, the round
    and the client) and ``lr`` is the round's scheduled rate.
    """

    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 0.0
    local_epochs: int = 1
    batch_size: int = 32
    seed: int = 0
    keep_optimizer_state: bool = False  # persist client momentum buffers between rounds


@dataclass
class TrainConfig(LocalTrainConfig):
    """The run's ``train`` section: the local optimiser above (``seed`` seeds prompt init,
    sampling and batch order) plus the federated protocol (shared by every method of a study)."""

    rounds: int = 10
    sample_fraction: float = 1.0                          # clients sampled per round
    lr_schedule: Literal["cosine", "constant"] = "cosine"  # over rounds
    image_dtype: Literal["float32", "float16"] = "float32"  # decoded image pool (visual prompts)
    #: precision of the frozen towers' passes: fp32, or bf16 autocast (features return as fp32;
    #: prompts, losses and the optimiser stay fp32 either way)
    precision: Literal["fp32", "bf16"] = "fp32"
    #: a client whose update or loss holds a NaN/infinity is left out of its round; the run stops
    #: when more than this share of a round's sampled clients diverge (0: stop at the first)
    max_diverged_fraction: float = 0.5
    #: how the server combines the kept updates: ``mean`` (FedAvg, weighted by examples), or the
    #: coordinate-wise ``median`` / ``trimmed_mean`` (unweighted; robust to a few wild clients)
    aggregation: Literal["mean", "median", "trimmed_mean"] = "mean"
    #: ``trimmed_mean``: share of the values dropped at each end of every coordinate (of K clients,
    #: int(trim_fraction * K) from each side)
    trim_fraction: float = 0.1

    def local(self, lr: float, seed: int) -> LocalTrainConfig:
        """The local update config of one client in one round."""
        shared = {f.name: getattr(self, f.name) for f in fields(LocalTrainConfig)}
        return LocalTrainConfig(**{**shared, "lr": lr, "seed": seed})

    def __post_init__(self) -> None:
        checks = {  # key: (holds, the rule)
            "rounds": (self.rounds >= 0, ">= 0"), "local_epochs": (self.local_epochs >= 1, ">= 1"),
            "lr": (self.lr > 0, "> 0"), "batch_size": (self.batch_size >= 1, ">= 1"),
            "seed": (self.seed >= 0, ">= 0"), "momentum": (0 <= self.momentum < 1, "in [0, 1)"),
            "weight_decay": (self.weight_decay >= 0, ">= 0"),
            "sample_fraction": (0 < self.sample_fraction <= 1, "in (0, 1]"),
            "max_diverged_fraction": (0 <= self.max_diverged_fraction <= 1, "in [0, 1]"),
            "trim_fraction": (0 <= self.trim_fraction < 0.5, "in [0, 0.5)"),
        }
        bad = [k for k, (ok, _) in checks.items() if not ok]
        if bad:
            raise ValueError(f"train.{bad[0]}={getattr(self, bad[0])!r} is out of range: it must be "
                             f"{checks[bad[0]][1]}")


@dataclass
class EvalConfig:
    """When and how to evaluate (personalised and global accuracy)."""

    every: int = 1                   # evaluate every k rounds (round 0 and the last round always)
    batch_size: int = 256
    zeroshot_reference: bool = True  # also report the frozen backbone's zero-shot accuracy
    zeroshot_template: str = DEFAULT_TEMPLATE

    def __post_init__(self) -> None:
        if self.every < 1 or self.batch_size < 1:
            raise ValueError(f"eval.every and eval.batch_size must be >= 1, got {self.every}, {self.batch_size}")
        if "{}" not in self.zeroshot_template:
            raise ValueError(f"eval.zeroshot_template must contain '{{}}', got {self.zeroshot_template!r}")


@dataclass
class PrivacyConfig:
    """Differential privacy for the shared tensors (``privacy:``; :mod:`fedrs.federated.dp`).

    ``mode``: ``none``; ``central`` (the server is trusted: it clips each sampled client's update
    of the shared tensors, ``upload - global``, to L2 norm ``clip_norm``, averages the clipped
    updates with equal weights and adds Gaussian noise of std ``noise_multiplier * clip_norm / m``
    to the mean, ``m`` the clients sampled in the round); ``local`` (each client clips its update
    and adds noise of std ``noise_multiplier * clip_norm`` before uploading). ``delta``: the delta
    at which the epsilon spent after every round is reported (an RDP accountant). Private tensors
    never enter the DP path: they are never uploaded.
    """

    mode: Literal["none", "central", "local"] = "none"
    clip_norm: float = 1.0            # L2 norm bound of one client's update of all shared tensors
    noise_multiplier: float = 1.0     # noise std / clip_norm, on the sum of the clipped updates
    delta: float = 1e-5

    def __post_init__(self) -> None:
        if not self.clip_norm > 0:
            raise ValueError(f"privacy.clip_norm must be > 0, got {self.clip_norm!r}")
        if not self.noise_multiplier >= 0:
            raise ValueError(f"privacy.noise_multiplier must be >= 0 (0: clipping only, no privacy "
                             f"guarantee), got {self.noise_multiplier!r}")
        if not 0 < self.delta < 1:
            raise ValueError(f"privacy.delta must lie strictly between 0 and 1 (e.g. 1e-5), got {self.delta!r}")


@dataclass
class RunConfig:
    """One federated run: backbone, data partition, method, protocol, evaluation, privacy."""

    data: PartitionConfig
    method: Any  # a mapping in YAML; becomes the registered method's config dataclass
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.method, MethodConfig):
            self.method = method_config(self.method, "method")
        if self.train.rounds < 1 and get_method_class(self.method.name).trains:
            # zero rounds of a training method is its untrained initialisation, which metrics.json
            # and the report would show as the method's result
            raise ValueError(f"train.rounds={self.train.rounds}: method {self.method.name!r} trains, so a run "
                             f"needs at least one round (train.rounds >= 1); for the frozen backbone's "
                             f"accuracy use method.name: zeroshot")
        if self.privacy.mode == "central" and self.train.aggregation != "mean":
            # central DP's aggregate is the equal-weight mean of clipped updates plus noise (what its
            # guarantee is computed for); a median or trimmed mean would silently replace it
            raise ValueError(f"privacy.mode=central averages the clipped updates itself: train.aggregation must be "
                             f"mean, got {self.train.aggregation!r}")


def load_run_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Read a run's YAML (``overrides``: dotted keys, e.g. ``{"train.rounds": 2}``)."""
    return load_config(RunConfig, path, overrides)


def run_config(data: Mapping[str, Any], source: str = "RunConfig") -> RunConfig:
    """A :class:`RunConfig` from plain data (notebooks, papermill parameters)."""
    return from_dict(RunConfig, data, source)


# --- run folders --------------------------------------------------------------------------------

PARAMS, SPLIT, ROUNDS, CLIENTS, METRICS, ENV, CHECKPOINT = (
    "params.yaml", "split.json", "rounds.csv", "clients.csv", "metrics.json", "env.json", "checkpoint.pt")
#: every file a run writes into its folder (what :meth:`RunFolder.clear` removes)
RUN_FILES = (PARAMS, SPLIT, ROUNDS, CLIENTS, METRICS, ENV, CHECKPOINT)


def _missing_ancestor(path: Path) -> Path | None:
    """The outermost folder of ``path`` (itself included) that does not exist yet, or None."""
    missing = None
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing = folder
    return missing


class RunFolder:
    """The files of one run and its status (``empty``, ``interrupted``, ``finished``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._created: Path | None = None  # the outermost folder prepare() made (discard() removes it)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def status(self) -> str:
        """``finished`` (metrics.json), ``interrupted`` (a checkpoint, no metrics) or ``empty``
        (nothing, or a run that failed before its first checkpoint: it simply starts over)."""
        if (self / METRICS).is_file():
            return "finished"
        if (self / CHECKPOINT).is_file():
            return "interrupted"
        return "empty"

    def stored_params(self) -> dict | None:
        file = self / PARAMS
        return yaml.safe_load(file.read_text(encoding="utf-8")) if file.is_file() else None

    def same_params(self, cfg: RunConfig) -> bool:
        """Whether the stored params.yaml is ``cfg``: compared as configurations, so a run written
        before fedrs added a field with a default still matches; unreadable params never match."""
        try:
            stored = self.stored_params()
            if stored == to_dict(cfg):
                return True
            return stored is not None and to_dict(from_dict(RunConfig, stored, str(self / PARAMS))) == to_dict(cfg)
        except (FedrsError, ValueError, TypeError, OSError, yaml.YAMLError):
            return False

    def clear(self) -> None:
        """Remove the run's own files (nothing else in the folder)."""
        for name in RUN_FILES:
            (self / name).unlink(missing_ok=True)

    def prepare(self, cfg: RunConfig, resume: bool, force: bool) -> bool:
        """Check the folder against the request; ``True`` when the finished result can be reused.

        Refused: a path that is a file or cannot be written, a finished run or an interrupted one
        with other parameters, an interrupted one without ``resume``, and a ``params.yaml`` that no
        run wrote (no env.json beside it: the user's own file, never overwritten without
        ``force``). Otherwise params.yaml is written (:meth:`discard` removes it again when the
        run fails before its first checkpoint).
        """
        if self.path.exists() and not self.path.is_dir():
            raise FedrsError(f"the run folder is a file ({self.path}): give --out a folder path (new or a run folder)")
        status = self.status
        if force:
            self.clear()
        elif status == "finished":
            if self.same_params(cfg):
                return True
            raise FedrsError(f"{self.path} holds a finished run with other parameters: choose another "
                             f"--out or pass --force to overwrite it")
        elif status == "interrupted":
            if not resume:
                raise FedrsError(f"{self.path} holds an interrupted run: pass --resume to continue it "
                                 f"or --force to start over")
            if not self.same_params(cfg):
                raise FedrsError(f"{self.path} was started with other parameters ({self / PARAMS}): resume "
                                 f"with the same YAML, or use another --out")
        elif (self / PARAMS).is_file() and not (self / ENV).is_file() and not self.same_params(cfg):
            raise FedrsError(f"the folder holds a params.yaml that is not a run's ({self / PARAMS}): fedrs "
                             f"would overwrite it; choose another --out (a new folder), or pass --force to "
                             f"replace it")
        self._created = _missing_ancestor(self.path)
        for name in RUN_FILES:  # what an atomic write killed halfway left (fedrs.io temporary names)
            for tmp in self.path.glob(f".{name}.*.tmp") if self.path.is_dir() else ():
                tmp.unlink(missing_ok=True)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self / PARAMS, dump_yaml(cfg))
        except OSError as exc:  # read-only, full disk: the CLI names the path and the fix
            self.discard()
            if exc.filename is None:
                exc.filename = str(self.path)
            raise
        return False

    def discard(self) -> None:
        """After a run failed before its first checkpoint: remove what it wrote (its own files, and
        the folders :meth:`prepare` created, when empty), so a failed setup leaves nothing behind.
        A run with a checkpoint is kept for ``--resume``."""
        if (self / CHECKPOINT).is_file():
            return
        self.clear()
        created = self._created
        if created is None:
            return
        folder = self.path
        while True:
            try:
                folder.rmdir()  # only when empty
            except OSError:
                return
            if folder == created:
                return
            folder = folder.parent

    def write_split(self, text: str, resume: bool) -> None:
        """split.json (the clients' data, as the task's pipeline serialises it), atomically.

        A resumed run must deal the same data: a stored split.json that differs from ``text``
        means the data or the splitter changed since the run started, and is refused.
        """
        file = self / SPLIT
        if resume and file.is_file() and file.read_text(encoding="utf-8") != text:
            raise FedrsError(f"{file} differs from the partition rebuilt now (data changed?): start "
                             f"over with --force")
        write_text_atomic(file, text)

    def write_csv(self, name: str, rows: list[dict], first: Sequence[str] = ()) -> None:
        """``rows`` as CSV, atomically; columns: ``first`` (those present), then the union of the
        rows' keys in first-seen order."""
        present = {k for row in rows for k in row}
        keys: list[str] = [k for k in first if k in present]
        for row in rows:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(self / name, buf.getvalue())

    def read_metrics(self) -> dict:
        return json.loads((self / METRICS).read_text(encoding="utf-8"))


def environment() -> dict[str, Any]:
    """Versions, git commit and host: what ``env.json`` records."""
    import numpy
    import open_clip
    import torch

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                                 cwd=Path(__file__).resolve().parent)
            return out.stdout.strip() if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    from fedrs import __version__

    return {
        "fedrs": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "numpy": numpy.__version__,
        "git_commit": git("rev-parse", "HEAD"),
        # uncommitted changes to code or params; results/ is excluded, since a sweep that
        # regenerates committed results modifies it while it runs
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        # float results are bit-reproducible across machines only on the same kernel family
        # (AVX512 vs AVX2 vectorised kernels round differently)
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        # the CPU itself (vendor, family/model/stepping, SIMD flags): two machines that report the
        # same kernel family can still round differently
        "cpu": cpu_identity(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }


def write_env(folder: RunFolder) -> None:
    write_json_atomic(folder / ENV, environment())


__all__ = [
    "BackboneConfig", "LocalTrainConfig", "TrainConfig", "EvalConfig", "PrivacyConfig", "RunConfig", "load_run_config",
    "run_config",
    "RunFolder", "environment", "write_env", "ConfigError",
    "PARAMS", "SPLIT", "ROUNDS", "CLIENTS", "METRICS", "ENV", "CHECKPOINT", "RUN_FILES",
]
