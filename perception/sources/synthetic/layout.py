"""Places and traffic: one scene's streets, the ego's drive, every object's track, the street furniture and
the ground texture, built from the seed."""

from __future__ import annotations

import math

import cv2
import numpy as np
from shapely.geometry import LineString, Point, Polygon
from shapely.ops import unary_union
from shapely.prepared import prep

from perception.geometry import footprints, footprints_overlap
from perception.sources.synthetic import shapes
from perception.sources.synthetic.world import (
    CLASS_NAMES,
    DT,
    MAP_RES,
    SAMPLE_PERIOD,
    SIDEWALK_H,
    T_PRE,
    Path,
    Scene,
    Street,
    curve_limit,
    idm,
    sample_size,
)

EGO_FOOT = (0.9, 0.0, 4.9, 2.1)  # footprint centre x, y and l, w in the ego frame (with a margin)
CW_OFF = 2.5     # intersection crosswalks: centre this far beyond the cross street's kerb (stripes +-1.5 m)
STOP_BACK = 6.0  # stop lines this far before the cross street's kerb: 2 m before the crosswalk
ROAD_MIX = {"car": 0.84, "truck": 0.08, "bus": 0.03, "construction_vehicle": 0.01, "motorcycle": 0.04}
PARK_MIX = {"car": 0.9, "truck": 0.05, "trailer": 0.03, "construction_vehicle": 0.02}


def _choice(rng, mix: dict) -> str:
    k = list(mix)
    p = np.array(list(mix.values()), float)
    return str(k[int(rng.choice(len(k), p=p / p.sum()))])


class _Objects:
    """Objects as they are placed: class, size, track (G, 3), base height, flags, priority (lower wins)."""

    def __init__(self, rng, G):
        self.rng, self.G = rng, G
        self.rows: list[dict] = []

    def add(self, cls, traj, lwh=None, base=0.0, parked=False, rider=False, prio=5):
        lwh = sample_size(self.rng, cls) if lwh is None else np.asarray(lwh, float)
        if cls in ("bicycle", "motorcycle") and rider:
            lwh[2] = self.rng.uniform(1.55, 1.85)
        self.rows.append(dict(cls=cls, lwh=lwh, traj=traj, base=base, parked=parked, rider=rider, prio=prio))
        return lwh

    def static(self, cls, xy, yaw, **kw):
        traj = np.zeros((self.G, 3))
        traj[:, 0], traj[:, 1], traj[:, 2] = xy[0], xy[1], yaw
        return self.add(cls, traj, **kw)


def _track(path: Path, s: np.ndarray, d=0.0, flip: bool = False) -> np.ndarray:
    """(G, 3) x y yaw along a path at arclengths s (G,), d to the left (a number, or (G,) for a lane change:
    the heading then follows the sideways motion too)."""
    xy, h = path.at(s, d)
    out = np.zeros((len(s), 3))
    out[:, :2] = xy
    out[:, 2] = h + (math.pi if flip else 0.0)
    if np.ndim(d) and len(s) > 1:
        ds, dd = np.gradient(s), np.gradient(np.asarray(d, float))
        out[:, 2] += np.where(np.abs(ds) > 1e-3, np.arctan2(dd, np.maximum(np.abs(ds), 1e-3)), 0.0)
    return out


def _lane_change(rng, tgrid, delta: float) -> np.ndarray:
    """Sideways offset (G,) of a smooth lane change by delta metres, starting at a random time, 3-5 s long."""
    t0, dur = rng.uniform(tgrid[0], max(tgrid[0], tgrid[-1] - 3.0)), rng.uniform(3.0, 5.0)
    u = np.clip((tgrid - t0) / dur, 0, 1)
    return delta * (3 * u**2 - 2 * u**3)


def _resolve_overlaps(objs: _Objects, ego: np.ndarray, static_foot: np.ndarray) -> list[int]:
    """Indices of the objects to keep: in priority order, an object is kept when its footprint overlaps
    neither the ego's, a static structure's nor a kept object's at any time."""
    n = len(objs.rows)
    steps = np.arange(0, objs.G, 5)
    lwh = np.array([r["lwh"] for r in objs.rows]) if n else np.zeros((0, 3))
    traj = np.stack([r["traj"] for r in objs.rows]) if n else np.zeros((0, objs.G, 3))
    bad = np.zeros(n, bool)
    conflicts = [set() for _ in range(n)]
    radius = 0.5 * np.hypot(lwh[:, 0], lwh[:, 1])
    for g in steps:
        xy, yaw = traj[:, g, :2], traj[:, g, 2]
        foot = footprints(xy, yaw, lwh[:, 0], lwh[:, 1])
        ex, ey, eyaw = ego[g]
        ec = np.array([ex + math.cos(eyaw) * EGO_FOOT[0], ey + math.sin(eyaw) * EGO_FOOT[0]])
        efoot = footprints(ec[None], np.array([eyaw]), np.array([EGO_FOOT[2]]), np.array([EGO_FOOT[3]]))
        near = np.hypot(*(xy - ec).T) < radius + 2.7
        if near.any():
            idx = np.flatnonzero(near)
            bad[idx[footprints_overlap(foot[idx], np.repeat(efoot, len(idx), 0))]] = True
        if len(static_foot):
            sc = static_foot.mean(axis=1)
            sr = np.linalg.norm(static_foot - sc[:, None], axis=2).max(1)
            d = np.hypot(xy[:, None, 0] - sc[None, :, 0], xy[:, None, 1] - sc[None, :, 1])
            ii, jj = np.nonzero(d < radius[:, None] + sr[None, :])
            if len(ii):
                bad[ii[footprints_overlap(foot[ii], static_foot[jj])]] = True
        d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
        ii, jj = np.nonzero(np.triu(d < radius[:, None] + radius[None, :], 1))
        if len(ii):
            hit = footprints_overlap(foot[ii], foot[jj])
            for i, j in zip(ii[hit], jj[hit]):
                conflicts[i].add(j)
                conflicts[j].add(i)
    keep: list[int] = []
    kept = np.zeros(n, bool)
    for i in sorted(range(n), key=lambda k: (objs.rows[k]["prio"], k)):
        if bad[i] or any(kept[j] for j in conflicts[i]):
            continue
        kept[i] = True
        keep.append(i)
    return sorted(keep)


def _streets(rng, place: str, T: float):
    """The place's streets (main first) in a local frame, long enough for a drive of T seconds (the ego
    starts ~150 m along the main street and drives at most 12 m/s); extra: intersection centre, parking lot."""
    extra: dict = {}
    reach = 12.0 * T
    lanes = 1 if place in ("narrow", "parking", "intersection") else int(rng.integers(1, 3))
    lane_w = rng.uniform(2.9, 3.2) if place == "narrow" else rng.uniform(3.2, 3.6)
    main_len = max(420.0, 400.0 + reach)
    if place == "curve":
        r = rng.uniform(55, 130)
        ang = float(rng.choice([-1, 1]) * rng.uniform(0.7, 1.3))
        path = Path.build((0, 0), 0.0, [("line", 170.0), ("arc", r, ang), ("line", 220.0 + reach)])
    else:
        path = Path.build((0, 0), 0.0, [("line", main_len)])
    main = Street(path, lane_w, lanes, parking=place != "curve" or rng.random() < 0.4,
                  bike=place in ("straight", "curve") and rng.random() < 0.5,
                  sidewalk=rng.uniform(2.0, 3.0) if place == "narrow" else rng.uniform(3.0, 4.5))
    out = [main]
    if place == "intersection":
        sx = 200.0
        half = max(200.0, 110.0 + reach)
        cross = Street(Path.build((sx, -half), math.pi / 2, [("line", 2 * half)]), rng.uniform(3.1, 3.5), 1,
                       parking=rng.random() < 0.7, bike=False, sidewalk=rng.uniform(3.0, 4.0))
        out.append(cross)
        extra["center"] = np.array([sx, 0.0])
    if place == "parking":
        side = float(rng.choice([-1, 1]))
        extra["lot"] = (side, 160.0 + rng.uniform(-10, 10), rng.uniform(50, 70), rng.uniform(34, 42))
    return out, extra


def _road_polys(streets, extra):
    roads = [LineString(s.path.xy).buffer(s.kerb, cap_style=2) for s in streets]
    walks = [LineString(s.path.xy).buffer(s.kerb + s.sidewalk, cap_style=2) for s in streets]
    road = unary_union(roads)
    lot = None
    if "lot" in extra:
        side, s0, L, D = extra["lot"]
        m = streets[0]
        off = m.kerb + m.sidewalk
        lot = Polygon([(s0 - L / 2, side * off), (s0 + L / 2, side * off), (s0 + L / 2, side * (off + D)),
                       (s0 - L / 2, side * (off + D))])
    walk = unary_union(walks).difference(road)
    if lot is not None:
        walk = walk.difference(lot)
    return road, walk, lot


def build(seed: int, index: int, n_samples: int, name: str, place: str, night: bool, rain: bool,
          manoeuvre: str) -> Scene:
    rng = np.random.default_rng([seed, index, 7])
    T = (n_samples - 1) * SAMPLE_PERIOD
    tgrid = np.round(np.arange(-T_PRE, T + 0.3 + 1e-9, DT), 6)
    G = len(tgrid)
    streets, extra = _streets(rng, place, T)
    main = streets[0]
    road, walk, lot = _road_polys(streets, extra)
    O = _Objects(rng, G)
    # ---- the ego's path and drive ----------------------------------------------------------------------
    lane_k = int(rng.integers(0, main.lanes))
    if place == "intersection" and manoeuvre == "right":
        lane_k = main.lanes - 1
    if place == "intersection" and manoeuvre == "left":
        lane_k = 0
    d_ego = main.lane_d(lane_k)
    v_ego = {"narrow": rng.uniform(4.0, 7.0), "parking": rng.uniform(3.5, 6.0)}.get(place, rng.uniform(6.0, 11.0))
    stops = []
    if place == "intersection":
        cx = extra["center"][0]
        cross = streets[1]
        dist = rng.uniform(20, 40)
        s_e0 = cx - dist - cross.kerb
        if manoeuvre == "straight":
            ego_path = main.path.offset(d_ego)
        else:
            sign = 1.0 if manoeuvre == "left" else -1.0
            p0, _ = main.path.at(cx - cross.kerb - STOP_BACK, d_ego)
            # the cross street's lane in the direction of the turn
            h1 = sign * math.pi / 2
            d_cross = cross.lane_d(0) if sign > 0 else cross.lane_d(cross.lanes - 1)
            # cross path runs +y; heading +y for a left turn (its forward lanes have negative d: x > cx)
            p1 = np.array([cx - d_cross * (1 if sign > 0 else -1), sign * (main.kerb + STOP_BACK)])
            ego_path = Path.hermite(p0, 0.0, p1, h1, lead=cx - cross.kerb - STOP_BACK, tail=12.0 * T + 50.0)
        line = ego_path.project(main.path.at(cx - cross.kerb - STOP_BACK, d_ego)[0])
        t_arr = dist / v_ego
        t_red = max(-0.5, t_arr - rng.uniform(1.5, 4.0))
        t_green = t_red + rng.uniform(6.0, 10.0)
        stops.append((line, t_red, t_green))
        extra["phases"] = (t_red, t_green)
    else:
        ego_path = main.path.offset(d_ego)
        s_e0 = 150.0 + (0 if place != "parking" else extra["lot"][1] - 150.0 - rng.uniform(20, 35))
        if place != "parking" and rng.random() < 0.55:  # a crosswalk ahead, with people crossing
            cw = s_e0 + rng.uniform(45, 90)
            extra["crosswalk"] = cw
            t_arr = (cw - s_e0) / v_ego
            t_on = max(-0.5, t_arr - rng.uniform(3.0, 5.0))  # early enough for the ego to stop comfortably
            t_off = t_on + rng.uniform(5.0, 9.0)
            stops.append((ego_path.project(main.path.at(cw - 3.5, d_ego)[0]), t_on, t_off))
            extra["cross_window"] = (t_on, t_off)
    s_e = ego_path.project(main.path.at(s_e0, d_ego)[0])
    # the ego's lane: a leader or two ahead, a follower or two behind, all in one car-following model
    lane_s = [s_e + EGO_FOOT[0]]
    lane_cls = ["ego"]
    cur = s_e + 5.0
    while cur < s_e + 110:
        cur += rng.uniform(8, 45)
        lane_s.append(cur)
        lane_cls.append(_choice(rng, ROAD_MIX))
        cur += 5
    cur = s_e - 5.0
    while cur > s_e - 60:
        cur -= rng.uniform(10, 40)
        lane_s.append(cur)
        lane_cls.append(_choice(rng, ROAD_MIX))
        cur -= 5
    sizes = [None if c == "ego" else sample_size(rng, c) for c in lane_cls]
    lane_l = np.array([EGO_FOOT[2] if sz is None else sz[0] for sz in sizes])
    v_des = np.array([v_ego] + [v_ego * rng.uniform(0.9, 1.2) for _ in lane_cls[1:]])
    S = idm(tgrid, np.array(lane_s), v_des, lane_l, stops=stops, v_init=v_des * 0.9, vlimit=curve_limit(ego_path))
    ego_traj = _track(ego_path, S[0] - EGO_FOOT[0])
    for k in range(1, len(lane_cls)):
        O.add(lane_cls[k], _track(ego_path, S[k]), lwh=sizes[k], rider=lane_cls[k] == "motorcycle", prio=1)
    # ---- other lanes ----------------------------------------------------------------------------------
    s_lo, s_hi = s_e0 - 110.0, s_e0 + v_ego * T + 110.0

    def fill(path: Path, lo, hi, speed, mix, gap, prio, lane_stops=(), rider=True, change=0.0):
        """Movers on one lane path; ``change``: sideways distance to the neighbouring lane (0: none) that about
        one in six takes in a smooth lane change (the overlap pass drops any that would cut into another)."""
        if hi <= lo:
            return
        s_list, cls_list, sz = [], [], []
        cur = lo + rng.uniform(0, gap[1])
        while cur < hi:
            c = _choice(rng, mix)
            size = sample_size(rng, c)
            cur += size[0] / 2
            s_list.append(cur)
            cls_list.append(c)
            sz.append(size)
            cur += size[0] / 2 + rng.uniform(*gap)
        if not s_list:
            return
        vd = np.array([speed * rng.uniform(0.85, 1.1) for _ in s_list])
        Sx = idm(tgrid, np.array(s_list), vd, np.array([z[0] for z in sz]), stops=lane_stops)
        for k, c in enumerate(cls_list):
            d = 0.0
            if change and c != "bus" and rng.random() < 0.17:
                d = d + _lane_change(rng, tgrid, change)
            O.add(c, _track(path, Sx[k], d), lwh=sz[k], rider=rider and c in ("bicycle", "motorcycle"), prio=prio)

    def lane_stop_list(path: Path, for_main: bool):
        out = []
        if "phases" in extra:
            t_red, t_green = extra["phases"]
            c = extra["center"]
            line = path.project(c) - streets[1 if for_main else 0].kerb - STOP_BACK
            out.append((line, t_red, t_green) if for_main else (line, -10.0, t_red + 1.0))
            if not for_main:
                out.append((line, t_green - 1.0, 1e9))
        if "cross_window" in extra and for_main:
            line = path.project(main.path.at(extra["crosswalk"], 0.0)[0]) - 3.5
            out.append((line, *extra["cross_window"]))
        return out

    for st_i, st in enumerate(streets):
        is_main = st_i == 0
        lo, hi = (s_lo, s_hi) if is_main else (st.path.length / 2 - 120.0, st.path.length / 2 + 120.0)
        for direction in (1, -1):
            for k in range(st.lanes):
                if is_main and direction == 1 and k == lane_k:
                    continue
                d = st.lane_d(k)
                path = st.path.offset(d) if direction == 1 else st.path.offset(-d, reverse=True)
                speed = max(3.0, v_ego + rng.uniform(-2.0, 3.0)) if is_main else rng.uniform(6, 10)
                if direction == 1:
                    plo, phi = lo, hi
                else:
                    plo, phi = max(0.0, path.length - hi - speed * T), path.length - lo
                gap = (8, 35) if place != "narrow" else (15, 60)
                change = 0.0 if st.lanes < 2 else (-st.lane_w if k == 0 else st.lane_w)
                fill(path, plo, phi, speed, ROAD_MIX, gap, prio=2, lane_stops=lane_stop_list(path, is_main),
                     change=change)
        if st.bike:
            for direction in (1, -1):
                d = -(st.lanes * st.lane_w + 0.75)
                path = st.path.offset(d) if direction == 1 else st.path.offset(-d, reverse=True)
                plo, phi = (lo, hi) if direction == 1 else (max(0.0, path.length - hi), path.length - lo)
                fill(path, plo, phi, rng.uniform(3.5, 6.0), {"bicycle": 0.7, "motorcycle": 0.3}, (30, 120), prio=3)
        # parked vehicles along the kerbs, except near the intersection and crosswalks
        if st.parking:
            for side in (-1.0, 1.0):
                d = side * (st.lanes * st.lane_w + (1.5 if st.bike else 0) + 1.15)
                cur = lo
                while cur < hi:
                    c = _choice(rng, PARK_MIX)
                    size = sample_size(rng, c)
                    centre = cur + size[0] / 2
                    xy, h = st.path.at(centre, side * (st.kerb - 0.15 - size[1] / 2))
                    cur = centre + size[0] / 2 + rng.uniform(0.8, 9.0)
                    if "center" in extra and np.hypot(*(xy - extra["center"])) < 22:
                        continue
                    if "crosswalk" in extra and is_main and abs(centre - extra["crosswalk"]) < 8:
                        continue
                    if rng.random() < 0.15:
                        continue
                    yaw = float(h) + (0.0 if side < 0 else math.pi) + rng.normal(0, 0.03)
                    O.static(c, xy, yaw, lwh=size, parked=True, prio=4)
                del d
    # ---- turning traffic at the intersection ------------------------------------------------------------
    if "center" in extra:
        cx = extra["center"][0]
        cross = streets[1]
        t_red, t_green = extra["phases"]
        for _ in range(int(rng.integers(1, 4))):
            src = float(rng.choice([-1, 1]))  # from the cross street's south (+y heading) or north arm
            sign = float(rng.choice([-1, 1]))  # turning left (+) or right (-)
            h0 = math.pi / 2 if src > 0 else -math.pi / 2
            d0 = cross.lane_d(0)
            p0 = np.array([cx - d0 * src, -src * (main.kerb + STOP_BACK)])
            h1 = h0 + sign * math.pi / 2
            out_dir = np.array([math.cos(h1), math.sin(h1)])
            p1 = (np.array([cx, 0.0]) + out_dir * (cross.kerb + STOP_BACK)
                  + np.array([-out_dir[1], out_dir[0]]) * main.lane_d(0))
            path = Path.hermite(p0, h0, p1, h1, lead=60.0, tail=120.0)
            c = _choice(rng, {"car": 0.9, "truck": 0.1})
            size = sample_size(rng, c)
            start = rng.uniform(10.0, 55.0)
            S1 = idm(tgrid, np.array([start]), np.array([rng.uniform(5, 8)]), np.array([size[0]]),
                     stops=[(60.0, -10.0, t_red + 1.0), (60.0, t_green - 1.0, 1e9)], vlimit=curve_limit(path))
            O.add(c, _track(path, S1[0]), lwh=size, prio=3)
    # ---- parking lot: stalls at right angles to the street, people walking between them ----------------
    if lot is not None:
        side, s0, L, D = extra["lot"]
        off = main.kerb + main.sidewalk
        for row in range(int(D // 13)):
            y_row = side * (off + 1.0 + row * 13.0 + 2.7)
            for half in (0, 1):
                yy = y_row + side * half * 5.6
                x = s0 - L / 2 + 2.0
                while x < s0 + L / 2 - 2.0:
                    if rng.random() < 0.72:
                        c = _choice(rng, {"car": 0.93, "truck": 0.05, "construction_vehicle": 0.02})
                        size = sample_size(rng, c)
                        if size[0] < 6.5:
                            yaw = (math.pi / 2 if (half == 0) == (side > 0) else -math.pi / 2) + rng.normal(0, 0.06)
                            O.static(c, (x + rng.normal(0, 0.1), yy), yaw, lwh=size, parked=True, prio=4)
                    x += 2.7
        for _ in range(int(rng.integers(3, 9))):  # walkers in the aisles, any direction
            a = rng.uniform(-math.pi, math.pi)
            v = rng.uniform(0.8, 1.5)
            start = np.array([s0 + rng.uniform(-L / 2, L / 2), side * (off + rng.uniform(2, D - 2))])
            tr = np.zeros((G, 3))
            tr[:, 0] = start[0] + math.cos(a) * v * (tgrid - tgrid[0])
            tr[:, 1] = start[1] + math.sin(a) * v * (tgrid - tgrid[0])
            tr[:, 2] = a
            O.add("pedestrian", tr, prio=6)
        # a car leaving its stall along the aisle
        for _ in range(int(rng.integers(1, 3))):
            y_aisle = side * (off + 1.0 + 13.0 * rng.integers(0, max(1, int(D // 13))) + 8.3)
            path = Path.build((s0 - L / 2 - 10, y_aisle), 0.0, [("line", L + 20)])
            if rng.random() < 0.5:
                path = path.offset(0.0, reverse=True)
            S1 = idm(tgrid, np.array([rng.uniform(5, L)]), np.array([rng.uniform(2.0, 4.0)]), np.array([4.6]))
            O.add("car", _track(path, S1[0]), prio=3)
    # ---- construction zone: barriers in a row, cones, a machine and workers; a parked trailer. Every scene
    # has them near the ego's drive, so that every split holds every class (the devkit's mAP averages all 10).
    st = main
    side = float(rng.choice([-1, 1]))
    zs = s_e0 + rng.uniform(-15, v_ego * T * 0.6 + 15)
    zlen = rng.uniform(15, 40)
    dz = side * (st.kerb - 1.2)
    for k in range(int(zlen // 2.6)):
        xy, h = st.path.at(zs + k * 2.6, dz)
        O.static("barrier", xy, float(h) + math.pi / 2 + rng.normal(0, 0.05), prio=0)
    for k in range(int(rng.integers(4, 12))):
        xy, h = st.path.at(zs - 3 - k * rng.uniform(1.5, 3.0), side * (st.kerb - 1.2 - k * 0.25))
        O.static("traffic_cone", xy, rng.uniform(-math.pi, math.pi), prio=0)
    size = sample_size(rng, "construction_vehicle")
    xy, h = st.path.at(zs + zlen + size[0] / 2 + 2.0, side * (st.kerb - size[1] / 2 - 0.3))
    O.static("construction_vehicle", xy, float(h) + (0 if side < 0 else math.pi), lwh=size, parked=True, prio=0)
    for _k in range(int(rng.integers(0, 3))):
        xy, _ = st.path.at(zs + rng.uniform(0, zlen), side * (st.kerb - 2.0))
        O.static("pedestrian", xy, rng.uniform(-math.pi, math.pi), prio=1)
    size = sample_size(rng, "trailer")
    s_tr = s_e0 + rng.uniform(-20, v_ego * T * 0.5 + 20)
    if abs(s_tr - zs - zlen / 2) < zlen / 2 + size[0]:
        s_tr = zs - size[0] - 10
    xy, h = st.path.at(s_tr, -side * (st.kerb - size[1] / 2 - 0.3))
    O.static("trailer", xy, float(h) + (0 if -side < 0 else math.pi), lwh=size, parked=True, prio=0)
    # ---- sidewalks: walkers, standing people, parked two-wheelers -----------------------------------------
    for st_i, st in enumerate(streets):
        lo, hi = (s_lo - 20, s_hi + 20) if st_i == 0 else (st.path.length / 2 - 100.0, st.path.length / 2 + 100.0)
        density = rng.uniform(0.04, 0.14)  # people per metre of sidewalk
        for side in (-1.0, 1.0):
            cur = lo
            while cur < hi:
                cur += rng.exponential(1.0 / density)
                r = rng.random()
                d_in = side * (st.kerb + st.sidewalk * rng.uniform(0.45, 0.8))
                if r < 0.62:
                    v = float(rng.choice([-1, 1])) * rng.uniform(0.9, 1.6)
                    s_t = cur + v * (tgrid - tgrid[0])
                    O.add("pedestrian", _track(st.path, s_t, d_in, flip=v < 0), base=SIDEWALK_H, prio=6)
                elif r < 0.92:
                    xy, _h = st.path.at(cur, d_in)
                    O.static("pedestrian", xy, rng.uniform(-math.pi, math.pi), base=SIDEWALK_H, prio=6)
                elif r < 0.97:
                    c = "bicycle" if rng.random() < 0.6 else "motorcycle"
                    xy, h = st.path.at(cur, side * (st.kerb + 0.6))
                    O.static(c, xy, float(h) + math.pi * float(rng.integers(0, 2)), base=SIDEWALK_H, prio=5)
    # ---- people crossing in front of the stopped ego ----------------------------------------------------
    windows = []
    if "cross_window" in extra:
        windows.append((main, extra["crosswalk"], *extra["cross_window"]))
    if "phases" in extra:
        cross = streets[1]
        t_red, t_green = extra["phases"]
        windows.append((main, extra["center"][0] - cross.kerb - CW_OFF, t_red + 0.5, t_green))
        windows.append((main, extra["center"][0] + cross.kerb + CW_OFF, t_red + 0.5, t_green))
    for st, s_cw, t_on, t_off in windows:
        for _ in range(int(rng.integers(2, 6))):
            side = float(rng.choice([-1, 1]))
            speed = rng.uniform(1.0, 1.6)
            d_from = side * (st.kerb + 1.0)
            start = rng.uniform(t_on, max(t_on + 0.1, t_off - 2 * st.kerb / speed))
            d_t = d_from - side * speed * np.clip(tgrid - start, 0, None)
            d_t = np.clip(d_t, -st.kerb - 1.0, st.kerb + 1.0)
            s_here = s_cw + rng.uniform(-1.5, 1.5)
            xy, h = st.path.at(np.full(G, s_here), d_t)
            tr = np.zeros((G, 3))
            tr[:, :2] = xy
            tr[:, 2] = h - side * math.pi / 2
            O.add("pedestrian", tr, prio=5)
    # ---- static structures: buildings, furniture, kerbs -------------------------------------------------
    SB = shapes.Builder()
    lights: list = []
    feet: list = []
    furniture: list = []  # (kind, x, y) of every piece of street furniture, for the clutter false-alarm metric
    free = prep(unary_union([road.buffer(0.5), walk, lot.buffer(1.0) if lot is not None else Polygon()]))
    placed = []

    def _static_span(st, st_i):
        """Where statics stand along a street: around the drive (150 m beyond the ego's reach)."""
        if st_i == 0:
            return max(20.0, s_e0 - 150.0), min(st.path.length - 20.0, s_e0 + 12.0 * T + 150.0)
        return max(20.0, st.path.length / 2 - 150.0), min(st.path.length - 20.0, st.path.length / 2 + 150.0)

    def foot_of(xy, yaw, L, W):
        return footprints(np.asarray(xy, float)[None], np.array([yaw]), np.array([L]), np.array([W]))[0]

    for st_i, st in enumerate(streets):
        for side in (-1.0, 1.0):
            # buildings behind the sidewalk
            start, end = _static_span(st, st_i)
            cur = start
            while cur < end:
                L = rng.uniform(12, 35)
                D = rng.uniform(10, 20)
                setback = rng.uniform(0.3, 4.0)
                xy, h = st.path.at(cur + L / 2, side * (st.kerb + st.sidewalk + setback + D / 2))
                poly = Polygon(foot_of(xy, float(h), L, D))
                if not free.intersects(poly) and not any(p.intersects(poly) for p in placed[-8:]):
                    placed.append(poly)
                    shapes.building(SB, rng, xy, float(h), L, D, rng.uniform(5, 24), 0.0)
                    feet.append(foot_of(xy, float(h), L, D))
                cur += L + rng.uniform(1.0, 10.0)
            # furniture along the kerb (0.5 m in) and fences / hedges at the back of the sidewalk
            cur = start
            trees = rng.random() < 0.6
            kinds = {"lamp": 0.16, "sign": 0.2, "pole": 0.1, "tree": 0.24 if trees else 0.0, "hydrant": 0.06,
                     "bollard": 0.08, "bin": 0.07, "meter": 0.07 if st.parking else 0.0, "shelter": 0.02}
            while cur < end:
                cur += rng.uniform(2.5, 9.0)
                kind = _choice(rng, kinds)
                d = side * (st.kerb + rng.uniform(0.35, 0.7))
                if kind == "tree":  # the crown (radius <= 1.8 m) stays over the sidewalk
                    if st.sidewalk < 2.5:
                        continue
                    d = side * (st.kerb + 2.0)
                xy, h = st.path.at(cur, d)
                if road.buffer(0.3).contains(Point(xy)):
                    continue
                n0 = len(SB.rows)
                shapes.furniture(SB, rng, kind, xy, SIDEWALK_H, float(h) + (0 if side < 0 else math.pi), lights)
                furniture.append((kind, float(xy[0]), float(xy[1])))
                for r in SB.rows[n0:]:
                    if r[0][2] - r[1][2] < 2.0:
                        feet.append(foot_of(r[0][:2], r[2], 2 * r[1][0], 2 * r[1][1]))
            cur = start
            while cur < end:
                L = rng.uniform(6, 25)
                if rng.random() < 0.35:
                    hedge = rng.random() < 0.5
                    d = side * (st.kerb + st.sidewalk - 0.45)
                    k = cur
                    while k < cur + L:
                        a, _ = st.path.at(k, d)
                        b, _ = st.path.at(min(k + 4.0, cur + L), d)
                        if not road.buffer(0.3).intersects(LineString([a, b])):
                            n0 = len(SB.rows)
                            shapes.fence(SB, rng, a, b, SIDEWALK_H, hedge)
                            r = SB.rows[n0]
                            feet.append(foot_of(r[0][:2], r[2], 2 * r[1][0], 2 * r[1][1]))
                        k += 4.0
                cur += L + rng.uniform(5, 30)
            # kerb: the raised sidewalk, 4 m pieces
            k = start - 10.0
            while k < end + 10.0:
                xy, h = st.path.at(k + 2.0, side * (st.kerb + st.sidewalk / 2))
                piece = Polygon(foot_of(xy, float(h), 4.0, st.sidewalk))
                if walk.buffer(0.05).contains(piece.centroid) and not road.intersects(piece.buffer(-0.2)):
                    SB.add((xy[0], xy[1], SIDEWALK_H - 0.25), (2.02, st.sidewalk / 2, 0.25), (150, 150, 146), 20,
                           0.02, yaw=float(h), rcs=rng.normal(-6, 4))
                k += 4.0
    # ---- keep the objects that never overlap anything --------------------------------------------------
    static_foot = np.array(feet) if feet else np.zeros((0, 4, 2))
    keep = _resolve_overlaps(O, ego_traj, static_foot)
    rows = [O.rows[i] for i in keep]
    # ---- place the scene in positive world coordinates, rotated -------------------------------------------
    theta = float(rng.uniform(-math.pi, math.pi))
    Rz = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    ego_c = ego_traj[:, :2].mean(axis=0)
    half = 160.0
    corners = (np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half + ego_c) @ Rz.T
    origin = 10.0 - corners.min(axis=0)
    extent = corners.max(axis=0) + origin + 10.0

    def tf_xy(xy):
        return np.asarray(xy) @ Rz.T + origin

    def tf_traj(tr):
        out = tr.copy()
        out[..., :2] = tf_xy(tr[..., :2])
        out[..., 2] = tr[..., 2] + theta
        return out

    st_arr = SB.arrays()
    st_arr["center"][:, :2] = tf_xy(st_arr["center"][:, :2])
    st_arr["yaw"] = st_arr["yaw"] + theta
    lights_w = np.array(lights).reshape(-1, 3)
    if len(lights_w):
        lights_w[:, :2] = tf_xy(lights_w[:, :2])
    ground = (float(rng.normal(0, 0.012)), float(rng.normal(0, 0.012)), 0.0)
    ec_w = tf_xy(ego_c)
    ground = (ground[0], ground[1], -(ground[0] * ec_w[0] + ground[1] * ec_w[1]))  # z ~ 0 near the ego
    # statics stand on the ground plane
    st_arr["center"][:, 2] += ground[0] * st_arr["center"][:, 0] + ground[1] * st_arr["center"][:, 1] + ground[2]
    if len(lights_w):
        lights_w[:, 2] += ground[0] * lights_w[:, 0] + ground[1] * lights_w[:, 1] + ground[2]
    ego_w = tf_traj(ego_traj)
    cls = [r["cls"] for r in rows]
    rider = np.array([bool(r["rider"]) for r in rows], bool)
    obj_shapes, rcs_k, lamps = shapes.object_shapes(rng, cls, np.array([r["lwh"] for r in rows]).reshape(-1, 3),
                                                    rider)
    map_w, map_h = int(math.ceil(extent[0] / MAP_RES)), int(math.ceil(extent[1] / MAP_RES))
    texture = _ground_texture(rng, streets, extra, road, walk, lot, tf_xy, map_w, map_h, rain)
    yaw_u = np.unwrap(ego_w[:, 2])
    k_idx = np.searchsorted(tgrid, np.arange(n_samples) * SAMPLE_PERIOD - 1e-9)
    turn = float(np.degrees(yaw_u[k_idx].max() - yaw_u[k_idx].min()))
    speed = np.hypot(*np.diff(ego_w[k_idx, :2], axis=0).T) / SAMPLE_PERIOD
    looks = _looks(rng, night, rain)
    return Scene(
        index=index, name=name, seed=seed, n_samples=n_samples, place=place, night=night, rain=rain,
        tgrid=tgrid, ego=ego_w, cls=np.array([CLASS_NAMES.index(c) for c in cls], np.int64),
        lwh=np.array([r["lwh"] for r in rows]).reshape(-1, 3),
        traj=np.stack([tf_traj(r["traj"]) for r in rows]) if rows else np.zeros((0, G, 3)),
        base=np.array([r["base"] for r in rows], float), parked=np.array([r["parked"] for r in rows], bool),
        rider=rider, ground=ground, streets=streets,
        statics=dict(prims=st_arr, lights=lights_w,
                     furniture=dict(kind=np.array([f[0] for f in furniture], dtype=object),
                                    xy=tf_xy(np.array([f[1:] for f in furniture], float).reshape(-1, 2)))),
        texture=texture, map_size=(map_w, map_h),
        ego_turn_deg=turn, ego_stops=bool(len(speed) and speed.min() < 0.2),
        shapes=dict(prims=obj_shapes, rcs_k=rcs_k, lamps=lamps), looks=looks,
    )


def _looks(rng, night: bool, rain: bool) -> dict:
    """Light, sky and camera settings of a scene."""
    az, el = rng.uniform(-math.pi, math.pi), rng.uniform(0.25, 1.1)
    sun = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    if night:
        return dict(sun=sun, sun_k=0.0, ambient=0.06, sky_top=np.array([8.0, 10, 18]),
                    sky_hor=np.array([25.0, 24, 30]), fog=250.0, gain=rng.uniform(1.2, 1.6), noise=8.0)
    if rain:
        return dict(sun=sun, sun_k=0.15, ambient=0.62, sky_top=np.array([140.0, 145, 150]),
                    sky_hor=np.array([170.0, 172, 175]), fog=180.0, gain=rng.uniform(0.9, 1.1), noise=3.5)
    top = np.array([150.0, 168, 196]) * rng.uniform(0.85, 1.1)
    return dict(sun=sun, sun_k=rng.uniform(0.4, 0.6), ambient=rng.uniform(0.45, 0.6), sky_top=top,
                sky_hor=np.array([200.0, 204, 210]) * rng.uniform(0.9, 1.05), fog=rng.uniform(400, 900),
                gain=rng.uniform(0.85, 1.15), noise=2.0)


def _ground_texture(rng, streets, extra, road, walk, lot, tf_xy, W, H, rain) -> dict:
    """Ground colour and lidar reflectivity at MAP_RES, and the drivable mask (world x -> column, y -> row)."""
    rgb = np.zeros((H, W, 3), np.uint8)
    refl = np.zeros((H, W), np.uint8)
    drivable = np.zeros((H, W), np.uint8)
    grass = np.array([95, 112, 72]) * rng.uniform(0.8, 1.1)
    rgb[:] = grass.astype(np.uint8)
    refl[:] = 14

    def px(coords):
        return np.round(tf_xy(np.asarray(coords)) / MAP_RES).astype(np.int32)

    def fill(geom, color, r, mask=None):
        polys = getattr(geom, "geoms", [geom])
        for p in polys:
            if p.is_empty or not hasattr(p, "exterior"):
                continue
            cv2.fillPoly(rgb, [px(p.exterior.coords)], tuple(int(c) for c in color))
            cv2.fillPoly(refl, [px(p.exterior.coords)], int(r))
            if mask is not None:
                cv2.fillPoly(mask, [px(p.exterior.coords)], 1)
            for hole in p.interiors:
                cv2.fillPoly(rgb, [px(hole.coords)], tuple(int(c) for c in grass))
                cv2.fillPoly(refl, [px(hole.coords)], 14)
    asphalt = np.array([78, 80, 84]) * rng.uniform(0.8, 1.2) * (0.7 if rain else 1.0)
    fill(walk, np.array([150, 150, 145]) * rng.uniform(0.85, 1.1) * (0.75 if rain else 1.0), 22)
    fill(road, asphalt, 9, drivable)
    if lot is not None:
        fill(lot, asphalt * 1.05, 10, drivable)
    white = (215, 215, 210)
    yellow = (215, 180, 60)
    centre_col = yellow if rng.random() < 0.5 else white

    def line(path, d, dashed, color, width=0.13, lo=0.0, hi=None):
        hi = path.length if hi is None else hi
        s = np.arange(lo, hi, 0.5)
        xy, _ = path.at(s, d)
        p = px(xy)
        th = max(1, int(round(width / MAP_RES)))
        for k in range(len(p) - 1):
            if dashed and (s[k] % 9.0) >= 3.0:
                continue
            a, b = (int(p[k, 0]), int(p[k, 1])), (int(p[k + 1, 0]), int(p[k + 1, 1]))
            cv2.line(rgb, a, b, color, th)
            cv2.line(refl, a, b, 65, th)

    inter = extra.get("center")
    for st in streets:
        segs = [(0.0, st.path.length)]
        if inter is not None:
            s_c = st.path.project(inter)
            other = max(s.kerb for s in streets)
            segs = [(0.0, s_c - other - 4.0), (s_c + other + 4.0, st.path.length)]
        for lo, hi in segs:
            line(st.path, 0.0, False, centre_col, lo=lo, hi=hi)
            for k in range(1, st.lanes):
                line(st.path, k * st.lane_w, True, white, lo=lo, hi=hi)
                line(st.path, -k * st.lane_w, True, white, lo=lo, hi=hi)
            for sgn in (-1, 1):
                line(st.path, sgn * st.lanes * st.lane_w, False, white, 0.12, lo=lo, hi=hi)
    # crosswalks: stripes across the main street
    cws = []
    if "crosswalk" in extra:
        cws.append(extra["crosswalk"])
    if inter is not None:
        cross = streets[1]
        cws += [inter[0] - cross.kerb - CW_OFF, inter[0] + cross.kerb + CW_OFF]
    main = streets[0]
    for s_cw in cws:
        for d in np.arange(-main.kerb + 0.3, main.kerb - 0.3, 1.2):
            quad = [main.path.at(s_cw - 1.5, d)[0], main.path.at(s_cw + 1.5, d)[0],
                    main.path.at(s_cw + 1.5, d + 0.6)[0], main.path.at(s_cw - 1.5, d + 0.6)[0]]
            cv2.fillPoly(rgb, [px(quad)], white)
            cv2.fillPoly(refl, [px(quad)], 60)
    if lot is not None:
        x0, y0, x1, y1 = lot.bounds
        for x in np.arange(x0 + 0.65, x1, 2.7):
            for y in np.arange(y0 + 1.0, y1 - 5, 13.0):
                for yy in (y, y + 5.6):
                    a, b = px([x, yy]), px([x, yy + 5.2])
                    cv2.line(rgb, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), white, 1)
    # wear: low-frequency blotches and fine grain
    blot = cv2.resize(rng.normal(0, 1, (max(2, H // 40), max(2, W // 40))).astype(np.float32), (W, H))
    grain = rng.normal(0, 1, (H, W)).astype(np.float32)
    shade = 1.0 + 0.07 * blot + 0.035 * grain
    rgb = np.clip(rgb.astype(np.float32) * shade[..., None], 0, 255).astype(np.uint8)
    refl = np.clip(refl.astype(np.float32) * (1.0 + 0.15 * blot + 0.1 * grain), 0, 255).astype(np.uint8)
    return dict(rgb=rgb, refl=refl, drivable=drivable.astype(bool))
