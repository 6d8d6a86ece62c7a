"""Comparing retrieval methods on one caption set: one row of recalls per method.

Two comparisons, each one function that ``benchmarks/bench_retrieval.py`` (the measured PETL
table) and ``notebooks/04_retrieval.ipynb`` (a live table on a small subset) both call:

* :func:`compare_variants`: every PETL variant of the harness trained centrally (AdamW, its
  default learning rate) and scored on the test split;
* :func:`compare_federated`: a variant (default the MRS-Adapter + HMMC) through the federated
  engine on clients holding disjoint training images, against the same engine with one client
  holding every image (the centralised reference: identical optimiser and budget).

Rows hold ``method``, ``trainable_params``, ``i2t_r1/5/10``, ``t2i_r1/5/10`` and ``mR`` (recalls
in percent, ties counted against the model), ``mR_optimistic`` (the same features, ties in the
model's favour), the training seconds ``train_s`` and the ``backbone`` label;
:func:`comparison_table` shows them with readable column names. Progress goes to this module's
logger.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Sequence

import pandas as pd

from fedrs.data import load_caption_set
from fedrs.data.partition import PartitionConfig
from fedrs.evaluate.retrieval import retrieval_scores
from fedrs.retrieval import (
    PERSITRConfig,
    RetrievalConfig,
    RetrievalModel,
    RetrievalSet,
    build_variant,
    encode_set,
    federated_retrieval,
    train_epochs,
)

logger = logging.getLogger(__name__)

#: the MRS-Adapter's modality-specific up-projections, the parts a client may keep private
PRIVATE_UPS = ("adapter.up.vision", "adapter.up.text")


#: readable names of the row columns, for display
COLUMN_LABELS = {
    "method": "method", "trainable_params": "trainable params",
    "i2t_r1": "image→text R@1", "i2t_r5": "image→text R@5", "i2t_r10": "image→text R@10",
    "t2i_r1": "text→image R@1", "t2i_r5": "text→image R@5", "t2i_r10": "text→image R@10",
    "mR": "mR", "mR_optimistic": "mR (optimistic ties)", "train_steps": "train steps", "train_s": "train s",
    "upload_values_per_client_round": "uploaded values per client and round",
}


def comparison_table(rows: Sequence[dict]) -> pd.DataFrame:
    """Comparison rows as a table for display: indexed by method, readable column names
    (:data:`COLUMN_LABELS`), numbers rounded to 2 decimals; the backbone column is left out
    (a heading names it)."""
    table = pd.DataFrame(list(rows)).drop(columns="backbone", errors="ignore").rename(columns=COLUMN_LABELS)
    return table.set_index("method").round(2)


def spread_items(dataset: str, split: str, limit: int = 0) -> list:
    """The captioned images of a caption-set split (``a+b`` joins splits), every k-th one so that
    ``limit`` images still cover every scene class (``CaptionedImage`` items, paths and labels
    kept for display); ``limit`` 0: every image."""
    items = [it for part in split.split("+") for it in load_caption_set(dataset, split=part).with_images().items]
    step = max(1, len(items) // limit) if limit else 1
    return items[::step][:limit or None]


def _recalls(row: dict) -> str:
    i2t = "/".join(f"{row[f'i2t_r{k}']:.2f}" for k in (1, 5, 10))
    t2i = "/".join(f"{row[f't2i_r{k}']:.2f}" for k in (1, 5, 10))
    return f"I2T R@1/5/10 {i2t} | T2I {t2i} | mR {row['mR']:.2f} (optimistic ties: mR {row['mR_optimistic']:.2f})"


def score_row(model: RetrievalModel, test: RetrievalSet) -> dict[str, float]:
    """Recalls and mR with pessimistic ties, plus ``mR_optimistic`` (the same features)."""
    img, txt = encode_set(model, test)
    scores = retrieval_scores(img, txt, test.caption_image)
    optimistic = retrieval_scores(img, txt, test.caption_image, ties="optimistic").mr
    return {**scores.as_row(), "mR_optimistic": optimistic}


def compare_variants(backbone, train: RetrievalSet, test: RetrievalSet, cfg: RetrievalConfig,
                     variants: Sequence[str], *, max_steps: int | None = None,
                     keep: Sequence[str] = ()) -> tuple[list[dict], dict[str, RetrievalModel]]:
    """Train each PETL variant on ``train`` and score it on ``test``.

    ``cfg`` gives the adapter/prompt/loss sizes and the ``train`` section (epochs, batch size,
    weight decay, seed; the learning rate is each variant's default unless ``cfg.train.lr``);
    ``max_steps`` caps the optimiser steps per variant (smoke runs). Returns one row per variant
    (with ``train_steps``) and the trained models of the variants named in ``keep`` (the others are
    dropped as soon as they are scored: a fully fine-tuned model is as large as the backbone).
    """
    rows, kept = [], {}
    t = cfg.train
    for variant in variants:
        model, loss = build_variant(backbone, cfg, variant)
        start = time.perf_counter()
        lr = dataclasses.replace(cfg, variant=variant).lr
        stats = train_epochs(model, loss, train, epochs=t.epochs, batch_size=t.batch_size, lr=lr,
                             weight_decay=t.weight_decay, seed=t.seed, max_steps=max_steps)
        seconds = time.perf_counter() - start
        row = {"method": variant, "trainable_params": model.trainable_parameters(), **score_row(model, test),
               "train_steps": stats["steps"], "train_s": seconds, "backbone": backbone.label}
        logger.info("%-18s %11s params  %s  (%.0f s, %d steps, final loss %.3f)", variant,
                    f"{row['trainable_params']:,d}", _recalls(row), seconds, stats["steps"], stats["loss"])
        rows.append(row)
        if variant in keep:
            kept[variant] = model
        del model
    return rows, kept


def compare_federated(backbone, train: RetrievalSet, test: RetrievalSet, cfg: RetrievalConfig, *,
                      clients: int, rounds: int, local_epochs: int = 1, lr: float = 0.1,
                      scheme: str = "iid", alpha: float = 0.5, private_ups: bool = False,
                      variant: str = "mrs-adapter-hmmc") -> list[dict]:
    """``variant`` through the federated engine: one client holding every training image
    (centralised), ``clients`` clients sharing every tensor, and with ``private_ups`` the same
    clients keeping the adapter's up-projections private (:data:`PRIVATE_UPS`; its server model is
    scored with those at their zero init, plus a row with the clients' mean personalised scores).

    Clients hold disjoint image shards: random (``scheme="iid"``) or skewed by scene class
    (``dirichlet`` with ``alpha``, ``pathological``). Client SGD with learning rate ``lr``, momentum
    0.9, cosine over ``rounds``; each row adds ``upload_values_per_client_round``.
    """
    runs = [("centralised (engine, 1 client)", 1, [])]
    if clients > 1:
        split = "" if scheme == "iid" else PartitionConfig(dataset=cfg.dataset, num_clients=clients, scheme=scheme,
                                                           alpha=alpha).describe().split(",")[0] + ", "
        runs.append((f"federated ({clients} clients, {split}all shared)", clients, []))
        if private_ups:
            runs.append((f"federated ({clients} clients, {split}private ups)", clients, list(PRIVATE_UPS)))
    rows = []
    for label, n, private in runs:
        method_cfg = PERSITRConfig(variant=variant, adapter=cfg.adapter, prompts=cfg.prompts, loss=cfg.loss,
                                   private=private)
        split_cfg = PartitionConfig(dataset=cfg.dataset, num_clients=n, scheme=scheme if n > 1 else "iid",
                                    alpha=alpha)
        start = time.perf_counter()
        out = federated_retrieval(backbone, train, test, method_cfg, rounds=rounds, local_epochs=local_epochs,
                                  lr=lr, split=split_cfg)
        seconds = time.perf_counter() - start
        name = f"{variant} {label}"
        sizes = {"trainable_params": out.trainable_params,
                 "upload_values_per_client_round": out.upload_values_per_client_round}
        timing = {"train_s": seconds, "backbone": backbone.label}
        row = {"method": name, **sizes, **score_row(out.model, test), **timing}
        logger.info("%-58s %s  (%.0f s)", name, _recalls(row), seconds)
        rows.append(row)
        if out.personalised:
            rows.append({"method": f"{name}, personalised (client mean)", **sizes, **out.personalised_row(),
                         "mR_optimistic": float("nan"), **timing})
    return rows


__all__ = ["COLUMN_LABELS", "PRIVATE_UPS", "compare_federated", "compare_variants", "comparison_table", "score_row",
           "spread_items"]
