"""The ``pe-rsitr`` method: a PETL retrieval model (default MRS-Adapter + HMMC) behind the
:class:`~fedrs.methods.base.Method` contract, so the federated engine trains it like any method.

Clients hold disjoint training images of a caption set (UCM-Captions: ``train+val``, 1,890
images) with all their captions; each local step draws one caption per image and minimises
HMMC, with another image's identical caption string kept out of the negatives
(``loss.duplicate_captions``; the pool's caption groups are computed once in
:meth:`PERSITR.set_pool`). The server FedAvg-averages the uploaded tensors through the same
:func:`~fedrs.federated.client.client_update`, :func:`~fedrs.federated.server.aggregate` and
:class:`~fedrs.federated.engine.FederatedEngine` as FedRSCLIP (driven by
:mod:`fedrs.retrieval.pipeline`, not by this module). Which trainable tensors are averaged is
configuration (``federate``):

* ``all`` (default): every trainable tensor except those under the ``private`` name prefixes,
  e.g. ``private: ["adapter.up.vision", "adapter.up.text"]`` keeps the modality-specific
  up-projections personal and averages the down-projections and the shared up-projection;
  ``private: []`` averages the whole adapter;
* ``cross-modal``: only the adapter's cross-modal shared part (:data:`CROSS_MODAL_PREFIXES`,
  the MRS-Adapter's shared up-projection ``adapter.up_shared``) is uploaded and averaged; every
  modality-specific tensor stays on its client. It is the federated analogue of the shared
  up-projection, as pFedMMA communicates only its shared projection; the server's model then
  holds the initial values of the private parts, so its scores mean little and the clients'
  personalised scores are the ones to read.

How the engine's classification interface carries retrieval (no engine change):

* the data pool is the training images followed by the test images; ``ClientData.labels`` is the
  pool index of each image, so a batch tells the method which images (and captions) it holds;
* ``logits`` scores images against the *test* captions, aggregated per image (max over its
  captions) into ``[B, pool size]``: the engine's accuracy columns (``personalised_acc_*``,
  ``global_acc``) are therefore top-1 image->text caption matching on the test split;
* the full R@1/5/10 both ways and mR are computed at the end
  (:func:`fedrs.retrieval.pipeline.federated_retrieval`).

Randomness (caption choice, dropout) uses torch's global generator, which the engine's checkpoint
saves, so ``--resume`` reproduces an uninterrupted run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from fedrs.config import ConfigError
from fedrs.errors import FedrsError
from fedrs.losses.retrieval import caption_groups
from fedrs.methods.base import Batch, Method, MethodConfig
from fedrs.retrieval.config import (
    VARIANTS,
    AdapterConfig,
    LossConfig,
    PromptConfig,
    RetrievalConfig,
    RetrievalTrainConfig,
    ValidationConfig,
)
from fedrs.retrieval.data import RetrievalSet
from fedrs.retrieval.model import RetrievalModel
from fedrs.retrieval.train import batch_terms
from fedrs.retrieval.variants import build_variant

#: ``federate`` choices: average every non-private trainable tensor, or only the cross-modal shared part
FEDERATE = ("all", "cross-modal")
#: the trainable tensors both modalities share (the MRS-Adapter's shared up-projection)
CROSS_MODAL_PREFIXES = ("adapter.up_shared.",)


@dataclass
class PERSITRConfig(MethodConfig):
    """PE-RSITR's ``method:`` section (see the module docstring).

    ``private``: prefixes of trainable tensors never uploaded (with ``federate: all``).
    ``federate``: ``all`` or ``cross-modal`` (only :data:`CROSS_MODAL_PREFIXES` averaged).
    ``train_split``/``test_split``: caption-set splits (``+`` joins; RSICD ships ``train`` and ``test``).
    ``validation``: the share of the training images held out and scored after every round
    (:class:`~fedrs.retrieval.config.ValidationConfig`; default the authors' 20%).
    """

    name: str = "pe-rsitr"
    variant: str = "mrs-adapter-hmmc"
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    private: list[str] = field(default_factory=list)
    federate: Literal["all", "cross-modal"] = "all"
    train_split: str = "train+val"
    test_split: str = "test"
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"method.variant must be one of {list(VARIANTS)}, got {self.variant!r}")
        if self.federate not in FEDERATE:
            raise ConfigError(f"method.federate must be one of {list(FEDERATE)}, got {self.federate!r}")
        if self.federate == "cross-modal" and self.private:
            raise ConfigError("method.federate: cross-modal keeps every tensor but the cross-modal shared "
                              "part private already: leave method.private empty")

    def retrieval_config(self, dataset: str = "UCM-Captions",
                         train: RetrievalTrainConfig | None = None) -> RetrievalConfig:
        """The same model, loss, splits and validation as a centralised PETL configuration."""
        return RetrievalConfig(variant=self.variant, dataset=dataset, train_split=self.train_split,
                               eval_split=self.test_split, adapter=self.adapter, prompts=self.prompts,
                               loss=self.loss, train=train or RetrievalTrainConfig(),
                               validation=self.validation)


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
        if self.cfg.federate == "cross-modal":
            shared = [n for n in names if n.startswith(CROSS_MODAL_PREFIXES)]
            if not shared:
                raise ConfigError(f"method.federate: cross-modal needs a cross-modal shared part "
                                  f"({', '.join(p.rstrip('.') for p in CROSS_MODAL_PREFIXES)}), and "
                                  f"{self.cfg.variant!r} with adapter.shared_dim={self.cfg.adapter.shared_dim} "
                                  f"has none: use an mrs-adapter variant with shared_dim > 0")
            return shared
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
        self._caption_groups = caption_groups(pool.captions)  # repeated strings: no negatives of each other
        self._per_image = pool.captions_of()
        cand = torch.as_tensor(candidates, dtype=torch.long)
        self._candidate_caps = torch.tensor([j for i in cand.tolist() for j in self._per_image[i]])
        self._candidate_owner = pool.caption_image[self._candidate_caps]

    def _require_pool(self) -> RetrievalSet:
        if self.pool is None:
            raise FedrsError("pe-rsitr needs its caption pool: call method.set_pool(pool, test_indices) "
                             "(fedrs.retrieval.federated_retrieval and `fedrs run` do)")
        return self.pool

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self._require_pool()
        caps = [self._per_image[i][int(torch.randint(len(self._per_image[i]), ()))]
                for i in batch.labels.tolist()]
        terms = batch_terms(self.module, self.hmmc, batch.images, self._tokens[caps].to(self.device),
                            self._caption_groups[caps])
        # detached tensors, as every method returns them: the client update reads them back once
        return terms["loss"], {k: v.detach() for k, v in terms.items()}

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


__all__ = ["CROSS_MODAL_PREFIXES", "FEDERATE", "PERSITRConfig", "PERSITR"]
