"""Time the offline backbone's pretraining step and project the full pretraining wall time.

    .venv/bin/python benchmarks/bench_pretrain.py [--model fedrs-rsclip-s] [--steps 8]

Runs ``--steps`` real training steps of the shipped recipe (augmentation, tokenised captions,
open_clip CLIP forward/backward, AdamW) on random tensors of the recipe's shapes, after two
warm-up steps, and prints seconds per step and the projected time for the recipe's epochs over
the 8,973 RSICD/AID pretraining images. Run it on an otherwise idle machine: other processes on
the 2 cores inflate the figure.
"""

from __future__ import annotations

import argparse
import time

import open_clip
import torch
from open_clip.loss import ClipLoss

import fedrs.backbone.factory  # noqa: F401 - registers the offline model configs
from fedrs.pretrain import augment, load_recipe

PRETRAIN_IMAGES = 8973


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fedrs-rsclip-s")
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()

    cfg = load_recipe(args.model)
    torch.manual_seed(0)
    model = open_clip.create_model(cfg.model)
    model.train()
    size, ctx = model.visual.image_size[0], model.context_length
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    loss_fn = ClipLoss()
    gen = torch.Generator().manual_seed(0)
    raw = torch.randint(0, 256, (cfg.batch_size, 3, cfg.decode_size, cfg.decode_size), dtype=torch.uint8)
    tokens = torch.randint(1, 49000, (cfg.batch_size, ctx))
    times = []
    for i in range(args.steps + 2):
        t0 = time.perf_counter()
        images = augment(raw, size, cfg, gen)
        f_i, f_t, scale = model(images, tokens)
        loss = loss_fn(f_i, f_t, scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    per_step = sum(times) / len(times)
    images = min(cfg.max_images or PRETRAIN_IMAGES, PRETRAIN_IMAGES)
    steps = max(1, images // cfg.batch_size) * cfg.epochs
    print(f"model                {cfg.model} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    print(f"threads              {torch.get_num_threads()}")
    print(f"batch                {cfg.batch_size} x {size}px images, context {ctx}")
    print(f"seconds per step     {per_step:.3f} (mean of {len(times)}, min {min(times):.3f})")
    print(f"recipe               {cfg.epochs} epochs x {steps // cfg.epochs} steps = {steps} steps")
    print(f"projected training   {per_step * steps / 60:.1f} min")


if __name__ == "__main__":
    main()
