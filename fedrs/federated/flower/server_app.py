"""The Flower ``ServerApp``: ``run_experiment`` with the clients on SuperNodes.

:class:`FlowerEngine` is the in-process :class:`~fedrs.federated.engine.FederatedEngine` with its
two client loops replaced by Flower messages; everything else is the same code: the initial
global arrays (only the method's shared tensors), client sampling and per-client seeds, the
learning-rate schedule, fedrs's own :func:`~fedrs.federated.server.aggregate` (replies summed in
partition order, so results are bit-identical to the in-process engine), the global accuracy on
the pooled test split, and the run folder (params.yaml, split.json, rounds.csv, clients.csv,
metrics.json with ``"engine": "flower"``, env.json) written to the absolute ``out-dir``.

Why not a stock ``flwr.serverapp.strategy.FedAvg``: it averages in arrival order (not
bit-identical), samples nodes without knowing their partition ids, and has no place for the
per-client personalised evaluation rows; fedrs's round loop already does all of it.

Every train reply passes the server's own privacy check on receipt (:func:`receive_train_reply`,
:func:`~fedrs.federated.server.check_received`): nothing the method's fixed rule keeps on a client
and no tensor name the server did not send, whatever the client's check said.

With ``client-data = "own"`` (every SuperNode brings its own data, the server holds none) the
ServerApp loads no dataset: :class:`OwnDataFlowerEngine` measures global accuracy by federated
evaluation (each client's counts of the global shared tensors on its own test split, summed) and,
if the operator gives one, on a server-side validation dataset; the run folder is written by
:func:`~fedrs.federated.flower.own_data.run_own_data`.

Differential privacy (``privacy:``): central DP happens where the in-process engine does it (the
inherited round), local DP on the SuperNodes; in a simulation the server sends each client the
seed of its local noise (``dp-noise-seed``), so a Flower DP run equals the in-process one.

Every client takes part in the protocol, so the run waits until exactly one SuperNode per
partition is connected (``node-wait``) and fails, naming the problem, on too many nodes, a
missing or duplicated ``partition-id``, an error reply or a missing reply. Client states live on
the SuperNodes (``context.state``), so a Flower run has no checkpoint and cannot be resumed.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from functools import partial
from logging import INFO

import torch
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from fedrs.config import dump_yaml
from fedrs.errors import FedrsError
from fedrs.evaluate.classification import balanced_summary, personalised_summary
from fedrs.experiment import run_experiment
from fedrs.federated.client import ClientResult, load_client, predict_counts
from fedrs.federated.dp import LOCAL_NOISE
from fedrs.federated.engine import FederatedEngine, derived_seed
from fedrs.federated.flower.own_data import (
    OWN,
    PARTITION,
    LabelSpace,
    build_method,
    load_node_dataset,
    placeholder_clients,
    run_label_space,
    run_own_data,
    server_split,
    validation_data,
)
from fedrs.federated.flower.task import (
    ARRAYS,
    CLASSES,
    CLIENT_DATA,
    CONFIG,
    GLOBAL_CORRECT,
    GLOBAL_TOTAL,
    METRICS,
    NOISE_SEED,
    NUM_EXAMPLES,
    NUM_PARTITIONS,
    NUM_TRAIN,
    PARAMS,
    PARTITION_ID,
    TERM,
    AppSettings,
    from_record,
    load_run,
    to_record,
)
from fedrs.federated.server import check_received
from fedrs.runs import PrivacyConfig, load_run_config

app = ServerApp()


def client_scores(metrics) -> dict[str, float]:
    """A client's evaluate-reply metrics as the engine's per-client scores: ``correct``, ``total``,
    ``accuracy`` and ``balanced_accuracy`` (NaN from a SuperNode that does not report it)."""
    scores = {name: float(metrics[name]) for name in ("correct", "total", "accuracy")}
    scores["balanced_accuracy"] = float(metrics["balanced_accuracy"]) if "balanced_accuracy" in metrics \
        else float("nan")
    return scores


def receive_train_reply(method, client_id: int, content: RecordDict, sent) -> ClientResult:
    """A client's train reply as a :class:`ClientResult`, after the server's privacy check on
    receipt (:func:`~fedrs.federated.server.check_received`): the reply's tensors must be exactly
    the names ``sent`` (the global tensors of the train message) and none that ``method``'s fixed
    rule keeps on a client; an error names the tensor."""
    shared, metrics = from_record(content[ARRAYS]), content[METRICS]
    check_received(client_id, shared, sent, method)
    terms = {name[len(TERM):]: float(v) for name, v in metrics.items() if name.startswith(TERM)}
    return ClientResult(client_id, shared, int(metrics[NUM_EXAMPLES]), terms)


class FlowerEngine(FederatedEngine):
    """Rounds of :class:`FederatedEngine` whose clients are SuperNodes reached through ``grid``;
    ``params`` (the run's params.yaml text) goes with every message."""

    name = "flower"
    #: what the SuperNodes train on (``own``: :class:`OwnDataFlowerEngine`)
    client_data = PARTITION

    def __init__(self, grid: Grid, params: str, method, clients, pooled_test, train, evaluation,
                 checkpoint=None, *, privacy: PrivacyConfig | None = None, node_wait: float = 120.0,
                 reply_timeout: float = 3600.0, unseen_test=None, novel=None):
        if novel is not None:  # the novel-class personalised accuracy needs every client's private tensors
            raise FedrsError("data.class_split: base-to-novel runs on the in-process engine only (scoring each "
                             "client's own model on the novel classes would need a novel evaluate message); "
                             "run it with `fedrs run`")
        super().__init__(method, clients, pooled_test, train, evaluation, checkpoint=None, unseen_test=unseen_test)
        self.grid, self.params, self.node_wait, self.reply_timeout = grid, params, node_wait, reply_timeout
        self.privacy = privacy or PrivacyConfig()
        self.nodes: dict[int, int] = {}  # partition id -> node id

    def message_config(self) -> dict:
        """What every message's ConfigRecord carries: the run's YAML and what the clients train on."""
        return {PARAMS: self.params, CLIENT_DATA: self.client_data}

    def initialise(self) -> None:
        super().initialise()
        self.nodes = {}
        self.wait_for_nodes()

    def wait_for_nodes(self) -> list[int]:
        """Node ids once exactly one SuperNode per client is connected."""
        n = len(self.clients)
        deadline = time.monotonic() + self.node_wait
        while True:
            ids = sorted(self.grid.get_node_ids())
            if len(ids) > n:
                raise FedrsError(f"{len(ids)} SuperNodes are connected but the run has {n} clients: start "
                                 f"exactly one per partition-id 0..{n - 1}")
            if len(ids) == n:
                return ids
            if time.monotonic() > deadline:
                raise FedrsError(f"only {len(ids)} of {n} SuperNodes connected within {self.node_wait:.0f} s "
                                 f"(node-wait): start one per partition-id 0..{n - 1}")
            time.sleep(0.5)

    def exchange(self, kind: str, contents: dict[int, RecordDict]) -> dict[int, RecordDict]:
        """Send ``contents[node id]``, wait for every reply; reply contents by partition id."""
        messages = [Message(content=c, dst_node_id=node, message_type=kind) for node, c in contents.items()]
        replies = list(self.grid.send_and_receive(messages, timeout=self.reply_timeout))
        failed = [f"node {r.metadata.src_node_id}: {r.error.reason}" for r in replies if r.has_error()]
        if failed:
            raise FedrsError(f"{kind} failed on {len(failed)} SuperNode(s): {'; '.join(failed)}")
        if len(replies) != len(messages):
            raise FedrsError(f"{kind}: {len(messages) - len(replies)} of {len(messages)} SuperNodes did not "
                             f"reply within {self.reply_timeout:.0f} s (reply-timeout)")
        out: dict[int, RecordDict] = {}
        for reply in replies:
            metrics = reply.content[METRICS]
            pid, node, n = int(metrics[PARTITION_ID]), reply.metadata.src_node_id, len(self.clients)
            if int(metrics[NUM_PARTITIONS]) != n or not 0 <= pid < n or pid in out or self.nodes.get(pid, node) != node:
                raise FedrsError(f"SuperNode {node} reports partition-id={pid} num-partitions="
                                 f"{int(metrics[NUM_PARTITIONS])}: the run has {n} clients and needs each "
                                 f"partition-id 0..{n - 1} exactly once")
            out[pid] = reply.content
            self.nodes[pid] = node
        return out

    def evaluate_replies(self) -> dict[int, RecordDict]:
        """Every SuperNode's evaluate reply for the current global tensors, by partition id (the
        first call maps partitions to nodes)."""
        nodes = list(self.nodes.values()) or self.wait_for_nodes()
        content = RecordDict({ARRAYS: to_record(self.global_shared), CONFIG: ConfigRecord(self.message_config())})
        return self.exchange(MessageType.EVALUATE, {node: content for node in nodes})

    def evaluate_clients(self) -> list[dict]:
        """Personalised accuracy counts from every SuperNode."""
        replies = self.evaluate_replies()
        return [client_scores(replies[k][METRICS]) for k in range(len(self.clients))]

    def train_config(self, r: int, lr: float, k: int) -> dict:
        """The train message's ConfigRecord for client ``k`` in round ``r``: its local config and,
        in a simulation with local DP, the seed of its noise (a client with its own data draws
        noise the server cannot know)."""
        config = {**asdict(self.local_config(r, lr, k)), "server-round": r, **self.message_config()}
        if self.privacy.mode == "local" and self.client_data == PARTITION:
            config[NOISE_SEED] = derived_seed(self.train.seed, LOCAL_NOISE, r, k)
        return config

    def train_clients(self, r: int, lr: float, sampled: list[int]) -> list[ClientResult]:
        """Local updates on the sampled SuperNodes; results in partition order, private tensors refused."""
        arrays = to_record(self.global_shared)
        contents = {self.nodes[k]: RecordDict({ARRAYS: arrays, CONFIG: ConfigRecord(self.train_config(r, lr, k))})
                    for k in sampled}
        replies = self.exchange(MessageType.TRAIN, contents)
        return [receive_train_reply(self.method, self.clients[k].client_id, replies[k], arrays.keys())
                for k in sampled]


class OwnDataFlowerEngine(FlowerEngine):
    """:class:`FlowerEngine` for SuperNodes with their own data and a server without any:
    ``clients`` are placeholders (:func:`~fedrs.federated.flower.own_data.placeholder_clients`);
    every message carries the label space ``space``; global accuracy is federated (the summed
    counts of the global tensors on the clients' own test splits) and, with ``validation`` (a
    data view on the server), also measured there (``validation_acc``)."""

    client_data = OWN

    def __init__(self, grid: Grid, params: str, space: LabelSpace, *args, validation=None, **kwargs):
        super().__init__(grid, params, *args, **kwargs)
        self.space, self.validation = space, validation
        self.sizes: dict[int, tuple[int, int]] = {}  # client -> (training, test images), as reported

    def message_config(self) -> dict:
        return {**super().message_config(), CLASSES: self.space.to_json()}

    def evaluate(self) -> tuple[dict, list[dict]]:
        replies = self.evaluate_replies()
        per_client = []
        correct = total = 0
        for k in range(len(self.clients)):
            m = replies[k][METRICS]
            per_client.append(client_scores(m))
            correct, total = correct + int(m[GLOBAL_CORRECT]), total + int(m[GLOBAL_TOTAL])
            self.sizes[k] = (int(m[NUM_TRAIN]), int(m["total"]))
        summary = personalised_summary([(m["correct"], m["total"]) for m in per_client])
        row = {"personalised_acc_weighted": summary["weighted"],
               "personalised_acc_unweighted": summary["unweighted"],
               "personalised_acc_balanced": balanced_summary([m["balanced_accuracy"] for m in per_client]),
               "global_acc": correct / max(total, 1)}
        if self.validation is not None:
            load_client(self.method, self.global_shared, self.method.initial_private(-1))
            row["validation_acc"] = predict_counts(self.method, self.validation, self.validation.test_indices,
                                                   personalised=False, batch_size=self.evaluation.batch_size).accuracy
        return row, per_client


def run_own_deployment(grid: Grid, settings: AppSettings, on_round) -> dict:
    """A run whose SuperNodes bring their own data; the server loads none (but the optional
    validation dataset)."""
    started = time.perf_counter()
    cfg = load_run_config(settings.params_file)
    space = run_label_space(cfg, settings.classes or None)
    backbone, method = build_method(cfg, space)
    validation = None
    if settings.validation_dir:
        dataset = load_node_dataset(settings.validation_dir, settings.validation_dataset or None)
        validation = validation_data(method, backbone, dataset, space, cfg)
    make_engine = partial(OwnDataFlowerEngine, grid, dump_yaml(cfg), space, validation=validation,
                          privacy=cfg.privacy, node_wait=settings.node_wait, reply_timeout=settings.reply_timeout)
    return run_own_data(cfg, settings.out_dir, make_engine, space=space,
                        clients=placeholder_clients(cfg.data.num_clients), pooled_test=torch.zeros(0, dtype=torch.long),
                        split=lambda engine: server_split(cfg, space, engine.sizes), backbone=backbone, method=method,
                        force=settings.force, on_round=on_round, started=started)


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings, cfg, datasets = load_run(context.run_config)

    def on_round(r: int, row: dict) -> None:
        accs = {k: round(row[k], 4) for k in ("personalised_acc_weighted", "global_acc", "validation_acc")
                if k in row}
        log(INFO, "fedrs round %d/%d done in %.1f s %s", r, cfg.train.rounds, row["time_s"], accs)

    if settings.client_data == OWN:
        metrics = run_own_deployment(grid, settings, on_round)
    else:
        metrics = run_experiment(cfg, settings.out_dir, force=settings.force, progress=False, datasets=datasets,
                                 on_round=on_round, make_engine=partial(
                                     FlowerEngine, grid, dump_yaml(cfg), privacy=cfg.privacy,
                                     node_wait=settings.node_wait, reply_timeout=settings.reply_timeout))
    log(INFO, "fedrs run written to %s: personalised %.4f, global %.4f", settings.out_dir,
        metrics["personalised_accuracy"], metrics["global_accuracy"])


__all__ = ["app", "FlowerEngine", "OwnDataFlowerEngine", "client_scores", "receive_train_reply", "run_own_deployment"]
