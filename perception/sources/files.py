"""nuScenes sensor file formats: lidar ``.pcd.bin`` (float32 x y z intensity ring) and radar binary PCD v0.7.

Readers check sizes and headers and raise ``SourceDataError`` naming the file; writers produce files the
nuScenes devkit reads unchanged (including the trailing byte its radar parser expects).
"""

from __future__ import annotations

import os

import numpy as np


class SourceDataError(RuntimeError):
    """A sensor file or table entry is missing, truncated or malformed. The message names the file."""


LIDAR_COLUMNS = ("x", "y", "z", "intensity", "ring")

RADAR_FIELDS = ("x", "y", "z", "dyn_prop", "id", "rcs", "vx", "vy", "vx_comp", "vy_comp", "is_quality_valid",
                "ambig_state", "x_rms", "y_rms", "invalid_state", "pdh0", "vx_rms", "vy_rms")
RADAR_SIZES = (4, 4, 4, 1, 2, 4, 4, 4, 4, 4, 1, 1, 1, 1, 1, 1, 1, 1)
RADAR_TYPES = ("F", "F", "F", "I", "I", "F", "F", "F", "F", "F", "I", "I", "I", "I", "I", "I", "I", "I")
_PCD_NP = {("F", 4): "<f4", ("F", 8): "<f8", ("I", 1): "i1", ("I", 2): "<i2", ("I", 4): "<i4",
           ("U", 1): "u1", ("U", 2): "<u2", ("U", 4): "<u4"}
RADAR_DTYPE = np.dtype([(n, _PCD_NP[(t, s)]) for n, t, s in zip(RADAR_FIELDS, RADAR_TYPES, RADAR_SIZES)])
MAX_PCD_HEADER_BYTES = 4096


def _context(path, sample) -> str:
    return f"{path}" + (f" (sample {sample})" if sample else "")


def read_lidar_bin(path, ncols: int = 5, sample: str = "") -> np.ndarray:
    """(N, ncols) float32 from a nuScenes lidar ``.pcd.bin``."""
    try:
        raw = np.fromfile(path, dtype=np.float32)
    except FileNotFoundError:
        raise SourceDataError(f"missing lidar file {_context(path, sample)}") from None
    except OSError as e:
        raise SourceDataError(f"cannot read lidar file {_context(path, sample)}: {e}") from None
    size = os.path.getsize(path)
    if size % (4 * ncols):
        raise SourceDataError(
            f"truncated lidar file {_context(path, sample)}: {size} bytes is not a multiple of {4 * ncols} "
            f"({ncols} float32 columns per point)")
    return raw.reshape(-1, ncols)


def write_lidar_bin(path, points: np.ndarray) -> None:
    np.ascontiguousarray(points, dtype=np.float32).tofile(path)


def radar_header(n: int) -> bytes:
    lines = [
        "# .PCD v0.7 - Point Cloud Data file format",
        "VERSION 0.7",
        "FIELDS " + " ".join(RADAR_FIELDS),
        "SIZE " + " ".join(map(str, RADAR_SIZES)),
        "TYPE " + " ".join(RADAR_TYPES),
        "COUNT " + " ".join("1" for _ in RADAR_FIELDS),
        f"WIDTH {n}",
        "HEIGHT 1",
        "VIEWPOINT 0 0 0 1 0 0 0",
        f"POINTS {n}",
        "DATA binary",
    ]
    return ("\n".join(lines) + "\n").encode("ascii")


def write_radar_pcd(path, points: np.ndarray) -> None:
    """Write a structured array of RADAR_DTYPE as nuScenes binary PCD (plus the trailing byte the devkit needs)."""
    pts = np.asarray(points)
    if pts.dtype != RADAR_DTYPE:
        raise TypeError(f"write_radar_pcd: points must have dtype RADAR_DTYPE, got {pts.dtype}")
    with open(path, "wb") as f:
        f.write(radar_header(len(pts)))
        f.write(pts.tobytes())
        f.write(b"\n")


def read_radar_pcd(path, sample: str = "") -> np.ndarray:
    """Structured array (one record per point, the PCD's own fields) from a binary PCD v0.7 file."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        raise SourceDataError(f"missing radar file {_context(path, sample)}") from None
    except OSError as e:
        raise SourceDataError(f"cannot read radar file {_context(path, sample)}: {e}") from None
    where = _context(path, sample)
    header: dict[str, list[str]] = {}
    pos = 0
    while True:
        end = blob.find(b"\n", pos)
        if end < 0 or end > MAX_PCD_HEADER_BYTES:
            raise SourceDataError(f"bad PCD header in {where}: no 'DATA' line in the first "
                                  f"{MAX_PCD_HEADER_BYTES} bytes")
        line = blob[pos:end].decode("ascii", errors="replace").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *vals = line.split()
        header[key] = vals
        if key == "DATA":
            break
    try:
        if header["DATA"] != ["binary"]:
            raise SourceDataError(f"unsupported PCD in {where}: DATA {header['DATA']} (only binary)")
        fields, sizes, types = header["FIELDS"], [int(s) for s in header["SIZE"]], header["TYPE"]
        counts = [int(c) for c in header.get("COUNT", ["1"] * len(fields))]
        n = int(header["POINTS"][0])
    except (KeyError, ValueError, IndexError) as e:
        raise SourceDataError(f"bad PCD header in {where}: {e!r}") from None
    if not (len(fields) == len(sizes) == len(types) == len(counts)) or any(c != 1 for c in counts) or n < 0:
        raise SourceDataError(f"bad PCD header in {where}: FIELDS/SIZE/TYPE/COUNT disagree")
    try:
        dtype = np.dtype([(f, _PCD_NP[(t, s)]) for f, t, s in zip(fields, types, sizes)])
    except (KeyError, ValueError, TypeError) as e:
        raise SourceDataError(f"bad PCD header in {where}: unsupported field type {e}") from None
    need = n * dtype.itemsize
    if len(blob) - pos < need:
        raise SourceDataError(f"truncated radar file {where}: header says {n} points ({need} bytes), "
                              f"file has {len(blob) - pos} bytes of data")
    return np.frombuffer(blob, dtype=dtype, count=n, offset=pos).copy()
