"""Evaluation: classification accuracy (personalised, global) here; zero-shot and retrieval
metrics in their own modules (``zeroshot``, ``retrieval``); ``fedrs zeroshot`` in ``commands``."""
