"""The server side of a round, engine-agnostic: screening, then sample-weighted FedAvg (or a
robust rule) over declared tensor names.

A Flower ``ServerApp`` can call :func:`aggregate` on replies turned into :class:`ClientResult`
(``shared`` from the reply's ``ArrayRecord``, ``num_examples`` from its ``MetricRecord``), so the
in-process engine and Flower average bit-identically (results are summed in client-id order,
never in arrival order).

On receipt the server runs its own privacy check (:func:`check_received`), independent of the
client's: no tensor that the method's fixed rule keeps on a client
(:meth:`~fedrs.methods.base.Method.may_share`), and no tensor name the server did not send.

Then every update is screened (:func:`screen_results`): one whose uploaded tensors or loss terms
hold a NaN or infinity (a diverged client) is left out of the average and reported, so one
client cannot turn the global model into NaN for the rest of the run; when more than
``train.max_diverged_fraction`` of a round's clients diverge, :func:`check_divergence` stops the
run (the learning rate or the data is wrong, not one client).

``train.aggregation`` picks the rule: ``mean`` (FedAvg, the default), or the coordinate-wise
``median`` or ``trimmed_mean`` (robust to a few clients sending huge or adversarial values; both
unweighted: every client counts once whatever its number of examples).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping, Sequence

import numpy as np
import torch

from fedrs.errors import FedrsError
from fedrs.federated.client import ClientResult
from fedrs.methods.base import Method

logger = logging.getLogger(__name__)

#: the aggregation rules of ``train.aggregation``
Aggregation = Literal["mean", "median", "trimmed_mean"]


class DivergedError(FedrsError):
    """Too many clients of a round sent non-finite updates (or none was left to average)."""


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


def aggregate(results: Sequence[ClientResult], names: Sequence[str], method: Method | None = None,
              rule: Aggregation = "mean", trim_fraction: float = 0.1) -> dict:
    """The server's new tensors ``names`` from ``results``.

    ``rule="mean"`` (FedAvg): the sample-weighted mean ``sum_k n_k * x_k / sum_k n_k``,
    accumulated in float64 in ascending ``client_id`` order and cast back to each tensor's dtype.
    ``"median"``: the coordinate-wise median over clients (:func:`numpy.median`);
    ``"trimmed_mean"``: the coordinate-wise mean after dropping the ``trim_fraction`` smallest and
    largest values of each coordinate (:func:`scipy.stats.trim_mean`); both unweighted.

    ``names`` are the tensors the server sent (the method's declared uploads); every result passes
    :func:`check_received` first (with ``method``, also its fixed privacy rule): it must carry
    exactly ``names`` and nothing a client must keep (an undeclared tensor is never averaged, nor
    silently dropped). Values may be torch tensors or numpy arrays; the output has the type of the
    inputs.
    """
    names = list(names)
    for r in results:
        check_received(r.client_id, r.shared, names, method)
    if not names:
        return {}
    if not results:
        raise FedrsError("aggregate: no client results to average (no client was sampled)")
    if rule not in ("mean", "median", "trimmed_mean"):
        raise FedrsError(f"aggregate: unknown rule {rule!r}: use mean, median or trimmed_mean")
    ordered = sorted(results, key=lambda r: r.client_id)
    total = sum(r.num_examples for r in ordered)
    if rule == "mean" and total <= 0:
        raise FedrsError("aggregate: the sampled clients hold no training examples")
    out = {}
    for name in names:
        first = ordered[0].shared[name]
        if rule == "mean":
            acc = torch.zeros(tuple(np.shape(first)), dtype=torch.float64)
            for r in ordered:
                acc += torch.as_tensor(r.shared[name]).to(torch.float64) * (r.num_examples / total)
        else:
            stacked = np.stack([torch.as_tensor(r.shared[name]).to(torch.float64).numpy() for r in ordered])
            acc = torch.from_numpy(np.asarray(_robust(stacked, rule, trim_fraction), dtype=np.float64))
        if isinstance(first, np.ndarray):
            out[name] = acc.numpy().astype(first.dtype)
        else:
            out[name] = acc.to(torch.as_tensor(first).dtype)
    return out


def _robust(stacked: np.ndarray, rule: str, trim_fraction: float) -> np.ndarray:
    """Coordinate-wise ``median`` or ``trimmed_mean`` over axis 0 (clients) of ``[K, ...]``."""
    if rule == "median":
        return np.median(stacked, axis=0)
    from scipy.stats import trim_mean

    return trim_mean(stacked, trim_fraction, axis=0)


# --- screening ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExcludedUpdate:
    """A client update left out of a round's aggregation, and why (``"text_shared holds 3
    non-finite values"``, ``"loss term loss is nan"``)."""

    round: int
    client: int
    reason: str


def _non_finite(result: ClientResult) -> str | None:
    """Why ``result`` is not finite (the first tensor or loss term with a NaN/infinity), or None."""
    for name in sorted(result.shared):
        t = torch.as_tensor(result.shared[name])
        if t.is_floating_point() or t.is_complex():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                return f"{name} holds {bad} non-finite value{'s' if bad > 1 else ''}"
    for term in sorted(result.metrics):
        value = result.metrics[term]
        if isinstance(value, float) and not math.isfinite(value):
            return f"loss term {term} is {value}"
    return None


def screen_results(results: Sequence[ClientResult], round_index: int = 0
                   ) -> tuple[list[ClientResult], list[ExcludedUpdate]]:
    """``(kept, excluded)``: the results whose uploaded tensors and loss terms are all finite, and
    one :class:`ExcludedUpdate` per other result (a diverged client), in client-id order.

    Call it after the privacy check (:func:`check_received`, which every reply passes whether or
    not it is kept) and before :func:`aggregate` on ``kept``; :func:`check_divergence` decides
    whether the round may go on.
    """
    kept, excluded = [], []
    for r in sorted(results, key=lambda r: r.client_id):
        reason = _non_finite(r)
        if reason is None:
            kept.append(r)
        else:
            excluded.append(ExcludedUpdate(round_index, r.client_id, reason))
            logger.warning("round %d: client %d diverged (%s): its update is left out of the average",
                           round_index, r.client_id, reason)
    return kept, excluded


def check_divergence(excluded: Sequence[ExcludedUpdate], sampled: int, max_fraction: float,
                     round_index: int = 0) -> None:
    """Raise :class:`DivergedError` when more than ``max_fraction`` of the ``sampled`` clients of
    a round were excluded, or all of them (nothing left to average)."""
    if not excluded:
        return
    share = len(excluded) / max(sampled, 1)
    if share > max_fraction or len(excluded) >= sampled:
        who = ", ".join(f"client {e.client} ({e.reason})" for e in excluded)
        raise DivergedError(
            f"round {round_index}: {len(excluded)} of {sampled} clients diverged (non-finite update: {who}), "
            f"more than train.max_diverged_fraction={max_fraction:g}: lower train.lr, check the data, or "
            f"raise train.max_diverged_fraction to leave more diverged clients out")


def payload_size(tensors: Mapping[str, object]) -> tuple[int, int]:
    """``(values, bytes)`` of a dict of tensors as exchanged (numel and element size of each)."""
    values = nbytes = 0
    for t in tensors.values():
        t = torch.as_tensor(t)
        values += t.numel()
        nbytes += t.numel() * t.element_size()
    return values, nbytes


def check_finite_global(tensors: Mapping[str, object], round_index: int = 0) -> None:
    """Raise :class:`DivergedError` when the aggregated tensors hold a NaN or infinity (finite
    updates whose average overflows the tensor's dtype)."""
    for name in sorted(tensors):
        t = torch.as_tensor(tensors[name])
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            raise DivergedError(f"round {round_index}: the aggregated {name} is not finite (the clients' "
                                f"updates overflow {t.dtype}): lower train.lr or use train.aggregation: median")


__all__ = ["Aggregation", "DivergedError", "ExcludedUpdate", "aggregate", "check_divergence", "check_finite_global",
           "check_received", "payload_size", "screen_results"]
