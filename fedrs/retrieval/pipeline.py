"""Federated PE-RSITR: the ``pe-rsitr`` method trained by the federated engine, and its run pipeline.

* :func:`federated_retrieval` deals a caption set's training images to clients, runs the
  :class:`~fedrs.federated.engine.FederatedEngine` rounds over :class:`~fedrs.retrieval.method.PERSITR`
  and scores the server's (and each client's personalised) model with R@1/5/10 both ways and mR;
* :func:`run_retrieval` is the retrieval pipeline of :func:`fedrs.experiment.run_experiment`
  (``fedrs run`` with ``method: {name: pe-rsitr}``): it holds out the validation split of the
  training images (``method.validation``), fills a prepared run folder with split.json,
  rounds.csv (with the validation mR of every round) and clients.csv, and returns metrics.json's
  content: the *final* round's recalls on test under every tie convention, and a ``selection``
  record saying which split selected what.

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
from fedrs.config import ConfigError
from fedrs.data.partition import PartitionConfig
from fedrs.evaluate.retrieval import TIES, RetrievalScores, tie_row
from fedrs.federated.client import load_client
from fedrs.federated.engine import FederatedEngine
from fedrs.methods.base import ClientData
from fedrs.retrieval.config import FEDERATED_SGD_LR, RetrievalConfig
from fedrs.retrieval.data import RetrievalSet, split_clients, zeroshot_note
from fedrs.retrieval.method import PERSITR, PERSITRConfig
from fedrs.retrieval.model import RetrievalModel
from fedrs.retrieval.train import evaluate, evaluate_by_ties, validation_summary
from fedrs.runs import CHECKPOINT, CLIENTS, ROUNDS, EvalConfig, RunConfig, RunFolder, TrainConfig


@dataclass
class FederatedRetrievalResult:
    """Final scores of the server's tensors, of each client's personalised model, and the history.

    ``scores``/``personalised``: pessimistic ties; ``scores_by_ties``/``personalised_by_ties``:
    every convention of :data:`fedrs.evaluate.retrieval.TIES`. With a validation split, every
    history row after round 0 holds ``val_mR`` (the server's tensors) and, when some tensors are
    private, ``val_mR_personalised`` (the clients' mean).
    """

    scores: RetrievalScores
    personalised: list[RetrievalScores]
    history: list[dict]
    trainable_params: int
    upload_values_per_client_round: int
    shards: list[list[int]]
    model: RetrievalModel  # holds the server's tensors (private parts at their initial values)
    scores_by_ties: dict[str, RetrievalScores] | None = None
    personalised_by_ties: list[dict[str, RetrievalScores]] | None = None

    def global_row(self) -> dict[str, float]:
        """The server model's recalls: pessimistic ties unsuffixed, the others suffixed (``tie_row``)."""
        return tie_row(self.scores_by_ties) if self.scores_by_ties else self.scores.as_row()

    def personalised_row(self) -> dict[str, float]:
        rows = ([tie_row(s) for s in self.personalised_by_ties] if self.personalised_by_ties
                else [s.as_row() for s in self.personalised])
        return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]} if rows else {}


class ValidatedEngine(FederatedEngine):
    """The federated engine that also scores a validation split after every ``every``-th training
    round and the last: the round's row (so rounds.csv and the checkpointed history) gains ``val_mR`` (server tensors,
    private parts at their initial values), ``val_mR_personalised`` (mean over clients, when some
    tensors are private) and ``val_s`` (seconds spent). Evaluation draws no random numbers, so a
    resumed run equals an uninterrupted one."""

    def __init__(self, *args, val: RetrievalSet, every: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.val, self.every = val, every

    def validate(self) -> dict[str, float]:
        started = time.perf_counter()
        method, batch = self.method, self.evaluation.batch_size
        load_client(method, self.global_shared, method.initial_private(-1))
        out = {"val_mR": evaluate(method.module, self.val, batch).mr}
        if method.private_names:
            per_client = []
            for state in self.client_states:
                load_client(method, self.global_shared, state)
                per_client.append(evaluate(method.module, self.val, batch).mr)
            out["val_mR_personalised"] = sum(per_client) / len(per_client)
        out["val_s"] = time.perf_counter() - started
        return out

    def run_round(self, r: int) -> tuple[dict, list[dict]]:
        row, client_rows = super().run_round(r)
        if r % self.every == 0 or r == self.train.rounds:
            row.update(self.validate())
        return row, client_rows


def concat_pool(train: RetrievalSet, test: RetrievalSet) -> tuple[RetrievalSet, torch.Tensor]:
    """One pool (training images, then test images) and the pool indices of the test images."""
    pool = RetrievalSet(f"{train.name}+{test.name}", train.image_ids + test.image_ids,
                        torch.cat([train.images, test.images]), train.captions + test.captions,
                        torch.cat([train.caption_image, test.caption_image + len(train)]))
    return pool, torch.arange(len(train), len(pool))


def federated_retrieval(backbone, train: RetrievalSet, test: RetrievalSet,
                        cfg: PERSITRConfig | RetrievalConfig | None = None, *, num_clients: int = 5,
                        rounds: int = 10, local_epochs: int = 1, lr: float = FEDERATED_SGD_LR,
                        train_cfg: TrainConfig | None = None, eval_cfg: EvalConfig | None = None,
                        split_seed: int = 0, split: PartitionConfig | None = None,
                        shards: list[list[int]] | None = None,
                        checkpoint: str | Path | None = None, resume: bool = False,
                        progress: bool = False, val: RetrievalSet | None = None,
                        on_round: Callable[[int, dict], None] | None = None) -> FederatedRetrievalResult:
    """Train a retrieval variant over ``num_clients`` disjoint image shards with the federated engine.

    The shards are random (IID, seed ``split_seed``) unless ``split`` (a run's ``data`` section,
    :class:`fedrs.data.PartitionConfig`) asks for scene-class skew (``dirichlet``, ``pathological``);
    ``split`` then also sets the number of clients. ``shards`` (indices into ``train``, one list
    per client) gives shards already dealt by :func:`~fedrs.retrieval.data.split_clients`.

    ``cfg`` is the method section (a :class:`RetrievalConfig` is converted: variant, adapter,
    prompts, loss, splits, validation; the split itself is the caller's: pass ``val``).
    ``train_cfg``/``eval_cfg`` are the run's ``train``/``eval`` sections (default:
    ``rounds``, ``local_epochs``, SGD ``lr``, cosine over rounds, batch 64). ``num_clients=1`` is
    the centralised reference through exactly the same code. ``val``: a validation split of the
    training images (disjoint from ``train``), scored after every ``cfg.validation.every``-th round
    and the last (:class:`ValidatedEngine`).
    """
    if isinstance(cfg, RetrievalConfig):
        cfg = PERSITRConfig(variant=cfg.variant, adapter=cfg.adapter, prompts=cfg.prompts, loss=cfg.loss,
                            train_split=cfg.train_split, test_split=cfg.eval_split, validation=cfg.validation)
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
    if val is not None:
        engine = ValidatedEngine(method, clients, test_idx, train_cfg, eval_cfg, checkpoint, val=val,
                                 every=cfg.validation.every)
    else:
        engine = FederatedEngine(method, clients, test_idx, train_cfg, eval_cfg, checkpoint)
    history = engine.run(resume=resume, progress=progress, on_round=on_round)

    def scores_with(private: dict) -> dict[str, RetrievalScores]:
        load_client(method, engine.global_shared, private)
        return evaluate_by_ties(method.module, test, eval_cfg.batch_size)

    personalised = [scores_with(state) for state in engine.client_states] if method.private_names else []
    final = scores_with(method.initial_private(-1))
    return FederatedRetrievalResult(final["pessimistic"], [p["pessimistic"] for p in personalised], history,
                                    method.num_values(method.trainable_names),
                                    method.num_values(method.upload_names), shards, method.module,
                                    scores_by_ties=final, personalised_by_ties=personalised)


def split_manifest(cfg: RunConfig, train: RetrievalSet, test: RetrievalSet, shards: list[list[int]],
                   val: RetrievalSet | None = None) -> str:
    """split.json of a retrieval run: the caption set's splits and scheme, the validation split held
    out of the training images, each client's image ids and the test image ids."""
    m: PERSITRConfig = cfg.method
    manifest = {"dataset": cfg.data.dataset, "train_split": m.train_split, "test_split": m.test_split,
                "scheme": cfg.data.scheme, "seed": cfg.data.seed,
                "validation": {"fraction": m.validation.fraction, "seed": m.validation.seed,
                               "images": val.image_ids if val is not None else []},
                "clients": [[train.image_ids[i] for i in s] for s in shards], "test": test.image_ids}
    return json.dumps(manifest, indent=2, default=str) + "\n"


def selection_record(cfg: RunConfig, train_all: RetrievalSet, val: RetrievalSet | None,
                     history: list[dict]) -> dict:
    """metrics.json's ``selection``: which split selected what. The validation split (when held
    out) gives the per-round curve and its best round; the reported numbers are the final round's
    on test; the learning rate is the config's (choose it with
    :func:`fedrs.retrieval.selection.select_lr` on the same split)."""
    m: PERSITRConfig = cfg.method
    if val is None:
        return {"split": "none (validation.fraction 0: every training image trains)",
                "reported": f"final round ({cfg.train.rounds}) on test", "lr": cfg.train.lr}
    rows = [r for r in history if r.get("round", 0) > 0]
    key = "val_mR_personalised" if any("val_mR_personalised" in r for r in rows) else "val_mR"
    return {"split": m.validation.describe(m.train_split, len(val), len(train_all)),
            "metric": f"{key} (pessimistic ties)", **validation_summary(rows, key, "round"),
            "reported": f"final round ({cfg.train.rounds}) on test, never the best round",
            "lr": cfg.train.lr,
            "lr_source": "the config; the params files cite the select_lr table (this validation split) that set it"}


def check_retrieval_data(data: PartitionConfig) -> None:
    """Refuse the classification-only settings of a run's ``data`` section in a retrieval run: a
    caption set's clients all train and every image is scored against every caption, so there are
    neither clients that never train (``unseen_clients``) nor classes held out of training
    (``class_split``). One error names every such setting."""
    refused = ([f"unseen_clients: {data.unseen_clients}"] if data.unseen_clients else []) + \
              ([f"class_split: {data.class_split}"] if data.class_split != "all" else [])
    if refused:
        both = len(refused) > 1
        raise ConfigError(f"data.{' and data.'.join(refused)} {'apply' if both else 'applies'} to classification "
                          f"runs only (clients that never train, classes held out of training); a retrieval run "
                          f"has neither: drop {'them' if both else 'it'}")


def retrieval_round_row(row: dict) -> dict:
    """A round row of the engine as a retrieval run's rounds.csv holds it: the engine's per-round
    test check (``*_acc*``: the share of test images whose best-scoring caption is one of their own,
    ties broken by caption order) is image->text R@1 as a fraction, not a classification accuracy,
    so its columns are named ``*_i2t_r1*``. metrics.json's recalls (every tie convention) are the
    reported numbers; these columns only follow training."""
    return {k.replace("_acc", "_i2t_r1"): v for k, v in row.items()}


def run_retrieval(cfg: RunConfig, folder: RunFolder, *, resume: bool = False, progress: bool = True,
                  on_round: Callable[[int, dict], None] | None = None,
                  started: float | None = None) -> dict:
    """The retrieval pipeline of :func:`fedrs.experiment.run_experiment`: train ``cfg`` into the
    prepared run ``folder`` (params.yaml and env.json written) and return metrics.json's content.

    ``data.dataset`` is the caption set, ``data.num_clients`` the clients, ``data.seed`` the shard
    seed, ``data.scheme`` how the training images are dealt (``iid``: random disjoint shards;
    ``dirichlet``/``pathological``: skewed by the images' scene classes); ``method.validation``
    holds a seeded fraction of the training images out (scored after every round, never trained
    on); ``train``/``eval`` as for every run. The metrics hold the server model's final-round
    R@1/5/10 both ways and mR on the test split under every tie convention (pessimistic
    unsuffixed, ``_optimistic``, ``_argsort``: the papers' order), the clients' personalised mean
    (when some tensors are private), zero-shot (with ``zeroshot_note`` when it is in-domain), the
    label of each set (``test_set``: "RSICD test: the 1,027 of 1,093 images present in the shipped
    AID copy")
    and ``selection``. ``started`` (``time.perf_counter()``) is when the run began.
    """
    started = time.perf_counter() if started is None else started
    check_retrieval_data(cfg.data)
    backbone = create_backbone(cfg.backbone.model, cfg.backbone.pretrained, cfg.backbone.device)
    m: PERSITRConfig = cfg.method
    train_all = RetrievalSet.load(cfg.data.dataset, m.train_split, backbone)
    test = RetrievalSet.load(cfg.data.dataset, m.test_split, backbone)
    train, val = train_all.split_validation(m.validation.fraction, m.validation.seed)
    shards = split_clients(train, cfg.data)
    folder.write_split(split_manifest(cfg, train, test, shards, val), resume)
    setup_s = time.perf_counter() - started
    rows: list[dict] = []

    def after_round(r: int, row: dict) -> None:
        rows.append(retrieval_round_row(row))
        folder.write_csv(ROUNDS, rows)
        if on_round is not None:
            on_round(r, row)

    out = federated_retrieval(backbone, train, test, m, train_cfg=cfg.train, eval_cfg=cfg.eval,
                              shards=shards, checkpoint=folder / CHECKPOINT, resume=resume,
                              progress=progress, val=val, on_round=after_round)
    folder.write_csv(ROUNDS, [retrieval_round_row(r) for r in out.history])
    folder.write_csv(CLIENTS, [{"client": k, "train_images": len(s),
                                "scene_classes": len({train.labels[i] for i in s}) if train.labels else "",
                                **{f"personalised_{a}": b for a, b in (out.personalised[k].as_row().items()
                                                                       if out.personalised else [])}}
                               for k, s in enumerate(out.shards)])
    zeroshot = (tie_row(evaluate_by_ties(RetrievalModel(backbone), test))
                if cfg.eval.zeroshot_reference else {})
    return {
        "name": cfg.name, "method": PERSITR.name, "variant": m.variant, "backbone": backbone.label,
        "dataset": cfg.data.dataset, "split": cfg.data.describe(),
        "partition": cfg.data.to_dict(), "seed": cfg.train.seed, "rounds": cfg.train.rounds,
        "num_clients": cfg.data.num_clients, "test_images": len(test), "test_captions": test.num_captions,
        "test_set": test.describe(), "train_set": train_all.describe(), "train_images": len(train),
        "global": out.global_row(), "personalised": out.personalised_row(),
        "zeroshot": zeroshot, "zeroshot_note": zeroshot_note(backbone, cfg.data.dataset) if zeroshot else "",
        "selection": selection_record(cfg, train_all, val, out.history),
        "loss": {k: getattr(m.loss, k) for k in ("form", "margin", "negatives", "reduction",
                                                   "duplicate_captions")},
        "federate": m.federate,
        "trainable_params": out.trainable_params,
        "upload_values_per_client_round": out.upload_values_per_client_round,
        "private_prefixes": list(m.private),
        "setup_time_s": setup_s, "wall_time_s": time.perf_counter() - started,
        "tie_convention": "pessimistic (unsuffixed keys); _optimistic and _argsort (the papers' order) beside",
        "tie_conventions": list(TIES),
    }


__all__ = ["FederatedRetrievalResult", "ValidatedEngine", "concat_pool", "federated_retrieval",
           "retrieval_round_row", "selection_record", "split_manifest", "check_retrieval_data", "run_retrieval"]
