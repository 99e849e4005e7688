"""Voxelization with mmcv's semantics, on the CPU (numba) and on any torch device, with identical results.

Hard mode: voxels are numbered in order of their first point; a point whose voxel would be number
``max_voxels`` or later is dropped, and so is a point beyond ``max_points`` in its voxel. Returns
(voxels (M, max_points, C) zero-padded, coords (M, 3) as (z, y, x) grid indices, num_points (M,)).
Dynamic mode: the (z, y, x) voxel of every point, -1 for points outside the range.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit


@dataclass(frozen=True)
class VoxelGrid:
    """Point-cloud range (x0, y0, z0, x1, y1, z1) in metres and voxel size (dx, dy, dz)."""

    pc_range: tuple[float, float, float, float, float, float]
    voxel_size: tuple[float, float, float]

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        r, v = self.pc_range, self.voxel_size
        return tuple(int(round((r[i + 3] - r[i]) / v[i])) for i in range(3))


@njit(cache=True, nogil=True)
def _cells_numba(points, lo, size, shape, out):
    """The cell of every point, (z * Y + y) * X + x in int32, -1 outside the grid (float32 arithmetic, as
    mmcv and spconv). Arithmetic only, so it vectorizes."""
    sx, sy = np.int32(shape[0]), np.int32(shape[1])
    fsx, fsy, fsz = np.float32(shape[0]), np.float32(shape[1]), np.float32(shape[2])
    lx, ly, lz = lo[0], lo[1], lo[2]
    vx, vy, vz = size[0], size[1], size[2]
    for i in range(points.shape[0]):
        # no floor needed: for 0 <= f < s (checked first; NaN fails it) truncation is the floor
        fx = (points[i, 0] - lx) / vx
        fy = (points[i, 1] - ly) / vy
        fz = (points[i, 2] - lz) / vz
        if (fx >= 0) & (fx < fsx) & (fy >= 0) & (fy < fsy) & (fz >= 0) & (fz < fsz):
            out[i] = (np.int32(fz) * sy + np.int32(fy)) * sx + np.int32(fx)
        else:
            out[i] = -1


@njit(cache=True, nogil=True)
def _coords_numba(points, lo, size, shape):
    """(N, 3) int32 (z, y, x) of every point's cell, -1 rows outside the grid."""
    n = points.shape[0]
    lin = np.empty(n, np.int32)
    _cells_numba(points, lo, size, shape, lin)
    sx, sy = np.int32(shape[0]), np.int32(shape[1])
    out = np.full((n, 3), -1, np.int32)
    for i in range(n):
        c = lin[i]
        if c >= 0:
            out[i, 0], out[i, 1], out[i, 2] = c // (sx * sy), (c // sx) % sy, c % sx
    return out


@njit(cache=True, nogil=True)
def _hard_numba(points, lo, size, shape, max_points, max_voxels, grid):
    """Three passes. 1: the cell of every point (``_cells_numba``). 2: first-appearance
    numbering and the slot of each kept point. 3: copy the kept points into a (M, max_points, C) zero array
    of the exact size (allocating max_voxels slots per call and zeroing their padding cost more than the
    points themselves at one sweep). ``grid`` (X*Y*Z int32, all -1) is a reusable lookup table; the entries
    this call set are reset. Cells are numbered in int32 (the table has one int32 per cell)."""
    n, C = points.shape
    slot = np.empty(n, np.int32)  # pass 1: cell of each point (-1 outside); pass 2: v * max_points + k or -1
    vcoords = np.empty((max_voxels, 3), np.int32)
    vlin = np.empty(max_voxels, np.int32)
    npts = np.zeros(max_voxels, np.int32)
    _cells_numba(points, lo, size, shape, slot)
    sx, sy = np.int32(shape[0]), np.int32(shape[1])
    m = 0
    for i in range(n):
        lin = slot[i]
        if lin < 0:
            continue
        slot[i] = -1
        v = grid[lin]
        if v < 0:
            if m >= max_voxels:
                continue
            v = m
            grid[lin] = v
            vlin[v] = lin
            vcoords[v, 0], vcoords[v, 1], vcoords[v, 2] = lin // (sx * sy), (lin // sx) % sy, lin % sx
            m += 1
        k = npts[v]
        if k < max_points:
            slot[i] = v * max_points + k
            npts[v] = k + 1
    for v in range(m):
        grid[vlin[v]] = -1
    voxels = np.zeros((m * max_points, C), points.dtype)
    for i in range(n):
        s = slot[i]
        if s >= 0:
            for c in range(C):
                voxels[s, c] = points[i, c]
    return voxels.reshape((m, max_points, C)), vcoords[:m].copy(), npts[:m].copy()


_GRIDS: dict = {}
_GRIDS_LOCK = threading.Lock()


def _lookup_table(shape) -> np.ndarray:
    """A -1-filled int32 table per grid shape and thread, reused across calls (allocating and filling a
    fresh one per call cost more than the voxelization on fine grids)."""
    key = (tuple(int(x) for x in shape), threading.get_ident())
    with _GRIDS_LOCK:
        t = _GRIDS.get(key)
        if t is None:
            if len(_GRIDS) > 64:
                _GRIDS.clear()
            t = _GRIDS[key] = np.full(int(np.prod(shape)), -1, np.int32)
    return t


def _grid_arrays(grid: VoxelGrid):
    # float32 arithmetic, as mmcv's and spconv's CPU kernels do (float64 put ~1 point in 300k on the other
    # side of a voxel boundary from them), and float32 division is twice as fast
    lo = np.asarray(grid.pc_range[:3], np.float32)
    size = np.asarray(grid.voxel_size, np.float32)
    shape = np.asarray(grid.shape_xyz, np.int64)
    return lo, size, shape


def voxelize_dynamic(points, grid: VoxelGrid):
    """(N, 3) int32 (z, y, x) voxel index per point, -1 rows outside the range (numpy or torch in, same out)."""
    if isinstance(points, torch.Tensor):
        return _dynamic_torch(points, grid)
    lo, size, shape = _grid_arrays(grid)
    return _coords_numba(np.ascontiguousarray(points[:, :3], dtype=np.float32), lo, size, shape)


def voxelize_hard(points, grid: VoxelGrid, max_points: int, max_voxels: int):
    """Hard voxelization; numpy in -> numba, torch in -> torch on the tensor's device."""
    if isinstance(points, torch.Tensor):
        return _hard_torch(points, grid, max_points, max_voxels)
    pts = np.ascontiguousarray(points, dtype=np.float32)
    lo, size, shape = _grid_arrays(grid)
    return _hard_numba(pts, lo, size, shape, max_points, max_voxels, _lookup_table(shape))


def _dynamic_torch(points: torch.Tensor, grid: VoxelGrid) -> torch.Tensor:
    lo = torch.tensor(grid.pc_range[:3], dtype=torch.float32, device=points.device)
    size = torch.tensor(grid.voxel_size, dtype=torch.float32, device=points.device)
    shape = torch.tensor(grid.shape_xyz, device=points.device)
    # float32 subtraction and division, then floor: the same arithmetic as the numba kernel (and mmcv, spconv)
    f = torch.floor((points[:, :3].to(torch.float32) - lo) / size)
    ok = torch.isfinite(f).all(dim=1) & (f >= 0).all(dim=1) & (f < shape).all(dim=1)
    c = torch.where(ok[:, None], f, torch.full_like(f, -1)).to(torch.int32)
    return c.flip(1)  # (z, y, x)


def _hard_torch(points: torch.Tensor, grid: VoxelGrid, max_points: int, max_voxels: int):
    dev = points.device
    coords = _dynamic_torch(points, grid)
    sx, sy, _ = grid.shape_xyz
    valid = torch.nonzero(coords[:, 0] >= 0).squeeze(1)
    c = coords[valid].long()
    lin = (c[:, 0] * sy + c[:, 1]) * sx + c[:, 2]
    if len(lin) == 0:
        C = points.shape[1]
        return (points.new_zeros((0, max_points, C)), coords.new_zeros((0, 3)),
                torch.zeros(0, dtype=torch.int32, device=dev))
    uniq, inv = torch.unique(lin, return_inverse=True)
    order_pts = torch.arange(len(lin), device=dev)
    first = torch.full((len(uniq),), len(lin), device=dev, dtype=torch.long).scatter_reduce(
        0, inv, order_pts, reduce="amin")
    rank = torch.empty_like(first)
    rank[torch.argsort(first)] = torch.arange(len(uniq), device=dev)
    vid = rank[inv]  # voxel number of every valid point, by first appearance
    # position of each point within its voxel (stable: order of appearance)
    srt = torch.sort(vid * len(lin) + order_pts).indices
    vs = vid[srt]
    starts = torch.zeros(len(uniq), dtype=torch.long, device=dev).scatter_reduce(
        0, vs, torch.arange(len(vs), device=dev), reduce="amin", include_self=False)
    pos = torch.empty_like(vid)
    pos[srt] = torch.arange(len(vs), device=dev) - starts[vs]
    keep = (vid < max_voxels) & (pos < max_points)
    m = int(min(len(uniq), max_voxels))
    voxels = points.new_zeros((m, max_points, points.shape[1]))
    voxels[vid[keep], pos[keep]] = points[valid[keep]]
    npts = torch.zeros(m, dtype=torch.int32, device=dev).scatter_add_(
        0, vid[keep], torch.ones(int(keep.sum()), dtype=torch.int32, device=dev))
    vcoords = torch.zeros((m, 3), dtype=torch.int32, device=dev)
    firsts = first[torch.argsort(first)][:m]
    vcoords[:] = coords[valid[firsts]]
    return voxels, vcoords, npts
