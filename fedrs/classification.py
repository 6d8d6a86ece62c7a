"""The classification pipeline of :func:`fedrs.experiment.run_experiment` (every method but ``pe-rsitr``).

Scene datasets -> Fed-RSIC partition -> the method over a frozen backbone -> client views of one
shared pool (labels, frozen features, decoded images when visual prompts train) -> the
:class:`~fedrs.federated.engine.FederatedEngine` rounds -> split.json, rounds.csv, clients.csv
and the content of metrics.json. :func:`prepare_run` is everything before the rounds; a Flower
SuperNode builds its client with it too, so both engines see the same data.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fedrs.backbone.templates import template_text_features
from fedrs.evaluate.classification import (
    accuracy_counts,
    balanced_accuracy,
    balanced_summary,
    class_counts,
    harmonic_mean,
    personalised_summary,
)
from fedrs.federated.dp import privacy_summary
from fedrs.federated.engine import FederatedEngine, NovelClasses
from fedrs.methods import create_method
from fedrs.methods.base import ClientData, Method
from fedrs.prompts import set_tower_precision
from fedrs.runs import CHECKPOINT, CLIENTS, ROUNDS, RunConfig, RunFolder, TrainConfig

#: leading columns of rounds.csv / clients.csv (the rest follow in first-seen order)
ROUND_COLUMNS = ("round", "client", "lr", "clients_sampled", "personalised_acc_weighted",
                 "personalised_acc_unweighted", "personalised_acc_balanced", "global_acc",
                 "unseen_client_global_acc", "novel_personalised_acc", "novel_global_acc", "hm_personalised",
                 "hm_global", "personalised_acc",
                 "balanced_acc", "test_examples", "num_examples", "train_loss", "train_ce", "train_dpa", "train_cma")


def load_datasets(data_cfg) -> list:
    """The scene datasets a partition config names (one, or one per cross-domain group)."""
    from fedrs.data import load_scene_dataset

    return [load_scene_dataset(n) for n in (data_cfg.cross_domain or [data_cfg.dataset])]


def _partition(datasets: list, data_cfg):
    from fedrs.data.partition import partition_cross_domain, partition_dataset

    if data_cfg.cross_domain:
        return partition_cross_domain(datasets, data_cfg)
    return partition_dataset(datasets[0], data_cfg)


def _decoded_images(backbone, datasets: list, dtype: torch.dtype, progress: bool) -> torch.Tensor:
    """All images of the datasets, preprocessed once: ``[N, 3, H, W]`` in ``dtype``."""
    from fedrs.backbone.features import load_images

    out = []
    for ds in datasets:
        batch = load_images(list(ds.paths), backbone.preprocess)
        for start in tqdm(range(0, len(ds.paths), 256), desc=f"decode {ds.name}", disable=not progress):
            out.append(batch(start, min(start + 256, len(ds.paths))).to(dtype))
    return torch.cat(out)


def build_clients(method: Method, backbone, datasets: list, partition, train: TrainConfig,
                  progress: bool = True) -> tuple[list[ClientData], torch.Tensor]:
    """Client views over one shared pool of labels, frozen features and (if needed) decoded images.

    The frozen features are the representation the method trains on (:func:`image_representation`:
    pooled ``[N, D]``, or FedOTP's patch tokens ``[N, L, D]``), from the disk cache. The pool lives
    on the backbone's device (batches are cut from it there, no host copy per step); the clients'
    index tensors stay on the CPU.
    """
    from fedrs.backbone.features import frozen_image_representation

    device = backbone.device
    labels = torch.as_tensor(np.asarray(partition.labels), dtype=torch.long).to(device)
    representation = image_representation(method)
    features = torch.cat([frozen_image_representation(backbone, ds, representation, progress=progress)
                          for ds in datasets]).to(device)
    images = None
    if method.needs_images(train=True) or method.needs_images(train=False):
        images = _decoded_images(backbone, datasets, getattr(torch, train.image_dtype), progress).to(device)
    clients = [ClientData(c.client_id, labels, torch.as_tensor(c.train_indices, dtype=torch.long),
                          torch.as_tensor(c.test_indices, dtype=torch.long), features, images)
               for c in partition.clients]
    return clients, torch.as_tensor(partition.test_indices, dtype=torch.long)


def image_representation(method: Method) -> str:
    """The frozen image representation a method's batches carry as ``features``: what its
    ``image_representation()`` names (FedOTP's transport: ``"patch_tokens"``), else ``"pooled"``."""
    named = getattr(method, "image_representation", None)
    return named() if callable(named) else "pooled"


def prompt_names_of(datasets: list, partition) -> list[str]:
    """Readable class names for prompts: the dataset's own, or the harmonised cross-domain names."""
    return list(datasets[0].prompt_names) if len(datasets) == 1 else list(partition.classnames)


@dataclass
class RunSetup:
    """What a run builds before its rounds: the same on every engine and every Flower process."""

    backbone: object
    datasets: list
    partition: object
    classnames: list[str]
    method: Method
    clients: list[ClientData]
    pooled_test: torch.Tensor
    #: pool indices of the unseen clients' test splits, concatenated in client order (``None``
    #: without unseen clients): what ``unseen_client_global_acc`` scores
    unseen_test: torch.Tensor | None = None
    #: base-to-novel runs: the novel classes (``classnames`` and ``method`` are the base ones)
    novel: NovelClasses | None = None
    novel_classnames: list[str] = dataclasses.field(default_factory=list)


def unseen_test_indices(partition) -> torch.Tensor | None:
    """The unseen clients' test indices, concatenated in client order (an image two of them hold
    under ``test_scheme: shared_pool`` counts twice, as in the weighted personalised accuracy);
    ``None`` for a partition without unseen clients.

    Only their test splits are scored, not their unused training images: the test split is the
    stratified, duplicate-aware one (an exact copy of an image lies wholly in the pooled train or
    test set), so no unseen test image is a copy of an image some training client learned from,
    whereas the training pool may put two copies on a training and an unseen client."""
    unseen = getattr(partition, "unseen", None) or []
    if not unseen:
        return None
    return torch.as_tensor([i for c in unseen for i in c.test_indices], dtype=torch.long)


def prepare_run(cfg: RunConfig, datasets: list | None = None, progress: bool = True) -> RunSetup:
    """Backbone, data, partition, method and client views of a configuration (``datasets``
    replaces loading from the data root)."""
    from fedrs.backbone.factory import create_backbone

    backbone = create_backbone(cfg.backbone.model, cfg.backbone.pretrained, cfg.backbone.device,
                               strict=cfg.backbone.strict)
    datasets = list(datasets) if datasets is not None else load_datasets(cfg.data)
    partition = _partition(datasets, cfg.data)
    names = prompt_names_of(datasets, partition)
    base = partition.num_base_classes  # all classes unless base-to-novel: the method knows the base names only
    method = create_method(cfg.method, backbone, names[:base], seed=cfg.train.seed)
    set_tower_precision(method.module, cfg.train.precision)
    clients, pooled_test = build_clients(method, backbone, datasets, partition, cfg.train, progress)
    setup = RunSetup(backbone, datasets, partition, names[:base], method, clients, pooled_test,
                     unseen_test_indices(partition))
    if partition.base_to_novel:
        setup.pooled_test = torch.as_tensor(partition.base_test_indices, dtype=torch.long)
        setup.novel_classnames = names[base:]
        setup.novel = novel_classes(cfg, backbone, partition, clients[0], names[base:])
    return setup


def novel_classes(cfg: RunConfig, backbone, partition, pool: ClientData, novel_names: list[str]) -> NovelClasses:
    """The novel side of a base-to-novel run: the method again over ``novel_names`` (same
    configuration and seed), the pool with labels moved into the novel space, and the novel test
    splits of the partition's clients."""
    method = create_method(cfg.method, backbone, novel_names, seed=cfg.train.seed)
    set_tower_precision(method.module, cfg.train.precision)
    pooled_test = torch.as_tensor(partition.novel_test_indices, dtype=torch.long)
    data = dataclasses.replace(pool, client_id=-1, labels=pool.labels - partition.num_base_classes,
                               train_indices=pool.train_indices[:0], test_indices=pooled_test)
    return NovelClasses(method, data, [torch.as_tensor(c.novel_test_indices, dtype=torch.long)
                                       for c in partition.clients], pooled_test)


@torch.no_grad()
def zero_shot_reference(server_data: ClientData, clients: Sequence[ClientData],
                        text_features: torch.Tensor, unseen_test: torch.Tensor | None = None,
                        novel: tuple[torch.Tensor, NovelClasses] | None = None) -> dict:
    """Accuracy of the frozen image features against fixed class features ``[C, D]`` (the
    zero-shot reference): weighted/unweighted/balanced over the clients' test splits, on the
    pooled test split (``server_data.test_indices``), given ``unseen_test`` on the unseen
    clients' test splits and, given ``novel`` (the novel class features ``[C_novel, D]`` and the
    run's :class:`NovelClasses`), on the novel classes with novel names only (``novel_global_acc``:
    one classifier, so the clients' novel splits together score the same) and ``hm_global``.
    Empty when the pool holds no features."""
    features = server_data.features
    if features is None:
        return {}
    feats = F.normalize(features.float(), dim=-1)
    labels = server_data.labels

    def logits(idx: torch.Tensor) -> torch.Tensor:
        return feats[idx] @ text_features.t().to(feats.device)

    def counts(idx: torch.Tensor) -> tuple[int, int]:
        return accuracy_counts(logits(idx), labels[idx])

    per_client = personalised_summary([counts(c.test_indices) for c in clients])
    balanced = balanced_summary([balanced_accuracy(*class_counts(logits(c.test_indices), labels[c.test_indices]))
                                 for c in clients])
    correct, total = counts(server_data.test_indices)
    out = {"personalised_acc_weighted": per_client["weighted"],
           "personalised_acc_unweighted": per_client["unweighted"],
           "personalised_acc_balanced": balanced,
           "global_acc": correct / max(total, 1)}
    if unseen_test is not None:
        correct, total = counts(unseen_test)
        out["unseen_client_global_acc"] = correct / max(total, 1)
    if novel is not None:
        novel_features, classes = novel
        idx = classes.pooled_test
        correct, total = accuracy_counts(feats[idx] @ novel_features.t().to(feats.device), classes.data.labels[idx])
        if total:  # (JSON holds no NaN)
            out["novel_global_acc"] = correct / total
            out["hm_global"] = harmonic_mean(out["global_acc"], out["novel_global_acc"])
    return out


def _finite_or_none(value) -> float | None:
    """``value`` as a float, or ``None`` (JSON null) when it is missing or not finite."""
    return float(value) if value is not None and np.isfinite(value) else None


def summarise(cfg: RunConfig, method: Method, backbone, partition, history: list[dict],
              zeroshot: dict, elapsed: float) -> dict:
    """metrics.json: the final accuracies, communication per client and round, sizes and times."""
    final = next(r for r in reversed(history) if "global_acc" in r)
    trained = [r for r in history if r["round"] > 0]
    desc = method.describe()
    d = cfg.data
    split = d.describe(partition.num_clients)
    return {
        "name": cfg.name,
        "method": method.name,
        "backbone": backbone.label,
        "dataset": partition.dataset,
        "split": split,
        "partition": cfg.data.to_dict(),  # without later fields at their defaults
        "seed": cfg.train.seed,
        "rounds": cfg.train.rounds,
        "num_clients": partition.num_clients,
        "final_round": final["round"],
        "personalised_accuracy": final["personalised_acc_weighted"],
        "personalised_accuracy_unweighted": final["personalised_acc_unweighted"],
        # mean over clients of each client's mean per-class recall on its own test split
        # (null where not measured: a round evaluated before the metric existed, resumed)
        "personalised_accuracy_balanced": _finite_or_none(final.get("personalised_acc_balanced")),
        "global_accuracy": final["global_acc"],
        # the global model on the test splits of clients that never trained (data.unseen_clients)
        **({"unseen_client_global_accuracy": final["unseen_client_global_acc"]}
           if "unseen_client_global_acc" in final else {}),
        # base-to-novel (data.class_split): personalised/global accuracy above are on the base classes
        **({"novel_personalised_accuracy": _finite_or_none(final["novel_personalised_acc"]),
            "novel_global_accuracy": _finite_or_none(final["novel_global_acc"]),
            "harmonic_mean_personalised": _finite_or_none(final["hm_personalised"]),
            "harmonic_mean_global": _finite_or_none(final["hm_global"]),
            "base_classes": list(partition.classnames[:partition.num_base_classes]),
            "novel_classes": list(partition.classnames[partition.num_base_classes:])}
           if "novel_global_acc" in final else {}),
        "zeroshot": zeroshot,
        "upload_values_per_client_round": desc["upload_values_per_client_round"],
        "upload_bytes_per_client_round": desc["upload_bytes_per_client_round"],
        "download_values_per_client_round": desc["download_values_per_client_round"],
        "download_bytes_per_client_round": desc["download_bytes_per_client_round"],
        "measured_upload_bytes_total": history[-1].get("cum_up_bytes", 0),
        "measured_download_bytes_total": history[-1].get("cum_down_bytes", 0),
        "trainable_params": desc["trainable_params"],
        "uploaded_tensors": desc["uploaded_tensors"],
        "private_tensors": desc["private_tensors"],
        "wall_time_s": elapsed,
        "rounds_time_s": elapsed,
        "round_time_s": float(np.mean([r["time_s"] for r in trained])) if trained else 0.0,
        "final_train_loss": trained[-1].get("train_loss") if trained else None,
    }


def run_classification(cfg: RunConfig, folder: RunFolder, *, resume: bool = False, progress: bool = True,
                       on_round: Callable[[int, dict], None] | None = None, started: float | None = None,
                       datasets: list | None = None,
                       make_engine: Callable[..., FederatedEngine] = FederatedEngine) -> dict:
    """Train ``cfg`` into the prepared run ``folder`` (params.yaml and env.json written) and
    return metrics.json's content.

    ``datasets`` replaces loading from the data root; ``make_engine(method, clients, pooled_test,
    train, evaluation, checkpoint)`` builds the engine (the Flower ServerApp passes its own);
    ``started`` (``time.perf_counter()``) is when the run began, for setup and wall times.
    """
    started = time.perf_counter() if started is None else started
    setup = prepare_run(cfg, datasets, progress)
    backbone, partition, names, method = setup.backbone, setup.partition, setup.classnames, setup.method
    folder.write_split(partition.to_json(), resume)
    engine = make_engine(method, setup.clients, setup.pooled_test, cfg.train, cfg.eval, folder / CHECKPOINT,
                         privacy=cfg.privacy,
                         # only when there are unseen clients: an engine factory need not know the option
                         **({"unseen_test": setup.unseen_test} if setup.unseen_test is not None else {}),
                         **({"novel": setup.novel} if setup.novel is not None else {}))
    setup_s = time.perf_counter() - started

    def after_round(r: int, row: dict) -> None:
        folder.write_csv(ROUNDS, engine.history, ROUND_COLUMNS)
        if on_round is not None:
            on_round(r, row)

    history = engine.run(resume=resume, progress=progress, on_round=after_round)
    folder.write_csv(ROUNDS, history, ROUND_COLUMNS)
    folder.write_csv(CLIENTS, engine.client_rows, ROUND_COLUMNS)
    zeroshot = {}
    if cfg.eval.zeroshot_reference:
        text_features = template_text_features(backbone, names, cfg.eval.zeroshot_template)
        server = engine.server_data
        if image_representation(method) != "pooled":  # the pool holds other features: use the pooled ones
            from fedrs.backbone.features import image_features

            pooled = torch.cat([image_features(backbone, ds, progress=False) for ds in setup.datasets])
            server = dataclasses.replace(server, features=pooled.to(backbone.device))
        novel = None
        if setup.novel is not None:
            novel = (template_text_features(backbone, setup.novel_classnames, cfg.eval.zeroshot_template),
                     setup.novel)
        zeroshot = zero_shot_reference(server, engine.clients, text_features, setup.unseen_test, novel)
        zeroshot["template"] = cfg.eval.zeroshot_template
    metrics = summarise(cfg, method, backbone, partition, history, zeroshot, engine.elapsed)
    metrics["engine"] = engine.name
    metrics["privacy"] = privacy_summary(cfg.privacy, history)
    # clients left out of a round for a non-finite update (also in rounds.csv and clients.csv)
    metrics["excluded_updates"] = engine.excluded_updates
    metrics["setup_time_s"] = setup_s
    metrics["wall_time_s"] = setup_s + engine.elapsed
    return metrics


__all__ = [
    "ROUND_COLUMNS", "RunSetup", "prepare_run", "unseen_test_indices", "novel_classes", "build_clients",
    "load_datasets",
    "prompt_names_of", "image_representation",
    "zero_shot_reference", "summarise", "run_classification",
]
