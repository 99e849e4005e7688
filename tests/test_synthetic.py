"""The synthetic world is a faithful nuScenes dataroot: the devkit's own readers check it."""

import hashlib
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from nuscenes.utils.data_classes import LidarPointCloud, RadarPointCloud
from nuscenes.utils.geometry_utils import points_in_box, view_points
from pyquaternion import Quaternion

from perception.sources.synthetic import CLASS_NAMES, CLASS_SPECS, WorldConfig, generate
from perception.types import CAMERAS, CATEGORY_TO_CLASS, RADARS

EVERY = list(range(18))


def test_devkit_loads_and_renders(nusc, synthetic_root, tmp_path):
    from nuscenes.utils.splits import create_splits_scenes

    assert len(nusc.scene) == 2 and len(nusc.sample) == 8
    splits = create_splits_scenes(verbose=False)
    names = {s["name"] for s in nusc.scene}
    assert names & set(splits["mini_train"]) and names & set(splits["mini_val"])
    # every detection class is annotated somewhere (DetectionEval averages over all 10)
    classes = {CATEGORY_TO_CLASS[a["category_name"]] for a in nusc.sample_annotation}
    assert classes == set(CLASS_NAMES)
    out = tmp_path / "render.png"
    nusc.render_sample(nusc.sample[1]["token"], out_path=str(out), verbose=False)
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > 500 and img.std() > 10
    # a lidar keyframe has a nuScenes-like number of points
    pc = LidarPointCloud.from_file(nusc.get_sample_data_path(nusc.sample[0]["data"]["LIDAR_TOP"]))
    assert 20_000 < pc.nbr_points() < 40_000


def test_num_lidar_pts_equals_points_in_box(nusc):
    checked = 0
    for sample in nusc.sample:
        sd = sample["data"]["LIDAR_TOP"]
        pts = LidarPointCloud.from_file(nusc.get_sample_data_path(sd)).points[:3]
        _, boxes, _ = nusc.get_sample_data(sd)
        for box in boxes:
            ann = nusc.get("sample_annotation", box.token)
            assert int(points_in_box(box, pts).sum()) == ann["num_lidar_pts"], box.token
            checked += ann["num_lidar_pts"] > 0
    assert checked > 50


def test_num_radar_pts_equals_points_in_box(nusc):
    for sample in nusc.sample:
        counts = {}
        for ch in RADARS:
            sd = sample["data"][ch]
            pc = RadarPointCloud.from_file(nusc.get_sample_data_path(sd), EVERY, EVERY, EVERY)
            _, boxes, _ = nusc.get_sample_data(sd)
            for box in boxes:
                counts[box.token] = counts.get(box.token, 0) + int(points_in_box(box, pc.points[:3]).sum())
        for tok in sample["anns"]:
            assert counts.get(tok, 0) == nusc.get("sample_annotation", tok)["num_radar_pts"]


def _lidar_points_in_camera(nusc, sample, cam, yaw_error_deg=0.0):
    """Lidar points of each annotated box, projected into the camera with the devkit's calibration chain."""
    lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cam_sd = nusc.get("sample_data", sample["data"][cam])
    pc = LidarPointCloud.from_file(nusc.get_sample_data_path(lidar_sd["token"]))
    _, boxes, _ = nusc.get_sample_data(lidar_sd["token"])
    cs_l = nusc.get("calibrated_sensor", lidar_sd["calibrated_sensor_token"])
    ep_l = nusc.get("ego_pose", lidar_sd["ego_pose_token"])
    cs_c = nusc.get("calibrated_sensor", cam_sd["calibrated_sensor_token"])
    ep_c = nusc.get("ego_pose", cam_sd["ego_pose_token"])
    pts = pc.points[:3]
    inside = {b.token: points_in_box(b, pts) for b in boxes}
    pc.rotate(Quaternion(cs_l["rotation"]).rotation_matrix)
    pc.translate(np.array(cs_l["translation"]))
    pc.rotate(Quaternion(ep_l["rotation"]).rotation_matrix)
    pc.translate(np.array(ep_l["translation"]))
    pc.translate(-np.array(ep_c["translation"]))
    pc.rotate(Quaternion(ep_c["rotation"]).rotation_matrix.T)
    pc.translate(-np.array(cs_c["translation"]))
    rot = Quaternion(cs_c["rotation"]) * Quaternion(axis=[0, 1, 0], angle=math.radians(yaw_error_deg))
    pc.rotate(rot.rotation_matrix.T)
    depth = pc.points[2]
    uv = view_points(pc.points[:3], np.array(cs_c["camera_intrinsic"]), normalize=True)[:2]
    img = cv2.imread(nusc.get_sample_data_path(cam_sd["token"]))
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    h, w = img.shape[:2]
    fractions = []
    for tok, m in inside.items():
        m = m & (depth > 1.0) & (uv[0] >= 0) & (uv[0] < w - 1) & (uv[1] >= 0) & (uv[1] < h - 1)
        if m.sum() < 10:
            continue
        cls = CATEGORY_TO_CLASS[nusc.get("sample_annotation", tok)["category_name"]]
        hue = CLASS_SPECS[cls]["hue"] / 2.0
        px = hsv[uv[1, m].astype(int), uv[0, m].astype(int)]
        dh = np.abs((px[:, 0].astype(float) - hue + 90) % 180 - 90)
        fractions.append(float(((dh <= 10) & (px[:, 1] > 80)).mean()))
    return fractions


def test_lidar_points_land_on_the_boxes_camera_pixels(nusc):
    """One calibration across modalities: lidar hits of a box, projected with the tables' calibration,
    fall on pixels drawn in that box's class colour (mean over boxes); a 6 degree calibration error breaks it."""
    good, bad = [], []
    for sample in nusc.sample:
        for cam in CAMERAS:
            good += _lidar_points_in_camera(nusc, sample, cam)
            bad += _lidar_points_in_camera(nusc, sample, cam, yaw_error_deg=6.0)
    assert len(good) > 40
    assert np.mean(good) > 0.7, np.mean(good)
    assert np.mean(bad) < 0.6 * np.mean(good), (np.mean(bad), np.mean(good))


def test_radar_doppler_matches_box_velocity(nusc):
    errs = []
    for sample in nusc.sample:
        for ch in RADARS:
            sd = nusc.get("sample_data", sample["data"][ch])
            pc = RadarPointCloud.from_file(nusc.get_sample_data_path(sd["token"]), EVERY, EVERY, EVERY)
            cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            ep = nusc.get("ego_pose", sd["ego_pose_token"])
            R = Quaternion(ep["rotation"]).rotation_matrix @ Quaternion(cs["rotation"]).rotation_matrix
            pts_g = R @ pc.points[:3] + (Quaternion(ep["rotation"]).rotation_matrix @ cs["translation"]
                                         + ep["translation"])[:, None]
            sensor_g = np.array(ep["translation"]) + Quaternion(ep["rotation"]).rotation_matrix @ cs["translation"]
            v_comp = (R @ np.vstack([pc.points[8:10], np.zeros((1, pc.nbr_points()))]))[:2]
            for tok in sample["anns"]:
                box = nusc.get_box(tok)
                m = points_in_box(box, pts_g)
                if not m.any():
                    continue
                vel = nusc.box_velocity(tok)[:2]
                if np.any(np.isnan(vel)):
                    continue
                r = pts_g[:2, m] - sensor_g[:2, None]
                rhat = r / np.linalg.norm(r, axis=0)
                errs.extend(np.abs((v_comp[:, m] * rhat).sum(0) - (vel[:, None] * rhat).sum(0)).tolist())
    errs = np.array(errs)
    assert len(errs) > 30
    assert np.median(errs) < 0.05 and np.mean(errs < 0.3) > 0.9, (np.median(errs), np.mean(errs < 0.3))


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path):
    cfg = WorldConfig(scenes=1, samples=2, seed=5, image_scale=0.1)
    generate(tmp_path / "a", cfg, progress=False, workers=1)
    generate(tmp_path / "b", cfg, progress=False, workers=2)
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert a == b and len(a) > 50
    generate(tmp_path / "c", WorldConfig(scenes=1, samples=2, seed=6, image_scale=0.1), progress=False)
    c = _digest(tmp_path / "c")
    assert set(a.values()).isdisjoint(v for k, v in c.items() if "samples/LIDAR_TOP" in k)
    with pytest.raises(FileExistsError):
        generate(tmp_path / "a", cfg, progress=False)
    assert not (tmp_path / "a.partial").exists()


def test_annotations_have_consistent_tracks(nusc):
    for inst in nusc.instance:
        chain, tok = [], inst["first_annotation_token"]
        while tok:
            chain.append(tok)
            tok = nusc.get("sample_annotation", tok)["next"]
        assert len(chain) == inst["nbr_annotations"] and chain[-1] == inst["last_annotation_token"]
    attrs = {nusc.get("attribute", t)["name"] for a in nusc.sample_annotation for t in a["attribute_tokens"]}
    assert {"vehicle.moving", "vehicle.parked", "pedestrian.moving", "cycle.with_rider"} <= attrs


def test_objects_do_not_overlap():
    """Lanes, parking, sidewalks and the construction zone never put two boxes on one spot, and no box is
    on the ego. Crossing pedestrians are exempt against lane traffic (objects do not interact), not the ego."""
    from shapely.geometry import Polygon

    from perception.geometry import box_corners
    from perception.sources.synthetic import EGO_BODY, build_scene, scene_names

    names, _ = scene_names(10)
    for index in range(10):
        scene = build_scene(0, index, 40, names[index])
        crossing = scene.tc[:, 0] < 1e8
        for k in range(0, 40, 4):
            t = k * 0.5
            boxes, _ = scene.boxes(t)
            polys = [Polygon(c[[0, 1, 5, 4], :2]) for c in box_corners(boxes[:, :7])]
            ego = scene.ego_pose(t)
            cx, cy, _, l, w, _ = EGO_BODY
            ego_box = np.array([[*(ego[:3, :3] @ [cx, cy, 0] + ego[:3, 3])[:2], 0, l, w, 1, scene.theta]])
            ego_poly = Polygon(box_corners(ego_box)[0][[0, 1, 5, 4], :2])
            for i, p in enumerate(polys):
                assert p.intersection(ego_poly).area < 1e-6, (index, t, CLASS_NAMES[scene.cls[i]])
                for j in range(i + 1, len(polys)):
                    if crossing[i] or crossing[j]:
                        continue
                    assert p.intersection(polys[j]).area < 1e-6, (
                        index, t, CLASS_NAMES[scene.cls[i]], CLASS_NAMES[scene.cls[j]], scene.d0[i], scene.d0[j])
