"""The interface every method implements, so engines, accounting and evaluation never special-case one.

A method (FedRSCLIP, a baseline of issue #4, the retrieval adapter of issue #6) is one subclass of
:class:`Method` plus one registry entry in :mod:`fedrs.methods`. It declares:

* ``config_class``: its config section, a dataclass deriving from :class:`MethodConfig` (the YAML
  ``method:`` mapping; ``name`` picks the registry entry, every other key is the method's own);
* ``module``: the trainable ``nn.Module``, built once per process over the shared frozen backbone.
  Its parameters are exactly the trainable tensors (the backbone is referenced, not registered);
* ``upload_names``: **the names of the tensors a client uploads** and the server averages. Every
  other trainable tensor is private: it stays in the client's state and never leaves the client.
  Communication accounting and aggregation read this declaration;
* ``SHAREABLE``: the method's *fixed* rule of what may ever leave a client (name patterns, a class
  attribute, not configuration). The privacy check does not trust the declaration: a tensor may
  leave a client only if :meth:`Method.may_share` allows it -- a trainable tensor matching
  ``SHAREABLE`` and none of :data:`NEVER_SHARED` (private/local tensors, client optimiser state).
  Buffers (the class-name token embeddings), backbone weights and any other name never leave. A
  declaration (``declare_uploads``, a config's ``upload``) can only pick among the shareable
  tensors: one that names another is refused when the method is built, by the client before it
  sends (:meth:`Method.check_upload`) and by the server on receipt
  (:func:`fedrs.federated.server.check_received`);
* ``loss(batch)``: the training objective on one batch, with its named terms for logging;
* ``logits(batch, personalised)``: personalised (shared + private tensors) or global (only what
  the server holds) class scores, used for the two accuracies;
* ``needs_images(train, personalised)``: whether a pass needs decoded images (prompted image
  encoder) or can use the cached frozen image features.

``build_module``, ``declare_uploads``, ``loss`` and ``logits`` are abstract: a subclass that
misses one cannot be instantiated. The data a method sees is a :class:`Batch`, cut from a client's
:class:`ClientData` (both defined here, so the whole contract is one file).

The engine moves tensors in and out with :meth:`get_tensors` / :meth:`set_tensors`; a method holds
no per-client state itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import ClassVar, Iterable, Mapping, Sequence

import torch
from torch import nn

from fedrs.errors import FedrsError

#: name patterns that never leave a client, whatever a method shares or declares: private and local
#: tensors by name, and a client's optimiser state (``client_update`` keeps SGD momentum buffers as
#: ``"momentum.<name>"``, :data:`fedrs.federated.client.MOMENTUM`)
NEVER_SHARED: tuple[str, ...] = ("*private*", "*local*", "momentum.*")


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` matches one of the (case-sensitive, ``fnmatch``) ``patterns``."""
    return any(fnmatchcase(name, p) for p in patterns)


@dataclass
class MethodConfig:
    """Base of every method's config section; ``name`` selects the method in the registry."""

    name: str


@dataclass
class Batch:
    """One batch of a client's data. ``features``: frozen image features ``[B, D]`` (raw, not
    normalised); ``images``: preprocessed images ``[B, 3, H, W]``; either may be ``None`` when the
    pass does not need it (see :meth:`Method.needs_images`)."""

    labels: torch.Tensor
    features: torch.Tensor | None = None
    images: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class ClientData:
    """A client's view of a shared data pool: indices only, no copies.

    ``labels [N]`` and, when present, ``features [N, D]`` (frozen, raw) and ``images [N, 3, H, W]``
    cover the whole pool; ``train_indices`` / ``test_indices`` select this client's samples.
    """

    client_id: int
    labels: torch.Tensor
    train_indices: torch.Tensor
    test_indices: torch.Tensor
    features: torch.Tensor | None = None
    images: torch.Tensor | None = None

    @property
    def num_train(self) -> int:
        return int(self.train_indices.numel())

    def batch(self, indices: torch.Tensor, images: bool, device: torch.device | str = "cpu") -> Batch:
        """The samples at pool ``indices``; images only when asked, else features."""
        if images and self.images is None:
            raise ValueError("this pass needs decoded images but the data pool holds none")
        feats = None if images or self.features is None else self.features[indices].to(device)
        imgs = self.images[indices].to(device, torch.float32) if images else None
        return Batch(labels=self.labels[indices].to(device), features=feats, images=imgs)

    def epoch_order(self, generator: torch.Generator, batch_size: int) -> torch.Tensor:
        """Pool indices of one local epoch, in training order (``client_update`` cuts them into
        batches of ``batch_size``): a permutation of the training indices drawn from ``generator``.
        A subclass may train on part of it (a step budget: the matched-step centralised reference)."""
        return self.train_indices[torch.randperm(self.num_train, generator=generator)]


class Method(ABC):
    """Base class of a method (see the module docstring for what a subclass defines)."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    #: False for methods that are only evaluated (zero-shot): the engine skips local training
    trains: ClassVar[bool] = True
    #: False for methods whose server never holds a trained tensor (local-only uploads nothing):
    #: their "global" accuracy measures the untrained initial prompt, and reports show n/a
    has_global_model: ClassVar[bool] = True
    #: "classification" runs through fedrs.federated.engine.run_experiment; another task names its
    #: runner in fedrs.methods.TASK_RUNNERS
    task: ClassVar[str] = "classification"
    #: the method's fixed rule of which trainable tensors may ever leave a client (``fnmatch``
    #: patterns over the names); a declaration picks among them and can never widen them. The base
    #: allows every trainable tensor outside NEVER_SHARED; a method with private parts narrows it
    #: to its shared tensors (FedRSCLIP: the shared prompts; local-only: nothing)
    SHAREABLE: ClassVar[tuple[str, ...]] = ("*",)
    #: True only where one party holds all the data (centralised training): there is no client to
    #: protect, so NEVER_SHARED does not apply and its "private" prompts are the server's model
    pools_data: ClassVar[bool] = False

    def __init__(self, cfg: MethodConfig, backbone, classnames: Sequence[str], seed: int = 0):
        self.cfg = cfg
        self.backbone = backbone
        self.classnames = list(classnames)
        self.seed = seed
        self.module: nn.Module = self.build_module()
        self.upload_names: tuple[str, ...] = tuple(self.declare_uploads())
        unknown = sorted(set(self.upload_names) - set(self.trainable_names))
        if unknown:
            raise FedrsError(f"method {self.name!r} declares uploads {unknown} that are not among its "
                             f"trainable tensors {list(self.trainable_names)}")
        kept = self.never_shared(self.upload_names)
        if kept:
            raise FedrsError(f"privacy check failed: method {self.name!r} declares uploads {kept}, which "
                             f"never leave a client ({self.sharing_rule()})")
        self._initial = self.get_tensors(self.trainable_names)

    # -- what a subclass defines -------------------------------------------------------------
    @abstractmethod
    def build_module(self) -> nn.Module:
        """The trainable module (prompts/adapters only; parameters = trainable tensors)."""
        raise NotImplementedError

    @abstractmethod
    def declare_uploads(self) -> Sequence[str]:
        """Names of the tensors a client uploads (subset of :attr:`trainable_names`)."""
        raise NotImplementedError

    @abstractmethod
    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """``(total loss, {term name: value})`` on one batch, with the module in train mode; term values
        are detached scalar tensors (or floats), read back once per client update."""
        raise NotImplementedError

    @abstractmethod
    def logits(self, batch: Batch, personalised: bool = True) -> torch.Tensor:
        """Class scores ``[B, C]``; ``personalised=False`` uses only what the server holds."""
        raise NotImplementedError

    def needs_images(self, train: bool, personalised: bool = True) -> bool:
        """Whether a pass needs images (prompted image encoder) rather than cached features."""
        return False

    def arrange_clients(self, clients: Sequence[ClientData]) -> list[ClientData]:
        """The clients the engine trains and evaluates, from the partition's (default: as they
        are). Centralised training pools them into one client holding all their data."""
        return list(clients)

    # -- derived, shared by every method ------------------------------------------------------
    @property
    def trainable_names(self) -> tuple[str, ...]:
        return tuple(n for n, p in self.module.named_parameters() if p.requires_grad)

    @property
    def private_names(self) -> tuple[str, ...]:
        """Trainable tensors that are never uploaded (kept in the client's state)."""
        return tuple(n for n in self.trainable_names if n not in self.upload_names)

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def parameters(self) -> list[nn.Parameter]:
        named = dict(self.module.named_parameters())
        return [named[n] for n in self.trainable_names]

    def num_values(self, names: Sequence[str]) -> int:
        named = dict(self.module.named_parameters())
        return sum(named[n].numel() for n in names)

    def shapes(self, names: Sequence[str]) -> dict[str, list[int]]:
        named = dict(self.module.named_parameters())
        return {n: list(named[n].shape) for n in names}

    def get_tensors(self, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Detached CPU copies of the named trainable tensors."""
        named = dict(self.module.named_parameters())
        return {n: named[n].detach().to("cpu", copy=True) for n in names}

    def set_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Copy values (torch or numpy) into the named trainable tensors, in place."""
        named = dict(self.module.named_parameters())
        unknown = sorted(set(tensors) - set(named))
        if unknown:
            raise FedrsError(f"method {self.name!r} has no tensors {unknown}; it has {sorted(named)}")
        with torch.no_grad():
            for n, value in tensors.items():
                value = torch.as_tensor(value)
                if tuple(value.shape) != tuple(named[n].shape):
                    raise FedrsError(f"tensor {n!r} has shape {tuple(value.shape)}, expected "
                                     f"{tuple(named[n].shape)} (another method or prompt length?)")
                named[n].copy_(value.to(named[n].device, named[n].dtype))

    def initial_global(self) -> dict[str, torch.Tensor]:
        """The server's initial values of the uploaded tensors."""
        return {n: self._initial[n].clone() for n in self.upload_names}

    def initial_private(self, client_id: int) -> dict[str, torch.Tensor]:
        """A client's initial private tensors (the same seeded values for every client)."""
        return {n: self._initial[n].clone() for n in self.private_names}

    def may_share(self, name: str) -> bool:
        """Whether tensor ``name`` may leave a client by the method's fixed rule (not its
        declaration): a trainable tensor matching :attr:`SHAREABLE` and, unless the method pools
        all data in one party, none of :data:`NEVER_SHARED`. Buffers, client state and any name
        the module does not train are never shared."""
        return (name in self.trainable_names and matches(name, self.SHAREABLE)
                and (self.pools_data or not matches(name, NEVER_SHARED)))

    def never_shared(self, names: Iterable[str]) -> list[str]:
        """The names among ``names`` that must never leave a client (sorted)."""
        return sorted(n for n in names if not self.may_share(n))

    def sharing_rule(self) -> str:
        """The fixed rule in words, for error messages."""
        shareable = [n for n in self.trainable_names if self.may_share(n)]
        return (f"{self.name!r} may share only {shareable or 'nothing'} (patterns {list(self.SHAREABLE)}"
                f"{'' if self.pools_data else f', never {list(NEVER_SHARED)}'}); it declares "
                f"{list(self.upload_names)}")

    def check_upload(self, tensors: Mapping[str, object]) -> None:
        """The client's privacy check before sending, in two parts: first, independently of the
        declaration, no tensor that the method's fixed rule keeps on the client (:meth:`may_share`:
        private tensors, buffers, optimiser state); then exactly the declared tensors (a shareable
        tensor this configuration keeps, e.g. an un-uploaded ``visual_shared``, is refused too)."""
        never = self.never_shared(tensors)
        if never:
            raise FedrsError(f"privacy check failed: the upload contains {never}, which never leave a "
                             f"client ({self.sharing_rule()})")
        kept = sorted(set(tensors) & set(self.private_names))
        if kept:
            raise FedrsError(f"privacy check failed: the upload contains {kept}, which {self.name!r} keeps "
                             f"on the client (it declares {list(self.upload_names)})")
        if set(tensors) != set(self.upload_names):
            raise FedrsError(f"upload holds {sorted(tensors)} but {self.name!r} declares "
                             f"{sorted(self.upload_names)}")

    def describe(self) -> dict:
        """Sizes read from the declaration: what ``fedrs describe`` prints."""
        up = self.upload_names
        values = self.num_values(up)
        named = dict(self.module.named_parameters())
        nbytes = sum(named[n].numel() * named[n].element_size() for n in up)
        return {
            "method": self.name,
            "trainable_params": self.num_values(self.trainable_names),
            "trainable_tensors": self.shapes(self.trainable_names),
            "uploaded_tensors": self.shapes(up),
            "private_tensors": self.shapes(self.private_names),
            "upload_values_per_client_round": values,
            "upload_bytes_per_client_round": nbytes,
            "download_values_per_client_round": values,
            "download_bytes_per_client_round": nbytes,
        }


__all__ = ["MethodConfig", "Batch", "ClientData", "Method", "NEVER_SHARED", "matches"]
