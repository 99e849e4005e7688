"""Static structures along every street: buildings behind the sidewalks, street furniture at the kerb
(lamps, signs, poles, trees, hydrants, bollards, bins, meters, shelters), fences and hedges at the back of the
sidewalk, and the raised kerb pieces, as ``shapes`` primitives with the footprints that the overlap pass keeps
objects out of."""

from __future__ import annotations

import math

import numpy as np
from shapely.geometry import LineString, Point, Polygon
from shapely.ops import unary_union
from shapely.prepared import prep

from perception.geometry import footprints
from perception.sources.synthetic import shapes
from perception.sources.synthetic.objects import choice
from perception.sources.synthetic.world import SIDEWALK_H, Street


def static_span(st: Street, st_i: int, s_e0: float, T: float) -> tuple[float, float]:
    """Where statics stand along a street: around the drive (150 m beyond the ego's reach)."""
    if st_i == 0:
        return max(20.0, s_e0 - 150.0), min(st.path.length - 20.0, s_e0 + 12.0 * T + 150.0)
    return max(20.0, st.path.length / 2 - 150.0), min(st.path.length - 20.0, st.path.length / 2 + 150.0)


def foot_of(xy, yaw, L, W) -> np.ndarray:
    """(4, 2) corners of one L x W footprint at xy turned by yaw."""
    return footprints(np.asarray(xy, float)[None], np.array([yaw]), np.array([L]), np.array([W]))[0]


def static_structures(rng, streets: list[Street], road, walk, lot, s_e0: float, T: float):
    """Buildings, furniture, fences / hedges and kerbs of every street, both sides, around the drive from
    arclength ``s_e0`` over T seconds. Returns the primitives (``shapes.Builder``), the lights, the footprints
    (4, 2) of everything low enough to stand in an object's way, and (kind, x, y) of every piece of street
    furniture (for the clutter false-alarm metric)."""
    SB = shapes.Builder()
    lights: list = []
    feet: list = []
    furniture: list = []
    free = prep(unary_union([road.buffer(0.5), walk, lot.buffer(1.0) if lot is not None else Polygon()]))
    placed: list = []
    for st_i, st in enumerate(streets):
        for side in (-1.0, 1.0):
            start, end = static_span(st, st_i, s_e0, T)
            _buildings(rng, SB, feet, placed, free, st, side, start, end)
            _kerb_furniture(rng, SB, feet, lights, furniture, road, st, side, start, end)
            _fences(rng, SB, feet, road, st, side, start, end)
            _kerb_pieces(rng, SB, road, walk, st, side, start, end)
    return SB, lights, feet, furniture


def _buildings(rng, SB, feet: list, placed: list, free, st: Street, side: float, start: float, end: float):
    """Buildings behind the sidewalk, clear of the free ground (``free``) and of the last placed buildings."""
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


def _kerb_furniture(rng, SB, feet: list, lights: list, furniture: list, road, st: Street, side: float,
                    start: float, end: float):
    """Street furniture along the kerb (0.5 m in); trees stand further in, on wide sidewalks only."""
    cur = start
    trees = rng.random() < 0.6
    kinds = {"lamp": 0.16, "sign": 0.2, "pole": 0.1, "tree": 0.24 if trees else 0.0, "hydrant": 0.06,
             "bollard": 0.08, "bin": 0.07, "meter": 0.07 if st.parking else 0.0, "shelter": 0.02}
    while cur < end:
        cur += rng.uniform(2.5, 9.0)
        kind = choice(rng, kinds)
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


def _fences(rng, SB, feet: list, road, st: Street, side: float, start: float, end: float):
    """Fences and hedges in 4 m pieces at the back of the sidewalk, in runs with gaps between them."""
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


def _kerb_pieces(rng, SB, road, walk, st: Street, side: float, start: float, end: float):
    """The kerb: the raised sidewalk, 4 m pieces where the sidewalk is."""
    k = start - 10.0
    while k < end + 10.0:
        xy, h = st.path.at(k + 2.0, side * (st.kerb + st.sidewalk / 2))
        piece = Polygon(foot_of(xy, float(h), 4.0, st.sidewalk))
        if walk.buffer(0.05).contains(piece.centroid) and not road.intersects(piece.buffer(-0.2)):
            SB.add((xy[0], xy[1], SIDEWALK_H - 0.25), (2.02, st.sidewalk / 2, 0.25), (150, 150, 146), 20,
                   0.02, yaw=float(h), rcs=rng.normal(-6, 4))
        k += 4.0
