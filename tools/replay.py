"""Replay a drive log through the Pipeline, offline, with the live node's code path (no ROS install).

    python tools/replay.py LOG --config configs/tiny.py --checkpoint checkpoints/tiny.pth \\
        [--prompt TEXT ...] --out OUT [--results results.json --data-root DIR] [--keyframes-only]

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
import time
from pathlib import Path

import numpy as np


def stamp_to_sample(nusc) -> dict[int, str]:
    """{LIDAR_TOP keyframe stamp (ns): sample token} of a loaded devkit NuScenes."""
    return {sd["timestamp"] * 1000: sd["sample_token"] for sd in nusc.sample_data
            if sd["is_key_frame"] and sd["channel"] == "LIDAR_TOP"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log")
    p.add_argument("--config", required=True)
    p.add_argument("--checkpoint", required=True)
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
    cfg_data = pipe.cfg.get("data", {})
    src = BagSource(a.log, lidar_sweeps=cfg_data.get("lidar_sweeps", 9), radar_sweeps=cfg_data.get("radar_sweeps", 3),
                    cameras=pipe.pre.spec["camera"]["channels"], keyframes_only=a.keyframes_only, faults=a.faults,
                    image_min_hw=pipe.pre.decode_hw)
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


def replay(pipe, src, out, prompts=(), samples=None, min_score=0.0, stop=None, max_frames=None, on_frame=None,
           progress=True) -> dict:
    """Run every frame of a BagSource through ``pipe`` and write OUT (MCAP): the inputs plus
    /perception/detections and /perception/objects. ``samples``: {lidar stamp ns: sample token} for nuScenes
    results; ``on_frame(frame, det)`` sees each frame's output; ``stop["flag"]`` ends the run cleanly.
    Returns frames, wall_s, per-stage seconds, modality counts and the nuScenes results per sample."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from tqdm import tqdm

    from perception.evaluation.detection import to_nuscenes_boxes
    from ros_nodes.outputs import detections_to_json, detections_to_markers, json_to_string_msg

    store = get_typestore(Stores.ROS2_KILTED)
    samples = samples or {}
    stop = stop if stop is not None else {"flag": False}
    results: dict[str, list] = {}
    stages: dict[str, list[float]] = {k: [] for k in ("source", "text", "preprocess", "inference", "postprocess",
                                                       "total")}
    modality_counts: dict[str, int] = {}
    n_frames = 0
    t_start = time.perf_counter()
    bar = tqdm(desc="replay", unit="frame", disable=not progress)
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {}

        def conn_for(topic, msgtype):
            if topic not in conns:
                conns[topic] = w.add_connection(topic, msgtype, typestore=store)
            return conns[topic]

        t_src = time.perf_counter()
        for frame, match, raw in src:
            for c, t, data in raw:
                if c.msgtype in store.types:
                    w.write(conn_for(c.topic, c.msgtype), t, data)
            t_frame = time.perf_counter()
            det = pipe(frame, prompts).filter(min_score)
            timing = pipe.last_timing
            stages["source"].append(t_frame - t_src)
            for k in ("text", "preprocess", "inference", "postprocess"):
                stages[k].append(timing.get(k, 0.0))
            mods = frame.modalities
            for m in mods:
                modality_counts[m] = modality_counts.get(m, 0) + 1
            stamp = frame.stamp_ns
            w.write(conn_for("/perception/detections", "visualization_msgs/msg/MarkerArray"), stamp,
                    store.serialize_cdr(detections_to_markers(store.types, det, stamp, "base_link"),
                                        "visualization_msgs/msg/MarkerArray"))
            text = detections_to_json(det, stamp, "base_link", mods, extra={
                "missing": match.missing, "inputs": match.stamps,
                "points": {"lidar": len(frame.lidar) if frame.lidar is not None else 0,
                           "radar": len(frame.radar) if frame.radar is not None else 0}})
            w.write(conn_for("/perception/objects", "std_msgs/msg/String"), stamp,
                    store.serialize_cdr(json_to_string_msg(store.types, text), "std_msgs/msg/String"))
            if stamp in samples:
                tok = samples[stamp]
                results[tok] = to_nuscenes_boxes(tok, det, frame.T_global_ego)
            stages["total"].append(time.perf_counter() - t_src)
            if on_frame is not None:
                on_frame(frame, det, samples.get(stamp))
            n_frames += 1
            bar.update()
            t_src = time.perf_counter()
            if stop["flag"] or (max_frames and n_frames >= max_frames):
                break
    bar.close()
    return {"frames": n_frames, "wall_s": time.perf_counter() - t_start, "stages": stages,
            "modalities": modality_counts, "results": results}


if __name__ == "__main__":
    sys.exit(main())
