"""Pretraining of the offline default backbone on RSICD captions.

No pretrained CLIP weights exist on an offline machine, so fedrs trains a small CLIP from scratch
with open_clip's own model class (``open_clip.create_model``) and contrastive loss
(``open_clip.loss.ClipLoss``) on the RSICD training captions over their AID images (8,973 images x
5 captions), optionally adding captions derived from each image's AID class label the way
RemoteCLIP turns labels into captions. The result is an open_clip checkpoint under
``$FEDRS_MODELS/<model>/open_clip_model.pt`` that ``create_backbone(<model>)`` loads through the same
path as real weights, plus a model card (JSON + Markdown).

It never sees evaluation images: UC Merced, RSSCN7, EuroSAT and the AID images outside RSICD
training ("AID-holdout") are disjoint from the pretraining set (asserted at run time).

Training is deterministic for a seed (the data order and augmentation of epoch ``e`` come from a
generator seeded with ``(seed, e)``), shows progress, and resumes from the last finished epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from tqdm.auto import tqdm

from fedrs.backbone.factory import (
    CHECKPOINT_NAME,
    MODEL_CONFIG_DIR,
    OFFLINE_MODELS,
    clear_backbone_cache,
    expected_random_init,
)
from fedrs.config import ConfigError, dump_yaml, load_config, to_dict
from fedrs.errors import BackboneError
from fedrs.hardware import cpu_identity
from fedrs.io import save_torch_atomic, write_json_atomic, write_text_atomic
from fedrs.paths import cache_root, models_root

logger = logging.getLogger(__name__)

RECIPE_DIR = Path(__file__).parent / "recipes"


@dataclass
class PretrainConfig:
    """A pretraining recipe (``fedrs/pretrain/recipes/<model>.yaml``)."""

    model: str = "fedrs-rsclip-s"
    epochs: int = 16
    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_fraction: float = 0.1  # one-cycle: linear warm-up share of all steps, then cosine to 0
    seed: int = 0
    #: captions made from each image's AID class, added to its 5 RSICD captions; empty = none
    label_templates: list[str] = field(default_factory=lambda: ["a satellite photo of a {}.", "an aerial image of {}."])
    #: random resized crop: smallest kept area fraction (1.0 = no crop)
    crop_min_area: float = 0.5
    #: random rotations by multiples of 90 degrees and flips (aerial scenes have no "up")
    dihedral: bool = True
    #: decode images once at this size (>= model resolution; crops are taken from it)
    decode_size: int = 80
    #: use only the first N pretraining images (test-sized variants); None = all
    max_images: int | None = None
    #: share of the RSICD-train/AID images (with their captions) held out of training for recipe
    #: selection (issue 11: recipes are chosen on this slice, never on the evaluation datasets);
    #: 0 = train on all of them (the shipped backbone, once its recipe is chosen)
    validation_fraction: float = 0.0
    #: seed of the held-out slice (independent of the training seed, so every candidate recipe
    #: holds out the same images)
    validation_seed: int = 0
    #: evaluate zero-shot on these datasets for the model card after training
    eval_datasets: list[str] = field(default_factory=lambda: ["UCMerced", "RSSCN7", "EuroSAT", "AID-holdout"])
    threads: int | None = None

    def __post_init__(self):
        if self.model not in OFFLINE_MODELS:
            raise ValueError(f"model {self.model!r} is not an offline fedrs model; choose one of {OFFLINE_MODELS}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be >= 1 and batch_size >= 2")
        if not 0 < self.crop_min_area <= 1:
            raise ValueError("crop_min_area must be in (0, 1]")
        if not 0 <= self.validation_fraction < 0.5:
            raise ValueError(f"validation_fraction must be in [0, 0.5), got {self.validation_fraction}")


def load_recipe(model: str, path: str | Path | None = None, overrides: dict | None = None) -> PretrainConfig:
    """The shipped recipe for ``model`` (or a user YAML), with dotted-key overrides."""
    file = Path(path) if path else RECIPE_DIR / f"{model}.yaml"
    if not file.is_file():
        raise ConfigError(f"no pretraining recipe {file}; "
                          f"shipped recipes: {[p.stem for p in RECIPE_DIR.glob('*.yaml')]}")
    return load_config(PretrainConfig, file, overrides)


# --------------------------------------------------------------------------------------------
# data: RSICD training captions over AID images, decoded once into a uint8 tensor


@dataclass
class PretrainData:
    images: torch.Tensor  # [N, 3, S, S] uint8
    captions: torch.Tensor  # [N, C, context_length] token ids (RSICD captions then label captions)
    image_ids: list[str]
    num_rsicd_captions: int
    num_label_captions: int


def split_pretrain_validation(items: list, fraction: float, seed: int) -> tuple[list, list]:
    """``(train, validation)``: a seeded ``fraction`` of ``items`` (caption-set items, one per image)
    held out for recipe selection. The draw depends only on the image ids, the fraction and the seed,
    so every candidate recipe holds out the same images; both lists keep the input order."""
    if fraction <= 0:
        return list(items), []
    ids = sorted(it.image_id for it in items)
    rng = np.random.default_rng(seed)
    n_val = max(1, round(fraction * len(ids)))
    held = set(ids[i] for i in rng.permutation(len(ids))[:n_val])
    return [it for it in items if it.image_id not in held], [it for it in items if it.image_id in held]


def pretrain_items(cfg: PretrainConfig) -> tuple[list, list]:
    """``(trained, held out)``: the RSICD training items with an AID image (the first
    ``max_images`` if set), split by the recipe's validation slice."""
    from fedrs.data import load_caption_set

    items = load_caption_set("RSICD", split="train").with_images().items
    if cfg.max_images:
        items = items[: cfg.max_images]
    return split_pretrain_validation(items, cfg.validation_fraction, cfg.validation_seed)


def _decode_square(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


def load_pretrain_data(cfg: PretrainConfig, tokenizer, progress: bool = True) -> PretrainData:
    """RSICD train items with an AID image, decoded to ``decode_size`` and tokenised (cached)."""
    from concurrent.futures import ThreadPoolExecutor

    from fedrs.data import load_scene_dataset

    items, _ = pretrain_items(cfg)
    if not items:
        raise BackboneError("no RSICD training image found: run `fedrs data import` on AID.zip and RSICD/")
    _assert_disjoint_from_evaluation([it.path for it in items], cfg.eval_datasets)

    aid = load_scene_dataset("AID")
    readable = dict(zip(aid.classnames, aid.prompt_names))
    key = hashlib.sha256(
        json.dumps([cfg.decode_size, [str(it.path.name) for it in items]]).encode()
    ).hexdigest()[:16]
    cache_file = cache_root() / "pretrain" / f"rsicd-aid-{cfg.decode_size}px-{key}.pt"
    if cache_file.is_file():
        images = torch.load(cache_file, weights_only=True)
    else:
        with ThreadPoolExecutor(max_workers=2) as pool:
            arrays = list(tqdm(pool.map(lambda it: _decode_square(it.path, cfg.decode_size), items),
                               total=len(items), desc="decoding RSICD/AID images", disable=not progress))
        images = torch.from_numpy(np.stack(arrays))
        save_torch_atomic(cache_file, images)

    texts = []
    for it in items:
        caps = list(it.captions)[:5]
        caps += [caps[-1]] * (5 - len(caps))
        label = readable.get(it.label, it.label)
        texts.append(caps + [t.format(label) for t in cfg.label_templates])
    flat = [t for row in texts for t in row]
    tokens = tokenizer(flat).view(len(items), len(texts[0]), -1)
    return PretrainData(images, tokens, [it.image_id for it in items], 5, len(cfg.label_templates))


def _assert_disjoint_from_evaluation(paths, eval_datasets) -> None:
    """Fail if any pretraining image is also an evaluation image (by file)."""
    from fedrs.data import load_scene_dataset

    train = {Path(p).resolve() for p in paths}
    for name in eval_datasets:
        try:
            ds = load_scene_dataset(name)
        except Exception:  # noqa: BLE001 - a dataset not imported cannot overlap
            continue
        overlap = train.intersection(Path(p).resolve() for p in ds.paths)
        if overlap:
            raise BackboneError(
                f"{len(overlap)} pretraining images are also evaluation images of {name} "
                f"(e.g. {sorted(overlap)[0]}); evaluation must use AID-holdout, not AID"
            )


# --------------------------------------------------------------------------------------------
# augmentation on uint8 batches, vectorised


def augment(images: torch.Tensor, out_size: int, cfg: PretrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Random resized crop + dihedral transform of ``[B, 3, S, S]`` uint8 -> ``[B, 3, out, out]`` float in [0, 1].

    One affine grid per sample: side fraction ``r = sqrt(area)``, a random offset keeping the
    crop inside the image, rotation by ``k * 90`` degrees and an optional mirror.
    """
    b = images.shape[0]
    x = images.float().div_(255.0)
    area = torch.empty(b).uniform_(cfg.crop_min_area, 1.0, generator=gen)
    r = area.sqrt()
    tx = (torch.rand(b, generator=gen) * 2 - 1) * (1 - r)
    ty = (torch.rand(b, generator=gen) * 2 - 1) * (1 - r)
    if cfg.dihedral:
        k = torch.randint(0, 4, (b,), generator=gen).float() * (math.pi / 2)
        mirror = torch.randint(0, 2, (b,), generator=gen).float() * 2 - 1
    else:
        k = torch.zeros(b)
        mirror = torch.ones(b)
    cos, sin = torch.cos(k).round(), torch.sin(k).round()
    theta = torch.stack([
        torch.stack([r * cos * mirror, -r * sin, tx], dim=1),
        torch.stack([r * sin * mirror, r * cos, ty], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, (b, 3, out_size, out_size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def center_resize(images: torch.Tensor, out_size: int) -> torch.Tensor:
    return F.interpolate(images.float().div(255.0), size=(out_size, out_size), mode="bilinear",
                         antialias=True, align_corners=False)


# --------------------------------------------------------------------------------------------
# training


#: the name this module's tests and older callers import (the helper lives in the backbone factory)
_expected_random_init = expected_random_init


def _rng_state() -> dict:
    """The torch RNG state saved with a resume point (a tensor: loadable with ``weights_only``).
    Training draws only from seeded ``torch.Generator`` objects, so neither this nor numpy's
    global state is needed to resume bit-identically; it is kept for inspection."""
    return {"torch": torch.get_rng_state()}


def _numpy_safe_globals() -> list:
    """What unpickling the numpy RNG tuple of resume points written before fedrs saved the torch
    state only needs: array reconstruction and dtypes, no code (for :func:`_load_resume_point`)."""
    import numpy.core.multiarray as multiarray  # noqa: PLC0415 - numpy 1.x and 2.x both have it

    return [multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _load_resume_point(state_file: Path) -> dict:
    """The resume point, loaded with ``torch.load(weights_only=True)``: tensors and plain data only,
    so a crafted ``pretrain_state.pt`` cannot run code. One that holds anything else is refused."""
    import pickle

    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            state = torch.load(state_file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError):
        raise BackboneError(f"the pretraining resume point is damaged or holds objects other than tensors and "
                            f"plain data, which fedrs never unpickles ({state_file}): delete it or pass "
                            f"--restart to train from scratch") from None
    needed = {"config", "model", "optimizer", "scheduler", "epoch", "history", "elapsed"}
    if not isinstance(state, dict) or not needed <= set(state):
        raise BackboneError(f"the pretraining resume point is not one fedrs wrote ({state_file}): delete it "
                            f"or pass --restart to train from scratch")
    return state


def _normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


def pretrain(cfg: PretrainConfig, out_dir: Path | None = None, resume: bool = True, progress: bool = True,
             card_dirs: list[Path] | None = None, max_epochs_this_call: int | None = None) -> dict | None:
    """Train ``cfg.model`` from scratch; returns the model card (dict).

    ``max_epochs_this_call`` trains at most that many epochs, saves the resume point and returns
    ``None`` (time-sliced machines; a later call resumes bit-identically).

    Writes ``out_dir/open_clip_model.pt`` (open_clip state dict), ``out_dir/model_card.{json,md}``
    and, while training, ``out_dir/pretrain_state.pt`` (resume point, removed when done). Card
    copies go to every folder in ``card_dirs`` (e.g. ``results/backbones/<model>/``).
    """
    out_dir = Path(out_dir) if out_dir else models_root() / cfg.model
    out_dir.mkdir(parents=True, exist_ok=True)
    state_file = out_dir / "pretrain_state.pt"
    # the resume point is read (safely) and checked before the data: a bad one fails in seconds
    state = _load_resume_point(state_file) if resume and state_file.is_file() else None
    if state is not None and state.get("config") != to_dict(cfg):
        raise BackboneError(
            f"{state_file} was written by a different recipe; delete it or pass --restart"
        )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    with expected_random_init(cfg.model):
        model = open_clip.create_model(cfg.model, pretrained=None)
    tokenizer = open_clip.get_tokenizer(cfg.model)
    image_size = model.visual.image_size[0]
    mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    t_load = time.time()
    data = load_pretrain_data(cfg, tokenizer, progress=progress)
    n = data.images.shape[0]
    steps_per_epoch = n // cfg.batch_size if n >= cfg.batch_size else 1
    batch_size = min(cfg.batch_size, n)
    total_steps = steps_per_epoch * cfg.epochs

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6,
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=total_steps, pct_start=cfg.warmup_fraction,
        anneal_strategy="cos", cycle_momentum=False, div_factor=25.0, final_div_factor=1e3,
    )
    loss_fn = ClipLoss()
    start_epoch, history, elapsed = 0, [], 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, history, elapsed = state["epoch"], state["history"], state["elapsed"]
        if progress:
            logger.info("resuming %s pretraining after epoch %d/%d", cfg.model, start_epoch, cfg.epochs)

    t0 = time.time()
    model.train()
    stop_epoch = cfg.epochs if max_epochs_this_call is None else min(cfg.epochs, start_epoch + max_epochs_this_call)
    for epoch in range(start_epoch, stop_epoch):
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        order = torch.randperm(n, generator=gen)
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"pretrain {cfg.model} epoch {epoch + 1}/{cfg.epochs}",
                   disable=not progress, unit="step")
        for step in bar:
            idx = order[step * batch_size:(step + 1) * batch_size]
            images = _normalize(augment(data.images[idx], image_size, cfg, gen), mean, std)
            choice = torch.randint(0, data.captions.shape[1], (len(idx),), generator=gen)
            tokens = data.captions[idx, choice]
            image_f, text_f, scale = model(images, tokens)
            loss = loss_fn(image_f, text_f, scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():  # CLIP clamps the learned temperature at 100
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}")
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr_end": scheduler.get_last_lr()[0]})
        save_torch_atomic(state_file, {
            "config": to_dict(cfg), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "history": history,
            "elapsed": elapsed + (time.time() - t0), "rng": _rng_state(),
        })
    train_seconds = elapsed + (time.time() - t0)
    if stop_epoch < cfg.epochs:
        return None

    model.eval()
    ckpt = out_dir / CHECKPOINT_NAME
    save_torch_atomic(ckpt, model.state_dict())
    clear_backbone_cache()

    card = {
        "model": cfg.model,
        "architecture": json.loads((MODEL_CONFIG_DIR / f"{cfg.model}.json").read_text()),
        "parameters": sum(p.numel() for p in model.parameters()),
        "checkpoint": str(ckpt),
        "checkpoint_sha256": _sha256(ckpt),
        "recipe": to_dict(cfg),
        "data": {
            "source": "RSICD training split captions over their AID images (fedrs data import)",
            "images": n,
            "rsicd_captions_per_image": data.num_rsicd_captions,
            "label_captions_per_image": data.num_label_captions,
            "excluded_from_pretraining": "UC Merced, RSSCN7, EuroSAT and AID-holdout (checked)",
        },
        "steps": total_steps,
        "batch_size": batch_size,
        "history": history,
        "train_wall_seconds": round(train_seconds, 1),
        "data_prep_seconds": round(t0 - t_load, 1),
        "threads": torch.get_num_threads(),
        "host": cpu_identity(),
        "versions": {"torch": torch.__version__, "open_clip": open_clip.__version__},
    }
    t_eval = time.time()
    card["zero_shot"] = _card_zero_shot(cfg, ckpt, progress)
    card["zero_shot_seconds"] = round(time.time() - t_eval, 1)
    for folder in [out_dir] + list(card_dirs or []):
        write_model_card(card, Path(folder))
    state_file.unlink(missing_ok=True)
    return card


def _sha256(path: Path) -> str:
    from fedrs.backbone.factory import file_fingerprint

    return file_fingerprint(path)


def _card_zero_shot(cfg: PretrainConfig, checkpoint: Path, progress: bool) -> list[dict]:
    """Zero-shot rows of the checkpoint just written (not whatever the default location holds)."""
    from fedrs.backbone.factory import create_backbone
    from fedrs.evaluate.zeroshot import evaluate_zero_shot

    rows = []
    backbone = create_backbone(cfg.model, pretrained=str(checkpoint), cache=False)
    for name in cfg.eval_datasets:
        try:
            rows.extend(evaluate_zero_shot(backbone, datasets=[name], progress=progress))
        except Exception as exc:  # noqa: BLE001 - a card without one dataset is still useful
            rows.append({"dataset": name, "error": str(exc)})
    return rows


def write_model_card(card: dict, folder: Path) -> None:
    """Write ``model_card.json`` and a readable ``model_card.md`` into ``folder``."""
    write_json_atomic(folder / "model_card.json", card)
    arch = card["architecture"]
    lines = [
        f"# Model card: {card['model']} (fedrs offline default backbone)",
        "",
        "A small CLIP trained from scratch by `fedrs backbone pretrain` with open_clip's `CLIP` class and",
        "`ClipLoss`, because no pretrained CLIP weights are available offline. Results produced with it",
        f"are labelled `{card['model']}/offline-{card['checkpoint_sha256'][:8]}`.",
        "",
        "## Architecture",
        f"- vision: ViT, {arch['vision_cfg']['image_size']} px, patch {arch['vision_cfg']['patch_size']}, "
        f"width {arch['vision_cfg']['width']}, {arch['vision_cfg']['layers']} layers",
        f"- text: transformer, context {arch['text_cfg']['context_length']}, width {arch['text_cfg']['width']}, "
        f"{arch['text_cfg']['layers']} layers; embedding {arch['embed_dim']}-d",
        f"- parameters: {card['parameters']:,}",
        "",
        "## Data",
        f"- {card['data']['source']}: {card['data']['images']:,} images x "
        f"{card['data']['rsicd_captions_per_image']} captions + {card['data']['label_captions_per_image']} "
        f"label-derived captions ({', '.join(repr(t) for t in card['recipe']['label_templates'])})",
        f"- never seen: {card['data']['excluded_from_pretraining']}",
        "",
        "## Training",
        f"- {card['recipe']['epochs']} epochs, {card['steps']} steps of batch {card['batch_size']}, AdamW "
        f"lr {card['recipe']['lr']} one-cycle, weight decay {card['recipe']['weight_decay']}, "
        f"seed {card['recipe']['seed']}",
        f"- augmentation: random resized crop (area >= {card['recipe']['crop_min_area']}), "
        f"{'rotations by 90 degrees and mirror' if card['recipe']['dihedral'] else 'none else'}",
        f"- wall time: {card['train_wall_seconds'] / 60:.1f} min training on {card['threads']} CPU threads "
        f"(+ {card['data_prep_seconds']:.0f} s data preparation); final loss {card['history'][-1]['loss']:.3f}",
        "",
    ]
    sel = card.get("selection")
    if sel:
        lines += [
            "## Recipe selection",
            f"- chosen recipe: {sel['chosen']} of {', '.join(sel['candidates'])}, by {sel['rule']}, on "
            f"{sel['held_out_images']:,} RSICD-train/AID images held out of pretraining (no evaluation dataset "
            f"was looked at; `results/backbones/{card['model']}/SELECTION.md`)",
            f"- the chosen recipe trained without those images: validation mR {sel['val_mR']:.2f}, zero-shot "
            f"top-1 {sel['val_zeroshot_unseen_templates']:.1f} (unseen templates) and "
            f"{sel['val_zeroshot_eval_template']:.1f} (evaluation template) over AID's 30 classes; this "
            "checkpoint is the same recipe trained on all pretraining images",
            "",
        ]
    lines += [
        "## Zero-shot top-1 (%)",
        "Label captions contain the single template and AID's class names; the unseen templates' words "
        "occur in no pretraining caption. AID-holdout: seen classes, unseen images.",
        "",
        "| dataset | classes | images | single template | prompt ensemble | unseen templates | chance |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in card.get("zero_shot", []):
        if "error" in row:
            lines.append(f"| {row['dataset']} | - | - | not evaluated: {row['error']} | | | |")
        else:
            lines.append(
                f"| {row['dataset']} | {row['classes']} | {row['images']} | {row['top1']:.1f} | "
                f"{row.get('top1_ensemble', float('nan')):.1f} | "
                f"{row.get('top1_unseen_templates', float('nan')):.1f} | {row['chance']:.1f} |"
            )
    lines += ["", f"checkpoint sha256: `{card['checkpoint_sha256']}`", ""]
    write_text_atomic(folder / "model_card.md", "\n".join(lines))


def recipe_yaml(cfg: PretrainConfig) -> str:
    return dump_yaml(cfg)
