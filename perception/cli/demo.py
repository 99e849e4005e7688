"""The newcomer's first command: the whole system on the embedded default, with pictures.

    promptfusion-demo [--out demo_out] [--data data/demo] [--samples 20] [--prompt TEXT ...]

1. writes a small synthetic world in nuScenes format (2 scenes; made once, in --data),
2. converts its validation scene (scene-0103) into a rosbag2 MCAP drive log,
3. replays the log through the Pipeline with the shipped checkpoint (checkpoints/tiny.pth) and three prompts,
   at every 20 Hz lidar sweep, exactly as promptfusion-replay does,
4. writes to --out: a bird's-eye view per keyframe (lidar, radar, ground truth in grey, detections in class
   colours, grounded objects ringed in each prompt's colour, tracked objects with their trails and
   identities), bev.gif over the scene, a 6-camera mosaic with
   projected detections, an Open3D offscreen 3D render, results.json, the output MCAP (open it in Foxglove)
   and the devkit's own render_sample of the same keyframe,
5. prints frames, per-stage latency, detection mAP / NDS on the scene (official devkit eval), grounding hits
   per prompt, and where every file is.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from perception.paths import DEFAULT_CHECKPOINT, DEFAULT_CONFIG
from perception.tracking import TRACKING_CLASSES
from perception.types import DETECTION_CLASSES

THRESHOLD = 0.5       # grounding x detection score for "this object is what the prompt means"
MIN_SCORE = 0.3       # detections drawn in the pictures
TRAIL_S = 3.0         # seconds of track history drawn behind each tracked object (the tracking classes)


def default_specs():
    from perception.language.prompts import PromptSpec

    return [PromptSpec("car", motion="moving", lon="ahead"), PromptSpec("pedestrian", motion="walking", lat="left"),
            PromptSpec("vehicle", motion="parked", lat="right")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_out")
    p.add_argument("--data", default="data/demo", help="synthetic dataroot (made if missing)")
    p.add_argument("--samples", type=int, default=20, help="keyframes per scene (2 Hz)")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    p.add_argument("--prompt", action="append", default=[],
                   help="referring prompt (repeatable; default: three prompts whose referents are known)")
    p.add_argument("--keyframes-only", action="store_true", help="replay only the 2 Hz keyframes")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    from PIL import Image

    from perception import viz
    from perception.evaluation.detection import run_detection_eval, write_submission
    from perception.evaluation.grounding import evaluate_prompt
    from perception.language.prompts import referred, render
    from perception.outputs import detections_to_json
    from perception.pipeline import Pipeline
    from perception.replay import replay, stamp_to_sample
    from perception.sources import devkit_compat
    from perception.sources.bag import BagSource
    from perception.sources.bag_writer import scene_to_bag
    from perception.sources.nuscenes import NuScenesSource
    from perception.sources.synthetic.demo_world import SCENE, make_world

    def shown_path(x) -> str:
        try:
            return str(Path(x).resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(x)

    t_all = time.time()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("bev_*.png"):
        old.unlink()
    data = Path(a.data)
    gen_s = make_world(data, a.samples)

    log = data / "logs" / SCENE
    t0 = time.time()
    if not log.is_dir():
        print(f"converting {SCENE} to a drive log {log} ...")
        scene_to_bag(data, SCENE, log)
    bag_s = time.time() - t0

    specs = None if a.prompt else default_specs()
    prompts = tuple(a.prompt) if a.prompt else tuple(render(s) for s in specs)
    pipe = Pipeline(a.config, a.checkpoint, device=a.device)
    # full-size decoding here (unlike replay): the camera mosaic draws at 600 px per view
    src = BagSource(log, replace(pipe.assembly, image_min_hw=None), keyframes_only=a.keyframes_only)
    gt_src = NuScenesSource(data, "v1.0-mini", split=None, cameras=(), lidar_sweeps=0, radar_sweeps=1)
    devkit_compat.apply()
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes("v1.0-mini", str(data), verbose=False)  # loaded once: keyframe stamps and render_sample
    samples = stamp_to_sample(nusc)
    keyframes: list[dict] = []
    history: dict[int, list] = {}  # track id -> [(stamp, label, global xy)] of its confirmed, seen frames

    def on_frame(frame, det, token, tracks):
        cur = tracks.current(confirmed_only=True)
        cur = cur.select(np.flatnonzero([DETECTION_CLASSES[c] in TRACKING_CLASSES for c in cur.boxes.labels]))
        xy = (frame.T_global_ego[:2, :2] @ cur.boxes.center[:, :2].T).T + frame.T_global_ego[:2, 3]
        for i, label, p in zip(cur.ids, cur.boxes.labels, xy):
            history.setdefault(int(i), []).append((frame.stamp_ns, int(label), p))
        if token is None:
            return
        gt = gt_src.ground_truth(token)
        T_ego_global = np.linalg.inv(frame.T_global_ego)
        trails = {}
        for i in cur.ids:  # the last TRAIL_S seconds of each confirmed track, in this frame's ego frame
            h = [x for x in history[int(i)] if frame.stamp_ns - x[0] <= TRAIL_S * 1e9]
            pts = np.array([x[2] for x in h])
            trails[int(i)] = (h[-1][1], (T_ego_global[:2, :2] @ pts.T).T + T_ego_global[:2, 3])
        kf = {"token": token, "frame": frame, "det": det, "gt": gt, "trails": trails}
        keyframes.append(kf)

    mcap = out / "replay_mcap"
    if mcap.exists():
        shutil.rmtree(mcap)
    print(f"replaying {log} with {Path(a.checkpoint).name} and prompts {list(prompts)} ...")
    r = replay(pipe, src, mcap, prompts, samples, on_frame=on_frame, tracker={})
    if not keyframes:
        raise SystemExit("the replay produced no keyframe (is the log complete?)")

    # -- pictures ---------------------------------------------------------------------------------------
    files: dict[str, str] = {}
    bevs = []
    for i, kf in enumerate(keyframes):
        det = kf["det"]
        shown = det.filter(MIN_SCORE)
        combined = shown.grounding_scores * shown.scores[:, None] if prompts else np.zeros((len(shown), 0))
        grounded = [(pr, np.flatnonzero(combined[:, j] > THRESHOLD)) for j, pr in enumerate(prompts)]
        kf["grounded"] = grounded
        img = viz.bev_image(kf["frame"], shown.boxes, title=f"{SCENE} keyframe {i:02d}  (grey: ground truth)",
                            gt=kf["gt"], grounded=grounded, trails=kf["trails"])
        path = out / f"bev_{i:02d}.png"
        viz.save_rgb(path, img)
        bevs.append(Image.fromarray(img).resize((600, 600), Image.LANCZOS))
    files["bird's-eye view per keyframe"] = str(out / "bev_*.png")
    bevs[0].save(out / "bev.gif", save_all=True, append_images=bevs[1:], duration=500, loop=0)
    files["animation"] = str(out / "bev.gif")
    mid = keyframes[len(keyframes) // 2]
    shown = mid["det"].filter(MIN_SCORE)
    viz.save_rgb(out / "cameras.png", viz.camera_mosaic(mid["frame"], shown.boxes))
    files["camera mosaic"] = str(out / "cameras.png")
    try:
        from perception.viz3d import render_frame

        hl = mid["grounded"][0][1] if prompts else None
        render_frame(out / "open3d.png", mid["frame"], shown.boxes, mid["gt"], highlight=hl)
        files["Open3D render"] = str(out / "open3d.png")
    except (ImportError, OSError, RuntimeError) as e:
        print(f"warning: no Open3D render ({e})", file=sys.stderr)
    nusc.render_sample(mid["token"], out_path=str(out / "devkit_render_sample.png"), verbose=False)
    import matplotlib.pyplot as plt

    plt.close("all")
    files["devkit render_sample"] = str(out / "devkit_render_sample.png")

    # -- metrics ----------------------------------------------------------------------------------------
    sub = out / "eval" / "results_nusc.json"
    sub.parent.mkdir(parents=True, exist_ok=True)
    write_submission(sub, r["results"])
    det_summary = run_detection_eval(data, "v1.0-mini", "mini_val", sub, out / "eval")
    grounding_rows = []
    dets = {kf["token"]: kf["det"] for kf in keyframes}
    gts = {kf["token"]: kf["gt"] for kf in keyframes}
    for j, pr in enumerate(prompts):
        shown_hits = sum(len(kf["grounded"][j][1]) for kf in keyframes)
        row = {"prompt": pr, "grounded": shown_hits}
        if specs is not None:
            record = {"scene_token": SCENE, "prompt": pr, "frame_token_object_token": {
                kf["token"]: referred(specs[j], kf["gt"]) for kf in keyframes}}
            res = evaluate_prompt(record, dets, gts)
            row.update(referred=res.n_referred, hits=res.tp05, false=res.fp05, ap=res.ap)
        grounding_rows.append(row)

    # -- results.json -----------------------------------------------------------------------------------
    frames_json = [json.loads(detections_to_json(kf["det"].filter(MIN_SCORE), kf["frame"].stamp_ns, "base_link",
                                                 kf["frame"].modalities, extra={"sample_token": kf["token"]}))
                   for kf in keyframes]
    stages = {k: {"p50_ms": 1000 * float(np.percentile(v, 50)), "p95_ms": 1000 * float(np.percentile(v, 95))}
              for k, v in r["stages"].items() if v}
    (out / "results.json").write_text(json.dumps({
        "scene": SCENE, "checkpoint": shown_path(a.checkpoint), "prompts": list(prompts),
        "frames_replayed": r["frames"],
        "latency": stages, "detection": {"mAP": det_summary["mean_ap"], "NDS": det_summary["nd_score"]},
        "grounding": grounding_rows, "keyframes": frames_json}, indent=1))
    files["results"] = str(out / "results.json")
    files["output drive log (MCAP; Foxglove)"] = str(mcap)
    files["nuScenes submission"] = str(sub)

    # -- table ------------------------------------------------------------------------------------------
    print()
    print(f"PromptFusion demo - {SCENE} of the synthetic world ({data}), checkpoint {shown_path(a.checkpoint)}")
    print(f"  world written in {gen_s:.0f} s, drive log in {bag_s:.0f} s; {r['frames']} frames replayed in "
          f"{r['wall_s']:.1f} s ({r['frames'] / max(r['wall_s'], 1e-9):.1f} frames/s), {len(keyframes)} keyframes")
    print(f"  {'stage':12s} {'p50 ms':>8s} {'p95 ms':>8s}")
    for k, v in stages.items():
        print(f"  {k:12s} {v['p50_ms']:8.1f} {v['p95_ms']:8.1f}")
    print(f"  detection on {SCENE}: mAP {det_summary['mean_ap']:.3f}  NDS {det_summary['nd_score']:.3f}")
    if grounding_rows:
        print(f"  {'prompt':34s} {'referred':>8s} {'hits':>5s} {'false':>5s} {'AP':>6s}   (score > {THRESHOLD})")
        for row in grounding_rows:
            if "referred" in row:
                print(f"  {row['prompt']:34s} {row['referred']:8d} {row['hits']:5d} {row['false']:5d} "
                      f"{row['ap']:6.3f}")
            else:
                print(f"  {row['prompt']:34s} {'-':>8s} {row['grounded']:5d} {'-':>5s} {'-':>6s}")
    print("  files:")
    for name, path in files.items():
        print(f"    {name:36s} {path}")
    print(f"  total {time.time() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
