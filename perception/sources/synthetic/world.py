"""The synthetic world's content: classes, the road and the scenes built from a seed."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import cv2
import numpy as np

from perception.geometry import (
    make_transform,
    yaw_to_quat,
)

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

SAMPLE_PERIOD = 0.5
MAP_RES = 0.1


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


