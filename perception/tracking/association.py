"""Pairing detections with tracks: the per-class gates, the class groups whose detections may continue one
another's tracks, and the assignment (greedy in score order, as CenterPoint, or of least total cost)."""

from __future__ import annotations

import numpy as np

from perception.types import DETECTION_CLASSES

# Association gates on the centre distance (metres) after the prediction, per class: CenterPoint's nuScenes
# values for the tracked classes; barriers and cones (static, not in the tracking benchmark) get small ones.
GATES = {"car": 4.0, "truck": 4.0, "bus": 5.5, "trailer": 3.0, "pedestrian": 1.0, "motorcycle": 13.0,
         "bicycle": 3.0, "construction_vehicle": 4.0, "barrier": 1.0, "traffic_cone": 1.0}


def class_groups(groups) -> np.ndarray:
    """The tracker's ``groups`` setting -> (classes,) group number per detection class (each class alone when
    None). ``groups``: classes that may continue one another's tracks, as lists of class names or as a string
    "bicycle+motorcycle;bus+truck" (a command line's); a class in two groups or an unknown one is an error."""
    of = np.arange(len(DETECTION_CLASSES))
    if groups is None or groups == "" or groups == "none":
        return of
    if isinstance(groups, str):
        groups = [g.split("+") for g in groups.split(";") if g.strip()]
    seen: set = set()
    for g in groups:
        names = [str(c).strip() for c in g]
        bad = [c for c in names if c not in DETECTION_CLASSES]
        if bad:
            raise ValueError(f"tracker.groups: unknown classes {bad}; valid: {DETECTION_CLASSES}")
        twice = seen & set(names)
        if twice:
            raise ValueError(f"tracker.groups: {sorted(twice)} in two groups")
        seen |= set(names)
        idx = [DETECTION_CLASSES.index(c) for c in names]
        of[idx] = min(idx)
    return of


def assign(cost: np.ndarray, order: np.ndarray, matcher: str) -> list[tuple[int, int]]:
    """Pairs (detection, track) with finite cost. Greedy: detections in ``order`` (score, high first) each
    take their nearest free track; hungarian: the assignment of least total cost."""
    if not cost.size:
        return []
    if matcher == "hungarian":
        from scipy.optimize import linear_sum_assignment

        big = 1e6
        r, c = linear_sum_assignment(np.where(np.isfinite(cost), cost, big))
        return [(int(i), int(j)) for i, j in zip(r, c) if np.isfinite(cost[i, j])]
    pairs, taken = [], np.zeros(cost.shape[1], bool)
    for i in order:
        row = np.where(taken, np.inf, cost[i])
        j = int(np.argmin(row))
        if np.isfinite(row[j]):
            pairs.append((int(i), j))
            taken[j] = True
    return pairs
