"""The server side of a round, engine-agnostic: sample-weighted FedAvg over declared tensor names.

A Flower ``ServerApp`` can call :func:`aggregate` on replies turned into :class:`ClientResult`
(``shared`` from the reply's ``ArrayRecord``, ``num_examples`` from its ``MetricRecord``), so the
in-process engine and Flower average bit-identically (results are summed in client-id order,
never in arrival order).

On receipt the server runs its own privacy check (:func:`check_received`), independent of the
client's: no tensor that the method's fixed rule keeps on a client
(:meth:`~fedrs.methods.base.Method.may_share`), and no tensor name the server did not send.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from fedrs.errors import FedrsError
from fedrs.federated.client import ClientResult
from fedrs.methods.base import Method


def check_received(client_id: int, shared: Iterable[str], sent: Iterable[str], method: Method | None = None) -> None:
    """The server's privacy check of one client's upload (the names of ``shared``), on receipt.

    Refused, each error naming the tensors: one that ``method``'s fixed rule keeps on a client
    (:meth:`~fedrs.methods.base.Method.never_shared`: private tensors, buffers, optimiser state,
    whatever the method declares), then one the server did not ``sent`` this round, then a missing
    one. Without ``method`` only the names are checked against ``sent``.
    """
    names, sent = set(shared), set(sent)
    kept = method.never_shared(names) if method is not None else []
    if kept:
        raise FedrsError(f"privacy check failed on receipt: client {client_id} sent {kept}, which never "
                         f"leave a client ({method.sharing_rule()})")
    extra, missing = sorted(names - sent), sorted(sent - names)
    if extra:
        raise FedrsError(f"privacy check failed on receipt: client {client_id} sent {extra}, which the server "
                         f"did not send (expected exactly {sorted(sent)})")
    if missing:
        raise FedrsError(f"aggregate: client {client_id} sent {sorted(names)}, expected exactly {sorted(sent)}")


def aggregate(results: Sequence[ClientResult], names: Sequence[str], method: Method | None = None) -> dict:
    """Sample-weighted mean of the tensors ``names`` over ``results``.

    ``sum_k n_k * x_k / sum_k n_k``, accumulated in float64 in ascending ``client_id`` order and
    cast back to each tensor's dtype. ``names`` are the tensors the server sent (the method's
    declared uploads); every result passes :func:`check_received` first (with ``method``, also its
    fixed privacy rule): it must carry exactly ``names`` and nothing a client must keep (an
    undeclared tensor is never averaged, nor silently dropped). Values may be torch tensors or
    numpy arrays; the output has the type of the inputs.
    """
    names = list(names)
    for r in results:
        check_received(r.client_id, r.shared, names, method)
    if not names:
        return {}
    if not results:
        raise FedrsError("aggregate: no client results to average (no client was sampled)")
    ordered = sorted(results, key=lambda r: r.client_id)
    total = sum(r.num_examples for r in ordered)
    if total <= 0:
        raise FedrsError("aggregate: the sampled clients hold no training examples")
    out = {}
    for name in names:
        first = ordered[0].shared[name]
        acc = torch.zeros(tuple(np.shape(first)), dtype=torch.float64)
        for r in ordered:
            acc += torch.as_tensor(r.shared[name]).to(torch.float64) * (r.num_examples / total)
        if isinstance(first, np.ndarray):
            out[name] = acc.numpy().astype(first.dtype)
        else:
            out[name] = acc.to(torch.as_tensor(first).dtype)
    return out


def payload_size(tensors: Mapping[str, object]) -> tuple[int, int]:
    """``(values, bytes)`` of a dict of tensors as exchanged (numel and element size of each)."""
    values = nbytes = 0
    for t in tensors.values():
        t = torch.as_tensor(t)
        values += t.numel()
        nbytes += t.numel() * t.element_size()
    return values, nbytes


__all__ = ["aggregate", "check_received", "payload_size"]
