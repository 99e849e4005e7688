"""The scene's objects as they are placed (class, size, track, flags, priority), tracks along paths, smooth
lane changes, and the overlap pass that keeps only the objects that never touch the ego, a static structure
or another kept object."""

from __future__ import annotations

import math

import numpy as np

from perception.geometry import footprints, footprints_overlap
from perception.sources.synthetic.world import Path, sample_size

EGO_FOOT = (0.9, 0.0, 4.9, 2.1)  # footprint centre x, y and l, w in the ego frame (with a margin)
ROAD_MIX = {"car": 0.84, "truck": 0.08, "bus": 0.03, "construction_vehicle": 0.01, "motorcycle": 0.04}
PARK_MIX = {"car": 0.9, "truck": 0.05, "trailer": 0.03, "construction_vehicle": 0.02}


def choice(rng, mix: dict) -> str:
    """A class drawn from ``mix`` (class -> weight)."""
    k = list(mix)
    p = np.array(list(mix.values()), float)
    return str(k[int(rng.choice(len(k), p=p / p.sum()))])


class Objects:
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


def track(path: Path, s: np.ndarray, d=0.0, flip: bool = False) -> np.ndarray:
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


def lane_change(rng, tgrid, delta: float) -> np.ndarray:
    """Sideways offset (G,) of a smooth lane change by delta metres, starting at a random time, 3-5 s long."""
    t0, dur = rng.uniform(tgrid[0], max(tgrid[0], tgrid[-1] - 3.0)), rng.uniform(3.0, 5.0)
    u = np.clip((tgrid - t0) / dur, 0, 1)
    return delta * (3 * u**2 - 2 * u**3)


def resolve_overlaps(objs: Objects, ego: np.ndarray, static_foot: np.ndarray) -> list[int]:
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
