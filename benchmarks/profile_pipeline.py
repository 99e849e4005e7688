"""Where a whole Pipeline call spends its time (preprocessing, network, decoding): cProfile over real frames.

    python benchmarks/profile_pipeline.py [--config configs/tiny.py] [--checkpoint checkpoints/tiny.pth]
        [--device cpu|cuda] [--data-root data/demo] [--frames 10] [--top 30]

Reads consecutive keyframes of the synthetic world (made if missing, as the demo does), runs two of them
to warm up, then profiles ``pipe(frame)`` over the next ``--frames`` and prints the functions with the most
time of their own, then by cumulative time. benchmarks/profile_model.py profiles the network alone.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/tiny.py")
    p.add_argument("--checkpoint", default="checkpoints/tiny.pth", help="'none' for the config's random init")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-root", default="data/demo")
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--top", type=int, default=30)
    a = p.parse_args(argv)
    if a.frames < 1:
        p.error("--frames must be at least 1")
    import torch

    from perception.pipeline import Pipeline
    from perception.sources.nuscenes import NuScenesSource
    from perception.sources.synthetic.demo_world import ensure_world

    root = ensure_world(Path(a.data_root))
    pipe = Pipeline(a.config, None if a.checkpoint == "none" else a.checkpoint, device=a.device)
    src = NuScenesSource(root, "v1.0-mini", None, **pipe.assembly.source_kwargs())
    n = min(len(src), a.frames + 2)
    frames = [src[i] for i in range(n)]
    for f in frames[:2]:
        pipe(f)
    prof = cProfile.Profile()
    prof.enable()
    for f in frames[2:]:
        pipe(f)
    if pipe.device.type == "cuda":
        torch.cuda.synchronize()
    prof.disable()
    print(f"{n - 2} frames, {a.config}, {a.device}; seconds summed over the frames")
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(a.top)
    stats.sort_stats("cumtime").print_stats(a.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
