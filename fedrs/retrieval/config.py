"""Typed configuration of PE-RSITR retrieval runs (loaded with :func:`fedrs.config.load_config`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedrs.config import ConfigError
from fedrs.losses.retrieval import HMMCConfig

#: the PETL variants of the comparison harness, in table order
VARIANTS = ("zero-shot", "linear-probe", "coop", "vpt", "adapter", "mrs-adapter",
            "mrs-adapter-hmmc", "full-finetune")

#: AdamW learning rate per variant when ``train.lr`` is not set
DEFAULT_LR = {
    "linear-probe": 1e-4, "coop": 2e-3, "vpt": 1e-3, "adapter": 1e-3, "mrs-adapter": 1e-3,
    "mrs-adapter-hmmc": 1e-3, "full-finetune": 1e-5,
}


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
class RetrievalTrainConfig:
    """Centralised PETL training (AdamW epochs over one caption set). A federated run does not use
    it: its clients train with the run's ``train`` section (:class:`fedrs.runs.TrainConfig`)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float | None = None        # None: DEFAULT_LR[variant]
    weight_decay: float = 0.0
    seed: int = 0


@dataclass
class RetrievalConfig:
    """One PETL variant on one caption set."""

    variant: str = "mrs-adapter-hmmc"
    dataset: str = "UCM-Captions"
    eval_split: str = "test"
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: RetrievalTrainConfig = field(default_factory=RetrievalTrainConfig)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown retrieval variant {self.variant!r}; choose one of {list(VARIANTS)}")

    @property
    def lr(self) -> float:
        return self.train.lr if self.train.lr is not None else DEFAULT_LR.get(self.variant, 0.0)


#: the former name, kept only until benchmarks/bench_retrieval.py imports
#: RetrievalTrainConfig (there was a second ``TrainConfig``, the run's, in fedrs.runs)
TrainConfig = RetrievalTrainConfig

__all__ = ["VARIANTS", "DEFAULT_LR", "AdapterConfig", "PromptConfig", "LossConfig", "RetrievalTrainConfig",
           "RetrievalConfig"]
