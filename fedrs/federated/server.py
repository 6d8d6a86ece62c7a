"""The server side of a round, engine-agnostic: sample-weighted FedAvg over declared tensor names.

A Flower ``ServerApp`` can call :func:`aggregate` on replies turned into :class:`ClientResult`
(``shared`` from the reply's ``ArrayRecord``, ``num_examples`` from its ``MetricRecord``), so the
in-process engine and Flower average bit-identically (results are summed in client-id order,
never in arrival order).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from fedrs.errors import FedrsError
from fedrs.federated.client import ClientResult


def aggregate(results: Sequence[ClientResult], names: Sequence[str]) -> dict:
    """Sample-weighted mean of the tensors ``names`` over ``results``.

    ``sum_k n_k * x_k / sum_k n_k``, accumulated in float64 in ascending ``client_id`` order and
    cast back to each tensor's dtype. Every result must carry exactly ``names`` (anything else is an
    error: an undeclared tensor is never averaged, nor silently dropped). Values may be torch
    tensors or numpy arrays; the output has the type of the inputs.
    """
    names = list(names)
    if not names:
        return {}
    if not results:
        raise FedrsError("aggregate: no client results to average (no client was sampled)")
    ordered = sorted(results, key=lambda r: r.client_id)
    total = sum(r.num_examples for r in ordered)
    if total <= 0:
        raise FedrsError("aggregate: the sampled clients hold no training examples")
    for r in ordered:
        if set(r.shared) != set(names):
            raise FedrsError(f"aggregate: client {r.client_id} sent {sorted(r.shared)}, expected exactly {sorted(names)}")
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


__all__ = ["aggregate", "payload_size"]
