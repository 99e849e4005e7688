"""Evaluate a checkpoint with the official nuScenes DetectionEval.

    promptfusion-test configs/tiny.py checkpoints/tiny.pth --data-root data/synthetic \\
        [--modalities camera,lidar,radar] [--faults SPEC] [--split mini_val] --out results.json
    promptfusion-test configs/tiny.py checkpoints/tiny.pth --data-root data/synthetic --failure-table
    promptfusion-test configs/tiny.py checkpoints/tiny.pth --data-root data/synthetic --prompts auto

Writes the nuScenes detection submission JSON, prints the per-class AP / TP-error table and one final
line ``mAP: 0.xxx NDS: 0.xxx``. ``--faults`` applies frame-level sensor faults (perception.faults: drop,
beams, dark; times in seconds from each scene's start). ``--failure-table`` evaluates all sensors, no lidar,
no cameras, no radar, one front camera missing, lidar with 50% of its beams and low-light cameras in one
run, then each single sensor alone, and prints mAP / NDS and their ratio to all sensors, plus all sensors
on the split's night / day and rain / dry scenes (as the scene descriptions name them). ``--prompts FILE``
(NuPrompt-style JSON, or ``auto`` for the dataroot's generated file) also asks every frame its scene's
prompts and prints the grounding metric (perception.evaluation.grounding) ending in
``grounding mAP: 0.xxx heldout mAP: 0.xxx``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def format_track_velocity(summary: dict) -> str:
    """The velocity error of the detections as the network gives it and as their tracks carry it (the devkit's
    AVE per class, mAVE, NDS: the same boxes and scores, so mAP is the same)."""
    from perception.tracking import TRACKING_CLASSES

    net, trk = summary["label_tp_errors"], summary["track_velocity"]["label_tp_errors"]
    lines = ["velocity of the detections: the network's against their tracks' (the devkit's AVE, m/s; "
             "track_velocity/ beside the submission)", f"{'class':12s} {'network':>8s} {'tracks':>8s}"]
    for c in TRACKING_CLASSES:
        lines.append(f"{c:12s} {net[c]['vel_err']:8.3f} {trk[c]['vel_err']:8.3f}")
    n, t = summary["tp_errors"]["vel_err"], summary["track_velocity"]["tp_errors"]["vel_err"]
    lines.append(f"{'mAVE':12s} {n:8.3f} {t:8.3f}   ({100 * (t - n) / max(n, 1e-9):+.1f}%)")
    lines.append(f"{'NDS':12s} {summary['nd_score']:8.3f} {summary['track_velocity']['nd_score']:8.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", default=None, help="default: the config's data.val_split")
    p.add_argument("--override-data", default="", metavar="K=V,...",
                   help="over the config's data section, e.g. version=v1.0-trainval for a dataroot of > 10 scenes")
    p.add_argument("--modalities", default="camera,lidar,radar", help="comma-separated subset to use")
    p.add_argument("--faults", default="", help="frame-level fault spec, e.g. drop:CAM_FRONT,beams:LIDAR_TOP=50%%")
    p.add_argument("--failure-table", action="store_true", help="evaluate the standard sensor-failure set")
    p.add_argument("--out", default=None, help="submission JSON path (default: a temporary file)")
    p.add_argument("--furniture", action="store_true",
                   help="synthetic worlds: confident detections on unannotated street furniture (poles, trees, ...)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--prompts", default=None,
                   help="NuPrompt-style prompt JSON (file or directory), or 'auto' for the dataroot's generated one")
    p.add_argument("--track", action="store_true",
                   help="also track the detections (perception.tracking) and run the devkit's TrackingEval")
    p.add_argument("--no-prompt-tracking", action="store_true",
                   help="with --track --prompts: skip the per-prompt TrackingEval (prompt AMOTA, the slow part); the "
                        "grounding metric still reads motion from the tracks")
    p.add_argument("--tracker", default="", metavar="K=V,...",
                   help="tracker settings (perception.tracking.TRACKER_DEFAULTS), e.g. matcher=hungarian,max_age=4")
    p.add_argument("--pictures", default=None, metavar="DIR",
                   help="write pictures of one frame of the split (--picture-frame): the camera mosaic with the "
                        "run's detections, per camera the predicted depth next to the projected lidar, and for a "
                        "network with the depth-lifted camera map (fuser lift) that map in BEV")
    p.add_argument("--picture-frame", type=int, default=None, help="index in the split (default: the middle one)")
    p.add_argument("--min-score", type=float, default=0.3, help="score threshold of the pictures' detections")
    a = p.parse_args(argv)

    from perception.config import data_section, load_config
    from perception.evaluation.detection import (
        TRACK_VELOCITY_TITLE,
        format_confusion,
        format_heading_by_orientation,
        format_table,
        format_velocity_by_heading,
    )
    from perception.evaluation.run import FAILURE_TABLE, condition_rows, evaluate
    from perception.faults import FaultSpecError, parse_faults
    from perception.pipeline import Pipeline
    from perception.sources.nuscenes import NuScenesSource
    from perception.types import MODALITIES

    runs = FAILURE_TABLE if a.failure_table else (("run", a.modalities, a.faults),)
    for _, m, f in runs:
        mods = tuple(x for x in m.split(",") if x)
        bad = set(mods) - set(MODALITIES)
        if bad or not mods:
            p.error(f"--modalities: unknown {sorted(bad)}; choose from {MODALITIES}")
        try:
            parse_faults(f)
        except FaultSpecError as e:
            p.error(str(e))
    tracker_settings = None
    if a.track:
        from perception.config import parse_overrides
        from perception.tracking import Tracker

        tracker_settings = parse_overrides(a.tracker)
        try:
            Tracker(**tracker_settings)
        except ValueError as e:
            p.error(f"--tracker: {e}")
    cfg = load_config(a.config)
    try:
        data = cfg["data"] = data_section(cfg, a.override_data)
    except ValueError as e:
        p.error(f"--override-data: {e}")
    split = a.split or data["val_split"]
    version = data["version"]
    pipe = Pipeline(cfg, a.checkpoint, device=a.device)
    records = None
    if a.prompts:
        from perception.language import prompts as P

        if not pipe.grounding:
            p.error(f"--prompts: {a.checkpoint} has no grounding head")
        if a.prompts == "auto":
            path = P.ensure_for(a.data_root, cfg, val_split=split)
        else:
            path = a.prompts
        records = P.read(path)
    out_dir = Path(a.out).parent if a.out else Path(tempfile.mkdtemp())
    table = []
    for name, m, f in runs:
        mods = tuple(x for x in m.split(",") if x)
        kw = pipe.assembly.source_kwargs()
        if "camera" not in mods:
            kw.update(cameras=(), image_min_hw=None)  # no JPEG decoding for a run without cameras
        src = NuScenesSource(a.data_root, version=version, split=split, **kw)
        slug = name.replace(" ", "_").replace("%", "pct")
        out = Path(a.out) if (a.out and not a.failure_table) else out_dir / slug / "results_nusc.json"
        summary = evaluate(pipe, src, mods, parse_faults(f), out, a.data_root, version, split,
                           prompts=None if a.failure_table else records,
                           track=tracker_settings if (a.track and not a.failure_table) else None,
                           prompt_tracking=not a.no_prompt_tracking)
        table.append((name, m, f, summary))
        if a.failure_table and name == "all sensors":
            cond_rows = condition_rows(a.data_root, version, split, out, m)
            if a.furniture:
                _print_furniture(out, src, a.data_root, version)
        if not a.failure_table:
            print(f"{len(src)} frames, split {split}, modalities {'+'.join(mods)}" + (f", faults {f}" if f else "")
                  + f", p50 {summary['p50_ms']:.0f} ms / frame (preprocessing included)")
            print(f"submission: {out}")
            if "depth_abs_rel" in summary:
                print(f"camera depth abs-rel: {summary['depth_abs_rel']:.3f} over {summary['depth_pixels']} feature "
                      "pixels with a lidar point (reference sweep)")
            if summary.get("confusion"):
                print("what each annotated object is found as (the nearest detection of any class with score >= 0.3 "
                      "within 2 m; shares of the row)")
                print(format_confusion(summary["confusion"]))
            if summary.get("velocity_by_heading"):
                print("velocity error by heading relative to the ego (matched to the nearest detection of the same "
                      "class with score >= 0.3 within 2 m)")
                print(format_velocity_by_heading(summary["velocity_by_heading"]))
            if summary.get("heading_by_orientation"):
                print("heading error of vehicles by how they lie relative to the ego (median, matched as above)")
                print(format_heading_by_orientation(summary["heading_by_orientation"]))
            print(format_table(summary))
            if a.furniture:
                _print_furniture(out, src, a.data_root, version)
            if "tracking" in summary:
                from perception.evaluation.tracking import format_tracking_table

                tr = summary["tracking"]
                print(f"\ntracking ({tr['p50_ms']:.2f} ms / frame p50; submission and devkit output: "
                      f"{out.parent / 'tracking'})")
                print(format_tracking_table(tr))
                if summary.get("track_velocity_by_heading"):
                    print(TRACK_VELOCITY_TITLE)
                    print(format_velocity_by_heading(summary["track_velocity_by_heading"]))
                if "track_velocity" in summary:
                    print("\n" + format_track_velocity(summary))
            if a.pictures:
                _pictures(pipe, src, mods, Path(a.pictures), a.picture_frame, a.min_score)
            if records is not None:
                from perception.evaluation.grounding import format_summary

                (out.parent / "grounding.json").write_text(json.dumps(
                    {"summary": summary["grounding"], "prompts": summary["grounding_prompts"]}, indent=1))
                print(f"\ngrounding ({len(summary['grounding_prompts'])} prompt records; per prompt: "
                      f"{out.parent / 'grounding.json'})")
                print(format_summary(summary["grounding"]))
                if "prompt_tracking" in summary:
                    _print_prompt_tracking(summary["prompt_tracking"])
    if a.failure_table:
        table += cond_rows
        base = table[0][3]
        print(f"\nsensor failure table - split {split}, {a.checkpoint}")
        print(f"{'condition':26s} {'mAP':>6s} {'NDS':>6s} {'mAP/all':>8s} {'NDS/all':>8s}")
        for name, _m, _f, s in table:
            if s is None:
                print(f"{name:26s} {'-':>6s} {'-':>6s} {'-':>8s} {'-':>8s}   (no such scene in split {split})")
                continue
            r_map = s["mean_ap"] / max(base["mean_ap"], 1e-9)
            r_nds = s["nd_score"] / max(base["nd_score"], 1e-9)
            print(f"{name:26s} {s['mean_ap']:6.3f} {s['nd_score']:6.3f} {r_map:8.3f} {r_nds:8.3f}")
        (out_dir / "failure_table.json").write_text(json.dumps(
            [{"condition": n, "modalities": m, "faults": f, "mAP": s["mean_ap"], "NDS": s["nd_score"]}
             for n, m, f, s in table if s is not None], indent=1))
        print(f"mAP: {base['mean_ap']:.3f} NDS: {base['nd_score']:.3f}")
    elif a.track:
        tr = table[0][3]["tracking"]
        print(f"AMOTA: {tr['amota']:.3f} AMOTP: {tr['amotp']:.3f} IDS: {int(tr['ids'])}")
        pt = table[0][3].get("prompt_tracking")
        if pt:
            print(" ".join(f"{'' if st == 'train' else st + ' '}prompt AMOTA: {r['amota']:.3f}"
                           for st, r in pt.items()))
    return 0



def _print_prompt_tracking(pt: dict) -> None:
    print("\nprompt-referred tracks (each prompt's referred objects as tracks; the devkit's tracking metrics)")
    print(f"{'style':9s} {'prompts':>7s} {'AMOTA':>6s} {'AMOTP':>6s} {'MOTA':>6s} {'recall':>6s} {'IDS':>5s}")
    for st, r in pt.items():
        print(f"{st:9s} {r['prompts']:7d} {r['amota']:6.3f} {r['amotp']:6.3f} {r['mota']:6.3f} {r['recall']:6.3f} "
              f"{r['ids']:5.0f}")


def _pictures(pipe, src, mods, out: Path, index, min_score: float) -> None:
    from perception.evaluation.run import depth_maps
    from perception.viz import bev_image, camera_mosaic, depth_panel, save_rgb

    out.mkdir(parents=True, exist_ok=True)
    i = len(src) // 2 if index is None else index
    if not 0 <= i < len(src):
        raise SystemExit(f"--picture-frame {i}: the split has {len(src)} frames")
    frame = src[i]
    pipe.modalities = mods
    lift = getattr(pipe.net.fuser, "lift", None)  # the network that runs (BatchNorm folded or not)
    seen = []
    hook = lift.register_forward_hook(lambda _m, _i, o: seen.append(o.detach())) if lift is not None else None
    try:
        det = pipe(frame).filter(min_score)
    finally:
        if hook is not None:
            hook.remove()
    if seen:  # the depth-lifted camera map (perception.models.lift): where the cameras put their features
        _lifted_picture(out / f"lifted_bev_{'+'.join(mods)}.png", seen[-1], lift, frame, det, src, i)
    path = out / f"bev_{'+'.join(mods)}.png"  # detections (heading ticks) over the annotated footprints (grey)
    save_rgb(path, bev_image(frame, det.boxes, range_m=40.0, gt=frame.gt,
                             title=f"frame {i}: {'+'.join(mods)}, score >= {min_score}"))
    print(f"picture: {path} (detections over the annotated boxes, bird's-eye view)")
    if frame.cameras:
        path = out / f"mosaic_{'+'.join(mods)}.png"
        save_rgb(path, camera_mosaic(frame, det.boxes))
        print(f"picture: {path} ({len(det)} detections >= {min_score} on frame {i}, {frame.sample_token})")
    maps = depth_maps(pipe, frame) if "camera" in mods else None
    if maps is not None:
        bins = pipe.model.encoders["camera"].depth_bins
        for ch, pred, lidar in zip(*maps):
            path = out / f"depth_{ch}.png"
            save_rgb(path, depth_panel(frame.cameras[ch].image, pred, lidar, dmax=bins[1], title=ch))
        print(f"pictures: {out}/depth_<camera>.png (predicted depth and projected lidar, frame {i})")


def _lifted_picture(path: Path, lifted, lift, frame, det, src, i: int) -> None:
    """The lifted map's per-cell feature norm (scaled to its 99th percentile) under the frame's annotated boxes
    (grey) and the run's detections (in colour)."""
    import numpy as np

    from perception.viz import bev_image, save_rgb

    norm = lifted[0].float().norm(dim=0).cpu().numpy()
    x0, y0, x1, y1 = lift.xy_range
    if not (abs(x0 + x1) < 1e-6 and abs(y0 + y1) < 1e-6 and abs(x1 - y1) < 1e-6):
        print(f"no lifted-map picture: the grid {lift.xy_range} is not a square about the ego")
        return
    gt = src.ground_truth(frame.sample_token) if frame.sample_token else None
    heat = norm / max(float(np.percentile(norm, 99)), 1e-6)
    save_rgb(path, bev_image(frame, det.boxes, range_m=x1, px_per_m=8.0, gt=gt, heat=heat,
                             title=f"lifted camera map, frame {i}"))
    print(f"picture: {path} (the depth-lifted camera map's feature norm; grey: annotated boxes)")


def _print_furniture(out: Path, src, data_root, version: str) -> None:
    from perception.evaluation.clutter import NotSyntheticError, format_table, from_submission

    try:
        table = from_submission(json.loads(out.read_text())["results"], src, data_root, version)
    except NotSyntheticError as e:
        print(f"\n--furniture: {e}")
        return
    row = table["all"]
    print("\nconfident detections (score >= 0.3) within 1 m of unannotated street furniture and 2 m from every "
          "annotated box, by the class given")
    print(format_table(table))
    print(f"furniture false alarms: {100 * sum(row['alarms'].values()) / max(row['in_range'], 1):.2f} per 100 "
          f"(pedestrian {100 * row['alarms']['pedestrian'] / max(row['in_range'], 1):.2f})")


if __name__ == "__main__":
    sys.exit(main())
