"""What the Flower ServerApp and ClientApp share: app settings, the client's task, record helpers.

The Flower app's run config (``[tool.flwr.app.config]`` in ``flower_app/pyproject.toml``,
overridden with ``flwr run --run-config``) holds only scalars:

=================  ==========================================================================
``params-file``    absolute path of the run's YAML (a :class:`~fedrs.runs.RunConfig`), read by
                   the ServerApp, which sends it with every message: clients need no copy
``out-dir``        absolute path of the run folder, written by the ServerApp only
``client-data``    ``partition`` (default: every SuperNode builds its share of the YAML's
                   partition of one dataset, a simulation for studies) or ``own`` (every
                   SuperNode brings its own dataset through its node config, the server holds
                   no data: :mod:`fedrs.federated.flower.own_data`)
``classes``        ``own``: absolute path of a classes file on the server (the run's label
                   space; default: the registry's classes of ``data.dataset``)
``validation-dir`` ``own``: optional data root on the server holding a validation dataset
                   (``validation-dataset``: its name, optional when the root holds one)
``datasets``       ``partition``: optional ``"module:function"``: ``function(data_cfg) ->
                   [SceneDataset]`` replaces loading the config's datasets from ``$FEDRS_DATA``
                   (tests); importable on every machine
``force``          start over even if ``out-dir`` holds a finished run
``node-wait``      seconds the ServerApp waits for every SuperNode to connect
``reply-timeout``  seconds it waits for the replies of one round
=================  ==========================================================================

A SuperNode names its client with ``--node-config "partition-id=i num-partitions=N"``: partition
``i`` is client ``i`` of the run (after :meth:`Method.arrange_clients`), exactly the client the
in-process engine would simulate, built by the same :func:`~fedrs.classification.prepare_run`.
With ``client-data = "own"`` its node config also names its own data (``data-dir="/abs/root"``
and optionally ``dataset="NAME"``): the client is then built from that dataset alone
(:func:`~fedrs.federated.flower.own_data.own_data_clients`), its class list checked against the
label space the server sends (``fedrs-classes``) with every message.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
import yaml

from fedrs.config import ConfigError, from_dict
from fedrs.errors import FedrsError
from fedrs.federated.client import ClientData
from fedrs.federated.flower.own_data import (
    DATA_DIR,
    DATASET,
    OWN,
    PARTITION,
    LabelSpace,
    build_method,
    load_node_dataset,
    own_data_clients,
)
from fedrs.methods import Method
from fedrs.runs import PrivacyConfig, RunConfig, load_run_config, run_config

logger = logging.getLogger(__name__)

#: keys of the records exchanged (FedAvg's conventions, so a stock strategy could read them)
ARRAYS, CONFIG, METRICS = "arrays", "config", "metrics"
NUM_EXAMPLES, PARTITION_ID, NUM_PARTITIONS = "num-examples", "partition-id", "num-partitions"
#: the run's params.yaml text, in every message's ConfigRecord
PARAMS = "fedrs-params"
#: prefix of the loss terms in a train reply's MetricRecord
TERM = "train-"
#: the ArrayRecord in ``context.state`` holding a client's private tensors (+ momentum buffers)
STATE = "fedrs-client-state"
#: in every message's ConfigRecord: ``partition`` or ``own``, and (own) the label space as JSON
CLIENT_DATA, CLASSES = "fedrs-client-data", "fedrs-classes"
#: in a train message of a simulation with local DP: the seed of the client's noise
NOISE_SEED = "dp-noise-seed"
#: in an evaluate reply of a client with its own data: the global tensors' counts, its training size
GLOBAL_CORRECT, GLOBAL_TOTAL, NUM_TRAIN = "global-correct", "global-total", "num-train"


@dataclass(frozen=True)
class AppSettings:
    """The Flower app's run config (keys with ``-`` in TOML, ``_`` here)."""

    params_file: str = ""
    out_dir: str = ""
    client_data: str = PARTITION
    classes: str = ""
    validation_dir: str = ""
    validation_dataset: str = ""
    datasets: str = ""
    force: bool = False
    node_wait: float = 120.0
    reply_timeout: float = 3600.0

    def __post_init__(self) -> None:
        for key in ("params_file", "out_dir", "classes", "validation_dir"):
            value = getattr(self, key)
            if (value or key in ("params_file", "out_dir")) and not Path(value).is_absolute():
                name = key.replace("_", "-")
                raise ValueError(f"{name} must be an absolute path (flwr run --run-config "
                                 f"\"{name}='/abs/path'\"), got {value!r}")
        if self.node_wait <= 0 or self.reply_timeout <= 0:
            raise ValueError("node-wait and reply-timeout must be > 0 seconds")
        if self.client_data not in (PARTITION, OWN):
            raise ValueError(f"client-data must be {PARTITION!r} (one dataset partitioned over the SuperNodes) or "
                             f"{OWN!r} (each SuperNode brings its own data), got {self.client_data!r}")
        own_only = [k.replace("_", "-") for k in ("classes", "validation_dir", "validation_dataset")
                    if getattr(self, k)]
        if self.client_data == PARTITION and own_only:
            raise ValueError(f"{', '.join(own_only)} apply to client-data='own' only")
        if self.client_data == OWN and self.datasets:
            raise ValueError("datasets (a hook loading the data on every machine) applies to client-data='partition' "
                             "only: with 'own' data each SuperNode names its data in its node config")


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
    """One SuperNode's client: the method over the frozen backbone and its data view; ``own``:
    the data are the node's own (not a share of a partition)."""

    method: Method
    data: ClientData
    partition_id: int
    num_partitions: int
    eval_batch_size: int
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    own: bool = False


_TASKS: dict[tuple, ClientTask] = {}


def client_task(params: str, datasets: str, node_config: Mapping[str, object], client_data: str = PARTITION,
                classes: str = "") -> ClientTask:
    """The client of ``node_config``'s ``partition-id`` in the run whose params.yaml text is
    ``params`` (built once per process): its share of the run's partition (``client_data =
    "partition"``) or, with ``"own"``, the node's own dataset (node config ``data-dir``,
    ``dataset``) in the label space ``classes`` (JSON, as the server sends it)."""
    try:
        pid, n = int(node_config[PARTITION_ID]), int(node_config[NUM_PARTITIONS])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"SuperNode node config needs integer {PARTITION_ID} and {NUM_PARTITIONS} "
                          f"(flower-supernode --node-config \"partition-id=0 num-partitions=N\"), "
                          f"got {dict(node_config)}") from exc
    data_dir, name = str(node_config.get(DATA_DIR, "") or ""), str(node_config.get(DATASET, "") or "")
    if client_data == OWN and not data_dir:
        raise FedrsError("this run's clients bring their own data, but this SuperNode names none: start it with "
                         "fedrs flower supernode --data DIR [--dataset NAME] (node config data-dir=\"/abs/DIR\")")
    if client_data != OWN and data_dir:
        raise FedrsError(f"this SuperNode holds its own data ({DATA_DIR}={data_dir}) but the run partitions one "
                         f"dataset over its SuperNodes (client-data={client_data!r}): submit it with client-data='own'")
    key = (params, datasets, pid, n, client_data, classes, data_dir, name)
    if key not in _TASKS:
        cfg = run_config(yaml.safe_load(params), "params sent by the ServerApp")
        build = _own_task if client_data == OWN else _partition_task
        method, clients = build(cfg, datasets, classes, pid, data_dir, name)
        if n != len(clients) or not 0 <= pid < n:
            raise FedrsError(f"SuperNode has partition-id={pid} num-partitions={n} but the run has "
                             f"{len(clients)} clients (partition-id 0..{len(clients) - 1})")
        _TASKS[key] = ClientTask(method, clients[pid], pid, n, cfg.eval.batch_size, cfg.privacy, client_data == OWN)
    return _TASKS[key]


def _partition_task(cfg: RunConfig, datasets: str, classes: str, pid: int, data_dir: str, name: str):
    """The method and every client of the run's partition (the node keeps its own)."""
    from fedrs.classification import prepare_run

    setup = prepare_run(cfg, load_datasets_hook(datasets, cfg), progress=False)
    return setup.method, setup.method.arrange_clients(setup.clients)


def _own_task(cfg: RunConfig, datasets: str, classes: str, pid: int, data_dir: str, name: str):
    """The method and ``cfg.data.num_clients`` client slots, slot ``pid`` holding the node's own
    data (the others are never used on this node)."""
    space = LabelSpace.from_json(classes)
    dataset = load_node_dataset(data_dir, name or None)
    backbone, method = build_method(cfg, space)
    clients, _, split = own_data_clients(method, backbone, [dataset], [pid], space, cfg)
    own = split.clients[0]
    logger.info("SuperNode %d: %s, %d training and %d test images%s", pid, dataset.name, len(own.train_indices),
                len(own.test_indices), f"; holds no images of {own.missing}" if own.missing else "")
    return method, [clients[0] if k == pid else None for k in range(cfg.data.num_clients)]


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
    "NUM_PARTITIONS", "PARAMS", "TERM", "STATE", "CLIENT_DATA", "CLASSES", "NOISE_SEED", "GLOBAL_CORRECT",
    "GLOBAL_TOTAL", "NUM_TRAIN",
]
