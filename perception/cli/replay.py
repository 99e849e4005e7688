"""Replay a drive log through the Pipeline, offline, with the live node's code path (no ROS install).

    promptfusion-replay LOG --out OUT [--config configs/tiny.py --checkpoint checkpoints/tiny.pth] \\
        [--prompt TEXT ...] [--results results.json --data-root DIR] [--keyframes-only]

LOG is a rosbag2 directory (MCAP or sqlite3). OUT is written as a rosbag2 MCAP directory holding the input
topics plus /perception/detections (visualization_msgs/MarkerArray) and /perception/objects (JSON
std_msgs/String). With --results and --data-root, detections at the log's keyframes are also written as
a nuScenes detection submission. Prints frames/s and p50/p95 latency per stage at the end; Ctrl-C (or
SIGTERM) closes the output properly with every frame processed so far.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
from pathlib import Path

import numpy as np

from perception.paths import DEFAULT_CHECKPOINT, DEFAULT_CONFIG


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="the network's config (default: %(default)s)")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="deploy checkpoint (default: %(default)s)")
    p.add_argument("--prompt", action="append", default=[], help="referring prompt (repeatable)")
    p.add_argument("--out", required=True, help="output rosbag2 directory (MCAP)")
    p.add_argument("--results", default=None, help="nuScenes submission JSON for frames at keyframes")
    p.add_argument("--data-root", default=None, help="dataroot the log came from (maps stamps to samples)")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--keyframes-only", action="store_true", help="only frames where every camera matched")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--min-score", type=float, default=0.0, help="detections below are left out of the outputs")
    p.add_argument("--faults", default="", help="fault spec (perception.faults), e.g. drop:CAM_FRONT@2-5,corrupt:5%%")
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    if a.results and not a.data_root:
        p.error("--results needs --data-root (to map the log's stamps to nuScenes sample tokens)")

    from perception.evaluation.detection import write_submission
    from perception.faults import FaultSpecError, parse_faults
    from perception.pipeline import Pipeline
    from perception.replay import replay, stamp_to_sample
    from perception.sources.bag import BagSource

    try:
        parse_faults(a.faults)
    except FaultSpecError as e:
        p.error(str(e))
    out = Path(a.out)
    if out.exists():
        if not a.overwrite:
            print(f"error: {out} exists (use --overwrite)", file=sys.stderr)
            return 2
        shutil.rmtree(out)
    pipe = Pipeline(a.config, a.checkpoint, device=a.device)
    src = BagSource(a.log, pipe.assembly, keyframes_only=a.keyframes_only, faults=a.faults)
    samples = {}
    if a.data_root:
        from nuscenes.nuscenes import NuScenes

        samples = stamp_to_sample(NuScenes(a.version, str(a.data_root), verbose=False))
    stop = {"flag": False}

    def on_signal(signum, _frame):
        stop["flag"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        r = replay(pipe, src, out, tuple(a.prompt), samples, a.min_score, stop=stop, max_frames=a.max_frames)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    n_frames, wall, stages, results = r["frames"], r["wall_s"], r["stages"], r["results"]
    if a.results:
        write_submission(a.results, results)
    print(f"\n{n_frames} frames in {wall:.1f} s ({n_frames / max(wall, 1e-9):.2f} frames/s)"
          + (" - interrupted, output closed" if stop["flag"] else ""))
    print(f"{'stage':12s} {'p50 ms':>8s} {'p95 ms':>8s}")
    for k, v in stages.items():
        if v:
            print(f"{k:12s} {1000 * np.percentile(v, 50):8.1f} {1000 * np.percentile(v, 95):8.1f}")
    print(f"modalities used: {json.dumps(r['modalities'])}; skipped frames: {src.skipped_frames}; "
          f"rejected messages: {json.dumps(src.rejected)}")
    if src.faults:
        print(f"faults injected ({a.faults}): {json.dumps(src.fault_counts)}")
    print(f"output: {out}" + (f"; nuScenes results ({len(results)} samples): {a.results}" if a.results else ""))
    return 130 if stop["flag"] else 0


if __name__ == "__main__":
    sys.exit(main())
