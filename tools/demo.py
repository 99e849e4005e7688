"""The newcomer's first command: make a small synthetic drive in nuScenes format and show it.

    python tools/demo.py [--out demo_out] [--data data/demo] [--scenes 2] [--samples 8]

Writes to --out: the devkit's own render of a sample (render_sample), our bird's-eye view and 6-camera
mosaic of the same frame (read back through NuScenesSource), and prints a summary of the dataroot.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_out")
    p.add_argument("--data", default="data/demo", help="synthetic dataroot (made if missing)")
    p.add_argument("--scenes", type=int, default=2)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--image-scale", type=float, default=1.0)
    a = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    from perception import viz
    from perception.sources import devkit_compat
    from perception.sources.nuscenes import NuScenesSource
    from perception.sources.synthetic import WorldConfig, generate
    from perception.types import DETECTION_CLASSES

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(a.data)
    t0 = time.time()
    if not (data / "v1.0-mini").is_dir():
        print(f"writing the synthetic world to {data} ...")
        generate(data, WorldConfig(scenes=a.scenes, samples=a.samples, seed=0, image_scale=a.image_scale))
    gen_s = time.time() - t0

    devkit_compat.apply()
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes("v1.0-mini", str(data), verbose=False)
    src = NuScenesSource(data, "v1.0-mini", split=None)
    frame = src[min(len(src) - 1, a.samples // 2)]
    files = {}
    files["devkit render_sample"] = out / "devkit_render_sample.png"
    nusc.render_sample(frame.sample_token, out_path=str(files["devkit render_sample"]), verbose=False)
    files["bird's-eye view"] = out / "bev.png"
    viz.save_rgb(files["bird's-eye view"], viz.bev_image(frame, frame.gt, title=f"{frame.scene}  ground truth"))
    files["camera mosaic"] = out / "cameras.png"
    viz.save_rgb(files["camera mosaic"], viz.camera_mosaic(frame, frame.gt))

    n_lidar = [len(np.fromfile(nusc.get_sample_data_path(s["data"]["LIDAR_TOP"]), np.float32)) // 5
               for s in nusc.sample]
    labels = np.concatenate([src[i].gt.labels for i in range(len(src))])
    counts = np.bincount(labels, minlength=len(DETECTION_CLASSES))
    print()
    print(f"PromptFusion synthetic world: {data}  (written in {gen_s:.1f} s)")
    print(f"  scenes  {', '.join(s['name'] for s in nusc.scene)}")
    print(f"  samples {len(nusc.sample)}   sample_data {len(nusc.sample_data)}   annotations "
          f"{len(nusc.sample_annotation)}")
    print(f"  lidar points per keyframe: mean {np.mean(n_lidar):.0f}   frame {frame.sample_token[:8]}: "
          f"{len(frame.lidar)} points over {1 + src.lidar_sweeps} sweeps, {len(frame.radar)} radar points, "
          f"{len(frame.cameras)} cameras")
    print("  ground truth per class: " + ", ".join(f"{c} {n}" for c, n in zip(DETECTION_CLASSES, counts)))
    print("  pictures:")
    for name, path in files.items():
        print(f"    {name:22s} {path}")
    (out / "summary.json").write_text(json.dumps({
        "dataroot": str(data), "samples": len(nusc.sample), "annotations": len(nusc.sample_annotation),
        "lidar_points_mean": float(np.mean(n_lidar)), "per_class": dict(zip(DETECTION_CLASSES, counts.tolist())),
        "pictures": {k: str(v) for k, v in files.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
