"""Training augmentation keeps the geometry exact (points, boxes, cameras move together), and multi-scale
camera features reach the BEV queries."""

import numpy as np
import pytest
import torch

from perception.geometry import points_in_boxes
from perception.training.augment import BevAugment, ImageAugment, build_augment
from perception.types import Boxes3D

LIDAR_COLS = ("x", "y", "z", "intensity", "time_lag")
RADAR_COLS = ("x", "y", "z", "vx_comp", "vy_comp", "rcs", "time_lag")


def _front_camera(fx=100.0, W=224, H=128, t=(1.5, 0.0, 1.5)):
    R = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    K = np.eye(4)
    K[:3, :3] = [[fx, 0, W / 2], [0, fx, H / 2], [0, 0, 1]]
    return (K @ np.linalg.inv(T)).astype(np.float32)


def _project(e2i, p):
    h = e2i @ np.r_[p, 1.0]
    return h[:2] / h[2]


def _scene(rng):
    gt = Boxes3D(np.array([[12.0, 3.0, 0.2, 4.6, 1.9, 1.7, 0.4, 3.0, -1.0],
                           [20.0, -6.0, 0.4, 0.7, 0.7, 1.8, -2.0, np.nan, np.nan]]), np.array([0, 8]))
    inside = []
    for box in gt.data:  # points spread through each box, in its own frame
        loc = rng.uniform(-0.45, 0.45, (200, 3)) * box[3:6]
        c, s = np.cos(box[6]), np.sin(box[6])
        inside.append(np.c_[box[0] + c * loc[:, 0] - s * loc[:, 1], box[1] + s * loc[:, 0] + c * loc[:, 1],
                            box[2] + loc[:, 2]])
    xyz = np.concatenate(inside)
    lidar = np.c_[xyz, rng.uniform(0, 1, (len(xyz), 2))].astype(np.float32)
    radar = np.c_[xyz[:5], np.tile([[3.0, -1.0]], (5, 1)), np.ones((5, 2))].astype(np.float32)
    cams = np.stack([_front_camera(), np.zeros((4, 4), np.float32)])  # the second camera is missing
    inputs = {"present": np.ones(3, bool), "lidar": {"points": lidar}, "radar": {"points": radar},
              "camera": {"images": np.zeros((2, 128, 224, 3), np.uint8), "ego2img": cams}}
    return inputs, gt


@pytest.mark.parametrize("seed", range(6))
def test_bev_augment_moves_points_boxes_and_cameras_together(seed):
    rng = np.random.default_rng(seed)
    inputs, gt = _scene(rng)
    aug = BevAugment(rot=0.4, scale=(0.9, 1.1), flip=0.5)
    A = aug.sample(rng)
    out, moved = aug.apply(inputs, gt, A, {"lidar": LIDAR_COLS, "radar": RADAR_COLS})
    lidar = out["lidar"]["points"]
    # every point still lies in its own box (positions, sizes and headings moved consistently)
    m = points_in_boxes(lidar[:, :3].astype(np.float64), moved.data)
    assert m[0, :200].all() and m[1, 200:].all() and not m[0, 200:].any()
    np.testing.assert_allclose(lidar[:, 3:], inputs["lidar"]["points"][:, 3:])  # features untouched
    # the radar's velocity turns with the box's, the unknown velocity stays unknown
    np.testing.assert_allclose(out["radar"]["points"][0, 3:5], moved.data[0, 7:9], rtol=1e-5)
    assert np.isnan(moved.data[1, 7:9]).all()
    # a moved point projects to the same pixel through the moved camera; the missing camera stays missing
    p = inputs["lidar"]["points"][0, :3].astype(np.float64)
    np.testing.assert_allclose(_project(out["camera"]["ego2img"][0], lidar[0, :3]),
                               _project(inputs["camera"]["ego2img"][0], p), atol=1e-3)
    assert not out["camera"]["ego2img"][1].any()
    assert inputs["lidar"]["points"] is not lidar  # the cached inputs are not modified


def test_bev_augment_flips_cover_all_four_mirrorings():
    rng = np.random.default_rng(0)
    aug = BevAugment(rot=0.0, scale=(1.0, 1.0), flip=0.5)
    signs = {tuple(np.sign(np.diag(aug.sample(rng))[:2]).astype(int)) for _ in range(64)}
    assert signs == {(1, 1), (1, -1), (-1, 1), (-1, -1)}
    assert BevAugment(prob=0.0).sample(rng) is None


@pytest.mark.parametrize("seed", range(6))
def test_image_augment_keeps_projections_on_the_content(seed):
    rng = np.random.default_rng(seed)
    inputs, _ = _scene(rng)
    e2i = inputs["camera"]["ego2img"][0]
    p = np.array([16.5, 1.725, 2.025])  # projects to (100.5, 60.5): the centre of pixel (100, 60)
    np.testing.assert_allclose(_project(e2i, p), [100.5, 60.5], atol=1e-4)
    img = np.zeros((128, 224, 3), np.uint8)
    img[59:62, 99:102] = 255  # a bright 3x3 dot centred on that point
    inputs["camera"]["images"][0] = img
    out = ImageAugment(scale=(0.8, 1.2), flip=0.5, color=0.0).apply(inputs, rng)
    u2, v2 = _project(out["camera"]["ego2img"][0], p)
    g = out["camera"]["images"][0, ..., 0].astype(float)
    ys, xs = np.mgrid[: g.shape[0], : g.shape[1]]
    cu, cv = (g * (xs + 0.5)).sum() / g.sum(), (g * (ys + 0.5)).sum() / g.sum()  # continuous coordinates
    assert abs(cu - u2) < 0.25 and abs(cv - v2) < 0.25, (cu, u2, cv, v2)
    assert not out["camera"]["images"][1].any() and not out["camera"]["ego2img"][1].any()
    assert inputs["camera"]["images"][0].max() == 255 and inputs["camera"]["images"] is not out["camera"]["images"]


def test_image_flip_mirrors_pixels_exactly():
    img = np.arange(128 * 224 * 3, dtype=np.uint32).reshape(128, 224, 3) % 251
    inputs = {"present": np.ones(3, bool), "camera": {"images": img.astype(np.uint8)[None],
                                                      "ego2img": _front_camera()[None]}}
    aug = ImageAugment(scale=(1.0, 1.0), flip=1.0, color=0.0)
    out = aug.apply(inputs, np.random.default_rng(0))
    np.testing.assert_array_equal(out["camera"]["images"][0], inputs["camera"]["images"][0][:, ::-1])
    u, _ = _project(out["camera"]["ego2img"][0], np.array([16.5, 1.725, 2.025]))
    assert u == pytest.approx(224 - 100.5)


def test_augment_config_is_checked():
    assert build_augment(None) == (None, None)
    bev, img = build_augment({"bev": {"rot": 0.2}, "image": {}})
    assert bev.rot == 0.2 and img.flip == 0.5
    with pytest.raises(Exception, match="rotation"):
        build_augment({"bev": {"rotation": 0.2}})
    with pytest.raises(ValueError, match="bev_aug.flip"):
        build_augment({"bev": {"flip": 2}})


def test_augmented_dataset_voxelizes_each_item_and_drops_prompts_of_moved_scenes(synthetic_root):
    from perception.pipeline import Preprocessor
    from perception.sources.nuscenes import NuScenesSource
    from perception.training.data import FrameDataset

    pre = Preprocessor({"camera": {"size": (64, 112)}})
    src = NuScenesSource(synthetic_root, "v1.0-mini", "mini_train", lidar_sweeps=1, radar_sweeps=1,
                         image_min_hw=(64, 112))
    token = src[0].sample_token
    ds = FrameDataset(src, pre, augment=build_augment({"bev": {"prob": 0.5}, "image": {}}),
                      prompts={token: [(0, ["x"])]})
    plain = pre.prepare(src[0])
    moved_seen = kept_seen = False
    for _ in range(12):
        item = ds[0]
        x, meta = item["inputs"], item["data_samples"]
        assert set(x["lidar"]) == {"voxels", "coords", "num_points"}
        assert x["lidar"]["num_points"].sum() == plain["lidar"]["num_points"].sum() or meta["scene_moved"]
        if meta["scene_moved"]:
            moved_seen = True
            assert meta["prompts"] == [] and len(meta["gt"]) == len(src[0].gt)
        else:
            kept_seen = True
            assert meta["prompts"] == [(0, ["x"])]
    assert moved_seen and kept_seen
    assert set(ds.cache[0][0]["lidar"]) == {"points"}  # the cache holds the gathered, unaugmented points


def test_multi_scale_camera_features_reach_the_queries():
    from perception.models.encoders import CameraEncoder
    from perception.models.fusion import CameraCrossAttention

    enc = CameraEncoder(out_channels=16, levels=2)
    feats = enc(torch.randn(1, 2, 3, 128, 224))
    assert [tuple(f.shape) for f in feats] == [(1, 2, 16, 16, 28), (1, 2, 16, 8, 14)]
    with pytest.raises(ValueError, match="levels"):
        CameraEncoder(levels=3)
    torch.manual_seed(0)
    att = CameraCrossAttention(dim=16, in_channels=16, levels=2)
    e2i = torch.as_tensor(_front_camera()).view(1, 1, 4, 4).expand(1, 2, 4, 4)
    xy = torch.tensor([[10.0, 0.0], [20.0, 1.0]])
    feats = [f.detach().requires_grad_(True) for f in feats]
    out, hit = att(torch.randn(1, 2, 16), feats, e2i, (128, 224), xy)
    assert hit.all()
    out.sum().backward()
    assert feats[1].grad.abs().sum() > 0 and feats[0].grad.abs().sum() > 0  # both levels are read
    with pytest.raises(ValueError, match="2 feature level"):
        att(torch.randn(1, 2, 16), feats[0], e2i, (128, 224), xy)


def test_frozen_backbone_stages_keep_their_weights_and_statistics():
    from perception.models.encoders import CameraEncoder

    enc = CameraEncoder(out_channels=16, backbone="efficientnet_lite0", weights="imagenet", freeze_bn=False,
                        frozen_stages=2)
    enc.train()
    stem_bn, late_bn = enc.backbone._bn0, enc.backbone._blocks[-1]._bn2
    before = stem_bn.running_mean.clone(), late_bn.running_mean.clone()
    enc(torch.randn(1, 2, 3, 64, 112)).sum().backward()
    assert enc.backbone._conv_stem.weight.grad is None and enc.backbone._blocks[2]._project_conv.weight.grad is None
    assert enc.backbone._blocks[3]._project_conv.weight.grad is not None  # stride 8 on trains
    torch.testing.assert_close(stem_bn.running_mean, before[0])  # frozen: statistics too
    assert not torch.equal(late_bn.running_mean, before[1])  # freeze_bn=False: the rest update theirs
    with pytest.raises(ValueError, match="frozen_stages"):
        CameraEncoder(backbone="efficientnet_lite0", frozen_stages=6)


def test_each_dataloader_worker_draws_its_own_augmentations(synthetic_root):
    from torch.utils.data import DataLoader, Dataset

    from perception.pipeline import Preprocessor
    from perception.sources.nuscenes import NuScenesSource
    from perception.training.data import FrameDataset

    ds = FrameDataset(NuScenesSource(synthetic_root, "v1.0-mini", "mini_train", lidar_sweeps=1, cameras=()),
                      Preprocessor({}), augment=build_augment({"bev": {}}))

    class Draws(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return ds.rng.random()

    draws = [float(x) for x in DataLoader(Draws(), batch_size=1, num_workers=2)]
    assert draws[0] != draws[1]  # the first draw of worker 0 and of worker 1


def test_browse_draws_training_samples_as_pictures(synthetic_root, tmp_path, capsys):
    """promptfusion-browse: frames drawn as training draws them (the candidate recipe with image patches), one
    picture each: the cameras at the network's resolution over the bird's-eye view, pasted boxes counted."""
    import cv2

    from perception.cli.browse import main

    out = tmp_path / "browse"
    assert main(["configs/ablation/tiny_paste_images.py", "--data-root", str(synthetic_root), "--samples", "3",
                 "--override-assembly", "lidar_sweeps=1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    pictures = sorted(out.glob("sample_*.jpg"))
    assert len(pictures) == 3 and "object paste database:" in printed
    assert sum(" pasted, " in line for line in printed.splitlines()) == 3
    lines = {line.split(":")[0]: line for line in printed.splitlines() if line.startswith(str(out))}
    for path in pictures:
        img = cv2.imread(str(path))
        assert img.shape[1] == 1500 and img.shape[0] > 1500  # a 2 x 3 mosaic over a square bird's-eye view
        dropped = lines[str(path)].split("dropped ")[-1] if "dropped" in lines[str(path)] else ""
        # the cameras drawn unless modality dropout took them (then grey tiles), the points unless it took both
        assert (img[:300].std() > 10) == ("camera" not in dropped)
        assert img[-1000:].std() > 5 or ("lidar" in dropped and "radar" in dropped)
    with pytest.raises(SystemExit):
        main(["configs/tiny.py", "--data-root", str(synthetic_root), "--samples", "0", "--out", str(out)])
