"""The client side of one federated round, engine-agnostic.

:func:`client_update` and :func:`client_evaluate` take plain tensor dicts in and give plain tensor
dicts out, so the in-process engine and a Flower ``ClientApp`` (message API) call exactly the same
code: the ``ClientApp`` turns the received ``ArrayRecord`` into ``global_shared``, keeps
``client_state`` in ``context.state`` (an ``ArrayRecord``) across rounds, and replies with
``result.shared`` plus ``num-examples = result.num_examples``.

A client state is a flat ``dict[str, Tensor]`` on the CPU: the client's private tensors under
their own names and, with ``keep_optimizer_state``, SGD momentum buffers under ``"momentum.<name>"``.

A client's data (:class:`~fedrs.methods.base.ClientData`) is part of the method contract and is
defined beside :class:`~fedrs.methods.base.Method`; it is re-exported here. The local optimiser
settings (:class:`~fedrs.runs.LocalTrainConfig`) come from the run configuration, which sits below
this module (``federated`` -> ``runs`` -> ``methods``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch

from fedrs.evaluate.classification import balanced_accuracy, class_counts
from fedrs.methods.base import ClientData, Method
from fedrs.runs import LocalTrainConfig

MOMENTUM = "momentum."


@dataclass
class ClientResult:
    """What a client sends back (``shared``, ``num_examples``, ``metrics``) and keeps (``client_state``)."""

    client_id: int
    shared: dict[str, torch.Tensor]
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)
    client_state: dict[str, torch.Tensor] = field(default_factory=dict)


def initial_client_state(method: Method, client_id: int) -> dict[str, torch.Tensor]:
    """A new client's state: its initial private tensors."""
    return method.initial_private(client_id)


def load_client(method: Method, global_shared: Mapping[str, object], client_state: Mapping[str, object]) -> None:
    """Put the global shared tensors and the client's private tensors into the method's module."""
    method.set_tensors({k: v for k, v in global_shared.items()})
    method.set_tensors({k: v for k, v in client_state.items() if not k.startswith(MOMENTUM)})


def client_update(method: Method, global_shared: Mapping[str, object], client_state: Mapping[str, object],
                  data: ClientData, cfg: LocalTrainConfig) -> ClientResult:
    """Local training of one client for ``cfg.local_epochs`` epochs of SGD.

    Returns the declared shared tensors (and only those: the privacy check runs on every upload),
    the number of training examples, the mean of each loss term over steps, and the new client
    state (private tensors, and momentum buffers with ``keep_optimizer_state``).

    The step loop never waits for the device: batches are cut on the pool's device (the epoch's
    order is moved there once), and loss terms a method returns as tensors are summed there (in
    float64, as the Python floats they replace were) and read back once, after the last step.
    """
    load_client(method, global_shared, client_state)
    params = dict(zip(method.trainable_names, method.parameters()))
    optimizer = torch.optim.SGD(list(params.values()), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay) if params else None  # none: zero-shot
    if cfg.keep_optimizer_state:
        for name, p in params.items():
            buf = client_state.get(MOMENTUM + name)
            if buf is not None:
                optimizer.state[p]["momentum_buffer"] = torch.as_tensor(buf).to(p.device, p.dtype).clone()

    sums: dict[str, torch.Tensor | float] = {}
    steps = 0
    if method.trains and params and data.num_train:
        use_images = method.needs_images(train=True)
        gen = torch.Generator().manual_seed(cfg.seed)
        method.module.train()
        for _ in range(cfg.local_epochs):
            # the epoch's pool indices in training order (a permutation of the client's training
            # indices, or a step budget's part of one), moved to the pool's device once
            order = data.epoch_order(gen, cfg.batch_size).to(data.labels.device)
            for start in range(0, int(order.numel()), cfg.batch_size):
                batch = data.batch(order[start:start + cfg.batch_size], use_images, method.device)
                loss, terms = method.loss(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for k, v in terms.items():
                    v = v.detach().double() if torch.is_tensor(v) else v
                    sums[k] = sums[k] + v if k in sums else v
                steps += 1
        method.module.eval()

    upload = method.get_tensors(method.upload_names)
    method.check_upload(upload)
    state = method.get_tensors(method.private_names)
    if cfg.keep_optimizer_state:
        for name, p in params.items():
            buf = optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                state[MOMENTUM + name] = buf.detach().to("cpu", copy=True)
    metrics = {k: float(v) / steps for k, v in sums.items()}  # the one read-back of the loss terms
    metrics["steps"] = float(steps)
    return ClientResult(data.client_id, upload, data.num_train, metrics, state)


@dataclass(frozen=True)
class PredictionCounts:
    """Arg-max prediction counts of one evaluation on a set of pool images: ``correct`` of
    ``total`` images, and per class ``class_correct [C]`` / ``class_total [C]`` (int64, CPU; empty
    when no image was scored)."""

    correct: int
    total: int
    class_correct: torch.Tensor
    class_total: torch.Tensor

    @property
    def accuracy(self) -> float:
        """``correct / total`` (0 without images)."""
        return self.correct / max(self.total, 1)

    @property
    def balanced_accuracy(self) -> float:
        """Mean per-class recall over the classes present (NaN without images)."""
        return balanced_accuracy(self.class_correct, self.class_total)


@torch.no_grad()
def predict_counts(method: Method, data: ClientData, indices: torch.Tensor, personalised: bool,
                   batch_size: int = 256) -> PredictionCounts:
    """The evaluation loop: :class:`PredictionCounts` of the method's current tensors on pool
    ``indices``, in batches of ``batch_size``, with (``personalised``) or without the private
    tensors. Every accuracy fedrs reports of a method (personalised, global, unseen clients,
    novel classes, validation; both engines) is counted here. Counts stay on the device until
    the last batch and are read back once."""
    method.module.eval()
    use_images = method.needs_images(train=False, personalised=personalised)
    class_correct = class_total = None
    total = 0
    for start in range(0, int(indices.numel()), batch_size):
        batch = data.batch(indices[start:start + batch_size], use_images, method.device)
        c, n = class_counts(method.logits(batch, personalised=personalised), batch.labels)
        class_correct, class_total = (c, n) if class_correct is None else (class_correct + c, class_total + n)
        total += int(batch.labels.numel())
    if class_correct is None:
        empty = torch.zeros(0, dtype=torch.long)
        return PredictionCounts(0, 0, empty, empty)
    class_correct, class_total = torch.stack([class_correct, class_total]).cpu()  # the one read-back
    # a hit is always under a class (the arg-max is one), so the hits are the per-class ones summed
    return PredictionCounts(int(class_correct.sum()), total, class_correct, class_total)


def client_evaluate(method: Method, global_shared: Mapping[str, object], client_state: Mapping[str, object],
                    data: ClientData, batch_size: int = 256) -> dict[str, float]:
    """A client's personalised accuracy on its own test split (shared + private tensors):
    ``correct``, ``total``, ``accuracy`` and ``balanced_accuracy`` (the mean per-class recall over
    the classes present in the split; NaN without test images). Both engines score clients with it."""
    load_client(method, global_shared, client_state)
    counts = predict_counts(method, data, data.test_indices, personalised=True, batch_size=batch_size)
    return {"correct": float(counts.correct), "total": float(counts.total), "accuracy": counts.accuracy,
            "balanced_accuracy": counts.balanced_accuracy}


__all__ = [
    "LocalTrainConfig", "ClientData", "ClientResult", "initial_client_state", "load_client",
    "client_update", "client_evaluate", "predict_counts", "PredictionCounts", "MOMENTUM",
]
