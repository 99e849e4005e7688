"""PointCloud: xyz plus named per-point feature columns."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from perception.geometry import rotate_vectors, transform_points
from perception.types._validate import as_array, check_length, check_transform

# Feature-column pairs that are 2D vectors in the cloud's frame and must rotate with it.
VECTOR_COLUMNS: tuple[tuple[str, str], ...] = (("vx", "vy"), ("vx_comp", "vy_comp"))


def rotated_vectors(T: np.ndarray, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The VECTOR_COLUMNS pairs among ``features`` rotated by the rotation of ``T`` (new arrays); the other
    columns do not change with the frame and are not returned."""
    out = {}
    for a, b in VECTOR_COLUMNS:
        if a in features and b in features:
            v = rotate_vectors(T, np.stack([features[a], features[b]], axis=1))
            out[a], out[b] = v[:, 0].copy(), v[:, 1].copy()
    return out


class PointCloud:
    """Points in one frame (normally the ego frame of a SensorFrame).

    ``xyz``: (N, 3) float32 metres. ``features``: name -> (N,) float32 column, e.g. intensity, ring,
    time_lag (seconds before the frame stamp, >= 0), and for radar rcs, vx_comp, vy_comp (m/s, in the
    cloud's frame; rotated together with it).
    """

    __slots__ = ("xyz", "features")

    def __init__(self, xyz, features: Mapping[str, np.ndarray] | None = None):
        self.xyz = as_array("PointCloud.xyz", xyz, np.float32, (None, 3))
        n = len(self.xyz)
        self.features: dict[str, np.ndarray] = {}
        for name, col in (features or {}).items():
            arr = as_array(f"PointCloud.features[{name!r}]", col, np.float32, (None,))
            check_length(f"PointCloud.features[{name!r}]", arr, n)
            self.features[name] = arr

    def __len__(self) -> int:
        return len(self.xyz)

    def __repr__(self) -> str:
        return f"PointCloud(n={len(self)}, features={list(self.features)})"

    @property
    def columns(self) -> tuple[str, ...]:
        return ("x", "y", "z", *self.features)

    def __getitem__(self, idx) -> PointCloud:
        """Select points by index array, slice or boolean mask."""
        if isinstance(idx, str):
            raise TypeError("PointCloud[...] selects points; use .features[name] or .column(name) for a column")
        return PointCloud(self.xyz[idx], {k: v[idx] for k, v in self.features.items()})

    def column(self, name: str) -> np.ndarray:
        if name in ("x", "y", "z"):
            return self.xyz[:, "xyz".index(name)]
        if name not in self.features:
            raise KeyError(f"PointCloud has no column {name!r}; it has {list(self.columns)}")
        return self.features[name]

    def to_array(self, columns=None) -> np.ndarray:
        """(N, C) float32 array of the named columns (default: all, xyz first)."""
        cols = self.columns if columns is None else columns
        if len(self) == 0:
            return np.zeros((0, len(cols)), np.float32)
        return np.stack([self.column(c) for c in cols], axis=1).astype(np.float32, copy=False)

    def transform(self, T) -> PointCloud:
        """Return the cloud expressed in another frame (``T`` = T_new_old); vector columns rotate too."""
        T = check_transform("PointCloud.transform(T)", T)
        return PointCloud(transform_points(T.astype(np.float64), self.xyz.astype(np.float64)),
                          {**self.features, **rotated_vectors(T, self.features)})

    def finite(self) -> tuple[PointCloud, int]:
        """Drop points with a non-finite coordinate or feature; returns (cloud, number dropped)."""
        ok = np.isfinite(self.xyz[:, 0])  # column by column: isfinite(xyz).all(axis=1) is 10x slower
        for v in (self.xyz[:, 1], self.xyz[:, 2], *self.features.values()):
            ok &= np.isfinite(v)
        return (self, 0) if ok.all() else (self[ok], int((~ok).sum()))

    @staticmethod
    def concatenate(clouds) -> PointCloud:
        """Join clouds with the same columns."""
        clouds = list(clouds)
        if not clouds:
            return PointCloud(np.zeros((0, 3), np.float32))
        names = list(clouds[0].features)
        for c in clouds[1:]:
            if list(c.features) != names:
                raise ValueError(f"PointCloud.concatenate: columns differ ({names} vs {list(c.features)})")
        return PointCloud(np.concatenate([c.xyz for c in clouds]),
                          {k: np.concatenate([c.features[k] for c in clouds]) for k in names})

    @staticmethod
    def empty(feature_names=()) -> PointCloud:
        return PointCloud(np.zeros((0, 3), np.float32), {k: np.zeros(0, np.float32) for k in feature_names})
