"""Lines of sight from the lidar, for ground-truth sampling that keeps them (``perception.training.paste``,
``occlusion=True``): which of the frame's points a candidate object would stand behind (``hidden``), whether one
box hides most of another (``covers``), and which points a pasted box shadows (``shadowed``), all from the
lidar's mount in the ego frame; ``segment_enters`` is the ray-box test under the last two.

Points are seen in the ground plane by azimuth and range (``seen_from``; ``polar`` sorts them by azimuth so a
candidate's wedge is a lookup); heights stay the ego frame's.
"""

from __future__ import annotations

import numpy as np

from perception.geometry import footprints, wrap_angle

__all__ = ["seen_from", "polar", "hidden", "segment_enters", "covers", "shadowed"]

# ``hidden``: the azimuth step of the cells in front of a candidate (about the lidar's own), and how much nearer
# than the candidate a point must be to occlude it
OCCLUDER_STEP, OCCLUDER_GAP = np.radians(0.5), 0.5


def seen_from(points: np.ndarray, columns: list[str], origin=(0.0, 0.0, 0.0)
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(azimuth, range in the ground plane, height) of each point, seen from ``origin`` (the lidar's mount in the
    ego frame; heights stay the ego frame's), in the points' order."""
    x, y, z = (points[:, columns.index(c)].astype(np.float64) for c in "xyz")
    x, y = x - origin[0], y - origin[1]
    return np.arctan2(y, x), np.hypot(x, y), z


def polar(seen: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``seen_from``'s arrays sorted by azimuth (``hidden`` looks up the wedge in front of a candidate instead of
    testing every point)."""
    az, rng, z = seen
    order = np.argsort(az, kind="stable")
    return az[order], rng[order], z[order]


def hidden(box: np.ndarray, view: tuple[np.ndarray, np.ndarray, np.ndarray], origin=(0.0, 0.0, 0.0)) -> bool:
    """Does the frame's lidar (``view``: ``polar`` of its points) see something in front of most of ``box`` where
    it would stand? The azimuths its footprint spans (in steps of at least OCCLUDER_STEP, at most 8) by the lower
    and upper half of its height above 0.3 m over its bottom (the road below does not count): hidden when more
    than half of those cells hold a point nearer than its nearest corner less OCCLUDER_GAP (a hedge, a wall, a
    parked van between the sensor and the object; a pole or a pedestrian in front covers a cell or two). Such an
    object would not be seen there, by the lidar nor by a camera. ``view`` and ``origin``: from the same point."""
    az, rng, z = view
    corners = footprints(box[None, :2], box[None, 6], box[None, 3], box[None, 4])[0] - np.asarray(origin)[:2]
    near = float(np.hypot(corners[:, 0], corners[:, 1]).min()) - OCCLUDER_GAP
    if near <= 0:
        return False
    centre = np.arctan2(box[1] - origin[1], box[0] - origin[0])
    off = wrap_angle(np.arctan2(corners[:, 1], corners[:, 0]) - centre)
    lo, hi = float(off.min()), float(off.max())
    bottom, top = box[2] - box[5] / 2 + 0.3, box[2] + box[5] / 2
    if top <= bottom:
        return False
    # the points whose azimuth lies in the wedge (a little wider; the exact test follows), where it wraps at +-pi too
    a0, a1 = centre + lo - 1e-6, centre + hi + 1e-6
    idx = np.concatenate([np.arange(*np.searchsorted(az, (max(a0 + k, -np.pi), min(a1 + k, np.pi))))
                          for k in (-2 * np.pi, 0.0, 2 * np.pi) if a0 + k <= np.pi and a1 + k >= -np.pi])
    az, rng, z = az[idx], rng[idx], z[idx]
    rel = wrap_angle(az - centre)
    front = np.flatnonzero((rel >= lo) & (rel <= hi) & (rng < near) & (z > bottom) & (z < top))
    n_az = int(np.clip(np.floor((hi - lo) / OCCLUDER_STEP), 1, 8))
    a = np.minimum(((rel[front] - lo) / max(hi - lo, 1e-9) * n_az).astype(int), n_az - 1)
    h = (z[front] > (bottom + top) / 2).astype(int)
    return len(np.unique(a * 2 + h)) > n_az  # more than half of the n_az x 2 cells


def segment_enters(origin, points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(B, N) does the segment from ``origin`` to each point pass through each of the boxes (B, 9) before reaching
    it (entering the box strictly between the two ends; a point inside the box does not count)? The slab test in
    each box's frame. A single box (9,) gives (N,)."""
    single = np.ndim(boxes) == 1
    b = np.atleast_2d(np.asarray(boxes, np.float64))
    c, s = np.cos(b[:, 6]), np.sin(b[:, 6])
    rot = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], 1)  # (B, 2, 2): ego -> box frame about z
    o2 = np.asarray(origin[:2], np.float64)[None] - b[:, :2]
    o = np.concatenate([np.einsum("bij,bj->bi", rot, o2), origin[2] - b[:, 2:3]], 1)[:, None]  # B, 1, 3
    q = np.asarray(points, np.float64)
    p2 = np.einsum("bij,bnj->bni", rot, q[None, :, :2] - b[:, None, :2])
    p = np.concatenate([p2, q[None, :, 2:3] - b[:, None, 2:3]], 2)  # B, N, 3
    d = p - o
    half = (b[:, 3:6] / 2)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - o) / d, (half - o) / d
    lo, hi = np.fmin(t1, t2), np.fmax(t1, t2)
    flat = d == 0  # parallel to a slab: inside it throughout, or never
    inside = np.abs(o) <= half
    lo = np.where(flat, np.where(inside, -np.inf, np.inf), lo)
    hi = np.where(flat, np.where(inside, np.inf, -np.inf), hi)
    t_in, t_out = lo.max(2), hi.min(2)
    hit = (t_in <= t_out) & (t_in > 0) & (t_in < 1) & (t_out < 1)
    return hit[0] if single else hit


def covers(blockers: np.ndarray, targets: np.ndarray, origin) -> bool:
    """Would any of ``blockers`` (B, 9) hide most of any of ``targets`` (T, 9) from the lidar? Each target is
    sampled at its centre and the middles of its footprint's edges (pulled a fifth in), at three heights from
    0.3 m over its bottom to near its top: hidden when the rays to more than half of its samples pass through one
    blocker first."""
    if not len(blockers) or not len(targets):
        return False
    o = np.asarray(targets, np.float64)
    u = np.array([[0.0, 0.0], [0.4, 0.0], [-0.4, 0.0], [0.0, 0.4], [0.0, -0.4]])  # in units of length, width
    c, s = np.cos(o[:, 6]), np.sin(o[:, 6])
    dx, dy = u[None, :, 0] * o[:, None, 3], u[None, :, 1] * o[:, None, 4]
    xy = o[:, None, :2] + np.stack([c[:, None] * dx - s[:, None] * dy, s[:, None] * dx + c[:, None] * dy], -1)
    bottom = o[:, 2] - o[:, 5] / 2
    zs = bottom[:, None] + np.clip(np.array([0.3, 0.5, 0.85]) * o[:, 5:6], 0.3, None)
    zs = np.minimum(zs, (o[:, 2] + o[:, 5] / 2)[:, None])
    pts = np.concatenate([np.repeat(xy, 3, 1), np.tile(zs, 5)[..., None]], -1).reshape(-1, 3)
    blocked = segment_enters(origin, pts, np.atleast_2d(blockers)).reshape(-1, len(o), 15)
    return bool((blocked.sum(2) > 7).any())


def shadowed(xyz: np.ndarray, lag: np.ndarray | None, trail: np.ndarray, span: float, origin,
             az_reach: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(N,) the points behind a pasted object as the lidar sees it: the ray from ``origin`` to the point passes
    through the object's box where it stood at the point's sweep (``trail``: the box over the last ``span``
    seconds, the newest first; a point of an earlier sweep is tested against the trail's box nearest its time
    lag, the oldest for an older one). The sweeps are in the current ego frame and the rays all start at the
    lidar's mount now: for an earlier sweep of a moving ego the shadow's edges are off by the ego's motion since
    (about 1.5 m at 10 m/s over the 0.15 s of four sweeps). ``az_reach``: the points' (azimuth, ground range) from
    ``origin`` (``seen_from``)."""
    out = np.zeros(len(xyz), bool)
    if not len(xyz):
        return out
    az, reach = az_reach
    corners = footprints(trail[:, :2], trail[:, 6], trail[:, 3], trail[:, 4]).reshape(-1, 2) - np.asarray(origin[:2])
    near = np.hypot(corners[:, 0], corners[:, 1]).min()
    if near <= 0:  # the lidar inside the object's footprint: no pasted object stands there
        return out
    # only what lies beyond the object's nearest corner, within the azimuths its footprints span, can be behind it
    centre = np.arctan2(corners[:, 1].mean(), corners[:, 0].mean())
    off = wrap_angle(np.arctan2(corners[:, 1], corners[:, 0]) - centre)
    rel_az = wrap_angle(az - centre)
    cand = np.flatnonzero((reach > near) & (rel_az >= off.min() - 1e-6) & (rel_az <= off.max() + 1e-6))
    if not len(cand):
        return out
    k = len(trail)
    if k == 1 or lag is None or span <= 0:
        which = np.zeros(len(cand), int)
    else:
        which = np.clip(np.rint(np.nan_to_num(lag[cand]) / span * (k - 1)).astype(int), 0, k - 1)
    for j in np.unique(which):
        idx = cand[which == j]
        out[idx] = segment_enters(origin, xyz[idx], trail[j])
    return out
