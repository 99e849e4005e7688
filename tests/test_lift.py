"""The depth-lifted camera BEV map (perception.models.lift): where a pixel's features land, the pooling, the
closed-form inverse of the camera matrices, the ONNX export, training end to end, and its picture."""

import numpy as np
import pytest
import torch
from camera_helpers import front_camera, proxy_losses


def test_depth_lift_puts_a_pixels_features_where_its_depth_says():
    """Lift-Splat: a feature pixel with all its depth probability in one bin lands in the BEV cell of the point
    at that depth along its ray; split over two bins, half in each; off the grid or above it, nowhere."""
    from perception.models.lift import DepthLift

    lift = DepthLift(8, xy_range=(-51.2, -51.2, 51.2, 51.2), bev_hw=(64, 64), channels=4)
    e2i = front_camera().view(1, 1, 4, 4)
    bins = (1.0, 61.0, 30)  # 2 m bins: centres 2, 4, ..., 60
    f = torch.zeros(1, 1, 4, 16, 28)
    f[0, 0, :, 8, 14] = 1.0  # the pixel at the image centre (its centre 116, 68: 4 px right of and below the axis)
    probs = torch.zeros(1, 1, 30, 16, 28)
    probs[0, 0, 9, 8, 14] = 1.0  # 20 m along the optical axis
    bev = lift.splat(f, probs, bins, e2i, (128, 224))
    assert bev.shape == (1, 4, 64, 64) and float(bev.sum()) == 4.0
    iy, ix = [int(v) for v in (bev[0, 0] > 0).nonzero()[0]]
    x, y = -51.2 + (ix + 0.5) * 1.6, -51.2 + (iy + 0.5) * 1.6
    # the ego point: camera at x = 1.5 m, 20 m ahead, 20 * 4 / 100 = 0.8 m to the right (y < 0)
    assert abs(x - 21.5) <= 0.8 and abs(y + 0.8) <= 0.8
    probs[0, 0, 9, 8, 14], probs[0, 0, 19, 8, 14] = 0.5, 0.5  # half at 20 m, half at 40 m
    bev = lift.splat(f, probs, bins, e2i, (128, 224))
    assert sorted(bev[0, 0][bev[0, 0] > 0].tolist()) == [0.5, 0.5]
    probs.zero_()
    probs[0, 0, 29, 0, 14] = 1.0  # the top row at 60 m: 60 * 60 / 100 = 36 m up, above the grid's 3 m
    f[0, 0, :, 0, 14] = 1.0
    assert float(lift.splat(f, probs, bins, e2i, (128, 224)).sum()) == 0.0


def test_density_pooling_takes_the_rays_density_out():
    """Uniform features and depth: sum pooling piles the near cells (many rays cross them) far above the far
    ones; "density" pooling gives every cell the rays reach the same value, the bins' probability."""
    from perception.models.lift import DepthLift

    e2i = front_camera().view(1, 1, 4, 4)
    bins = (1.0, 61.0, 30)
    f = torch.ones(1, 1, 4, 16, 28)
    probs = torch.full((1, 1, 30, 16, 28), 1 / 30)
    maps = {}
    for pool in ("sum", "density"):
        lift = DepthLift(8, xy_range=(-51.2, -51.2, 51.2, 51.2), bev_hw=(64, 64), channels=4, pool=pool)
        maps[pool] = lift.splat(f, probs, bins, e2i, (128, 224))[0, 0]
    reached = maps["sum"] > 0
    near, far = maps["sum"][32, 35], maps["sum"][32, 50]  # on the axis 4 m and 28 m ahead of the camera
    assert float(near) > 5 * float(far) > 0
    torch.testing.assert_close(maps["density"][reached], torch.full_like(maps["density"][reached], 1 / 30))
    with pytest.raises(ValueError, match="pool"):
        DepthLift(8, xy_range=(-51.2, -51.2, 51.2, 51.2), bev_hw=(64, 64), pool="max")


def test_projection_inverse_matches_torch_and_flags_blind_cameras():
    """The lift's closed-form inverse of ego -> pixel matrices (no matrix inverse in ONNX) equals torch's on
    projection matrices with image and BEV augmentation folded in; all-zero (dropped) cameras are flagged."""
    from perception.models.lift import invert_projection

    g = torch.Generator().manual_seed(0)
    Ms = []
    for fx in (100.0, 250.0, 1266.0):
        a = float(torch.rand((), generator=g)) * 6.28
        bev = torch.eye(4)  # a BEV rotation, scale and flip, as the augmentation folds into ego2img
        bev[:2, :2] = 1.05 * torch.tensor([[np.cos(a), -np.sin(a)], [-np.sin(a), -np.cos(a)]])
        pix = torch.eye(4)  # an image resize / crop / flip
        pix[0, 0], pix[0, 3], pix[1, 1], pix[1, 3] = -0.9, 200.0, 0.9, -5.0
        Ms.append(pix @ front_camera(fx=fx) @ bev)
    M = torch.stack([*Ms, torch.zeros(4, 4)]).view(1, 4, 4, 4)
    inv, blind = invert_projection(M)
    assert blind.tolist() == [[False, False, False, True]]
    torch.testing.assert_close(inv[0, :3], torch.linalg.inv(M[0, :3]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(inv[0, 3], torch.eye(4))


def test_lift_network_exports_to_onnx_and_agrees(synthetic_root, tmp_path):
    """The full tiny network with the lifted map (configs/ablation/tiny_lift.py) traces into ONNX and onnxruntime
    gives torch's outputs on another frame, with all sensors and with the cameras dropped."""
    from perception.config import build, load_config
    from perception.export import OnnxModel, export_onnx, max_abs_diff
    from perception.pipeline import Preprocessor
    from perception.sources.nuscenes import NuScenesSource

    torch.manual_seed(0)
    cfg = load_config("configs/ablation/tiny_lift.py")
    net = build(cfg["model"]).eval()
    pre = Preprocessor(cfg["preprocess"])
    src = NuScenesSource(synthetic_root, "v1.0-mini", None, lidar_sweeps=4)
    export_onnx(net, pre.collate([pre.prepare(src[0])]), pre.spec, tmp_path / "lift.onnx")
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "lift.onnx")).graph.node}
    assert "ScatterElements" in ops  # the splat is in the graph, not folded away
    ort_model = OnnxModel(tmp_path / "lift.onnx", pre.spec)
    for mods in (None, ("lidar", "radar")):
        batch = pre.collate([pre.prepare(src[5], mods)])
        with torch.no_grad():
            ref = net(batch)
            lifted = net.fuser.lift is not None
        diff = max_abs_diff(ref, ort_model(batch))
        assert lifted and max(diff.values()) < 1e-3, diff


def test_lift_config_trains_end_to_end():
    """The camera-only proxy with the lifted map: the lift's weights and the depth head both get gradients."""
    net, losses = proxy_losses("configs/ablation/camera_lite0_lift.py")
    sum(losses.values()).backward()
    assert net.fuser.lift.reduce.weight.grad.abs().sum() > 0
    assert net.encoders["camera"].depth_head[2].weight.grad.abs().sum() > 0
    assert net.fuser.layers[0].lift_sampler.value.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="depth head"):
        from configs._base_.model import fusion_model

        fusion_model((-51.2, -51.2, -5.0, 51.2, 51.2, 3.0), (0.8, 0.8, 8.0), lift={})


def test_pictures_of_a_lift_network_show_the_lifted_map(synthetic_root, tmp_path, capsys):
    """`promptfusion-test --pictures` of a network with the lifted camera map also draws that map in BEV; a
    network without it draws no such picture; both draw their detections over the annotated boxes in BEV."""
    import cv2

    from perception.cli.test import _pictures
    from perception.pipeline import Pipeline
    from perception.sources.nuscenes import NuScenesSource

    torch.manual_seed(0)
    for config, drawn in (("configs/ablation/tiny_lift.py", True), ("configs/tiny.py", False)):
        pipe = Pipeline(config, None)
        src = NuScenesSource(synthetic_root, "v1.0-mini", "mini_val", **pipe.assembly.source_kwargs())
        out = tmp_path / config.replace("/", "_")
        _pictures(pipe, src, ("camera", "lidar", "radar"), out, 0, 0.3)
        path = out / "lifted_bev_camera+lidar+radar.png"
        assert path.is_file() == drawn and (out / "depth_CAM_FRONT.png").is_file()
        bev = cv2.imread(str(out / "bev_camera+lidar+radar.png"))  # every network: detections over the truth
        assert bev.shape == (800, 800, 3) and bev.std() > 10
        if drawn:
            img = cv2.imread(str(path))
            assert img.shape[0] == img.shape[1] > 800 and img.std() > 10  # a map, not a blank square
    assert "depth-lifted camera map" in capsys.readouterr().out
