"""Comparing retrieval methods on one caption set: one row of recalls per method.

The rows of the PETL table (:data:`PETL_ROWS`) are trained and scored by one function,
:func:`train_row`, which every face calls: :func:`compare_variants` (the rows of one seed, for
``benchmarks/bench_retrieval.py`` and ``notebooks/04_retrieval.ipynb``) and
:func:`fedrs.retrieval.petl.run_petl` (the table over seeds, ``fedrs retrieval petl``).
:func:`compare_federated` puts MRS-Adapter + HMMC through the federated engine beside the same
engine with one client (the centralised reference: identical optimiser and budget).

Protocol (issue 14), the same in every function here:

* **selection on validation only**: the training images are split into a seeded validation
  part (``cfg.validation``: 20%, :meth:`RetrievalSet.split_validation`) and the rest, which trains;
  the validation mR is recorded after every epoch/round (``final_val_mR``, ``best_val_epoch``,
  ``val_mR_curve``) and the *final* epoch/round is scored on test, never the best one;
* **learning rates** are the library's validated constants where one exists
  (:data:`~fedrs.retrieval.config.DEFAULT_LR` ``["mrs-adapter-hmmc"]`` for centralised AdamW,
  :data:`~fedrs.retrieval.config.FEDERATED_SGD_LR` for client SGD), each row saying where its
  rate came from (``lr_source``);
* **ties**: every row holds the recalls under all three conventions of
  :func:`fedrs.evaluate.retrieval.tie_row`: :data:`PRIMARY_TIES` (pessimistic: a tied non-relevant
  item counts against the model, a lower bound) under the plain names ``i2t_r1`` .. ``mR``, and
  ``*_optimistic`` (upper bound) and ``*_argsort`` (the papers' evaluation order: the column to
  set beside published numbers) beside them;
* **labels**: every row names its ``backbone``, ``dataset``, ``test_set`` (e.g. "RSICD test: the
  1,027 of 1,093 images present in the shipped AID copy"), ``validation`` and ``seed``; a zero-shot
  row on the offline backbone's own pretraining captions carries ``note`` (in-domain).

MRS-Adapter + HMMC in the published hinge form is the headline row (:data:`HEADLINE`); the
InfoNCE form of the same loss, the MRS-Adapter without HMMC, a plain adapter, prompts and
zero-shot stand beside it. Progress goes to this module's logger.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from fedrs.data import load_caption_set
from fedrs.data.partition import PartitionConfig
from fedrs.evaluate.retrieval import tie_row
from fedrs.retrieval.config import (
    CENTRALISED_SGD_LR,
    CENTRALISED_SGD_LR_SOURCE,
    DEFAULT_LR,
    FEDERATED_SGD_LR,
    FEDERATED_SGD_LR_SOURCE,
    INFONCE_HMMC_LR,
    INFONCE_HMMC_LR_SOURCE,
    LR_SOURCE,
    UNVALIDATED_LR_SOURCE,
    RetrievalConfig,
)
from fedrs.retrieval.data import RetrievalSet, zeroshot_note
from fedrs.retrieval.method import PERSITRConfig
from fedrs.retrieval.model import RetrievalModel
from fedrs.retrieval.pipeline import federated_retrieval
from fedrs.retrieval.train import evaluate, evaluate_by_ties, train_epochs, validation_summary
from fedrs.retrieval.variants import build_variant
from fedrs.runs import TrainConfig

logger = logging.getLogger(__name__)

#: the tie convention of the unsuffixed recall columns (the library's default: a lower bound)
PRIMARY_TIES = "pessimistic"

#: the MRS-Adapter's modality-specific up-projections, the parts a client may keep private
PRIVATE_UPS = ("adapter.up.vision", "adapter.up.text")


@dataclass(frozen=True)
class PETLRow:
    """One row of the PETL table: a variant of the harness (:data:`fedrs.retrieval.config.VARIANTS`)
    trained with one HMMC form (``None``: the configuration's ``loss.form``)."""

    name: str
    variant: str
    loss_form: str | None
    label: str


#: the PETL table's rows in table order (issue 14: zero-shot, linear probe, CoOp, VPT, adapter,
#: MRS-Adapter, MRS-Adapter + HMMC in both forms, full fine-tuning)
PETL_ROWS: dict[str, PETLRow] = {r.name: r for r in (
    PETLRow("zero-shot", "zero-shot", None, "zero-shot (frozen backbone)"),
    PETLRow("linear-probe", "linear-probe", None, "linear probe"),
    PETLRow("coop", "coop", None, "CoOp (text prompts)"),
    PETLRow("vpt", "vpt", None, "VPT-deep (visual prompts)"),
    PETLRow("adapter", "adapter", None, "plain bottleneck adapter"),
    PETLRow("mrs-adapter", "mrs-adapter", None, "MRS-Adapter without HMMC (cross-modal term only)"),
    PETLRow("mrs-adapter-hmmc", "mrs-adapter-hmmc", "hinge", "MRS-Adapter + HMMC, hinge (PE-RSITR, published)"),
    PETLRow("mrs-adapter-hmmc-infonce", "mrs-adapter-hmmc", "infonce", "MRS-Adapter + HMMC, InfoNCE form"),
    PETLRow("full-finetune", "full-finetune", None, "full fine-tuning"),
)}
#: the headline row: PE-RSITR as published; paired differences are taken to it
HEADLINE = "mrs-adapter-hmmc"


class CompareError(ValueError):
    """An unknown row name (a ValueError, as an unknown variant is)."""


def petl_row(name: str) -> PETLRow:
    """The :data:`PETL_ROWS` entry called ``name``."""
    try:
        return PETL_ROWS[name]
    except KeyError:
        raise CompareError(f"unknown PETL row {name!r}; choose from {list(PETL_ROWS)}") from None


def row_config(cfg: RetrievalConfig, row: PETLRow) -> RetrievalConfig:
    """``cfg`` with the row's variant and HMMC form."""
    loss = cfg.loss if row.loss_form is None else dataclasses.replace(cfg.loss, form=row.loss_form)
    return dataclasses.replace(cfg, variant=row.variant, loss=loss)


def row_lr(cfg: RetrievalConfig, row: PETLRow) -> tuple[float, str]:
    """``(AdamW learning rate, where it came from)`` of ``row`` under ``cfg``: ``cfg.train.lr`` when
    set, else the library's constant for the row (:data:`~fedrs.retrieval.config.DEFAULT_LR`,
    :data:`~fedrs.retrieval.config.INFONCE_HMMC_LR` for the InfoNCE form of HMMC)."""
    if row.variant == "zero-shot":
        return 0.0, "no training"
    if cfg.train.lr is not None:
        return cfg.train.lr, "the configuration's train.lr"
    if row.variant == "mrs-adapter-hmmc" and row_config(cfg, row).loss.form == "infonce":
        return INFONCE_HMMC_LR, INFONCE_HMMC_LR_SOURCE
    return DEFAULT_LR[row.variant], LR_SOURCE.get(row.variant, UNVALIDATED_LR_SOURCE)


def protocol(backbone, cfg: RetrievalConfig, train: RetrievalSet, val: RetrievalSet | None,
             test: RetrievalSet) -> dict[str, str]:
    """The labels every row carries: ``backbone``, ``dataset``, ``test_set``, ``train_set`` (all
    training images) and ``validation`` (the held-out part of them, or none)."""
    v = cfg.validation
    return {"backbone": backbone.label, "dataset": cfg.dataset, "test_set": test.describe(),
            "train_set": train.describe(),
            "validation": (v.describe(cfg.train_split, len(val), len(train)) if val is not None
                           else "none (every training image trains; nothing selected)")}


def score_row(model: RetrievalModel, test: RetrievalSet) -> dict[str, float]:
    """Recalls and mR on ``test`` under every tie convention, encoding once: :data:`PRIMARY_TIES`
    unsuffixed, ``_optimistic`` and ``_argsort`` beside (:func:`fedrs.evaluate.retrieval.tie_row`)."""
    return tie_row(evaluate_by_ties(model, test), primary=PRIMARY_TIES)


def _validation_columns(history: list[dict], unit: str, key: str = "val_mR") -> dict:
    summary = validation_summary(history, key, unit)
    return {"final_val_mR": math.nan if summary["final_val_mR"] is None else summary["final_val_mR"],
            f"best_val_{unit}": summary[f"best_{unit}"],
            "val_mR_curve": " ".join(f"{v:.2f}" for v in summary["val_mR"])}


def train_row(backbone, row: PETLRow | str, cfg: RetrievalConfig, fit: RetrievalSet, val: RetrievalSet | None,
              test: RetrievalSet, labels: dict[str, str], *, max_steps: int | None = None,
              progress: bool = False) -> tuple[dict, RetrievalModel]:
    """Train one PETL row on ``fit`` (the training images minus ``val``) and score it on ``test``.

    ``cfg`` gives the sizes, the loss, the budget (``train``: epochs, batch, weight decay, schedule)
    and the seed (``train.seed``: initialisation, batch order and dropout); the learning rate is
    :func:`row_lr`'s. ``val`` is scored after every ``cfg.validation.every``-th epoch and the last;
    the final epoch is what ``test`` scores. ``labels``: :func:`protocol`'s. ``max_steps`` caps the
    optimiser steps (smoke runs). Returns ``(row, trained model)``.
    """
    row = petl_row(row) if isinstance(row, str) else row
    rcfg, t = row_config(cfg, row), cfg.train
    lr, lr_source = row_lr(cfg, row)
    model, loss = build_variant(backbone, rcfg)  # seeded by train.seed
    start = time.perf_counter()
    stats = train_epochs(model, loss, fit, epochs=t.epochs, batch_size=t.batch_size, lr=lr,
                         weight_decay=t.weight_decay, seed=t.seed, max_steps=max_steps, val=val,
                         val_every=cfg.validation.every, lr_decay_every=t.lr_decay_every, lr_decay=t.lr_decay,
                         progress=row.name if progress else False)
    seconds = time.perf_counter() - start
    history = stats["history"]
    if not history and val is not None:  # nothing trained (zero-shot): its validation score still says where it starts
        history = [{"epoch": 0, "val_mR": evaluate(model, val).mr}]
    out = {"method": row.name, "label": row.label, "variant": row.variant, "loss_form": rcfg.loss.form,
           "trainable_params": model.trainable_parameters(), **score_row(model, test),
           **_validation_columns(history, "epoch"),
           "lr": lr, "lr_source": lr_source, "epochs": t.epochs, "train_steps": stats["steps"],
           "train_s": seconds, "seed": t.seed, **labels,
           "note": zeroshot_note(backbone, cfg.dataset) if row.variant == "zero-shot" else ""}
    logger.info("%-26s %11s params  %s  (val mR %.2f; %.0f s, %d steps)", row.name,
                f"{out['trainable_params']:,d}", _recalls(out), out["final_val_mR"], seconds, stats["steps"])
    return out, model


def compare_variants(backbone, train: RetrievalSet, test: RetrievalSet, cfg: RetrievalConfig,
                     methods: Sequence[str] = tuple(PETL_ROWS), *, max_steps: int | None = None,
                     keep: Sequence[str] = (), progress: bool = False) -> tuple[list[dict], dict[str, RetrievalModel]]:
    """Every row of ``methods`` (names of :data:`PETL_ROWS`) trained by :func:`train_row` for one seed.

    ``train``: *every* training image; the validation part (``cfg.validation``: fraction and seed)
    is held out here and never trains. Seed: ``cfg.train.seed``. Returns one row per method and
    the trained models of the methods named in ``keep`` (the others are dropped once scored: a
    fully fine-tuned model is as large as the backbone).
    """
    rows_to_run = [petl_row(m) for m in methods]
    fit, val = train.split_validation(cfg.validation.fraction, cfg.validation.seed)
    labels = protocol(backbone, cfg, train, val, test)
    rows, kept = [], {}
    for row in rows_to_run:
        out, model = train_row(backbone, row, cfg, fit, val, test, labels, max_steps=max_steps, progress=progress)
        rows.append(out)
        if row.name in keep:
            kept[row.name] = model
        del model
    return rows, kept


def compare_federated(backbone, train: RetrievalSet, test: RetrievalSet, cfg: RetrievalConfig, *,
                      clients: int, rounds: int, local_epochs: int = 1, lr: float = FEDERATED_SGD_LR,
                      scheme: str = "iid", alpha: float = 0.5, cross_modal: bool = True,
                      private_ups: bool = False, variant: str = "mrs-adapter-hmmc",
                      centralised_lr: float = CENTRALISED_SGD_LR, progress: bool = False) -> list[dict]:
    """``variant`` through the federated engine, beside the same engine with one client.

    ``train``: every training image; the validation part (``cfg.validation``) is held out here and
    scored after every round. Clients hold disjoint shards of the rest: random (``scheme="iid"``)
    or skewed by scene class (``dirichlet`` with ``alpha``, ``pathological``); the shard seed and the
    training seed are ``cfg.train.seed``. Client SGD with learning rate ``lr`` (default the
    validated :data:`~fedrs.retrieval.config.FEDERATED_SGD_LR`), momentum 0.9, cosine over
    ``rounds``, batch ``cfg.train.batch_size``; ``cfg.loss`` is the loss (hinge by default). The
    one-client reference trains at ``centralised_lr`` (default the validated
    :data:`~fedrs.retrieval.config.CENTRALISED_SGD_LR`: one client takes all the sequential steps).

    Rows, in order: the centralised reference (1 client), the whole adapter averaged, with
    ``private_ups`` the modality-specific up-projections kept private (:data:`PRIVATE_UPS`), and with
    ``cross_modal`` only the cross-modal shared part averaged (``federate: cross-modal``). Where some
    tensors stay on the clients, the server model is scored with them at their initial values
    and a second row holds the clients' mean personalised recalls (the ones to read). Every row
    adds ``upload_values_per_client_round``, ``federate`` and the :func:`protocol` labels.
    """
    seed = cfg.train.seed
    fit, val = train.split_validation(cfg.validation.fraction, cfg.validation.seed)
    labels = protocol(backbone, cfg, train, val, test)
    runs = [("centralised (engine, 1 client)", 1, "all", [])]
    if clients > 1:
        split = "iid" if scheme == "iid" else PartitionConfig(dataset=cfg.dataset, num_clients=clients, scheme=scheme,
                                                              alpha=alpha).describe().split(",")[0]
        runs.append((f"federated ({clients} clients, {split}, whole adapter averaged)", clients, "all", []))
        if private_ups:
            runs.append((f"federated ({clients} clients, {split}, private ups)", clients, "all", list(PRIVATE_UPS)))
        if cross_modal and variant.startswith("mrs-adapter") and cfg.adapter.shared_dim > 0:
            runs.append((f"federated ({clients} clients, {split}, cross-modal part averaged)", clients,
                         "cross-modal", []))
    def rate(n: int) -> tuple[float, str]:
        given = "given by the caller, not chosen on validation"
        if n == 1:
            return centralised_lr, CENTRALISED_SGD_LR_SOURCE if centralised_lr == CENTRALISED_SGD_LR else given
        return lr, FEDERATED_SGD_LR_SOURCE if lr == FEDERATED_SGD_LR else given

    rows = []
    for label, n, federate, private in runs:
        run_lr, lr_source = rate(n)
        method_cfg = PERSITRConfig(variant=variant, adapter=cfg.adapter, prompts=cfg.prompts, loss=cfg.loss,
                                   private=private, federate=federate, train_split=cfg.train_split,
                                   test_split=cfg.eval_split, validation=cfg.validation)
        split_cfg = PartitionConfig(dataset=cfg.dataset, num_clients=n, scheme=scheme if n > 1 else "iid",
                                    alpha=alpha, seed=seed)
        train_cfg = TrainConfig(rounds=rounds, local_epochs=local_epochs, lr=run_lr,
                                batch_size=cfg.train.batch_size, seed=seed)
        start = time.perf_counter()
        out = federated_retrieval(backbone, fit, test, method_cfg, train_cfg=train_cfg, split=split_cfg, val=val,
                                  progress=progress)
        seconds = time.perf_counter() - start
        name = f"{variant} {label}"
        history = [r for r in out.history if r.get("round", 0) > 0]
        common = {"trainable_params": out.trainable_params,
                  "upload_values_per_client_round": out.upload_values_per_client_round, "federate": federate,
                  "lr": run_lr, "lr_source": lr_source, "rounds": rounds, "local_epochs": local_epochs,
                  "train_s": seconds, "seed": seed, **labels}
        server = "" if not out.personalised else ", server model (private parts at their initial values)"
        row = {"method": name + server, "loss_form": cfg.loss.form, **out.global_row(),
               **_validation_columns(history, "round"), **common}
        logger.info("%-72s %s  (%.0f s)", row["method"], _recalls(row), seconds)
        rows.append(row)
        if out.personalised:
            rows.append({"method": f"{name}, personalised (client mean)", "loss_form": cfg.loss.form,
                         **out.personalised_row(), **_validation_columns(history, "round", "val_mR_personalised"),
                         **common})
            logger.info("%-72s %s", rows[-1]["method"], _recalls(rows[-1]))
    return rows


# -- display ----------------------------------------------------------------------------------------

#: readable names of the row columns, for display
COLUMN_LABELS = {
    "method": "method", "trainable_params": "trainable params",
    "i2t_r1": "image→text R@1", "i2t_r5": "image→text R@5", "i2t_r10": "image→text R@10",
    "t2i_r1": "text→image R@1", "t2i_r5": "text→image R@5", "t2i_r10": "text→image R@10",
    "mR": "mR", "mR_argsort": "mR (papers' tie order)", "mR_optimistic": "mR (optimistic ties)",
    "final_val_mR": "val mR (final)", "lr": "lr", "train_steps": "train steps", "train_s": "train s",
    "upload_values_per_client_round": "uploaded values per client and round",
    "backbone": "backbone", "test_set": "test set", "seed": "seed",
}
#: the columns :func:`comparison_table` shows, in order (those a row has)
TABLE_COLUMNS = ("method", "trainable_params", "i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10",
                 "mR", "mR_argsort", "mR_optimistic", "final_val_mR", "lr", "upload_values_per_client_round",
                 "train_s", "seed", "backbone", "test_set")


def comparison_table(rows: Sequence[dict]) -> pd.DataFrame:
    """Comparison rows as a table for display: indexed by method, the :data:`TABLE_COLUMNS` the rows
    have under readable names (:data:`COLUMN_LABELS`), numbers but the learning rate rounded to 2 decimals; every row
    keeps its backbone, test set and seed."""
    frame = pd.DataFrame(list(rows))
    frame = frame[[c for c in TABLE_COLUMNS if c in frame]]
    frame = frame.round({c: 2 for c in frame.columns if c != "lr"})  # a learning rate keeps its digits
    return frame.rename(columns=COLUMN_LABELS).set_index("method")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table (cells as given, ``|`` escaped)."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), "|" + "---|" * len(header), *(line(r) for r in rows)])


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
    return (f"I2T R@1/5/10 {i2t} | T2I {t2i} | mR {row['mR']:.2f} (papers' tie order {row['mR_argsort']:.2f}, "
            f"optimistic {row['mR_optimistic']:.2f})")


__all__ = ["COLUMN_LABELS", "HEADLINE", "PETL_ROWS", "PRIMARY_TIES", "PRIVATE_UPS", "TABLE_COLUMNS", "CompareError",
           "PETLRow", "compare_federated", "compare_variants", "comparison_table", "markdown_table", "petl_row",
           "protocol", "row_config", "row_lr", "score_row", "spread_items", "train_row"]
