"""Write the synthetic world as a nuScenes dataroot.

    promptfusion-make-synthetic --out data/synthetic --scenes 10 --samples 40 --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from perception.sources.synthetic import WorldConfig, generate


def _dir_size(path) -> int:
    import os

    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="dataroot to write (must not exist unless --overwrite)")
    p.add_argument("--scenes", type=int, default=10, help="number of scenes (<= 10: v1.0-mini names)")
    p.add_argument("--samples", type=int, default=40, help="keyframes (2 Hz) per scene")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-scale", type=float, default=1.0, help="camera resolution factor (1.0 = 1600x900)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    try:
        cfg = WorldConfig(scenes=a.scenes, samples=a.samples, seed=a.seed, image_scale=a.image_scale)
    except ValueError as e:
        p.error(str(e))
    t = time.time()
    try:
        summary = generate(a.out, cfg, workers=a.workers, progress=not a.quiet, overwrite=a.overwrite)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary["seconds"] = round(time.time() - t, 1)
    summary["bytes"] = _dir_size(a.out)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
