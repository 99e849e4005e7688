"""Numba kernels of the synthetic world: one ray/primitive model shared by the lidar, the radars and the
cameras, so that no two sensors disagree on geometry.

Primitives are oriented boxes given as (P, 3, 3) rotations R_world_prim, (P, 3) centres and (P, 3) half
sizes; the ground is the plane z = a x + b y + c. Rays only test the primitives listed in their azimuth bin
(lidar, radar) or image column (cameras): the acceleration structure that keeps a world of thousands of
primitives fast. A hit is reported with the primitive and the entered face (axis * 2 + 1 for the + face).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

SKY, GROUND, PRIM = 0, 1, 2
# texture kinds, as in synthetic.shapes; EMISSIVE is drawn unshaded (lamps at night)
PLAIN, WINDOWS, BAND, STRIPES, FOLIAGE, EMISSIVE = 0, 1, 2, 3, 4, 5


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


@njit(cache=True, inline="always")
def _t_ground(a, b, c, o, dx, dy, dz):
    """Distance along the ray (origin o, direction d) to the ground plane z = a x + b y + c; 1e30 if it
    does not go down to it."""
    den = dz - a * dx - b * dy
    if den < -1e-9:
        t = (a * o[0] + b * o[1] + c - o[2]) / den
        if t > 0:
            return t
    return 1e30


@njit(cache=True)
def azimuth_bins(origin, centers, halves, nbins, max_range):
    """CSR lists (ptr, idx) of the primitives whose bounding circle overlaps each of ``nbins`` azimuth bins
    around ``origin`` (world azimuth, bin 0 starting at -pi); primitives beyond max_range are left out."""
    n = centers.shape[0]
    lo = np.zeros(n, np.int64)
    cnt = np.zeros(n, np.int64)
    width = 2 * math.pi / nbins
    for i in range(n):
        dx = centers[i, 0] - origin[0]
        dy = centers[i, 1] - origin[1]
        r = math.sqrt(halves[i, 0] ** 2 + halves[i, 1] ** 2 + halves[i, 2] ** 2)
        dist = math.sqrt(dx * dx + dy * dy)
        if dist - r > max_range:
            continue
        if dist <= r + 0.05:
            lo[i], cnt[i] = 0, nbins
            continue
        az = math.atan2(dy, dx)
        hw = math.asin(min(1.0, r / dist)) + 1e-4
        b0 = int(math.floor((az - hw + math.pi) / width))
        b1 = int(math.floor((az + hw + math.pi) / width))
        lo[i], cnt[i] = b0, min(nbins, b1 - b0 + 1)
    return _csr(lo, cnt, nbins)


@njit(cache=True)
def _csr(lo, cnt, nbins):
    """CSR lists (ptr, idx): item i in bins lo[i] .. lo[i] + cnt[i] - 1 (modulo nbins), items in order."""
    n = lo.shape[0]
    ptr = np.zeros(nbins + 1, np.int64)
    for i in range(n):
        for k in range(cnt[i]):
            ptr[(lo[i] + k) % nbins + 1] += 1
    for b in range(nbins):
        ptr[b + 1] += ptr[b]
    fill = ptr[:-1].copy()
    idx = np.zeros(ptr[-1], np.int64)
    for i in range(n):
        for k in range(cnt[i]):
            b = (lo[i] + k) % nbins
            idx[fill[b]] = i
            fill[b] += 1
    return ptr, idx


@njit(cache=True)
def cast_rays(origin, dirs, R, centers, halves, ptr, idx, nbins, plane, max_range):
    """Cast rays from one origin (world frame). dirs: (N, 3) unit directions. Returns kind (N,) int8,
    primitive (N,) int32, range (N,) and face (N,) int8."""
    n = dirs.shape[0]
    kind = np.zeros(n, np.int8)
    ids = np.full(n, -1, np.int32)
    rng = np.full(n, np.inf)
    face = np.full(n, -1, np.int8)
    width = 2 * math.pi / nbins
    a, b, c = plane[0], plane[1], plane[2]
    for i in range(n):
        dx, dy, dz = dirs[i, 0], dirs[i, 1], dirs[i, 2]
        bin_ = int(math.floor((math.atan2(dy, dx) + math.pi) / width)) % nbins
        best = max_range
        bid = -1
        bf = -1
        for k in range(ptr[bin_], ptr[bin_ + 1]):
            p = idx[k]
            t, f = _hit_box(R[p], centers[p], halves[p], origin, dx, dy, dz)
            if f >= 0 and t < best:
                best = t
                bid = p
                bf = f
        tg = _t_ground(a, b, c, origin, dx, dy, dz)
        if bid >= 0 and best < tg:
            kind[i] = PRIM
            ids[i] = bid
            rng[i] = best
            face[i] = bf
        elif tg < max_range:
            kind[i] = GROUND
            rng[i] = tg
    return kind, ids, rng, face


@njit(cache=True, inline="always")
def _hash01(a, b, c):
    h = (a * 73856093) ^ (b * 19349663) ^ (c * 83492791)
    return ((h & 65535) / 65535.0)


@njit(cache=True)
def _nearest_first(W, o, centers, halves, owner, col_ptr, col_idx):
    """Each image column's candidate list reordered for ``render_camera``: the objects' primitives first (every
    one is tested: their silhouettes count pixels as if unoccluded), then the static ones by their nearest
    possible distance from the camera (``reach``: the centre's distance less the half diagonal), so a pixel stops
    at the first static primitive that cannot be nearer than what it already hit (or the ground). Returns
    (reach, order, objects' count per column)."""
    P = centers.shape[0]
    reach = np.empty(P)
    for p in range(P):
        ex, ey, ez = centers[p, 0] - o[0], centers[p, 1] - o[1], centers[p, 2] - o[2]
        r = math.sqrt(halves[p, 0] ** 2 + halves[p, 1] ** 2 + halves[p, 2] ** 2)
        reach[p] = max(0.0, math.sqrt(ex * ex + ey * ey + ez * ez) - r)
    order = col_idx.copy()
    n_own = np.zeros(W, np.int64)
    for u in range(W):
        seg = col_idx[col_ptr[u]:col_ptr[u + 1]]
        mine = owner[seg] >= 0
        own = seg[mine]
        rest = seg[~mine]
        rest = rest[np.argsort(reach[rest], kind="mergesort")]
        n_own[u] = len(own)
        order[col_ptr[u]:col_ptr[u] + len(own)] = own
        order[col_ptr[u] + len(own):col_ptr[u + 1]] = rest
    return reach, order, n_own


@njit(cache=True)
def render_camera(H, W, fx, fy, cx, cy, R_wc, o_wc, R, centers, halves, col_ptr, col_idx, vrange, rgb, rgb2,
                  kind, owner, n_owner, plane, tex_rgb, tex_res, light_pos, light_col, sun, sun_k, ambient,
                  sky_top, sky_hor, fog_m, want_maps, cull=True):
    """Ray-cast one pinhole image. Returns (H, W, 3) float32 linear-ish RGB, per-owner visible pixels,
    per-owner silhouette pixels (as if unoccluded), and (when want_maps) depth and owner-id maps (owner -1:
    no object). ``col_ptr``/``col_idx``: CSR list of candidate primitives per image column; ``vrange``:
    (P, 2) rows each primitive may cover. ``cull``: skip the primitives that cannot change the pixel (see
    ``_nearest_first``: an object's part is still tested until its silhouette has the pixel); the image and the
    counts are the same without it, only slower."""
    img = np.empty((H, W, 3), np.float32)
    reach, order, n_own = _nearest_first(W, o_wc, centers, halves, owner, col_ptr, col_idx)
    visible = np.zeros(n_owner, np.int64)
    silhouette = np.zeros(n_owner, np.int64)
    last = np.full(n_owner, -1, np.int64)
    mh, mw = (H, W) if want_maps else (1, 1)
    depth = np.zeros((mh, mw), np.float32)
    idmap = np.full((mh, mw), -1, np.int32)
    a, b, c = plane[0], plane[1], plane[2]
    gn = np.array([-a, -b, 1.0]) / math.sqrt(a * a + b * b + 1.0)
    th, tw = tex_rgb.shape[0], tex_rgb.shape[1]
    nl = light_pos.shape[0]
    for v in range(H):
        for u in range(W):
            pix = v * W + u
            cxn = (u + 0.5 - cx) / fx
            cyn = (v + 0.5 - cy) / fy
            dx = R_wc[0, 0] * cxn + R_wc[0, 1] * cyn + R_wc[0, 2]
            dy = R_wc[1, 0] * cxn + R_wc[1, 1] * cyn + R_wc[1, 2]
            dz = R_wc[2, 0] * cxn + R_wc[2, 1] * cyn + R_wc[2, 2]
            norm = math.sqrt(dx * dx + dy * dy + dz * dz)
            best = 1e30
            bid = -1
            bface = -1
            t_ground = _t_ground(a, b, c, o_wc, dx, dy, dz)
            k0, k1 = col_ptr[u], col_ptr[u + 1]
            for k in range(k0, k1):
                p = order[k]
                far = cull and reach[p] > min(best, t_ground) * norm * (1.0 + 1e-6) + 1e-6  # cannot be nearer
                if k >= k0 + n_own[u]:
                    if far:  # the column's static primitives come nearest first: none after this one either
                        break
                elif far and last[owner[p]] == pix:  # an object's part: its silhouette has this pixel already
                    continue
                if v < vrange[p, 0] or v > vrange[p, 1]:
                    continue
                t, f = _hit_box(R[p], centers[p], halves[p], o_wc, dx, dy, dz)
                if f >= 0:
                    o = owner[p]
                    if o >= 0 and last[o] != pix:
                        silhouette[o] += 1
                        last[o] = pix
                    if t < best or (t == best and p < bid):  # a tie goes to the lower index, in any order
                        best = t
                        bid = p
                        bface = f
            dist = -1.0
            nx, ny, nz = 0.0, 0.0, 1.0
            hx, hy, hz = 0.0, 0.0, 0.0
            emissive = False
            if bid >= 0 and best < t_ground:
                o = owner[bid]
                if o >= 0:
                    visible[o] += 1
                Rb = R[bid]
                px = o_wc[0] + best * dx - centers[bid, 0]
                py = o_wc[1] + best * dy - centers[bid, 1]
                pz = o_wc[2] + best * dz - centers[bid, 2]
                lx = Rb[0, 0] * px + Rb[1, 0] * py + Rb[2, 0] * pz
                ly = Rb[0, 1] * px + Rb[1, 1] * py + Rb[2, 1] * pz
                lz = Rb[0, 2] * px + Rb[1, 2] * py + Rb[2, 2] * pz
                axis = bface // 2
                sign = 1.0 if bface % 2 == 1 else -1.0
                nx, ny, nz = Rb[0, axis] * sign, Rb[1, axis] * sign, Rb[2, axis] * sign
                r, g, b_ = rgb[bid, 0], rgb[bid, 1], rgb[bid, 2]
                kd = kind[bid]
                ez = halves[bid, 2]
                if kd == WINDOWS:
                    if axis != 2 and (math.floor((lz + ez) / 3.2) % 2 == 1) and \
                            (math.floor((lx + ly + 40.0) / 2.2) % 2 == 0) and lz < ez - 1.0:
                        r, g, b_ = rgb2[bid, 0], rgb2[bid, 1], rgb2[bid, 2]
                elif kd == BAND:
                    if axis != 2 and lz > ez * 0.05:
                        r, g, b_ = rgb2[bid, 0], rgb2[bid, 1], rgb2[bid, 2]
                elif kd == STRIPES:
                    if math.floor((lx + ly + lz) / 0.25) % 2 == 0:
                        r, g, b_ = rgb2[bid, 0], rgb2[bid, 1], rgb2[bid, 2]
                elif kd == FOLIAGE:
                    q = _hash01(int(math.floor(lx * 3.0)), int(math.floor(ly * 3.0)), int(math.floor(lz * 3.0)))
                    if q < 0.45:
                        r, g, b_ = rgb2[bid, 0], rgb2[bid, 1], rgb2[bid, 2]
                elif kd == EMISSIVE:
                    emissive = True
                # speckle: a per-surface texture grain
                q = _hash01(int(math.floor(lx * 8.0)), int(math.floor(ly * 8.0)), int(math.floor(lz * 8.0)) + bid)
                f = 0.92 + 0.16 * q
                r, g, b_ = r * f, g * f, b_ * f
                dist = best * norm
                hx, hy, hz = o_wc[0] + best * dx, o_wc[1] + best * dy, o_wc[2] + best * dz
                if want_maps:
                    depth[v, u] = best * (R_wc[0, 2] * dx + R_wc[1, 2] * dy + R_wc[2, 2] * dz)
                    idmap[v, u] = o
            elif t_ground < 1e29:
                hx, hy, hz = o_wc[0] + t_ground * dx, o_wc[1] + t_ground * dy, o_wc[2] + t_ground * dz
                col = int(hx / tex_res)
                row = int(hy / tex_res)
                if 0 <= col < tw and 0 <= row < th:
                    r, g, b_ = tex_rgb[row, col, 0] * 1.0, tex_rgb[row, col, 1] * 1.0, tex_rgb[row, col, 2] * 1.0
                else:
                    r, g, b_ = 95.0, 110.0, 75.0
                nx, ny, nz = gn[0], gn[1], gn[2]
                dist = t_ground * norm
                if want_maps:
                    depth[v, u] = t_ground * (R_wc[0, 2] * dx + R_wc[1, 2] * dy + R_wc[2, 2] * dz)
            if dist > 0:
                if not emissive:
                    shade = ambient + sun_k * max(0.0, nx * sun[0] + ny * sun[1] + nz * sun[2])
                    lr, lg, lb = 0.0, 0.0, 0.0
                    for k in range(nl):
                        qx = light_pos[k, 0] - hx
                        qy = light_pos[k, 1] - hy
                        qz = light_pos[k, 2] - hz
                        d2 = qx * qx + qy * qy + qz * qz
                        cosl = (qx * nx + qy * ny + qz * nz) / math.sqrt(d2 + 1e-9)
                        if cosl > 0:
                            w = cosl / (1.0 + d2 / 12.0)
                            lr += light_col[k, 0] * w
                            lg += light_col[k, 1] * w
                            lb += light_col[k, 2] * w
                    r, g, b_ = r * (shade + lr), g * (shade + lg), b_ * (shade + lb)
                fog = 1.0 - math.exp(-dist / fog_m)
                r = r * (1 - fog) + sky_hor[0] * fog
                g = g * (1 - fog) + sky_hor[1] * fog
                b_ = b_ * (1 - fog) + sky_hor[2] * fog
            else:
                el = dz / norm
                al = min(1.0, max(0.0, el * 3.0))
                r = sky_hor[0] * (1 - al) + sky_top[0] * al
                g = sky_hor[1] * (1 - al) + sky_top[1] * al
                b_ = sky_hor[2] * (1 - al) + sky_top[2] * al
            img[v, u, 0] = r
            img[v, u, 1] = g
            img[v, u, 2] = b_
    return img, visible, silhouette, depth, idmap


@njit(cache=True)
def column_lists(W, urange, on):
    """CSR lists of primitives per image column from each primitive's (u0, u1) range."""
    n = urange.shape[0]
    lo = np.zeros(n, np.int64)
    cnt = np.zeros(n, np.int64)
    for k in range(n):
        if on[k]:
            lo[k], cnt[k] = urange[k, 0], urange[k, 1] - urange[k, 0] + 1
    return _csr(lo, cnt, W)
