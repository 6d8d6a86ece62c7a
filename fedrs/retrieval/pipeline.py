"""Federated PE-RSITR: the ``pe-rsitr`` method trained by the federated engine, and its run pipeline.

* :func:`federated_retrieval` deals a caption set's training images to clients, runs the
  :class:`~fedrs.federated.engine.FederatedEngine` rounds over :class:`~fedrs.retrieval.method.PERSITR`
  and scores the server's (and each client's personalised) model with R@1/5/10 both ways and mR;
* :func:`run_retrieval` is the retrieval pipeline of :func:`fedrs.experiment.run_experiment`
  (``fedrs run`` with ``method: {name: pe-rsitr}``): it fills a prepared run folder with
  split.json, rounds.csv and clients.csv and returns metrics.json's content.

```python
from fedrs.retrieval import RetrievalSet, federated_retrieval, PERSITRConfig
out = federated_retrieval(backbone, train, test, PERSITRConfig(private=["adapter.up.text"]),
                          num_clients=5, rounds=10)
print(out.scores, out.personalised_row())
```
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from fedrs.backbone.factory import create_backbone
from fedrs.config import to_dict
from fedrs.data.partition import PartitionConfig
from fedrs.evaluate.retrieval import RetrievalScores
from fedrs.federated.client import load_client
from fedrs.federated.engine import FederatedEngine
from fedrs.methods.base import ClientData
from fedrs.retrieval.config import RetrievalConfig
from fedrs.retrieval.data import RetrievalSet, split_clients
from fedrs.retrieval.method import PERSITR, PERSITRConfig
from fedrs.retrieval.model import RetrievalModel
from fedrs.retrieval.train import evaluate
from fedrs.runs import CHECKPOINT, CLIENTS, ROUNDS, EvalConfig, RunConfig, RunFolder, TrainConfig


@dataclass
class FederatedRetrievalResult:
    """Final scores of the server's tensors, of each client's personalised model, and the history."""

    scores: RetrievalScores
    personalised: list[RetrievalScores]
    history: list[dict]
    trainable_params: int
    upload_values_per_client_round: int
    shards: list[list[int]]
    model: RetrievalModel  # holds the server's tensors (private parts at their initial values)

    def personalised_row(self) -> dict[str, float]:
        rows = [s.as_row() for s in self.personalised]
        return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]} if rows else {}


def concat_pool(train: RetrievalSet, test: RetrievalSet) -> tuple[RetrievalSet, torch.Tensor]:
    """One pool (training images, then test images) and the pool indices of the test images."""
    pool = RetrievalSet(f"{train.name}+{test.name}", train.image_ids + test.image_ids,
                        torch.cat([train.images, test.images]), train.captions + test.captions,
                        torch.cat([train.caption_image, test.caption_image + len(train)]))
    return pool, torch.arange(len(train), len(pool))


def federated_retrieval(backbone, train: RetrievalSet, test: RetrievalSet,
                        cfg: PERSITRConfig | RetrievalConfig | None = None, *, num_clients: int = 5,
                        rounds: int = 10, local_epochs: int = 1, lr: float = 0.1,
                        train_cfg: TrainConfig | None = None, eval_cfg: EvalConfig | None = None,
                        split_seed: int = 0, split: PartitionConfig | None = None,
                        shards: list[list[int]] | None = None,
                        checkpoint: str | Path | None = None, resume: bool = False,
                        progress: bool = False,
                        on_round: Callable[[int, dict], None] | None = None) -> FederatedRetrievalResult:
    """Train a retrieval variant over ``num_clients`` disjoint image shards with the federated engine.

    The shards are random (IID, seed ``split_seed``) unless ``split`` (a run's ``data`` section,
    :class:`fedrs.data.PartitionConfig`) asks for scene-class skew (``dirichlet``, ``pathological``);
    ``split`` then also sets the number of clients. ``shards`` (indices into ``train``, one list
    per client) gives shards already dealt by :func:`~fedrs.retrieval.data.split_clients`.

    ``cfg`` is the method section (a :class:`RetrievalConfig` is converted: variant, adapter,
    prompts, loss). ``train_cfg``/``eval_cfg`` are the run's ``train``/``eval`` sections (default:
    ``rounds``, ``local_epochs``, SGD ``lr``, cosine over rounds, batch 64). ``num_clients=1`` is
    the centralised reference through exactly the same code.
    """
    if isinstance(cfg, RetrievalConfig):
        cfg = PERSITRConfig(variant=cfg.variant, adapter=cfg.adapter, prompts=cfg.prompts, loss=cfg.loss)
    cfg = cfg or PERSITRConfig()
    train_cfg = train_cfg or TrainConfig(rounds=rounds, local_epochs=local_epochs, lr=lr, batch_size=64)
    eval_cfg = eval_cfg or EvalConfig(every=max(1, train_cfg.rounds), zeroshot_reference=False)
    method = PERSITR(cfg, backbone, seed=train_cfg.seed)
    pool, test_idx = concat_pool(train, test)
    method.set_pool(pool, test_idx)
    if shards is None:
        split = split or PartitionConfig(dataset=train.name, num_clients=num_clients, scheme="iid",
                                         seed=split_seed)
        shards = split_clients(train, split)
    labels = torch.arange(len(pool))
    clients = [ClientData(k, labels, torch.tensor(s, dtype=torch.long), test_idx, None, pool.images)
               for k, s in enumerate(shards)]
    engine = FederatedEngine(method, clients, test_idx, train_cfg, eval_cfg, checkpoint)
    history = engine.run(resume=resume, progress=progress, on_round=on_round)

    def scores_with(private: dict) -> RetrievalScores:
        load_client(method, engine.global_shared, private)
        return evaluate(method.module, test, eval_cfg.batch_size)

    personalised = [scores_with(state) for state in engine.client_states] if method.private_names else []
    final = scores_with(method.initial_private(-1))
    return FederatedRetrievalResult(final, personalised, history, method.num_values(method.trainable_names),
                                    method.num_values(method.upload_names), shards, method.module)


def split_manifest(cfg: RunConfig, train: RetrievalSet, test: RetrievalSet, shards: list[list[int]]) -> str:
    """split.json of a retrieval run: the caption set's splits and scheme, each client's image ids
    and the test image ids."""
    m: PERSITRConfig = cfg.method
    manifest = {"dataset": cfg.data.dataset, "train_split": m.train_split, "test_split": m.test_split,
                "scheme": cfg.data.scheme, "seed": cfg.data.seed,
                "clients": [[train.image_ids[i] for i in s] for s in shards], "test": test.image_ids}
    return json.dumps(manifest, indent=2, default=str) + "\n"


def run_retrieval(cfg: RunConfig, folder: RunFolder, *, resume: bool = False, progress: bool = True,
                  on_round: Callable[[int, dict], None] | None = None,
                  started: float | None = None) -> dict:
    """The retrieval pipeline of :func:`fedrs.experiment.run_experiment`: train ``cfg`` into the
    prepared run ``folder`` (params.yaml and env.json written) and return metrics.json's content.

    ``data.dataset`` is the caption set, ``data.num_clients`` the clients, ``data.seed`` the shard
    seed, ``data.scheme`` how the training images are dealt (``iid``: random disjoint shards;
    ``dirichlet``/``pathological``: skewed by the images' scene classes); ``train``/``eval`` as
    for every run. The metrics hold the server model's R@1/5/10 both ways and mR on the test
    split, the clients' personalised mean (when some tensors are private) and zero-shot.
    ``started`` (``time.perf_counter()``) is when the run began, for setup and wall times.
    """
    started = time.perf_counter() if started is None else started
    backbone = create_backbone(cfg.backbone.model, cfg.backbone.pretrained, cfg.backbone.device)
    m: PERSITRConfig = cfg.method
    train = RetrievalSet.load(cfg.data.dataset, m.train_split, backbone)
    test = RetrievalSet.load(cfg.data.dataset, m.test_split, backbone)
    shards = split_clients(train, cfg.data)
    folder.write_split(split_manifest(cfg, train, test, shards), resume)
    setup_s = time.perf_counter() - started
    rows: list[dict] = []

    def after_round(r: int, row: dict) -> None:
        rows.append(row)
        folder.write_csv(ROUNDS, rows)
        if on_round is not None:
            on_round(r, row)

    out = federated_retrieval(backbone, train, test, m, train_cfg=cfg.train, eval_cfg=cfg.eval,
                              shards=shards, checkpoint=folder / CHECKPOINT, resume=resume,
                              progress=progress, on_round=after_round)
    folder.write_csv(ROUNDS, out.history)
    folder.write_csv(CLIENTS, [{"client": k, "train_images": len(s),
                                "scene_classes": len({train.labels[i] for i in s}) if train.labels else "",
                                **{f"personalised_{a}": b for a, b in (out.personalised[k].as_row().items()
                                                                       if out.personalised else [])}}
                               for k, s in enumerate(out.shards)])
    zeroshot = evaluate(RetrievalModel(backbone), test) if cfg.eval.zeroshot_reference else None
    return {
        "name": cfg.name, "method": PERSITR.name, "variant": m.variant, "backbone": backbone.label,
        "dataset": cfg.data.dataset, "split": cfg.data.describe(),
        "partition": to_dict(cfg.data), "seed": cfg.train.seed, "rounds": cfg.train.rounds,
        "num_clients": cfg.data.num_clients, "test_images": len(test), "test_captions": test.num_captions,
        "global": out.scores.as_row(), "personalised": out.personalised_row(),
        "zeroshot": zeroshot.as_row() if zeroshot is not None else {},
        "trainable_params": out.trainable_params,
        "upload_values_per_client_round": out.upload_values_per_client_round,
        "private_prefixes": list(m.private),
        "setup_time_s": setup_s, "wall_time_s": time.perf_counter() - started,
        "tie_convention": "pessimistic",
    }


__all__ = ["FederatedRetrievalResult", "concat_pool", "federated_retrieval", "split_manifest",
           "run_retrieval"]
