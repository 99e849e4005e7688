"""Replay drive logs through the Pipeline, offline, with the live node's code path (no ROS install).

    promptfusion-replay LOG --out OUT [--config configs/tiny.py --checkpoint checkpoints/tiny.pth] \\
        [--prompt TEXT ...] [--results results.json --data-root DIR] [--keyframes-only]
    promptfusion-replay LOG [LOG ...] | --logs-from FILE --out DIR [--ray [local|auto|ADDRESS]] \\
        [--workers N --cpus-per-task C --gpus-per-task G] [--data-root DIR]

Several logs (or --logs-from, or --ray) replay as a fleet (perception.fleet): each log's output is
DIR/<log name>/, the same layout as a single replay's OUT, with DIR/summary.json (per log: frames/s,
latency, detections, rejected messages, errors) and, with --data-root, the merged nuScenes submission
DIR/results_nusc.json and the devkit's evaluation of the samples the logs cover. With --ray each worker is a
Ray actor that loads the checkpoint once ("local": a cluster of this machine started here; "auto": the
running one; or its address); without it the logs run one after another in this process. A log that fails
is retried once, then reported while the others finish; Ctrl-C keeps every finished log.

LOG is a rosbag2 directory (MCAP or sqlite3). OUT is written as a rosbag2 MCAP directory holding the input
topics plus /perception/detections (visualization_msgs/MarkerArray) and /perception/objects (JSON
std_msgs/String). With --results and --data-root, detections at the log's keyframes are also written as
a nuScenes detection submission. Prints frames/s and p50/p95 latency per stage at the end; Ctrl-C (or
SIGTERM) closes the output properly with every frame processed so far.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import sys
from pathlib import Path

import numpy as np

from perception.paths import DEFAULT_CHECKPOINT, DEFAULT_CONFIG


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", nargs="*", metavar="LOG", help="rosbag2 directories (MCAP or sqlite3)")
    p.add_argument("--logs-from", default=None, help="a text file with one log path per line (# comments)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="local|auto|ADDRESS",
                   help="replay the logs on Ray (needs .[fleet]); 'local' when given without a value")
    p.add_argument("--workers", type=int, default=None, help="fleet workers (default: the cluster's CPUs / "
                   "--cpus-per-task)")
    p.add_argument("--cpus-per-task", type=float, default=1.0)
    p.add_argument("--gpus-per-task", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the default; on Ray: the task's "
                   "CPUs)")
    p.add_argument("--skip-existing", action="store_true", help="fleet: logs whose output exists are not "
                   "replayed again (continues an interrupted run)")
    p.add_argument("--eval-split", default=None, help="fleet: the split the merged evaluation uses "
                   "(default mini_val / val)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="the network's config (default: %(default)s)")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="deploy checkpoint (default: %(default)s)")
    p.add_argument("--prompt", action="append", default=[], help="referring prompt (repeatable)")
    p.add_argument("--out", required=True, help="output rosbag2 directory (MCAP); for a fleet, the directory of "
                   "the per-log outputs")
    p.add_argument("--results", default=None, help="nuScenes submission JSON for frames at keyframes")
    p.add_argument("--data-root", default=None, help="dataroot the log came from (maps stamps to samples)")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--keyframes-only", action="store_true", help="only frames where every camera matched")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--min-score", type=float, default=0.0, help="detections below are left out of the outputs")
    p.add_argument("--faults", default="", help="fault spec (perception.faults), e.g. drop:CAM_FRONT@2-5,corrupt:5%%")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-tracking", action="store_true",
                   help="leave out /perception/tracks and /perception/track_markers (perception.tracking)")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    logs = list(a.logs)
    if a.logs_from:
        try:
            lines = Path(a.logs_from).read_text().splitlines()
        except OSError as e:
            p.error(f"--logs-from: {e}")
        logs += [x.strip() for x in lines if x.strip() and not x.strip().startswith("#")]
    if not logs:
        p.error("give at least one LOG (or --logs-from FILE)")
    if len(logs) > 1 or a.logs_from or a.ray:
        if a.results or a.max_frames:
            p.error("--results and --max-frames are for one log; a fleet writes DIR/results_nusc.json")
        if a.no_tracking:
            p.error("--no-tracking is for one log; a fleet's outputs always carry the tracks")
        return fleet_main(a, logs)
    a.log = logs[0]
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
    pipe = Pipeline(a.config, a.checkpoint, device=a.device, runtime={"threads": a.threads} if a.threads else None)
    src = BagSource(a.log, pipe.assembly, keyframes_only=a.keyframes_only, faults=a.faults)
    samples = {}
    if a.data_root:
        from nuscenes.nuscenes import NuScenes

        samples = stamp_to_sample(NuScenes(a.version, str(a.data_root), verbose=False))
    stop = {"flag": False}
    with _stop_on_signals(stop):
        r = replay(pipe, src, out, tuple(a.prompt), samples, a.min_score, stop=stop, max_frames=a.max_frames,
                   tracker=None if a.no_tracking else {})
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


@contextlib.contextmanager
def _stop_on_signals(stop: dict):
    """SIGINT / SIGTERM set ``stop["flag"]`` (the run ends at its next frame) instead of raising
    KeyboardInterrupt wherever the main thread happens to be: one raised inside a library's string ``exec``
    (e.g. generating message classes) makes CPython end a ``-m`` run killed by SIGINT, whatever exit code the
    program chose."""

    def on_signal(_signum, _frame):
        stop["flag"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def fleet_main(a, logs) -> int:
    from perception.faults import FaultSpecError, parse_faults
    from perception.fleet import run_fleet

    missing = [x for x in logs if not Path(x).exists()]
    if missing:
        print(f"warning: {len(missing)} log(s) not found, reported as failed: {missing}", file=sys.stderr)
    try:
        parse_faults(a.faults)
    except FaultSpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    if out.exists() and a.overwrite:
        shutil.rmtree(out)
    stop = {"flag": False}
    with _stop_on_signals(stop):
        try:
            s = run_fleet(logs, out, a.config, a.checkpoint, tuple(a.prompt), a.data_root, a.version,
                          a.eval_split, a.keyframes_only, a.faults, a.min_score, a.device, a.ray, a.workers,
                          a.cpus_per_task, a.gpus_per_task, a.threads, skip_existing=a.skip_existing, stop=stop)
        except (FileExistsError, ValueError, ImportError, RuntimeError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    print(f"\n{s['succeeded']} of {s['logs']} logs in {s['wall_s']:.1f} s on {s['backend']} with {s.get('workers')} "
          f"worker(s): {s['logs_per_s']:.3f} logs/s, {s['frames_per_s']:.2f} frames/s"
          + (" - interrupted, finished logs kept" if s["interrupted"] else ""))
    print(f"{'log':28s} {'frames':>6s} {'fps':>6s} {'p50 ms':>7s} {'p95 ms':>7s} {'dets':>6s}  rejected / error")
    for name, r in s["per_log"].items():
        if "error" in r:
            print(f"{name[:28]:28s} {'-':>6s} {'-':>6s} {'-':>7s} {'-':>7s} {'-':>6s}  FAILED after "
                  f"{r['attempts']} attempts: {r['error']}")
        else:
            print(f"{name[:28]:28s} {r['frames']:6d} {r['fps']:6.2f} {r['p50_ms']:7.1f} {r['p95_ms']:7.1f} "
                  f"{r['detections_0.3']:6d}  {json.dumps(r['rejected'])}")
    print(f"worker memory (RSS MiB): {[round(x) for x in s.get('rss_mib', [])]}")
    ev = s.get("evaluation")
    if ev and "mAP" in ev:
        print(f"merged nuScenes results: {ev['submission']} ({ev['samples']} samples of {ev['split']}): "
              f"mAP {ev['mAP']:.3f} NDS {ev['NDS']:.3f}")
    print(f"outputs: {out}/<log>/, summary: {out / 'summary.json'}")
    if s["interrupted"]:
        return 130
    return 1 if s["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
