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

Evaluate message: ``arrays`` (+ the params); the reply's ``metrics`` hold the personalised accuracy counts of
:func:`~fedrs.federated.client.client_evaluate` on the client's own test split.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Mapping

from flwr.app import ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedrs.federated.client import client_evaluate, client_update, initial_client_state
from fedrs.federated.flower.task import (
    ARRAYS, CONFIG, METRICS, NUM_EXAMPLES, NUM_PARTITIONS, PARAMS, PARTITION_ID, STATE, TERM, ClientTask,
    client_task, from_record, to_record,
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
    """One local update: updates ``state`` in place and returns the reply content."""
    result = client_update(task.method, from_record(content[ARRAYS]), client_state(task, state), task.data,
                           local_config(content[CONFIG]))
    state[STATE] = to_record(result.client_state)
    metrics = {NUM_EXAMPLES: result.num_examples, **{TERM + k: v for k, v in result.metrics.items()}}
    return reply_content(task, metrics, result.shared)


def evaluate_step(task: ClientTask, content: RecordDict, state: RecordDict) -> RecordDict:
    """Personalised accuracy counts of the global shared + the client's private tensors."""
    m = client_evaluate(task.method, from_record(content[ARRAYS]), client_state(task, state), task.data,
                        task.eval_batch_size)
    return reply_content(task, {NUM_EXAMPLES: int(m["total"]), **m})


def respond(kind: str, content: RecordDict, context: Context) -> RecordDict:
    """The reply content to a ``train`` or ``evaluate`` message on this node."""
    task = client_task(str(content[CONFIG][PARAMS]), str(context.run_config.get("datasets", "")),
                       context.node_config)
    step = train_step if kind == MessageType.TRAIN else evaluate_step
    return step(task, content, context.state)


@app.train()
def train(msg: Message, context: Context) -> Message:
    return Message(content=respond(MessageType.TRAIN, msg.content, context), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return Message(content=respond(MessageType.EVALUATE, msg.content, context), reply_to=msg)


__all__ = ["app", "respond", "train_step", "evaluate_step", "client_state", "local_config", "reply_content"]
