"""Places: a scene's streets (main street first, a cross street at an intersection, a parking lot beside the
main street) in the scene's local frame, their road / sidewalk / lot polygons, and the distances that place
stop lines and crosswalks relative to the kerbs."""

from __future__ import annotations

import math

import numpy as np
from shapely.geometry import LineString, Polygon
from shapely.ops import unary_union

from perception.sources.synthetic.world import Path, Street

CW_OFF = 2.5     # intersection crosswalks: centre this far beyond the cross street's kerb (stripes +-1.5 m)
STOP_BACK = 6.0  # stop lines this far before the cross street's kerb: 2 m before the crosswalk


def place_streets(rng, place: str, T: float) -> tuple[list[Street], dict]:
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


def road_polys(streets: list[Street], extra: dict):
    """(road, sidewalk, parking lot or None) polygons of the streets; the sidewalks leave the lot out."""
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
