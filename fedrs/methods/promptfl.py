"""PromptFL: one CoOp text prompt per client, FedAvg of the whole prompt every round.

Each client learns the context vectors ``ctx [M, W]`` of ``[SOS] ctx_1..ctx_M <class name> .
[EOS]`` on its own data with cross-entropy; the server averages ``ctx`` (sample-weighted). The
prompt is the only trainable tensor and it is uploaded whole: 4 tokens x 512 (ViT-B-16 text
width) = 2,048 values per client per round. The image side is frozen, so training and
evaluation use the cached image features. Personalised accuracy is the global prompt on each
client's test split (PromptFL has nothing private).

This module also holds what the text-prompt baselines share (local-only, FedPGP-style,
FedOTP-style): :class:`TextPromptConfig` (prompt length and initialisation, the same keys as
FedRSCLIP's) and :class:`TextPromptMethod`, a frozen CLIP plus named learnable contexts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fedrs.losses.classification import classification_loss
from fedrs.methods.base import Batch, Method, MethodConfig
from fedrs.prompts import TextPromptEncoder


@dataclass
class TextPromptConfig(MethodConfig):
    """Prompt keys every text-prompt baseline shares (set them as in the FedRSCLIP run compared)."""

    name: str = "promptfl"
    n_ctx: int = 4                                   # M, context tokens of each prompt
    text_init: Literal["random", "phrase"] = "random"
    init_phrase: str = "a satellite photo of a"      # text_init: phrase (must have n_ctx tokens)
    init_std: float = 0.02                           # N(0, std^2) for random contexts (CoOp)

    def __post_init__(self) -> None:
        if self.n_ctx < 1:
            raise ValueError(f"method.n_ctx must be >= 1, got {self.n_ctx}")
        if self.init_std < 0:
            raise ValueError(f"method.init_std must be >= 0, got {self.init_std}")


class TextPrompts(nn.Module):
    """A frozen CLIP (referenced, not registered) and the learnable contexts a method adds.

    ``context()`` / ``matrix(*shape)`` create initialised parameters; the method assigns them as
    attributes, so its parameter names are the names it declares and uploads.
    """

    def __init__(self, backbone, classnames: Sequence[str], cfg: TextPromptConfig, seed: int):
        super().__init__()
        object.__setattr__(self, "_backbone", backbone)
        self.text = TextPromptEncoder(backbone.model, backbone.tokenizer, classnames, cfg.n_ctx)
        self._cfg = cfg
        self._gen = torch.Generator().manual_seed(seed)

    def matrix(self, *shape: int) -> nn.Parameter:
        """A parameter drawn from N(0, init_std^2) by the module's seeded generator."""
        value = torch.randn(*shape, generator=self._gen) * self._cfg.init_std
        return nn.Parameter(value.to(self.text.prefix.device))

    def context(self) -> nn.Parameter:
        """A ``[M, W]`` text context: random (CoOp) or the embeddings of ``init_phrase``."""
        if self._cfg.text_init == "phrase":
            return nn.Parameter(self.text.phrase_init(self._backbone.tokenizer, self._cfg.init_phrase))
        return self.matrix(self.text.n_ctx, self.text.width)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self._backbone.model.logit_scale.exp().detach()

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """``logit_scale.exp() * v @ t.T`` for ``t [C, D]``, or ``[S, B, C]`` for ``t [S, C, D]``."""
        return self.logit_scale * image_features @ text_features.transpose(-1, -2)


class TextPromptMethod(Method):
    """Base of the text-prompt baselines: cached (frozen) image features, CE on the personalised
    logits plus the weighted terms of :meth:`train_outputs`."""

    config_class = TextPromptConfig
    cfg: TextPromptConfig

    def build_module(self) -> TextPrompts:
        module = TextPrompts(self.backbone, self.classnames, self.cfg, self.seed)
        self.add_prompts(module)
        return module

    def add_prompts(self, module: TextPrompts) -> None:
        """Assign the method's learnable tensors on ``module`` (their names are the declared ones)."""
        raise NotImplementedError

    def class_features(self, personalised: bool = True) -> torch.Tensor:
        """Class text features ``[C, D]`` (or ``[S, C, D]`` for several prompt sets)."""
        raise NotImplementedError

    def train_outputs(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, tuple[float, torch.Tensor]]]:
        """Personalised logits of a training batch and the extra loss terms ``{name: (weight,
        value)}`` added to the cross-entropy (none by default)."""
        return self.scores(image, personalised=True), {}

    @staticmethod
    def image_features(batch: Batch) -> torch.Tensor:
        return F.normalize(batch.features.float(), dim=-1)

    def scores(self, image: torch.Tensor, personalised: bool) -> torch.Tensor:
        return self.module.logits(image, self.class_features(personalised))

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        logits, extra = self.train_outputs(self.image_features(batch))
        total = ce = classification_loss(logits, batch.labels)
        terms = {"ce": ce.item()}
        for key, (weight, value) in extra.items():
            total = total + weight * value
            terms[key] = value.item()
        terms["loss"] = total.item()
        return total, terms

    def logits(self, batch: Batch, personalised: bool = True) -> torch.Tensor:
        return self.scores(self.image_features(batch), personalised)


class PromptFL(TextPromptMethod):
    """One CoOp prompt ``ctx``, trained by every client and averaged by the server."""

    name = "promptfl"

    def add_prompts(self, module: TextPrompts) -> None:
        module.ctx = module.context()

    def declare_uploads(self) -> Sequence[str]:
        return ["ctx"]

    def class_features(self, personalised: bool = True) -> torch.Tensor:
        return self.module.text(self.module.ctx)


__all__ = ["TextPromptConfig", "TextPrompts", "TextPromptMethod", "PromptFL"]
