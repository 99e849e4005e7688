"""Numba kernels of the synthetic world: one ray/box model shared by the lidar and the cameras.

Boxes are given as (B, 3, 3) rotations R_world_box, (B, 3) centres and (B, 3) half sizes. A ray hitting a
box is reported with the box index, the entered face and the hit point in the box frame; the ground is the
plane z = 0 of the world. Both sensors call the same ``_ray_box`` so they cannot disagree on geometry.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

SKY, GROUND, BOX, BLOCKED = 0, 1, 2, 3


@njit(cache=True, inline="always")
def _ray_box(ox, oy, oz, dx, dy, dz, hx, hy, hz):
    """Slab test in the box frame. Returns (t_enter, axis*2 + (1 if +face)), t_enter < 0 when missed or inside."""
    tmin = -1e30
    tmax = 1e30
    face = -1
    o = (ox, oy, oz)
    d = (dx, dy, dz)
    h = (hx, hy, hz)
    for a in range(3):
        if abs(d[a]) < 1e-12:
            if o[a] < -h[a] or o[a] > h[a]:
                return -1.0, -1
            continue
        inv = 1.0 / d[a]
        t1 = (-h[a] - o[a]) * inv
        t2 = (h[a] - o[a]) * inv
        f = a * 2
        if t1 > t2:
            t1, t2 = t2, t1
            f = a * 2 + 1
        if t1 > tmin:
            tmin = t1
            face = f
        if t2 < tmax:
            tmax = t2
        if tmin > tmax:
            return -1.0, -1
    if tmin <= 0.0:
        return -1.0, -1
    return tmin, face


@njit(cache=True, inline="always")
def _hit_box(R, c, h, o, dx, dy, dz):
    """The ray (world origin o, direction d) in the frame of the box (rotation R, centre c, half sizes h)."""
    px = o[0] - c[0]
    py = o[1] - c[1]
    pz = o[2] - c[2]
    lox = R[0, 0] * px + R[1, 0] * py + R[2, 0] * pz
    loy = R[0, 1] * px + R[1, 1] * py + R[2, 1] * pz
    loz = R[0, 2] * px + R[1, 2] * py + R[2, 2] * pz
    ldx = R[0, 0] * dx + R[1, 0] * dy + R[2, 0] * dz
    ldy = R[0, 1] * dx + R[1, 1] * dy + R[2, 1] * dz
    ldz = R[0, 2] * dx + R[1, 2] * dy + R[2, 2] * dz
    return _ray_box(lox, loy, loz, ldx, ldy, ldz, h[0], h[1], h[2])


@njit(cache=True)
def cast_rays(origin, dirs, ray_az, R_boxes, centers, halves, az_c, az_hw, max_range, eps_inside):
    """Cast rays from one origin (world frame). dirs: (N, 3) unit directions in the world frame; ray_az their
    azimuths; az_c/az_hw: each box's azimuth interval seen from the origin (a cheap prefilter).

    Returns kind (N,) int8, box index (N,) int32, range t (N,) float64, hit point (N, 3) world.
    Box hits are moved ``eps_inside`` metres inside every face so point-in-box tests are unambiguous.
    """
    n = dirs.shape[0]
    nb = centers.shape[0]
    kind = np.zeros(n, np.int8)
    ids = np.full(n, -1, np.int32)
    rng = np.full(n, np.inf)
    hit = np.zeros((n, 3))
    for i in range(n):
        dx, dy, dz = dirs[i, 0], dirs[i, 1], dirs[i, 2]
        best = max_range
        bid = -1
        for b in range(nb):
            da = ray_az[i] - az_c[b]
            da = (da + math.pi) % (2 * math.pi) - math.pi
            if abs(da) > az_hw[b]:
                continue
            t, f = _hit_box(R_boxes[b], centers[b], halves[b], origin, dx, dy, dz)
            if f >= 0 and t < best:
                best = t
                bid = b
        if bid >= 0:
            kind[i] = BOX
            ids[i] = bid
            rng[i] = best
            # hit in the box frame, pushed inside
            R = R_boxes[bid]
            px = origin[0] + best * dx - centers[bid, 0]
            py = origin[1] + best * dy - centers[bid, 1]
            pz = origin[2] + best * dz - centers[bid, 2]
            loc = np.empty(3)
            for a in range(3):
                v = R[0, a] * px + R[1, a] * py + R[2, a] * pz
                lim = halves[bid, a] - eps_inside
                if lim < 0:
                    lim = 0.0
                loc[a] = min(max(v, -lim), lim)
            for a in range(3):
                hit[i, a] = centers[bid, a] + R[a, 0] * loc[0] + R[a, 1] * loc[1] + R[a, 2] * loc[2]
        elif dz < 0:
            t = -origin[2] / dz
            if t < max_range:
                kind[i] = GROUND
                rng[i] = t
                hit[i, 0] = origin[0] + t * dx
                hit[i, 1] = origin[1] + t * dy
                hit[i, 2] = 0.0
    return kind, ids, rng, hit


@njit(cache=True)
def ground_color(x, y, road_o, road_u, cw_s, cw_half, noise):
    """RGB (0..255 floats) and lidar reflectivity of the ground at world (x, y)."""
    rx = x - road_o[0]
    ry = y - road_o[1]
    s = rx * road_u[0] + ry * road_u[1]
    d = -rx * road_u[1] + ry * road_u[0]
    ad = abs(d)
    # per 25 cm cell speckle, deterministic
    h = (int(math.floor(x * 4.0)) * 73856093) ^ (int(math.floor(y * 4.0)) * 19349663)
    sp = ((h & 1023) / 1023.0 - 0.5) * noise
    if ad < 7.0:
        r, g, b, refl = 82.0, 84.0, 88.0, 8.0
        marking = False
        if ad < 0.12:
            marking = True
        elif abs(ad - 3.0) < 0.08 and (s % 9.0) < 3.0:
            marking = True
        elif abs(ad - 6.0) < 0.08 or abs(ad - 6.9) < 0.08:
            marking = True
        elif abs(s - cw_s) < cw_half and (math.floor(d / 0.6) % 2 == 0):
            marking = True
        if marking:
            r, g, b, refl = 215.0, 215.0, 210.0, 70.0
    elif ad < 10.3:
        r, g, b, refl = 95.0, 96.0, 98.0, 10.0
        if abs(ad - 7.05) < 0.1:
            r, g, b, refl = 200.0, 200.0, 196.0, 40.0  # curb
    elif ad < 13.5:
        r, g, b, refl = 150.0, 150.0, 145.0, 22.0
    else:
        r, g, b, refl = 118.0, 122.0, 108.0, 14.0
    return r + sp, g + sp, b + sp, refl


@njit(cache=True)
def render_camera(H, W, fx, fy, cx, cy, R_wc, o_wc, R_boxes, centers, halves, col_ptr, col_idx, vrange,
                  box_rgb, box_kind, road_o, road_u, cw_s, cw_half, sky_top, sky_hor, light):
    """Ray-cast one pinhole image. Returns (H, W, 3) uint8 RGB, per-box visible pixels, per-box silhouette
    pixels (as if unoccluded). ``col_ptr``/``col_idx``: CSR list of candidate boxes per image column;
    ``vrange``: (B, 2) rows each box may cover. ``box_kind``: 0 plain, 1 vehicle (windows, wheels),
    2 pedestrian (dark legs), 3 building (window grid)."""
    img = np.empty((H, W, 3), np.uint8)
    nb = centers.shape[0]
    visible = np.zeros(nb, np.int64)
    silhouette = np.zeros(nb, np.int64)
    for v in range(H):
        for u in range(W):
            cxn = (u + 0.5 - cx) / fx
            cyn = (v + 0.5 - cy) / fy
            dx = R_wc[0, 0] * cxn + R_wc[0, 1] * cyn + R_wc[0, 2]
            dy = R_wc[1, 0] * cxn + R_wc[1, 1] * cyn + R_wc[1, 2]
            dz = R_wc[2, 0] * cxn + R_wc[2, 1] * cyn + R_wc[2, 2]
            best = 1e30
            bid = -1
            bface = -1
            for k in range(col_ptr[u], col_ptr[u + 1]):
                b = col_idx[k]
                if v < vrange[b, 0] or v > vrange[b, 1]:
                    continue
                t, f = _hit_box(R_boxes[b], centers[b], halves[b], o_wc, dx, dy, dz)
                if f >= 0:
                    silhouette[b] += 1
                    if t < best:
                        best = t
                        bid = b
                        bface = f
            t_ground = 1e30
            if dz < 0:
                t_ground = -o_wc[2] / dz
            dist = 0.0
            if bid >= 0 and best < t_ground:
                visible[bid] += 1
                R = R_boxes[bid]
                px = o_wc[0] + best * dx - centers[bid, 0]
                py = o_wc[1] + best * dy - centers[bid, 1]
                pz = o_wc[2] + best * dz - centers[bid, 2]
                lx = R[0, 0] * px + R[1, 0] * py + R[2, 0] * pz
                ly = R[0, 1] * px + R[1, 1] * py + R[2, 1] * pz
                lz = R[0, 2] * px + R[1, 2] * py + R[2, 2] * pz
                axis = bface // 2
                sign = 1.0 if bface % 2 == 1 else -1.0
                nx, ny, nz = R[0, axis] * sign, R[1, axis] * sign, R[2, axis] * sign
                shade = 0.55 + 0.45 * max(0.0, nx * light[0] + ny * light[1] + nz * light[2])
                r, g, b_ = box_rgb[bid, 0], box_rgb[bid, 1], box_rgb[bid, 2]
                kind = box_kind[bid]
                hx, hy, hz = halves[bid, 0], halves[bid, 1], halves[bid, 2]
                if kind == 1:
                    across = abs(lx) / hx if axis == 1 else abs(ly) / hy
                    if axis != 2 and lz > hz * 0.3 and lz < hz * 0.9 and across < 0.8:
                        r, g, b_ = 45.0, 50.0, 60.0  # glass band
                    elif lz < -hz * 0.6 and axis == 1 and (abs(lx) > hx * 0.45 and abs(lx) < hx * 0.85):
                        r, g, b_ = 25.0, 25.0, 25.0  # wheels
                elif kind == 2:
                    if lz < -hz * 0.1:
                        r, g, b_ = 40.0, 40.0, 50.0  # legs
                elif kind == 3:
                    if axis != 2 and (math.floor((lz + hz) / 3.0) % 2 == 1) and \
                            (math.floor((lx + ly + 40.0) / 2.0) % 2 == 0) and lz < hz - 1.0:
                        r, g, b_ = r * 0.55, g * 0.58, b_ * 0.62
                r *= shade
                g *= shade
                b_ *= shade
                dist = best * math.sqrt(dx * dx + dy * dy + dz * dz)
            elif dz < 0:
                gx = o_wc[0] + t_ground * dx
                gy = o_wc[1] + t_ground * dy
                r, g, b_, _refl = ground_color(gx, gy, road_o, road_u, cw_s, cw_half, 10.0)
                dist = t_ground * math.sqrt(dx * dx + dy * dy + dz * dz)
            else:
                el = dz / math.sqrt(dx * dx + dy * dy + dz * dz)
                a = min(1.0, el * 3.0)
                r = sky_hor[0] * (1 - a) + sky_top[0] * a
                g = sky_hor[1] * (1 - a) + sky_top[1] * a
                b_ = sky_hor[2] * (1 - a) + sky_top[2] * a
                dist = -1.0
            if dist > 0:
                fog = 1.0 - math.exp(-dist / 600.0)
                r = r * (1 - fog) + sky_hor[0] * fog
                g = g * (1 - fog) + sky_hor[1] * fog
                b_ = b_ * (1 - fog) + sky_hor[2] * fog
            img[v, u, 0] = min(255, max(0, int(r)))
            img[v, u, 1] = min(255, max(0, int(g)))
            img[v, u, 2] = min(255, max(0, int(b_)))
    return img, visible, silhouette
