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

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from fedrs.config import dump_yaml
from fedrs.errors import FedrsError
from fedrs.federated.client import ClientResult
from fedrs.experiment import run_experiment
from fedrs.federated.engine import FederatedEngine
from fedrs.federated.server import check_received
from fedrs.federated.flower.task import (
    ARRAYS, CONFIG, METRICS, NUM_EXAMPLES, NUM_PARTITIONS, PARAMS, PARTITION_ID, TERM, from_record,
    load_run, to_record,
)

app = ServerApp()


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

    def __init__(self, grid: Grid, params: str, method, clients, pooled_test, train, evaluation,
                 checkpoint=None, *, node_wait: float = 120.0, reply_timeout: float = 3600.0):
        super().__init__(method, clients, pooled_test, train, evaluation, checkpoint=None)
        self.grid, self.params, self.node_wait, self.reply_timeout = grid, params, node_wait, reply_timeout
        self.nodes: dict[int, int] = {}  # partition id -> node id

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

    def evaluate_clients(self) -> list[dict]:
        """Personalised accuracy counts from every SuperNode (the first call maps partitions to nodes)."""
        nodes = list(self.nodes.values()) or self.wait_for_nodes()
        content = RecordDict({ARRAYS: to_record(self.global_shared), CONFIG: ConfigRecord({PARAMS: self.params})})
        replies = self.exchange(MessageType.EVALUATE, {node: content for node in nodes})
        return [{name: float(replies[k][METRICS][name]) for name in ("correct", "total", "accuracy")}
                for k in range(len(self.clients))]

    def train_clients(self, r: int, lr: float, sampled: list[int]) -> list[ClientResult]:
        """Local updates on the sampled SuperNodes; results in partition order, private tensors refused."""
        arrays = to_record(self.global_shared)
        contents = {self.nodes[k]: RecordDict({ARRAYS: arrays, CONFIG: ConfigRecord(
            {**asdict(self.local_config(r, lr, k)), "server-round": r, PARAMS: self.params})}) for k in sampled}
        replies = self.exchange(MessageType.TRAIN, contents)
        return [receive_train_reply(self.method, self.clients[k].client_id, replies[k], arrays.keys())
                for k in sampled]


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings, cfg, datasets = load_run(context.run_config)

    def on_round(r: int, row: dict) -> None:
        accs = {k: round(row[k], 4) for k in ("personalised_acc_weighted", "global_acc") if k in row}
        log(INFO, "fedrs round %d/%d done in %.1f s %s", r, cfg.train.rounds, row["time_s"], accs)

    metrics = run_experiment(cfg, settings.out_dir, force=settings.force, progress=False, datasets=datasets,
                             on_round=on_round, make_engine=partial(FlowerEngine, grid, dump_yaml(cfg),
                                                                    node_wait=settings.node_wait,
                                                                    reply_timeout=settings.reply_timeout))
    log(INFO, "fedrs run written to %s: personalised %.4f, global %.4f", settings.out_dir,
        metrics["personalised_accuracy"], metrics["global_accuracy"])


__all__ = ["app", "FlowerEngine", "receive_train_reply"]
