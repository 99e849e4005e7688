"""Export the network (after voxelization) to ONNX and check onnxruntime against torch.

    promptfusion-export configs/tiny.py [checkpoints/tiny.pth] [--out work_dirs/tiny.onnx]
        [--data-root data/demo] [--frames 4] [--atol 1e-3]

Traces the model on a real frame of the synthetic world (made if missing, as the demo does), writes the
graph (voxel counts are dynamic axes; a missing modality is fed empty with its present flag off), then runs
onnxruntime and torch on --frames other frames plus the same frames without lidar and without cameras, and
prints the largest absolute difference per output. Exit status 1 when any exceeds --atol.
Needs `pip install -e .[export]` (onnx, onnxruntime).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("checkpoint", nargs="?", default=None, help="weights (none: the config's random init)")
    p.add_argument("--out", default=None, help="ONNX file (default work_dirs/<config name>.onnx)")
    p.add_argument("--data-root", default="data/demo", help="synthetic dataroot for the frames (made if missing)")
    p.add_argument("--frames", type=int, default=4, help="frames checked after the export")
    p.add_argument("--atol", type=float, default=1e-3)
    a = p.parse_args(argv)

    import torch

    from perception.export import OnnxModel, export_onnx, max_abs_diff
    from perception.pipeline import Pipeline
    from perception.sources.nuscenes import NuScenesSource
    from perception.sources.synthetic.demo_world import ensure_world

    root = ensure_world(Path(a.data_root))
    out = Path(a.out or Path("work_dirs") / f"{Path(a.config).stem}.onnx")
    pipe = Pipeline(a.config, a.checkpoint)
    src = NuScenesSource(root, "v1.0-mini", None, **pipe.assembly.source_kwargs())
    if len(src) < 2:
        print(f"error: {root} has {len(src)} frames; need at least 2", file=sys.stderr)
        return 2
    pre = pipe.pre

    t0 = time.perf_counter()
    export_onnx(pipe.model, pre.collate([pre.prepare(src[0])]), pre.spec, out)
    print(f"exported {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")

    ort_model = OnnxModel(out, pre.spec)
    worst: dict[str, float] = {}
    step = max(1, (len(src) - 1) // max(1, a.frames))
    checked = 0
    for i in range(1, len(src), step)[: a.frames]:
        frame = src[i]
        for mods in (None, ("camera", "radar"), ("lidar", "radar")):
            batch = pre.collate([pre.prepare(frame, mods)])
            with torch.no_grad():
                ref = pipe.model(batch)
            for k, v in max_abs_diff(ref, ort_model(batch)).items():
                worst[k] = max(worst.get(k, 0.0), v)
            checked += 1
    print(f"onnxruntime vs torch over {checked} inputs (all sensors, no lidar, no cameras), max |diff|:")
    for k, v in worst.items():
        print(f"  {k:8s} {v:.2e}{'  > atol' if v > a.atol else ''}")
    ok = all(v <= a.atol for v in worst.values())
    print(f"round trip: {'ok' if ok else 'FAILED'} (atol {a.atol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
