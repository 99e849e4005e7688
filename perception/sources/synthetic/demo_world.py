"""The demo's synthetic world: two scenes of the generator at a seed the shipped checkpoint was not trained
on, made once in a dataroot and reused. The demo (perception.cli.demo), the benchmarks and the ONNX export
read their frames from it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

SCENE = "scene-0103"  # the demo world's mini_val scene
SEED = 1              # the demo world's seed: not the seed the shipped checkpoint was trained on (0)


def make_world(data: Path, samples: int) -> float:
    """The demo's dataroot; remade when it holds another number of samples. Returns seconds spent."""
    from perception.sources.synthetic import WorldConfig, generate

    t0 = time.time()
    table = data / "v1.0-mini" / "sample.json"
    if table.is_file():
        scenes = json.loads((data / "v1.0-mini" / "scene.json").read_text())
        ours = all("(seed " in s["description"] for s in scenes)  # every scene the generator wrote names its seed
        if ours and len(json.loads(table.read_text())) == 2 * samples and all(
                f"(seed {SEED})" in s["description"] for s in scenes):
            return 0.0
        if not ours:  # a real dataroot (or anything else) is never deleted
            raise FileExistsError(f"{data} holds a dataroot the demo did not write; give --data another directory")
        shutil.rmtree(data)
    print(f"writing the synthetic world to {data} ...")
    generate(data, WorldConfig(scenes=2, samples=samples, seed=SEED))
    return time.time() - t0


def ensure_world(data: Path, samples: int = 20) -> Path:
    """``data`` as a dataroot for the tools that need real frames (benchmarks, export): the demo's world is
    written there only when it holds no tables (a dataroot that has some is used as it is, never remade)."""
    data = Path(data)
    if not (data / "v1.0-mini").is_dir():
        make_world(data, samples)
    return data
