"""ONNX export of the shipped checkpoint: onnxruntime agrees with torch on other frames and degraded inputs."""

import numpy as np
import pytest
import torch

from perception.export import OnnxModel, export_onnx, max_abs_diff
from perception.pipeline import Pipeline


@pytest.fixture(scope="module")
def setup(synthetic_root, tmp_path_factory):
    from perception.sources.nuscenes import NuScenesSource

    pipe = Pipeline("configs/tiny.py", "checkpoints/tiny.pth")
    src = NuScenesSource(synthetic_root, "v1.0-mini", None, lidar_sweeps=4)
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(pipe.model, pipe.pre.collate([pipe.pre.prepare(src[0])]), pipe.pre.spec, path)
    return pipe, src, OnnxModel(path, pipe.pre.spec)


@pytest.mark.parametrize("mods", [None, ("camera", "radar"), ("lidar", "radar"), ("lidar",)],
                         ids=["all", "no-lidar", "no-cameras", "lidar-only"])
def test_round_trip_other_frames_within_1e3(setup, mods):
    pipe, src, ort_model = setup
    for i in (3, len(src) - 1):  # voxel counts differ from the traced frame: dynamic axes
        batch = pipe.pre.collate([pipe.pre.prepare(src[i], mods)])
        with torch.no_grad():
            ref = pipe.model(batch)
        got = ort_model(batch)
        diff = max_abs_diff(ref, got)
        assert set(diff) == set(ref), "the graph must give every output the torch model gives"
        assert max(diff.values()) < 1e-3, diff
        # and the decoded detections are the same objects
        a, b = pipe.model.head.decode(ref)[0], pipe.model.head.decode(got)[0]
        assert len(a["scores"]) > 0 and len(a["scores"]) == len(b["scores"])
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-3)
        # the same boxes with the same labels; two candidates whose scores agree to 1e-6 may come out in either
        # order, so each box is matched to its nearest one of the same label rather than compared by position
        for box, label in zip(a["boxes"], a["labels"]):
            same = b["boxes"][b["labels"] == label]
            assert len(same) and np.abs(same - box).max(axis=1).min() < 1e-3, (label, box[:3])


def test_export_leaves_the_model_as_it_was(setup, tmp_path):
    pipe, src, _ = setup
    batch = pipe.pre.collate([pipe.pre.prepare(src[2])])
    with torch.no_grad():
        before = pipe.model(batch)
    export_onnx(pipe.model, batch, pipe.pre.spec, tmp_path / "again.onnx")
    assert not pipe.model.training
    with torch.no_grad():
        after = pipe.model(batch)
    assert max(max_abs_diff(before, after).values()) == 0.0


def test_export_needs_every_modality_and_a_real_file(setup, tmp_path):
    pipe, src, _ = setup
    with pytest.raises(ValueError, match="lidar"):
        export_onnx(pipe.model, pipe.pre.collate([pipe.pre.prepare(src[0], ("camera", "radar"))]), pipe.pre.spec,
                    tmp_path / "x.onnx")
    with pytest.raises(FileNotFoundError):
        OnnxModel(tmp_path / "missing.onnx", pipe.pre.spec)


def test_export_tool_checks_its_own_graph(synthetic_root, tmp_path, capsys):
    from perception.cli.export import main

    out = tmp_path / "tool.onnx"
    assert main(["configs/tiny.py", "checkpoints/tiny.pth", "--data-root", str(synthetic_root),
                 "--out", str(out), "--frames", "2"]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and "round trip: ok" in text
    # a tolerance nothing can meet makes the tool fail, so the check is real
    assert main(["configs/tiny.py", "checkpoints/tiny.pth", "--data-root", str(synthetic_root),
                 "--out", str(out), "--frames", "1", "--atol", "0"]) == 1


def test_onnxruntime_backend_gives_the_torch_detections(synthetic_root):
    """runtime.backend: the Pipeline exports its network in memory and ONNX Runtime runs frames with every
    modality (a frame without one goes to torch, which skips that branch); detections and grounding scores
    are torch's, for a batch of two, with and without lidar."""
    from perception.config import ConfigError
    from perception.sources.nuscenes import NuScenesSource

    src = NuScenesSource(synthetic_root, "v1.0-mini", None, lidar_sweeps=4)
    ref = Pipeline("configs/tiny.py", "checkpoints/tiny.pth", runtime={"backend": "torch"})
    ort_pipe = Pipeline("configs/tiny.py", "checkpoints/tiny.pth", runtime={"backend": "onnxruntime"})
    assert ref._onnx is None and ort_pipe._onnx is not None
    auto = Pipeline("configs/tiny.py")  # tiny.py says auto: torch eager (faster than the static graph here)
    assert auto.runtime["backend"] == "torch" and auto._onnx is None
    prompts = ["moving cars ahead", "parked vehicles on the right"]
    frames = [src[1], src[len(src) - 1]]
    for mods, ort_runs in ((None, 2), (("camera", "radar"), 0)):
        ref.modalities = ort_pipe.modalities = mods
        calls = ort_pipe._onnx.calls
        a, b = ref.run_batch(frames, prompts), ort_pipe.run_batch(frames, prompts)
        assert ort_pipe._onnx.calls - calls == ort_runs
        for da, db in zip(a, b):
            assert len(da) == len(db) > 0
            np.testing.assert_allclose(da.scores, db.scores, atol=1e-4)
            np.testing.assert_allclose(da.boxes.data[:, :7], db.boxes.data[:, :7], atol=1e-3)
            np.testing.assert_allclose(da.grounding_scores, db.grounding_scores, atol=1e-3)
    with pytest.raises(ConfigError, match="onnxruntime"):
        Pipeline("configs/tiny.py", runtime={"backend": "onnxruntime", "precision": "bf16"})
    with pytest.raises(ConfigError, match="backend"):
        Pipeline("configs/tiny.py", runtime={"backend": "tensorrt"})
