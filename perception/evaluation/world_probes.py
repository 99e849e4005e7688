"""The single-cue probes and lidar structure counts of the world report (``perception.evaluation.world_report``).

``knn_probe`` asks how well a trivial classifier (kNN, features standardised on the training folds, groups held
out) reads a label from one cue; ``balanced_accuracy`` is its score. ``points_in_boxes_mask`` and
``count_pole_like`` count unannotated pole-like structures in a lidar scan (the devkit's ``points_in_box``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["balanced_accuracy", "knn_probe", "points_in_boxes_mask", "count_pole_like"]


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean per-class recall over the classes present in ``y_true``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = np.unique(y_true)
    if len(classes) == 0:
        return float("nan")
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


def _knn_predict(X_train, y_train, X_test, k: int, n_classes: int, chunk_elems: int = 4_000_000) -> np.ndarray:
    """Majority vote of the k nearest training rows (Euclidean); ties go to the class of the nearer neighbours."""
    k = min(k, len(X_train))
    out = np.empty(len(X_test), np.int64)
    sq_train = np.einsum("ij,ij->i", X_train, X_train)
    step = max(1, chunk_elems // max(1, len(X_train)))
    weights = 1.0 + 1e-3 * (k - np.arange(k)) / k  # nearest neighbour breaks a tie
    for s in range(0, len(X_test), step):
        xt = X_test[s:s + step]
        d = sq_train[None, :] - 2.0 * xt @ X_train.T + np.einsum("ij,ij->i", xt, xt)[:, None]
        idx = np.argpartition(d, k - 1, axis=1)[:, :k] if k < len(X_train) else np.tile(np.arange(k), (len(xt), 1))
        order = np.argsort(np.take_along_axis(d, idx, axis=1), axis=1, kind="stable")
        idx = np.take_along_axis(idx, order, axis=1)
        votes = np.zeros((len(xt), n_classes))
        rows = np.repeat(np.arange(len(xt)), k)
        np.add.at(votes, (rows, y_train[idx].ravel()), np.tile(weights, len(xt)))
        out[s:s + step] = votes.argmax(axis=1)
    return out


def knn_probe(X, y, groups, k: int = 5, max_folds: int = 10, seed: int = 0) -> dict:
    """How well kNN (k=5, features standardised on the training folds) reads ``y`` from ``X``, groups held out.

    Leave-one-group-out when there are at most ``max_folds`` groups, else grouped k-fold (groups shuffled
    with ``seed`` into ``max_folds`` folds): no group ever has rows on both sides of a split. Returns
    ``balanced_accuracy`` (None when fewer than 2 groups or 2 classes), ``chance`` (1 / number of classes),
    ``n`` (rows), ``n_classes`` and ``n_groups``.
    """
    X = np.asarray(X, np.float64)
    X = X.reshape(len(X), -1)
    _, y_idx = np.unique(np.asarray(y), return_inverse=True)
    y_idx = y_idx.reshape(-1)
    _, g_idx = np.unique(np.asarray(groups), return_inverse=True)
    g_idx = g_idx.reshape(-1)
    n_classes, n_groups = int(y_idx.max() + 1) if len(y_idx) else 0, int(g_idx.max() + 1) if len(g_idx) else 0
    out = {"balanced_accuracy": None, "chance": (1.0 / n_classes) if n_classes else None, "n": int(len(X)),
           "n_classes": n_classes, "n_groups": n_groups}
    if n_classes < 2 or n_groups < 2:
        return out
    if n_groups <= max_folds:
        fold = g_idx
    else:
        perm = np.random.default_rng(seed).permutation(n_groups)
        fold = (perm % max_folds)[g_idx]
    pred = np.empty(len(X), np.int64)
    for f in np.unique(fold):
        test, train = fold == f, fold != f
        mu, sd = X[train].mean(axis=0), X[train].std(axis=0)
        sd[sd < 1e-12] = 1.0
        pred[test] = _knn_predict((X[train] - mu) / sd, y_idx[train], (X[test] - mu) / sd, k, n_classes)
    out["balanced_accuracy"] = balanced_accuracy(y_idx, pred)
    return out


def _box_with_margin(box, margin: float):
    from nuscenes.utils.data_classes import Box

    return Box(box.center, np.asarray(box.wlh) + 2.0 * margin, box.orientation, name=box.name, token=box.token)


def points_in_boxes_mask(points_xyz: np.ndarray, boxes: Sequence, margin: float = 0.0) -> np.ndarray:
    """(M, N) bool: point n inside box m (devkit ``points_in_box``; each face pushed out by ``margin`` m).

    ``points_xyz`` is (N, 3) in the boxes' frame; points farther than a box's half diagonal are skipped cheaply.
    """
    from nuscenes.utils.geometry_utils import points_in_box

    pts = np.asarray(points_xyz, np.float64)
    mask = np.zeros((len(boxes), len(pts)), bool)
    for m, box in enumerate(boxes):
        b = _box_with_margin(box, margin) if margin else box
        r = 0.5 * float(np.linalg.norm(b.wlh)) + 1e-6
        near = np.flatnonzero(np.abs(pts - b.center[None, :]).max(axis=1) <= r)
        if len(near):
            mask[m, near] = points_in_box(b, pts[near].T)
    return mask


def count_pole_like(points_xyz: np.ndarray, boxes: Sequence = (), *, radius: float = 30.0, box_margin: float = 0.2,
                    ground_cell: float = 2.0, min_height: float = 0.5, max_height: float = 3.0, cell: float = 0.25,
                    max_area: float = 1.0, min_points: int = 3,
                    ego_box: tuple[float, float, float] | None = (-1.5, 4.0, 1.5)) -> int:
    """Pole-like unannotated structures in one lidar scan, in the ego frame (x forward, z up, origin at the ego).

    Points inside any of ``boxes`` (devkit Boxes in the same frame, each face pushed out by ``box_margin``) and on
    the ego body (``ego_box`` = x_min, x_max, |y|_max; None keeps them) are dropped. Local ground = the minimum z
    over a ``ground_cell`` grid cell and its 8 neighbours; points ``min_height``..``max_height`` above it within
    ``radius`` (xy) are rasterised to ``cell`` cells; 8-connected components whose footprint is under ``max_area``
    m2 with at least ``min_points`` points are counted.
    """
    from scipy import ndimage

    pts = np.asarray(points_xyz, np.float64)[:, :3]
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    rxy = np.hypot(pts[:, 0], pts[:, 1])
    pts = pts[rxy <= radius + 2.0 * ground_cell]  # ground needs a margin of cells beyond the radius
    if len(pts) == 0:
        return 0
    # local ground: min z per 2 m cell, then min over the 3x3 neighbourhood
    gij = np.floor(pts[:, :2] / ground_cell).astype(np.int64)
    g0 = gij.min(axis=0) - 1
    gij -= g0
    shape = tuple(gij.max(axis=0) + 2)
    gmin = np.full(shape, np.inf)
    np.minimum.at(gmin, (gij[:, 0], gij[:, 1]), pts[:, 2])
    ground = ndimage.minimum_filter(gmin, size=3, mode="constant", cval=np.inf)[gij[:, 0], gij[:, 1]]
    keep = (pts[:, 2] - ground >= min_height) & (pts[:, 2] - ground <= max_height)
    keep &= np.hypot(pts[:, 0], pts[:, 1]) <= radius
    if ego_box is not None:
        x0, x1, ymax = ego_box
        keep &= ~((pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (np.abs(pts[:, 1]) <= ymax))
    if len(boxes) and keep.any():
        idx = np.flatnonzero(keep)
        keep[idx[points_in_boxes_mask(pts[idx], boxes, box_margin).any(axis=0)]] = False
    pts = pts[keep]
    if len(pts) == 0:
        return 0
    n = int(math.ceil(2 * radius / cell)) + 2
    cij = np.clip(np.floor((pts[:, :2] + radius) / cell).astype(np.int64) + 1, 0, n - 1)
    occ = np.zeros((n, n), np.int64)
    np.add.at(occ, (cij[:, 0], cij[:, 1]), 1)
    labels, n_comp = ndimage.label(occ > 0, structure=np.ones((3, 3), bool))
    if n_comp == 0:
        return 0
    cells = np.bincount(labels.ravel(), minlength=n_comp + 1)[1:]
    npts = np.bincount(labels.ravel(), weights=occ.ravel(), minlength=n_comp + 1)[1:]
    return int(np.sum((cells * cell * cell < max_area) & (npts >= min_points)))
