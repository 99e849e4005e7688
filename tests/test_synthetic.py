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

from perception.sources.synthetic import CLASS_NAMES, WorldConfig, generate
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
    """Per annotated box: the share of its lidar points that, projected into the camera with the tables'
    calibration chain (the devkit's own steps), land on pixels where the renderer drew that same object."""
    from perception.sources.synthetic.sensors import CAMERA_OFFSET_S, get_scene, render_view
    from perception.sources.synthetic.world import SAMPLE_PERIOD

    scene_rec = nusc.get("scene", sample["scene_token"])
    index = [s["name"] for s in nusc.scene].index(scene_rec["name"])
    k = 0
    tok = sample["token"]
    while nusc.get("sample", tok)["prev"]:
        tok = nusc.get("sample", tok)["prev"]
        k += 1
    scene = get_scene(0, index, 4, scene_rec["name"])
    lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cam_sd = nusc.get("sample_data", sample["data"][cam])
    scale = cam_sd["width"] / 1600
    _, _, _, _, idmap = render_view(scene, cam, k * SAMPLE_PERIOD + CAMERA_OFFSET_S[cam], scale, want_maps=True)
    obj_boxes, _ = scene.boxes(k * SAMPLE_PERIOD)
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
    h, w = idmap.shape
    fractions = []
    for tok, m in inside.items():
        m = m & (depth > 1.0) & (uv[0] >= 0) & (uv[0] < w - 1) & (uv[1] >= 0) & (uv[1] < h - 1)
        if m.sum() < 10:
            continue
        ann = nusc.get("sample_annotation", tok)
        obj = int(np.argmin(np.hypot(*(obj_boxes[:, :2] - np.array(ann["translation"][:2])).T)))
        fractions.append(float((idmap[uv[1, m].astype(int), uv[0, m].astype(int)] == obj).mean()))
    return fractions


def test_lidar_points_land_on_the_boxes_camera_pixels(nusc):
    """One calibration across modalities: lidar hits of a box, projected with the tables' calibration,
    fall on pixels where the camera drew that object (mean over boxes; the lidar sees some surfaces the
    camera does not); a 6 degree calibration error breaks it."""
    good, bad = [], []
    for sample in nusc.sample:
        for cam in CAMERAS:
            good += _lidar_points_in_camera(nusc, sample, cam)
            bad += _lidar_points_in_camera(nusc, sample, cam, yaw_error_deg=6.0)
    assert len(good) > 40
    assert np.mean(good) > 0.6, np.mean(good)
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
    # Doppler noise is 0.12 m/s (1 sigma); ghosts and false moving returns that land in a box are the tail
    assert np.median(errs) < 0.15 and np.mean(errs < 0.4) > 0.8, (np.median(errs), np.mean(errs < 0.4))


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


def test_culled_camera_render_equals_the_full_one():
    """The camera kernel skips the primitives that cannot change a pixel (static ones beyond what the pixel already
    hit, an object's parts behind a hit of its own): the image, the visible and silhouette counts and the maps are
    those of testing every candidate, by day and by night (lamps), in rain."""
    from perception.sources.synthetic.sensors import CAMERA_RIG, get_scene, render_view

    checked = set()
    for index in (0, 3):
        scene = get_scene(0, index, 40, f"scene-{index:04d}")
        checked.add((scene.night, scene.rain))
        for ch in ("CAM_FRONT", "CAM_BACK_LEFT"):
            assert ch in CAMERA_RIG
            full, culled = (render_view(scene, ch, 2.0, 0.3, rng=np.random.default_rng(0), want_maps=True, cull=c)
                            for c in (False, True))
            assert all(np.array_equal(a, b) for a, b in zip(full, culled)), (index, ch)
            assert full[1].sum() > 0 and full[2].sum() >= full[1].sum()  # objects seen, silhouettes counted
    assert (True, True) in checked  # a night in rain among them


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
    """Every place (streets, intersections with turning traffic, a parking lot) keeps boxes apart: no two
    objects share a spot and none is on the ego, at any keyframe of any scene."""
    from shapely.geometry import Polygon

    from perception.geometry import box_corners
    from perception.sources.synthetic import EGO_BODY, build_scene, scene_names

    names, _ = scene_names(10)
    places = set()
    for index in range(10):
        scene = build_scene(0, index, 20, names[index])
        places.add(scene.place)
        for k in range(0, 20, 2):
            t = k * 0.5
            boxes, _ = scene.boxes(t)
            polys = [Polygon(c[[0, 1, 5, 4], :2]) for c in box_corners(boxes[:, :7])]
            ego = scene.ego_pose(t)
            cx, cy, _, l, w, _ = EGO_BODY
            yaw = math.atan2(ego[1, 0], ego[0, 0])
            ego_box = np.array([[*(ego[:3, :3] @ [cx, cy, 0] + ego[:3, 3])[:2], 0, l, w, 1, yaw]])
            ego_poly = Polygon(box_corners(ego_box)[0][[0, 1, 5, 4], :2])
            for i, p in enumerate(polys):
                assert p.intersection(ego_poly).area < 1e-6, (index, t, CLASS_NAMES[scene.cls[i]])
                for j in range(i + 1, len(polys)):
                    assert p.intersection(polys[j]).area < 1e-3, (
                        index, t, CLASS_NAMES[scene.cls[i]], CLASS_NAMES[scene.cls[j]])
    assert places == {"straight", "curve", "intersection", "parking", "narrow"}


def test_scene_plan_has_night_rain_turns_and_stops():
    """Ten scenes of any seed hold night and rain scenes (named in the description, as nuScenes does), scenes
    where the ego turns more than 20 degrees and scenes where it stops."""
    from perception.sources.synthetic import build_scene, scene_names

    names, _ = scene_names(10)
    for seed in (0, 3):
        scenes = [build_scene(seed, i, 40, names[i]) for i in range(10)]
        assert sum(s.night for s in scenes) >= 1 and sum(s.rain for s in scenes) >= 1
        assert all(("night" in s.description) == s.night and ("rain" in s.description) == s.rain for s in scenes)
        assert sum(s.ego_turn_deg > 20 for s in scenes) >= 2, [s.ego_turn_deg for s in scenes]
        assert sum(s.ego_stops for s in scenes) >= 1
        off = [abs((b[6] - s.ego[0, 2] + np.pi / 2) % np.pi - np.pi / 2) > np.radians(15)
               for s in scenes for b, c in zip(s.boxes(5.0)[0], s.cls) if CLASS_NAMES[c] in
               ("car", "truck", "bus", "trailer", "construction_vehicle")]
        assert np.mean(off) > 0.1


def test_world_gives_no_answer_away(synthetic_root):
    """The cue probes of the world report: the class is not readable from one cue alone (colour, lidar
    intensity, radar RCS), radar returns are mostly clutter, hardly any box is seen by radar alone, and
    unannotated pole-like structures stand along the streets."""
    from perception.evaluation.world_report import report

    r = report(synthetic_root, progress=False)
    probes = r["probes"]
    assert probes["colour"]["balanced_accuracy"] <= 0.45, probes
    assert probes["intensity"]["balanced_accuracy"] <= 0.35, probes
    assert probes["rcs"]["balanced_accuracy"] <= 0.30, probes
    assert r["radar"]["share_returns_in_boxes"] <= 0.40
    assert r["radar"]["share_radar_only_eval_boxes"] <= 0.05
    assert r["lidar"]["pole_like_per_keyframe"] >= 20


def test_furniture_false_alarms_find_detections_on_street_furniture(synthetic_root, tmp_path):
    """The world's street furniture is rebuilt from its seed where the lidar sees it; a confident detection on a
    piece of furniture is a false alarm of that kind and class, one on an annotated object is not, and a world
    that is not the one its tables describe is refused."""
    import json
    import shutil

    from perception.evaluation.clutter import NotSyntheticError, from_submission, world_furniture
    from perception.sources.nuscenes import NuScenesSource

    src = NuScenesSource(synthetic_root, "v1.0-mini", "mini_train", lidar_sweeps=0, radar_sweeps=1, cameras=())
    furniture = world_furniture(synthetic_root, "v1.0-mini")
    e = src.index[0]
    f = furniture[e["scene"]]
    T = np.array(e["T_global_ego"])
    dist = np.linalg.norm(f["xy"] - T[:2, 3], axis=1)
    gt_xy = np.array([b[:2] for b in e["gt"]["boxes"]]) @ T[:2, :2].T + T[:2, 3]
    far_from_gt = np.linalg.norm(f["xy"][:, None] - gt_xy[None], axis=2).min(1) > 3.0
    # the lidar has returns where the rebuilt layout puts the furniture (most pieces near the ego; some hidden)
    pts = src[0].lidar.xyz[:, :2] @ T[:2, :2].T + T[:2, 3]
    near = np.flatnonzero((dist < 20) & far_from_gt)
    hits = np.array([(np.linalg.norm(pts - f["xy"][i], axis=1) < 0.8).sum() for i in near])
    assert len(near) >= 3 and (hits >= 3).mean() >= 0.5 and hits.max() >= 10, hits
    pick = int(near[hits.argmax()])

    def det(name, xy, score=0.6):
        return {"detection_name": name, "detection_score": score, "translation": [*map(float, xy), 0.0]}

    results = {e["token"]: [det("pedestrian", f["xy"][pick] + 0.3), det("pedestrian", gt_xy[0]),
                            det("pedestrian", f["xy"][pick], score=0.1)]}
    table = from_submission(results, src, synthetic_root, "v1.0-mini")
    kind = str(f["kind"][pick])
    assert table[kind]["alarms"]["pedestrian"] == 1 and sum(table["all"]["alarms"].values()) == 1
    assert table["all"]["in_range"] >= table[kind]["in_range"] > 0

    # at the score where half / 70% of the annotated pedestrians are found (calibration does not matter)
    from perception.evaluation.clutter import furniture_false_alarms

    peds = np.array([[10.0, 0.0], [20.0, 0.0]])
    pole = {"kind": np.array(["pole"], dtype=object), "xy": np.array([[15.0, 5.0]])}
    dets = [("pedestrian", 0.9, (10.2, 0.0)), ("pedestrian", 0.8, (15.0, 5.3)), ("pedestrian", 0.5, (20.0, 0.4))]
    t = furniture_false_alarms([("s", np.eye(4), dets, peds, peds)], {"s": pole})
    assert t["pedestrians"] == 2 and t["pole"]["alarms"]["pedestrian"] == 1
    assert t["at_recall"][0.5] == {"score": 0.9, "alarms": 0} and t["at_recall"][0.7] == {"score": 0.5, "alarms": 1}

    fake = tmp_path / "root"
    shutil.copytree(synthetic_root / "v1.0-mini", fake / "v1.0-mini")
    scenes = json.loads((fake / "v1.0-mini" / "scene.json").read_text())
    for s in scenes:
        s["description"] = s["description"].replace("(seed 0)", "(seed 7)")
    (fake / "v1.0-mini" / "scene.json").write_text(json.dumps(scenes))
    with pytest.raises(NotSyntheticError, match="another generator version"):
        from_submission(results, src, fake, "v1.0-mini")
    for s in scenes:
        s["description"] = "a real drive"
    (fake / "v1.0-mini" / "scene.json").write_text(json.dumps(scenes))
    with pytest.raises(NotSyntheticError, match="not a synthetic world"):
        world_furniture(fake, "v1.0-mini")


def test_class_confusion_tells_missed_from_misnamed(nusc, synthetic_root, tmp_path):
    """The devkit's eval on a submission made of the ground truth with every car called a truck, every
    pedestrian left out and every trailer moved 3 m along x: the confusion says cars were found as trucks,
    pedestrians missed, trailers found off centre; the rest as themselves."""
    import json

    from nuscenes.eval.detection.utils import category_to_detection_name

    from perception.evaluation.detection import format_confusion, run_detection_eval

    results = {}
    for tok in (s["token"] for s in nusc.sample):
        rows = []
        for ann_tok in nusc.get("sample", tok)["anns"]:
            a = nusc.get("sample_annotation", ann_tok)
            name = category_to_detection_name(a["category_name"])
            if name is None or name == "pedestrian":
                continue
            shift = 3.0 if name == "trailer" else 0.0
            rows.append({"sample_token": tok, "translation": [a["translation"][0] + shift, *a["translation"][1:]],
                         "size": a["size"],
                         "rotation": a["rotation"], "velocity": [0.0, 0.0], "attribute_name": "",
                         "detection_name": "truck" if name == "car" else name, "detection_score": 0.9})
        results[tok] = rows
    sub = tmp_path / "sub.json"
    sub.write_text(json.dumps({"meta": {"use_camera": False, "use_lidar": True, "use_radar": False,
                                        "use_map": False, "use_external": False}, "results": results}))
    from perception.sources.nuscenes import NuScenesSource

    split = "mini_val"
    keep = {e["token"] for e in NuScenesSource(synthetic_root, "v1.0-mini", split, cameras=()).index}
    sub.write_text(json.dumps({**json.loads(sub.read_text()),
                               "results": {t: r for t, r in results.items() if t in keep}}))
    summary = run_detection_eval(synthetic_root, "v1.0-mini", split, sub, tmp_path / "eval")
    conf = summary["confusion"]
    assert conf["car"] and set(conf["car"]) == {"truck"}
    assert conf["pedestrian"] and set(conf["pedestrian"]) == {"missed"}
    trailers = conf["trailer"]
    assert trailers and trailers.get("off-centre", 0) >= 0.8 * sum(trailers.values()), trailers
    for c in ("barrier", "traffic_cone"):
        assert not conf[c] or set(conf[c]) == {c}
    assert summary["mean_dist_aps"]["car"] == 0.0
    table = format_confusion(conf)
    assert table.splitlines()[0].split()[-3:] == ["2-4", "m", "missed"] and "car" in table


def test_velocity_by_heading_tells_measured_motion_from_a_guess(nusc, synthetic_root, tmp_path):
    """The devkit's eval on the ground truth submitted with its own velocity for objects moving the ego's way
    and none for the others (a detector that guesses traffic moves with it): the table shows the first
    right and the oncoming and crossing objects off by their whole speed."""
    import json

    from nuscenes.eval.detection.utils import category_to_detection_name

    from perception.evaluation.detection import ego_yaws, format_velocity_by_heading, run_detection_eval
    from perception.sources.nuscenes import NuScenesSource

    split = "mini_val"
    keep = {e["token"] for e in NuScenesSource(synthetic_root, "v1.0-mini", split, cameras=()).index}
    yaw = ego_yaws(nusc, sorted(keep))
    results = {}
    for tok in keep:
        rows = []
        c, s = np.cos(yaw[tok]), np.sin(yaw[tok])
        for ann_tok in nusc.get("sample", tok)["anns"]:
            a = nusc.get("sample_annotation", ann_tok)
            name = category_to_detection_name(a["category_name"])
            if name is None:
                continue
            v = np.nan_to_num(nusc.box_velocity(ann_tok)[:2])
            with_ego = v[0] * c + v[1] * s > np.sqrt(0.5) * np.linalg.norm(v)
            rows.append({"sample_token": tok, "translation": a["translation"], "size": a["size"],
                         "rotation": a["rotation"], "velocity": (v if with_ego else 0 * v).tolist(),
                         "attribute_name": "", "detection_name": name, "detection_score": 0.9})
        results[tok] = rows
    sub = tmp_path / "sub.json"
    sub.write_text(json.dumps({"meta": {"use_camera": False, "use_lidar": True, "use_radar": False,
                                        "use_map": False, "use_external": False}, "results": results}))
    full = run_detection_eval(synthetic_root, "v1.0-mini", split, sub, tmp_path / "eval")["velocity_by_heading"]
    table = full["vehicles"]
    assert table["with the ego"]["n"] > 0 and table["with the ego"]["ave"] < 1e-3
    assert table["still"]["n"] > 0 and table["still"]["ave"] < 1.0
    other = [table[h] for h in ("oncoming", "crossing") if table[h]["n"]]
    assert other and all(r["pred_speed"] == 0.0 and r["ave"] > 1.0 for r in other)
    text = format_velocity_by_heading(full)
    assert "vehicles" in text and ("oncoming" in text or "crossing" in text)


def test_heading_by_orientation_shows_a_detector_that_lays_every_vehicle_along_the_road():
    """The devkit's own box types: vehicles lying along the ego (driving with it, oncoming) and across it (parked
    in a lot, crossing), a pedestrian across; the detections put every box where it is but turned to the ego's
    axis. The table finds the along ones nearly right, the across ones off by their whole turn, and leaves the
    pedestrian out; a right detector is 0 both ways."""
    from nuscenes.eval.common.data_classes import EvalBoxes
    from nuscenes.eval.detection.data_classes import DetectionBox

    from perception.evaluation.detection import format_heading_by_orientation, heading_by_orientation
    from perception.geometry import yaw_to_quat

    ego = 0.7  # the ego's heading in the global frame
    lying = [("car", 0.05), ("truck", np.pi - 0.1), ("car", np.pi / 2 + 0.05), ("bus", -np.pi / 2 + 0.2),
             ("car", np.pi / 2 - 0.1), ("pedestrian", np.pi / 2)]

    def box(k, name, yaw, score=-1.0):
        return DetectionBox(sample_token="s", translation=(10.0 * k, 5.0, 1.0), size=(2.0, 4.5, 1.6),
                            rotation=tuple(yaw_to_quat(ego + yaw)), detection_name=name, detection_score=score)

    gt, guess, right = EvalBoxes(), EvalBoxes(), EvalBoxes()
    gt.add_boxes("s", [box(k, n, y) for k, (n, y) in enumerate(lying)])
    guess.add_boxes("s", [box(k, n, 0.0 if np.cos(y) >= 0 else np.pi, 0.9) for k, (n, y) in enumerate(lying)])
    right.add_boxes("s", [box(k, n, y, 0.9) for k, (n, y) in enumerate(lying)])
    t = heading_by_orientation(gt, guess, {"s": ego})
    assert t["along"]["n"] == 2 and t["across"]["n"] == 3
    assert t["along"]["median_deg"] == pytest.approx(np.degrees(0.075), abs=0.01)
    assert t["across"]["median_deg"] == pytest.approx(np.degrees(np.pi / 2 - 0.1), abs=0.01)
    assert t["across"]["axis_deg"] == pytest.approx(t["across"]["median_deg"])
    assert t["along"]["flipped"] == 0.0 and t["across"]["flipped"] == 0.0
    back = EvalBoxes()  # every heading read back to front
    back.add_boxes("s", [box(k, n, y + np.pi, 0.9) for k, (n, y) in enumerate(lying)])
    assert heading_by_orientation(gt, back, {"s": ego})["across"]["flipped"] == 1.0
    r = heading_by_orientation(gt, right, {"s": ego})
    assert r["along"]["median_deg"] < 1e-3 and r["across"]["median_deg"] < 1e-3
    lines = format_heading_by_orientation(t).splitlines()
    assert len(lines) == 3 and lines[2].startswith("across the ego")
