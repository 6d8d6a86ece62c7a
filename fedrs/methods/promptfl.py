"""PromptFL: one CoOp text prompt per client, FedAvg of the whole prompt every round.

Each client learns the context vectors ``ctx [M, W]`` of ``[SOS] ctx_1..ctx_M <class name> .
[EOS]`` on its own data with cross-entropy; the server averages ``ctx`` (sample-weighted). The
prompt is the only trainable tensor and it is uploaded whole: 4 tokens x 512 (ViT-B-16 text
width) = 2,048 values per client per round. The image side is frozen, so training and
evaluation use the cached image features. Personalised accuracy is the global prompt on each
client's test split (PromptFL has nothing private).

``visual_tokens: V > 0`` makes the **PromptFL+VPT** control of issue #11: the same shared ``ctx``
plus ``V`` *private* visual prompt tokens ``visual_private [depth, V, W_vis]`` on the frozen ViT
(FedRSCLIP's VPT, :class:`~fedrs.prompts.VisualPromptEncoder`), trained by each client and never
uploaded. It matches FedRSCLIP's local visual capacity without FedRSCLIP's private text prompt and
alignment terms: the upload stays ``ctx`` alone. Training and personalised accuracy then need the
images (prompted image encoder); global accuracy is ``ctx`` on the frozen image features (the
server holds no visual token). ``visual_tokens: 0`` (default) is PromptFL as published.

What the text-prompt baselines share (config keys, prompt module, loss) is
:mod:`fedrs.methods.text_prompt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from fedrs.methods.base import Batch
from fedrs.methods.text_prompt import CoOpMethod, TextPromptConfig
from fedrs.prompts import PromptError, TextPromptModule, VisualPromptEncoder


@dataclass
class PromptFLConfig(TextPromptConfig):
    """PromptFL's ``method:`` section: the prompt keys plus the private visual tokens of the
    PromptFL+VPT control (off by default: PromptFL as published, Guo et al., 2023)."""

    name: str = "promptfl"
    visual_tokens: int = 0        # V private visual prompt tokens (0: none, PromptFL as published)
    visual_depth: int = 1         # 1 = shallow VPT; d > 1 = the first d blocks (as FedRSCLIP's)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.visual_tokens < 0:
            raise ValueError(f"method.visual_tokens must be >= 0, got {self.visual_tokens}")
        if self.visual_depth < 1:
            raise ValueError(f"method.visual_depth must be >= 1, got {self.visual_depth}")


class PromptFL(CoOpMethod):
    """One CoOp prompt ``ctx``, trained by every client and averaged by the server; optionally
    private visual tokens (PromptFL+VPT)."""

    name = "promptfl"
    config_class = PromptFLConfig
    cfg: PromptFLConfig
    SHAREABLE = ("ctx",)

    def add_prompts(self, module: TextPromptModule) -> None:
        super().add_prompts(module)  # ctx first: the same seeded draw as without visual tokens
        c = self.cfg
        if c.visual_tokens:
            module.visual = VisualPromptEncoder(self.backbone.model)
            if c.visual_depth > module.visual.depth_limit:
                raise PromptError(f"method.visual_depth must be in 1..{module.visual.depth_limit} for this "
                                  f"backbone, got {c.visual_depth}")
            module.visual_private = module.matrix(c.visual_depth, c.visual_tokens, module.visual.width)

    def declare_uploads(self) -> Sequence[str]:
        return ["ctx"]

    def needs_images(self, train: bool, personalised: bool = True) -> bool:
        return bool(self.cfg.visual_tokens) and (train or personalised)

    def image_features(self, batch: Batch) -> torch.Tensor:
        """Personalised image features ``[B, D]``: through the private visual tokens when the batch
        holds images, else the cached frozen features."""
        if self.cfg.visual_tokens and batch.images is not None:
            return self.module.visual(batch.images, self.module.visual_private)
        return super().image_features(batch)

    def logits(self, batch: Batch, personalised: bool = True) -> torch.Tensor:
        if personalised or not self.cfg.visual_tokens:
            return super().logits(batch, personalised)
        # the server holds ctx only: the frozen image encoder, no visual token
        return self.scores(self.module.image_features(batch.images, batch.features), personalised=False)


__all__ = ["PromptFLConfig", "PromptFL"]
