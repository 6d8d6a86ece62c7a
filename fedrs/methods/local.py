"""Local-only prompt learning: each client trains its own CoOp prompt, nothing is communicated.

The module is PromptFL's (one context ``ctx [M, W]``, :class:`~fedrs.methods.text_prompt.CoOpMethod`),
but ``ctx`` is private: it stays in each client's state, so uploads and downloads are 0 values per
round and the server averages nothing. Personalised accuracy is each client's own prompt on its
own test split. The server holds no trained tensor, so the engine's *global* accuracy is the
untrained initial prompt on the pooled test set: ``has_global_model = False`` makes reports show
it as n/a.
"""

from __future__ import annotations

from typing import Sequence

from fedrs.methods.text_prompt import CoOpMethod


class LocalOnly(CoOpMethod):
    """PromptFL's prompt kept private: no federation."""

    name = "local"
    has_global_model = False
    SHAREABLE = ()  # nothing ever leaves a client

    def declare_uploads(self) -> Sequence[str]:
        return []


__all__ = ["LocalOnly"]
