"""A federated round of each method against the floor of its own encoder passes, as ratios.

For every method (FedRSCLIP with visual prompts, FedRSCLIP text-only, PromptFL, FedOTP as its
offline config sets it) this script, in one process and on the same Fed-UCMerced data pool:

1. records the encoder passes one round makes (training: local updates of every client, then
   the round's evaluation: each client's personalised test and the pooled global test), with their
   shapes and whether they back-propagate: text prompt passes, prompted-image passes, frozen
   image passes, and FedOTP's optimal-transport solves (the method's own math: the
   iteration count of its Sinkhorn depends on the values, so those replay the recorded inputs).
   A text pass repeated inside one evaluation call (one per batch) counts once: the features
   could be computed once per call, so the repeat is overhead, not floor;
2. times the **floor**: the recorded passes alone, replayed on random tensors of the same shapes
   (one backward per training step, as the round does);
3. times the **round**: ``FederatedEngine.run_round`` plus ``evaluate``, from the same state;
4. times the round again with the text prompts built untruncated
   (:func:`fedrs.backbone.text_tower.full_context_passes`): the cost before exact truncation.

It prints round/floor (the engine's overhead: optimiser, losses, batching, FedAvg, evaluation
bookkeeping) and before/after (what truncation saves), from process CPU time (the load-independent
figure on a shared machine; wall time is printed beside it). The four are timed interleaved (one
call of each per repetition), so a changing load weighs on all alike. ``--memory`` then runs one round with
10 and with 100 clients, each in its own process, and prints the peak resident memory.
``--patch-embedding`` measures what caching the frozen patch embedding (conv1, class token,
positions: everything before shallow visual prompts enter) would save of a prompted image step.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_round.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_round.py --methods promptfl --repeats 5
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_round.py --memory --methods fedrsclip
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_round.py --patch-embedding --no-timing

The backbone is the offline ``fedrs-rsclip-s``; while it is not built, the same architecture at
random init (timing depends on the architecture only; the output says which). Not a test: no
figure is asserted anywhere.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: label -> (offline params file, overrides)
METHODS = {
    "fedrsclip": ("params/offline/fedrsclip_ucmerced.yaml", {}),
    "fedrsclip-text": ("params/offline/fedrsclip_ucmerced.yaml", {"method.visual_prompts": False}),
    "promptfl": ("params/offline/promptfl_ucmerced.yaml", {}),
    "fedotp": ("params/offline/fedotp_ucmerced.yaml", {}),
}


def run_settings(label: str, clients: int | None = None) -> tuple[str, dict]:
    from fedrs.backbone.factory import OFFLINE_DEFAULT, offline_checkpoint_path

    params, overrides = METHODS[label]
    settings = {"train.rounds": 1, **overrides}
    if clients is not None:
        settings["data.num_clients"] = clients
    if not offline_checkpoint_path(OFFLINE_DEFAULT).is_file():
        settings["backbone.pretrained"] = "random"  # same architecture: same timing
    return str(REPO / params), settings


# --- recording the passes of a round -------------------------------------------------------------

@dataclass
class Pass:
    """One encoder pass: ``kind`` text | visual | frozen, the encoder, the input shapes, whether it
    back-propagates, and (visual) whether patch tokens were asked for."""

    kind: str
    encoder: object
    shapes: tuple  # input shapes; for a transport solve its recorded inputs and settings
    grad: bool
    tokens: bool = False


@dataclass
class Recorder:
    passes: list[Pass] = field(default_factory=list)
    eval_call: int = 0
    seen: set = field(default_factory=set)

    def add(self, p: Pass) -> None:
        if not p.grad:
            key = (self.eval_call, p.kind, id(p.encoder), p.shapes)
            if p.kind == "text" and key in self.seen:
                return  # the same text features again within one evaluation call: avoidable
            self.seen.add(key)
        self.passes.append(p)


@contextmanager
def recording(method):
    """Record the encoder passes made while the block runs (hooks removed afterwards)."""
    import torch

    import fedrs.federated.client as client_mod
    import fedrs.federated.engine as engine_mod
    from fedrs.prompts import TextPromptEncoder, VisualPromptEncoder

    rec = Recorder()
    text_forward, visual_forward = TextPromptEncoder.forward, VisualPromptEncoder.forward
    predict = client_mod.predict_counts
    model = method.backbone.model
    encode_image = model.encode_image

    def text_hook(self, ctx, normalize=True):
        rec.add(Pass("text", self, (tuple(ctx.shape),), torch.is_grad_enabled() and ctx.requires_grad))
        return text_forward(self, ctx, normalize)

    def visual_hook(self, images, prompts=None, normalize=True, return_tokens=False):
        grad = torch.is_grad_enabled() and prompts is not None and prompts.requires_grad
        shapes = (tuple(images.shape), None if prompts is None else tuple(prompts.shape))
        rec.add(Pass("visual", self, shapes, grad, return_tokens))
        return visual_forward(self, images, prompts, normalize, return_tokens)

    def frozen_hook(images):
        rec.add(Pass("frozen", model, (tuple(images.shape),), False))
        return encode_image(images)

    fedotp = sys.modules.get("fedrs.methods.fedotp")
    transport = getattr(fedotp, "transport_scores", None)

    def transport_hook(patches, text, *settings):
        grad = torch.is_grad_enabled() and text.requires_grad
        inputs = (patches.detach().clone(), text.detach().clone().requires_grad_(grad), *settings)
        rec.add(Pass("transport", transport, inputs, grad))
        return transport(patches, text, *settings)

    def predict_hook(*args, **kwargs):
        rec.eval_call += 1
        return predict(*args, **kwargs)

    TextPromptEncoder.forward, VisualPromptEncoder.forward = text_hook, visual_hook
    client_mod.predict_counts = engine_mod.predict_counts = predict_hook
    model.encode_image = frozen_hook
    if transport is not None:
        fedotp.transport_scores = transport_hook
    try:
        yield rec
    finally:
        TextPromptEncoder.forward, VisualPromptEncoder.forward = text_forward, visual_forward
        client_mod.predict_counts = engine_mod.predict_counts = predict
        del model.encode_image
        if transport is not None:
            fedotp.transport_scores = transport


def floor_replay(passes: list[Pass], device):
    """A function that runs ``passes`` on random tensors of their shapes (transport solves on
    their recorded inputs): grad passes of one training step share one backward (a step ends where
    an encoder is used a second time)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    inputs: dict[tuple, torch.Tensor] = {}

    def rand(shape, grad: bool, scale: float = 1.0):
        key = (shape, grad, scale)
        if key not in inputs:
            value = (torch.randn(*shape, generator=gen) * scale).to(device)
            inputs[key] = value.requires_grad_(grad)
        return inputs[key]

    def run_pass(p: Pass):
        if p.kind == "text":
            return p.encoder(rand(p.shapes[0], p.grad, 0.02))
        if p.kind == "visual":
            images, prompts = p.shapes
            out = p.encoder(rand(images, False), None if prompts is None else rand(prompts, p.grad, 0.02),
                            return_tokens=p.tokens)
            return out[0] if p.tokens else out
        if p.kind == "transport":
            return p.encoder(*p.shapes)
        return p.encoder.encode_image(rand(p.shapes[0], False))

    # group the passes: consecutive grad passes on distinct encoders form one training step (the
    # random inputs are drawn on the first call, which timed() makes as its untimed warm-up)
    steps: list[tuple[bool, list[Pass]]] = []
    for p in passes:
        if p.grad and steps and steps[-1][0] and all(q.encoder is not p.encoder for q in steps[-1][1]):
            steps[-1][1].append(p)
        else:
            steps.append((p.grad, [p]))
    def replay():
        for grad, group in steps:
            if grad:
                loss = sum(run_pass(p).sum() for p in group)
                loss.backward()
            else:
                with torch.no_grad():
                    for p in group:
                        run_pass(p)
        for value in inputs.values():
            value.grad = None
        for p in passes:
            if p.kind == "transport":
                p.shapes[1].grad = None

    return replay


# --- timing ----------------------------------------------------------------------------------------

def timed_together(fns: dict, repeats: int, budget_s: float) -> dict[str, tuple[float, float]]:
    """:func:`timed` for several functions, interleaved (one call of each per repetition), so a
    load that changes while they are timed weighs on all of them alike; ``budget_s`` of CPU per
    function."""
    for fn in fns.values():
        fn()
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    while True:
        spent = max(sum(v) for v in cpu.values())
        done = len(cpu[next(iter(fns))])
        if done >= repeats or (done >= 3 and spent >= budget_s):
            break
        for key, fn in fns.items():
            c, w = time.process_time(), time.perf_counter()
            fn()
            cpu[key].append(time.process_time() - c)
            wall[key].append(time.perf_counter() - w)
    return {k: (statistics.median(cpu[k]), statistics.median(wall[k])) for k in fns}


def timed(fn, repeats: int, budget_s: float) -> tuple[float, float]:
    """Median (process CPU seconds, wall seconds) of ``repeats`` calls after one warm-up; stops
    early (at least 3 calls) once ``budget_s`` of CPU is spent."""
    fn()
    cpu, wall = [], []
    while len(cpu) < repeats and (len(cpu) < 3 or sum(cpu) < budget_s):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu), statistics.median(wall)


def round_fn(method, setup, cfg):
    """One round from the initial state: local updates of every sampled client, FedAvg, then the
    evaluation of every client and of the global tensors (what a round row's time_s covers)."""
    from fedrs.federated.engine import FederatedEngine

    engine = FederatedEngine(method, setup.clients, setup.pooled_test, cfg.train, cfg.eval, checkpoint=None)

    def one_round():
        engine.initialise()
        engine.run_round(1)
        engine.evaluate()

    return one_round


def describe_passes(passes: list[Pass]) -> str:
    counts: dict[str, int] = {}
    for p in passes:
        key = f"{p.kind}{' fwd+bwd' if p.grad else ' fwd'}"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


def bench_method(label: str, repeats: int, budget_s: float) -> dict:
    import torch

    from fedrs.backbone.text_tower import full_context_passes
    from fedrs.classification import prepare_run
    from fedrs.methods import create_method
    from fedrs.runs import load_run_config

    params, settings = run_settings(label)
    cfg = load_run_config(params, settings)
    setup = prepare_run(cfg, progress=False)
    method = setup.method
    with full_context_passes():  # the same method, its text passes untruncated
        before = create_method(cfg.method, setup.backbone, setup.classnames, seed=cfg.train.seed)
    text = method.module.text
    with recording(method) as rec:
        round_fn(method, setup, cfg)()
    floor = floor_replay(rec.passes, setup.backbone.device)
    with recording(before) as rec_before:
        round_fn(before, setup, cfg)()
    floor_before = floor_replay(rec_before.passes, setup.backbone.device)
    torch.manual_seed(0)
    times = timed_together({"round": round_fn(method, setup, cfg), "floor": floor,
                            "round_before": round_fn(before, setup, cfg), "floor_before": floor_before},
                           repeats, budget_s)
    return {"method": label, "backbone": setup.backbone.label, "config": cfg.method,
            "clients": len(setup.clients), "passes": describe_passes(rec.passes),
            "tokens": (text.run_length, before.module.text.run_length), **times}


# --- memory ----------------------------------------------------------------------------------------

def rss_mib() -> float:
    """Peak resident memory of this process image in MiB: ``VmHWM`` (reset by exec, unlike
    ``ru_maxrss``, which a spawned child inherits from its parent's peak)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def _memory_child(label: str, clients: int, queue) -> None:
    import torch

    from fedrs.classification import prepare_run
    from fedrs.runs import load_run_config

    after_imports = rss_mib()  # torch (with its CUDA libraries) and open_clip alone: ~1 GiB here
    params, settings = run_settings(label, clients)
    cfg = load_run_config(params, settings)
    setup = prepare_run(cfg, progress=False)
    after_setup = rss_mib()
    round_fn(setup.method, setup, cfg)()
    queue.put({"clients": clients, "peak_rss_mib": rss_mib(), "setup_peak_mib": after_setup,
               "imports_mib": after_imports, "torch_threads": torch.get_num_threads()})


def memory(label: str, counts: list[int]) -> list[dict]:
    ctx = mp.get_context("spawn")
    rows = []
    for n in counts:
        queue = ctx.Queue()
        proc = ctx.Process(target=_memory_child, args=(label, n, queue))
        proc.start()
        rows.append(queue.get())
        proc.join()
    return rows


# --- the frozen patch embedding ---------------------------------------------------------------------

def patch_embedding(repeats: int) -> None:
    """Time a shallow-VPT image step (fwd+bwd into 4 prompt tokens) from the images and from a
    precomputed patch embedding, on the offline backbone (batch 32) and ViT-B-16 (batch 8)."""
    import torch

    from fedrs.backbone.factory import OFFLINE_DEFAULT, create_backbone, offline_checkpoint_path
    from fedrs.prompts import VisualPromptEncoder

    offline = None if offline_checkpoint_path(OFFLINE_DEFAULT).is_file() else "random"
    for model, pretrained, batch in ((OFFLINE_DEFAULT, offline, 32), ("ViT-B-16", "random", 8)):
        backbone = create_backbone(model, pretrained=pretrained)
        encoder = VisualPromptEncoder(backbone.model)
        v = encoder._visual
        images = torch.randn(batch, 3, backbone.image_size, backbone.image_size)
        prompts = (torch.randn(1, 4, encoder.width) * 0.02).requires_grad_()

        def embed(x, v=v):  # what VisualPromptEncoder does before the prompts enter
            x = v.conv1(x)
            x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
            cls = v.class_embedding.reshape(1, 1, -1).expand(x.shape[0], -1, -1)
            return torch.cat([cls, x], dim=1) + v.positional_embedding

        with torch.no_grad():
            cached = embed(images)

        def from_images(encoder=encoder, images=images, prompts=prompts):
            prompts.grad = None
            encoder(images, prompts).sum().backward()

        def from_cache(v=v, encoder=encoder, cached=cached, prompts=prompts):
            prompts.grad = None
            x = v.ln_pre(encoder._insert(cached, prompts[0], replace=False))
            x = v.transformer(x)
            pooled, _ = v._pool(torch.cat([x[:, :1], x[:, 1 + prompts.shape[1]:]], dim=1))
            (pooled @ v.proj).sum().backward()

        def embedding_only(embed=embed, images=images):
            with torch.no_grad():
                embed(images)

        full, cut, alone = (timed(fn, repeats, 20.0)[0] for fn in (from_images, from_cache, embedding_only))
        print(f"  {backbone.label}, {batch} x {backbone.image_size} px: fwd+bwd {full * 1e3:.1f} ms from images, "
              f"{cut * 1e3:.1f} ms from a cached patch embedding ({(1 - cut / full) * 100:+.1f}% saved); "
              f"the embedding alone {alone * 1e3:.2f} ms ({alone / full * 100:.1f}% of the step)")


# --- report ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per measurement (at most)")
    parser.add_argument("--budget", type=float, default=30.0,
                        help="CPU seconds per measurement after which timing stops (at least 3 calls)")
    parser.add_argument("--memory", action="store_true", help="also peak memory of one round, 10 vs 100 clients")
    parser.add_argument("--memory-clients", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--patch-embedding", action="store_true",
                        help="also what a cached frozen patch embedding would save (shallow visual prompts)")
    parser.add_argument("--no-timing", action="store_true", help="skip the round timing (memory/patch only)")
    args = parser.parse_args(argv)
    import torch

    print(f"torch threads {torch.get_num_threads()}; median of up to {args.repeats} interleaved calls after a "
          f"warm-up; CPU s = process CPU time (wall s beside it)")
    if not args.no_timing:
        rows = []
        for label in args.methods:
            r = bench_method(label, args.repeats, args.budget)
            rows.append(r)
            print(f"\n{label} on {r['backbone']}, {r['clients']} clients: {r['config']}")
            print(f"  a round's encoder passes: {r['passes']}; text tokens run {r['tokens'][0]} "
                  f"(before truncation {r['tokens'][1]})")
            for key in ("round", "floor", "round_before", "floor_before"):
                cpu, wall = r[key]
                print(f"  {key:13s} {cpu:7.3f} CPU s  {wall:7.3f} wall s")
        print("\n| method | round/floor | before: round/floor | round before/after | floor before/after |")
        print("|---|---|---|---|---|")
        for r in rows:
            ratio = r["round"][0] / r["floor"][0]
            ratio_before = r["round_before"][0] / r["floor_before"][0]
            speedup = r["round_before"][0] / r["round"][0]
            floor_speedup = r["floor_before"][0] / r["floor"][0]
            print(f"| {r['method']} | {ratio:.2f}x | {ratio_before:.2f}x | {speedup:.2f}x | {floor_speedup:.2f}x |")
    if args.patch_embedding:
        print("\nfrozen patch embedding of a shallow-VPT image step (process CPU time):")
        patch_embedding(args.repeats)
    if args.memory:
        for label in args.methods:
            mem = memory(label, args.memory_clients)
            base = mem[0]["peak_rss_mib"]
            print(f"\npeak resident memory of one {label} round (own process each):")
            for m in mem:
                print(f"  {m['clients']:4d} clients: peak {m['peak_rss_mib']:8.1f} MiB "
                      f"({(m['peak_rss_mib'] / base - 1) * 100:+.1f}% vs {mem[0]['clients']} clients); "
                      f"after imports {m['imports_mib']:.1f}, after setup {m['setup_peak_mib']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
