"""The ground texture: colour and lidar reflectivity at MAP_RES (grass, sidewalks, asphalt, lane markings,
crosswalk stripes, parking stalls, wear) and the drivable mask, painted in world coordinates."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from perception.sources.synthetic.streets import CW_OFF
from perception.sources.synthetic.world import MAP_RES, Path, Street

GRASS_REFL = 14


def ground_texture(rng, streets: list[Street], extra: dict, road, walk, lot, to_world: Callable, W: int, H: int,
                   rain: bool) -> dict:
    """Ground colour and lidar reflectivity at MAP_RES, and the drivable mask (world x -> column, y -> row);
    ``to_world`` maps the scene's local xy (..., 2) to world xy."""
    rgb = np.zeros((H, W, 3), np.uint8)
    refl = np.zeros((H, W), np.uint8)
    drivable = np.zeros((H, W), np.uint8)
    grass = np.array([95, 112, 72]) * rng.uniform(0.8, 1.1)
    rgb[:] = grass.astype(np.uint8)
    refl[:] = GRASS_REFL
    asphalt = np.array([78, 80, 84]) * rng.uniform(0.8, 1.2) * (0.7 if rain else 1.0)
    sidewalk = np.array([150, 150, 145]) * rng.uniform(0.85, 1.1) * (0.75 if rain else 1.0)
    _fill(rgb, refl, to_world, grass, walk, sidewalk, 22)
    _fill(rgb, refl, to_world, grass, road, asphalt, 9, drivable)
    if lot is not None:
        _fill(rgb, refl, to_world, grass, lot, asphalt * 1.05, 10, drivable)
    white = (215, 215, 210)
    yellow = (215, 180, 60)
    centre_col = yellow if rng.random() < 0.5 else white

    inter = extra.get("center")
    for st in streets:
        segs = [(0.0, st.path.length)]
        if inter is not None:
            s_c = st.path.project(inter)
            other = max(s.kerb for s in streets)
            segs = [(0.0, s_c - other - 4.0), (s_c + other + 4.0, st.path.length)]
        for lo, hi in segs:
            _line(rgb, refl, to_world, st.path, 0.0, False, centre_col, lo=lo, hi=hi)
            for k in range(1, st.lanes):
                _line(rgb, refl, to_world, st.path, k * st.lane_w, True, white, lo=lo, hi=hi)
                _line(rgb, refl, to_world, st.path, -k * st.lane_w, True, white, lo=lo, hi=hi)
            for sgn in (-1, 1):
                _line(rgb, refl, to_world, st.path, sgn * st.lanes * st.lane_w, False, white, 0.12, lo=lo, hi=hi)
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
            cv2.fillPoly(rgb, [_px(to_world, quad)], white)
            cv2.fillPoly(refl, [_px(to_world, quad)], 60)
    if lot is not None:
        x0, y0, x1, y1 = lot.bounds
        for x in np.arange(x0 + 0.65, x1, 2.7):
            for y in np.arange(y0 + 1.0, y1 - 5, 13.0):
                for yy in (y, y + 5.6):
                    a, b = _px(to_world, [x, yy]), _px(to_world, [x, yy + 5.2])
                    cv2.line(rgb, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), white, 1)
    # wear: low-frequency blotches and fine grain
    blot = cv2.resize(rng.normal(0, 1, (max(2, H // 40), max(2, W // 40))).astype(np.float32), (W, H))
    grain = rng.normal(0, 1, (H, W)).astype(np.float32)
    shade = 1.0 + 0.07 * blot + 0.035 * grain
    rgb = np.clip(rgb.astype(np.float32) * shade[..., None], 0, 255).astype(np.uint8)
    refl = np.clip(refl.astype(np.float32) * (1.0 + 0.15 * blot + 0.1 * grain), 0, 255).astype(np.uint8)
    return dict(rgb=rgb, refl=refl, drivable=drivable.astype(bool))


def _px(to_world: Callable, coords) -> np.ndarray:
    """Pixel (column, row) of local xy coordinates."""
    return np.round(to_world(np.asarray(coords)) / MAP_RES).astype(np.int32)


def _fill(rgb: np.ndarray, refl: np.ndarray, to_world: Callable, grass, geom, color, r, mask=None) -> None:
    """Paint a (multi)polygon's area in ``color`` with reflectivity ``r`` (and 1 into ``mask``); its holes
    go back to grass."""
    polys = getattr(geom, "geoms", [geom])
    for p in polys:
        if p.is_empty or not hasattr(p, "exterior"):
            continue
        cv2.fillPoly(rgb, [_px(to_world, p.exterior.coords)], tuple(int(c) for c in color))
        cv2.fillPoly(refl, [_px(to_world, p.exterior.coords)], int(r))
        if mask is not None:
            cv2.fillPoly(mask, [_px(to_world, p.exterior.coords)], 1)
        for hole in p.interiors:
            cv2.fillPoly(rgb, [_px(to_world, hole.coords)], tuple(int(c) for c in grass))
            cv2.fillPoly(refl, [_px(to_world, hole.coords)], GRASS_REFL)


def _line(rgb: np.ndarray, refl: np.ndarray, to_world: Callable, path: Path, d: float, dashed: bool, color,
          width: float = 0.13, lo: float = 0.0, hi: float | None = None) -> None:
    """A lane marking d metres left of a path between arclengths lo and hi (dashed: 3 m of every 9 m)."""
    hi = path.length if hi is None else hi
    s = np.arange(lo, hi, 0.5)
    xy, _ = path.at(s, d)
    p = _px(to_world, xy)
    th = max(1, int(round(width / MAP_RES)))
    for k in range(len(p) - 1):
        if dashed and (s[k] % 9.0) >= 3.0:
            continue
        a, b = (int(p[k, 0]), int(p[k, 1])), (int(p[k + 1, 0]), int(p[k + 1, 1]))
        cv2.line(rgb, a, b, color, th)
        cv2.line(refl, a, b, 65, th)
