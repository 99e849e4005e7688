"""The CUDA path: the same Pipeline on a GPU gives the CPU's detections. Skipped where torch sees no CUDA device
(the development machines and CI); run on a GPU machine with ``pytest -m gpu tests/test_gpu.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from perception.pipeline import Pipeline
from perception.sources.nuscenes import NuScenesSource
from perception.sources.synthetic.demo_world import ensure_world

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def frames():
    root = ensure_world(Path("data/demo"))
    ref = Pipeline("configs/tiny.py", "checkpoints/tiny.pth")
    src = NuScenesSource(root, "v1.0-mini", None, **ref.assembly.source_kwargs())
    return [src[i] for i in range(6)]  # consecutive keyframes: the temporal state is carried on each device


@pytest.mark.parametrize("runtime", [{"precision": "fp32"}, {"precision": "fp16"},
                                     {"precision": "fp16", "voxelize_on_device": True, "pin_memory": True}],
                         ids=["fp32", "fp16", "fp16-device-voxels"])
def test_cuda_pipeline_gives_the_cpu_detections(frames, runtime, same_detections):
    cpu = Pipeline("configs/tiny.py", "checkpoints/tiny.pth")
    gpu = Pipeline("configs/tiny.py", "checkpoints/tiny.pth", device="cuda", runtime=runtime)
    n = 0
    for f in frames:
        a, b = cpu(f), gpu(f)
        n += same_detections(a, b, 0.05 if runtime["precision"] == "fp32" else 0.3)
        if runtime["precision"] == "fp32":
            # cuDNN convolutions run in TF32 by default on Ampere and later: scores agree to a few 1e-3
            both = a.scores > 0.3
            assert np.abs(np.sort(a.scores[both])[::-1] - np.sort(b.scores)[::-1][: both.sum()]).max() < 5e-3
    assert n >= 3 * len(frames)


def test_base_config_runs_on_cuda_in_fp16(frames):
    """The GPU configuration (random weights: no base checkpoint ships) gives finite outputs end to end."""
    pipe = Pipeline("configs/base.py", None, device="cuda")
    assert pipe.runtime["precision"] == "fp16"
    src = NuScenesSource(Path("data/demo"), "v1.0-mini", None, **pipe.assembly.source_kwargs())
    for i in range(3):
        det = pipe(src[i])
        assert np.all(np.isfinite(det.boxes.data[:, :7])) and np.all(np.isfinite(det.scores))
