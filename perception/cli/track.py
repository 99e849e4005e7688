"""Track saved detections and score the tracks with the devkit's TrackingEval, without running the network.

    promptfusion-track work_dirs/dev/results_nusc.json --data-root data/synthetic --split mini_val \\
        [--override-data k=v,...] [--tracker "max_age=3|5,min_score=0.05|0.1"] [--out DIR]

The input is a nuScenes detection submission (``promptfusion-test --out`` writes one). Each sample's boxes are
put back into its ego frame (the poses and stamps come from the dataroot's tables; no sensor file is read)
and go through perception.tracking.Tracker scene by scene in time order, as ``promptfusion-test --track``
does, so the same settings give the same tracks. ``--tracker`` takes ``k=v`` settings; ``|`` between values
makes a grid, every combination is tracked and scored, and a table sorted by AMOTA is printed (choose on a
development split, never on the held-out one). The last line is the best row's
``AMOTA: x AMOTP: y IDS: n``. ``--velocity`` also scores the tracks' velocities against the annotations
(``velocity error by heading``, and the mean error over moving objects in the grid's table) and the detections
with their tracks' velocities with the devkit's DetectionEval (their mAVE, as ``promptfusion-test --track``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def grid(text: str) -> list[dict]:
    """``"a=1|2,b=x"`` -> [{a: 1, b: "x"}, {a: 2, b: "x"}] (values parsed as perception.config.parse_overrides)."""
    from perception.config import parse_overrides

    axes = []
    for kv in filter(None, (x.strip() for x in text.split(","))):
        k, sep, vs = kv.partition("=")
        if not sep or not vs:
            raise ValueError(f"{kv!r} is not k=v")
        axes.append([parse_overrides(f"{k}={v}") for v in vs.split("|")])
    return [dict(kv for d in combo for kv in d.items()) for combo in itertools.product(*axes)] or [{}]


def detections_by_sample(results: dict, source) -> list:
    """[(index entry, Detections in its ego frame)] in the source's scene/time order; a sample without
    results gets no detections."""
    from perception.geometry import invert_transform, quat_to_yaw
    from perception.types import ATTRIBUTES, DETECTION_CLASSES, Boxes3D, Detections

    out = []
    for e in source.index:
        rows = results.get(e["token"], [])
        T = np.array(e["T_global_ego"])
        if not rows:
            out.append((e, Detections(Boxes3D.empty(), np.zeros(0))))
            continue
        data = np.array([[*r["translation"], r["size"][1], r["size"][0], r["size"][2], quat_to_yaw(r["rotation"]),
                          *r["velocity"]] for r in rows], np.float64)
        labels = [DETECTION_CLASSES.index(r["detection_name"]) for r in rows]
        # the attribute kept (a re-scored submission's mAAE, and so its NDS, stays the detector's)
        attrs = np.array([ATTRIBUTES.index(r["attribute_name"]) if r.get("attribute_name") in ATTRIBUTES else -1
                          for r in rows], np.int64)
        boxes = Boxes3D(data, labels, attributes=attrs).transform(invert_transform(T))
        out.append((e, Detections(boxes, np.array([r["detection_score"] for r in rows], np.float64))))
    return out


def track_and_score(frames: list, settings: dict, data_root, version: str, split: str, out: Path,
                    detection_velocity: bool = False) -> dict:
    """Track ``frames`` with ``settings``, score the tracks (TrackingEval); with ``detection_velocity`` also the
    detections with their tracks' velocities (DetectionEval: ``summary["track_velocity"]``, as
    ``promptfusion-test --track``)."""
    from perception.evaluation.detection import to_nuscenes_boxes, track_velocity_eval, write_submission
    from perception.evaluation.tracking import run_tracking_eval, to_tracking_boxes
    from perception.tracking import Tracker, with_track_velocities

    tracker, tracked, last, dets = Tracker(**settings), {}, None, {}
    for e, det in frames:
        if e["scene"] != last:
            tracker.reset()
            last = e["scene"]
        T = np.array(e["T_global_ego"])
        tracks = tracker.update(det, T, int(e["timestamp_us"]) * 1000)
        tracked[e["token"]] = to_tracking_boxes(e["token"], tracks, T)
        if detection_velocity:
            dets[e["token"]] = to_nuscenes_boxes(e["token"], with_track_velocities(det, tracks), T)
    path = out / "results_tracking.json"
    write_submission(path, tracked)
    summary = run_tracking_eval(data_root, version, split, path, out / "eval")
    if detection_velocity:
        summary["track_velocity"] = track_velocity_eval(dets, out / "track_velocity" / "results_nusc.json",
                                                        data_root, version, split)
    return summary


def movers_ave(table: dict) -> float:
    """The mean velocity error over the moving objects of a velocity-by-heading table (every group and heading
    but "still", weighted by their counts)."""
    rows = [(r["n"], r["ave"]) for by in table.values() for h, r in by.items() if h != "still" and r["n"]]
    n = sum(k for k, _ in rows)
    return sum(k * v for k, v in rows) / n if n else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("detections", help="nuScenes detection submission JSON")
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--override-data", default="", metavar="K=V,...", help="e.g. version=v1.0-trainval")
    p.add_argument("--tracker", default="", metavar="K=V|V,...", help="tracker settings; '|' makes a grid")
    p.add_argument("--out", default=None, help="directory for the tracking submissions (default: a temporary one)")
    p.add_argument("--velocity", action="store_true",
                   help="also score the tracks' velocities by heading against the annotations, and the "
                        "detections with their tracks' velocities (a DetectionEval per setting: ~1 min each on a "
                        "240-keyframe split)")
    a = p.parse_args(argv)

    from perception.config import data_section
    from perception.evaluation.detection import (
        TRACK_VELOCITY_TITLE,
        annotated_motion,
        format_velocity_by_heading,
        tracks_as_detections,
        velocity_by_heading,
    )
    from perception.evaluation.tracking import format_tracking_table
    from perception.sources.nuscenes import NuScenesSource
    from perception.tracking import Tracker

    try:
        version = data_section({}, a.override_data)["version"]
        settings = grid(a.tracker)
        for s in settings:
            Tracker(**s)
    except ValueError as e:
        p.error(str(e))
    try:
        results = json.loads(Path(a.detections).read_text())["results"]
    except (OSError, ValueError, KeyError) as e:
        p.error(f"{a.detections}: not a readable detection submission ({e})")
    source = NuScenesSource(a.data_root, version=version, split=a.split, lidar_sweeps=0, radar_sweeps=1, cameras=())
    missing = set(source.sample_tokens()) - set(results)
    if len(missing) == len(source):
        p.error(f"{a.detections} has no sample of split {a.split}")
    if missing:
        print(f"warning: {len(missing)} of {len(source)} samples have no detections in {a.detections}")
    frames = detections_by_sample(results, source)
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp())
    rows = []
    if a.velocity:  # the annotations and ego headings, loaded once for every setting's tracks
        gt, yaws = annotated_motion(a.data_root, version, a.split, a.detections, out / "detection")
    for k, s in enumerate(settings):
        summary = track_and_score(frames, s, a.data_root, version, a.split, out / f"run{k}", a.velocity)
        if a.velocity:
            tracks = tracks_as_detections(out / f"run{k}" / "results_tracking.json")
            summary["velocity"] = velocity_by_heading(gt, tracks, yaws)
            summary["movers_ave"] = movers_ave(summary["velocity"])
        rows.append((s, summary))
        vel = (f" movers AVE {summary['movers_ave']:.2f} m/s, detections' mAVE with the tracks' velocities "
               f"{summary['track_velocity']['tp_errors']['vel_err']:.3f}") if a.velocity else ""
        if len(settings) == 1:
            print(format_tracking_table(summary))
            if a.velocity:
                print(TRACK_VELOCITY_TITLE)
                print(format_velocity_by_heading(summary["velocity"]))
                print(f"the detections' mAVE with their tracks' velocities (the devkit's): "
                      f"{summary['track_velocity']['tp_errors']['vel_err']:.3f}")
        else:
            print(f"[{k + 1}/{len(settings)}] {s or 'defaults'}: AMOTA {summary['amota']:.3f} "
                  f"IDS {summary['ids']:.0f}{vel}", flush=True)
    rows.sort(key=lambda r: -r[1]["amota"])
    if len(settings) > 1:
        print(f"\n{'AMOTA':>6s} {'AMOTP':>6s} {'IDS':>5s}" + (" movers AVE   mAVE" if a.velocity else "")
              + "  settings")
        for s, m in rows:
            print(f"{m['amota']:6.3f} {m['amotp']:6.3f} {m['ids']:5.0f}"
                  + (f" {m['movers_ave']:10.2f} {m['track_velocity']['tp_errors']['vel_err']:6.3f}" if a.velocity
                     else "") + f"  {s}")
    best = rows[0][1]
    print(f"AMOTA: {best['amota']:.3f} AMOTP: {best['amotp']:.3f} IDS: {best['ids']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
