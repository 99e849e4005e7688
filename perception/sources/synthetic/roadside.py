"""Objects beside and across the road: the construction zone (barriers, cones, a machine, workers) and a
parked trailer near the ego's drive, people and parked two-wheelers on the sidewalks, and people crossing
in front of the stopped ego at crosswalks."""

from __future__ import annotations

import math

import numpy as np

from perception.sources.synthetic.objects import Objects, track
from perception.sources.synthetic.streets import CW_OFF
from perception.sources.synthetic.world import SIDEWALK_H, Street, sample_size


def construction_zone(rng, O: Objects, main: Street, s_e0: float, v_ego: float, T: float) -> None:
    """Barriers in a row, cones, a machine and workers on one side of the main street, and a parked trailer
    on the other. Every scene has them near the ego's drive (from arclength ``s_e0`` at ``v_ego`` for T
    seconds), so that every split holds every class (the devkit's mAP averages all 10)."""
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


def sidewalk_people(rng, O: Objects, streets: list[Street], tgrid: np.ndarray, span: tuple[float, float]) -> None:
    """Walkers, standing people and parked two-wheelers on both sidewalks of every street; ``span``: the main
    street's stretch (arclengths) around the drive."""
    s_lo, s_hi = span
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
                    O.add("pedestrian", track(st.path, s_t, d_in, flip=v < 0), base=SIDEWALK_H, prio=6)
                elif r < 0.92:
                    xy, _h = st.path.at(cur, d_in)
                    O.static("pedestrian", xy, rng.uniform(-math.pi, math.pi), base=SIDEWALK_H, prio=6)
                elif r < 0.97:
                    c = "bicycle" if rng.random() < 0.6 else "motorcycle"
                    xy, h = st.path.at(cur, side * (st.kerb + 0.6))
                    O.static(c, xy, float(h) + math.pi * float(rng.integers(0, 2)), base=SIDEWALK_H, prio=5)


def crossing_people(rng, O: Objects, streets: list[Street], extra: dict, tgrid: np.ndarray) -> None:
    """People crossing the main street in front of the stopped ego: at the crosswalk ahead in its window, and
    at both of the intersection's main-street crosswalks while the ego's light is red."""
    G = len(tgrid)
    main = streets[0]
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
