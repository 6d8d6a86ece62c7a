"""The in-process federated engine (the embedded default): the round loop of every run.

N simulated clients run one after another in one process over one shared frozen backbone. The
method's trainable module is built once; each client's state (private tensors, optional momentum)
is a small CPU tensor dict swapped in and out, and its data are index tensors into one shared pool
(frozen features, and decoded images only when visual prompts are trained), so memory grows with
N only by those dicts and indices.

Reproducibility: every random choice is derived from ``train.seed``: prompt initialisation, client
sampling ``(seed, 1, round)``, batch order ``(seed, 2, round, client)``. A checkpoint after every
round (server tensors, every client's state, history, RNG states) is written atomically, so
``resume`` finishes with exactly the metrics of an uninterrupted run.

Round 0 in the history is the evaluation before any training; rounds 1..R train, aggregate and
evaluate (every ``eval.every`` rounds and always the last).

Diverged clients: every reply passes the server's privacy check, then the screening of
:func:`~fedrs.federated.server.screen_results`: an update whose tensors or loss terms are not
finite is left out of the round's aggregation and recorded (``excluded_clients`` in rounds.csv,
``excluded`` in the client's clients.csv row, :attr:`FederatedEngine.excluded_updates`); the run
stops when more than ``train.max_diverged_fraction`` of a round's clients diverge. The client's
own state is what its update left (a client keeps its private tensors, also on a Flower
SuperNode, where the server cannot roll them back), so both engines behave alike.

The engine knows methods, clients and rounds only: what a task builds before the rounds and writes
after them (datasets, partitions, run folders) is its pipeline's business
(:mod:`fedrs.classification`, :mod:`fedrs.retrieval.pipeline`, both driven by
:func:`fedrs.experiment.run_experiment`).
"""

from __future__ import annotations

import math
import pickle
import random
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

import fedrs.federated.dp as dp
from fedrs.errors import FedrsError
from fedrs.evaluate.classification import balanced_summary, harmonic_mean, personalised_summary
from fedrs.federated.client import (
    ClientResult,
    client_evaluate,
    client_update,
    initial_client_state,
    load_client,
    predict_counts,
)
from fedrs.federated.server import (
    aggregate,
    check_divergence,
    check_finite_global,
    check_received,
    payload_size,
    screen_results,
)
from fedrs.io import save_torch_atomic
from fedrs.methods.base import ClientData, Method
from fedrs.runs import EvalConfig, LocalTrainConfig, PrivacyConfig, TrainConfig

CHECKPOINT_FORMAT = "fedrs-checkpoint-v1"
#: what a checkpoint must hold (``excluded`` is optional: checkpoints before it had none)
_CHECKPOINT_KEYS = ("round", "global", "clients", "history", "client_rows", "elapsed", "rng")
_SAMPLE, _LOCAL = 1, 2


def derived_seed(seed: int, *key: int) -> int:
    """A 63-bit seed for one (stage, round, client) from the run seed."""
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(2, np.uint64)[0] >> np.uint64(1))


@dataclass
class NovelClasses:
    """What a base-to-novel run (``data.class_split: base-to-novel``) scores besides the base classes.

    ``method`` is the run's method built again over the novel class names only (the run's own
    method knows the base names only); the trained tensors are copied into it, which works for
    every method whose tensors do not depend on the number of classes (all of fedrs' prompt
    methods: their prompts are class-agnostic). ``data`` is the data pool with labels moved into
    the novel space (``label - num_base``); ``client_tests`` holds each client's novel test
    indices (partition order) and ``pooled_test`` all of them (global accuracy).
    """

    method: Method
    data: ClientData
    client_tests: list[torch.Tensor]
    pooled_test: torch.Tensor

    def transfers_from(self, method: Method) -> bool:
        """Whether ``method``'s trained tensors fit this method's (same names and shapes)."""
        return method.shapes(method.trainable_names) == self.method.shapes(self.method.trainable_names)


def round_lr(train: TrainConfig, round_index: int) -> float:
    """Learning rate of round ``round_index`` (1-based): cosine over rounds or constant."""
    if train.lr_schedule == "constant" or train.rounds <= 1:
        return train.lr
    return 0.5 * train.lr * (1.0 + math.cos(math.pi * (round_index - 1) / train.rounds))


def sample_clients(num_clients: int, fraction: float, seed: int, round_index: int) -> list[int]:
    """Sorted ids of the clients taking part in a round (at least one)."""
    m = max(1, int(round(fraction * num_clients)))
    if m >= num_clients:
        return list(range(num_clients))
    rng = np.random.default_rng(derived_seed(seed, _SAMPLE, round_index))
    return sorted(int(i) for i in rng.choice(num_clients, size=m, replace=False))


def _rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {**np_state, "state": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                                            "pos": int(np_state["state"]["pos"])}}}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np_state = dict(state["numpy"])
    np_state["state"] = {"key": state["numpy"]["state"]["key"].numpy().astype(np.uint32),
                         "pos": state["numpy"]["state"]["pos"]}
    np.random.set_state(np_state)


class FederatedEngine:
    """Rounds of sampling, local updates, FedAvg and evaluation over in-process clients.

    Args:
        method: the method, built once over the shared frozen backbone.
        clients: one :class:`ClientData` per client (views of one shared pool).
        pooled_test: pool indices of the pooled test set (global accuracy).
        unseen_test: pool indices of the test splits of clients who never train (``None``: none);
            the server's tensors are scored there too (``unseen_client_global_acc``).
        novel: base-to-novel runs: the novel classes (:class:`NovelClasses`), scored with novel
            class names only (``novel_*_acc`` and the harmonic means ``hm_*``).
        train, evaluation: the run's ``train`` and ``eval`` sections.
        checkpoint: file for the per-round checkpoint (``None``: no checkpoints).

    A subclass that runs the clients elsewhere (the Flower engine) overrides only
    :meth:`train_clients` and :meth:`evaluate_clients`; sampling, schedules, aggregation, history
    and evaluation rows stay here.
    """

    #: recorded as ``engine`` in metrics.json
    name = "inprocess"

    def __init__(self, method: Method, clients: Sequence[ClientData], pooled_test: torch.Tensor,
                 train: TrainConfig, evaluation: EvalConfig, checkpoint: str | Path | None = None,
                 privacy: PrivacyConfig | None = None, unseen_test: torch.Tensor | None = None,
                 novel: NovelClasses | None = None):
        if not clients:
            raise FedrsError("the federated engine needs at least one client")
        self.method, self.clients = method, method.arrange_clients(clients)
        first = self.clients[0]
        self.server_data = ClientData(-1, first.labels, first.train_indices[:0], pooled_test,
                                      first.features, first.images)
        self.train, self.evaluation = train, evaluation
        self.privacy = privacy or PrivacyConfig()
        self.unseen_test = unseen_test
        self.novel = novel
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.global_shared: dict[str, torch.Tensor] = {}
        self.client_states: list[dict[str, torch.Tensor]] = []
        self.history: list[dict] = []
        self.client_rows: list[dict] = []
        #: every update left out of its round: ``{"round", "client", "reason"}`` in round order
        self.excluded_updates: list[dict] = []
        self.round = 0
        self.elapsed = 0.0

    # -- state ---------------------------------------------------------------------------------
    def initialise(self) -> None:
        self.global_shared = self.method.initial_global()
        self.client_states = [initial_client_state(self.method, c.client_id) for c in self.clients]
        self.history, self.client_rows, self.round, self.elapsed = [], [], 0, 0.0
        self.excluded_updates = []

    def state_dict(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "round": self.round, "global": self.global_shared,
                "clients": self.client_states, "history": self.history, "client_rows": self.client_rows,
                "elapsed": self.elapsed, "rng": _rng_state(), "excluded": self.excluded_updates}

    def load_state_dict(self, state: dict, source: str = "in memory") -> None:
        """Continue from ``state`` (:meth:`state_dict`); ``source`` (its file) names it in errors."""
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise FedrsError(f"the checkpoint is not a fedrs run checkpoint, {CHECKPOINT_FORMAT} ({source}): "
                             f"start over with --force")
        missing = [k for k in _CHECKPOINT_KEYS if k not in state]
        if missing:
            raise FedrsError(f"the checkpoint is incomplete, it has no {', '.join(missing)} ({source}): start "
                             f"over with --force")
        if len(state["clients"]) != len(self.clients):
            raise FedrsError(f"the checkpoint belongs to another run, with {len(state['clients'])} clients where "
                             f"this one has {len(self.clients)} ({source}): start over with --force")
        self.round, self.global_shared, self.client_states = state["round"], state["global"], state["clients"]
        self.history, self.client_rows, self.elapsed = state["history"], state["client_rows"], state["elapsed"]
        self.excluded_updates = list(state.get("excluded", []))
        _set_rng_state(state["rng"])

    def load(self) -> None:
        """:meth:`load_state_dict` from the checkpoint file; an unreadable file is an error naming it."""
        try:
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError):
            raise FedrsError(f"cannot resume: the checkpoint is not a readable checkpoint ({self.checkpoint}): it is "
                             f"damaged, or holds objects other than tensors and plain data, which fedrs never "
                             f"unpickles; start over with --force") from None
        self.load_state_dict(state, str(self.checkpoint))

    def save(self) -> None:
        if self.checkpoint is not None:
            save_torch_atomic(self.checkpoint, self.state_dict())

    # -- one round -----------------------------------------------------------------------------
    def local_config(self, r: int, lr: float, k: int) -> LocalTrainConfig:
        """The local update config of client ``k`` in round ``r`` (its batch-order seed)."""
        return self.train.local(lr, derived_seed(self.train.seed, _LOCAL, r, k))

    def train_clients(self, r: int, lr: float, sampled: list[int]) -> list[ClientResult]:
        """Local updates of the ``sampled`` clients from the current global tensors."""
        results = []
        for k in sampled:
            result = client_update(self.method, self.global_shared, self.client_states[k], self.clients[k],
                                   self.local_config(r, lr, k))
            self.client_states[k] = result.client_state
            if self.privacy.mode == "local":  # the client clips and noises its upload (simulated: seeded)
                result.shared = dp.client_dp(self.global_shared, result.shared, self.privacy,
                                             dp.noise_generator(derived_seed(self.train.seed, dp.LOCAL_NOISE, r, k)))
            results.append(result)
        return results

    def evaluate_clients(self) -> list[dict]:
        """:func:`~fedrs.federated.client.client_evaluate` of every client, in client order."""
        return [client_evaluate(self.method, self.global_shared, state, data, self.evaluation.batch_size)
                for data, state in zip(self.clients, self.client_states)]

    def evaluate(self) -> tuple[dict, list[dict]]:
        """Personalised accuracy of every client and global accuracy of the server's tensors."""
        per_client = self.evaluate_clients()
        summary = personalised_summary([(m["correct"], m["total"]) for m in per_client])
        load_client(self.method, self.global_shared, self.method.initial_private(-1))
        pooled = predict_counts(self.method, self.server_data, self.server_data.test_indices,
                                personalised=False, batch_size=self.evaluation.batch_size)
        row = {"personalised_acc_weighted": summary["weighted"],
               "personalised_acc_unweighted": summary["unweighted"],
               "personalised_acc_balanced": balanced_summary([m.get("balanced_accuracy", float("nan"))
                                                              for m in per_client]),
               "global_acc": pooled.accuracy}
        if self.unseen_test is not None:  # the same global tensors on clients that never trained
            row["unseen_client_global_acc"] = predict_counts(self.method, self.server_data, self.unseen_test,
                                                             personalised=False,
                                                             batch_size=self.evaluation.batch_size).accuracy
        if self.novel is not None:
            row.update(self.evaluate_novel(row))
        return row, per_client

    def evaluate_novel(self, base: dict) -> dict:
        """Base-to-novel: the global tensors (``novel_global_acc``) and every client's own tensors
        (``novel_personalised_acc``, pooled over the clients' novel test splits, i.e. weighted)
        on the novel classes, with novel class names only, and the harmonic means with the base
        accuracies of ``base`` (``hm_global``, ``hm_personalised``). NaN when the method's tensors
        depend on the number of classes (they cannot carry over to other classes)."""
        novel, batch_size = self.novel, self.evaluation.batch_size
        nan = float("nan")
        if not novel.transfers_from(self.method):
            global_acc = personalised = nan
        else:
            load_client(novel.method, self.global_shared, novel.method.initial_private(-1))
            pooled = predict_counts(novel.method, novel.data, novel.pooled_test, personalised=False,
                                    batch_size=batch_size)
            global_acc = pooled.accuracy if pooled.total else nan
            # a method that pools every client into one (centralised) scores its one model on all of them
            tests = novel.client_tests if len(novel.client_tests) == len(self.clients) \
                else [torch.cat(novel.client_tests)]
            counts = []
            for state, indices in zip(self.client_states, tests):
                load_client(novel.method, self.global_shared, state)
                mine = predict_counts(novel.method, novel.data, indices, personalised=True, batch_size=batch_size)
                counts.append((mine.correct, mine.total))
            personalised = personalised_summary(counts)["weighted"]
        return {"novel_personalised_acc": personalised, "novel_global_acc": global_acc,
                "hm_personalised": harmonic_mean(base["personalised_acc_weighted"], personalised),
                "hm_global": harmonic_mean(base["global_acc"], global_acc)}

    def run_round(self, r: int) -> tuple[dict, list[dict]]:
        """Train round ``r`` (1-based): sampled clients update, the server averages."""
        lr = round_lr(self.train, r)
        sampled = sample_clients(len(self.clients), self.train.sample_fraction, self.train.seed, r)
        down_values, down_bytes = payload_size(self.global_shared)
        results = self.train_clients(r, lr, sampled)
        names = self.method.upload_names
        for res in results:  # privacy first: every reply, kept or not
            check_received(res.client_id, res.shared, names, self.method)
        kept, excluded = screen_results(results, r)
        check_divergence(excluded, len(results), self.train.max_diverged_fraction, r)
        aggregated = aggregate(kept, names, method=self.method, rule=self.train.aggregation,
                               trim_fraction=self.train.trim_fraction)
        self.global_shared = dp.apply_central_dp(self.global_shared, aggregated, kept, self.privacy,
                                                 dp.noise_generator(derived_seed(self.train.seed, dp.CENTRAL_NOISE, r)))
        check_finite_global(self.global_shared, r)
        self.excluded_updates.extend({"round": e.round, "client": e.client, "reason": e.reason} for e in excluded)
        why = {e.client: e.reason for e in excluded}

        total = sum(res.num_examples for res in kept) or 1
        terms = sorted({t for res in results for t in res.metrics if t != "steps"})
        rows = []
        for res in results:
            up_values, up_bytes = payload_size(res.shared)
            rows.append({"client": res.client_id, "num_examples": res.num_examples,
                         "up_values": up_values, "up_bytes": up_bytes,
                         "down_values": down_values, "down_bytes": down_bytes,
                         **{f"train_{t}": res.metrics.get(t, float("nan")) for t in terms},
                         **({"excluded": why[res.client_id]} if res.client_id in why else {})})
        row = {"round": r, "lr": lr, "clients_sampled": len(sampled)}
        epsilon = dp.epsilon_spent(self.privacy, len(self.clients), len(sampled), r)
        if epsilon is not None:
            row["epsilon"] = epsilon
        # the round's loss terms over the clients that were averaged (a diverged one would be NaN)
        row.update({f"train_{t}": sum(res.metrics.get(t, 0.0) * res.num_examples for res in kept) / total
                    for t in terms})
        if excluded:
            row["excluded_clients"] = " ".join(str(e.client) for e in excluded)
        for key in ("up_values", "up_bytes", "down_values", "down_bytes"):
            row[f"{key}_per_client"] = sum(c[key] for c in rows) / len(rows)
            row[f"{key}_round"] = sum(c[key] for c in rows)
        return row, rows

    def _finish_row(self, row: dict, client_rows: list[dict], r: int, started: float) -> None:
        last = r == self.train.rounds
        if r == 0 or last or r % self.evaluation.every == 0:
            accs, per_client = self.evaluate()
            row.update(accs)
            by_id = {c["client"]: c for c in client_rows}
            for data, m in zip(self.clients, per_client):
                by_id.setdefault(data.client_id, {"client": data.client_id})
                by_id[data.client_id].update({"test_examples": int(m["total"]), "personalised_acc": m["accuracy"],
                                              "balanced_acc": m.get("balanced_accuracy", float("nan"))})
            client_rows = [by_id[k] for k in sorted(by_id)]
        previous = self.history[-1] if self.history else {}
        for key in ("up_bytes", "down_bytes", "up_values", "down_values"):
            row[f"cum_{key}"] = previous.get(f"cum_{key}", 0) + row.get(f"{key}_round", 0)
        row["time_s"] = time.perf_counter() - started
        self.history.append(row)
        self.client_rows.extend({"round": r, **c} for c in client_rows)
        self.round = r
        self.elapsed += row["time_s"]

    def run(self, resume: bool = False, progress: bool = True,
            on_round: Callable[[int, dict], None] | None = None) -> list[dict]:
        """Run (or, with ``resume`` and a checkpoint, continue) all rounds; returns the history."""
        if resume and self.checkpoint is not None and self.checkpoint.is_file():
            self.load()
        else:
            self.initialise()
        if not self.history:
            started = time.perf_counter()
            self._finish_row({"round": 0, "lr": 0.0, "clients_sampled": 0}, [], 0, started)
            self.save()
        bar = tqdm(range(self.round + 1, self.train.rounds + 1), desc=f"{self.method.name} rounds",
                   disable=not progress, unit="round", initial=self.round, total=self.train.rounds)
        for r in bar:
            started = time.perf_counter()
            row, client_rows = self.run_round(r)
            self._finish_row(row, client_rows, r, started)
            self.save()
            if "global_acc" in row:
                bar.set_postfix(pers=f"{row['personalised_acc_weighted']:.3f}", glob=f"{row['global_acc']:.3f}")
            if on_round is not None:
                on_round(r, row)
        return self.history


__all__ = [
    "FederatedEngine", "NovelClasses", "round_lr", "sample_clients", "derived_seed",
    "CHECKPOINT_FORMAT",
]
