"""One sensor sweep into the reference ego frame: shared by NuScenesSource and FrameAssembler, so the
dataset reader and the live/replay path build frames with the same arithmetic."""

from __future__ import annotations

import numpy as np

from perception.types import PointCloud


def sweep_in_reference(cloud: PointCloud, T_ref_sensor: np.ndarray, lag_s: float, remove_close: float,
                       filters: dict | None = None) -> PointCloud:
    """``cloud`` (sensor frame) -> the reference frame. Points with |x| and |y| below ``remove_close`` of the
    sensor are dropped (the devkit's remove_close), ``filters`` ({column: allowed values}) keep matching
    points, a time_lag column (seconds before the reference stamp) is appended; vector columns rotate."""
    keep = np.ones(len(cloud), bool)
    if remove_close > 0:
        keep = ~((np.abs(cloud.xyz[:, 0]) < remove_close) & (np.abs(cloud.xyz[:, 1]) < remove_close))
    for column, allowed in (filters or {}).items():
        if column in cloud.features:
            keep &= np.isin(cloud.features[column], allowed)
    kept = cloud[keep]
    feats = dict(kept.features)
    feats["time_lag"] = np.full(len(kept), lag_s, np.float32)
    return PointCloud(kept.xyz, feats).transform(T_ref_sensor)
