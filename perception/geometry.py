"""Rigid-body geometry in one place: quaternions ([w, x, y, z], nuScenes order), SE(3), projection, boxes.

Transforms are 4x4 float64 matrices named ``T_dst_src``: ``p_dst = T_dst_src @ p_src``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "quat_to_matrix", "matrix_to_quat", "yaw_to_quat", "quat_to_yaw", "make_transform", "invert_transform",
    "transform_points", "rotate_vectors", "project_points", "box_corners", "points_in_boxes", "wrap_angle",
    "LIDAR_TOP_T",
]

# nuScenes' roof lidar (LIDAR_TOP) in the ego frame, metres: the synthetic world's rig mounts its lidar there, and
# ground-truth sampling casts its rays from there by default
LIDAR_TOP_T = (0.943, 0.0, 1.84)


def quat_to_matrix(q) -> np.ndarray:
    """(4,) quaternion [w, x, y, z] -> (3, 3) rotation matrix. The quaternion is normalised first."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat(R) -> np.ndarray:
    """(3, 3) rotation matrix -> (4,) quaternion [w, x, y, z] with w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def yaw_to_quat(yaw: float) -> np.ndarray:
    """Rotation by ``yaw`` radians about +z as [w, x, y, z]."""
    return np.array([np.cos(yaw / 2.0), 0.0, 0.0, np.sin(yaw / 2.0)])


def quat_to_yaw(q) -> float:
    """Heading of the rotated +x axis in the xy-plane (radians), as the nuScenes devkit's ``quaternion_yaw``."""
    R = quat_to_matrix(q)
    return float(np.arctan2(R[1, 0], R[0, 0]))


def wrap_angle(a):
    """Wrap angles to [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2.0 * np.pi) - np.pi


def make_transform(rotation=None, translation=None) -> np.ndarray:
    """4x4 transform from a quaternion [w, x, y, z] or a (3, 3) matrix, and a (3,) translation."""
    T = np.eye(4)
    if rotation is not None:
        rot = np.asarray(rotation, dtype=np.float64)
        T[:3, :3] = quat_to_matrix(rot) if rot.shape == (4,) else rot
    if translation is not None:
        T[:3, 3] = np.asarray(translation, dtype=np.float64)
    return T


def invert_transform(T) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (no general matrix inverse)."""
    T = np.asarray(T, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


def transform_points(T, pts) -> np.ndarray:
    """Apply a 4x4 transform to (N, 3) points; keeps the input's float dtype."""
    pts = np.asarray(pts)
    T = np.asarray(T)
    out = pts @ T[:3, :3].T.astype(pts.dtype, copy=False) + T[:3, 3].astype(pts.dtype, copy=False)
    return out


def rotate_vectors(T, vecs) -> np.ndarray:
    """Rotate (N, 3) or (N, 2) direction vectors (velocities) by the rotation part of a 4x4 transform.
    (N, 2) vectors are taken as lying in the xy-plane and returned as (N, 2)."""
    vecs = np.asarray(vecs)
    if vecs.shape[-1] == 2:
        v3 = np.concatenate([vecs, np.zeros_like(vecs[..., :1])], axis=-1)
        return (v3 @ np.asarray(T)[:3, :3].T.astype(vecs.dtype, copy=False))[..., :2]
    return vecs @ np.asarray(T)[:3, :3].T.astype(vecs.dtype, copy=False)


def project_points(K, pts_cam, min_depth: float = 1e-3):
    """Pinhole projection of (N, 3) camera-frame points (z forward). Returns (uv (N, 2), in_front (N,) bool)."""
    pts_cam = np.asarray(pts_cam, dtype=np.float64)
    z = pts_cam[:, 2]
    in_front = z > min_depth
    zs = np.where(in_front, z, 1.0)
    uvw = pts_cam @ np.asarray(K, dtype=np.float64).T
    return uvw[:, :2] / zs[:, None], in_front


# the 12 edges of a box as index pairs into box_corners' corners (four of the front face, four of the back, and the
# four joining them)
BOX_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7))
_EDGES = np.array(BOX_EDGES)


def box_edges_in_front(corners, near: float) -> np.ndarray:
    """(..., 8, 3) box corners in a camera's frame (z forward; or any linear map of it that keeps z, such as
    (u z, v z, z) image coordinates) -> (..., 12, 2, 3) the ends of the 12 edges (``BOX_EDGES``) cut at the plane
    z = ``near``: an end behind it moves along its edge onto the plane; an edge wholly behind it is NaN. What a
    camera can draw or cover of a box that is partly behind it (a car beside the ego seen by a side camera)."""
    c = np.asarray(corners, dtype=np.float64)
    a, b = c[..., _EDGES[:, 0], :], c[..., _EDGES[:, 1], :]
    za, zb = a[..., 2:], b[..., 2:]
    with np.errstate(invalid="ignore", divide="ignore"):
        a2 = np.where(za < near, b + (a - b) * (zb - near) / (zb - za), a)
        b2 = np.where(zb < near, a + (b - a) * (za - near) / (za - zb), b)
    ends = np.stack([a2, b2], -2)
    return np.where(((za < near) & (zb < near))[..., None], np.nan, ends)


def box_image_rects(corners, ego2img, near: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """(K, 8, 3) box corners in the ego frame and (N, 4, 4) ego -> pixel matrices (rows u z, v z, z) -> the image
    rectangle each box covers in each camera, (N, K, 4) u_min, v_min, u_max, v_max in pixel coordinates (unclipped;
    NaN where the box lies wholly behind the plane ``near`` metres in front of the camera), and (N, K) the depth of
    its nearest covered point (inf: behind). The rectangle bounds the corners in front of that plane and the points
    where the box's edges cross it (a car beside the ego, half behind a side camera, covers the image to its edge)."""
    c = np.asarray(corners, dtype=np.float64)
    P = np.asarray(ego2img, dtype=np.float64)
    N, K = len(P), len(c)
    hom = np.concatenate([c, np.ones((K, 8, 1))], -1)
    cam = np.einsum("nij,kcj->nkci", P, hom)[..., :3]  # N, K, 8, 3: (u z, v z, z)
    pts = box_edges_in_front(cam, near).reshape(N, K, 24, 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = pts[..., 0] / pts[..., 2]
        v = pts[..., 1] / pts[..., 2]
    seen = np.isfinite(u)
    depth = np.where(seen, pts[..., 2], np.inf).min(2)
    rects = np.full((N, K, 4), np.nan)
    any_seen = seen.any(2)
    if any_seen.any():
        big = np.where(seen, u, np.inf), np.where(seen, v, np.inf)
        small = np.where(seen, u, -np.inf), np.where(seen, v, -np.inf)
        rects[any_seen] = np.stack([big[0].min(2), big[1].min(2), small[0].max(2), small[1].max(2)], -1)[any_seen]
    return rects, depth


def box_corners(boxes) -> np.ndarray:
    """(N, >=7) boxes x y z l w h yaw -> (N, 8, 3) corners.

    Corner order: the 4 corners of the front face (+x in the box frame) then the 4 of the back face, each
    face going (+y,+z), (-y,+z), (-y,-z), (+y,-z) - the nuScenes devkit's ``Box.corners`` order.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, np.shape(boxes)[-1] if np.ndim(boxes) else 7)
    sx = np.array([1, 1, 1, 1, -1, -1, -1, -1]) * 0.5
    sy = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * 0.5
    sz = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * 0.5
    local = np.stack([b[:, 3:4] * sx, b[:, 4:5] * sy, b[:, 5:6] * sz], axis=-1)  # (N, 8, 3)
    c, s = np.cos(b[:, 6]), np.sin(b[:, 6])
    x = local[..., 0] * c[:, None] - local[..., 1] * s[:, None]
    y = local[..., 0] * s[:, None] + local[..., 1] * c[:, None]
    return np.stack([x, y, local[..., 2]], axis=-1) + b[:, None, :3]


def points_in_boxes(points, boxes, margin: float = 0.0) -> np.ndarray:
    """(N, 3) points, (M, >=7) boxes -> (M, N) bool mask of points inside each box (faces included)."""
    pts = np.asarray(points, dtype=np.float64)[:, :3]
    b = np.asarray(boxes, dtype=np.float64)
    if len(b) == 0 or len(pts) == 0:
        return np.zeros((len(b), len(pts)), dtype=bool)
    d = pts[None, :, :] - b[:, None, :3]
    c, s = np.cos(b[:, 6])[:, None], np.sin(b[:, 6])[:, None]
    lx = d[..., 0] * c + d[..., 1] * s
    ly = -d[..., 0] * s + d[..., 1] * c
    return ((np.abs(lx) <= b[:, 3:4] / 2 + margin) & (np.abs(ly) <= b[:, 4:5] / 2 + margin)
            & (np.abs(d[..., 2]) <= b[:, 5:6] / 2 + margin))


def footprints(xy, yaw, l, w) -> np.ndarray:
    """(K, 4, 2) corners of K rotated rectangles in the ground plane: centres ``xy`` (K, 2), headings ``yaw``,
    lengths ``l`` along the heading and widths ``w`` (K,)."""
    c, s = np.cos(yaw), np.sin(yaw)
    dx = np.array([1, 1, -1, -1]) * 0.5
    dy = np.array([1, -1, -1, 1]) * 0.5
    px = xy[:, None, 0] + c[:, None] * dx * l[:, None] - s[:, None] * dy * w[:, None]
    py = xy[:, None, 1] + s[:, None] * dx * l[:, None] + c[:, None] * dy * w[:, None]
    return np.stack([px, py], axis=-1)


def footprints_overlap(a, b) -> np.ndarray:
    """(K,) bool: do footprints a (K, 4, 2) and b (K, 4, 2) overlap, pair by pair (separating axis test)?"""
    hit = np.ones(len(a), bool)
    for poly in (a, b):
        for e in range(2):
            axis = poly[:, e + 1] - poly[:, e]
            axis = axis / np.maximum(np.linalg.norm(axis, axis=1, keepdims=True), 1e-9)
            pa = (a * axis[:, None]).sum(-1)
            pb = (b * axis[:, None]).sum(-1)
            hit &= ~((pa.max(1) < pb.min(1)) | (pb.max(1) < pa.min(1)))
    return hit
