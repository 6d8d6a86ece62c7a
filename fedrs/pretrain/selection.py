"""Choosing the offline backbone's pretraining recipe without test data (issue 11).

Candidate recipes (``fedrs/pretrain/recipes/candidates/*.yaml``) are trained from scratch with a
seeded share of the RSICD-train/AID images held out (``validation_fraction``, the same images for
every candidate: :func:`fedrs.pretrain.training.split_pretrain_validation`), and scored on that
held-out slice only:

* **retrieval**: image->caption and caption->image recall@1/5/10 and their mean (mR) over the
  held-out images and their RSICD captions (ties between equal similarities counted
  pessimistically, :data:`fedrs.evaluate.retrieval.TIES`);
* **zero-shot**: top-1 over AID's 30 classes of the held-out images, with the evaluation template
  (``a satellite photo of a {}.``, which label-captioned recipes saw in pretraining) and with
  :data:`UNSEEN_TEMPLATES`, whose fixed words never occur in any pretraining caption (checked).

The selection rule is fixed before any candidate is scored: the candidate with the highest
**selection score = (validation mR + unseen-template zero-shot top-1) / 2** wins (ties: the
earlier candidate in the given order). Neither score involves an evaluation dataset (UC Merced,
RSSCN7, EuroSAT, AID-holdout): those are reported once, for the chosen recipe, on its model card.
The shipped backbone is then the chosen recipe trained on all pretraining images (``fedrs backbone
pretrain``); it is retrained only when the choice differs from the recipe it was built with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from fedrs.backbone.templates import UNSEEN_TEMPLATES
from fedrs.config import to_dict
from fedrs.errors import BackboneError
from fedrs.io import write_json_atomic, write_text_atomic
from fedrs.pretrain.training import (
    RECIPE_DIR,
    PretrainConfig,
    load_recipe,
    pretrain,
    pretrain_items,
)

logger = logging.getLogger(__name__)

#: where the candidate recipes live
CANDIDATE_DIR = RECIPE_DIR / "candidates"

#: recipe keys that do not change what is trained (so a finished candidate can be reused)
_RUNTIME_KEYS = ("threads", "eval_datasets")


class SelectionError(BackboneError):
    """A recipe selection that cannot run as asked (no candidates, no held-out slice, ...)."""


def candidate_names() -> list[str]:
    """The shipped candidate recipes, sorted by name."""
    return sorted(p.stem for p in CANDIDATE_DIR.glob("*.yaml"))


def load_candidate(name: str) -> PretrainConfig:
    path = CANDIDATE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise SelectionError(f"no candidate recipe {name!r}; shipped candidates: {candidate_names()}")
    cfg = load_recipe("fedrs-rsclip-s", path)
    if cfg.validation_fraction <= 0:
        raise SelectionError(f"candidate {name!r} holds nothing out (validation_fraction is 0): set it in {path}")
    return cfg


def template_fragments(template: str) -> list[str]:
    """The fixed words of a template (the text around ``{}``), lower-cased, stripped of punctuation
    at the ends; fragments of fewer than two words are not distinctive and are left out."""
    out = []
    for part in template.lower().split("{}"):
        part = part.strip(" .,;:")
        if len(part.split()) >= 2:
            out.append(part)
    return out


def check_unseen_templates(templates: Sequence[str], captions: Sequence[str]) -> None:
    """Raise if a fixed fragment of any template occurs in any pretraining caption."""
    lowered = [c.lower() for c in captions]
    for template in templates:
        for fragment in template_fragments(template):
            hit = next((c for c in lowered if fragment in c), None)
            if hit is not None:
                raise SelectionError(f"template {template!r} is not unseen: {fragment!r} occurs in the "
                                     f"pretraining caption {hit!r}")


@dataclass
class ValidationSlice:
    """The held-out pretraining images: paths, AID labels (readable names) and captions."""

    paths: list[Path]
    labels: list[int]          # index into ``class_names``
    class_names: list[str]     # AID's readable class names (prompt names)
    captions: list[str]        # flat; ``caption_image[j]`` is caption j's image
    caption_image: list[int]
    pretraining_captions: list[str]  # every caption the candidate trained on (for the unseen check)


def validation_slice(cfg: PretrainConfig) -> ValidationSlice:
    """The images ``cfg`` holds out, with what scoring them needs."""
    from fedrs.data import load_scene_dataset

    train, held = pretrain_items(cfg)
    if not held:
        raise SelectionError("the recipe holds no image out (validation_fraction is 0)")
    aid = load_scene_dataset("AID")
    readable = dict(zip(aid.classnames, aid.prompt_names))
    index = {c: i for i, c in enumerate(aid.classnames)}
    captions, caption_image = [], []
    for i, it in enumerate(held):
        for c in dict.fromkeys(it.captions):  # a caption listed twice for one image is one caption
            captions.append(c)
            caption_image.append(i)
    seen = [c for it in train for c in it.captions]
    seen += [t.format(readable.get(it.label, it.label)) for it in train for t in cfg.label_templates]
    return ValidationSlice([it.path for it in held], [index[it.label] for it in held], list(aid.prompt_names),
                           captions, caption_image, seen)


@torch.no_grad()
def score_checkpoint(cfg: PretrainConfig, checkpoint: Path, data: ValidationSlice | None = None,
                     progress: bool = False) -> dict:
    """Validation scores (percent) of one trained candidate: ``val_i2t_r1 .. val_t2i_r10``,
    ``val_mR``, ``val_zeroshot_eval_template``, ``val_zeroshot_unseen_templates`` and
    ``selection_score``."""
    from fedrs.backbone.factory import create_backbone
    from fedrs.backbone.features import encode_images
    from fedrs.backbone.templates import DEFAULT_TEMPLATE, template_text_features
    from fedrs.backbone.text_tower import encode_text_tokens
    from fedrs.evaluate.retrieval import retrieval_scores

    data = data or validation_slice(cfg)
    check_unseen_templates(UNSEEN_TEMPLATES, data.pretraining_captions)
    backbone = create_backbone(cfg.model, pretrained=str(checkpoint), cache=False)
    images = F.normalize(encode_images(backbone, data.paths, progress=progress).float(), dim=-1)
    texts = []
    for start in range(0, len(data.captions), 256):
        tokens = backbone.tokenizer(data.captions[start:start + 256]).to(backbone.device)
        texts.append(encode_text_tokens(backbone.model, tokens).features.float())
    texts = F.normalize(torch.cat(texts), dim=-1)
    scores = retrieval_scores(images, texts, data.caption_image, ties="pessimistic")
    labels = torch.tensor(data.labels)

    def top1(templates) -> float:
        classes = template_text_features(backbone, data.class_names, templates)
        return float((images @ classes.T).argmax(dim=1).eq(labels).float().mean() * 100)

    row = {f"val_{k}": round(v, 2) for k, v in scores.as_row().items()}
    row["val_zeroshot_eval_template"] = round(top1([DEFAULT_TEMPLATE]), 2)
    row["val_zeroshot_unseen_templates"] = round(top1(list(UNSEEN_TEMPLATES)), 2)
    row["selection_score"] = round((row["val_mR"] + row["val_zeroshot_unseen_templates"]) / 2, 2)
    row["val_images"] = len(data.paths)
    row["val_captions"] = len(data.captions)
    return row


def choose_candidate(rows: Sequence[dict]) -> dict:
    """The selection rule: the row with the highest ``selection_score``; ties go to the earlier row."""
    if not rows:
        raise SelectionError("no scored candidate to choose from")
    best = rows[0]
    for row in rows[1:]:
        if row["selection_score"] > best["selection_score"]:
            best = row
    return best


def _same_training(a: dict, b: dict) -> bool:
    strip = lambda d: {k: v for k, v in d.items() if k not in _RUNTIME_KEYS}  # noqa: E731
    return strip(a) == strip(b)


def train_candidate(name: str, workdir: Path, progress: bool = True, threads: int | None = None) -> Path:
    """Train candidate ``name`` into ``workdir/name`` (resuming; reusing a finished checkpoint of the
    same recipe) and return its checkpoint path."""
    import json

    from fedrs.backbone.factory import CHECKPOINT_NAME

    cfg = load_candidate(name)
    if threads:
        cfg.threads = threads
    out = Path(workdir) / name
    card_file, ckpt = out / "model_card.json", out / CHECKPOINT_NAME
    if card_file.is_file() and ckpt.is_file():
        card = json.loads(card_file.read_text())
        if _same_training(card.get("recipe", {}), to_dict(cfg)):
            return ckpt
        raise SelectionError(f"{out} holds a checkpoint of a different recipe than candidate {name!r}; "
                             f"delete the folder or pass another --workdir")
    pretrain(cfg, out_dir=out, resume=True, progress=progress)
    return ckpt


def select_recipe(names: Sequence[str], workdir: Path, out_dir: Path | None = None, train: bool = True,
                  progress: bool = True, threads: int | None = None) -> dict:
    """Train (if needed) and score every candidate, apply the selection rule, and write
    ``selection.json`` and ``SELECTION.md`` into ``out_dir``; returns the record."""
    from fedrs.backbone.factory import CHECKPOINT_NAME
    from fedrs.hardware import cpu_identity

    if not names:
        raise SelectionError(f"no candidate recipes given; shipped candidates: {candidate_names()}")
    configs = {n: load_candidate(n) for n in names}
    slices = {(c.validation_fraction, c.validation_seed, c.max_images) for c in configs.values()}
    if len(slices) != 1:
        raise SelectionError("candidates hold out different images (validation_fraction/validation_seed/"
                             "max_images differ); a selection compares them on one slice")
    rows = []
    data = None
    for name in names:
        ckpt = (train_candidate(name, workdir, progress, threads) if train
                else Path(workdir) / name / CHECKPOINT_NAME)
        if not ckpt.is_file():
            raise SelectionError(f"candidate {name!r} is not trained ({ckpt} is missing): run without --no-train")
        cfg = configs[name]
        if data is None:
            data = validation_slice(cfg)
        else:  # the unseen check needs each candidate's own label captions
            data.pretraining_captions = validation_slice(cfg).pretraining_captions
        logger.info("scoring candidate %s on %d held-out images", name, len(data.paths))
        row = {"candidate": name, **score_checkpoint(cfg, ckpt, data)}
        rows.append(row)
    best = choose_candidate(rows)
    shipped = load_recipe("fedrs-rsclip-s")
    chosen_cfg = configs[best["candidate"]]
    record = {
        "rule": "highest (validation mR + unseen-template zero-shot top-1) / 2; ties: the earlier candidate",
        "held_out": {"fraction": chosen_cfg.validation_fraction, "seed": chosen_cfg.validation_seed,
                     "images": best["val_images"], "captions": best["val_captions"],
                     "source": "RSICD training images with an AID image (with their RSICD captions)"},
        "unseen_templates": list(UNSEEN_TEMPLATES),
        "candidates": rows,
        "chosen": best["candidate"],
        # the shipped recipe trains on everything; the candidate differs from it only by its held-out slice
        "shipped_recipe_matches": _same_training(to_dict(shipped),
                                                 {**to_dict(chosen_cfg), "validation_fraction": 0.0}),
        "host": cpu_identity(),
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out_dir / "selection.json", record)
        write_text_atomic(out_dir / "SELECTION.md", selection_markdown(record))
    return record


def card_selection(record: dict, recipe: dict) -> dict | None:
    """What a model card of ``recipe`` (a trained recipe as a dict) says about the selection
    ``record``: ``None`` unless the record chose that recipe (the card's model trained on everything,
    the chosen candidate without the held-out slice)."""
    chosen = next((r for r in record.get("candidates", []) if r["candidate"] == record.get("chosen")), None)
    if chosen is None:
        return None
    try:
        candidate = to_dict(load_candidate(record["chosen"]))
    except SelectionError:
        return None
    # through the config class, so a card written before a field existed reads with its default
    known = set(PretrainConfig.__dataclass_fields__)
    recipe = to_dict(PretrainConfig(**{k: v for k, v in recipe.items() if k in known}))
    if not _same_training(recipe, {**candidate, "validation_fraction": 0.0}):
        return None
    return {"chosen": record["chosen"], "candidates": [r["candidate"] for r in record["candidates"]],
            "rule": record["rule"], "held_out_images": record["held_out"]["images"],
            **{k: chosen[k] for k in ("val_mR", "val_zeroshot_unseen_templates", "val_zeroshot_eval_template",
                                      "selection_score")}}


def read_selection(model: str) -> dict | None:
    """``results/backbones/<model>/selection.json`` if there is one."""
    import json

    from fedrs.paths import results_root

    path = results_root() / "backbones" / model / "selection.json"
    return json.loads(path.read_text()) if path.is_file() else None


def rescore_model_card(model: str, card_dirs: Sequence[Path] = ()) -> dict:
    """Recompute the zero-shot rows (every column, the unseen templates included) and the selection
    section of the built offline backbone ``model``'s model card, without retraining; write it to
    the model folder and every folder in ``card_dirs``. Returns the card."""
    import json

    from fedrs.backbone.factory import CHECKPOINT_NAME, file_fingerprint
    from fedrs.paths import models_root
    from fedrs.pretrain.training import _card_zero_shot, write_model_card

    folder = models_root() / model
    card_file, ckpt = folder / "model_card.json", folder / CHECKPOINT_NAME
    if not card_file.is_file() or not ckpt.is_file():
        raise BackboneError(f"no built {model} with a model card in {folder}: build it with "
                            f"`fedrs backbone pretrain --model {model}`")
    card = json.loads(card_file.read_text())
    if file_fingerprint(ckpt) != card["checkpoint_sha256"]:
        raise BackboneError(f"{ckpt} is not the checkpoint its model card describes (sha256 differs): "
                            f"rebuild it with `fedrs backbone pretrain --model {model} --restart`")
    known = set(PretrainConfig.__dataclass_fields__)
    cfg = PretrainConfig(**{k: v for k, v in card["recipe"].items() if k in known})
    card["zero_shot"] = _card_zero_shot(cfg, ckpt, progress=False)
    record = read_selection(model)
    selection = card_selection(record, card["recipe"]) if record else None
    card.pop("selection", None)
    if selection:
        card["selection"] = selection
    for out in [folder, *card_dirs]:
        write_model_card(card, Path(out))
    return card


def selection_markdown(record: dict) -> str:
    held = record["held_out"]
    lines = [
        "# Recipe selection for the offline backbone (fedrs-rsclip-s)",
        "",
        f"Every candidate was pretrained from scratch with {held['images']:,} of the RSICD-train/AID images "
        f"({held['fraction']:.0%}, seed {held['seed']}) held out, and scored on those images only: "
        f"retrieval against their {held['captions']:,} RSICD captions (recall %, ties pessimistic) and "
        "zero-shot top-1 over AID's 30 classes. No evaluation dataset (UC Merced, RSSCN7, EuroSAT, "
        "AID-holdout) was looked at to choose.",
        "",
        f"Rule (fixed before scoring): {record['rule']}.",
        "",
        "Unseen templates (their fixed words occur in no pretraining caption; checked): "
        + ", ".join(f"`{t}`" for t in record["unseen_templates"]) + ".",
        "",
        "| candidate | I2T R@1/5/10 | T2I R@1/5/10 | val mR | zero-shot, eval template | "
        "zero-shot, unseen templates | selection score |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in record["candidates"]:
        mark = "**" if r["candidate"] == record["chosen"] else ""
        lines.append(
            f"| {mark}{r['candidate']}{mark} | {r['val_i2t_r1']:.1f}/{r['val_i2t_r5']:.1f}/{r['val_i2t_r10']:.1f} | "
            f"{r['val_t2i_r1']:.1f}/{r['val_t2i_r5']:.1f}/{r['val_t2i_r10']:.1f} | {r['val_mR']:.2f} | "
            f"{r['val_zeroshot_eval_template']:.1f} | {r['val_zeroshot_unseen_templates']:.1f} | "
            f"{mark}{r['selection_score']:.2f}{mark} |")
    lines += [
        "",
        f"Chosen: **{record['chosen']}**. "
        + ("It is the recipe the shipped backbone was already built with, so the shipped checkpoint "
           "(trained on all pretraining images) stands." if record["shipped_recipe_matches"] else
           "It differs from the recipe the shipped backbone was built with: the backbone is retrained "
           "with it on all pretraining images."),
        "",
        "The evaluation-template column is not used to choose: label-captioned recipes saw that template "
        "in pretraining, so it favours them.",
        "",
    ]
    return "\n".join(lines)


__all__ = [
    "CANDIDATE_DIR", "UNSEEN_TEMPLATES", "SelectionError", "ValidationSlice", "candidate_names", "card_selection",
    "check_unseen_templates", "choose_candidate", "load_candidate", "read_selection", "rescore_model_card",
    "score_checkpoint", "select_recipe", "selection_markdown", "template_fragments", "train_candidate",
    "validation_slice",
]
