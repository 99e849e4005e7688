"""Traffic: the ego's drive with its lane's leaders and followers, movers on every other lane (cars, bikes,
lane changes, red lights and crosswalks), parked vehicles along the kerbs, turning traffic at an
intersection, and the parking lot's stalls, walkers and leaving cars. Every function draws from the scene's
generator in the order ``layout.build`` calls it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perception.sources.synthetic.objects import EGO_FOOT, PARK_MIX, ROAD_MIX, Objects, choice, lane_change, track
from perception.sources.synthetic.streets import STOP_BACK
from perception.sources.synthetic.world import Path, Street, curve_limit, idm, sample_size


@dataclass
class EgoDrive:
    """The ego's drive: its track (G, 3) in the local frame, its lane on the main street, its desired speed
    and the main street arclength it starts at."""
    traj: np.ndarray
    lane: int
    speed: float
    s0: float


def ego_drive(rng, O: Objects, place: str, manoeuvre: str, streets: list[Street], extra: dict,
              tgrid: np.ndarray, T: float) -> EgoDrive:
    """The ego's path and drive, and the leaders and followers in its lane (added to ``O``), all in one
    car-following model. Adds to ``extra`` the signal phases (intersection) or a crosswalk ahead and the
    window in which people cross it."""
    main = streets[0]
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
        lane_cls.append(choice(rng, ROAD_MIX))
        cur += 5
    cur = s_e - 5.0
    while cur > s_e - 60:
        cur -= rng.uniform(10, 40)
        lane_s.append(cur)
        lane_cls.append(choice(rng, ROAD_MIX))
        cur -= 5
    sizes = [None if c == "ego" else sample_size(rng, c) for c in lane_cls]
    lane_l = np.array([EGO_FOOT[2] if sz is None else sz[0] for sz in sizes])
    v_des = np.array([v_ego] + [v_ego * rng.uniform(0.9, 1.2) for _ in lane_cls[1:]])
    S = idm(tgrid, np.array(lane_s), v_des, lane_l, stops=stops, v_init=v_des * 0.9, vlimit=curve_limit(ego_path))
    ego_traj = track(ego_path, S[0] - EGO_FOOT[0])
    for k in range(1, len(lane_cls)):
        O.add(lane_cls[k], track(ego_path, S[k]), lwh=sizes[k], rider=lane_cls[k] == "motorcycle", prio=1)
    return EgoDrive(traj=ego_traj, lane=lane_k, speed=v_ego, s0=s_e0)


def fill_lane(rng, O: Objects, tgrid: np.ndarray, path: Path, lo, hi, speed, mix, gap, prio, lane_stops=(),
              rider=True, change=0.0) -> None:
    """Movers on one lane path between arclengths lo and hi; ``change``: sideways distance to the neighbouring
    lane (0: none) that about one in six takes in a smooth lane change (the overlap pass drops any that would
    cut into another)."""
    if hi <= lo:
        return
    s_list, cls_list, sz = [], [], []
    cur = lo + rng.uniform(0, gap[1])
    while cur < hi:
        c = choice(rng, mix)
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
            d = d + lane_change(rng, tgrid, change)
        O.add(c, track(path, Sx[k], d), lwh=sz[k], rider=rider and c in ("bicycle", "motorcycle"), prio=prio)


def lane_stop_list(path: Path, for_main: bool, streets: list[Street], extra: dict) -> list[tuple]:
    """(arclength, from, until) stops on a lane path: the red light (main street) or the cross street's wait
    for its green, and the crosswalk's window on the main street."""
    main = streets[0]
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


def street_traffic(rng, O: Objects, streets: list[Street], extra: dict, tgrid: np.ndarray, T: float, place: str,
                   drive: EgoDrive, span: tuple[float, float]) -> None:
    """Every street's other lanes, bike lanes and kerbside parking; ``span``: the main street's stretch
    (arclengths) around the drive."""
    s_lo, s_hi = span
    v_ego, lane_k = drive.speed, drive.lane
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
                fill_lane(rng, O, tgrid, path, plo, phi, speed, ROAD_MIX, gap, prio=2,
                          lane_stops=lane_stop_list(path, is_main, streets, extra), change=change)
        if st.bike:
            for direction in (1, -1):
                d = -(st.lanes * st.lane_w + 0.75)
                path = st.path.offset(d) if direction == 1 else st.path.offset(-d, reverse=True)
                plo, phi = (lo, hi) if direction == 1 else (max(0.0, path.length - hi), path.length - lo)
                fill_lane(rng, O, tgrid, path, plo, phi, rng.uniform(3.5, 6.0), {"bicycle": 0.7, "motorcycle": 0.3},
                          (30, 120), prio=3)
        if st.parking:
            kerb_parking(rng, O, st, lo, hi, is_main, extra)


def kerb_parking(rng, O: Objects, st: Street, lo: float, hi: float, is_main: bool, extra: dict) -> None:
    """Parked vehicles along both kerbs of a street between arclengths lo and hi, except near the
    intersection and crosswalks."""
    for side in (-1.0, 1.0):
        cur = lo
        while cur < hi:
            c = choice(rng, PARK_MIX)
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


def turning_traffic(rng, O: Objects, streets: list[Street], extra: dict, tgrid: np.ndarray) -> None:
    """One to three vehicles turning from the cross street onto the main street, waiting for their green."""
    main = streets[0]
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
        c = choice(rng, {"car": 0.9, "truck": 0.1})
        size = sample_size(rng, c)
        start = rng.uniform(10.0, 55.0)
        S1 = idm(tgrid, np.array([start]), np.array([rng.uniform(5, 8)]), np.array([size[0]]),
                 stops=[(60.0, -10.0, t_red + 1.0), (60.0, t_green - 1.0, 1e9)], vlimit=curve_limit(path))
        O.add(c, track(path, S1[0]), lwh=size, prio=3)


def parking_lot(rng, O: Objects, main: Street, extra: dict, tgrid: np.ndarray) -> None:
    """The parking lot: stalls at right angles to the street, people walking between them, cars leaving."""
    G = len(tgrid)
    side, s0, L, D = extra["lot"]
    off = main.kerb + main.sidewalk
    for row in range(int(D // 13)):
        y_row = side * (off + 1.0 + row * 13.0 + 2.7)
        for half in (0, 1):
            yy = y_row + side * half * 5.6
            x = s0 - L / 2 + 2.0
            while x < s0 + L / 2 - 2.0:
                if rng.random() < 0.72:
                    c = choice(rng, {"car": 0.93, "truck": 0.05, "construction_vehicle": 0.02})
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
        O.add("car", track(path, S1[0]), prio=3)
