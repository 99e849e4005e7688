"""Report a nuScenes dataroot's statistics next to real-nuScenes figures, plus single-cue probes.

    promptfusion-world-report --data-root data/synthetic
    promptfusion-world-report --data-root /data/sets/nuscenes --version v1.0-trainval --max-samples 500 \\
        --json world_report.json

Works on any dataroot nuscenes-devkit loads (real nuScenes or the synthetic world). Prints one table
(content, lidar, radar, conditions & motion, cue probes: quantity | this world | real nuScenes | goal | ok);
the last line is ``world report: N samples, M scenes``. ``--pictures DIR`` also draws the six cameras of a
day, a night and a rain keyframe and a bird's-eye view. See perception/evaluation/world_report.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True, help="nuScenes dataroot (holds v1.0-mini or v1.0-trainval)")
    p.add_argument("--version", default=None,
                   help="table version (default: whichever of v1.0-mini / v1.0-trainval is present)")
    p.add_argument("--max-samples", type=int, default=None, metavar="N",
                   help="use N evenly spaced keyframes for the per-keyframe statistics (default: all)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the numbers to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--pictures", default=None, metavar="DIR",
                   help="also draw the cameras of a day, a night and a rain keyframe and a bird's-eye view into DIR")
    a = p.parse_args(argv)
    if a.max_samples is not None and a.max_samples < 1:
        p.error("--max-samples must be >= 1")
    if not Path(a.data_root).is_dir():
        p.error(f"--data-root {a.data_root}: not a directory")

    from perception.evaluation.world_report import format_report, report

    try:
        d = report(a.data_root, version=a.version, max_samples=a.max_samples, progress=not a.quiet)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(d, f, indent=2)
    if a.pictures:
        from perception.evaluation.world_report import pictures

        for path in pictures(a.data_root, a.pictures, version=a.version):
            print(f"picture: {path}")
    print(format_report(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
