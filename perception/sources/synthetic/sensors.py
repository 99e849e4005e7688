"""The sensor rig of the synthetic world and its simulation: lidar, radar and camera views ray-cast against
one scene's primitives (objects posed at the sensor's time, street furniture, buildings, kerbs, the sloped
ground).

What each sensor gives is what its real counterpart gives, with its real faults:
- lidar: a few cm of range noise, dropouts that depend on the surface (dark paint, glass, tyres) and the
  incidence angle, intensity from the material's reflectivity, the incidence angle and the range; in rain,
  spurious near returns and a shorter reach;
- radar: rays cast from the radar (no return from what it cannot see), returns on the visible surface with
  range and azimuth noise growing with distance, detection probability from the radar equation (RCS and
  range), RCS from size and aspect with per-return fluctuation, Doppler noise, multipath ghosts mirrored
  across walls, clutter from poles, signs, kerbs, fences and buildings, a few false moving returns, and the
  nuScenes state fields set so that the devkit's default filters mean what they mean on real data;
- cameras: shaded primitives with per-instance colours and texture grain, sun and street lights, exposure and
  white balance per camera and scene, sensor noise and mild blur; at night headlights and high noise, in rain
  lower contrast and droplets on the lens.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from perception.geometry import (
    LIDAR_TOP_T,
    invert_transform,
    make_transform,
    transform_points,
    yaw_to_quat,
)
from perception.sources import _raycast as rc
from perception.sources.files import RADAR_DTYPE
from perception.sources.synthetic.world import MAP_RES, Scene, build_scene

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
LIDAR_YAW = -math.pi / 2  # nuScenes LIDAR_TOP: x right, y forward
LIDAR_ELEVATIONS = np.deg2rad(np.linspace(-30.67, 10.67, 32))
LIDAR_COLUMNS = 1085
LIDAR_RANGE = 70.0
LIDAR_PERIOD = 0.05
LIDAR_RANGE_NOISE = 0.02   # m (1 sigma), HDL-32E class
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
RADAR_RAYS = 600            # azimuth rays over the near field of view, per elevation
EGO_BODY = (0.9, 0.0, 0.45, 4.1, 1.8, 0.9)  # centre x y z, l w h below the roof rack: rays hitting it give no return
NBINS = 1440
_SIGNS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)


def camera_rotation(yaw_deg: float) -> np.ndarray:
    """R_ego_cam for an optical camera (x right, y down, z forward) looking along ego yaw."""
    base = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ base


@lru_cache(maxsize=2)
def get_scene(seed: int, index: int, n_samples: int, name: str) -> Scene:
    return build_scene(seed, index, n_samples, name)


def calib_lidar() -> np.ndarray:
    return make_transform(yaw_to_quat(LIDAR_YAW), LIDAR_TOP_T)


def calib_radar(ch: str) -> np.ndarray:
    t, yaw, _ = RADAR_RIG[ch]
    return make_transform(yaw_to_quat(math.radians(yaw)), t)


def calib_camera(ch: str) -> np.ndarray:
    return make_transform(camera_rotation(CAMERA_RIG[ch][3]), CAMERA_RIG[ch][4])


def intrinsics(ch: str, scale: float) -> np.ndarray:
    f, cx, cy = CAMERA_RIG[ch][:3]
    return np.array([[f * scale, 0, cx * scale], [0, f * scale, cy * scale], [0, 0, 1.0]])


# ------------------------------------------------------------------------------------------------------
# Posing the primitives at time t
# ------------------------------------------------------------------------------------------------------
def _rot(yaw, pitch):
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    R = np.zeros((len(yaw), 3, 3))
    # Rz(yaw) @ Ry(pitch)
    R[:, 0, 0], R[:, 0, 1], R[:, 0, 2] = cy * cp, -sy, cy * sp
    R[:, 1, 0], R[:, 1, 1], R[:, 1, 2] = sy * cp, cy, sy * sp
    R[:, 2, 0], R[:, 2, 1], R[:, 2, 2] = -sp, 0.0, cp
    return R


def _lamp_prims(scene: Scene, boxes: np.ndarray) -> dict:
    """At night: emissive head and tail lights of vehicles and lit lamp heads; and the point lights."""
    lamps = scene.shapes["lamps"] & ~scene.parked
    idx = np.flatnonzero(lamps)
    rows = []
    lights = []
    for i in idx:
        x, y, z, l, w, h, yaw = boxes[i, :7]
        c, s = math.cos(yaw), math.sin(yaw)
        for front in (1, -1):
            for side in (-1, 1):
                lx = front * (l / 2 - 0.03)
                ly = side * (w / 2 - 0.3)
                p = (x + c * lx - s * ly, y + s * lx + c * ly, z - h * 0.2)
                col = (255, 250, 225) if front > 0 else (230, 25, 20)
                rows.append((p, (0.04, 0.12, 0.07), yaw, col))
            if front > 0:
                lights.append(((x + c * (l / 2 + 3.0), y + s * (l / 2 + 3.0), z), (0.8, 0.78, 0.7)))
    return dict(rows=rows, lights=lights)


def world_prims(scene: Scene, t: float, with_ego_body: bool = False, night_lamps: bool = False):
    """Every primitive at time t: dict of R (P, 3, 3), center, half, rgb, rgb2, kind, refl, drop, rcs,
    owner (object index, -1 static, -2 ego body); plus the object boxes (N, 9) and moving flags."""
    boxes, moving = scene.boxes(t)
    op = scene.shapes["prims"]
    own = op["owner"]
    lwh = boxes[own, 3:6]
    loc = op["center"] * lwh
    half = op["half"] * lwh
    # walking: legs and arms swing with the distance walked
    speed = np.hypot(boxes[own, 7], boxes[own, 8])
    phase = np.sin(2 * np.pi * t * speed / 1.3)
    swing = np.where(op["anim"] == 1, 0.25, np.where(op["anim"] == 2, -0.25, np.where(
        op["anim"] == 3, -0.2, np.where(op["anim"] == 4, 0.2, 0.0)))) * phase * (speed > 0.3)
    loc[:, 0] += swing * lwh[:, 0]
    yaw_o = boxes[own, 6]
    c, s = np.cos(yaw_o), np.sin(yaw_o)
    center = boxes[own, :3] + np.stack([c * loc[:, 0] - s * loc[:, 1], s * loc[:, 0] + c * loc[:, 1], loc[:, 2]], 1)
    R_o = _rot(yaw_o + op["yaw"], op["pitch"])
    sp = scene.statics["prims"]
    if "R" not in sp:
        sp["R"] = _rot(sp["yaw"], sp["pitch"])
    R_s, C_s, H_s = sp["R"], sp["center"], sp["half"]
    parts = dict(R=[R_o, R_s], center=[center, C_s], half=[half, H_s], rgb=[op["rgb"], sp["rgb"]],
                 rgb2=[op["rgb2"], sp["rgb2"]], kind=[op["kind"], sp["kind"]], refl=[op["refl"], sp["refl"]],
                 drop=[op["drop"], sp["drop"]], rcs=[np.full(len(own), -30.0), sp["rcs"]],
                 owner=[own, np.full(len(sp["yaw"]), -1)])
    lights = scene.statics["lights"]
    light_col = np.tile([[0.9, 0.75, 0.5]], (len(lights), 1))
    if night_lamps and scene.night:
        extra = _lamp_prims(scene, boxes)
        if extra["rows"]:
            n = len(extra["rows"])
            parts["R"].append(_rot(np.array([r[2] for r in extra["rows"]]), np.zeros(n)))
            parts["center"].append(np.array([r[0] for r in extra["rows"]]))
            parts["half"].append(np.array([r[1] for r in extra["rows"]]))
            parts["rgb"].append(np.array([r[3] for r in extra["rows"]], float))
            parts["rgb2"].append(np.array([r[3] for r in extra["rows"]], float))
            parts["kind"].append(np.full(n, rc.EMISSIVE))
            parts["refl"].append(np.full(n, 60.0))
            parts["drop"].append(np.zeros(n))
            parts["rcs"].append(np.full(n, -30.0))
            parts["owner"].append(np.full(n, -1))
        if extra["lights"]:
            lights = np.concatenate([lights, np.array([p for p, _ in extra["lights"]])])
            light_col = np.concatenate([light_col, np.array([col for _, col in extra["lights"]])])
    if with_ego_body:
        ego = scene.ego_pose(t)
        cx, cy, cz, l, w, h = EGO_BODY
        cc = transform_points(ego, np.array([[cx, cy, cz]]))
        yaw = math.atan2(ego[1, 0], ego[0, 0])
        parts["R"].append(_rot(np.array([yaw]), np.zeros(1)))
        parts["center"].append(cc)
        parts["half"].append(np.array([[l / 2, w / 2, h / 2]]))
        for k, v in (("rgb", np.zeros((1, 3))), ("rgb2", np.zeros((1, 3))), ("kind", np.zeros(1, np.int64)),
                     ("refl", np.zeros(1)), ("drop", np.zeros(1)), ("rcs", np.full(1, -30.0)),
                     ("owner", np.full(1, -2))):
            parts[k].append(v)
    out = {k: np.ascontiguousarray(np.concatenate(v)) for k, v in parts.items()}
    out["kind"] = out["kind"].astype(np.int64)
    out["owner"] = out["owner"].astype(np.int64)
    out["lights"] = np.ascontiguousarray(lights.reshape(-1, 3), dtype=np.float64)
    out["light_col"] = np.ascontiguousarray(light_col.reshape(-1, 3), dtype=np.float64)
    return out, boxes, moving


def _cast(scene: Scene, origin, dirs, prims, max_range):
    ptr, idx = rc.azimuth_bins(origin, prims["center"], prims["half"], NBINS, max_range)
    plane = np.array(scene.ground, float)
    return rc.cast_rays(origin, dirs, prims["R"], prims["center"], prims["half"], ptr, idx, NBINS, plane,
                        max_range)


def _normals(prims, pid, face):
    axis = face // 2
    sign = np.where(face % 2 == 1, 1.0, -1.0)
    return prims["R"][pid, :, axis] * sign[:, None]


# ------------------------------------------------------------------------------------------------------
# Lidar
# ------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _lidar_dirs():
    az = np.linspace(-np.pi, np.pi, LIDAR_COLUMNS, endpoint=False)
    el = LIDAR_ELEVATIONS
    A, E = np.meshgrid(az, el, indexing="xy")  # (32, cols)
    d = np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], axis=-1).reshape(-1, 3)
    ring = np.repeat(np.arange(len(el)), LIDAR_COLUMNS)
    return d, ring


def ground_refl(scene: Scene, xy: np.ndarray) -> np.ndarray:
    tex = scene.texture["refl"]
    col = np.clip((xy[:, 0] / MAP_RES).astype(int), 0, tex.shape[1] - 1)
    row = np.clip((xy[:, 1] / MAP_RES).astype(int), 0, tex.shape[0] - 1)
    return tex[row, col].astype(float)


def simulate_lidar(scene: Scene, t: float, rng: np.random.Generator):
    """One LIDAR_TOP sweep at time t: (N, 5) float32 x y z intensity ring in the sensor frame, and the
    world->sensor pose T_global_lidar."""
    T_gl = scene.ego_pose(t) @ calib_lidar()
    prims, _, _ = world_prims(scene, t, with_ego_body=True)
    origin = T_gl[:3, 3].copy()
    dirs_l, ring = _lidar_dirs()
    dirs = np.ascontiguousarray(dirs_l @ T_gl[:3, :3].T)
    reach = LIDAR_RANGE * (0.8 if scene.rain else 1.0)
    kind, pid, rng_t, face = _cast(scene, origin, dirs, prims, reach)
    hit_prim = kind == rc.PRIM
    ego_body = np.zeros(len(kind), bool)
    ego_body[hit_prim] = prims["owner"][pid[hit_prim]] == -2
    keep = (kind != rc.SKY) & ~ego_body
    idx = np.flatnonzero(keep)
    kind, pid, r, face, d = kind[idx], pid[idx], rng_t[idx], face[idx], dirs[idx]
    ring = ring[idx]
    n = len(idx)
    normal = np.tile(np.array([-scene.ground[0], -scene.ground[1], 1.0]), (n, 1))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    on_p = kind == rc.PRIM
    if on_p.any():
        normal[on_p] = _normals(prims, pid[on_p].astype(np.int64), face[on_p].astype(np.int64))
    cos_i = np.clip(np.abs((normal * d).sum(axis=1)), 0.02, 1.0)
    hit = origin[None] + d * r[:, None]
    refl = np.empty(n)
    drop = np.full(n, 0.015)
    g = ~on_p
    refl[g] = ground_refl(scene, hit[g, :2])
    refl[on_p] = prims["refl"][pid[on_p]]
    drop[on_p] += prims["drop"][pid[on_p]]
    # grazing incidence and range make weak echoes; rain absorbs
    drop += 0.25 * (1 - cos_i) ** 4 + 0.10 * (r / LIDAR_RANGE) ** 2
    if scene.rain:
        drop += 0.25 * (r / reach) ** 2
    keep = rng.random(n) > np.clip(drop, 0, 0.95)
    # range noise along the ray
    r_noisy = r + rng.normal(0, LIDAR_RANGE_NOISE, n) * (1 + r / 60.0)
    hit = origin[None] + d * r_noisy[:, None]
    inten = refl * (0.35 + 0.65 * cos_i) * (1.0 - 0.25 * r / LIDAR_RANGE) * rng.lognormal(0, 0.15, n)
    inten = np.clip(inten, 0, 255)
    hit, inten, ring = hit[keep], inten[keep], ring[keep]
    if scene.rain:  # spray and drops: spurious near returns
        m = int(rng.poisson(250))
        a = rng.uniform(-np.pi, np.pi, m)
        e = rng.choice(LIDAR_ELEVATIONS, m)
        rr = rng.uniform(0.8, 5.0, m)
        dd = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], 1) @ T_gl[:3, :3].T
        hit = np.concatenate([hit, origin[None] + dd * rr[:, None]])
        inten = np.concatenate([inten, rng.uniform(0, 6, m)])
        ring = np.concatenate([ring, np.searchsorted(LIDAR_ELEVATIONS, e)])
    pts_s = transform_points(invert_transform(T_gl), hit)
    out = np.concatenate([pts_s, np.round(inten)[:, None], ring[:, None]], axis=1).astype(np.float32)
    return out, T_gl


# ------------------------------------------------------------------------------------------------------
# Radar
# ------------------------------------------------------------------------------------------------------
def _object_rcs(boxes, i, rhat, rcs_k):
    """RCS (dBsm) of object i seen along rhat: its silhouette area (front to side with the aspect) scaled by
    how reflective it is (metal bodies ~1, bicycles 0.25, people 0.08, cones 0.05)."""
    l, w, h, yaw = boxes[i, 3], boxes[i, 4], boxes[i, 5], boxes[i, 6]
    side = abs(math.sin(math.atan2(rhat[1], rhat[0]) - yaw))
    area = (w * (1 - side) + l * side) * h
    return 10 * math.log10(max(2.0 * rcs_k[i] * area, 1e-4))


def simulate_radar(scene: Scene, ch: str, t: float, rng: np.random.Generator) -> np.ndarray:
    """One radar sweep: structured RADAR_DTYPE points in the sensor frame (x front, y left, z = 0)."""
    T_gr = scene.ego_pose(t) @ calib_radar(ch)
    T_rg = invert_transform(T_gr)
    prims, boxes, moving = world_prims(scene, t)
    o = T_gr[:3, 3].copy()
    # the radar's own velocity: the ego's plus the yaw rate's share at the mounting point
    w = scene.ego_yaw_rate(t)
    arm = o[:2] - scene.ego_pose(t)[:2, 3]
    v_ego = scene.ego_velocity(t) + w * np.array([-arm[1], arm[0]])
    rcs_k = scene.shapes["rcs_k"]
    az = np.linspace(-RADAR_NEAR[0], RADAR_NEAR[0], RADAR_RAYS)
    el = np.radians([-2.5, 0.0, 2.5])
    A, E = np.meshgrid(az, el)
    dr = np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], -1).reshape(-1, 3)
    dirs = np.ascontiguousarray(dr @ T_gr[:3, :3].T)
    far = np.abs(A.reshape(-1)) < RADAR_FAR[0]
    kind, pid, r, face = _cast(scene, o, dirs, prims, RADAR_FAR[1])
    ok = (kind == rc.PRIM) & ((r < RADAR_NEAR[1]) | far)
    # group the hits per reflector: an object, or a 3 m chunk of a static structure
    pid = pid.astype(np.int64)
    pts, vel, rcs, kinds = [], [], [], []
    groups: dict = {}
    for j in np.flatnonzero(ok):
        p = pid[j]
        own = prims["owner"][p]
        hit = o + dirs[j] * r[j]
        key = ("o", int(own)) if own >= 0 else ("s", int(p), int(hit[0] // 3), int(hit[1] // 3))
        groups.setdefault(key, []).append((hit, p, r[j]))
    walls = []
    for key, hits in groups.items():
        hit, p, rr = hits[int(rng.integers(0, len(hits)))]
        rhat = (hit[:2] - o[:2]) / max(1e-6, float(np.hypot(*(hit[:2] - o[:2]))))
        if key[0] == "o":
            i = key[1]
            sigma = _object_rcs(boxes, i, rhat, rcs_k) + rng.normal(0, 4.0)
            v = boxes[i, 7:9]
        else:
            sigma = prims["rcs"][p] + rng.normal(0, 3.0)
            v = np.zeros(2)
            if prims["half"][p, 2] > 2.5 and prims["half"][p, 0] > 4:
                walls.append((hit, p))
        # radar equation: SNR falls with range^4; detection probability from the SNR margin
        snr = sigma - 40 * math.log10(max(rr, 1.0) / 20.0) + 6.0
        p_det = 1 / (1 + math.exp(-(snr - 3.0) / 2.5))
        n_ret = 1 + (int(rng.random() < 0.4) if sigma > 12 and rr < 30 else 0)
        for _ in range(n_ret):
            if rng.random() > p_det:
                continue
            h2 = hits[int(rng.integers(0, len(hits)))][0]
            pts.append(h2[:2].copy())
            vel.append(v.copy())
            rcs.append(sigma)
            kinds.append(0 if key[0] == "o" else 1)
    # multipath ghosts: an object's return mirrored across a wall between it and the radar
    for k in range(len(pts)):
        if kinds[k] != 0 or not walls or rng.random() > 0.12:
            continue
        wh, wp = walls[int(rng.integers(0, len(walls)))]
        R = prims["R"][wp]
        n = R[:2, 1] / max(1e-9, np.linalg.norm(R[:2, 1]))
        dist = float(np.dot(pts[k] - wh[:2], n))
        ghost = pts[k] - 2 * dist * n
        if np.hypot(*(ghost - o[:2])) > np.hypot(*(wh[:2] - o[:2])):
            pts.append(ghost)
            vel.append(vel[k] - 2 * np.dot(vel[k], n) * n)
            rcs.append(rcs[k] - rng.uniform(6, 12))
            kinds.append(2)
    # false moving returns: clutter with a spurious Doppler
    for _ in range(int(rng.poisson(1.5))):
        a = rng.uniform(-RADAR_NEAR[0], RADAR_NEAR[0])
        rr = rng.uniform(5, RADAR_NEAR[1])
        d = T_gr[:2, :2] @ np.array([math.cos(a), math.sin(a)])
        pts.append(o[:2] + d * rr)
        vel.append(rng.normal(0, 4, 2))
        rcs.append(rng.normal(-5, 4))
        kinds.append(3)
    out = np.zeros(len(pts), RADAR_DTYPE)
    if not pts:
        return out
    pw = np.array(pts)
    vel = np.array(vel)
    kinds = np.array(kinds)
    # measurement noise: range and azimuth, growing with distance
    rvec = pw - o[None, :2]
    rng_m = np.linalg.norm(rvec, axis=1)
    azm = np.arctan2(rvec[:, 1], rvec[:, 0])
    rng_m = rng_m + rng.normal(0, 1, len(pw)) * (0.1 + 0.004 * rng_m)
    azm = azm + rng.normal(0, 1, len(pw)) * np.radians(0.3 + 0.01 * rng_m)
    pw = o[None, :2] + np.stack([np.cos(azm), np.sin(azm)], 1) * rng_m[:, None]
    rhat = np.stack([np.cos(azm), np.sin(azm)], 1)
    radial = (vel * rhat).sum(1) + rng.normal(0, 0.12, len(pw))       # ego-motion compensated
    raw = radial - (v_ego[None] * rhat).sum(1)                          # as measured from the moving sensor
    comp_v = radial[:, None] * rhat
    raw_v = raw[:, None] * rhat
    ps = transform_points(T_rg, np.concatenate([pw, np.full((len(pw), 1), o[2])], 1))
    Rrg = T_rg[:2, :2]
    out["x"], out["y"], out["z"] = ps[:, 0], ps[:, 1], 0.0
    out["vx_comp"], out["vy_comp"] = (comp_v @ Rrg.T).T
    out["vx"], out["vy"] = (raw_v @ Rrg.T).T
    out["rcs"] = np.round(np.array(rcs) * 2) / 2
    moving_r = np.abs(radial) > 0.6
    approaching = radial < -0.6
    stationary = np.where(rng.random(len(pw)) < 0.85, 1, 3)   # stationary / stationary candidate
    out["dyn_prop"] = np.where(moving_r, np.where(approaching, 2, 0), stationary)
    out["dyn_prop"] = np.where((~moving_r) & (kinds == 0) & (rng.random(len(pw)) < 0.1), 7, out["dyn_prop"])
    out["id"] = np.arange(len(pw))
    out["is_quality_valid"] = 1
    # ambiguity: most returns unambiguous (3); weak far ones and ghosts less often
    amb_p = 0.04 + 0.2 * (kinds >= 2) + 0.1 * (rng_m > 60)
    out["ambig_state"] = np.where(rng.random(len(pw)) < amb_p, rng.choice([1, 2, 4], len(pw)), 3)
    weak = np.array(rcs) < -8
    inv_p = 0.05 + 0.25 * weak + 0.3 * (rng_m < 2.0)
    out["invalid_state"] = np.where(rng.random(len(pw)) < inv_p, rng.choice([1, 2, 6, 8, 16], len(pw)), 0)
    out["pdh0"] = np.clip(1 + (kinds >= 2) * rng.integers(2, 6, len(pw)) + weak, 1, 7)
    out["x_rms"] = np.clip(np.round(rng_m / 10), 1, 20)
    out["y_rms"] = np.clip(np.round(rng_m / 8), 1, 20)
    out["vx_rms"], out["vy_rms"] = 3, 3
    return out


# ------------------------------------------------------------------------------------------------------
# Cameras
# ------------------------------------------------------------------------------------------------------
def camera_look(scene: Scene, ch: str) -> tuple[np.ndarray, float]:
    """Per camera white balance (RGB gains) and exposure, fixed per scene and camera."""
    r = np.random.default_rng([scene.seed, scene.index, 31, list(CAMERA_RIG).index(ch)])
    wb = np.array([r.uniform(0.9, 1.1), 1.0, r.uniform(0.88, 1.12)])
    return wb, float(scene.looks["gain"] * r.uniform(0.85, 1.15))


def render_view(scene: Scene, ch: str, t: float, scale: float, rng: np.random.Generator | None = None,
                want_maps: bool = False, cull: bool = True):
    """One camera image at time t: (H, W, 3) uint8 RGB, per-object visible / silhouette pixel counts and,
    with want_maps, the depth (m along the optical axis, 0 = sky) and object-id maps of the clean render."""
    W, H = int(round(IMAGE_W * scale)), int(round(IMAGE_H * scale))
    K = intrinsics(ch, scale)
    T_gc = scene.ego_pose(t) @ calib_camera(ch)
    prims, boxes, _ = world_prims(scene, t, night_lamps=True)
    n_obj = len(boxes)
    T_cg = invert_transform(T_gc)
    o = T_gc[:3, 3]
    P = len(prims["center"])
    unit = _SIGNS[None] * prims["half"][:, None]
    corners_w = prims["center"][:, None] + np.einsum("pij,pkj->pki", prims["R"], unit)
    cc = transform_points(T_cg, corners_w.reshape(-1, 3)).reshape(P, 8, 3)
    near = np.hypot(prims["center"][:, 0] - o[0], prims["center"][:, 1] - o[1]) < 250
    in_front = (cc[:, :, 2] > 0.05).any(axis=1) & near
    urange = np.zeros((P, 2), np.int64)
    vrange = np.zeros((P, 2), np.int64)
    on = in_front.copy()
    straddle = (cc[:, :, 2] <= 0.05).any(axis=1) & in_front
    z = np.maximum(cc[:, :, 2], 0.05)
    uv = np.einsum("ij,pkj->pki", K, cc)[:, :, :2] / z[:, :, None]
    u0 = np.floor(uv[:, :, 0].min(1)) - 1
    u1 = np.ceil(uv[:, :, 0].max(1)) + 1
    v0 = np.floor(uv[:, :, 1].min(1)) - 1
    v1 = np.ceil(uv[:, :, 1].max(1)) + 1
    on &= (u1 >= 0) & (u0 <= W - 1) & (v1 >= 0) & (v0 <= H - 1) | straddle
    urange[:, 0], urange[:, 1] = np.clip(u0, 0, W - 1), np.clip(u1, 0, W - 1)
    vrange[:, 0], vrange[:, 1] = np.clip(v0, 0, H - 1), np.clip(v1, 0, H - 1)
    urange[straddle] = (0, W - 1)
    vrange[straddle] = (0, H - 1)
    col_ptr, col_idx = rc.column_lists(W, urange, on)
    lights, lcol = prims["lights"], prims["light_col"]
    if len(lights):
        sel = np.argsort(np.hypot(lights[:, 0] - o[0], lights[:, 1] - o[1]))[:24]
        lights, lcol = np.ascontiguousarray(lights[sel]), np.ascontiguousarray(lcol[sel])
    if not scene.night:  # street lights and headlights are off by day
        lights, lcol = np.zeros((0, 3)), np.zeros((0, 3))
    lk = scene.looks
    img, visible, sil, depth, idmap = rc.render_camera(
        H, W, K[0, 0], K[1, 1], K[0, 2], K[1, 2], T_gc[:3, :3].copy(), o.copy(), prims["R"], prims["center"],
        prims["half"], col_ptr, col_idx, vrange, prims["rgb"], prims["rgb2"], prims["kind"], prims["owner"],
        max(n_obj, 1), np.array(scene.ground, float), scene.texture["rgb"], MAP_RES, lights, lcol,
        lk["sun"], lk["sun_k"], lk["ambient"], lk["sky_top"], lk["sky_hor"], lk["fog"], want_maps, cull)
    rng = rng if rng is not None else np.random.default_rng([scene.seed, scene.index, 37, int(round(t * 1000)) + 10**6])
    img = _camera_pipeline(scene, ch, img, rng, scale)
    vis_full = np.zeros(n_obj, np.int64)
    sil_full = np.zeros(n_obj, np.int64)
    vis_full[:] = visible[:n_obj]
    sil_full[:] = sil[:n_obj]
    if want_maps:
        return img, vis_full, sil_full, depth, idmap
    return img, vis_full, sil_full


def _camera_pipeline(scene: Scene, ch: str, img: np.ndarray, rng, scale: float) -> np.ndarray:
    """Exposure, white balance, rain, blur, noise and tone: the rendered radiance to an 8-bit image."""
    wb, gain = camera_look(scene, ch)
    x = img * (gain * wb)[None, None, :].astype(np.float32)
    H, W = x.shape[:2]
    if scene.rain:
        mean = x.mean(axis=(0, 1), keepdims=True)
        x = 0.65 * x + 0.35 * mean  # contrast loss
        for _ in range(int(rng.integers(6, 16))):  # droplets on the lens: blurred, brightened discs
            cx, cy = int(rng.integers(0, W)), int(rng.integers(0, H))
            rad = max(2, int(rng.uniform(8, 30) * scale * 2))
            y0, y1, x0, x1 = max(0, cy - rad), min(H, cy + rad), max(0, cx - rad), min(W, cx + rad)
            if y1 - y0 < 3 or x1 - x0 < 3:
                continue
            patch = cv2.GaussianBlur(x[y0:y1, x0:x1], (0, 0), rad / 2.0)
            yy, xx = np.mgrid[y0:y1, x0:x1]
            m = (((yy - cy) ** 2 + (xx - cx) ** 2) < rad * rad)[..., None]
            x[y0:y1, x0:x1] = np.where(m, patch * 1.08, x[y0:y1, x0:x1])
    sigma = 0.5 + 0.5 * scale
    x = cv2.GaussianBlur(x, (0, 0), sigma)
    noise = scene.looks["noise"] * (1.0 + 0.5 * rng.random())
    x = x + rng.normal(0, noise, x.shape).astype(np.float32)
    # a soft shoulder instead of hard clipping
    x = 255.0 * (1.0 - np.exp(-np.clip(x, 0, None) / 210.0)) / (1.0 - math.exp(-255.0 / 210.0))
    return np.clip(x, 0, 255).astype(np.uint8)
