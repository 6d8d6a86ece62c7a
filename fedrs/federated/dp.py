"""Differential privacy for the shared tensors: clipping, Gaussian noise and the privacy spent.

One implementation for both engines (the in-process engine and the Flower ServerApp/ClientApp),
configured by the run's ``privacy:`` section (:class:`~fedrs.runs.PrivacyConfig`):

* ``central`` (the server is trusted, DP-FedAvg with fixed clipping, McMahan et al. 2018, as
  Flower's ``DifferentialPrivacyServerSideFixedClipping``): :func:`apply_central_dp` clips each
  sampled client's update of the shared tensors, ``upload - global``, to L2 norm ``C =
  clip_norm`` (one norm over all shared tensors together), averages the clipped updates with
  *equal* weights over the ``m`` sampled clients and adds Gaussian noise of std ``z * C / m``
  (``z = noise_multiplier``) to that mean; the new global tensors are ``global + noised mean``.
  The equal weights are what bounds one client's influence by ``C / m``; a sample-weighted mean
  would let a client with many images move the average further (Flower's accounted path refuses
  unequal weights for the same reason). The noise is drawn on the server from a generator seeded
  from the run seed and the round, so a run is reproducible and both engines draw the same noise.
* ``local`` (no trusted server): :func:`client_dp` clips the client's update to ``C`` and adds
  noise of std ``z * C`` before the upload leaves the client; the server averages the noised
  uploads as usual (post-processing). The noise must be unknown to the server, so a real
  deployment draws it from the client's own OS randomness; only a simulation (the in-process
  engine, a Flower run over one partitioned dataset) seeds it from the run seed, round and client.

Only the tensors the server sent (the method's shared tensors) enter this path: every function
checks that an upload names exactly the global tensors, so a private tensor cannot be clipped,
noised or averaged here. Computation is in float64, tensors are returned in their own dtype.

The privacy spent after ``r`` rounds (:func:`epsilon_spent`, epsilon at ``delta``) comes from
Google's ``dp-accounting`` RDP accountant (the backend of Flower's own ``RdpAccountant``), with
the add/remove-one-client neighbouring relation. ``central``: ``r`` compositions of the Gaussian
mechanism with multiplier ``z``, subsampled at rate ``q = m / N`` (Poisson sampling; fedrs draws
exactly ``m`` of ``N`` clients per round, so for ``q < 1`` this is the usual DP-FedAvg
approximation; with ``sample_fraction = 1`` it is exact). ``local``: per client, ``r``
compositions of the Gaussian mechanism without amplification (the server knows who took part),
a worst case for a client sampled every round.
"""

from __future__ import annotations

import logging
import math
import secrets
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch

from fedrs.errors import FedrsError
from fedrs.runs import PrivacyConfig

logger = logging.getLogger(__name__)

#: stage keys of the engine's ``derived_seed(seed, stage, round[, client])`` for the DP noise
#: (1: client sampling, 2: batch order are the engine's own)
CENTRAL_NOISE, LOCAL_NOISE = 3, 4
#: the accountant's description, recorded in metrics.json
ACCOUNTANT = "RDP (dp-accounting), add/remove-one client"


def noise_generator(seed: int | None = None) -> torch.Generator:
    """A CPU generator for DP noise: seeded with ``seed``, or from the OS's secret randomness
    (``None``: a real client's local noise, which the server must not be able to reproduce)."""
    return torch.Generator().manual_seed(secrets.randbits(63) if seed is None else int(seed))


def update_of(global_before: Mapping[str, object], upload: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """``upload - global_before`` per tensor, in float64; the upload must name exactly the
    global tensors (a private or unknown tensor never enters the DP path)."""
    names, sent = set(upload), set(global_before)
    if names != sent:
        raise FedrsError(f"DP: the upload holds {sorted(names)} but the global tensors are {sorted(sent)}: only "
                         f"the shared tensors the server sent are clipped and noised")
    return {k: torch.as_tensor(upload[k]).double() - torch.as_tensor(global_before[k]).double()
            for k in sorted(sent)}


def l2_norm(tensors: Mapping[str, torch.Tensor]) -> float:
    """The L2 norm of all ``tensors`` flattened into one vector."""
    return math.sqrt(sum(float(torch.as_tensor(t).double().pow(2).sum()) for t in tensors.values()))


def clip(update: Mapping[str, torch.Tensor], clip_norm: float) -> dict[str, torch.Tensor]:
    """``update`` scaled by ``min(1, clip_norm / ||update||)`` (Flower's flat clipping): its L2
    norm is at most ``clip_norm``, its direction unchanged."""
    norm = l2_norm(update)
    factor = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return {k: torch.as_tensor(v).double() * factor for k, v in update.items()}


def gaussian_noise(like: Mapping[str, torch.Tensor], std: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Independent ``N(0, std^2)`` float64 noise shaped as each tensor of ``like`` (drawn in the
    sorted order of the names, so the draws do not depend on dict order)."""
    return {k: torch.normal(0.0, std, size=tuple(like[k].shape), generator=generator, dtype=torch.float64)
            for k in sorted(like)}


def central_noise_std(cfg: PrivacyConfig, num_sampled: int) -> float:
    """Std of the central noise on the mean of ``num_sampled`` clipped updates: ``z * C / m``."""
    return cfg.noise_multiplier * cfg.clip_norm / num_sampled


def local_noise_std(cfg: PrivacyConfig) -> float:
    """Std of a client's local noise on its own clipped update: ``z * C``."""
    return cfg.noise_multiplier * cfg.clip_norm


def _as_global(global_before: Mapping[str, object], update: Mapping[str, torch.Tensor]) -> dict:
    """``global_before + update`` in each global tensor's dtype (and type: tensor or array)."""
    out = {}
    for k in global_before:
        first = global_before[k]
        value = torch.as_tensor(first).double() + update[k]
        out[k] = value.numpy().astype(first.dtype) if isinstance(first, np.ndarray) else value.to(
            torch.as_tensor(first).dtype)
    return out


def apply_central_dp(global_before: Mapping[str, object], aggregate: Mapping[str, object],
                     results: Sequence, cfg: PrivacyConfig, generator: torch.Generator) -> dict:
    """The new global tensors of a round under ``cfg``.

    ``mode != "central"``: ``aggregate`` (the server's plain aggregate) unchanged. ``central``:
    ``global_before + mean_k clip(upload_k - global_before, C) + N(0, (z C / m)^2)``, the mean
    taken with equal weights over the ``m = len(results)`` clients averaged this round (those the
    server kept after its checks) in ascending ``client_id`` order (``results``:
    :class:`~fedrs.federated.client.ClientResult`, whose ``shared`` must name exactly the global
    tensors); ``aggregate`` is then only checked for its names (central DP replaces the
    aggregation rule, which a run config therefore requires to be ``mean``). ``generator``: the
    server's noise generator of this round (``derived_seed(seed, CENTRAL_NOISE, round)``)."""
    if cfg.mode != "central":
        return dict(aggregate)
    if set(aggregate) != set(global_before):
        raise FedrsError(f"DP: the aggregate holds {sorted(aggregate)}, the global tensors {sorted(global_before)}")
    if not global_before:
        return {}
    if not results:
        raise FedrsError("DP: no client results to average (no client was sampled)")
    ordered = sorted(results, key=lambda r: r.client_id)
    total = {k: torch.zeros(tuple(np.shape(v)), dtype=torch.float64) for k, v in global_before.items()}
    for r in ordered:
        for k, v in clip(update_of(global_before, r.shared), cfg.clip_norm).items():
            total[k] += v
    m = len(ordered)
    noise = gaussian_noise(total, central_noise_std(cfg, m), generator)
    return _as_global(global_before, {k: total[k] / m + noise[k] for k in total})


def client_dp(global_before: Mapping[str, object], upload: Mapping[str, object], cfg: PrivacyConfig,
              generator: torch.Generator) -> dict:
    """What a client uploads under ``cfg``: ``upload`` unchanged unless ``mode == "local"``, then
    ``global_before + clip(upload - global_before, C) + N(0, (z C)^2)``. Only the shared
    tensors (exactly the names of ``global_before``) are accepted. ``generator``: the client's
    own secret randomness in a deployment (:func:`noise_generator` without a seed)."""
    if cfg.mode != "local":
        return dict(upload)
    clipped = clip(update_of(global_before, upload), cfg.clip_norm)
    noise = gaussian_noise(clipped, local_noise_std(cfg), generator)
    return _as_global(global_before, {k: clipped[k] + noise[k] for k in clipped})


@contextmanager
def _quiet_absl() -> Iterator[None]:
    """dp-accounting logs a warning for every low RDP order it drops at large sampling rates."""
    log = logging.getLogger("absl")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def epsilon_spent(cfg: PrivacyConfig, num_clients: int, clients_per_round: int, rounds: int) -> float | None:
    """Epsilon at ``cfg.delta`` after ``rounds`` rounds (see the module docstring for the model);
    ``None`` when ``mode == "none"``, ``inf`` without noise (``noise_multiplier == 0``), 0 before
    the first round."""
    if cfg.mode == "none":
        return None
    if rounds <= 0:
        return 0.0
    if cfg.noise_multiplier == 0:
        return math.inf
    if not 1 <= clients_per_round <= num_clients:
        raise FedrsError(f"DP accounting: {clients_per_round} clients per round of {num_clients}")
    import dp_accounting
    from dp_accounting import rdp

    gaussian = dp_accounting.GaussianDpEvent(cfg.noise_multiplier)
    q = clients_per_round / num_clients
    event = gaussian if cfg.mode == "local" or q >= 1 else dp_accounting.PoissonSampledDpEvent(q, gaussian)
    accountant = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    with _quiet_absl():
        accountant.compose(event, int(rounds))
        return float(accountant.get_epsilon(cfg.delta))


def privacy_summary(cfg: PrivacyConfig, history: Sequence[Mapping]) -> dict:
    """metrics.json's ``privacy`` entry: the settings and the epsilon after the last round (from
    the history rows' ``epsilon``); ``{"mode": "none"}`` without DP."""
    if cfg.mode == "none":
        return {"mode": "none"}
    spent = [row["epsilon"] for row in history if row.get("epsilon") is not None]
    return {"mode": cfg.mode, "clip_norm": cfg.clip_norm, "noise_multiplier": cfg.noise_multiplier,
            "delta": cfg.delta, "epsilon": spent[-1] if spent else 0.0, "accountant": ACCOUNTANT}


__all__ = [
    "CENTRAL_NOISE", "LOCAL_NOISE", "ACCOUNTANT", "noise_generator", "update_of", "l2_norm", "clip",
    "gaussian_noise", "central_noise_std", "local_noise_std", "apply_central_dp", "client_dp",
    "epsilon_spent", "privacy_summary",
]
