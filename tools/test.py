"""Evaluate a checkpoint with the official nuScenes DetectionEval.

    python tools/test.py configs/tiny.py work_dirs/tiny/final.pth --data-root data/synthetic \\
        [--modalities camera,lidar,radar] [--split mini_val] --out results.json

Writes the nuScenes detection submission JSON, prints the per-class AP / TP-error table and one final
line ``mAP: 0.xxx NDS: 0.xxx``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", default=None, help="default: the config's data.val_split")
    p.add_argument("--modalities", default="camera,lidar,radar", help="comma-separated subset to use")
    p.add_argument("--out", default=None, help="submission JSON path (default: a temporary file)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)

    from tqdm import tqdm

    from perception.config import load_config
    from perception.evaluation.detection import format_table, run_detection_eval, to_nuscenes_boxes, write_submission
    from perception.models.fusion import MODALITIES
    from perception.pipeline import Pipeline
    from perception.sources.nuscenes import NuScenesSource

    mods = tuple(m for m in a.modalities.split(",") if m)
    bad = set(mods) - set(MODALITIES)
    if bad or not mods:
        p.error(f"--modalities: unknown {sorted(bad)}; choose from {MODALITIES}")
    cfg = load_config(a.config)
    data = cfg.get("data", {})
    split = a.split or data.get("val_split", "mini_val")
    version = data.get("version", "v1.0-mini")
    pipe = Pipeline(cfg, a.checkpoint, device=a.device, modalities=mods)
    src = NuScenesSource(a.data_root, version=version, split=split, lidar_sweeps=data.get("lidar_sweeps", 9),
                         radar_sweeps=data.get("radar_sweeps", 3),
                         cameras=pipe.pre.spec["camera"]["channels"] if "camera" in mods else ())
    results, times = {}, []
    for frame in tqdm(src, total=len(src), desc=f"inference ({'+'.join(mods)})", unit="frame"):
        t = time.perf_counter()
        det = pipe(frame)
        times.append(time.perf_counter() - t)
        results[frame.sample_token] = to_nuscenes_boxes(frame.sample_token, det, frame.T_global_ego)
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp()) / "results_nusc.json"
    write_submission(out, results, mods)
    summary = run_detection_eval(a.data_root, version, split, out, out.parent / "eval")
    print(f"{len(src)} frames, split {split}, modalities {'+'.join(mods)}, "
          f"p50 {1000 * np.median(times):.0f} ms / frame (preprocessing included)")
    print(f"submission: {out}")
    print(format_table(summary))
    (out.parent / "metrics_summary_short.json").write_text(json.dumps(
        {"mAP": summary["mean_ap"], "NDS": summary["nd_score"], "modalities": mods, "split": split}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
