"""Where the network spends its time: torch.profiler's operator table and wall time per top-level module.

    python benchmarks/profile_model.py [--config configs/tiny.py] [--checkpoint checkpoints/tiny.pth]
        [--device cpu|cuda] [--data-root data/demo] [--iters 5] [--pipeline [--top 30]]

Runs the Pipeline's own preprocessing on a real frame of the synthetic world (made if missing, as the demo
does), then profiles ``model(batch)`` only (no decode, no post-processing). ``--pipeline`` profiles whole
``pipe(frame)`` calls instead (file reading excluded; preprocessing, network, decoding) with cProfile over
``--iters`` consecutive keyframes after two to warm up, and prints the functions with the most time of their
own, then by cumulative time.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path


def _profile_pipeline(pipe, src, iters: int, top: int) -> int:
    import cProfile
    import pstats

    import torch

    frames = [src[i] for i in range(min(len(src), iters + 2))]
    for f in frames[:2]:
        pipe(f)
    prof = cProfile.Profile()
    prof.enable()
    for f in frames[2:]:
        pipe(f)
    if pipe.device.type == "cuda":
        torch.cuda.synchronize()
    prof.disable()
    print(f"{len(frames) - 2} Pipeline calls on {pipe.device}; seconds summed over the calls")
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumtime").print_stats(top)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/tiny.py")
    p.add_argument("--checkpoint", default="checkpoints/tiny.pth", help="'none' for the config's random init")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-root", default="data/demo")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--pipeline", action="store_true", help="cProfile whole Pipeline calls instead")
    p.add_argument("--top", type=int, default=30, help="rows of each --pipeline table")
    a = p.parse_args(argv)
    if a.iters < 1:
        p.error("--iters must be at least 1")
    import torch
    from torch.profiler import ProfilerActivity, profile

    from perception.pipeline import Pipeline
    from perception.sources.nuscenes import NuScenesSource
    from perception.sources.synthetic.demo_world import ensure_world

    root = ensure_world(Path(a.data_root))
    pipe = Pipeline(a.config, None if a.checkpoint == "none" else a.checkpoint, device=a.device)
    src = NuScenesSource(root, "v1.0-mini", None, **pipe.assembly.source_kwargs())
    if a.pipeline:
        return _profile_pipeline(pipe, src, a.iters, a.top)
    batch = pipe.pre.collate([pipe.pre.prepare(src[min(5, len(src) - 1)])], pipe.device)
    model = pipe.net  # what the Pipeline runs (BatchNorm folded unless runtime.fold_batchnorm is off)

    def sync():
        if pipe.device.type == "cuda":
            torch.cuda.synchronize()

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if pipe.device.type == "cuda" else [])
    with torch.no_grad(), pipe._autocast():
        for _ in range(3):
            model(batch)
        with profile(activities=acts) as prof:
            for _ in range(a.iters):
                model(batch)
            sync()
    key = "self_cuda_time_total" if pipe.device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=15))

    spent: dict[str, float] = collections.defaultdict(float)
    start: dict[str, float] = {}
    hooks = []

    def before(name):
        def hook(module, inputs):  # returns None: a pre-hook's return value would replace the inputs
            sync()
            start[name] = time.perf_counter()
        return hook

    def after(name):
        def hook(module, inputs, output):
            sync()
            spent[name] += time.perf_counter() - start[name]
        return hook

    for name, mod in model.named_modules():
        if name and name.count(".") <= 1:
            hooks += [mod.register_forward_pre_hook(before(name)), mod.register_forward_hook(after(name))]
    with torch.no_grad(), pipe._autocast():
        t = time.perf_counter()
        for _ in range(a.iters):
            model(batch)
        sync()
        total = (time.perf_counter() - t) / a.iters
    for h in hooks:
        h.remove()
    print(f"\nwall time per forward {1000 * total:.1f} ms ({a.config}, {pipe.device}, {pipe.runtime['precision']}); "
          "per module (nested modules are inside their parent):")
    for name, s in sorted(spent.items(), key=lambda kv: -kv[1])[:14]:
        print(f"  {name:32s} {1000 * s / a.iters:8.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
