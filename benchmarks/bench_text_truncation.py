"""Text-pass cost at the full context vs exact truncation (fedrs.backbone.text_tower), as ratios.

One FedRSCLIP/PromptFL text step encodes S prompt sets x 21 UC Merced class prompts
``[SOS] ctx_1..ctx_M <name> . [EOS] pad`` and back-propagates into the contexts. This times that
pass (forward + backward into the contexts, and forward only as in evaluation) through
``encode_text_embeddings`` run on the full context and on the truncated length, on the same
inputs, and prints full/truncated ratios and the largest feature difference.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_text_truncation.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_text_truncation.py --backbones fedrs-rsclip-s --repeats 20

Backbones: the offline ``fedrs-rsclip-s`` (its built checkpoint, or the same architecture at random
init while it is not built: timing depends on the architecture only) and ``ViT-B-16`` at random
init (the paper's text tower, 77-token context).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fedrs.backbone.factory import OFFLINE_DEFAULT, OFFLINE_MODELS, create_backbone, offline_checkpoint_path
from fedrs.backbone.text_tower import encode_text_embeddings, resolve_text_tower, text_run_length
from fedrs.data.registry import SPECS, prompt_names


def prompted_batch(
    backbone, names: list[str], n_ctx: int, sets: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ctx [S, M, W] requiring grad, frozen class embeddings [C, L, W], ids [S*C, L]) as fedrs.prompts builds them."""
    tower = resolve_text_tower(backbone.model)
    ids = backbone.tokenizer([" ".join(["X"] * n_ctx) + f" {n}." for n in names]).long()
    with torch.no_grad():
        emb = tower.token_embedding(ids).float()
    ctx = (torch.randn(sets, n_ctx, tower.width, generator=torch.Generator().manual_seed(0)) * 0.02).requires_grad_()
    return ctx, emb, ids.repeat(sets, 1)


def assemble(ctx: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    sets, n_ctx = ctx.shape[:2]
    c = emb.shape[0]
    prefix = emb[:, :1].unsqueeze(0).expand(sets, -1, -1, -1)
    suffix = emb[:, 1 + n_ctx:].unsqueeze(0).expand(sets, -1, -1, -1)
    return torch.cat([prefix, ctx.unsqueeze(1).expand(-1, c, -1, -1), suffix], dim=2).flatten(0, 1)


def median_seconds(fn, repeats: int, budget_s: float) -> float:
    """Median of ``repeats`` timed calls after one warm-up; stops early (at least 3 calls) once
    ``budget_s`` is spent, so the 77-token ViT-B-16 pass does not hog a shared CPU."""
    fn()
    times: list[float] = []
    while len(times) < repeats and (len(times) < 3 or sum(times) < budget_s):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(backbone, names: list[str], n_ctx: int, sets: int, repeats: int, budget_s: float) -> dict:
    tower = resolve_text_tower(backbone.model)
    ctx, emb, ids = prompted_batch(backbone, names, n_ctx, sets)
    full, cut = tower.context_length, text_run_length(tower, ids)
    weights = torch.randn(ids.shape[0], tower.text_projection.shape[1], generator=torch.Generator().manual_seed(1))

    def train_step(length: int):
        def step():
            ctx.grad = None
            feats = encode_text_embeddings(tower, assemble(ctx, emb), ids, length=length).features
            (feats * weights).sum().backward()
        return step

    def eval_pass(length: int):
        def run():
            with torch.no_grad():
                encode_text_embeddings(tower, assemble(ctx, emb), ids, length=length)
        return run

    with torch.no_grad():
        diff = (encode_text_embeddings(tower, assemble(ctx, emb), ids, length=full).features
                - encode_text_embeddings(tower, assemble(ctx, emb), ids, length=cut).features).abs().max()
    out = {"texts": ids.shape[0], "full": full, "cut": cut, "max_abs_diff": float(diff)}
    for name, make in (("fwd+bwd", train_step), ("fwd", eval_pass)):
        out[name] = (median_seconds(make(full), repeats, budget_s), median_seconds(make(cut), repeats, budget_s))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=[OFFLINE_DEFAULT, "ViT-B-16"])
    parser.add_argument("--n-ctx", type=int, default=4, help="context vectors per prompt (FedRSCLIP default 4)")
    parser.add_argument("--sets", type=int, default=2, help="prompt sets per pass (shared + private = 2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per measurement (at most)")
    parser.add_argument("--budget", type=float, default=5.0, help="seconds per measurement after which "
                        "timing stops (at least 3 calls)")
    args = parser.parse_args()
    spec = SPECS["UCMerced"]
    names = prompt_names(spec, list(spec.classes))
    print(f"torch threads: {torch.get_num_threads()}; {len(names)} UC Merced classes x {args.sets} prompt sets, "
          f"{args.n_ctx} context vectors; median of up to {args.repeats} calls ({args.budget:g} s budget each)")
    for model in args.backbones:
        if model in OFFLINE_MODELS and offline_checkpoint_path(model).is_file():
            backbone = create_backbone(model)
        else:
            backbone = create_backbone(model, pretrained="random")
        r = bench(backbone, names, args.n_ctx, args.sets, args.repeats, args.budget)
        print(f"\n{backbone.label}: {r['texts']} texts, tokens run {r['full']} -> {r['cut']} "
              f"({r['full'] / r['cut']:.2f}x fewer), max |feature diff| {r['max_abs_diff']:.1e}")
        for name in ("fwd+bwd", "fwd"):
            full_s, cut_s = r[name]
            print(f"  {name:8s} full {full_s * 1e3:8.1f} ms  truncated {cut_s * 1e3:8.1f} ms  "
                  f"ratio full/truncated {full_s / cut_s:5.2f}x")


if __name__ == "__main__":
    main()
