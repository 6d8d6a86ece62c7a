"""PE-RSITR as a federated method: a PETL retrieval model (default MRS-Adapter + HMMC) over clients.

Clients hold disjoint training images of a caption set (UCM-Captions: ``train+val``, 1,890
images) with all their captions; each local step draws one caption per image (no false negatives)
and minimises HMMC. The server FedAvg-averages the uploaded tensors through the same
:func:`~fedrs.federated.client.client_update`, :func:`~fedrs.federated.server.aggregate` and
:class:`~fedrs.federated.engine.FederatedEngine` as FedRSCLIP. Which trainable tensors stay on
the clients is configuration: ``private`` lists name prefixes, e.g. ``["adapter.up.vision",
"adapter.up.text"]`` (modality-specific up-projections personal, bottleneck and shared
up-projection federated); everything else is uploaded.

How the engine's classification interface carries retrieval (no engine change):

* the data pool is the training images followed by the test images; ``ClientData.labels`` is the
  pool index of each image, so a batch tells the method which images (and captions) it holds;
* ``logits`` scores images against the *test* captions, aggregated per image (max over its
  captions) into ``[B, pool size]``: the engine's accuracy columns (``personalised_acc_*``,
  ``global_acc``) are therefore top-1 image->text caption matching on the test split;
* the full R@1/5/10 both ways and mR are computed at the end (:func:`federated_retrieval`).

Randomness (caption choice, dropout) uses torch's global generator, which the engine's checkpoint
saves, so ``--resume`` reproduces an uninterrupted run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from fedrs.config import ConfigError, to_dict
from fedrs.errors import FedrsError
from fedrs.evaluate.retrieval import RetrievalScores
from fedrs.methods.base import Batch, Method, MethodConfig
from fedrs.retrieval.config import (
    VARIANTS, AdapterConfig, LossConfig, PromptConfig, RetrievalConfig,
)
from fedrs.retrieval.data import RetrievalSet, split_clients
from fedrs.retrieval.model import RetrievalModel
from fedrs.retrieval.train import batch_terms, evaluate
from fedrs.retrieval.variants import build_variant


@dataclass
class PERSITRConfig(MethodConfig):
    """PE-RSITR's ``method:`` section. ``private``: prefixes of trainable tensors never uploaded."""

    name: str = "pe-rsitr"
    variant: str = "mrs-adapter-hmmc"
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    private: list[str] = field(default_factory=list)
    train_split: str = "train+val"
    test_split: str = "test"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"method.variant must be one of {list(VARIANTS)}, got {self.variant!r}")

    def retrieval_config(self, dataset: str = "UCM-Captions") -> RetrievalConfig:
        return RetrievalConfig(variant=self.variant, dataset=dataset, eval_split=self.test_split,
                               adapter=self.adapter, prompts=self.prompts, loss=self.loss)


class PERSITR(Method):
    """A retrieval PETL variant trained federatedly (see the module docstring)."""

    name = "pe-rsitr"
    config_class = PERSITRConfig
    task = "retrieval"
    cfg: PERSITRConfig
    module: RetrievalModel

    def __init__(self, cfg: PERSITRConfig, backbone, classnames: Sequence[str] = (), seed: int = 0):
        self.pool: RetrievalSet | None = None
        super().__init__(cfg, backbone, classnames, seed)

    def build_module(self) -> RetrievalModel:
        model, self.hmmc = build_variant(self.backbone, self.cfg.retrieval_config(), seed=self.seed)
        return model

    def declare_uploads(self) -> Sequence[str]:
        names = [n for n, p in self.module.named_parameters() if p.requires_grad]
        unused = [p for p in self.cfg.private if not any(n.startswith(p) for n in names)]
        if unused:
            raise ConfigError(f"method.private lists {unused}, which match none of the trainable tensors "
                              f"of {self.cfg.variant!r}: {names[:8]}{' ...' if len(names) > 8 else ''}")
        return [n for n in names if not any(n.startswith(p) for p in self.cfg.private)]

    def needs_images(self, train: bool, personalised: bool = True) -> bool:
        return True

    # -- data ----------------------------------------------------------------------------------
    def set_pool(self, pool: RetrievalSet, candidates: Sequence[int] | torch.Tensor) -> None:
        """The shared pool (``ClientData.labels`` index it) and the images whose captions ``logits`` ranks."""
        self.pool = pool
        self._tokens = self.module.tokenize(pool.captions)
        self._per_image = pool.captions_of()
        cand = torch.as_tensor(candidates, dtype=torch.long)
        self._candidate_caps = torch.tensor([j for i in cand.tolist() for j in self._per_image[i]])
        self._candidate_owner = pool.caption_image[self._candidate_caps]

    def _require_pool(self) -> RetrievalSet:
        if self.pool is None:
            raise FedrsError("pe-rsitr needs its caption pool: call method.set_pool(pool, test_indices) "
                             "(federated_retrieval and `fedrs run` do)")
        return self.pool

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        self._require_pool()
        caps = [self._per_image[i][int(torch.randint(len(self._per_image[i]), ()))]
                for i in batch.labels.tolist()]
        terms = batch_terms(self.module, self.hmmc, batch.images, self._tokens[caps].to(self.device))
        return terms["loss"], {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def logits(self, batch: Batch, personalised: bool = True) -> torch.Tensor:
        """``[B, pool]``: each image's best cosine to each candidate image's captions (-inf elsewhere)."""
        pool = self._require_pool()
        image = F.normalize(self.module.encode_image(batch.images).float(), dim=-1)
        tokens = self._tokens[self._candidate_caps].to(self.device)
        text = torch.cat([F.normalize(self.module.encode_text(tokens[i:i + 256]).float(), dim=-1)
                          for i in range(0, len(tokens), 256)])
        sim = image @ text.T
        out = torch.full((len(image), len(pool)), float("-inf"), device=sim.device)
        owner = self._candidate_owner.to(sim.device).unsqueeze(0).expand_as(sim)
        return out.scatter_reduce(1, owner, sim, reduce="amax")


# --- federated retrieval ------------------------------------------------------------------------

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
                        train_cfg=None, eval_cfg=None, split_seed: int = 0, split=None,
                        checkpoint: str | Path | None = None, resume: bool = False,
                        progress: bool = False, on_round=None) -> FederatedRetrievalResult:
    """Train a retrieval variant over ``num_clients`` disjoint image shards with the federated engine.

    The shards are random (IID, seed ``split_seed``) unless ``split`` (a run's ``data`` section,
    :class:`fedrs.data.PartitionConfig`) asks for scene-class skew (``dirichlet``, ``pathological``);
    ``split`` then also sets the number of clients.

    ``cfg`` is the method section (a :class:`RetrievalConfig` is converted: variant, adapter,
    prompts, loss). ``train_cfg``/``eval_cfg`` are the run's ``train``/``eval`` sections (default:
    ``rounds``, ``local_epochs``, SGD ``lr``, cosine over rounds, batch 64). ``num_clients=1`` is
    the centralised reference through exactly the same code.
    """
    from fedrs.federated.client import ClientData, load_client
    from fedrs.federated.engine import FederatedEngine
    from fedrs.runs import EvalConfig, TrainConfig

    if isinstance(cfg, RetrievalConfig):
        cfg = PERSITRConfig(variant=cfg.variant, adapter=cfg.adapter, prompts=cfg.prompts, loss=cfg.loss)
    cfg = cfg or PERSITRConfig()
    train_cfg = train_cfg or TrainConfig(rounds=rounds, local_epochs=local_epochs, lr=lr, batch_size=64)
    eval_cfg = eval_cfg or EvalConfig(every=max(1, train_cfg.rounds), zeroshot_reference=False)
    method = PERSITR(cfg, backbone, seed=train_cfg.seed)
    pool, test_idx = concat_pool(train, test)
    method.set_pool(pool, test_idx)
    if split is None:
        from fedrs.data.partition import PartitionConfig

        split = PartitionConfig(dataset=train.name, num_clients=num_clients, scheme="iid", seed=split_seed)
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


def run_retrieval_experiment(cfg, out_dir: str | Path, resume: bool = False, progress: bool = True,
                             force: bool = False, on_round=None) -> dict:
    """``fedrs run`` for a ``method: {name: pe-rsitr}`` configuration: one self-describing run folder.

    ``data.dataset`` is the caption set, ``data.num_clients`` the clients, ``data.seed`` the shard
    seed, ``data.scheme`` how the training images are dealt (``iid``: random disjoint shards;
    ``dirichlet``/``pathological``: skewed by the images' scene classes); ``train``/``eval`` as
    for every run. ``metrics.json`` holds the server model's R@1/5/10 both ways and mR on the test
    split, the clients' personalised mean (when some tensors are private) and zero-shot.
    """
    from fedrs.backbone.factory import create_backbone
    from fedrs.io import write_json_atomic
    from fedrs.runs import CHECKPOINT, CLIENTS, METRICS, ROUNDS, SPLIT, RunFolder, write_env

    started = time.perf_counter()
    folder = RunFolder(out_dir)
    if folder.prepare(cfg, resume=resume, force=force):
        return folder.read_metrics()
    write_env(folder)
    backbone = create_backbone(cfg.backbone.model, cfg.backbone.pretrained, cfg.backbone.device)
    m: PERSITRConfig = cfg.method
    train = RetrievalSet.load(cfg.data.dataset, m.train_split, backbone)
    test = RetrievalSet.load(cfg.data.dataset, m.test_split, backbone)
    setup_s = time.perf_counter() - started
    rows: list[dict] = []

    def after_round(r: int, row: dict) -> None:
        rows.append(row)
        folder.write_csv(ROUNDS, rows)
        if on_round is not None:
            on_round(r, row)

    out = federated_retrieval(backbone, train, test, m, num_clients=cfg.data.num_clients,
                              train_cfg=cfg.train, eval_cfg=cfg.eval, split=cfg.data,
                              checkpoint=folder / CHECKPOINT, resume=resume, progress=progress,
                              on_round=after_round)
    write_json_atomic(folder / SPLIT, {
        "dataset": cfg.data.dataset, "train_split": m.train_split, "test_split": m.test_split,
        "scheme": cfg.data.scheme, "seed": cfg.data.seed,
        "clients": [[train.image_ids[i] for i in s] for s in out.shards],
        "test": test.image_ids})
    folder.write_csv(ROUNDS, out.history)
    folder.write_csv(CLIENTS, [{"client": k, "train_images": len(s),
                                "scene_classes": len({train.labels[i] for i in s}) if train.labels else "",
                                **{f"personalised_{a}": b for a, b in (out.personalised[k].as_row().items()
                                                                       if out.personalised else [])}}
                               for k, s in enumerate(out.shards)])
    zeroshot = evaluate(RetrievalModel(backbone), test) if cfg.eval.zeroshot_reference else None
    metrics = {
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
    write_json_atomic(folder / METRICS, metrics)
    return metrics


__all__ = ["PERSITRConfig", "PERSITR", "federated_retrieval", "run_retrieval_experiment",
           "FederatedRetrievalResult", "concat_pool"]
