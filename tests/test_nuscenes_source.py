"""NuScenesSource against the devkit's own readers, on the synthetic dataroot."""

import os
import re
import shutil

import numpy as np
import pytest
from nuscenes.eval.detection.utils import category_to_detection_name
from nuscenes.utils.data_classes import LidarPointCloud, RadarPointCloud

from perception.geometry import invert_transform, make_transform, transform_points
from perception.sources import SourceDataError
from perception.sources.nuscenes import NuScenesSource
from perception.types import DETECTION_CLASSES, RADARS


@pytest.fixture(scope="module")
def source(synthetic_root, tmp_path_factory):
    return NuScenesSource(synthetic_root, "v1.0-mini", split=None, cache_dir=tmp_path_factory.mktemp("cache"))


def _lidar_calib(nusc, sample):
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    return sd, make_transform(cs["rotation"], cs["translation"])


def test_boxes_agree_with_devkit(source, nusc):
    for i, frame in enumerate(source):
        sample = nusc.get("sample", frame.sample_token)
        sd, T_ego_lidar = _lidar_calib(nusc, sample)
        _, dk_boxes, _ = nusc.get_sample_data(sd["token"])
        dk = {b.token: b for b in dk_boxes}
        ours = frame.gt.transform(invert_transform(T_ego_lidar))
        assert len(ours) == len(dk) and len(ours) > 0
        for j, tok in enumerate(ours.tokens):
            b = dk[tok]
            np.testing.assert_allclose(ours.center[j], b.center, atol=1e-6)
            np.testing.assert_allclose(ours.size_lwh[j], [b.wlh[1], b.wlh[0], b.wlh[2]], atol=1e-9)
            yaw = b.orientation.yaw_pitch_roll[0]
            assert abs((ours.yaw[j] - yaw + np.pi) % (2 * np.pi) - np.pi) < 1e-6
            assert DETECTION_CLASSES[ours.labels[j]] == category_to_detection_name(b.name)
            v = nusc.box_velocity(tok)
            if not np.isnan(v).any():
                v_l = invert_transform(T_ego_lidar)[:3, :3] @ (frame.T_global_ego[:3, :3].T @ v)
                np.testing.assert_allclose(ours.velocity[j], v_l[:2], atol=1e-6)
        if i >= 3:
            break


def test_lidar_sweeps_agree_with_devkit_multisweep(source, nusc):
    frame = source[2]
    sample = nusc.get("sample", frame.sample_token)
    _, T_ego_lidar = _lidar_calib(nusc, sample)
    dk, times = LidarPointCloud.from_file_multisweep(nusc, sample, "LIDAR_TOP", "LIDAR_TOP", nsweeps=10,
                                                     min_distance=1.0)
    ours = transform_points(invert_transform(T_ego_lidar), frame.lidar.xyz.astype(np.float64))
    assert len(ours) == dk.nbr_points() > 200_000
    np.testing.assert_allclose(ours, dk.points[:3].T, atol=2e-3)
    np.testing.assert_allclose(frame.lidar.features["time_lag"], times[0], atol=1e-6)
    np.testing.assert_array_equal(frame.lidar.features["intensity"], dk.points[3])
    assert sorted(np.unique(frame.lidar.features["time_lag"]).round(2)) == pytest.approx(np.arange(10) * 0.05)


def test_radar_sweeps_agree_with_devkit_multisweep(source, nusc):
    frame = source[3]
    sample = nusc.get("sample", frame.sample_token)
    _, T_ego_lidar = _lidar_calib(nusc, sample)
    parts = []
    for ch in RADARS:
        dk, _ = RadarPointCloud.from_file_multisweep(nusc, sample, ch, "LIDAR_TOP", nsweeps=3, min_distance=1.0)
        parts.append(dk.points[:3].T)
    dk_xyz = transform_points(T_ego_lidar, np.concatenate(parts))
    assert len(frame.radar) == len(dk_xyz) > 20
    np.testing.assert_allclose(frame.radar.xyz, dk_xyz, atol=2e-3)
    assert set(np.unique(frame.radar.features["invalid_state"])) == {0}  # devkit default filters
    everything = NuScenesSource(source.dataroot, cache_dir=source.cache_path.parent, radar_filters=None)[3]
    assert len(everything.radar) > len(frame.radar)


def test_cameras_and_calibration(source, nusc):
    frame = source[1]
    assert set(frame.cameras) == {"CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT",
                                  "CAM_BACK_RIGHT"}
    sample = nusc.get("sample", frame.sample_token)
    for ch, view in frame.cameras.items():
        sd = nusc.get("sample_data", sample["data"][ch])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        np.testing.assert_allclose(view.intrinsics, cs["camera_intrinsic"])
        assert view.image.shape == (sd["height"], sd["width"], 3)
        # the camera sits where its calibration says, up to the ego motion between the two stamps
        assert np.linalg.norm(view.T_ego_cam[:3, 3] - np.array(cs["translation"])) < 0.5
    # ground-truth centres in front of CAM_FRONT project inside its image for close boxes
    cam = frame.cameras["CAM_FRONT"]
    c = transform_points(invert_transform(cam.T_ego_cam), frame.gt.center)
    front = (c[:, 2] > 3) & (c[:, 2] < 40) & (np.abs(c[:, 0]) < 0.5 * c[:, 2])
    uv = c[front] @ cam.intrinsics.T
    uv = uv[:, :2] / uv[:, 2:]
    h, w = cam.hw
    assert front.any() and np.all((uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h))


def test_split_cache_and_options(synthetic_root, tmp_path):
    val = NuScenesSource(synthetic_root, "v1.0-mini", "mini_val", cache_dir=tmp_path, cameras=())
    assert not val.loaded_from_cache and set(val.scenes) == {"scene-0103"} and len(val) == 4
    again = NuScenesSource(synthetic_root, "v1.0-mini", "mini_val", cache_dir=tmp_path, cameras=())
    assert again.loaded_from_cache and again.index == val.index
    f = again[0]
    assert f.cameras == {} and f.modalities == ("lidar", "radar")
    with pytest.raises(ValueError, match="unknown split 'minival'.*mini_val"):
        NuScenesSource(synthetic_root, "v1.0-mini", "minival", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="does not belong"):
        NuScenesSource(synthetic_root, "v1.0-mini", "val", cache_dir=tmp_path)
    with pytest.raises(SourceDataError, match="no nuScenes tables"):
        NuScenesSource(synthetic_root, "v1.0-trainval", cache_dir=tmp_path)


@pytest.mark.parametrize("what", ["lidar", "radar", "camera"])
def test_missing_or_truncated_file_names_file_and_sample(synthetic_root, tmp_path, what):
    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root, ignore=shutil.ignore_patterns(".promptfusion_cache"))
    src = NuScenesSource(root, "v1.0-mini", "mini_val", cache_dir=tmp_path / "c")
    e = src.index[1]
    rel = {"lidar": e["lidar"][3]["path"], "radar": e["radar"]["RADAR_FRONT"][1]["path"],
           "camera": e["cameras"]["CAM_BACK"]["path"]}[what]
    path = root / rel
    blob = path.read_bytes()
    os.remove(path)
    with pytest.raises(SourceDataError, match=rf"{re.escape(path.name)}.*sample {e['token']}"):
        src[1]
    path.write_bytes(blob[: len(blob) // 2 + 1])
    with pytest.raises(SourceDataError, match=rf"truncated .*{re.escape(path.name)}.*{e['token']}"):
        src[1]
    path.write_bytes(blob)
    assert len(src[1].lidar) > 0


def test_reduced_decoding_gives_the_same_model_input(synthetic_root, tmp_path):
    """Reduced JPEG decoding changes the image size and K together: the Preprocessor's camera input and
    its projection matrices stay those of the full decode."""
    from perception.pipeline import Preprocessor

    full = NuScenesSource(synthetic_root, "v1.0-mini", None, lidar_sweeps=0, cache_dir=tmp_path)
    small = NuScenesSource(synthetic_root, "v1.0-mini", None, lidar_sweeps=0, cache_dir=tmp_path,
                           image_min_hw=(56, 100))
    a, b = full[1], small[1]
    h0, w0 = a.cameras["CAM_FRONT"].hw
    assert b.cameras["CAM_FRONT"].hw == (-(-h0 // 4), -(-w0 // 4))  # quarter-size test images: 1/4 covers 56 x 100
    # the same ego point lands on the same relative place in both images
    p = np.array([15.0, 1.0, 0.5, 1.0])
    uv = []
    for f in (a, b):
        v = f.cameras["CAM_FRONT"]
        q = v.intrinsics @ (invert_transform(v.T_ego_cam) @ p)[:3]
        uv.append(q[:2] / q[2] / np.array(v.hw[::-1]))
    np.testing.assert_allclose(uv[0], uv[1], atol=1e-6)
    pre = Preprocessor({"camera": {"size": (56, 100)}})
    x, y = pre.prepare(a)["camera"], pre.prepare(b)["camera"]
    np.testing.assert_allclose(x["ego2img"], y["ego2img"], rtol=1e-5, atol=1e-4)
    assert np.abs(x["images"].astype(int) - y["images"]).mean() < 3.0
