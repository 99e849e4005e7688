"""A nuScenes dataroot's statistics next to real-nuScenes reference figures, plus single-cue probes.

Works on any dataroot the devkit loads (real nuScenes or the synthetic world). Everything is read through
nuscenes-devkit (``NuScenes`` tables, ``LidarPointCloud``, ``RadarPointCloud`` with the devkit's default
filters, ``points_in_box``, ``view_points``) plus the camera image files; nothing here knows how a dataroot
was made.

Per keyframe (``sample``) it measures what a detector trained on the data would see: how many boxes, of which
classes, how far; how many lidar / radar points land on them; how many radar returns hit nothing annotated;
how many small vertical unannotated structures (poles, posts, trunks) stand near the road; scene conditions
and ego motion. The *cue probes* ask how well a trivial classifier (kNN, k=5, scenes held out) names the class
from ONE cue alone (a pixel colour, the lidar intensity, a radar return's RCS, the lateral position): in real
data each is a weak cue, so a world where one of them gives the class away teaches a model a shortcut.

    from perception.evaluation.world_report import report, format_report
    print(format_report(report("data/synthetic")))

``report()`` returns plain numbers (JSON-serialisable); ``format_report()`` renders the fixed-width table. The
probes and the pole count are in ``perception.evaluation.world_probes``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from perception.evaluation.world_probes import count_pole_like, knn_probe, points_in_boxes_mask
from perception.types import CATEGORY_TO_CLASS, CLASS_RANGE, DETECTION_CLASSES

VERSIONS = ("v1.0-mini", "v1.0-trainval")
RADAR_CHANNELS = ("RADAR_FRONT", "RADAR_FRONT_LEFT", "RADAR_FRONT_RIGHT", "RADAR_BACK_LEFT", "RADAR_BACK_RIGHT")
CAMERA_CHANNELS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT")
VEHICLES = ("car", "truck", "bus", "trailer", "construction_vehicle")
DISTANCE_BINS = ((0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, math.inf))
# The devkit's default radar filters (RadarPointCloud.default_filters() in nuscenes-devkit 1.2.0): valid clusters
# (invalid_state 0), every dynamic property but 7 ("unknown"), unambiguous clusters (ambig_state 3). Passed
# explicitly so a disable_filters() call elsewhere in the process cannot change what we count.
RADAR_DEFAULT_FILTERS = {"invalid_states": [0], "dynprop_states": list(range(7)), "ambig_states": [3]}

# ---- real nuScenes reference figures ---------------------------------------------------------------------------
# v1.0-mini holds 404 samples and 18538 sample_annotations (the devkit's table sizes printed when it loads
# v1.0-mini, e.g. in the official tutorial https://www.nuscenes.org/tutorials/nuscenes_tutorial.html):
# 18538 / 404 = 45.9 annotations per keyframe (all categories; the 10 detection classes are 18364 of them).
REF_BOXES_PER_KEYFRAME = 46.0
# Boxes DetectionEval keeps per keyframe (class range + >= 1 lidar/radar point) on v1.0-trainval: ~34.
# Source: the project's issue brief (measured on real trainval by the issue author); not re-derived here.
REF_EVAL_BOXES_PER_KEYFRAME = 34.0
# Class shares of real nuScenes v1.0-mini, from the devkit's NuScenes.list_categories() output on v1.0-mini
# (per-category annotation counts, printed in the official devkit tutorial linked above, and reproduced e.g. in
# github.com/daetz-coder/TrajectoryPrediction's tutorial notes), mapped through CATEGORY_TO_CLASS:
# car 7619; pedestrian 4765+46+193+11 = 5015 (adult, child, construction_worker, police_officer);
# barrier 2323; traffic_cone 1378; truck 649; motorcycle 471; bus 57+353 = 410 (bendy, rigid); bicycle 243;
# construction_vehicle 196; trailer 60. Total 18364.
_MINI_CLASS_COUNTS = {"car": 7619, "pedestrian": 5015, "barrier": 2323, "traffic_cone": 1378, "truck": 649,
                      "motorcycle": 471, "bus": 410, "bicycle": 243, "construction_vehicle": 196, "trailer": 60}
REF_CLASS_SHARES = {c: n / sum(_MINI_CLASS_COUNTS.values()) for c, n in _MINI_CLASS_COUNTS.items()}
# The following figures come from the project's issue brief (its author's measurements on real nuScenes);
# they are quoted as given, not independently verified here.
REF_SHARE_NO_LIDAR_NO_RADAR = 0.19   # ~19% of v1.0-mini boxes have neither a lidar nor a radar point (brief)
REF_MEAN_LIDAR_PTS = 59.0            # mean num_lidar_pts per box (brief)
REF_MEAN_RADAR_PTS = 0.9             # mean num_radar_pts per box (brief)
REF_RADAR_RETURNS = 200.0            # radar returns per sample after the default filters, 5 radars (brief)
REF_NIGHT = 0.10                     # ~10% of samples at night (brief)
REF_RAIN = 0.18                      # ~18% of samples in rain (brief)
REF_POLES = 50.0                     # pole-like unannotated structures per urban keyframe within 30 m (brief)

# Issue goals for a synthetic world: (op, threshold).
GOALS = {
    "probes.colour": ("<=", 0.45), "probes.intensity": ("<=", 0.35), "probes.rcs": ("<=", 0.30),
    "radar.share_returns_in_boxes": ("<=", 0.40), "radar.share_radar_only_eval_boxes": ("<=", 0.05),
    "lidar.pole_like_per_keyframe": (">=", 20.0), "content.share_vehicles_off_heading": (">=", 0.10),
    "conditions.share_night_scenes": (">=", 0.10), "conditions.share_rain_scenes": (">=", 0.10),
    "conditions.share_turning_scenes": (">=", 0.20), "conditions.share_stopping_scenes": (">=", 0.10),
}


# ---- small pure helpers (unit-tested directly) ---------------------------------------------------------------

def detect_version(dataroot) -> str:
    """The table folder present under ``dataroot`` (v1.0-mini or v1.0-trainval); ambiguous or none -> ValueError."""
    present = [v for v in VERSIONS if (Path(dataroot) / v).is_dir()]
    if len(present) == 1:
        return present[0]
    if not present:
        raise ValueError(f"{dataroot}: no {' or '.join(VERSIONS)} folder; is this a nuScenes dataroot?")
    raise ValueError(f"{dataroot}: both {present[0]} and {present[1]} present; choose one with version=/--version")


def _yaw(q) -> float:
    return float(q.yaw_pitch_roll[0])


def _to_frame(box, translation, rotation):
    """A copy of a global devkit Box expressed in the frame of the pose (translation, rotation)."""
    from pyquaternion import Quaternion

    b = box.copy()
    b.translate(-np.asarray(translation, np.float64))
    b.rotate(Quaternion(rotation).inverse)
    return b


def _points_to_global(points_xyz, cs, pose) -> np.ndarray:
    """(N, 3) sensor-frame points -> global, through the sensor's calibration and its own ego pose."""
    from pyquaternion import Quaternion

    p = points_xyz @ Quaternion(cs["rotation"]).rotation_matrix.T + np.asarray(cs["translation"])
    return p @ Quaternion(pose["rotation"]).rotation_matrix.T + np.asarray(pose["translation"])


def _points_to_pose(points_global, pose) -> np.ndarray:
    from pyquaternion import Quaternion

    return (points_global - np.asarray(pose["translation"])) @ Quaternion(pose["rotation"]).rotation_matrix


def _scene_samples(nusc, scene) -> list:
    out, tok = [], scene["first_sample_token"]
    while tok:
        s = nusc.get("sample", tok)
        out.append(s)
        tok = s["next"]
    return out


def _scene_motion(nusc, samples) -> tuple[float, bool]:
    """(total heading change in deg = max - min of the unwrapped yaw, stops: speed < 0.2 m/s between two keyframes)."""
    from pyquaternion import Quaternion

    poses = [nusc.get("ego_pose", nusc.get("sample_data", s["data"]["LIDAR_TOP"])["ego_pose_token"]) for s in samples]
    yaw = np.unwrap([_yaw(Quaternion(p["rotation"])) for p in poses])
    turn = float(np.degrees(yaw.max() - yaw.min())) if len(yaw) else 0.0
    stops = False
    for a, b in zip(poses[:-1], poses[1:]):
        dt = (b["timestamp"] - a["timestamp"]) * 1e-6
        if dt > 0 and np.hypot(*(np.asarray(b["translation"][:2]) - a["translation"][:2])) / dt < 0.2:
            stops = True
    return turn, stops


def _camera_colour(nusc, sample, centres_global, images: dict) -> tuple[np.ndarray, np.ndarray]:
    """Mean RGB of a 3x3 patch at each projected centre (NaN where no camera sees it with depth > 1 m).

    Of the cameras where the centre lands inside the image with depth > 1 m, the one whose image centre is
    nearest the projection (normalised by the image size) is used. Returns (rgb (N, 3), ok (N,)).
    """
    from nuscenes.utils.geometry_utils import view_points
    from PIL import Image
    from pyquaternion import Quaternion

    n = len(centres_global)
    best = np.full(n, np.inf)
    best_cam = [None] * n
    best_uv = np.zeros((n, 2))
    for ch in CAMERA_CHANNELS:
        if ch not in sample["data"] or n == 0:
            continue
        sd = nusc.get("sample_data", sample["data"][ch])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        pose = nusc.get("ego_pose", sd["ego_pose_token"])
        p = _points_to_pose(centres_global, pose)
        p = (p - np.asarray(cs["translation"])) @ Quaternion(cs["rotation"]).rotation_matrix
        depth = p[:, 2]
        K = np.asarray(cs["camera_intrinsic"], np.float64)
        uv = view_points(p.T, K, normalize=True)[:2].T if len(p) else np.zeros((0, 2))
        w, h = sd.get("width") or 0, sd.get("height") or 0
        if not (w and h):  # tables without image sizes: read them from the file
            if ch not in images:
                images[ch] = np.asarray(Image.open(os.path.join(nusc.dataroot, sd["filename"])).convert("RGB"))
            h, w = images[ch].shape[:2]
        inside = (depth > 1.0) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        score = np.hypot(uv[:, 0] / w - 0.5, uv[:, 1] / h - 0.5)
        better = inside & (score < best)
        best[better] = score[better]
        best_uv[better] = uv[better]
        for i in np.flatnonzero(better):
            best_cam[i] = (ch, sd["filename"])
    rgb = np.full((n, 3), np.nan)
    for i in range(n):
        if best_cam[i] is None:
            continue
        ch, fn = best_cam[i]
        if ch not in images:
            images[ch] = np.asarray(Image.open(os.path.join(nusc.dataroot, fn)).convert("RGB"))
        img = images[ch]
        u, v = int(best_uv[i, 0]), int(best_uv[i, 1])
        patch = img[max(0, v - 1):v + 2, max(0, u - 1):u + 2].reshape(-1, 3)
        rgb[i] = patch.mean(axis=0)
    return rgb, np.isfinite(rgb).all(axis=1)


def _sample_stats(nusc, sample, acc: dict, scene_token: str) -> None:
    """Everything measured on one keyframe, appended to ``acc``."""
    from nuscenes.utils.data_classes import LidarPointCloud, RadarPointCloud

    anns = [nusc.get("sample_annotation", t) for t in sample["anns"]]
    boxes_g = [nusc.get_box(a["token"]) for a in anns]
    cls = [CATEGORY_TO_CLASS.get(a["category_name"]) for a in anns]
    det = [i for i, c in enumerate(cls) if c is not None]

    # ego frame of the keyframe lidar (what DetectionEval measures distance in)
    lsd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    lpose = nusc.get("ego_pose", lsd["ego_pose_token"])
    lcs = nusc.get("calibrated_sensor", lsd["calibrated_sensor_token"])
    boxes_e = [_to_frame(b, lpose["translation"], lpose["rotation"]) for b in boxes_g]

    acc["n_boxes"].append(len(det))
    n_eval = 0
    for i in det:
        a, b, c = anns[i], boxes_e[i], cls[i]
        dist = float(np.hypot(b.center[0], b.center[1]))
        nl, nr = int(a["num_lidar_pts"]), int(a["num_radar_pts"])
        kept = dist < CLASS_RANGE[c] and nl + nr > 0  # DetectionEval's filter_eval_boxes: ego_dist < range
        n_eval += kept
        acc["cls"].append(c)
        acc["dist"].append(dist)
        acc["nl"].append(nl)
        acc["nr"].append(nr)
        acc["kept"].append(kept)
        acc["lat"].append(float(b.center[1]))
        acc["group"].append(scene_token)
        if c in VEHICLES:
            rel = abs(_yaw(b.orientation)) % math.pi
            acc["off_heading"].append(min(rel, math.pi - rel) > math.radians(15.0))
    acc["n_eval"].append(n_eval)

    # lidar: intensity inside each box, pole-like structures
    pc = LidarPointCloud.from_file(os.path.join(nusc.dataroot, lsd["filename"]))
    pts_e = _points_to_pose(_points_to_global(pc.points[:3].T.astype(np.float64), lcs, lpose), lpose)
    inten = pc.points[3]
    if det:
        mask = points_in_boxes_mask(pts_e, [boxes_e[i] for i in det])
        for row, i in zip(mask, det):
            if row.any():
                acc["int_x"].append(float(inten[row].mean()))
                acc["int_y"].append(cls[i])
                acc["int_g"].append(scene_token)
    acc["poles"].append(count_pole_like(pts_e, boxes_e))

    # radar: default-filtered keyframe returns of the 5 radars, in global
    n_ret = n_in = 0
    for ch in RADAR_CHANNELS:
        if ch not in sample["data"]:
            continue
        rsd = nusc.get("sample_data", sample["data"][ch])
        rpc = RadarPointCloud.from_file(os.path.join(nusc.dataroot, rsd["filename"]), **RADAR_DEFAULT_FILTERS)
        if rpc.points.shape[1] == 0:
            continue
        rcs_cal = nusc.get("calibrated_sensor", rsd["calibrated_sensor_token"])
        rpose = nusc.get("ego_pose", rsd["ego_pose_token"])
        pg = _points_to_global(rpc.points[:3].T.astype(np.float64), rcs_cal, rpose)
        n_ret += len(pg)
        if boxes_g:
            m = points_in_boxes_mask(pg, boxes_g)
            n_in += int(m.any(axis=0).sum())
            for i in det:
                for j in np.flatnonzero(m[i]):
                    acc["rcs_x"].append(float(rpc.points[5, j]))
                    acc["rcs_y"].append(cls[i])
                    acc["rcs_g"].append(scene_token)
    acc["radar_returns"].append(n_ret)
    acc["radar_in_box"].append(n_in)

    # camera colour at the projected centre (visibility >= 2)
    vis_ok = []
    for i in det:
        try:
            vis_ok.append(int(anns[i]["visibility_token"]) >= 2)
        except (TypeError, ValueError):
            vis_ok.append(False)
    sel = [i for i, v in zip(det, vis_ok) if v]
    if sel:
        rgb, ok = _camera_colour(nusc, sample, np.array([boxes_g[i].center for i in sel]), {})
        for k, i in enumerate(sel):
            if ok[k]:
                acc["col_x"].append(rgb[k].tolist())
                acc["col_y"].append(cls[i])
                acc["col_g"].append(scene_token)


def _mean(x) -> float | None:
    """Mean (of booleans: the share that is True); None for no data."""
    x = np.asarray(x, np.float64)
    return float(x.mean()) if len(x) else None


def _get(d: dict, key: str):
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _check(value, goal) -> bool | None:
    if value is None or goal is None:
        return None
    op, thr = goal
    return bool(value <= thr) if op == "<=" else bool(value >= thr)


def report(dataroot, version: str | None = None, max_samples: int | None = None, progress: bool = True,
           max_probe_rows: int = 20000) -> dict:
    """The world report of a nuScenes dataroot as plain numbers (see the module docstring).

    ``max_samples`` subsamples the keyframes evenly (scene / time order) for speed; scene-level statistics
    (conditions, ego motion) always use every scene. Probes with more than ``max_probe_rows`` rows use a fixed
    random subset of that size.
    """
    from nuscenes import NuScenes
    from tqdm import tqdm

    from perception.sources import devkit_compat

    devkit_compat.apply()
    version = version or detect_version(dataroot)
    nusc = NuScenes(version=version, dataroot=str(dataroot), verbose=False)

    scene_samples = [(sc, _scene_samples(nusc, sc)) for sc in nusc.scene]
    ordered = [(sc["token"], s) for sc, ss in scene_samples for s in ss]
    n_total = len(ordered)
    if max_samples is not None and 0 < max_samples < n_total:
        pick = np.unique(np.linspace(0, n_total - 1, max_samples).round().astype(int))
        ordered = [ordered[i] for i in pick]

    keys = ("n_boxes", "n_eval", "cls", "dist", "nl", "nr", "kept", "lat", "group", "off_heading", "int_x", "int_y",
            "int_g", "poles", "rcs_x", "rcs_y", "rcs_g", "radar_returns", "radar_in_box", "col_x", "col_y", "col_g")
    acc: dict[str, list] = {k: [] for k in keys}
    for scene_token, s in tqdm(ordered, desc="world report", unit="sample", disable=not progress):
        _sample_stats(nusc, s, acc, scene_token)

    n = len(ordered)
    cls = np.asarray(acc["cls"], dtype=object)
    nl, nr = np.asarray(acc["nl"], np.int64), np.asarray(acc["nr"], np.int64)
    kept = np.asarray(acc["kept"], bool)
    dist = np.asarray(acc["dist"], np.float64)
    n_ann = len(cls)
    content = {
        "boxes_per_keyframe": _mean(acc["n_boxes"]),
        "eval_boxes_per_keyframe": _mean(acc["n_eval"]),
        "n_boxes": int(n_ann),
        "n_eval_boxes": int(kept.sum()),
        "class_shares": {c: (float(np.sum(cls == c)) / n_ann if n_ann else None) for c in DETECTION_CLASSES},
        "distance_shares": {(f"{lo}-{hi}" if hi != math.inf else f">{lo}"):
                            (float(np.mean((dist >= lo) & (dist < hi))) if n_ann else None)
                            for lo, hi in DISTANCE_BINS},
        "share_vehicles_off_heading": _mean(acc["off_heading"]),
    }
    lidar = {
        "mean_pts_per_box": _mean(nl),
        "median_pts_per_box": float(np.median(nl)) if n_ann else None,
        "share_no_lidar": _mean(nl == 0),
        "share_no_lidar_no_radar": _mean((nl == 0) & (nr == 0)),
        "pole_like_per_keyframe": _mean(acc["poles"]),
    }
    ret = int(np.sum(acc["radar_returns"]))
    radar = {
        "returns_per_sample": _mean(acc["radar_returns"]),
        "share_returns_in_boxes": (float(np.sum(acc["radar_in_box"])) / ret) if ret else None,
        "mean_radar_pts_per_box": _mean(nr),
        "share_radar_only_eval_boxes": _mean(((nl == 0) & (nr > 0))[kept]) if kept.any() else None,
    }
    night = [("night" in (sc["description"] or "").lower()) for sc, _ in scene_samples]
    rain = [("rain" in (sc["description"] or "").lower()) for sc, _ in scene_samples]
    motion = [_scene_motion(nusc, ss) for _, ss in scene_samples if ss]
    conditions = {
        "share_night_scenes": _mean(night),
        "share_rain_scenes": _mean(rain),
        "share_turning_scenes": _mean([t > 20.0 for t, _ in motion]),
        "share_stopping_scenes": _mean([s for _, s in motion]),
        "max_heading_change_deg": float(max(t for t, _ in motion)) if motion else None,
    }

    rng = np.random.default_rng(0)

    def probe(x, y, g):
        x, y, g = np.asarray(x, np.float64), np.asarray(y, dtype=object).astype(str), np.asarray(g)
        if len(x) > max_probe_rows:
            keep = np.sort(rng.choice(len(x), max_probe_rows, replace=False))
            x, y, g = x[keep], y[keep], g[keep]
        return knn_probe(x.reshape(len(x), -1) if len(x) else x.reshape(0, 1), y, g)

    probes = {
        "colour": probe(acc["col_x"], acc["col_y"], acc["col_g"]),
        "intensity": probe(acc["int_x"], acc["int_y"], acc["int_g"]),
        "rcs": probe(acc["rcs_x"], acc["rcs_y"], acc["rcs_g"]),
        "lateral_y": probe(acc["lat"], acc["cls"], acc["group"]),
    }
    out = {
        "dataroot": str(dataroot), "version": version, "n_samples": n, "n_samples_total": n_total,
        "n_scenes": len(nusc.scene), "n_scenes_sampled": len({t for t, _ in ordered}),
        "content": content, "lidar": lidar, "radar": radar, "conditions": conditions, "probes": probes,
    }
    out["checks"] = {}
    for key, goal in GOALS.items():
        v = _get(out, key)
        v = v["balanced_accuracy"] if isinstance(v, dict) else v
        out["checks"][key] = {"value": v, "goal": f"{goal[0]} {goal[1]:g}", "ok": _check(v, goal)}
    return out


# ---- rendering ------------------------------------------------------------------------------------------------

def _pct(v) -> str:
    return "n/a" if v is None else f"{100.0 * v:.1f}%"


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def _acc(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _goal_str(goal, fmt) -> str:
    if goal is None:
        return ""
    op, thr = goal
    return f"{op} {fmt(thr)}"


def _rows(d: dict) -> list:
    """(section, [(quantity, ours, reference, goal, ok), ...])."""
    c, li, ra, co, pr = d["content"], d["lidar"], d["radar"], d["conditions"], d["probes"]

    def row(label, value, fmt, ref=None, goal_key=None, ref_text=None):
        goal = GOALS.get(goal_key) if goal_key else None
        ok = _check(value, goal)
        ref_s = ref_text if ref_text is not None else ("-" if ref is None else fmt(ref))
        return (label, fmt(value), ref_s, _goal_str(goal, fmt), "" if goal is None else
                ("?" if ok is None else ("ok" if ok else "FAIL")))

    content = [
        row("boxes per keyframe (10 classes)", c["boxes_per_keyframe"], _num, REF_BOXES_PER_KEYFRAME,
            ref_text="46 (mini)"),
        row("boxes per keyframe kept by DetectionEval", c["eval_boxes_per_keyframe"], _num,
            REF_EVAL_BOXES_PER_KEYFRAME, ref_text="34 (trainval)"),
    ]
    content += [row(f"class share: {k}", v, _pct, REF_CLASS_SHARES.get(k)) for k, v in c["class_shares"].items()]
    content += [row(f"distance share: {k} m", v, _pct) for k, v in c["distance_shares"].items()]
    content.append(row("vehicles > 15 deg off ego heading (mod 180)", c["share_vehicles_off_heading"], _pct,
                       goal_key="content.share_vehicles_off_heading"))
    lidar = [
        row("lidar points per box, mean", li["mean_pts_per_box"], _num, REF_MEAN_LIDAR_PTS),
        row("lidar points per box, median", li["median_pts_per_box"], _num),
        row("boxes with no lidar point", li["share_no_lidar"], _pct),
        row("boxes with no lidar and no radar point", li["share_no_lidar_no_radar"], _pct,
            REF_SHARE_NO_LIDAR_NO_RADAR, ref_text="~19% (mini)"),
        row("pole-like unannotated structures / keyframe", li["pole_like_per_keyframe"], _num, REF_POLES,
            goal_key="lidar.pole_like_per_keyframe", ref_text="~50 (urban)"),
    ]
    radar = [
        row("radar returns / sample (default filters)", ra["returns_per_sample"], _num, REF_RADAR_RETURNS,
            ref_text="~200"),
        row("radar returns inside an annotated box", ra["share_returns_in_boxes"], _pct,
            goal_key="radar.share_returns_in_boxes", ref_text="minority"),
        row("radar points per box, mean", ra["mean_radar_pts_per_box"], _num, REF_MEAN_RADAR_PTS, ref_text="~0.9"),
        row("eval boxes seen by radar alone", ra["share_radar_only_eval_boxes"], _pct,
            goal_key="radar.share_radar_only_eval_boxes"),
    ]
    cond = [
        row("scenes at night", co["share_night_scenes"], _pct, REF_NIGHT, "conditions.share_night_scenes",
            ref_text="~10%"),
        row("scenes in rain", co["share_rain_scenes"], _pct, REF_RAIN, "conditions.share_rain_scenes",
            ref_text="~18%"),
        row("scenes where the ego turns > 20 deg", co["share_turning_scenes"], _pct,
            goal_key="conditions.share_turning_scenes"),
        row("scenes where the ego stops (< 0.2 m/s)", co["share_stopping_scenes"], _pct,
            goal_key="conditions.share_stopping_scenes"),
    ]
    probes = []
    for key, label in (("colour", "colour: 3x3 RGB at centre"), ("intensity", "lidar intensity in box"),
                       ("rcs", "radar RCS of a return"), ("lateral_y", "lateral position (ego y)")):
        p = pr[key]
        ch = "n/a" if p["chance"] is None else f"{p['chance']:.2f}"
        probes.append(row(f"{label} (chance {ch}, n={p['n']})", p["balanced_accuracy"], _acc,
                          goal_key=f"probes.{key}"))
    return [("content", content), ("lidar", lidar), ("radar", radar), ("conditions & motion", cond),
            ("cue probes (kNN k=5, balanced accuracy, scenes held out)", probes)]


def format_report(d: dict) -> str:
    """The report as a fixed-width table; the last line is ``world report: N samples, M scenes``."""
    w = (52, 11, 14, 9, 4)
    head = ("quantity", "this world", "real nuScenes", "goal", "ok")

    def line(cells):
        return (f"{cells[0]:<{w[0]}} | {cells[1]:>{w[1]}} | {cells[2]:>{w[2]}} | {cells[3]:>{w[3]}} | "
                f"{cells[4]:<{w[4]}}").rstrip()

    sep = "-" * (sum(w) + 3 * len(w) + 1)
    out = [f"dataroot: {d['dataroot']} ({d['version']})", line(head), sep]
    for section, rows in _rows(d):
        out.append(f"[{section}]")
        out += [line(r) for r in rows]
        out.append(sep)
    checks = [v["ok"] for v in d["checks"].values()]
    out.append(f"goals met: {sum(1 for v in checks if v)} / {len(checks)}"
               + (f" ({sum(1 for v in checks if v is None)} not measurable)" if None in checks else ""))
    if d["n_samples"] != d["n_samples_total"]:
        out.append(f"(keyframe statistics on {d['n_samples']} of {d['n_samples_total']} samples, evenly spaced; "
                   f"scene statistics on all scenes)")
    out.append(f"world report: {d['n_samples']} samples, {d['n_scenes']} scenes")
    return "\n".join(out)


def pictures(dataroot, out_dir, version: str | None = None) -> list[Path]:
    """What the world looks like: for the first day / night / rain scene (as the scene descriptions name the
    condition), the middle keyframe's six cameras with the ground truth drawn (``cameras_<cond>.jpg``, one
    per condition found, and ``conditions.jpg`` stacking their front rows), and a bird's-eye view of the first
    day keyframe's lidar, radar and ground truth where unannotated structures show as points outside every box
    (``bev.png``). Returns the files written."""
    import cv2
    from nuscenes import NuScenes

    from perception.sources import devkit_compat
    from perception.sources.nuscenes import NuScenesSource
    from perception.viz import bev_image, camera_mosaic, save_rgb

    devkit_compat.apply()
    version = version or detect_version(dataroot)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nusc = NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    src = NuScenesSource(dataroot, version=version, lidar_sweeps=5)
    where = {tok: i for i, tok in enumerate(src.sample_tokens())}
    picks: dict[str, str] = {}
    for scene in nusc.scene:
        d = scene["description"].lower()
        cond = "night" if "night" in d else ("rain" if "rain" in d else "day")
        if cond in picks:
            continue
        toks, tok = [], scene["first_sample_token"]
        while tok:
            toks.append(tok)
            tok = nusc.get("sample", tok)["next"]
        picks[cond] = toks[len(toks) // 2]
    written, rows = [], []
    for cond in ("day", "night", "rain"):
        if cond not in picks:
            continue
        frame = src[where[picks[cond]]]
        mosaic = camera_mosaic(frame, frame.gt)
        cv2.putText(mosaic, cond, (mosaic.shape[1] - 120, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 0), 2,
                    cv2.LINE_AA)
        path = out_dir / f"cameras_{cond}.jpg"
        save_rgb(path, mosaic)
        written.append(path)
        rows.append(mosaic[: mosaic.shape[0] // 2])
        if cond == "day":
            bev = bev_image(frame, gt=frame.gt, title=f"{frame.scene} {frame.sample_token[:8]}: lidar, radar, "
                                                       "ground truth (grey); the rest is unannotated")
            save_rgb(out_dir / "bev.png", bev)
            written.append(out_dir / "bev.png")
    if rows:
        save_rgb(out_dir / "conditions.jpg", np.vstack(rows))
        written.append(out_dir / "conditions.jpg")
    return written
