"""The evaluation loop: a source's frames through the Pipeline, the devkit's DetectionEval on the result,
and the grounding metric when prompts are asked. The command line is ``promptfusion-test``
(perception.cli.test).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

# (row name, modalities, frame-level faults) of the sensor-failure table
FAILURE_TABLE = (
    ("all sensors", "camera,lidar,radar", ""),
    ("no lidar", "camera,radar", ""),
    ("no cameras", "lidar,radar", ""),
    ("no radar", "camera,lidar", ""),
    ("lidar only", "lidar", ""),
    ("radar only", "radar", ""),
    ("camera only", "camera", ""),
    ("one front camera missing", "camera,lidar,radar", "drop:CAM_FRONT"),
    ("lidar 50% beams", "camera,lidar,radar", "beams:LIDAR_TOP=50%"),
    ("low light cameras", "camera,lidar,radar", "dark:CAM_*=0.3"),
)


def evaluate(pipe, src, mods, faults, out: Path, data_root, version, split, quiet=False, prompts=None,
             track: dict | None = None, prompt_tracking: bool = True) -> dict:
    """Detection eval; with ``prompts`` (records) also the grounding eval (``summary["grounding"]``); with
    ``track`` (Tracker settings, {} for the defaults) the detections of each scene also go through the tracker
    in time order and the devkit's TrackingEval scores them (``summary["tracking"]``), and the detections with
    their tracks' velocities go through the DetectionEval again (``summary["track_velocity"]``); with both, and
    ``prompt_tracking``, also the prompts answered by tracks (``summary["prompt_tracking"]``)."""
    from tqdm import tqdm

    from perception.evaluation.detection import (
        run_detection_eval,
        to_nuscenes_boxes,
        track_velocity_eval,
        write_submission,
    )
    from perception.faults import apply_to_frame

    pipe.modalities = mods
    results, times = {}, []
    first: dict[str, int] = {}
    rng = np.random.default_rng(0)
    desc = f"inference ({'+'.join(mods)}{' | ' + faults.spec if faults else ''})"
    asked: dict[str, list[str]] = {}
    for r in prompts or ():
        for tok in r["frame_token_object_token"]:
            asked.setdefault(tok, []).append(r["prompt"])
    dets, gts = {}, {}
    depth_err: list = []
    tracker, tracked, track_ms, track_frames, last_scene, track_vel = None, {}, [], {}, None, {}
    if track is not None:
        from perception.tracking import Tracker, with_track_velocities

        tracker = Tracker(**track)
    for frame in tqdm(src, total=len(src), desc=desc, unit="frame", disable=quiet):
        if faults:
            t = (frame.stamp_ns - first.setdefault(frame.scene, frame.stamp_ns)) / 1e9
            frame = apply_to_frame(frame, faults, t, rng)
        t0 = time.perf_counter()
        texts = tuple(dict.fromkeys(asked.get(frame.sample_token, ())))
        if tracker is not None and frame.scene != last_scene:  # tracks never span two scenes (the tracker
            tracker.reset()  # also resets on gaps)
            last_scene = frame.scene
        det = pipe(frame, texts, None if tracker is None else tracker.motion_source())
        times.append(time.perf_counter() - t0)
        if prompts is not None:
            dets[frame.sample_token], gts[frame.sample_token] = det, frame.gt
        results[frame.sample_token] = to_nuscenes_boxes(frame.sample_token, det, frame.T_global_ego)
        if tracker is not None:
            from perception.evaluation.tracking import to_tracking_boxes

            t0 = time.perf_counter()
            tracks = tracker.update(det, frame.T_global_ego, frame.stamp_ns)
            track_ms.append(1000 * (time.perf_counter() - t0))
            tracked[frame.sample_token] = to_tracking_boxes(frame.sample_token, tracks, frame.T_global_ego)
            track_vel[frame.sample_token] = to_nuscenes_boxes(frame.sample_token, with_track_velocities(det, tracks),
                                                              frame.T_global_ego)
            if prompts is not None:
                track_frames[frame.sample_token] = {"stamp_ns": frame.stamp_ns, "T_global_ego": frame.T_global_ego,
                                                    "gt": frame.gt, "tracks": tracks.current()}
        if "camera" in mods:
            err = depth_errors(pipe, frame)
            if err is not None:
                depth_err.append(err)
    write_submission(out, results, mods)
    tpath = out.parent / "tracking" / "results_tracking.json"
    if tracker is not None:
        write_submission(tpath, tracked, mods)
    summary = run_detection_eval(data_root, version, split, out, out.parent / "eval",
                                 tracks_path=tpath if tracker is not None else None)
    summary["p50_ms"] = 1000 * float(np.median(times))
    if tracker is not None:
        from perception.evaluation.tracking import run_tracking_eval

        summary["tracking"] = run_tracking_eval(data_root, version, split, tpath, tpath.parent / "eval")
        summary["tracking"]["p50_ms"] = float(np.median(track_ms))
        # the same detections, each with its track's velocity (the devkit's detection eval again: only the
        # velocity column differs, so mAP is the same and mAVE / NDS say what the history adds to velocity)
        summary["track_velocity"] = track_velocity_eval(track_vel, out.parent / "track_velocity" / "results_nusc.json",
                                                        data_root, version, split, mods)
    if depth_err:  # a network with a camera depth head: its depth where the reference lidar sweep lands
        e = np.concatenate(depth_err)
        summary["depth_abs_rel"], summary["depth_pixels"] = float(e.mean()), int(e.size)
    if prompts is not None:
        from perception.evaluation.grounding import evaluate_prompt, summarize

        used = [r for r in prompts if any(t in dets for t in r["frame_token_object_token"])]
        if not used:
            raise SystemExit(f"--prompts: no prompt refers to a sample of split {split}")
        per_prompt = [evaluate_prompt(r, dets, gts) for r in used]
        summary["grounding"] = summarize(per_prompt)
        if tracker is not None and prompt_tracking:  # prompts answered by tracks (NuPrompt's task)
            from perception.evaluation.prompt_tracking import prompt_tracking_eval

            summary["prompt_tracking"] = prompt_tracking_eval(used, track_frames, quiet=quiet)
        summary["grounding_prompts"] = [vars(x) for x in per_prompt]
    return summary


def condition_rows(data_root, version, split, result_path: Path, mods: str) -> list:
    """All sensors on the split's scenes by condition (night, rain; the devkit's eval on those samples)."""
    from nuscenes import NuScenes

    from perception.evaluation.detection import run_detection_eval, scene_conditions

    nusc = NuScenes(version=version, dataroot=str(data_root), verbose=False)
    in_split = {t for t in json.loads(result_path.read_text())["results"]}
    by_cond = scene_conditions(nusc)
    rows = []
    for cond in ("day", "night", "dry", "rain"):
        toks = [t for t in by_cond[cond] if t in in_split]
        s = run_detection_eval(data_root, version, split, result_path, result_path.parent / f"eval_{cond}",
                               sample_tokens=toks) if toks else None
        rows.append((f"all sensors, {cond} scenes", mods, "", s))
    return rows


def depth_maps(pipe, frame):
    """(channels, predicted depth (N, h, w), lidar depth (N, h, w)) per camera feature pixel of the frame's
    cameras: the expected value of the camera depth head's distribution and the nearest point of the frame's
    reference lidar sweep (inf where none lands); None without a depth head, cameras or lidar."""
    import torch

    from perception.models.encoders.camera import expected_depth, lidar_depth_map

    encoders = getattr(pipe.model, "encoders", None)
    enc = encoders["camera"] if encoders is not None and "camera" in encoders else None
    bins = getattr(enc, "depth_bins", None)
    if bins is None or not frame.cameras or frame.lidar is None:
        return None
    item = pipe.pre.prepare(frame, ("camera",))
    if "camera" not in item:
        return None
    batch = pipe.pre.collate([item], pipe.device)
    with torch.no_grad():
        logits = enc(batch["camera"]["images"], batch["camera"]["ego2img"])[1]  # features, depth[, semantic]
    cloud = frame.lidar
    ref = cloud.xyz[cloud.features["time_lag"] == 0] if "time_lag" in cloud.columns else cloud.xyz
    ref = ref[np.all(np.isfinite(ref), axis=1)]
    pts = torch.as_tensor(ref, dtype=torch.float32, device=pipe.device)
    e2i = batch["camera"]["ego2img"]
    d = lidar_depth_map(pts, torch.zeros(len(pts), dtype=torch.long, device=pipe.device), e2i,
                        tuple(logits.shape[-2:]), tuple(batch["camera"]["images"].shape[-2:]), bins[0], bins[1])[0]
    chans = list(pipe.pre.spec["camera"]["channels"])
    have = [i for i, ch in enumerate(chans) if ch in frame.cameras]
    return ([chans[i] for i in have], expected_depth(logits[0], bins)[have].cpu().numpy(), d[have].cpu().numpy())


def depth_errors(pipe, frame):
    """|predicted - lidar| / lidar depth per camera feature pixel that a point of the frame's reference lidar
    sweep lands in (``depth_maps``), or None without a depth head, cameras or lidar."""
    maps = depth_maps(pipe, frame)
    if maps is None:
        return None
    _, pred, d = maps
    ok = np.isfinite(d)
    return np.abs(pred[ok] - d[ok]) / d[ok]
