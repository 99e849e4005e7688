"""Convert a nuScenes (or synthetic) scene to a rosbag2 drive log.

    promptfusion-to-bag --data-root data/synthetic --scene scene-0103 --out logs/scene-0103 [--storage mcap|sqlite3]
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True)
    p.add_argument("--scene", required=True)
    p.add_argument("--out", required=True, help="rosbag2 directory to write (must not exist)")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    a = p.parse_args(argv)
    from perception.sources.bag_writer import scene_to_bag

    try:
        info = scene_to_bag(a.data_root, a.scene, a.out, a.version, a.storage)
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
