"""The synthetic world's content: classes, places (streets, intersections, a parking lot), traffic and the
scenes built from a seed.

A scene is a place and a drive through it. Streets are centre-line paths (straight, curved, crossing at an
intersection); every mover follows its own path with a speed profile from a car-following model (IDM: it
accelerates, brakes, queues and stops at red lights and crosswalks), so the ego and the traffic around it
turn, stop and go. Objects are stored as poses on a 20 Hz time grid (x, y, yaw) and interpolated; a last pass
removes any object whose footprint would overlap another's or the ego's at any time, so no two objects ever
share a spot. Sizes come from per-class distributions with nuScenes-like means and spreads, and nothing about
a class is tied to a fixed colour, place or heading.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from perception.geometry import make_transform, wrap_angle, yaw_to_quat

# ------------------------------------------------------------------------------------------------------
# Classes: nuScenes category, mean size (l, w, h) in m and its spread (std, m). Means are the per-class anchor
# sizes that public nuScenes detectors use (mmdetection3d's nuScenes anchors); spreads are wide where real
# fleets vary (trucks, buses, trailers, construction vehicles).
# ------------------------------------------------------------------------------------------------------
CLASS_SPECS: dict[str, dict] = {
    "car": dict(category="vehicle.car", lwh=(4.61, 1.95, 1.72), std=(0.45, 0.14, 0.18)),
    "truck": dict(category="vehicle.truck", lwh=(6.74, 2.46, 2.73), std=(1.6, 0.25, 0.45)),
    "construction_vehicle": dict(category="vehicle.construction", lwh=(6.38, 2.73, 3.13), std=(1.4, 0.3, 0.5)),
    "bus": dict(category="vehicle.bus.rigid", lwh=(11.19, 2.94, 3.47), std=(1.3, 0.12, 0.25)),
    "trailer": dict(category="vehicle.trailer", lwh=(12.01, 2.87, 3.82), std=(2.5, 0.2, 0.45)),
    "barrier": dict(category="movable_object.barrier", lwh=(0.49, 2.49, 0.98), std=(0.1, 0.4, 0.1)),
    "motorcycle": dict(category="vehicle.motorcycle", lwh=(2.10, 0.76, 1.44), std=(0.18, 0.1, 0.12)),
    "bicycle": dict(category="vehicle.bicycle", lwh=(1.68, 0.60, 1.27), std=(0.14, 0.08, 0.1)),
    "pedestrian": dict(category="human.pedestrian.adult", lwh=(0.73, 0.66, 1.76), std=(0.12, 0.09, 0.1)),
    "traffic_cone": dict(category="movable_object.trafficcone", lwh=(0.40, 0.40, 1.06), std=(0.06, 0.06, 0.18)),
}
CLASS_NAMES = tuple(CLASS_SPECS)
VEHICLES = ("car", "truck", "construction_vehicle", "bus", "trailer")
CYCLES = ("bicycle", "motorcycle")

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
MAP_RES = 0.1          # m per pixel of the ground texture and the map mask
DT = 0.05              # time grid of the trajectories (s)
T_PRE = 1.0            # pre-roll before the first keyframe (lidar and radar sweeps reach back ~0.5 s)
SIDEWALK_H = 0.15      # kerb height (m)
PLACES = ("straight", "curve", "intersection", "parking", "narrow")


def token(*parts) -> str:
    """Deterministic 32-hex token, like nuScenes'."""
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


# ------------------------------------------------------------------------------------------------------
# Paths
# ------------------------------------------------------------------------------------------------------
class Path:
    """A dense 2D polyline parametrized by arclength s (m); ``at(s, d)`` is the point d metres to the left."""

    def __init__(self, xy: np.ndarray):
        xy = np.asarray(xy, float)
        keep = np.concatenate([[True], np.hypot(*np.diff(xy, axis=0).T) > 1e-6])
        self.xy = xy[keep]
        ds = np.hypot(*np.diff(self.xy, axis=0).T)
        self.s = np.concatenate([[0.0], np.cumsum(ds)])
        g = np.gradient(self.xy, self.s, axis=0)
        self.heading = np.unwrap(np.arctan2(g[:, 1], g[:, 0]))

    @property
    def length(self) -> float:
        return float(self.s[-1])

    @staticmethod
    def build(start, heading: float, segments, step: float = 0.5) -> Path:
        """Segments: ("line", L) or ("arc", R, angle) with angle > 0 turning left."""
        pts = [np.asarray(start, float)]
        h = heading
        for seg in segments:
            if seg[0] == "line":
                n = max(1, int(math.ceil(seg[1] / step)))
                for _ in range(n):
                    pts.append(pts[-1] + seg[1] / n * np.array([math.cos(h), math.sin(h)]))
            else:
                _, r, ang = seg
                n = max(2, int(math.ceil(abs(ang) * r / step)))
                sgn = 1.0 if ang > 0 else -1.0
                c = pts[-1] + sgn * r * np.array([-math.sin(h), math.cos(h)])
                a0 = h - sgn * math.pi / 2
                for k in range(1, n + 1):
                    a = a0 + ang * k / n
                    pts.append(c + r * np.array([math.cos(a), math.sin(a)]))
                h += ang
        return Path(np.array(pts))

    @staticmethod
    def hermite(p0, h0, p1, h1, step: float = 0.5, lead: float = 0.0, tail: float = 0.0) -> Path:
        """A smooth curve from pose (p0, h0) to (p1, h1) (cubic Hermite), with straight lead-in / run-out."""
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        L = float(np.hypot(*(p1 - p0)))
        m0 = L * np.array([math.cos(h0), math.sin(h0)])
        m1 = L * np.array([math.cos(h1), math.sin(h1)])
        u = np.linspace(0, 1, max(8, int(L * 1.5 / step)))[:, None]
        curve = ((2 * u**3 - 3 * u**2 + 1) * p0 + (u**3 - 2 * u**2 + u) * m0 + (-2 * u**3 + 3 * u**2) * p1
                 + (u**3 - u**2) * m1)
        d0, d1 = np.array([math.cos(h0), math.sin(h0)]), np.array([math.cos(h1), math.sin(h1)])
        pre = p0 - d0 * np.linspace(lead, 0, max(2, int(lead / step) + 1))[:, None] if lead > 0 else p0[None]
        post = p1 + d1 * np.linspace(0, tail, max(2, int(tail / step) + 1))[:, None] if tail > 0 else p1[None]
        return Path(np.concatenate([pre[:-1], curve, post[1:]]))

    def at(self, s, d=0.0):
        """World xy (..., 2) and heading (...) at arclength s, d metres to the left."""
        s = np.clip(np.asarray(s, float), 0.0, self.length)
        x = np.interp(s, self.s, self.xy[:, 0])
        y = np.interp(s, self.s, self.xy[:, 1])
        h = np.interp(s, self.s, self.heading)
        d = np.asarray(d, float)
        return np.stack([x - d * np.sin(h), y + d * np.cos(h)], axis=-1), h

    def offset(self, d: float, reverse: bool = False) -> Path:
        xy, _ = self.at(self.s, d)
        return Path(xy[::-1] if reverse else xy)

    def project(self, xy) -> float:
        """Arclength of the path point nearest to xy."""
        i = int(np.argmin(np.hypot(*(self.xy - np.asarray(xy)[None]).T)))
        return float(self.s[i])


@dataclass
class Street:
    """A street: centre line, lanes per direction, optional parking and bike lanes, sidewalks."""
    path: Path
    lane_w: float
    lanes: int                 # per direction
    parking: bool
    bike: bool
    sidewalk: float            # sidewalk width (m)

    @property
    def kerb(self) -> float:
        return self.lanes * self.lane_w + (1.5 if self.bike else 0.0) + (2.3 if self.parking else 0.0)

    def lane_d(self, k: int) -> float:
        """Offset of lane k (0 = inner) of the forward direction (right-hand traffic: negative d)."""
        return -(k + 0.5) * self.lane_w


# ------------------------------------------------------------------------------------------------------
# Traffic: the intelligent driver model on one path
# ------------------------------------------------------------------------------------------------------
def curve_limit(path: Path, a_lat: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """(s, v_max) along a path: the speed at which the lateral acceleration in its bends stays at a_lat."""
    k = np.abs(np.gradient(path.heading, path.s))
    k = np.convolve(k, np.ones(9) / 9, mode="same")
    return path.s, np.minimum(30.0, np.sqrt(a_lat / np.maximum(k, 1e-4)))


def idm(tgrid: np.ndarray, s0: np.ndarray, v_des: np.ndarray, length: np.ndarray, stops=(),
        a_max: float = 1.4, b: float = 2.0, headway: float = 1.3, jam: float = 2.0, v_init=None,
        vlimit=None) -> np.ndarray:
    """Arclength (n, G) of n movers on one path (s is the middle of each mover), leader = the next one ahead.
    ``stops``: (s_line, t_on, t_off) red lights / crosswalks: a mover whose front can still stop comfortably
    before the line at t_on treats it as a stopped leader until t_off. ``vlimit``: (s, v_max) along the path
    (curve_limit), looked up 2 s ahead of each mover's front."""
    n, G = len(s0), len(tgrid)
    out = np.zeros((n, G))
    if n == 0:
        return out
    s = np.array(s0, float)
    v = np.array(v_des if v_init is None else v_init, float)
    order = np.argsort(-s)  # leader first; order never changes (no overtaking on one path)
    dt = tgrid[1] - tgrid[0]
    obey = [np.ones(n, bool) for _ in stops]
    decided = [False] * len(stops)
    for g, t in enumerate(tgrid):
        out[:, g] = s
        acc = np.zeros(n)
        for rank, i in enumerate(order):
            gap, v_lead = 1e9, v[i]
            if rank > 0:
                j = order[rank - 1]
                gap, v_lead = s[j] - s[i] - 0.5 * (length[i] + length[j]), v[j]
            for k, (line, t_on, t_off) in enumerate(stops):
                if t_on <= t < t_off and obey[k][i]:
                    g_line = line - (s[i] + 0.5 * length[i])
                    if g_line > -0.5 and g_line < gap:
                        gap, v_lead = max(g_line, 0.05), 0.0
            v0 = v_des[i]
            if vlimit is not None:
                front = s[i] + 0.5 * length[i]
                v0 = min(v0, float(np.interp(front, *vlimit)), float(np.interp(front + 2.0 * v[i], *vlimit)))
            ratio = v[i] / max(v0, 0.1)
            s_star = jam + v[i] * headway + v[i] * (v[i] - v_lead) / (2 * math.sqrt(a_max * b))
            acc[i] = a_max * (1 - ratio**4 - (max(s_star, 0.0) / max(gap, 0.05)) ** 2)
        for k, (line, t_on, _t_off) in enumerate(stops):
            if not decided[k] and t + dt >= t_on:
                front = s + 0.5 * length
                need = v**2 / (2 * 3.0)  # can stop at 3 m/s2
                obey[k] = front + need < line + 0.5
                decided[k] = True
        v = np.maximum(0.0, v + np.clip(acc, -7.0, a_max) * dt)
        s = s + v * dt
    return out


# ------------------------------------------------------------------------------------------------------
# Scene content
# ------------------------------------------------------------------------------------------------------
@dataclass
class Scene:
    index: int
    name: str
    seed: int
    n_samples: int
    place: str
    night: bool
    rain: bool
    tgrid: np.ndarray          # (G,) s
    ego: np.ndarray            # (G, 3) x y yaw (unwrapped)
    cls: np.ndarray            # (N,) class index
    lwh: np.ndarray            # (N, 3)
    traj: np.ndarray           # (N, G, 3) x y yaw
    base: np.ndarray           # (N,) height of the surface the object stands on above the ground plane
    parked: np.ndarray         # (N,) bool
    rider: np.ndarray          # (N,) bool (cycles with a rider; drivers in vehicles that are not parked)
    ground: tuple[float, float, float]   # z = a x + b y + c
    streets: list[Street]
    statics: dict              # static primitives (buildings, street furniture, kerbs) and lights; see shapes
    texture: dict              # ground texture: rgb (H, W, 3) uint8, refl (H, W) uint8, drivable (H, W) bool
    map_size: tuple[int, int]  # (width px, height px), world origin at pixel (0, H)
    ego_turn_deg: float
    ego_stops: bool
    shapes: dict = field(default_factory=dict)   # per-object primitives (shapes.object_shapes)
    looks: dict = field(default_factory=dict)    # scene light, sky and camera settings

    def ground_z(self, x, y):
        a, b, c = self.ground
        return a * np.asarray(x) + b * np.asarray(y) + c

    def _interp(self, arr: np.ndarray, t: float) -> np.ndarray:
        f = (t - self.tgrid[0]) / DT
        i = int(np.clip(math.floor(f), 0, len(self.tgrid) - 2))
        w = float(np.clip(f - i, 0.0, 1.0))
        return arr[..., i, :] * (1 - w) + arr[..., i + 1, :] * w

    def ego_pose(self, t: float) -> np.ndarray:
        p = self._interp(self.ego[None], t)
        x, y, yaw = p[0]
        return make_transform(yaw_to_quat(float(yaw)), [x, y, float(self.ground_z(x, y))])

    def ego_velocity(self, t: float) -> np.ndarray:
        return self._velocity(self.ego[None], t)[0]

    def ego_yaw_rate(self, t: float) -> float:
        return float(self._rate(self.ego[None], t, 2)[0])

    def _velocity(self, arr, t):
        return self._rate(arr, t, slice(0, 2))

    def _rate(self, arr, t, cols):
        """Central difference over the time grid of arr[:, :, cols] at the grid step nearest t."""
        i = int(np.clip(round((t - self.tgrid[0]) / DT), 1, len(self.tgrid) - 2))
        return (arr[:, i + 1, cols] - arr[:, i - 1, cols]) / (2 * DT)

    def boxes(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(N, 9) world boxes x y z l w h yaw vx vy at time t, and (N,) moving flags."""
        p = self._interp(self.traj, t)
        vel = self._velocity(self.traj, t)
        out = np.zeros((len(self.cls), 9))
        out[:, 0:2] = p[:, :2]
        out[:, 2] = self.ground_z(p[:, 0], p[:, 1]) + self.base + self.lwh[:, 2] / 2.0
        out[:, 3:6] = self.lwh
        out[:, 6] = wrap_angle(p[:, 2])
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
            elif c in CYCLES:
                out.append("cycle.with_rider" if self.rider[i] else "cycle.without_rider")
            elif c == "pedestrian":
                out.append("pedestrian.moving" if moving[i] else "pedestrian.standing")
            else:
                out.append("")
        return out

    @property
    def description(self) -> str:
        what = {"straight": "straight street", "curve": "curved road", "intersection": "4-way intersection",
                "parking": "parking lot", "narrow": "narrow street"}[self.place]
        parts = [f"Synthetic drive, {what}"]
        if self.ego_turn_deg > 20:
            parts.append(f"ego turns {self.ego_turn_deg:.0f} deg")
        if self.ego_stops:
            parts.append("ego stops")
        parts.append("night" if self.night else "day")
        if self.rain:
            parts.append("rain")
        return ", ".join(parts) + f" (seed {self.seed})"


def scene_names(n: int) -> tuple[list[str], str]:
    """Scene names for n scenes and the version they belong to (official split names)."""
    if n <= 10:
        n_val = 0 if n == 1 else max(1, round(n * 0.2))
        return list(MINI_TRAIN[: n - n_val]) + list(MINI_VAL[:n_val]), "v1.0-mini"
    from nuscenes.utils import splits

    n_val = max(1, round(n * 0.2))
    return list(splits.train[: n - n_val]) + list(splits.val[:n_val]), "v1.0-trainval"


def scene_plan(seed: int, index: int) -> tuple[str, bool, bool, str]:
    """(place, night, rain, ego manoeuvre) of scene ``index``: a seeded schedule over blocks of 10 scenes, so
    that every 10 scenes hold every kind of place, one night scene (10%) and two rain scenes (20%), close to
    nuScenes' mix (~10% night, ~18% rain)."""
    rng = np.random.default_rng([seed, 991, index // 10])
    cycle = ["intersection", "straight", "curve", "narrow", "intersection", "parking", "curve", "straight",
             "intersection", "narrow"]
    order = rng.permutation(10)
    night = set(rng.permutation(10)[:1].tolist())
    rain = set(rng.permutation(10)[:2].tolist())
    turns = ["left", "right", "straight"]
    man = [str(turns[int(rng.integers(0, 3))]) for _ in range(10)]
    k = index % 10
    place = cycle[int(order[k])]
    manoeuvre = man[k] if place == "intersection" else "follow"
    if place == "intersection" and int(order[k]) == 0:  # one intersection per block always turns
        manoeuvre = "left" if man[k] == "straight" else man[k]
    return place, k in night, k in rain, manoeuvre


def sample_size(rng, cls: str) -> np.ndarray:
    spec = CLASS_SPECS[cls]
    m, sd = np.array(spec["lwh"]), np.array(spec["std"])
    return np.clip(m + rng.normal(0, 1, 3) * sd, 0.6 * m, 1.6 * m)


def build_scene(seed: int, index: int, n_samples: int, name: str) -> Scene:
    from perception.sources.synthetic import layout

    place, night, rain, manoeuvre = scene_plan(seed, index)
    return layout.build(seed, index, n_samples, name, place, night, rain, manoeuvre)
