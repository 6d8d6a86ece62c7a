"""The Flower ``ClientApp``: one fedrs client per SuperNode, running the shared ``client_update``.

Every message carries ``config[fedrs-params]``, the run's params.yaml text: the client builds its
method and data view from it (once per process) with the same ``prepare_run`` as the server.

Train message: ``arrays`` (the global shared tensors, nothing else) and ``config`` (the
:class:`~fedrs.runs.LocalTrainConfig` of this client and round, computed by the server exactly as
the in-process engine does). The client restores its private tensors (and momentum buffers) from
``context.state``, calls :func:`~fedrs.federated.client.client_update`, keeps the new private state
in ``context.state`` and replies with the declared shared tensors only (the method's privacy check
runs on the outgoing record) plus a ``metrics`` MetricRecord: ``num-examples``, ``partition-id``
and the mean loss terms (``train-<term>``).

With local differential privacy (``privacy.mode: local``) the upload is clipped and noised on the
node before it leaves (:func:`~fedrs.federated.dp.client_dp`): from the node's own OS randomness
when it holds its own data (the server must not know the noise), from the seed the server sends
(``dp-noise-seed``) in a simulation over one partitioned dataset, so that it equals the
in-process engine.

Evaluate message: ``arrays`` (+ the params); the reply's ``metrics`` hold the personalised accuracy
counts of :func:`~fedrs.federated.client.client_evaluate` on the client's own test split (with its
balanced accuracy) and, on a node with its own data, the counts of the global shared tensors alone
on that split (``global-correct``, ``global-total``: the server's federated evaluation) and its
number of training images.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Mapping

from flwr.app import ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedrs.federated.client import client_evaluate, client_update, initial_client_state, load_client, predict_counts
from fedrs.federated.dp import client_dp, noise_generator
from fedrs.federated.flower.own_data import PARTITION
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
    STATE,
    TERM,
    ClientTask,
    client_task,
    from_record,
    to_record,
)
from fedrs.runs import LocalTrainConfig

app = ClientApp()


def client_state(task: ClientTask, state: RecordDict) -> dict:
    """The client's private tensors from the node's state (initial ones on first contact)."""
    if STATE in state:
        return from_record(state[STATE])
    return initial_client_state(task.method, task.data.client_id)


def local_config(config: ConfigRecord) -> LocalTrainConfig:
    """The round's :class:`LocalTrainConfig` from the server's ConfigRecord."""
    return LocalTrainConfig(**{f.name: config[f.name] for f in fields(LocalTrainConfig)})


def reply_content(task: ClientTask, metrics: Mapping[str, float], shared: Mapping | None = None) -> RecordDict:
    """``metrics`` (+ partition id) and, for a train reply, the shared tensors after the privacy check."""
    content = RecordDict({METRICS: MetricRecord({**metrics, PARTITION_ID: task.partition_id,
                                                 NUM_PARTITIONS: task.num_partitions})})
    if shared is not None:
        arrays = to_record(shared)
        task.method.check_upload(arrays)  # exactly the declared tensors leave the node
        content[ARRAYS] = arrays
    return content


def train_step(task: ClientTask, content: RecordDict, state: RecordDict) -> RecordDict:
    """One local update: updates ``state`` in place and returns the reply content (the upload
    clipped and noised first under local DP)."""
    global_shared = from_record(content[ARRAYS])
    result = client_update(task.method, global_shared, client_state(task, state), task.data,
                           local_config(content[CONFIG]))
    state[STATE] = to_record(result.client_state)
    metrics = {NUM_EXAMPLES: result.num_examples, **{TERM + k: v for k, v in result.metrics.items()}}
    upload = result.shared
    if task.privacy.mode == "local":
        seed = None if task.own else content[CONFIG].get(NOISE_SEED)  # own data: the node's secret randomness
        upload = client_dp(global_shared, upload, task.privacy, noise_generator(seed))
    return reply_content(task, metrics, upload)


def evaluate_step(task: ClientTask, content: RecordDict, state: RecordDict) -> RecordDict:
    """Personalised accuracy counts of the global shared + the client's private tensors; on a node
    with its own data also those of the global shared tensors alone and its training size."""
    global_shared = from_record(content[ARRAYS])
    m = client_evaluate(task.method, global_shared, client_state(task, state), task.data, task.eval_batch_size)
    metrics = {NUM_EXAMPLES: int(m["total"]), **m}
    if task.own:  # the server's global accuracy, by federated evaluation (as engine.evaluate scores its pool)
        load_client(task.method, global_shared, task.method.initial_private(-1))
        pooled = predict_counts(task.method, task.data, task.data.test_indices, personalised=False,
                                batch_size=task.eval_batch_size)
        metrics.update({GLOBAL_CORRECT: pooled.correct, GLOBAL_TOTAL: pooled.total, NUM_TRAIN: task.data.num_train})
    return reply_content(task, metrics)


def respond(kind: str, content: RecordDict, context: Context) -> RecordDict:
    """The reply content to a ``train`` or ``evaluate`` message on this node."""
    config = content[CONFIG]
    task = client_task(str(config[PARAMS]), str(context.run_config.get("datasets", "")), context.node_config,
                       str(config.get(CLIENT_DATA, PARTITION)), str(config.get(CLASSES, "")))
    step = train_step if kind == MessageType.TRAIN else evaluate_step
    return step(task, content, context.state)


@app.train()
def train(msg: Message, context: Context) -> Message:
    return Message(content=respond(MessageType.TRAIN, msg.content, context), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return Message(content=respond(MessageType.EVALUATE, msg.content, context), reply_to=msg)


__all__ = ["app", "respond", "train_step", "evaluate_step", "client_state", "local_config", "reply_content"]
