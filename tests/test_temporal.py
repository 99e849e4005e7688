"""Temporal BEV fusion: the warp into the current ego frame, the per-stream history and its resets, the
Pipeline reading it, the ONNX graph with the history as an input, and a training smoke run on keyframe pairs."""

import math

import numpy as np
import pytest
import torch

from perception.models.temporal import History, TemporalFusion, correlation
from perception.pipeline import Pipeline

TEMPORAL = "configs/tiny.py"


def _pose(x, y, yaw):
    T = np.eye(4)
    T[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    T[:2, 3] = [x, y]
    return T


def _peak(m):
    i = int(m.flatten().argmax())
    return divmod(i, m.shape[-1])  # (row = y index, column = x index)


@pytest.mark.parametrize("moved", [(2.0, 0.0, 0.0), (3.0, -1.0, math.pi / 2)])
def test_warp_puts_the_earlier_map_where_the_world_is_now(moved):
    """A blob at a world point in the earlier frame's map appears, after the warp, at that point's cell in the
    current ego frame (the ego drove forward; or drove and turned 90 degrees)."""
    t = TemporalFusion(1, (-20.0, -20.0, 20.0, 20.0), (40, 40))
    earlier_pose, current_pose = _pose(0, 0, 0), _pose(*moved)
    world = np.array([10.5, 4.5, 0.0, 1.0])                          # a cell centre
    pe = np.linalg.inv(earlier_pose) @ world                         # the point in the earlier ego frame
    m = torch.zeros(1, 1, 40, 40)
    m[0, 0, int(pe[1] + 20), int(pe[0] + 20)] = 1.0                  # 1 m cells
    T = torch.as_tensor(np.linalg.inv(earlier_pose) @ current_pose, dtype=torch.float32)[None]
    pc = np.linalg.inv(current_pose) @ world                          # where it is now
    assert _peak(t.warp(m, T)[0, 0]) == (int(pc[1] + 20), int(pc[0] + 20))
    assert _peak(t.warp(m, torch.eye(4)[None])[0, 0]) == _peak(m[0, 0])


def test_fresh_temporal_fusion_is_the_one_frame_network_and_history_changes_it():
    torch.manual_seed(0)
    t = TemporalFusion(8, (-10.0, -10.0, 10.0, 10.0), (16, 16)).eval()
    cur, earlier = torch.randn(2, 8, 16, 16), torch.randn(2, 8, 16, 16)
    T, valid = torch.eye(4).repeat(2, 1, 1), torch.tensor([True, False])
    torch.testing.assert_close(t(cur, earlier, T, valid), cur)      # zero-initialised: starts as identity
    torch.nn.init.normal_(t.mix[-1].weight, std=0.1)
    out, alone = t(cur, earlier, T, valid), t(cur)
    assert not torch.allclose(out[0], alone[0])                       # item 0 reads its history ...
    torch.testing.assert_close(out[1], alone[1])                      # ... item 1's is flagged invalid


def test_history_serves_the_lagged_state_and_resets():
    h = History(lag=0.5, tolerance=0.2, max_gap=0.6, max_speed=60.0)
    s = 1_000_000_000
    pose = _pose(0, 0, 0)
    assert h.lookup(0, pose, "a") is None                             # nothing yet
    for k in range(5):                                                # 10 Hz frames, driving 1 m per frame
        h.push(k * s // 10, _pose(k * 1.0, 0, 0), "a", torch.full((1,), float(k)))
    got = h.lookup(5 * s // 10, _pose(5.0, 0, 0), "a")
    assert got is not None and float(got[0]) == 0.0                   # the frame 0.5 s before
    np.testing.assert_allclose(got[1].numpy()[:3, 3], [5.0, 0, 0], atol=1e-6)  # now 5 m ahead of that frame
    assert h.lookup(int(1.3 * s), _pose(6.0, 0, 0), "a") is None and h.resets["gap"] == 1
    h.push(int(1.3 * s), _pose(6.0, 0, 0), "a", torch.zeros(1))
    h.push(int(1.8 * s), _pose(7.0, 0, 0), "a", torch.zeros(1))
    assert h.lookup(int(2.3 * s), _pose(8.0, 0, 0), "b") is None and h.resets["scene"] == 1
    h.push(int(2.3 * s), _pose(8.0, 0, 0), "b", torch.zeros(1))
    assert h.lookup(int(2.2 * s), _pose(8.0, 0, 0), "b") is None and h.resets["backwards"] == 1
    h.push(int(2.2 * s), _pose(8.0, 0, 0), "b", torch.zeros(1))
    assert h.lookup(int(2.7 * s), _pose(200.0, 0, 0), "b") is None and h.resets["pose jump"] == 1


@pytest.fixture(scope="module")
def temporal_pipe():
    torch.manual_seed(0)
    pipe = Pipeline(TEMPORAL)
    torch.nn.init.normal_(pipe.model.temporal.mix[-1].weight, std=0.05)  # an untrained network that reads it
    return pipe


def _scene_frames(root, pipe, n=3):
    from perception.sources.nuscenes import NuScenesSource

    src = NuScenesSource(root, "v1.0-mini", "mini_train", **pipe.assembly.source_kwargs())
    return [src[i] for i in range(n)]


def test_pipeline_feeds_each_frame_the_one_before_and_resets_between_streams(synthetic_root, temporal_pipe):
    pipe = temporal_pipe
    f0, f1, _ = _scene_frames(synthetic_root, pipe)
    pipe.reset_history()
    alone = pipe(f1)
    pipe.reset_history()
    pipe(f0)
    after = pipe(f1)                                                   # 0.5 s after f0: reads its map
    assert not np.allclose(alone.scores, after.scores) or len(alone) != len(after)
    pipe.reset_history()
    again = pipe(f1)
    np.testing.assert_array_equal(again.scores, alone.scores)
    pipe.reset_history()
    batch = pipe.run_batch([f0, f1])                                   # a batch is the same stream in order
    np.testing.assert_allclose(batch[1].scores, after.scores, atol=1e-5)


def test_temporal_onnx_graph_takes_the_history_as_an_input(synthetic_root, temporal_pipe):
    pytest.importorskip("onnxruntime")
    from perception.export import OnnxModel, export_onnx, history_shape, max_abs_diff

    pipe = temporal_pipe
    f0, f1, _ = _scene_frames(synthetic_root, pipe)
    b0 = pipe.pre.collate([pipe.pre.prepare(f0)])
    b1 = pipe.pre.collate([pipe.pre.prepare(f1)])
    onnx = OnnxModel(export_onnx(pipe.model, b0, pipe.pre.spec), pipe.pre.spec)
    assert onnx.history_shape == history_shape(pipe.model) and "history_bev" in onnx.inputs
    with torch.no_grad():
        ref0 = pipe.model(b0)
        state = ref0["state"]
        T = torch.as_tensor(np.linalg.inv(f0.T_global_ego) @ f1.T_global_ego, dtype=torch.float32)[None]
        b1["history"] = {"bev": state, "T": T, "valid": torch.ones(1, dtype=torch.bool)}
        ref1 = pipe.model(b1)
    got0, got1 = onnx(b0), onnx(b1)                                    # b0: no history, fed as invalid
    assert max(max_abs_diff(got0, ref0).values()) < 1e-3
    assert max(max_abs_diff(got1, ref1).values()) < 1e-3
    assert (ref1["heatmap"] - ref0["heatmap"]).abs().max() > 0         # the history reached the output


def test_temporal_training_smoke_on_keyframe_pairs(synthetic_root, tmp_path):
    from perception.cli.train import main as train_main
    from perception.sources.nuscenes import NuScenesSource
    from perception.training.data import FrameDataset

    pipe = Pipeline(TEMPORAL)
    ds = FrameDataset(NuScenesSource(synthetic_root, "v1.0-mini", "mini_train", lidar_sweeps=1), pipe.pre,
                      history=True)
    assert ds[0]["history"] is None and ds[1]["history"] is not None   # a scene's first keyframe has none
    e0, e1 = ds.source.index[0], ds.source.index[1]
    expected = np.linalg.inv(np.array(e0["T_global_ego"])) @ np.array(e1["T_global_ego"])
    np.testing.assert_allclose(ds[1]["history"]["T"], expected, atol=1e-4)   # this ego frame -> the earlier one
    assert train_main([TEMPORAL, "--data-root", str(synthetic_root), "--work-dir", str(tmp_path), "--max-iters", "2",
                       "--no-val", "--override-assembly", "lidar_sweeps=1"]) == 0
    ckpt = torch.load(tmp_path / "final.pth", weights_only=True)
    assert any(k.startswith("temporal.mix") for k in ckpt["state_dict"])
    assert any(float(v.abs().max()) > 0 for k, v in ckpt["state_dict"].items() if k == "temporal.mix.3.weight")
    # the grounding stage of a temporal checkpoint: BEV maps computed with the keyframe before
    from perception.cli.tune_text import main as tune_main

    out = tmp_path / "tuned.pth"
    assert tune_main([TEMPORAL, str(tmp_path / "final.pth"), "--data-root", str(synthetic_root), "--out", str(out),
                      "--mode", "lora", "--layers", "1", "--steps", "2", "--max-samples", "2",
                      "--objects", "both"]) == 0
    tuned = torch.load(out, weights_only=True)
    assert tuned["text_delta"] and tuned["meta"]["text_tune"]["keyframes"] == 2
    assert tuned["meta"]["text_tune"]["objects"] == "both"
    for k, v in ckpt["state_dict"].items():
        if not k.startswith("grounding."):
            torch.testing.assert_close(tuned["state_dict"][k], v, rtol=0, atol=0, msg=k)


def test_dilated_mixing_reads_history_four_cells_away():
    """With dilation 2 the mixing convolutions reach four cells either way: a history blob four cells from a
    current cell changes that cell's output; with dilation 1 (two cells) it does not."""
    out = {}
    for d in (1, 2):
        torch.manual_seed(0)
        t = TemporalFusion(4, (-8.0, -8.0, 8.0, 8.0), (16, 16), dilation=d).eval()
        torch.nn.init.normal_(t.mix[-1].weight, std=0.1)
        cur, earlier = torch.zeros(1, 4, 16, 16), torch.zeros(1, 4, 16, 16)
        blob = earlier.clone()
        blob[0, :, 8, 12] = 5.0
        T, valid = torch.eye(4)[None], torch.tensor([True])
        out[d] = (t(cur, blob, T, valid) - t(cur, earlier, T, valid))[0, :, 8, 8].abs().max().item()
    assert out[1] == 0.0 and out[2] > 1e-3
    with pytest.raises(ValueError, match="dilation"):
        TemporalFusion(4, (-8.0, -8.0, 8.0, 8.0), (16, 16), dilation=0)


def test_wide_temporal_config_builds_the_dilated_mixing():
    from perception.config import build, load_config

    net = build(load_config("configs/ablation/tiny_temporal_wide.py")["model"])
    shipped = build(load_config("configs/tiny.py")["model"])
    assert [c.dilation for c in net.temporal.mix if isinstance(c, torch.nn.Conv2d)] == [(2, 2), (2, 2)]
    assert [c.dilation for c in shipped.temporal.mix if isinstance(c, torch.nn.Conv2d)] == [(1, 1), (1, 1)]
    assert set(net.state_dict()) == set(shipped.state_dict())  # the same weights: only the reach differs


def test_cost_volume_peaks_at_the_offset_an_object_moved_by():
    """The correlation channel of offset (dy, dx) is largest at an object's current cell when the earlier map
    held the object dy rows and dx columns away; the other cells and offsets stay lower."""
    torch.manual_seed(0)
    feat = torch.randn(8)
    cur, earlier = torch.zeros(1, 8, 12, 12), torch.zeros(1, 8, 12, 12)
    cur[0, :, 6, 6] = feat
    earlier[0, :, 4, 9] = feat                                       # was 2 rows up, 3 columns right
    c = correlation(cur, earlier, 3)
    assert c.shape == (1, 49, 12, 12)
    k = int(c[0, :, 6, 6].argmax())
    assert divmod(k, 7) == (-2 + 3, 3 + 3)
    torch.testing.assert_close(c[0, k, 6, 6], (feat * feat).mean())
    assert int(c[0, k].flatten().argmax()) == 6 * 12 + 6
    assert correlation(cur, earlier, 1)[0, :, 6, 6].abs().max() == 0  # beyond a radius of 1


def test_cost_volume_temporal_fusion_starts_as_one_frame_and_exports(tmp_path):
    """With the cost volume the mix still starts as the identity, reads the history once trained, and the
    corr config builds it with the shipped network's other weights; the module exports to ONNX and matches."""
    from perception.config import build, load_config

    torch.manual_seed(0)
    t = TemporalFusion(8, (-10.0, -10.0, 10.0, 10.0), (16, 16), corr=2).eval()
    cur, earlier = torch.randn(1, 8, 16, 16), torch.randn(1, 8, 16, 16)
    T, valid = torch.eye(4)[None], torch.tensor([True])
    torch.testing.assert_close(t(cur, earlier, T, valid), cur)
    torch.nn.init.normal_(t.mix[-1].weight, std=0.1)
    assert not torch.allclose(t(cur, earlier, T, valid), t(cur))
    with pytest.raises(ValueError, match="corr"):
        TemporalFusion(8, (-10.0, -10.0, 10.0, 10.0), (16, 16), corr=-1)
    import onnxruntime as ort

    path = tmp_path / "t.onnx"
    torch.onnx.export(t, (cur, earlier, T, valid.float()), str(path), input_names=["c", "e", "T", "v"],
                      dynamo=False)
    got = ort.InferenceSession(str(path)).run(None, {"c": cur.numpy(), "e": earlier.numpy(), "T": T.numpy(),
                                                      "v": valid.float().numpy()})[0]
    np.testing.assert_allclose(got, t(cur, earlier, T, valid).detach().numpy(), atol=1e-4)
    net = build(load_config("configs/ablation/tiny_temporal_corr.py")["model"])
    shipped = build(load_config("configs/tiny.py")["model"])
    assert net.temporal.corr == 4 and net.temporal.mix[0].in_channels == shipped.temporal.mix[0].in_channels + 81
    assert set(net.state_dict()) == set(shipped.state_dict())
