"""Evaluate a checkpoint with the official nuScenes DetectionEval.

    python tools/test.py configs/tiny.py checkpoints/tiny.pth --data-root data/synthetic \\
        [--modalities camera,lidar,radar] [--faults SPEC] [--split mini_val] --out results.json
    python tools/test.py configs/tiny.py checkpoints/tiny.pth --data-root data/synthetic --failure-table
    python tools/test.py configs/tiny.py checkpoints/tiny.pth --data-root data/synthetic --prompts auto

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
import time
from pathlib import Path

import numpy as np

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


def evaluate(pipe, src, mods, faults, out: Path, data_root, version, split, quiet=False, prompts=None) -> dict:
    """Detection eval; with ``prompts`` (records) also the grounding eval (``summary["grounding"]``)."""
    from tqdm import tqdm

    from perception.evaluation.detection import run_detection_eval, to_nuscenes_boxes, write_submission
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
    for frame in tqdm(src, total=len(src), desc=desc, unit="frame", disable=quiet):
        if faults:
            t = (frame.stamp_ns - first.setdefault(frame.scene, frame.stamp_ns)) / 1e9
            frame = apply_to_frame(frame, faults, t, rng)
        t0 = time.perf_counter()
        texts = tuple(dict.fromkeys(asked.get(frame.sample_token, ())))
        det = pipe(frame, texts)
        times.append(time.perf_counter() - t0)
        if prompts is not None:
            dets[frame.sample_token], gts[frame.sample_token] = det, frame.gt
        results[frame.sample_token] = to_nuscenes_boxes(frame.sample_token, det, frame.T_global_ego)
    write_submission(out, results, mods)
    summary = run_detection_eval(data_root, version, split, out, out.parent / "eval")
    summary["p50_ms"] = 1000 * float(np.median(times))
    if prompts is not None:
        from perception.evaluation.grounding import evaluate_prompt, summarize

        used = [r for r in prompts if any(t in dets for t in r["frame_token_object_token"])]
        if not used:
            raise SystemExit(f"--prompts: no prompt refers to a sample of split {split}")
        per_prompt = [evaluate_prompt(r, dets, gts) for r in used]
        summary["grounding"] = summarize(per_prompt)
        summary["grounding_prompts"] = [vars(x) for x in per_prompt]
    return summary


def _condition_rows(data_root, version, split, result_path: Path, mods: str) -> list:
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", default=None, help="default: the config's data.val_split")
    p.add_argument("--modalities", default="camera,lidar,radar", help="comma-separated subset to use")
    p.add_argument("--faults", default="", help="frame-level fault spec, e.g. drop:CAM_FRONT,beams:LIDAR_TOP=50%%")
    p.add_argument("--failure-table", action="store_true", help="evaluate the standard sensor-failure set")
    p.add_argument("--out", default=None, help="submission JSON path (default: a temporary file)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--prompts", default=None,
                   help="NuPrompt-style prompt JSON (file or directory), or 'auto' for the dataroot's generated one")
    a = p.parse_args(argv)

    from perception.config import load_config
    from perception.evaluation.detection import format_table
    from perception.faults import FaultSpecError, parse_faults
    from perception.models.fusion import MODALITIES
    from perception.pipeline import Pipeline
    from perception.sources.nuscenes import NuScenesSource

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
    cfg = load_config(a.config)
    data = cfg.get("data", {})
    split = a.split or data.get("val_split", "mini_val")
    version = data.get("version", "v1.0-mini")
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
        src = NuScenesSource(a.data_root, version=version, split=split, lidar_sweeps=data.get("lidar_sweeps", 9),
                             radar_sweeps=data.get("radar_sweeps", 3),
                             cameras=pipe.pre.spec["camera"]["channels"] if "camera" in mods else (),
                             image_min_hw=pipe.pre.decode_hw)
        slug = name.replace(" ", "_").replace("%", "pct")
        out = Path(a.out) if (a.out and not a.failure_table) else out_dir / slug / "results_nusc.json"
        summary = evaluate(pipe, src, mods, parse_faults(f), out, a.data_root, version, split,
                           prompts=None if a.failure_table else records)
        table.append((name, m, f, summary))
        if a.failure_table and name == "all sensors":
            cond_rows = _condition_rows(a.data_root, version, split, out, m)
        if not a.failure_table:
            print(f"{len(src)} frames, split {split}, modalities {'+'.join(mods)}" + (f", faults {f}" if f else "")
                  + f", p50 {summary['p50_ms']:.0f} ms / frame (preprocessing included)")
            print(f"submission: {out}")
            print(format_table(summary))
            if records is not None:
                from perception.evaluation.grounding import format_summary

                (out.parent / "grounding.json").write_text(json.dumps(
                    {"summary": summary["grounding"], "prompts": summary["grounding_prompts"]}, indent=1))
                print(f"\ngrounding ({len(summary['grounding_prompts'])} prompt records; per prompt: "
                      f"{out.parent / 'grounding.json'})")
                print(format_summary(summary["grounding"]))
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
