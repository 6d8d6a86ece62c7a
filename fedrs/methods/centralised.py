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
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import torch

from fedrs.methods.base import Batch
from fedrs.methods.fedrsclip import FedRSCLIP, FedRSCLIPConfig


@dataclass
class CentralisedConfig(FedRSCLIPConfig):
    """FedRSCLIP's ``method:`` section (same keys and defaults) except ``upload``, which must stay
    empty: the one party's whole model is the server's."""

    name: str = "centralised"
    upload: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.upload:
            raise ValueError(f"method.upload: centralised training holds the whole model in one place; "
                             f"leave upload empty, got {self.upload}")


class Centralised(FedRSCLIP):
    """FedRSCLIP on one client pooling every client's data; evaluated with the whole model."""

    name = "centralised"
    config_class = CentralisedConfig
    cfg: CentralisedConfig
    SHAREABLE = ("*",)
    pools_data = True

    def declare_uploads(self) -> Sequence[str]:
        return self.trainable_names

    def arrange_clients(self, clients: Sequence) -> list:
        train = torch.sort(torch.cat([c.train_indices for c in clients])).values
        test = torch.cat([c.test_indices for c in clients])
        return [replace(clients[0], client_id=0, train_indices=train, test_indices=test)]

    def logits(self, batch: Batch, personalised: bool = True) -> torch.Tensor:
        return super().logits(batch, personalised=True)


__all__ = ["CentralisedConfig", "Centralised"]
