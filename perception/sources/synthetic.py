"""The synthetic world: a small driving world written as an exact nuScenes dataroot.

An ego vehicle drives a straight multi-lane road between buildings; objects of all 10 detection classes
move on it (lanes, bike lanes, parking lanes, sidewalks, a crosswalk and a construction zone). Sensors are
simulated from one geometry: LIDAR_TOP (32 beams, 20 Hz) and the 6 cameras are ray-cast against the same
boxes (``_raycast``), the 5 radars return points on the same boxes with Doppler consistent with their
velocities. Annotations, point counts and visibility come from the generated data.

``generate(out, scenes, samples, seed)`` writes ``v1.0-mini`` (or ``v1.0-trainval`` past 10 scenes) tables,
``samples/``, ``sweeps/`` and ``maps/``; scenes are named after the official mini split so the devkit's split
logic and DetectionEval work unchanged. Everything is a pure function of the seed: same seed, same bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from perception.geometry import (
    box_corners,
    invert_transform,
    make_transform,
    matrix_to_quat,
    points_in_boxes,
    transform_points,
    yaw_to_quat,
)
from perception.sources import _raycast as rc
from perception.sources.files import RADAR_DTYPE, write_lidar_bin, write_radar_pcd
from perception.types.frame import CAMERAS, LIDAR, RADARS

# ------------------------------------------------------------------------------------------------------
# Classes: nuScenes category, mean size (w, l, h), camera hue (degrees), lidar reflectivity, radar RCS (dBsm)
# and radar detection probability. Hues are >= 25 degrees apart so a camera-only model can tell them apart.
# ------------------------------------------------------------------------------------------------------
CLASS_SPECS: dict[str, dict] = {
    "car": dict(category="vehicle.car", wlh=(1.95, 4.6, 1.73), hue=0, refl=35, rcs=(5, 15), p_radar=0.9),
    "truck": dict(category="vehicle.truck", wlh=(2.5, 6.9, 2.8), hue=230, refl=40, rcs=(15, 25), p_radar=0.95),
    "construction_vehicle": dict(category="vehicle.construction", wlh=(2.8, 6.4, 3.2), hue=55, refl=45,
                                 rcs=(15, 25), p_radar=0.95),
    "bus": dict(category="vehicle.bus.rigid", wlh=(2.95, 11.0, 3.5), hue=130, refl=40, rcs=(18, 28),
                p_radar=0.95),
    "trailer": dict(category="vehicle.trailer", wlh=(2.9, 12.0, 3.9), hue=275, refl=40, rcs=(15, 25),
                    p_radar=0.95),
    "barrier": dict(category="movable_object.barrier", wlh=(2.5, 0.5, 1.0), hue=85, refl=60, rcs=(0, 5),
                    p_radar=0.5),
    "motorcycle": dict(category="vehicle.motorcycle", wlh=(0.8, 2.1, 1.5), hue=200, refl=30, rcs=(0, 6),
                       p_radar=0.7),
    "bicycle": dict(category="vehicle.bicycle", wlh=(0.6, 1.7, 1.3), hue=315, refl=25, rcs=(-5, 3),
                    p_radar=0.5),
    "pedestrian": dict(category="human.pedestrian.adult", wlh=(0.67, 0.73, 1.77), hue=175, refl=20,
                       rcs=(-8, 0), p_radar=0.5),
    "traffic_cone": dict(category="movable_object.trafficcone", wlh=(0.41, 0.41, 1.07), hue=30, refl=80,
                         rcs=(-10, -4), p_radar=0.3),
}
CLASS_NAMES = tuple(CLASS_SPECS)
VEHICLES = ("car", "truck", "construction_vehicle", "bus", "trailer")

ALL_CATEGORIES = (
    ("animal", "All animals, e.g. cats, rats, dogs, deer, birds."),
    ("human.pedestrian.adult", "Adult subcategory."),
    ("human.pedestrian.child", "Child subcategory."),
    ("human.pedestrian.construction_worker", "Construction worker"),
    ("human.pedestrian.personal_mobility", "A small electric or self-propelled vehicle."),
    ("human.pedestrian.police_officer", "Police officer."),
    ("human.pedestrian.stroller", "Strollers."),
    ("human.pedestrian.wheelchair", "Wheelchairs."),
    ("movable_object.barrier", "Temporary road barrier placed in the scene in order to redirect traffic."),
    ("movable_object.debris", "Movable object that is left on the driveable surface."),
    ("movable_object.pushable_pullable", "Objects that a pedestrian may push or pull."),
    ("movable_object.trafficcone", "All types of traffic cone."),
    ("static_object.bicycle_rack", "Area or device intended to park or secure the bicycles in a row."),
    ("vehicle.bicycle", "Human or electric powered 2-wheeled vehicle designed to travel at lower speeds."),
    ("vehicle.bus.bendy", "Bendy bus subcategory."),
    ("vehicle.bus.rigid", "Rigid bus subcategory."),
    ("vehicle.car", "Vehicle designed primarily for personal use."),
    ("vehicle.construction", "Vehicles primarily designed for construction."),
    ("vehicle.emergency.ambulance", "All types of ambulances."),
    ("vehicle.emergency.police", "All types of police vehicles."),
    ("vehicle.motorcycle", "Gasoline or electric powered 2-wheeled vehicle designed to move rapidly."),
    ("vehicle.trailer", "Any vehicle trailer, both for trucks, cars and bikes."),
    ("vehicle.truck", "Vehicles primarily designed to haul cargo."),
)
ATTRIBUTE_DESCRIPTIONS = {
    "vehicle.moving": "Vehicle is moving.",
    "vehicle.stopped": "Vehicle, with a driver/rider in/on it, is currently stationary but has an intent to move.",
    "vehicle.parked": "Vehicle is stationary (usually for longer duration) with no immediate intent to move.",
    "cycle.with_rider": "There is a rider on the bicycle or motorcycle.",
    "cycle.without_rider": "There is NO rider on the bicycle or motorcycle.",
    "pedestrian.moving": "The human is moving.",
    "pedestrian.standing": "The human is standing.",
    "pedestrian.sitting_lying_down": "The human is sitting or lying down.",
}
VISIBILITY = (("1", "v0-40", "visibility of whole object is between 0 and 40%"),
              ("2", "v40-60", "visibility of whole object is between 40 and 60%"),
              ("3", "v60-80", "visibility of whole object is between 60 and 80%"),
              ("4", "v80-100", "visibility of whole object is between 80 and 100%"))

MINI_TRAIN = ("scene-0061", "scene-0553", "scene-0655", "scene-0757", "scene-0796", "scene-1077", "scene-1094",
              "scene-1100")
MINI_VAL = ("scene-0103", "scene-0916")

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
SAMPLE_PERIOD = 0.5
EGO_BODY = (0.9, 0.0, 0.45, 4.1, 1.8, 0.9)  # centre x y z, l w h below the roof rack: rays hitting it give no return
MAP_RES = 0.1
SKY_TOP = np.array([150.0, 168.0, 196.0])
SKY_HOR = np.array([200.0, 204.0, 210.0])
LIGHT = np.array([0.35, 0.45, 0.82]) / np.linalg.norm([0.35, 0.45, 0.82])


def camera_rotation(yaw_deg: float) -> np.ndarray:
    """R_ego_cam for an optical camera (x right, y down, z forward) looking along ego yaw."""
    base = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ base


def hue_rgb(hue_deg: float, sat: float = 0.85, val: float = 0.85) -> np.ndarray:
    hsv = np.array([[[hue_deg / 2.0, sat * 255, val * 255]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)


def token(*parts) -> str:
    """Deterministic 32-hex token, like nuScenes'."""
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


# ------------------------------------------------------------------------------------------------------
# Scene content
# ------------------------------------------------------------------------------------------------------
@dataclass
class Scene:
    index: int
    name: str
    seed: int
    n_samples: int
    theta: float               # road heading in the world
    origin: np.ndarray         # road origin (world xy), s = 0 at t = 0 for the ego
    v_ego: float
    # objects (road frame): class, size wlh, s0, vs, d0, vd, t_cross (2,), yaw_rel, rider flag, lane kind
    cls: np.ndarray
    wlh: np.ndarray
    s0: np.ndarray
    vs: np.ndarray
    d0: np.ndarray
    vd: np.ndarray
    tc: np.ndarray
    yaw_rel: np.ndarray
    rider: np.ndarray
    parked: np.ndarray
    buildings: np.ndarray      # (NB, 6): s_center, d_center, l, w, h, gray
    crosswalk_s: float
    map_size: tuple[int, int]  # (width px, height px)

    @property
    def u(self) -> np.ndarray:
        return np.array([math.cos(self.theta), math.sin(self.theta)])

    def road_to_world(self, s, d) -> np.ndarray:
        u = self.u
        n = np.array([-u[1], u[0]])
        return self.origin + np.asarray(s)[..., None] * u + np.asarray(d)[..., None] * n

    def ego_pose(self, t: float) -> np.ndarray:
        xy = self.road_to_world(self.v_ego * t, -1.5)
        return make_transform(yaw_to_quat(self.theta), [xy[0], xy[1], 0.0])

    def ego_velocity(self) -> np.ndarray:
        return self.v_ego * self.u

    def boxes(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(N, 9) world boxes x y z l w h yaw vx vy at time t, and (N,) moving flags."""
        tt = np.clip(t - self.tc[:, 0], 0.0, self.tc[:, 1] - self.tc[:, 0])
        crossing = (t > self.tc[:, 0]) & (t < self.tc[:, 1])
        s = self.s0 + self.vs * t
        d = self.d0 + self.vd * tt
        xy = self.road_to_world(s, d)
        vd_now = np.where(crossing, self.vd, 0.0)
        u = self.u
        n = np.array([-u[1], u[0]])
        vel = self.vs[:, None] * u + vd_now[:, None] * n
        yaw = (self.theta + self.yaw_rel + np.pi) % (2 * np.pi) - np.pi
        out = np.zeros((len(self.cls), 9))
        out[:, 0:2] = xy
        out[:, 2] = self.wlh[:, 2] / 2.0
        out[:, 3] = self.wlh[:, 1]
        out[:, 4] = self.wlh[:, 0]
        out[:, 5] = self.wlh[:, 2]
        out[:, 6] = yaw
        out[:, 7:9] = vel
        return out, np.hypot(vel[:, 0], vel[:, 1]) > 0.3

    def attributes(self, t: float) -> list[str]:
        _, moving = self.boxes(t)
        out = []
        for i, c in enumerate(self.cls):
            c = CLASS_NAMES[c]
            if c in VEHICLES:
                out.append("vehicle.moving" if moving[i] else ("vehicle.parked" if self.parked[i]
                                                                else "vehicle.stopped"))
            elif c in ("bicycle", "motorcycle"):
                out.append("cycle.with_rider" if self.rider[i] else "cycle.without_rider")
            elif c == "pedestrian":
                out.append("pedestrian.moving" if moving[i] else "pedestrian.standing")
            else:
                out.append("")
        return out

    def building_boxes(self) -> np.ndarray:
        b = self.buildings
        xy = self.road_to_world(b[:, 0], b[:, 1])
        out = np.zeros((len(b), 7))
        out[:, 0:2] = xy
        out[:, 2] = b[:, 4] / 2
        out[:, 3] = b[:, 2]
        out[:, 4] = b[:, 3]
        out[:, 5] = b[:, 4]
        out[:, 6] = self.theta
        return out


def scene_names(n: int) -> tuple[list[str], str]:
    """Scene names for n scenes and the version they belong to (official split names)."""
    if n <= 10:
        n_val = 0 if n == 1 else max(1, round(n * 0.2))
        return list(MINI_TRAIN[: n - n_val]) + list(MINI_VAL[:n_val]), "v1.0-mini"
    from nuscenes.utils import splits

    n_val = max(1, round(n * 0.2))
    return list(splits.train[: n - n_val]) + list(splits.val[:n_val]), "v1.0-trainval"


class _Placer:
    """Collects objects in road coordinates."""

    def __init__(self, rng):
        self.rng = rng
        self.rows: list[tuple] = []

    def add(self, cls, s0, d0, vs=0.0, vd=0.0, tc=(1e9, 1e9), yaw_rel=0.0, rider=False, parked=False, wlh=None):
        spec = CLASS_SPECS[cls]
        if wlh is None:
            wlh = np.array(spec["wlh"]) * self.rng.uniform(0.92, 1.08, 3)
            if rider and cls in ("bicycle", "motorcycle"):
                wlh[2] = self.rng.uniform(1.6, 1.8)
        self.rows.append((CLASS_NAMES.index(cls), wlh, s0, vs, d0, vd, tc, yaw_rel, rider, parked))
        return wlh

    def fill_lane(self, s_lo, s_hi, d, speed, mix, gap=(8.0, 25.0), parked=False):
        """Fill a lane with units (a vehicle, or a truck pulling a trailer) that never overlap: every unit
        takes the span [cursor, cursor + length] and all move at the lane's speed."""
        cursor = s_lo + self.rng.uniform(0, gap[1])
        classes = list(mix)
        p = np.array(list(mix.values())) / sum(mix.values())
        while cursor < s_hi:
            cls = str(self.rng.choice(classes, p=p))
            yaw = 0.0 if speed >= 0 else math.pi
            rider = cls in ("bicycle", "motorcycle") and speed != 0
            wlh = self.add(cls, 0.0, d, vs=speed, yaw_rel=yaw, rider=rider, parked=parked)
            head = len(self.rows) - 1
            length = wlh[1]
            if cls == "truck" and speed != 0 and self.rng.random() < 0.35:  # truck pulling a trailer
                tw = self.add("trailer", 0.0, d, vs=speed, yaw_rel=yaw, parked=parked)
                # the truck leads in the direction of travel
                lead_lo = speed < 0
                truck_c = cursor + wlh[1] / 2 if lead_lo else cursor + tw[1] + 1.0 + wlh[1] / 2
                trailer_c = cursor + wlh[1] + 1.0 + tw[1] / 2 if lead_lo else cursor + tw[1] / 2
                self._set_s(head, truck_c)
                self._set_s(len(self.rows) - 1, trailer_c)
                length = wlh[1] + 1.0 + tw[1]
            else:
                self._set_s(head, cursor + wlh[1] / 2)
            cursor += length + self.rng.uniform(*gap)

    def _set_s(self, i, s0):
        row = list(self.rows[i])
        row[2] = float(s0)
        self.rows[i] = tuple(row)


def build_scene(seed: int, index: int, n_samples: int, name: str) -> Scene:
    rng = np.random.default_rng([seed, index, 7])
    theta = float(rng.uniform(-math.pi, math.pi))
    v_ego = float(rng.uniform(3.0, 9.0))
    T = (n_samples - 1) * SAMPLE_PERIOD
    s_end = v_ego * T
    P = _Placer(rng)
    reach = 75.0
    # ego lane: a leader at ego speed
    P.add("car", float(rng.uniform(15, 30)), -1.5, vs=v_ego)
    if rng.random() < 0.6:
        P.add(rng.choice(["car", "truck"]), -float(rng.uniform(12, 20)), -1.5, vs=v_ego)
    # the other forward lane
    v1 = float(max(2.0, v_ego + rng.uniform(-2.5, 3.0)))
    rel = (v1 - v_ego) * T
    mix_road = {"car": 0.72, "truck": 0.12, "bus": 0.06, "construction_vehicle": 0.03, "motorcycle": 0.07}
    P.fill_lane(-reach - max(0.0, rel), reach + max(0.0, -rel), -4.5, v1, mix_road, gap=(10, 30))
    # oncoming lanes
    for d in (1.5, 4.5):
        v = -float(rng.uniform(5.0, 11.0))
        P.fill_lane(-reach, reach + (abs(v) + v_ego) * T, d, v, mix_road, gap=(15, 40))
    # bike lanes: riders
    for d, sign in ((-6.5, 1.0), (6.5, -1.0)):
        v = sign * float(rng.uniform(3.0, 6.0))
        lo, hi = (-reach - 10, reach + s_end) if sign > 0 else (-reach, reach + (abs(v) + v_ego) * T)
        P.fill_lane(lo, hi, d, v, {"bicycle": 0.65, "motorcycle": 0.35}, gap=(25, 70))
    # construction zone on one parking lane
    zone_side = float(rng.choice([-1.0, 1.0]))
    zone_s = float(rng.uniform(0.2, 0.6) * s_end + 25.0)
    zone_len = 18.0
    for k in range(6):
        P.add("traffic_cone", zone_s + k * 3.0, zone_side * 7.5, yaw_rel=float(rng.uniform(-3, 3)))
    for k in range(5):
        P.add("barrier", zone_s + 1.5 + k * 2.8, zone_side * 9.0, yaw_rel=math.pi / 2)
    cw = P.add("construction_vehicle", zone_s + zone_len + 5.0, 0.0, parked=True,
               yaw_rel=0.0 if zone_side < 0 else math.pi)
    P.rows[-1] = P.rows[-1][:4] + (zone_side * (7.1 + cw[0] / 2),) + P.rows[-1][5:]
    cw_s = float(rng.uniform(0.3, 0.7) * s_end + 15.0)
    # parking lanes (bus stop and a parked trailer guaranteed on the right, truck on the left); the
    # crosswalk's ends stay clear
    mix_park = {"car": 0.7, "truck": 0.12, "trailer": 0.08, "construction_vehicle": 0.04, "bus": 0.06}
    for side in (-1.0, 1.0):
        d = side * 8.25
        s = -reach
        guaranteed = ["bus", "trailer"] if side < 0 else ["truck"]
        g_at = {float(rng.uniform(10, max(12.0, s_end))): c for c in guaranteed}
        while s < s_end + reach:
            if side == zone_side and zone_s - 4 < s < zone_s + zone_len + 14:
                s = zone_s + zone_len + 14
                continue
            if cw_s - 16 < s < cw_s + 4:
                s = cw_s + 4
                continue
            due = [k for k in g_at if k <= s]
            if due:
                cls = g_at.pop(due[0])
            else:
                cls = str(rng.choice(list(mix_park), p=np.array(list(mix_park.values())) / sum(mix_park.values())))
            yaw = 0.0 if side < 0 else math.pi
            if cls == "bus":  # stopped at a stop, not parked
                wlh = P.add(cls, s, d, yaw_rel=yaw)
            else:
                wlh = P.add(cls, s, d, yaw_rel=yaw, parked=True)
            row = list(P.rows[-1])
            row[2] = s + wlh[1] / 2
            row[4] = side * (7.1 + wlh[0] / 2)  # kerb-side, whatever the width
            P.rows[-1] = tuple(row)
            s += wlh[1] + float(rng.uniform(1.5, 12.0))
    # sidewalks: pedestrians walking / standing, parked two-wheelers at the curb
    for side in (-1.0, 1.0):
        s = -reach
        band_speed = (float(rng.uniform(0.9, 1.5)), -float(rng.uniform(0.9, 1.5)))  # two walking bands
        while s < s_end + reach:
            r = rng.random()
            # walkers keep to the outer band of the sidewalk, standing people and two-wheelers parked
            # along the kerb to the inner one, so boxes do not overlap
            if r < 0.7:
                walking = rng.random() < 0.6
                band = int(rng.integers(0, 2))
                v = band_speed[band] if walking else 0.0
                yaw = 0.0 if v > 0 else (math.pi if v < 0 else float(rng.uniform(-math.pi, math.pi)))
                d = (12.4, 13.2)[band] if walking else float(rng.uniform(10.9, 11.4))
                P.add("pedestrian", s, side * d, vs=v, yaw_rel=yaw)
            else:
                cls = "bicycle" if rng.random() < 0.6 else "motorcycle"
                P.add(cls, s, side * 10.9, yaw_rel=math.pi * float(rng.integers(0, 2)), parked=True)
            s += float(rng.uniform(4.0, 14.0))
    # crosswalk with crossing pedestrians (ahead of the ego, while it approaches)
    for _k in range(int(rng.integers(2, 5))):
        side = float(rng.choice([-1.0, 1.0]))
        speed = float(rng.uniform(1.1, 1.6))
        d_from, d_to = side * 11.5, -side * 11.5
        dur = abs(d_to - d_from) / speed
        # not in the ego's lane while the ego passes the crosswalk
        t_pass = np.array([(cw_s - 6.0) / v_ego, (cw_s + 6.0) / v_ego])
        for _try in range(50):
            start = float(rng.uniform(0.0, max(0.5, T - 8.0)))
            t_in = start + abs(d_from - (0.5 if side > 0 else -3.5)) / speed
            t_out = start + abs(d_from - (-3.5 if side > 0 else 0.5)) / speed
            if t_out < t_pass[0] or t_in > t_pass[1]:
                break
        P.add("pedestrian", cw_s + float(rng.uniform(-1.5, 1.5)), d_from, vd=-side * speed,
              tc=(start, start + dur), yaw_rel=-side * math.pi / 2)
    # buildings
    blds = []
    for side in (-1.0, 1.0):
        s = -150.0
        while s < s_end + 150.0:
            length = float(rng.uniform(15, 40))
            depth = float(rng.uniform(10, 20))
            inner = 14.5 + float(rng.uniform(0, 2))
            blds.append((s + length / 2, side * (inner + depth / 2), length, depth, float(rng.uniform(6, 25)),
                         float(rng.uniform(0.0, 1.0))))
            s += length + float(rng.uniform(3, 12))
    rows = P.rows
    # place the road region in positive world coordinates for the map mask
    corners_s = np.array([-160.0, s_end + 160.0, -160.0, s_end + 160.0])
    corners_d = np.array([-40.0, -40.0, 40.0, 40.0])
    u = np.array([math.cos(theta), math.sin(theta)])
    n = np.array([-u[1], u[0]])
    pts = corners_s[:, None] * u + corners_d[:, None] * n
    origin = 10.0 - pts.min(axis=0)  # each scene (log) has its own map in positive coordinates
    extent = pts.max(axis=0) + origin + 10.0
    return Scene(
        index=index, name=name, seed=seed, n_samples=n_samples, theta=theta, origin=origin, v_ego=v_ego,
        cls=np.array([r[0] for r in rows], np.int64), wlh=np.array([r[1] for r in rows]),
        s0=np.array([r[2] for r in rows], float), vs=np.array([r[3] for r in rows], float),
        d0=np.array([r[4] for r in rows], float), vd=np.array([r[5] for r in rows], float),
        tc=np.array([r[6] for r in rows], float), yaw_rel=np.array([r[7] for r in rows], float),
        rider=np.array([r[8] for r in rows], bool), parked=np.array([r[9] for r in rows], bool),
        buildings=np.array(blds), crosswalk_s=cw_s,
        map_size=(int(math.ceil(extent[0] / MAP_RES)), int(math.ceil(extent[1] / MAP_RES))),
    )


# ------------------------------------------------------------------------------------------------------
# Sensor simulation
# ------------------------------------------------------------------------------------------------------
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



# ------------------------------------------------------------------------------------------------------
# Writing a dataroot
# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorldConfig:
    scenes: int = 10
    samples: int = 40
    seed: int = 0
    image_scale: float = 1.0
    jpeg_quality: int = 90
    lidar_sweeps_per_sample: int = 10  # 20 Hz lidar between 2 Hz keyframes

    def __post_init__(self):
        if self.scenes < 1 or self.samples < 2:
            raise ValueError("WorldConfig: need at least 1 scene and 2 samples per scene")
        if not (0.05 <= self.image_scale <= 1.0):
            raise ValueError("WorldConfig.image_scale: must be in [0.05, 1.0]")


def _t0_us(cfg: WorldConfig, index: int) -> int:
    return 1533151603547590 + cfg.seed * 7_000_000_000 + index * 1_000_000_000


def _logname(cfg: WorldConfig, index: int) -> str:
    return f"n015-2018-08-{1 + index % 28:02d}-{10 + cfg.seed % 10:02d}-00-00+0800"


def _filename(kind: str, ch: str, logname: str, ts: int, ext: str) -> str:
    return f"{kind}/{ch}/{logname}__{ch}__{ts}.{ext}"


def _radar_times(k: int) -> list[tuple[str, list[int]]]:
    """Per radar: its sweep indices j belonging to sample k (times phase + j*P in (t_k - 0.5 + P/2, t_k + P/2])."""
    out = []
    lo, hi = (k - 1) * SAMPLE_PERIOD + RADAR_PERIOD / 2, k * SAMPLE_PERIOD + RADAR_PERIOD / 2
    for ch in RADARS:
        ph = RADAR_RIG[ch][2]
        j0, j1 = math.floor((lo - ph) / RADAR_PERIOD) + 1, math.floor((hi - ph) / RADAR_PERIOD)
        out.append((ch, [j for j in range(j0, j1 + 1) if lo < ph + j * RADAR_PERIOD <= hi]))
    return out


def _sample_job(args):
    """Generate all sensor files of one keyframe interval of one scene. Returns their records and counts."""
    cfg, root, index, name, k = args
    scene = get_scene(cfg.seed, index, cfg.samples, name)
    log = _logname(cfg, index)
    t0 = _t0_us(cfg, index)
    n_obj = len(scene.cls)
    rec = {"k": k, "lidar": [], "radar": {}, "camera": {}}
    # lidar: the keyframe and the sweeps since the previous one (before the first keyframe: a pre-roll)
    key_pts = None
    for j in range(cfg.lidar_sweeps_per_sample - 1, -1, -1):
        t = k * SAMPLE_PERIOD - j * LIDAR_PERIOD
        ts = t0 + round(t * 1e6)
        rng = np.random.default_rng([cfg.seed, index, 1, k, j])
        pts, T_gl = simulate_lidar(scene, t, rng)
        fn = _filename("samples" if j == 0 else "sweeps", LIDAR, log, ts, "pcd.bin")
        write_lidar_bin(os.path.join(root, fn), pts)
        rec["lidar"].append((t, ts, fn, j == 0))
        if j == 0:
            key_pts = transform_points(T_gl, pts[:, :3].astype(np.float64))
    boxes_k, _ = scene.boxes(k * SAMPLE_PERIOD)
    rec["num_lidar"] = points_in_boxes(key_pts, boxes_k).sum(axis=1)
    # radars: keyframe = the sweep nearest the sample time
    num_radar = np.zeros(n_obj, np.int64)
    for ch, js in _radar_times(k):
        rows = []
        tk = k * SAMPLE_PERIOD
        times = [RADAR_RIG[ch][2] + j * RADAR_PERIOD for j in js]
        key_j = js[int(np.argmin([abs(t - tk) for t in times]))] if js else None
        for j, t in zip(js, times):
            ts = t0 + round(t * 1e6)
            rng = np.random.default_rng([cfg.seed, index, 2, RADARS.index(ch), j + 1000])
            pts = simulate_radar(scene, ch, t, rng)
            is_key = j == key_j
            fn = _filename("samples" if is_key else "sweeps", ch, log, ts, "pcd")
            write_radar_pcd(os.path.join(root, fn), pts)
            rows.append((t, ts, fn, is_key))
            if is_key and len(pts):
                T_gr = scene.ego_pose(t) @ calib_radar(ch)
                pw = transform_points(T_gr, np.stack([pts["x"], pts["y"], pts["z"]], axis=1).astype(np.float64))
                num_radar += points_in_boxes(pw, boxes_k).sum(axis=1)
        rec["radar"][ch] = rows
    rec["num_radar"] = num_radar
    # cameras at the keyframe (exposure offset per camera, like the real rig)
    vis = np.zeros(n_obj, np.int64)
    sil = np.zeros(n_obj, np.int64)
    for ch in CAMERAS:
        t = k * SAMPLE_PERIOD + CAMERA_OFFSET_S[ch]
        ts = t0 + round(t * 1e6)
        img, v, s_ = render_view(scene, ch, t, cfg.image_scale)
        vis += v
        sil += s_
        fn = _filename("samples", ch, log, ts, "jpg")
        ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {fn}")
        with open(os.path.join(root, fn), "wb") as f:
            f.write(buf.tobytes())
        rec["camera"][ch] = (t, ts, fn, img.shape[0], img.shape[1])
    rec["visible"], rec["silhouette"] = vis, sil
    return index, rec


def _write_map(root: str, scene: Scene, fn: str) -> None:
    from PIL import Image

    w, h = scene.map_size
    mask = np.zeros((h, w), np.uint8)
    s_lo, s_hi = -160.0, scene.v_ego * (scene.n_samples - 1) * SAMPLE_PERIOD + 160.0
    # the drivable surface: the road between the kerbs (|d| < 7 m)
    quad = scene.road_to_world(np.array([s_lo, s_hi, s_hi, s_lo]), np.array([-7.0, -7.0, 7.0, 7.0]))
    px = np.stack([quad[:, 0] / MAP_RES, h - quad[:, 1] / MAP_RES], axis=1)
    cv2.fillPoly(mask, [np.round(px).astype(np.int32)], 255)
    Image.fromarray(mask).save(os.path.join(root, fn), optimize=False)


def _tables(cfg: WorldConfig, names: list[str], results: dict[int, list[dict]]) -> dict[str, list]:
    tb: dict[str, list] = {k: [] for k in ("category", "attribute", "visibility", "instance", "sensor",
                                            "calibrated_sensor", "ego_pose", "log", "scene", "sample",
                                            "sample_data", "sample_annotation", "map")}
    seed = cfg.seed
    cat_tok = {n: token(seed, "category", n) for n, _ in ALL_CATEGORIES}
    for i, (n, desc) in enumerate(ALL_CATEGORIES):
        tb["category"].append({"token": cat_tok[n], "name": n, "description": desc, "index": i + 1})
    att_tok = {n: token(seed, "attribute", n) for n in ATTRIBUTE_DESCRIPTIONS}
    for n, desc in ATTRIBUTE_DESCRIPTIONS.items():
        tb["attribute"].append({"token": att_tok[n], "name": n, "description": desc})
    for tk, level, desc in VISIBILITY:
        tb["visibility"].append({"token": tk, "level": level, "description": desc})
    channels = [(LIDAR, "lidar")] + [(c, "camera") for c in CAMERAS] + [(r, "radar") for r in RADARS]
    sensor_tok = {c: token(seed, "sensor", c) for c, _ in channels}
    for c, mod in channels:
        tb["sensor"].append({"token": sensor_tok[c], "channel": c, "modality": mod})

    for index, name in enumerate(names):
        scene = get_scene(seed, index, cfg.samples, name)
        recs = sorted(results[index], key=lambda r: r["k"])
        log_tok = token(seed, name, "log")
        map_tok = token(seed, name, "map")
        tb["log"].append({"token": log_tok, "logfile": _logname(cfg, index), "vehicle": "n015",
                          "date_captured": _logname(cfg, index)[5:15], "location": f"synthetic-{name}"})
        tb["map"].append({"category": "semantic_prior", "token": map_tok, "filename": f"maps/{map_tok}.png",
                          "log_tokens": [log_tok]})
        cs_tok = {}
        for c, mod in channels:
            cs_tok[c] = token(seed, name, "calib", c)
            if mod == "camera":
                T, K = calib_camera(c), intrinsics(c, cfg.image_scale).tolist()
            elif mod == "lidar":
                T, K = calib_lidar(), []
            else:
                T, K = calib_radar(c), []
            tb["calibrated_sensor"].append({"token": cs_tok[c], "sensor_token": sensor_tok[c],
                                            "translation": T[:3, 3].tolist(),
                                            "rotation": matrix_to_quat(T[:3, :3]).tolist(),
                                            "camera_intrinsic": K})
        sample_tok = [token(seed, name, "sample", k) for k in range(cfg.samples)]
        t0 = _t0_us(cfg, index)
        for k in range(cfg.samples):
            tb["sample"].append({"token": sample_tok[k], "timestamp": t0 + k * 500_000,
                                 "prev": sample_tok[k - 1] if k else "",
                                 "next": sample_tok[k + 1] if k + 1 < cfg.samples else "",
                                 "scene_token": token(seed, name, "scene")})
        tb["scene"].append({"token": token(seed, name, "scene"), "log_token": log_tok,
                            "nbr_samples": cfg.samples, "first_sample_token": sample_tok[0],
                            "last_sample_token": sample_tok[-1], "name": name,
                            "description": f"Synthetic drive, ego at {scene.v_ego:.1f} m/s, "
                                           f"construction zone, crosswalk (seed {seed})"})
        # sample_data chains per channel
        per_ch: dict[str, list] = {c: [] for c, _ in channels}
        for r in recs:
            for t, ts, fn, key in r["lidar"]:
                per_ch[LIDAR].append((t, ts, fn, key, r["k"], 0, 0))
            for ch, rows in r["radar"].items():
                for t, ts, fn, key in rows:
                    per_ch[ch].append((t, ts, fn, key, r["k"], 0, 0))
            for ch, (t, ts, fn, h, w) in r["camera"].items():
                per_ch[ch].append((t, ts, fn, True, r["k"], h, w))
        for c, _mod in channels:
            rows = sorted(per_ch[c], key=lambda x: x[1])
            toks = [token(seed, name, "sd", c, ts) for _, ts, *_ in rows]
            for i, (t, ts, fn, key, k, h, w) in enumerate(rows):
                pose = scene.ego_pose(t)
                tb["ego_pose"].append({"token": toks[i], "timestamp": ts, "rotation":
                                       matrix_to_quat(pose[:3, :3]).tolist(), "translation": pose[:3, 3].tolist()})
                tb["sample_data"].append({
                    "token": toks[i], "sample_token": sample_tok[k], "ego_pose_token": toks[i],
                    "calibrated_sensor_token": cs_tok[c], "timestamp": ts,
                    "fileformat": fn.rsplit(".", 1)[-1] if not fn.endswith(".pcd.bin") else "pcd",
                    "is_key_frame": bool(key), "height": h, "width": w, "filename": fn,
                    "prev": toks[i - 1] if i else "", "next": toks[i + 1] if i + 1 < len(rows) else ""})
        # annotations: objects within 80 m with at least one lidar or radar point (nuScenes' rule)
        inst_anns: dict[int, list[str]] = {}
        anns = []
        for r in recs:
            k = r["k"]
            t = k * SAMPLE_PERIOD
            boxes, _ = scene.boxes(t)
            attrs = scene.attributes(t)
            ego_xy = scene.ego_pose(t)[:2, 3]
            dist = np.hypot(boxes[:, 0] - ego_xy[0], boxes[:, 1] - ego_xy[1])
            for i in np.flatnonzero((dist < 80.0) & (r["num_lidar"] + r["num_radar"] > 0)):
                ratio = r["visible"][i] / r["silhouette"][i] if r["silhouette"][i] else 0.0
                vis = "1" if ratio < 0.4 else "2" if ratio < 0.6 else "3" if ratio < 0.8 else "4"
                at = token(seed, name, "ann", i, k)
                inst_anns.setdefault(i, []).append(at)
                anns.append({"token": at, "sample_token": sample_tok[k],
                             "instance_token": token(seed, name, "instance", i), "visibility_token": vis,
                             "attribute_tokens": [att_tok[attrs[i]]] if attrs[i] else [],
                             "translation": boxes[i, :3].tolist(),
                             "size": [float(boxes[i, 4]), float(boxes[i, 3]), float(boxes[i, 5])],
                             "rotation": yaw_to_quat(boxes[i, 6]).tolist(),
                             "num_lidar_pts": int(r["num_lidar"][i]), "num_radar_pts": int(r["num_radar"][i]),
                             "_inst": int(i)})
        for a in anns:
            chain = inst_anns[a["_inst"]]
            j = chain.index(a["token"])
            a["prev"] = chain[j - 1] if j else ""
            a["next"] = chain[j + 1] if j + 1 < len(chain) else ""
            del a["_inst"]
        tb["sample_annotation"].extend(anns)
        for i in sorted(inst_anns):
            chain = inst_anns[i]
            tb["instance"].append({"token": token(seed, name, "instance", i),
                                   "category_token": cat_tok[CLASS_SPECS[CLASS_NAMES[scene.cls[i]]]["category"]],
                                   "nbr_annotations": len(chain), "first_annotation_token": chain[0],
                                   "last_annotation_token": chain[-1]})
    return tb


def _warm_up() -> None:
    """Compile the numba kernels once in the parent so forked workers inherit them."""
    s = build_scene(0, 0, 2, "warm-up")
    rng = np.random.default_rng(0)
    simulate_lidar(s, 0.0, rng)
    simulate_radar(s, RADARS[0], 0.0, rng)
    render_view(s, CAMERAS[0], 0.0, 0.05)


def generate(out, cfg: WorldConfig = WorldConfig(), workers: int | None = None, progress: bool = True,
             overwrite: bool = False) -> dict:
    """Write a complete nuScenes dataroot to ``out`` and return a summary.

    Written to a temporary sibling directory and renamed at the end, so an interrupted run never leaves
    something that looks complete.
    """
    from tqdm import tqdm

    out = Path(out)
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists (pass overwrite=True / --overwrite to replace it)")
    names, version = scene_names(cfg.scenes)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    for d in ("maps", version, *(f"samples/{c}" for c in (LIDAR, *RADARS, *CAMERAS)),
              *(f"sweeps/{c}" for c in (LIDAR, *RADARS))):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    jobs = [(cfg, str(tmp), i, n, k) for i, n in enumerate(names) for k in range(cfg.samples)]
    workers = workers or max(1, min(len(jobs), os.cpu_count() or 1))
    _warm_up()
    results: dict[int, list[dict]] = {i: [] for i in range(len(names))}
    bar = tqdm(total=len(jobs), desc="synthetic world", unit="sample", disable=not progress)
    if workers == 1:
        for j in jobs:
            i, r = _sample_job(j)
            results[i].append(r)
            bar.update()
    else:
        ctx = mp.get_context("fork")
        with ctx.Pool(workers) as pool:
            for i, r in pool.imap_unordered(_sample_job, jobs, chunksize=1):
                results[i].append(r)
                bar.update()
    bar.close()
    tables = _tables(cfg, names, results)
    for index, name in enumerate(names):
        scene = get_scene(cfg.seed, index, cfg.samples, name)
        _write_map(str(tmp), scene, tables["map"][index]["filename"])
    for tname, rows in tables.items():
        with open(tmp / version / f"{tname}.json", "w") as f:
            json.dump(rows, f, indent=0)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    counts = {n: len(r) for n, r in tables.items()}
    by_class: dict[str, int] = {}
    inst_cat = {i["token"]: i["category_token"] for i in tables["instance"]}
    cat_name = {c["token"]: c["name"] for c in tables["category"]}
    for a in tables["sample_annotation"]:
        n = cat_name[inst_cat[a["instance_token"]]]
        by_class[n] = by_class.get(n, 0) + 1
    return {"dataroot": str(out), "version": version, "scenes": names, "tables": counts,
            "annotations_by_category": dict(sorted(by_class.items()))}
