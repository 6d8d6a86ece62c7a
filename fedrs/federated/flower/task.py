"""What the Flower ServerApp and ClientApp share: app settings, the client's task, record helpers.

The Flower app's run config (``[tool.flwr.app.config]`` in ``flower_app/pyproject.toml``,
overridden with ``flwr run --run-config``) holds only scalars:

=================  ==========================================================================
``params-file``    absolute path of the run's YAML (a :class:`~fedrs.runs.RunConfig`), read by
                   the ServerApp, which sends it with every message: clients need no copy
``out-dir``        absolute path of the run folder, written by the ServerApp only
``datasets``       optional ``"module:function"``: ``function(data_cfg) -> [SceneDataset]``
                   replaces loading the config's datasets from ``$FEDRS_DATA`` (own data, tests);
                   importable on every machine
``force``          start over even if ``out-dir`` holds a finished run
``node-wait``      seconds the ServerApp waits for every SuperNode to connect
``reply-timeout``  seconds it waits for the replies of one round
=================  ==========================================================================

A SuperNode names its client with ``--node-config "partition-id=i num-partitions=N"``: partition
``i`` is client ``i`` of the run (after :meth:`Method.arrange_clients`), exactly the client the
in-process engine would simulate, built by the same :func:`~fedrs.classification.prepare_run`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
import yaml

from fedrs.config import ConfigError, from_dict
from fedrs.errors import FedrsError
from fedrs.federated.client import ClientData
from fedrs.methods import Method
from fedrs.runs import RunConfig, load_run_config, run_config

#: keys of the records exchanged (FedAvg's conventions, so a stock strategy could read them)
ARRAYS, CONFIG, METRICS = "arrays", "config", "metrics"
NUM_EXAMPLES, PARTITION_ID, NUM_PARTITIONS = "num-examples", "partition-id", "num-partitions"
#: the run's params.yaml text, in every message's ConfigRecord
PARAMS = "fedrs-params"
#: prefix of the loss terms in a train reply's MetricRecord
TERM = "train-"
#: the ArrayRecord in ``context.state`` holding a client's private tensors (+ momentum buffers)
STATE = "fedrs-client-state"


@dataclass(frozen=True)
class AppSettings:
    """The Flower app's run config (keys with ``-`` in TOML, ``_`` here)."""

    params_file: str = ""
    out_dir: str = ""
    datasets: str = ""
    force: bool = False
    node_wait: float = 120.0
    reply_timeout: float = 3600.0

    def __post_init__(self) -> None:
        for key in ("params_file", "out_dir"):
            value = getattr(self, key)
            if not value or not Path(value).is_absolute():
                name = key.replace("_", "-")
                raise ValueError(f"{name} must be an absolute path (flwr run --run-config "
                                 f"\"{name}='/abs/path'\"), got {value!r}")
        if self.node_wait <= 0 or self.reply_timeout <= 0:
            raise ValueError("node-wait and reply-timeout must be > 0 seconds")


def app_settings(run_config: Mapping[str, object]) -> AppSettings:
    """Validated :class:`AppSettings` from ``context.run_config``."""
    return from_dict(AppSettings, {k.replace("-", "_"): v for k, v in run_config.items()}, "Flower run config")


def load_datasets_hook(ref: str, cfg: RunConfig) -> list | None:
    """The datasets of the ``datasets`` hook ``ref`` (``None`` for ``""``: load from the data root)."""
    if not ref:
        return None
    module, _, attr = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"Flower run config: datasets={ref!r} is not an importable 'module:function' "
                          f"({exc})") from exc
    return list(fn(cfg.data))


def load_run(config: Mapping[str, object]) -> tuple[AppSettings, RunConfig, list | None]:
    """The ServerApp's settings, the run's configuration and the hook's datasets (if any)."""
    settings = app_settings(config)
    cfg = load_run_config(settings.params_file)
    return settings, cfg, load_datasets_hook(settings.datasets, cfg)


@dataclass
class ClientTask:
    """One SuperNode's client: the method over the frozen backbone and its data view."""

    method: Method
    data: ClientData
    partition_id: int
    num_partitions: int
    eval_batch_size: int


_TASKS: dict[tuple, ClientTask] = {}


def client_task(params: str, datasets: str, node_config: Mapping[str, object]) -> ClientTask:
    """The client of ``node_config``'s ``partition-id`` in the run whose params.yaml text is
    ``params`` (built once per process)."""
    from fedrs.classification import prepare_run

    try:
        pid, n = int(node_config[PARTITION_ID]), int(node_config[NUM_PARTITIONS])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"SuperNode node config needs integer {PARTITION_ID} and {NUM_PARTITIONS} "
                          f"(flower-supernode --node-config \"partition-id=0 num-partitions=N\"), "
                          f"got {dict(node_config)}") from exc
    key = (params, datasets, pid, n)
    if key not in _TASKS:
        cfg = run_config(yaml.safe_load(params), "params sent by the ServerApp")
        setup = prepare_run(cfg, load_datasets_hook(datasets, cfg), progress=False)
        clients = setup.method.arrange_clients(setup.clients)
        if n != len(clients) or not 0 <= pid < n:
            raise FedrsError(f"SuperNode has partition-id={pid} num-partitions={n} but the run has "
                             f"{len(clients)} clients (partition-id 0..{len(clients) - 1})")
        _TASKS[key] = ClientTask(setup.method, clients[pid], pid, n, cfg.eval.batch_size)
    return _TASKS[key]


def to_record(tensors: Mapping[str, torch.Tensor]):
    """An ``ArrayRecord`` of named CPU tensors (empty dicts allowed)."""
    from flwr.app import ArrayRecord

    return ArrayRecord({k: v.detach().cpu() for k, v in tensors.items()})


def from_record(record) -> dict[str, torch.Tensor]:
    """Named tensors from an ``ArrayRecord`` (bit-exact copies)."""
    return {k: torch.from_numpy(v.numpy().copy()) for k, v in record.items()}


__all__ = [
    "AppSettings", "app_settings", "load_run", "load_datasets_hook", "ClientTask", "client_task",
    "to_record", "from_record", "ARRAYS", "CONFIG", "METRICS", "NUM_EXAMPLES", "PARTITION_ID",
    "NUM_PARTITIONS", "PARAMS", "TERM", "STATE",
]
