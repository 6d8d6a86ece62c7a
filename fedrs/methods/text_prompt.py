"""What the text-prompt methods share (not a method itself: it has no registry entry).

* :class:`TextPromptConfig` -- the prompt keys (length and initialisation) of every text-prompt
  method, FedRSCLIP's included, defined once so a baseline is set up exactly like the FedRSCLIP
  run it is compared with;
* :class:`TextPromptMethod` -- the base of the text-prompt baselines: a
  :class:`~fedrs.prompts.TextPromptModule` on which the method assigns its named contexts, cached
  (frozen) image features, cross-entropy on the personalised logits plus the method's weighted
  extra terms;
* :class:`CoOpMethod` -- one learned context ``ctx [M, W]`` for all classes (CoOp, Zhou et al.,
  IJCV 2022): PromptFL uploads it, local-only keeps it private.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch

from fedrs.backbone.templates import DEFAULT_INIT_PHRASE
from fedrs.losses.classification import classification_loss
from fedrs.methods.base import Batch, Method, MethodConfig
from fedrs.prompts import TextPromptModule


@dataclass
class TextPromptConfig(MethodConfig):
    """Prompt keys every text-prompt method shares (set them as in the FedRSCLIP run compared)."""

    name: str = "promptfl"
    n_ctx: int = 4                                   # M, context tokens of each prompt
    text_init: Literal["random", "phrase"] = "random"
    init_phrase: str = DEFAULT_INIT_PHRASE           # text_init: phrase (must have n_ctx tokens)
    init_std: float = 0.02                           # N(0, std^2) for random contexts (CoOp)

    def __post_init__(self) -> None:
        if self.n_ctx < 1:
            raise ValueError(f"method.n_ctx must be >= 1, got {self.n_ctx}")
        if self.init_std < 0:
            raise ValueError(f"method.init_std must be >= 0, got {self.init_std}")


class TextPromptMethod(Method):
    """Base of the text-prompt baselines: cached (frozen) image features, CE on the personalised
    logits plus the weighted terms of :meth:`train_outputs`."""

    config_class = TextPromptConfig
    #: the family's rule: only a global prompt may leave a client (PromptFL's ``ctx``, FedPGP's
    #: ``sigma``, FedOTP's ``ctx_global``), never a low-rank factor, a local context or a visual
    #: token; each method narrows it to its own global prompt
    SHAREABLE = ("ctx", "sigma", "ctx_global")
    cfg: TextPromptConfig
    module: TextPromptModule

    def build_module(self) -> TextPromptModule:
        c = self.cfg
        module = TextPromptModule(self.backbone, self.classnames, c.n_ctx, init=c.text_init,
                                  init_phrase=c.init_phrase, init_std=c.init_std, seed=self.seed)
        self.add_prompts(module)
        return module

    @abstractmethod
    def add_prompts(self, module: TextPromptModule) -> None:
        """Assign the method's learnable tensors on ``module`` (their names are the declared ones),
        created with ``module.context()`` / ``module.matrix(...)`` in a fixed order."""

    @abstractmethod
    def class_features(self, personalised: bool = True) -> torch.Tensor:
        """Class text features ``[C, D]`` (or ``[S, C, D]`` for several prompt sets)."""

    def train_outputs(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, tuple[float, torch.Tensor]]]:
        """Personalised logits of a training batch and the extra loss terms ``{name: (weight,
        value)}`` added to the cross-entropy (none by default)."""
        return self.scores(image, personalised=True), {}

    def image_features(self, batch: Batch) -> torch.Tensor:
        """L2-normalised cached frozen image features ``[B, D]``."""
        return self.module.image_features(features=batch.features)

    def scores(self, image: torch.Tensor, personalised: bool) -> torch.Tensor:
        return self.module.logits(image, self.class_features(personalised))

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # detached tensors, read back once per client update (see FedRSCLIP.loss)
        logits, extra = self.train_outputs(self.image_features(batch))
        total = ce = classification_loss(logits, batch.labels)
        terms = {"ce": ce.detach()}
        for key, (weight, value) in extra.items():
            total = total + weight * value
            terms[key] = value.detach()
        terms["loss"] = total.detach()
        return total, terms

    def logits(self, batch: Batch, personalised: bool = True) -> torch.Tensor:
        return self.scores(self.image_features(batch), personalised)


class CoOpMethod(TextPromptMethod):
    """One CoOp context ``ctx [M, W]`` shared by all classes; a subclass declares whether it is
    uploaded."""

    def add_prompts(self, module: TextPromptModule) -> None:
        module.ctx = module.context()

    def class_features(self, personalised: bool = True) -> torch.Tensor:
        return self.module.text(self.module.ctx)


__all__ = ["TextPromptConfig", "TextPromptMethod", "CoOpMethod"]
