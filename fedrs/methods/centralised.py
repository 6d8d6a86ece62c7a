"""Centralised: FedRSCLIP's model trained on the pooled training data of all clients.

The **pooled-data reference** (not an upper bound: a personalised model can beat one model for
everyone on each client's own test split). The clients of the partition are pooled into one
client that holds every client's training images (sorted pool indices) and the concatenation of
their test splits, so the run *is* FedRSCLIP with a single client holding all data: the same
module, losses, client update, batch order and schedule (FedAvg of one client is the identity).
With one party there is no shared/private split at evaluation: the whole model (shared and
private prompts) is held by the server, so both accuracies use it: personalised accuracy over
the clients' test splits (weighted by their sizes; the unweighted mean equals it, one client)
and global accuracy on the pooled test set. Its "uploads" are that whole model; they are not a
communication cost of a real deployment, where the raw data would have been pooled instead
(``pools_data``: there is no client whose prompts the privacy rule protects).

``steps_per_round`` sets how long each local update of the pooled client is:

* ``epochs`` (default): ``train.local_epochs`` epochs over the pooled data, i.e. about as many
  optimiser steps per round as all clients together;
* ``matched``: the **matched-step reference**: each epoch trains on the first ``S x batch_size``
  images of a fresh (round-seeded) permutation of the pooled data, with ``S =
  round(mean_k ceil(n_k / batch_size))`` the steps of an average client's epoch (``n_k``: client
  k's training images in the partition). Every local update then takes as many optimiser steps as
  an average federated client's (same batch size, epochs, rounds and learning rate), drawn from
  all clients' data; it separates the benefit of pooled data from that of more steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal, Sequence

import torch

from fedrs.methods.base import Batch, ClientData
from fedrs.methods.fedrsclip import FedRSCLIP, FedRSCLIPConfig, require_no_upload


@dataclass
class CentralisedConfig(FedRSCLIPConfig):
    """FedRSCLIP's ``method:`` section (same keys and defaults) except ``upload``, which must stay
    empty (the one party's whole model is the server's), plus the length of a local update."""

    name: str = "centralised"
    upload: list[str] = field(default_factory=list)
    steps_per_round: Literal["epochs", "matched"] = "epochs"

    def __post_init__(self) -> None:
        super().__post_init__()
        require_no_upload(self, "training holds the whole model in one place")


@dataclass
class MatchedStepClientData(ClientData):
    """The pooled client of the matched-step reference: each epoch is the first
    ``steps_per_epoch(batch_size) x batch_size`` indices of a fresh permutation of the pooled
    training set. ``client_sizes``: the training images of each client of the partition."""

    client_sizes: tuple[int, ...] = ()

    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimiser steps of an average client's epoch: ``round(mean_k ceil(n_k / batch_size))``,
        at least 1."""
        steps = [math.ceil(n / batch_size) for n in self.client_sizes]
        return max(1, round(sum(steps) / len(steps))) if steps else 1

    def epoch_order(self, generator: torch.Generator, batch_size: int) -> torch.Tensor:
        return super().epoch_order(generator, batch_size)[:self.steps_per_epoch(batch_size) * batch_size]


class Centralised(FedRSCLIP):
    """FedRSCLIP on one client pooling every client's data; evaluated with the whole model."""

    name = "centralised"
    config_class = CentralisedConfig
    cfg: CentralisedConfig
    SHAREABLE = ("*",)
    pools_data = True

    def declare_uploads(self) -> Sequence[str]:
        return self.trainable_names

    def arrange_clients(self, clients: Sequence[ClientData]) -> list[ClientData]:
        train = torch.sort(torch.cat([c.train_indices for c in clients])).values
        test = torch.cat([c.test_indices for c in clients])
        pooled = replace(clients[0], client_id=0, train_indices=train, test_indices=test)
        if self.cfg.steps_per_round == "matched":
            pooled = MatchedStepClientData(**vars(pooled), client_sizes=tuple(c.num_train for c in clients))
        return [pooled]

    def logits(self, batch: Batch, personalised: bool = True) -> torch.Tensor:
        return super().logits(batch, personalised=True)


__all__ = ["CentralisedConfig", "Centralised", "MatchedStepClientData"]
