"""Building an offline backbone where the factory finds it: the one place that decides whether a
checkpoint is there, whether to resume or retrain, and where the model card goes.

``fedrs backbone pretrain`` and :func:`fedrs.study.ensure_ready` both call this module; what it
reports goes to the ``fedrs.pretrain.build`` logger (the CLI shows it on stdout).
"""

from __future__ import annotations

import logging
from pathlib import Path

from fedrs.backbone.factory import CHECKPOINT_NAME
from fedrs.errors import BackboneError
from fedrs.paths import models_root, results_root

from .selection import card_selection, read_selection
from .training import load_recipe, pretrain, write_model_card

logger = logging.getLogger(__name__)


def build_offline_backbone(model: str, *, recipe: str | Path | None = None,
                           overrides: dict | None = None, out_dir: str | Path | None = None,
                           if_missing: bool = False, restart: bool = False,
                           card: bool = True) -> Path:
    """Pretrain the offline backbone ``model`` and return its checkpoint path.

    Args:
        model: an offline fedrs model (``fedrs-rsclip-s``, ``fedrs-rsclip-tiny``).
        recipe: a YAML recipe; default: the shipped recipe for ``model``.
        overrides: dotted-key recipe overrides (``{"epochs": 8}``).
        out_dir: where the checkpoint goes; default ``$FEDRS_MODELS/<model>`` (where the factory
            looks for it).
        if_missing: do nothing when the checkpoint exists.
        restart: forget a saved resume point and train from scratch (otherwise training resumes
            after the last finished epoch).
        card: also copy the model card to ``$FEDRS_RESULTS/backbones/<model>/``.

    An existing checkpoint without a resume point is kept unless ``restart`` (nothing to resume,
    and retraining by accident would cost the whole pretraining time).
    """
    cfg = load_recipe(model, recipe, overrides)
    out_dir = Path(out_dir) if out_dir else models_root() / cfg.model
    if out_dir.exists() and not out_dir.is_dir():
        raise BackboneError(f"the backbone's output folder is a file ({out_dir}): give --out a folder path")
    ckpt = out_dir / CHECKPOINT_NAME
    state_file = out_dir / "pretrain_state.pt"
    if if_missing and ckpt.is_file():
        logger.info("%s: checkpoint present at %s; nothing to do (drop --if-missing to retrain)",
                    cfg.model, ckpt)
        return ckpt
    if ckpt.is_file() and not (restart or if_missing) and not state_file.is_file():
        logger.info("%s: checkpoint present at %s; pass --restart to train again", cfg.model, ckpt)
        return ckpt
    if restart:
        state_file.unlink(missing_ok=True)
    card_dirs = [results_root() / "backbones" / cfg.model] if card else []
    trained = pretrain(cfg, out_dir=out_dir, resume=not restart, card_dirs=card_dirs)
    record = read_selection(cfg.model)
    selection = card_selection(record, trained["recipe"]) if record else None
    if selection:  # the recipe was chosen on held-out images: the card says how
        trained["selection"] = selection
        for folder in [out_dir, *card_dirs]:
            write_model_card(trained, folder)
    logger.info("%s: trained in %.1f min -> %s", cfg.model, trained["train_wall_seconds"] / 60, ckpt)
    for row in trained["zero_shot"]:
        if "error" not in row:
            logger.info("  zero-shot %-12s top-1 %5.1f%%  (ensemble %5.1f%%, chance %.1f%%)",
                        row["dataset"], row["top1"], row.get("top1_ensemble", float("nan")),
                        row["chance"])
    return ckpt


def ensure_offline_backbone(model: str, card: bool = False) -> Path:
    """The checkpoint of the offline backbone ``model``, pretrained first with its shipped recipe
    when missing (resuming a saved resume point). A no-op when the checkpoint exists.

    ``card`` also copies the model card to ``$FEDRS_RESULTS/backbones/<model>/`` (off by default:
    a notebook's smoke run should not rewrite the committed card).
    """
    return build_offline_backbone(model, if_missing=True, card=card)
