"""PromptFL: one CoOp text prompt per client, FedAvg of the whole prompt every round.

Each client learns the context vectors ``ctx [M, W]`` of ``[SOS] ctx_1..ctx_M <class name> .
[EOS]`` on its own data with cross-entropy; the server averages ``ctx`` (sample-weighted). The
prompt is the only trainable tensor and it is uploaded whole: 4 tokens x 512 (ViT-B-16 text
width) = 2,048 values per client per round. The image side is frozen, so training and
evaluation use the cached image features. Personalised accuracy is the global prompt on each
client's test split (PromptFL has nothing private).

What the text-prompt baselines share (config keys, prompt module, loss) is
:mod:`fedrs.methods.text_prompt`.
"""

from __future__ import annotations

from typing import Sequence

from fedrs.methods.text_prompt import CoOpMethod


class PromptFL(CoOpMethod):
    """One CoOp prompt ``ctx``, trained by every client and averaged by the server."""

    name = "promptfl"
    SHAREABLE = ("ctx",)

    def declare_uploads(self) -> Sequence[str]:
        return ["ctx"]


__all__ = ["PromptFL"]
