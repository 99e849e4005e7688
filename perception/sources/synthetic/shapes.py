"""What things are made of: objects as a few primitives inside their annotation box, street furniture,
buildings, and the materials and colour palettes they are drawn from.

A primitive is an oriented box (centre, half sizes, yaw, pitch) with a surface: RGB, a second RGB for its
pattern, a texture kind, a lidar reflectivity and dropout probability, and a radar cross-section (dBsm).
Object primitives are stored in the object's box frame in units of the box size (so they always sit inside
the annotation box) and posed per time by the sensors; static primitives are stored in the world frame.
Colours come from palettes shared across classes (cars in the colours real cars have, trucks and buses in
theirs, clothes), with per-instance jitter: nothing tells a class by its hue alone.
"""

from __future__ import annotations

import math

import numpy as np

# texture kinds (the camera kernel draws them): plain with speckle, window grid (buildings), glass band
# (buses, trucks' cabs), diagonal stripes (barriers), foliage
PLAIN, WINDOWS, BAND, STRIPES, FOLIAGE = 0, 1, 2, 3, 4

# palettes: (RGB, weight). Car colours follow the world's fleet (white, black, grey and silver most).
CAR_PAINT = [((235, 235, 232), 25), ((22, 22, 25), 20), ((110, 112, 116), 18), ((175, 178, 182), 12),
             ((30, 60, 130), 9), ((150, 20, 25), 9), ((140, 115, 85), 3), ((35, 80, 45), 2), ((230, 170, 20), 2)]
TRUCK_PAINT = [((240, 240, 238), 45), ((150, 25, 25), 10), ((30, 60, 130), 10), ((110, 112, 116), 15),
               ((225, 180, 30), 8), ((35, 85, 50), 6), ((22, 22, 25), 6)]
BUS_PAINT = [((238, 238, 235), 35), ((230, 180, 30), 15), ((160, 30, 35), 15), ((30, 70, 150), 20),
             ((40, 110, 60), 15)]
CONSTRUCTION_PAINT = [((232, 175, 25), 55), ((225, 110, 20), 20), ((238, 238, 235), 15), ((110, 112, 116), 10)]
CYCLE_PAINT = [((22, 22, 25), 30), ((150, 20, 25), 15), ((30, 60, 130), 15), ((175, 178, 182), 15),
               ((235, 235, 232), 15), ((35, 80, 45), 10)]
CLOTHES = [((25, 25, 30), 25), ((35, 45, 80), 15), ((110, 112, 116), 12), ((225, 225, 222), 10),
           ((150, 30, 35), 8), ((175, 155, 120), 8), ((60, 85, 130), 12), ((45, 75, 50), 5), ((215, 200, 40), 5)]
SKIN = [((225, 190, 160), 30), ((190, 145, 110), 35), ((120, 85, 60), 35)]
CONE = [((235, 95, 20), 85), ((225, 60, 30), 15)]
BARRIER = [((230, 230, 228), 40), ((225, 110, 25), 25), ((150, 150, 148), 35)]


def pick(rng, palette, jitter: float = 0.08) -> np.ndarray:
    cols = np.array([c for c, _ in palette], float)
    w = np.array([p for _, p in palette], float)
    c = cols[int(rng.choice(len(cols), p=w / w.sum()))]
    return np.clip(c * rng.uniform(1 - jitter, 1 + jitter) + rng.normal(0, 6, 3), 0, 255)


def paint_refl(rng, rgb) -> tuple[float, float]:
    """Lidar reflectivity and dropout of a painted surface: dark paint returns less and drops more."""
    lum = float(np.dot(rgb, [0.3, 0.59, 0.11])) / 255.0
    return float(np.clip(6 + 45 * lum + rng.normal(0, 6), 2, 90)), float(0.02 + 0.25 * (1 - lum) ** 3)


class Builder:
    """Collects primitives (centre, half, yaw, pitch, rgb, rgb2, kind, refl, drop, rcs, owner)."""

    FIELDS = ("center", "half", "yaw", "pitch", "rgb", "rgb2", "kind", "refl", "drop", "rcs", "owner", "anim")

    def __init__(self):
        self.rows: list[tuple] = []

    def add(self, center, half, rgb, refl, drop=0.02, yaw=0.0, pitch=0.0, rgb2=None, kind=PLAIN, rcs=-30.0,
            owner=-1, anim=0):
        rgb = np.asarray(rgb, float)
        self.rows.append((np.asarray(center, float), np.asarray(half, float), float(yaw), float(pitch), rgb,
                          rgb if rgb2 is None else np.asarray(rgb2, float), int(kind), float(refl), float(drop),
                          float(rcs), int(owner), int(anim)))

    def arrays(self) -> dict:
        if not self.rows:
            z3 = np.zeros((0, 3))
            return dict(center=z3, half=z3, yaw=np.zeros(0), pitch=np.zeros(0), rgb=z3, rgb2=z3,
                        kind=np.zeros(0, np.int64), refl=np.zeros(0), drop=np.zeros(0), rcs=np.zeros(0),
                        owner=np.zeros(0, np.int64), anim=np.zeros(0, np.int64))
        cols = list(zip(*self.rows))
        out = {}
        for name, col in zip(self.FIELDS, cols):
            arr = np.array(col)
            out[name] = arr.astype(np.int64) if name in ("kind", "owner", "anim") else arr.astype(float)
        return out


# ------------------------------------------------------------------------------------------------------
# Objects, in box units: centre and half size as fractions of (l, w, h), box centre at the origin
# ------------------------------------------------------------------------------------------------------
def _wheels(B, i, xs, tyre, half=(0.08, 0.07, 0.14), z=-0.36, y=0.43):
    for x in xs:
        for sy in (-1, 1):
            B.add((x, sy * y, z), half, tyre, 4, 0.25, owner=i)


def _person(B, i, rng, lo: float, hi: float, y_half: float = 0.5, x: float = 0.0):
    """A person between heights lo..hi (box units) of the box: legs, torso, arms, head. anim codes 1..4 make
    legs and arms swing when walking."""
    top, bottom = pick(rng, CLOTHES), pick(rng, CLOTHES)
    skin = pick(rng, SKIN, 0.05)
    h = hi - lo
    rt, _ = paint_refl(rng, top)
    rb, _ = paint_refl(rng, bottom)
    for sy, a in ((-1, 1), (1, 2)):
        B.add((x, sy * 0.15 * y_half * 2, lo + 0.24 * h), (0.1, 0.1 * y_half * 2, 0.24 * h), bottom, rb, 0.05,
              owner=i, anim=a)
    B.add((x, 0, lo + 0.66 * h), (0.14, 0.28 * y_half * 2, 0.18 * h), top, rt, 0.04, owner=i)
    for sy, a in ((-1, 3), (1, 4)):
        B.add((x, sy * 0.4 * y_half * 2, lo + 0.64 * h), (0.07, 0.07 * y_half * 2, 0.18 * h), top, rt, 0.05,
              owner=i, anim=a)
    B.add((x + 0.02, 0, hi - 0.065 * h), (0.13, 0.14 * y_half * 2, 0.065 * h), skin, 22, 0.05, owner=i)


def object_shapes(rng, cls: list[str], lwh: np.ndarray, rider: np.ndarray) -> tuple[dict, np.ndarray,
                                                                                         np.ndarray]:
    """Primitives of every object (box units, owner = object index), each object's radar cross-section
    scale (m2 per m2 of silhouette) and whether it carries lights (headlights / tail lights at night)."""
    B = Builder()
    rcs_k = np.zeros(len(cls))
    lamps = np.zeros(len(cls), bool)
    for i, c in enumerate(cls):
        tyre = (28, 28, 30)
        glass = np.array((40, 48, 58)) * rng.uniform(0.8, 1.2)
        if c == "car":
            paint = pick(rng, CAR_PAINT)
            r, d = paint_refl(rng, paint)
            B.add((0, 0, -0.1), (0.5, 0.5, 0.22), paint, r, d, owner=i)
            cab_len = rng.uniform(0.22, 0.3)
            B.add((-0.05, 0, 0.31), (cab_len, 0.44, 0.19), paint, r, d, rgb2=glass, kind=BAND, owner=i)
            _wheels(B, i, (-0.32, 0.32), tyre)
            rcs_k[i], lamps[i] = 1.0, True
        elif c in ("truck", "construction_vehicle", "bus", "trailer"):
            paint = pick(rng, {"truck": TRUCK_PAINT, "bus": BUS_PAINT, "trailer": TRUCK_PAINT,
                               "construction_vehicle": CONSTRUCTION_PAINT}[c])
            r, d = paint_refl(rng, paint)
            if c == "truck":
                cab = pick(rng, TRUCK_PAINT) if rng.random() < 0.4 else paint
                B.add((0.38, 0, 0.0), (0.12, 0.48, 0.42), cab, r, d, rgb2=glass, kind=BAND, owner=i)
                B.add((-0.12, 0, 0.07), (0.37, 0.5, 0.43), paint, r, d, owner=i)
                _wheels(B, i, (-0.35, -0.2, 0.36), tyre, half=(0.05, 0.07, 0.1), z=-0.4)
                lamps[i] = True
            elif c == "bus":
                B.add((0, 0, 0.04), (0.5, 0.5, 0.42), paint, r, d, rgb2=glass, kind=BAND, owner=i)
                _wheels(B, i, (-0.3, 0.3), tyre, half=(0.05, 0.07, 0.08), z=-0.42)
                lamps[i] = True
            elif c == "trailer":
                B.add((-0.03, 0, 0.1), (0.47, 0.5, 0.4), paint, r, d, owner=i)
                B.add((0.47, 0, -0.3), (0.03, 0.05, 0.04), (60, 60, 60), 20, owner=i)
                _wheels(B, i, (-0.38, -0.28), tyre, half=(0.04, 0.07, 0.1), z=-0.4)
            else:
                B.add((-0.1, 0, -0.12), (0.38, 0.5, 0.22), paint, r, d, owner=i)
                B.add((-0.22, 0.15, 0.28), (0.14, 0.25, 0.18), paint, r, d, rgb2=glass, kind=BAND, owner=i)
                # boom: raised forward, pitched no more than keeps its top corner inside the box
                L, Hh = float(lwh[i, 0]), float(lwh[i, 2])
                pitch = min(0.45, math.asin(min(1.0, 0.3 * Hh / (0.24 * L))))
                B.add((0.22, 0, 0.12), (0.24, 0.06, 0.05), paint, r, d, pitch=-pitch, owner=i)
                B.add((0.44, 0, -0.3), (0.05, 0.4, 0.12), (70, 70, 72), 25, owner=i)          # bucket / blade
                for sy in (-1, 1):
                    B.add((-0.1, sy * 0.4, -0.42), (0.36, 0.1, 0.08), tyre, 5, 0.2, owner=i)
                lamps[i] = True
            rcs_k[i] = 1.0
        elif c in ("bicycle", "motorcycle"):
            paint = pick(rng, CYCLE_PAINT)
            r, d = paint_refl(rng, paint)
            frame_top = 0.05 if rider[i] else 0.3
            wheel_h = 0.22 if rider[i] else 0.3
            for x in (-0.33, 0.33):
                B.add((x, 0, -0.5 + wheel_h), (0.17, 0.06, wheel_h), tyre, 5, 0.3, owner=i)
            if c == "motorcycle":
                B.add((0, 0, -0.2 if rider[i] else -0.05), (0.3, 0.3, 0.15), paint, r, d, owner=i)
                rcs_k[i] = 0.5
                lamps[i] = bool(rider[i])
            else:
                B.add((0, 0, frame_top - 0.25), (0.3, 0.05, 0.04), paint, r, d, owner=i)
                B.add((0.05, 0, frame_top - 0.1), (0.04, 0.05, 0.18), paint, r, d, owner=i)
                rcs_k[i] = 0.25
            if rider[i]:
                _person(B, i, rng, -0.1, 0.5, y_half=0.45, x=-0.05)
        elif c == "pedestrian":
            _person(B, i, rng, -0.5, 0.5)
            rcs_k[i] = 0.08
        elif c == "traffic_cone":
            orange, white = pick(rng, CONE, 0.05), np.array((235, 235, 230))
            B.add((0, 0, -0.47), (0.5, 0.5, 0.03), (30, 30, 30), 6, owner=i)
            B.add((0, 0, -0.25), (0.32, 0.32, 0.2), orange, 35, owner=i)
            B.add((0, 0, 0.02), (0.23, 0.23, 0.07), white, 70 + rng.uniform(-25, 25), owner=i)
            B.add((0, 0, 0.27), (0.14, 0.14, 0.2), orange, 35, owner=i)
            rcs_k[i] = 0.05
        elif c == "barrier":
            col = pick(rng, BARRIER, 0.05)
            stripes = rng.random() < 0.5
            r, d = paint_refl(rng, col)
            B.add((0, 0, 0.12), (0.35, 0.5, 0.3), col, r + (15 if stripes else 0), d,
                  rgb2=(190, 30, 30) if stripes else None, kind=STRIPES if stripes else PLAIN, owner=i)
            for sy in (-1, 1):
                B.add((0, sy * 0.4, -0.32), (0.5, 0.06, 0.18), (60, 60, 62), 15, owner=i)
            rcs_k[i] = 0.3
    return B.arrays(), rcs_k, lamps


# ------------------------------------------------------------------------------------------------------
# Static structures, world frame: street furniture and buildings
# ------------------------------------------------------------------------------------------------------
METAL = (120, 122, 125)


def furniture(B: Builder, rng, kind: str, xy, z0: float, yaw: float, lights: list):
    """One piece of street furniture standing at world xy on a surface at height z0, facing yaw (the road
    direction it serves). Appends to B (owner -1) and to ``lights`` for street lamps."""
    x, y = xy
    c, s = math.cos(yaw), math.sin(yaw)
    if kind == "lamp":
        h = rng.uniform(6.5, 9.0)
        B.add((x, y, z0 + h / 2), (0.11, 0.11, h / 2), METAL, 45 + rng.normal(0, 10), rcs=rng.normal(8, 4))
        arm = 1.6
        # the arm reaches over the road (to the left of the facing direction's right side)
        ax, ay = x - s * arm / 2, y + c * arm / 2
        B.add((ax, ay, z0 + h - 0.1), (0.05, arm / 2, 0.05), METAL, 40, yaw=yaw, rcs=-10)
        B.add((x - s * arm, y + c * arm, z0 + h - 0.25), (0.3, 0.15, 0.08), (235, 235, 220), 50, yaw=yaw,
              rcs=-10)
        lights.append((x - s * arm, y + c * arm, z0 + h - 0.4))
    elif kind == "sign":
        h = rng.uniform(2.2, 3.2)
        B.add((x, y, z0 + h / 2), (0.05, 0.05, h / 2), METAL, 40, rcs=rng.normal(0, 4))
        col = [(200, 30, 30), (240, 240, 240), (30, 80, 160), (230, 190, 30), (35, 120, 60)][int(rng.integers(0, 5))]
        B.add((x, y, z0 + h + 0.3), (0.03, 0.35, 0.3), col, rng.uniform(90, 200), yaw=yaw,
              rcs=rng.normal(10, 5))
    elif kind == "pole":  # utility pole
        h = rng.uniform(7.0, 10.0)
        col = (105, 85, 65) if rng.random() < 0.5 else (150, 150, 148)
        B.add((x, y, z0 + h / 2), (0.14, 0.14, h / 2), col, 20 + rng.normal(0, 6), rcs=rng.normal(4, 4))
    elif kind == "tree":
        h = rng.uniform(2.2, 3.5)
        r = rng.uniform(0.12, 0.25)
        B.add((x, y, z0 + h / 2), (r, r, h / 2), (80, 62, 45), 18 + rng.normal(0, 5), 0.05, rcs=rng.normal(-4, 4))
        cr = rng.uniform(0.9, 1.8)
        green = np.array((60, 95, 45)) * rng.uniform(0.7, 1.2)
        for k, a in enumerate((0.0, math.pi / 4)):
            B.add((x, y, z0 + h + cr * (0.9 + 0.1 * k)), (cr, cr, cr * 0.85), green, 12 + rng.normal(0, 4), 0.3,
                  yaw=a, rgb2=green * 0.6, kind=FOLIAGE, rcs=-15)
    elif kind == "hydrant":
        col = [(200, 30, 30), (230, 190, 30), (180, 180, 178)][int(rng.integers(0, 3))]
        B.add((x, y, z0 + 0.38), (0.14, 0.14, 0.38), col, 30 + rng.normal(0, 8), rcs=rng.normal(0, 3))
    elif kind == "bollard":
        col = [(60, 62, 65), (200, 200, 198), (180, 150, 40)][int(rng.integers(0, 3))]
        n = int(rng.integers(2, 6))
        for k in range(n):
            bx, by = x + c * (k - n / 2) * 1.5, y + s * (k - n / 2) * 1.5
            B.add((bx, by, z0 + 0.5), (0.1, 0.1, 0.5), col, 35 + rng.normal(0, 10), rcs=rng.normal(0, 4))
    elif kind == "bin":
        col = [(40, 70, 45), (50, 52, 55), (30, 60, 120)][int(rng.integers(0, 3))]
        B.add((x, y, z0 + 0.5), (0.28, 0.28, 0.5), col, 20 + rng.normal(0, 6), yaw=yaw, rcs=rng.normal(-2, 4))
    elif kind == "meter":
        B.add((x, y, z0 + 0.65), (0.08, 0.08, 0.65), (90, 92, 95), 35, rcs=rng.normal(0, 4))
        B.add((x, y, z0 + 1.35), (0.12, 0.1, 0.15), (70, 72, 75), 35, rcs=-10)
    elif kind == "shelter":  # bus stop
        L = rng.uniform(3.5, 5.0)
        B.add((x, y, z0 + 2.5), (L / 2, 0.8, 0.06), (90, 92, 95), 30, yaw=yaw, rcs=rng.normal(6, 4))
        bx, by = x + s * 0.75, y - c * 0.75  # the back wall away from the road (the road is to the left)
        B.add((bx, by, z0 + 1.25), (L / 2, 0.03, 1.2), (150, 175, 185), 10, 0.4, yaw=yaw, rcs=rng.normal(6, 4))
        for k in (-1, 1):
            B.add((x + c * k * L / 2, y + s * k * L / 2, z0 + 1.25), (0.05, 0.05, 1.25), METAL, 40, yaw=yaw,
                  rcs=rng.normal(2, 4))


def fence(B: Builder, rng, xy0, xy1, z0: float, hedge: bool):
    """A fence or hedge from xy0 to xy1 (one straight piece)."""
    xy0, xy1 = np.asarray(xy0), np.asarray(xy1)
    mid = (xy0 + xy1) / 2
    L = float(np.hypot(*(xy1 - xy0)))
    yaw = math.atan2(*(xy1 - xy0)[::-1])
    if hedge:
        h = rng.uniform(0.9, 1.5)
        g = np.array((55, 90, 45)) * rng.uniform(0.7, 1.2)
        B.add((mid[0], mid[1], z0 + h / 2), (L / 2, 0.4, h / 2), g, 14 + rng.normal(0, 4), 0.2, yaw=yaw,
              rgb2=g * 0.6, kind=FOLIAGE, rcs=rng.normal(-8, 4))
    else:
        h = rng.uniform(1.0, 1.8)
        col = [(90, 92, 95), (150, 150, 148), (110, 85, 60)][int(rng.integers(0, 3))]
        B.add((mid[0], mid[1], z0 + h / 2), (L / 2, 0.03, h / 2), col, 25 + rng.normal(0, 8), 0.35, yaw=yaw,
              rgb2=np.array(col) * 0.5, kind=STRIPES, rcs=rng.normal(2, 5))


def building(B: Builder, rng, xy, yaw: float, L: float, D: float, H: float, z0: float):
    tone = rng.uniform(0.6, 1.1)
    base = np.array([(150, 140, 128), (170, 160, 150), (120, 110, 105), (185, 180, 170), (140, 95, 80)][
        int(rng.integers(0, 5))]) * tone
    B.add((xy[0], xy[1], z0 + H / 2 - 0.5), (L / 2, D / 2, H / 2 + 0.5), base, 25 + rng.normal(0, 8), 0.05,
          yaw=yaw, rgb2=np.array((55, 65, 80)) * rng.uniform(0.7, 1.3), kind=WINDOWS, rcs=rng.normal(14, 5))
