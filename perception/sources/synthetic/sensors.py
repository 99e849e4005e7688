"""The sensor rig of the synthetic world and its simulation: lidar, radar and camera views ray-cast against
one scene."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from perception.geometry import (
    box_corners,
    invert_transform,
    make_transform,
    transform_points,
    yaw_to_quat,
)
from perception.sources import _raycast as rc
from perception.sources.files import RADAR_DTYPE
from perception.sources.synthetic.world import CLASS_NAMES, CLASS_SPECS, VEHICLES, Scene, build_scene, hue_rgb

# ------------------------------------------------------------------------------------------------------
# The rig: nuScenes-like sensor placement (ego frame: x forward, y left, z up).
# ------------------------------------------------------------------------------------------------------
CAMERA_RIG = {  # channel: (fx, cx, cy, yaw deg, translation)
    "CAM_FRONT": (1266.417, 816.267, 491.507, 0.0, (1.70, 0.016, 1.51)),
    "CAM_FRONT_RIGHT": (1260.847, 807.968, 495.334, -55.0, (1.55, -0.49, 1.50)),
    "CAM_FRONT_LEFT": (1272.598, 826.615, 479.752, 55.0, (1.52, 0.49, 1.51)),
    "CAM_BACK": (809.221, 829.220, 481.778, 180.0, (0.03, 0.0, 1.57)),
    "CAM_BACK_LEFT": (1256.741, 792.113, 492.776, 110.0, (1.04, 0.48, 1.56)),
    "CAM_BACK_RIGHT": (1259.514, 807.253, 501.196, -110.0, (1.03, -0.48, 1.59)),
}
CAMERA_OFFSET_S = {"CAM_FRONT": 0.012, "CAM_FRONT_RIGHT": 0.020, "CAM_FRONT_LEFT": 0.004, "CAM_BACK": -0.037,
                   "CAM_BACK_LEFT": -0.022, "CAM_BACK_RIGHT": 0.045}
IMAGE_W, IMAGE_H = 1600, 900
LIDAR_T = (0.943, 0.0, 1.84)
LIDAR_YAW = -math.pi / 2  # nuScenes LIDAR_TOP: x right, y forward
LIDAR_ELEVATIONS = np.deg2rad(np.linspace(-30.67, 10.67, 32))
LIDAR_COLUMNS = 1085
LIDAR_RANGE = 70.0
LIDAR_PERIOD = 0.05
RADAR_RIG = {  # channel: (translation, yaw deg, phase s)
    "RADAR_FRONT": ((3.412, 0.0, 0.5), 0.0, 0.011),
    "RADAR_FRONT_LEFT": ((2.422, 0.80, 0.78), 90.0, 0.023),
    "RADAR_FRONT_RIGHT": ((2.422, -0.80, 0.77), -90.0, 0.037),
    "RADAR_BACK_LEFT": ((-0.562, 0.628, 0.53), 150.0, 0.049),
    "RADAR_BACK_RIGHT": ((-0.562, -0.618, 0.53), -150.0, 0.061),
}
RADAR_PERIOD = 1.0 / 13.0
RADAR_NEAR = (math.radians(60), 70.0)
RADAR_FAR = (math.radians(9), 150.0)
EGO_BODY = (0.9, 0.0, 0.45, 4.1, 1.8, 0.9)  # centre x y z, l w h below the roof rack: rays hitting it give no return
SKY_TOP = np.array([150.0, 168.0, 196.0])
SKY_HOR = np.array([200.0, 204.0, 210.0])
LIGHT = np.array([0.35, 0.45, 0.82]) / np.linalg.norm([0.35, 0.45, 0.82])


def camera_rotation(yaw_deg: float) -> np.ndarray:
    """R_ego_cam for an optical camera (x right, y down, z forward) looking along ego yaw."""
    base = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ base


@lru_cache(maxsize=8)
def get_scene(seed: int, index: int, n_samples: int, name: str) -> Scene:
    return build_scene(seed, index, n_samples, name)


def _box_arrays(boxes: np.ndarray):
    n = len(boxes)
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    R = np.zeros((n, 3, 3))
    R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1], R[:, 2, 2] = c, -s, s, c, 1.0
    return R, np.ascontiguousarray(boxes[:, :3]), np.ascontiguousarray(boxes[:, 3:6] / 2.0)


def _azimuth_intervals(origin, boxes):
    corners = np.stack([boxes[:, 0:2] + 0.5 * np.stack([
        sx * boxes[:, 3] * np.cos(boxes[:, 6]) - sy * boxes[:, 4] * np.sin(boxes[:, 6]),
        sx * boxes[:, 3] * np.sin(boxes[:, 6]) + sy * boxes[:, 4] * np.cos(boxes[:, 6])], axis=1)
        for sx, sy in ((1, 1), (1, -1), (-1, -1), (-1, 1))], axis=1) - origin[None, None, :2]
    center = boxes[:, 0:2] - origin[None, :2]
    az_c = np.arctan2(center[:, 1], center[:, 0])
    az = np.arctan2(corners[..., 1], corners[..., 0])
    hw = np.abs((az - az_c[:, None] + np.pi) % (2 * np.pi) - np.pi).max(axis=1) + 1e-3
    inside = np.hypot(center[:, 0], center[:, 1]) < 0.5 * np.hypot(boxes[:, 3], boxes[:, 4]) + 0.5
    hw[inside] = np.pi + 1.0
    return az_c, hw


@lru_cache(maxsize=1)
def _lidar_dirs():
    az = np.linspace(-np.pi, np.pi, LIDAR_COLUMNS, endpoint=False)
    el = LIDAR_ELEVATIONS
    A, E = np.meshgrid(az, el, indexing="xy")  # (32, cols)
    d = np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], axis=-1).reshape(-1, 3)
    ring = np.repeat(np.arange(len(el)), LIDAR_COLUMNS)
    return d, ring


def calib_lidar() -> np.ndarray:
    return make_transform(yaw_to_quat(LIDAR_YAW), LIDAR_T)


def calib_radar(ch: str) -> np.ndarray:
    t, yaw, _ = RADAR_RIG[ch]
    return make_transform(yaw_to_quat(math.radians(yaw)), t)


def calib_camera(ch: str) -> np.ndarray:
    return make_transform(camera_rotation(CAMERA_RIG[ch][3]), CAMERA_RIG[ch][4])


def intrinsics(ch: str, scale: float) -> np.ndarray:
    f, cx, cy = CAMERA_RIG[ch][:3]
    return np.array([[f * scale, 0, cx * scale], [0, f * scale, cy * scale], [0, 0, 1.0]])


def _world_boxes(scene: Scene, t: float, with_ego_body: bool):
    obj, _ = scene.boxes(t)
    parts = [obj[:, :7], scene.building_boxes()]
    if with_ego_body:
        ego = scene.ego_pose(t)
        cx, cy, cz, l, w, h = EGO_BODY
        c = transform_points(ego, np.array([[cx, cy, cz]]))[0]
        parts.append(np.array([[c[0], c[1], c[2], l, w, h, scene.theta]]))
    return obj, np.concatenate(parts, axis=0)


def _ground_refl(xy, scene: Scene) -> np.ndarray:
    out = np.empty(len(xy))
    u = scene.u
    for i in range(len(xy)):
        out[i] = rc.ground_color(xy[i, 0], xy[i, 1], scene.origin, u, scene.crosswalk_s, 2.0, 0.0)[3]
    return out


def simulate_lidar(scene: Scene, t: float, rng: np.random.Generator):
    """One LIDAR_TOP sweep at time t: (N, 5) float32 x y z intensity ring in the sensor frame, and the
    world->sensor pose T_global_lidar."""
    T_gl = scene.ego_pose(t) @ calib_lidar()
    obj, boxes = _world_boxes(scene, t, with_ego_body=True)
    n_obj, n_bld = len(obj), len(scene.buildings)
    origin = T_gl[:3, 3]
    near = np.hypot(boxes[:, 0] - origin[0], boxes[:, 1] - origin[1]) < LIDAR_RANGE + 0.5 * np.hypot(
        boxes[:, 3], boxes[:, 4])
    idx = np.flatnonzero(near)
    sub = boxes[idx]
    R, C, H = _box_arrays(sub)
    dirs_l, ring = _lidar_dirs()
    dirs = dirs_l @ T_gl[:3, :3].T
    ray_az = np.arctan2(dirs[:, 1], dirs[:, 0])
    az_c, az_hw = _azimuth_intervals(origin, sub)
    kind, ids, _rng, hit = rc.cast_rays(origin, dirs, ray_az, R, C, H, az_c, az_hw, LIDAR_RANGE, 0.02)
    owner = np.where(ids >= 0, idx[np.maximum(ids, 0)], -1)
    keep = (kind == rc.GROUND) | ((kind == rc.BOX) & (owner < n_obj + n_bld))
    keep &= rng.random(len(keep)) > 0.03  # dropouts
    kind, owner, hit, ring = kind[keep], owner[keep], hit[keep], ring[keep]
    dirs = dirs[keep]
    # range noise on ground and buildings (object hits stay on their surface, inside the box)
    stat = (kind == rc.GROUND) | (owner >= n_obj)
    hit[stat] += dirs[stat] * rng.normal(0, 0.015, (int(stat.sum()), 1))
    g = kind == rc.GROUND
    hit[g, 2] = np.minimum(hit[g, 2], -0.02)
    inten = np.empty(len(hit))
    inten[g] = _ground_refl(hit[g], scene)
    is_obj = (kind == rc.BOX) & (owner < n_obj)
    refl = np.array([CLASS_SPECS[c]["refl"] for c in CLASS_NAMES], float)
    inten[is_obj] = refl[scene.cls[owner[is_obj]]]
    inten[(kind == rc.BOX) & (owner >= n_obj)] = 30.0
    inten = np.clip(inten + rng.normal(0, 3.0, len(inten)), 0, 255).round()
    pts_s = transform_points(invert_transform(T_gl), hit)
    out = np.concatenate([pts_s, inten[:, None], ring[:, None]], axis=1).astype(np.float32)
    return out, T_gl


def _radial(vec, rhat):
    return (vec * rhat).sum(axis=-1, keepdims=True) * rhat


def simulate_radar(scene: Scene, ch: str, t: float, rng: np.random.Generator) -> np.ndarray:
    """One radar sweep: structured RADAR_DTYPE points in the sensor frame (x front, y left, z = 0)."""
    T_gr = scene.ego_pose(t) @ calib_radar(ch)
    T_rg = invert_transform(T_gr)
    obj, boxes = _world_boxes(scene, t, with_ego_body=False)
    n_obj = len(obj)
    o = T_gr[:3, 3]
    v_ego = scene.ego_velocity()
    pts, vel, cls_rcs, dyn = [], [], [], []
    # object returns: points on the near side of the footprint, at the sensor's height
    c_r = transform_points(T_rg, obj[:, :3])
    rng_r = np.hypot(c_r[:, 0], c_r[:, 1])
    az = np.arctan2(c_r[:, 1], c_r[:, 0])
    in_fov = ((np.abs(az) < RADAR_NEAR[0]) & (rng_r < RADAR_NEAR[1])) | (
        (np.abs(az) < RADAR_FAR[0]) & (rng_r < RADAR_FAR[1]))
    for i in np.flatnonzero(in_fov):
        cname = CLASS_NAMES[scene.cls[i]]
        spec = CLASS_SPECS[cname]
        if rng.random() > spec["p_radar"] * (1.0 if rng_r[i] < 40 else 0.7):
            continue
        npts = 1 + int(rng.integers(0, 3)) if obj[i, 3] > 4.0 else 1
        cy, sy = math.cos(obj[i, 6]), math.sin(obj[i, 6])
        rel = o[:2] - obj[i, :2]
        loc = np.array([rel[0] * cy + rel[1] * sy, -rel[0] * sy + rel[1] * cy])
        hl = np.maximum(obj[i, 3:5] / 2 - 0.05, 0.01)
        for _ in range(npts):
            p = np.clip(loc, -hl, hl) + rng.normal(0, 0.25, 2)
            p = np.clip(p, -hl, hl)
            w = obj[i, :2] + np.array([p[0] * cy - p[1] * sy, p[0] * sy + p[1] * cy])
            pts.append([w[0], w[1], o[2]])
            vel.append(obj[i, 7:9])
            cls_rcs.append(rng.uniform(*spec["rcs"]))
            dyn.append(0 if np.hypot(*obj[i, 7:9]) > 0.3 else 1)
    # clutter: horizontal rays against everything (buildings, objects) within the near field of view
    n_cl = int(rng.poisson(30))
    if n_cl:
        a = rng.uniform(-RADAR_NEAR[0], RADAR_NEAR[0], n_cl)
        dirs_r = np.stack([np.cos(a), np.sin(a), np.zeros(n_cl)], axis=1)
        dirs = dirs_r @ T_gr[:3, :3].T
        R, C, H = _box_arrays(boxes)
        az_c, az_hw = _azimuth_intervals(o, boxes)
        kind, ids, _r, hit = rc.cast_rays(o, dirs, np.arctan2(dirs[:, 1], dirs[:, 0]), R, C, H, az_c, az_hw,
                                          RADAR_NEAR[1], 0.05)
        for j in np.flatnonzero(kind == rc.BOX):
            b = ids[j]
            pts.append([hit[j, 0], hit[j, 1], o[2]])
            if b < n_obj:
                vel.append(obj[b, 7:9])
                cls_rcs.append(rng.uniform(*CLASS_SPECS[CLASS_NAMES[scene.cls[b]]]["rcs"]))
                dyn.append(0 if np.hypot(*obj[b, 7:9]) > 0.3 else 1)
            else:
                vel.append(np.zeros(2))
                cls_rcs.append(rng.uniform(-5, 20))
                dyn.append(1)
    out = np.zeros(len(pts), RADAR_DTYPE)
    if not pts:
        return out
    pw = np.array(pts)
    vel = np.array(vel)
    rvec = pw[:, :2] - o[None, :2]
    rhat = rvec / np.maximum(np.linalg.norm(rvec, axis=1, keepdims=True), 1e-6)
    comp = _radial(vel, rhat)                   # ego-motion compensated Doppler, world axes
    raw = _radial(vel - v_ego[None, :], rhat)   # as measured from the moving sensor
    ps = transform_points(T_rg, pw)
    Rrg = T_rg[:2, :2]
    out["x"], out["y"], out["z"] = ps[:, 0], ps[:, 1], 0.0
    out["vx_comp"], out["vy_comp"] = (comp @ Rrg.T).T
    out["vx"], out["vy"] = (raw @ Rrg.T).T
    out["rcs"] = np.round(np.array(cls_rcs) * 2) / 2
    dyn = np.array(dyn)
    approaching = (comp * rhat).sum(axis=1) < -0.3
    out["dyn_prop"] = np.where((dyn == 0) & approaching, 2, dyn)
    out["id"] = np.arange(len(pw))
    out["is_quality_valid"] = 1
    out["ambig_state"] = 3
    out["x_rms"], out["y_rms"], out["vx_rms"], out["vy_rms"] = 3, 3, 2, 2
    out["pdh0"] = 1
    # a few returns the default devkit filters reject (low-RCS / near-field artefacts)
    bad = rng.random(len(pw)) < 0.08
    out["invalid_state"] = np.where(bad, rng.choice([1, 2, 6], len(pw)), 0)
    return out


def render_view(scene: Scene, ch: str, t: float, scale: float):
    """One camera image at time t: (H, W, 3) uint8 RGB, and per-object visible / silhouette pixel counts."""
    W, H = int(round(IMAGE_W * scale)), int(round(IMAGE_H * scale))
    K = intrinsics(ch, scale)
    T_gc = scene.ego_pose(t) @ calib_camera(ch)
    obj, boxes = _world_boxes(scene, t, with_ego_body=False)
    n_obj = len(obj)
    T_cg = invert_transform(T_gc)
    corners_w = box_corners(boxes[:, :7])
    cc = transform_points(T_cg, corners_w.reshape(-1, 3)).reshape(-1, 8, 3)
    vis = (cc[:, :, 2] > 0.05).any(axis=1) & (np.hypot(*(boxes[:, :2] - T_gc[:2, 3]).T) < 250)
    idx = np.flatnonzero(vis)
    urange = np.zeros((len(idx), 2), np.int64)
    vrange = np.zeros((len(idx), 2), np.int64)
    on = np.ones(len(idx), bool)
    for k, b in enumerate(idx):
        c = cc[b]
        if (c[:, 2] <= 0.05).any():  # straddles the image plane: may cover anything
            urange[k], vrange[k] = (0, W - 1), (0, H - 1)
            continue
        uv = (c @ K.T)[:, :2] / c[:, 2:3]
        u0, u1 = math.floor(uv[:, 0].min()) - 1, math.ceil(uv[:, 0].max()) + 1
        v0, v1 = math.floor(uv[:, 1].min()) - 1, math.ceil(uv[:, 1].max()) + 1
        on[k] = u1 >= 0 and u0 <= W - 1 and v1 >= 0 and v0 <= H - 1
        urange[k] = np.clip([u0, u1], 0, W - 1)
        vrange[k] = np.clip([v0, v1], 0, H - 1)
    cols: list[list[int]] = [[] for _ in range(W)]
    for k in np.flatnonzero(on):
        for u in range(urange[k, 0], urange[k, 1] + 1):
            cols[u].append(k)
    col_ptr = np.zeros(W + 1, np.int64)
    col_ptr[1:] = np.cumsum([len(c) for c in cols])
    col_idx = np.array([k for c in cols for k in c], np.int64)
    sub = boxes[idx]
    R, C, Hh = _box_arrays(sub)
    rgb = np.zeros((len(idx), 3))
    kind = np.zeros(len(idx), np.int64)
    for k, b in enumerate(idx):
        if b < n_obj:
            cname = CLASS_NAMES[scene.cls[b]]
            rgb[k] = hue_rgb(CLASS_SPECS[cname]["hue"])
            kind[k] = 1 if cname in VEHICLES else (2 if cname == "pedestrian" else 0)
        else:
            g = scene.buildings[b - n_obj, 5]
            rgb[k] = np.array([150, 140, 128]) * (0.75 + 0.35 * g)
            kind[k] = 3
    img, visible, sil = rc.render_camera(H, W, K[0, 0], K[1, 1], K[0, 2], K[1, 2], T_gc[:3, :3].copy(),
                                         T_gc[:3, 3].copy(), R, C, Hh, col_ptr, col_idx, vrange, rgb, kind,
                                         scene.origin, scene.u, scene.crosswalk_s, 2.0, SKY_TOP, SKY_HOR, LIGHT)
    vis_full = np.zeros(n_obj, np.int64)
    sil_full = np.zeros(n_obj, np.int64)
    m = idx < n_obj
    vis_full[idx[m]] = visible[m]
    sil_full[idx[m]] = sil[m]
    return img, vis_full, sil_full



