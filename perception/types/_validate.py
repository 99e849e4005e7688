"""Construction-time checks shared by the typed structures: every error names the offending field."""

from __future__ import annotations

import numpy as np


def as_array(name: str, value, dtype, shape: tuple, *, copy: bool = False) -> np.ndarray:
    """Return ``value`` as an ndarray of ``dtype`` checked against ``shape`` (None = any size).

    Integers and floats may become floats (any width) and integers other integer widths; anything else
    (floats where integers are wanted, strings, objects) raises TypeError.
    """
    try:
        arr = np.array(value, copy=copy) if copy else np.asarray(value)
    except (TypeError, ValueError) as e:  # ragged input
        raise TypeError(f"{name}: cannot be read as an array ({e})") from None
    want = np.dtype(dtype)
    if arr.size == 0 and arr.dtype == np.float64 and want != arr.dtype:
        arr = arr.astype(want)  # np.zeros((0, k)) and [] carry float64 by default
    if arr.dtype != want:
        numeric = np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)
        same_kind = (np.issubdtype(want, np.floating) and (numeric or np.issubdtype(arr.dtype, np.floating))) or (
            np.issubdtype(arr.dtype, np.integer) and np.issubdtype(want, np.integer))
        if not same_kind:
            raise TypeError(f"{name}: expected dtype {want}, got {arr.dtype}")
        arr = arr.astype(want)
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        pretty = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {pretty}, got {tuple(arr.shape)}")
    return arr


def check_transform(name: str, T) -> np.ndarray:
    T = as_array(name, T, np.float64, (4, 4))
    # np.allclose's tolerances written out: allclose and linalg.det cost ~60 us per transform, and frame
    # assembly checks ~20 transforms per frame
    if not np.isfinite(T).all():
        raise ValueError(f"{name}: transform contains NaN or inf")
    if not (np.abs(T[3] - _LAST_ROW) <= _LAST_ROW_TOL).all():
        raise ValueError(f"{name}: last row of a 4x4 transform must be [0, 0, 0, 1], got {T[3].tolist()}")
    R = T[:3, :3]
    det = (R[0, 0] * (R[1, 1] * R[2, 2] - R[1, 2] * R[2, 1]) - R[0, 1] * (R[1, 0] * R[2, 2] - R[1, 2] * R[2, 0])
           + R[0, 2] * (R[1, 0] * R[2, 1] - R[1, 1] * R[2, 0]))
    if not (np.abs(R @ R.T - _EYE3) <= _EYE3_TOL).all() or det < 0:
        raise ValueError(f"{name}: rotation part is not a proper rotation matrix")
    return T


_LAST_ROW = np.array([0.0, 0.0, 0.0, 1.0])
_LAST_ROW_TOL = 1e-8 + 1e-5 * _LAST_ROW      # np.allclose defaults
_EYE3 = np.eye(3)
_EYE3_TOL = 1e-5 + 1e-5 * _EYE3              # atol=1e-5, default rtol


def check_length(name: str, arr: np.ndarray, n: int) -> None:
    if len(arr) != n:
        raise ValueError(f"{name}: expected {n} entries (one per box/point), got {len(arr)}")
