"""Typed configuration of PE-RSITR retrieval runs (loaded with :func:`fedrs.config.load_config`).

Selection protocol (issue 14). Learning rates and anything else chosen by looking at results are
chosen on a validation split carved from the *training* images (:class:`ValidationConfig`: a seeded
random 20%, as the PE-RSITR authors' code did), never on the test split. A run trains on the other
80%, scores the validation split at the end of every epoch (centralised) or round (federated)
and records the curve and its best epoch in metrics.json (``selection``); the numbers it reports
on test are those of the *final* epoch/round, never the best one. The learning rate is chosen by
:func:`fedrs.retrieval.selection.select_lr`: the same configuration trained once per candidate
on the 80%, the candidate with the highest final-epoch validation mR wins, and its table
(``lr_sweep.csv``/``lr_sweep.json``) is written beside the runs. How the defaults were chosen:

* centralised AdamW (the PETL harness, :class:`RetrievalConfig`), as run for the defaults below:
  ``select_lr(RetrievalConfig(variant="mrs-adapter-hmmc", train=RetrievalTrainConfig(epochs=5)),
  [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1], backbone=create_backbone(), out=DIR)``;
* federated SGD (``fedrs run`` configurations, a :class:`fedrs.runs.RunConfig`), over the seeds
  of the federated grid at its own budget, as run: ``fedrs retrieval select-lr
  params/studies/retrieval/federated/whole__iid__c5__s{0,1,2}.yaml --lr 0.003 0.01 0.03 --out
  results/retrieval/lr_sweep/federated_sgd_ucm_5clients_10rounds``
  (:func:`~fedrs.retrieval.selection.select_lr_replicates`: best mean final validation mR);

or ``fedrs retrieval select-lr PARAMS --lr 1e-3 3e-3 ... [--centralised] --out DIR``.

The current defaults were chosen this way (2026-12-01, offline backbone fedrs-rsclip-s/offline-57543234,
UCM-Captions, validation = 20% of the train+val images, seed 0: 378 of 1,890; MRS-Adapter + HMMC
in the published hinge form; one seed unless a bullet names several; final-epoch/round validation
mR, pessimistic ties; the frozen backbone scores 7.65 there):

* centralised AdamW, 5 epochs, batch 64 (run as two calls, 1e-2 in both: 12.69 each time, the
  sweep is deterministic): lr 3e-4 / 1e-3 / 3e-3 / 1e-2 / 3e-2 / 1e-1 -> 10.33 /
  11.57 / 12.29 / **12.69** / 1.10 / 0.50, so ``DEFAULT_LR["mrs-adapter-hmmc"] = 1e-2`` (next to a
  collapse at 3e-2: the summed hinge makes large steps unstable; rerun for longer budgets);
* federated client SGD, momentum 0.9, 5 IID clients, 10 rounds x 1 local epoch (the grid's budget),
  cosine, batch 64, whole adapter averaged, seeds 0-2 (each seed its own validation split, shards
  and initialisation): lr 3e-3 / 1e-2 / 3e-2 -> mean final validation mR 9.22 ± 0.67 / **11.02 ±
  0.67** / 10.05 ± 4.63, so :data:`FEDERATED_SGD_LR` = 0.01, used by the federated
  ``params/offline/pe_rsitr_*_fed*.yaml`` and the grid. 3e-2 is best on seeds 0 and 1 (13.32,
  12.08) and stalls below the frozen backbone on seed 2 (4.75 against 7.07; the frozen backbone
  scores 7.65 / 6.80 / 7.07 on the three validation splits): the rate first chosen, on seed 0
  at 4 rounds (1e-3 .. 1e-1 -> 8.08 / 8.97 / 10.00 / **10.56** / 0.71,
  ``results/retrieval/lr_sweep/federated_sgd_ucm_5clients``), sat next to that collapse and left
  3 of the grid's first 9 whole-adapter runs there;
* the same engine with one client (the centralised reference of federated retrieval), first on
  seed 0 at 4 rounds (``fedrs retrieval select-lr params/offline/pe_rsitr_ucm.yaml --set
  train.rounds=4 --lr 0.001 0.003 0.01 0.03``: 9.82 / 11.84 / **12.34** / 7.21), then as the
  clients' rate, over seeds 0-2 at the grid's 10 rounds (``fedrs retrieval select-lr
  params/studies/retrieval/federated/centralised__s{0,1,2}.yaml --lr 0.003 0.01 0.03 --out
  results/retrieval/lr_sweep/centralised_sgd_ucm_10rounds``: mean final validation mR 14.14 ±
  0.36 / **14.44 ± 0.40** / 5.12 ± 3.77), so :data:`CENTRALISED_SGD_LR` = 0.01 both times (one
  client takes as many sequential steps per round as five clients together);
* the other PETL rows, centralised AdamW, 5 epochs, batch 64, each on the same validation split
  (``fedrs retrieval select-lr params/offline/pe_rsitr_ucm.yaml --centralised --epochs 5 --set
  method.variant=V --lr ... --out results/retrieval/lr_sweep/centralised_adamw_ucm_V``; a grid whose
  best rate lay on its edge was extended past that edge, ``_low`` folders) -> the rate of
  :data:`DEFAULT_LR` and its folder in :data:`LR_SOURCE` (final validation mR per rate, the chosen
  one in bold): linear probe 1e-3 (1e-4 .. 1e-2: 9.85 / 9.52 / **12.65** / 9.23 / 9.60), CoOp 1e-5
  (3e-6 .. 3e-4: 5.11 / **5.34** / 4.46 / 4.24 / 2.38), VPT 3e-5 (3e-6 .. 3e-4: 7.77 / 7.81 / **8.35**
  / 6.21 / 4.97), plain adapter 1e-5 (3e-6 .. 1e-3: 7.89 / **7.94** / 7.71 / 7.13 / 6.51 / 6.07),
  MRS-Adapter without HMMC 1e-5 (3e-6 .. 1e-3: 7.89 / **8.13** / 8.02 / 7.00 / 5.70 / 5.26), full
  fine-tuning 3e-5 (1e-6 .. 1e-4: 8.60 / 9.67 / 11.26 / **11.92** / 11.83), MRS-Adapter + HMMC in
  InfoNCE form 3e-3 (:data:`INFONCE_HMMC_LR`; 3e-4 .. 1e-2: 11.16 / 13.89 / **16.03** / 16.01).
  Trained with the cross-modal hinge term alone, the adapters barely move from the frozen backbone
  (7.65) at any rate; the intra-modal HMMC terms are what let MRS-Adapter + HMMC take a large rate.

RSICD uses the rates chosen on UCM-Captions (not re-swept: one RSICD sweep costs about five UCM ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedrs.config import ConfigError
from fedrs.losses.retrieval import HMMCConfig

#: the PETL variants of the comparison harness, in table order
VARIANTS = ("zero-shot", "linear-probe", "coop", "vpt", "adapter", "mrs-adapter",
            "mrs-adapter-hmmc", "full-finetune")

#: AdamW learning rate per variant when ``train.lr`` is not set, each chosen by
#: :func:`~fedrs.retrieval.selection.select_lr` on UCM-Captions' validation split (module docstring;
#: the sweep behind each is named in :data:`LR_SOURCE`)
DEFAULT_LR = {
    "linear-probe": 1e-3, "coop": 1e-5, "vpt": 3e-5, "adapter": 1e-5, "mrs-adapter": 1e-5,
    "mrs-adapter-hmmc": 1e-2, "full-finetune": 3e-5,
}
_SWEEPS = "results/retrieval/lr_sweep/"
#: where each rate of :data:`DEFAULT_LR` came from (the tables' ``lr source`` column)
LR_SOURCE = {
    variant: f"chosen on validation (select_lr, UCM-Captions val, 5 epochs: {_SWEEPS}{folder})"
    for variant, folder in {
        "linear-probe": "centralised_adamw_ucm_linear-probe",
        "coop": "centralised_adamw_ucm_coop_low",
        "vpt": "centralised_adamw_ucm_vpt_low",
        "adapter": "centralised_adamw_ucm_adapter_low",
        "mrs-adapter": "centralised_adamw_ucm_mrs-adapter_low",
        "mrs-adapter-hmmc": "centralised_adamw_ucm",
        "full-finetune": "centralised_adamw_ucm_full-finetune",
    }.items()
}
#: the source of every rate not in :data:`LR_SOURCE`
UNVALIDATED_LR_SOURCE = "earlier default, not chosen on validation"
#: AdamW learning rate of MRS-Adapter + HMMC in its InfoNCE form (``loss.form: infonce``), chosen on
#: validation like :data:`DEFAULT_LR` (module docstring)
INFONCE_HMMC_LR = 3e-3
#: where :data:`INFONCE_HMMC_LR` came from
INFONCE_HMMC_LR_SOURCE = ("chosen on validation (select_lr, UCM-Captions val, 5 epochs: "
                          f"{_SWEEPS}centralised_adamw_ucm_hmmc_infonce)")
#: client SGD learning rate (momentum 0.9) of the federated MRS-Adapter + HMMC, chosen by
#: select_lr_replicates (best mean over seeds 0-2)
FEDERATED_SGD_LR = 0.01
#: where :data:`FEDERATED_SGD_LR` came from
FEDERATED_SGD_LR_SOURCE = ("chosen on validation (select_lr_replicates, UCM-Captions val, 5 IID clients, "
                           "10 rounds, mean over seeds 0-2: "
                           "results/retrieval/lr_sweep/federated_sgd_ucm_5clients_10rounds)")
#: client SGD learning rate (momentum 0.9) of MRS-Adapter + HMMC on one client (the centralised
#: reference of the federated rows), chosen by select_lr
CENTRALISED_SGD_LR = 0.01
#: where :data:`CENTRALISED_SGD_LR` came from
CENTRALISED_SGD_LR_SOURCE = ("chosen on validation (select_lr_replicates, UCM-Captions val, 1 client, "
                             "10 rounds, mean over seeds 0-2: "
                             "results/retrieval/lr_sweep/centralised_sgd_ucm_10rounds)")


@dataclass
class AdapterConfig:
    """MRS-Adapter sizes (paper: bottleneck 64, shared 64, dropout 0.5)."""

    bottleneck: int = 64
    shared_dim: int = 64
    dropout: float = 0.5


@dataclass
class PromptConfig:
    """CoOp text context tokens and VPT-deep visual tokens (``visual_depth`` 0 = every block)."""

    text_tokens: int = 16
    visual_tokens: int = 8
    visual_depth: int = 0


@dataclass
class LossConfig(HMMCConfig):
    """The ``loss`` section: every :class:`~fedrs.losses.retrieval.HMMCConfig` choice (``form``
    hinge | infonce, ``margin``, ``negatives`` hardest | sum, ``reduction``, ``lambda_cm/v/t``,
    ``duplicate_captions`` mask | positive | ignore, ``duplicate_terms``, ``temperature`` for
    InfoNCE) plus the input dropout of the augmented view (PE-RSITR: 0.2 for both towers).

    Being part of the run's configuration, the choice is written to ``params.yaml``. ``lambda_v``
    and ``lambda_t`` apply to ``mrs-adapter-hmmc`` only (the other variants train with ``L_cm``).
    The published form (hinge, summed over the batch) has a loss scale that grows with the batch
    size, so a plain-SGD learning rate does not carry over from the InfoNCE form: choose it on the
    validation split (:func:`fedrs.retrieval.selection.select_lr`).
    """

    text_dropout: float = 0.2
    vision_dropout: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("text_dropout", "vision_dropout"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{key} must lie in [0, 1), got {value}")


@dataclass
class ValidationConfig:
    """The validation split: a seeded random ``fraction`` of the training images, held out of
    training and scored after every ``every``-th epoch/round and the last one (PE-RSITR's
    authors: 20%, every epoch). ``fraction: 0`` trains on every training image and selects
    nothing (no validation curve). ``every`` > 1 saves time where scoring is dear: a federated
    run with private tensors scores every client's personalised model (RSICD's 1,795 validation
    images take about as long to score as a fifth of a training epoch)."""

    fraction: float = 0.2
    seed: int = 0
    every: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.fraction, bool) or not 0.0 <= self.fraction < 1.0:
            raise ConfigError(f"validation.fraction must lie in [0, 1) (0.2: the authors' 80/20 split of the "
                              f"training images), got {self.fraction!r}")
        for key, lowest in (("seed", 0), ("every", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise ConfigError(f"validation.{key} must be an integer >= {lowest}, got {value!r}")

    def describe(self, train_split: str, n_val: int, n_images: int) -> str:
        """``"val (20% of the train+val images, seed 0): 378 of 1,890"``."""
        return (f"val ({self.fraction:.0%} of the {train_split} images, seed {self.seed}): "
                f"{n_val:,} of {n_images:,}")


@dataclass
class RetrievalTrainConfig:
    """Centralised PETL training (AdamW epochs over one caption set; ``weight_decay`` 0 is Adam).
    ``lr_decay_every`` > 0 multiplies the learning rate by ``lr_decay`` after every that many epochs
    (the PE-RSITR authors: x0.7 every 20 epochs); 0 keeps it constant. A federated run does not
    use this section: its clients train with the run's ``train`` section (:class:`fedrs.runs.TrainConfig`)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float | None = None        # None: DEFAULT_LR[variant]
    weight_decay: float = 0.0
    seed: int = 0
    lr_decay_every: int = 0
    lr_decay: float = 0.7

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 2 or self.weight_decay < 0 or self.lr_decay_every < 0 \
                or not 0 < self.lr_decay <= 1 or (self.lr is not None and self.lr <= 0):
            raise ConfigError(f"train: need epochs >= 0, batch_size >= 2 (a contrastive batch), lr > 0, "
                              f"weight_decay >= 0, lr_decay_every >= 0 and 0 < lr_decay <= 1; got {self}")


#: the PE-RSITR authors' training (their early train.py, see shared/reference/pe-rsitr.md): Adam
#: lr 2e-4, batch 16, 30 epochs, x0.7 every 20 epochs
PAPER_TRAIN = RetrievalTrainConfig(epochs=30, batch_size=16, lr=2e-4, weight_decay=0.0,
                                   lr_decay_every=20, lr_decay=0.7)


@dataclass
class RetrievalConfig:
    """One PETL variant on one caption set."""

    variant: str = "mrs-adapter-hmmc"
    dataset: str = "UCM-Captions"
    train_split: str = "train+val"  # RSICD ships "train" and "test" only
    eval_split: str = "test"
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: RetrievalTrainConfig = field(default_factory=RetrievalTrainConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown retrieval variant {self.variant!r}; choose one of {list(VARIANTS)}")

    @property
    def lr(self) -> float:
        return self.train.lr if self.train.lr is not None else DEFAULT_LR.get(self.variant, 0.0)


__all__ = ["VARIANTS", "DEFAULT_LR", "LR_SOURCE", "UNVALIDATED_LR_SOURCE", "INFONCE_HMMC_LR",
           "INFONCE_HMMC_LR_SOURCE", "FEDERATED_SGD_LR", "FEDERATED_SGD_LR_SOURCE",
           "CENTRALISED_SGD_LR", "CENTRALISED_SGD_LR_SOURCE", "PAPER_TRAIN",
           "AdapterConfig", "PromptConfig", "LossConfig", "RetrievalTrainConfig", "RetrievalConfig",
           "ValidationConfig"]
