"""Sensor sweeps into the reference ego frame: shared by NuScenesSource and FrameAssembler, so the
dataset reader and the live/replay path build frames with the same arithmetic."""

from __future__ import annotations

import numpy as np

from perception.geometry import transform_points
from perception.types import PointCloud
from perception.types._validate import check_transform
from perception.types.pointcloud import rotated_vectors


def merge_in_reference(parts, remove_close: float, filters: dict | None = None) -> PointCloud:
    """[(cloud in its sensor frame, T_ref_sensor, lag_s), ...] -> one cloud in the reference frame.

    Per sweep: points with |x| and |y| below ``remove_close`` of the sensor are dropped (the devkit's
    remove_close), ``filters`` ({column: allowed values}) keep matching points, xyz is transformed (float64
    arithmetic), vector columns rotate, a time_lag column (seconds before the reference stamp) is set. The
    sweeps are written once into preallocated columns (no per-sweep clouds to concatenate); non-finite points
    are dropped at the end. None parts (no pose) are skipped."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return PointCloud.empty(("time_lag",))
    names = list(parts[0][0].features)
    for c, _, _ in parts[1:]:
        if list(c.features) != names:
            raise ValueError(f"merge_in_reference: columns differ ({names} vs {list(c.features)})")
    keeps = []
    for cloud, _, _ in parts:
        keep = None
        if remove_close > 0:
            keep = ~((np.abs(cloud.xyz[:, 0]) < remove_close) & (np.abs(cloud.xyz[:, 1]) < remove_close))
        for column, allowed in (filters or {}).items():
            if column in cloud.features:
                ok = np.isin(cloud.features[column], allowed)
                keep = ok if keep is None else keep & ok
        keeps.append(keep)
    sizes = [len(c) if k is None else int(k.sum()) for (c, _, _), k in zip(parts, keeps)]
    total = sum(sizes)
    xyz = np.empty((total, 3), np.float32)
    feats = {n: np.empty(total, np.float32) for n in (*names, "time_lag")}
    o = 0
    for (cloud, T, lag), keep, k in zip(parts, keeps, sizes):
        T = check_transform("merge_in_reference(T)", T)
        sl = slice(o, o + k)
        p = cloud.xyz if keep is None else cloud.xyz[keep]
        xyz[sl] = transform_points(T, p.astype(np.float64))  # float64 arithmetic, as PointCloud.transform
        for n in names:
            feats[n][sl] = cloud.features[n] if keep is None else cloud.features[n][keep]
        for n, v in rotated_vectors(T, {n: feats[n][sl] for n in names}).items():
            feats[n][sl] = v
        feats["time_lag"][sl] = lag
        o += k
    cloud, _ = PointCloud(xyz, feats).finite()
    return cloud
