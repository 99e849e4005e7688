"""ROS message <-> typed structures, without importing rclpy.

Works on anything shaped like the ROS 2 messages: rclpy message objects and ``rosbags``-deserialized ones
alike (attribute access only). Decoders validate every header field and raise ``MessageError`` (a
ValueError) with the reason; size caps are parameters.

- sensor_msgs/PointCloud2 -> PointCloud: any field order, offsets, padding, point_step, row_step,
  endianness, organized or not. xyz and float32 columns are strided views of the message buffer when the
  layout allows (no copy); NaN/inf points are dropped and counted.
- sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8; row padding) and CompressedImage (JPEG/PNG) -> RGB
  (the compressed bytes are decoded by ``perception.sources.images``).
- sensor_msgs/CameraInfo -> K (3x3), distortion, frame, size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from perception.sources.images import MAX_PIXELS, ImageDecodeError, decode_image
from perception.types import PointCloud


class MessageError(ValueError):
    """A message that cannot be decoded; the text says which field is wrong."""


# sensor_msgs/PointField datatypes
_PF = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
MAX_POINTS = 5_000_000


def _buffer(data) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.view(np.uint8).reshape(-1)
    return np.frombuffer(memoryview(data), dtype=np.uint8) if not isinstance(data, list) else np.asarray(
        data, dtype=np.uint8)


@dataclass
class CloudStats:
    received: int
    dropped_nonfinite: int


@lru_cache(maxsize=64)
def _layout(fields: tuple, step: int, big: bool):
    """(names, formats, offsets, structured dtype) of the usable fields, or the error text."""
    names, formats, offsets = [], [], []
    for name, off, dt, cnt in fields:
        if dt not in _PF:
            return f"PointCloud2: field {name!r} has unknown datatype {dt}"
        size = np.dtype(_PF[dt]).itemsize
        if cnt != 1 or off < 0 or off + size > step:
            if name in ("x", "y", "z"):
                return f"PointCloud2: field {name!r} offset {off}/count {cnt} does not fit point_step"
            continue  # skip multi-count or out-of-point fields other than xyz
        if name in names:
            return f"PointCloud2: duplicate field {name!r}"
        names.append(name)
        formats.append((">" if big else "<") + _PF[dt])
        offsets.append(off)
    for c in ("x", "y", "z"):
        if c not in names:
            return f"PointCloud2: no {c!r} field (fields: {names})"
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": step})
    return tuple(names), tuple(formats), tuple(offsets), dtype


def pointcloud2_to_cloud(msg, columns=None, rename=None, max_points: int = MAX_POINTS
                         ) -> tuple[PointCloud, CloudStats]:
    """PointCloud2 -> (PointCloud, stats). ``columns``: which non-xyz fields to keep (default: all
    single-count fields); ``rename``: field name -> column name (e.g. {"vx_comp": "vx_comp"})."""
    try:
        h, w = int(msg.height), int(msg.width)
        step, row_step = int(msg.point_step), int(msg.row_step)
        big = bool(msg.is_bigendian)
        fields = list(msg.fields)
    except (AttributeError, TypeError, ValueError) as e:
        raise MessageError(f"PointCloud2: missing or bad header field ({e})") from None
    if h < 0 or w < 0 or step <= 0 or row_step < 0:
        raise MessageError(f"PointCloud2: bad sizes height={h} width={w} point_step={step} row_step={row_step}")
    n = h * w
    if n > max_points:
        raise MessageError(f"PointCloud2: {n} points exceed the cap of {max_points}")
    if row_step < w * step:
        raise MessageError(f"PointCloud2: row_step {row_step} < width*point_step {w * step}")
    buf = _buffer(msg.data)
    need = (h - 1) * row_step + w * step if n else 0
    if len(buf) < need:
        raise MessageError(f"PointCloud2: data has {len(buf)} bytes, layout needs {need}")
    try:
        key = tuple((str(f.name), int(f.offset), int(f.datatype), int(f.count)) for f in fields)
    except (AttributeError, TypeError, ValueError) as e:
        raise MessageError(f"PointCloud2: bad PointField ({e})") from None
    layout = _layout(key, step, big)  # a sensor sends one layout: parsed once, not per message
    if isinstance(layout, str):
        raise MessageError(layout)
    names, formats, offsets, dtype = layout
    if n == 0:
        rec = np.zeros(0, dtype)
    elif h == 1 or row_step == w * step:
        rec = np.ndarray((n,), dtype, buffer=buf, offset=0, strides=(step,))
    else:  # padded rows: a 2D strided view, flattened (one copy)
        rec = np.ndarray((h, w), dtype, buffer=buf, offset=0, strides=(row_step, step)).reshape(-1)
    native = np.dtype("<f4").newbyteorder("=") == np.dtype("<f4")
    ix, iy, iz = (offsets[names.index(c)] for c in "xyz")
    fmt_xyz = {formats[names.index(c)] for c in "xyz"}
    if iy == ix + 4 and iz == ix + 8 and fmt_xyz == {"<f4"} and native and rec.base is not None and n:
        xyz = np.ndarray((n, 3), np.float32, buffer=buf, offset=ix, strides=(step, 4))
    else:
        xyz = np.stack([rec[c].astype(np.float32) for c in "xyz"], axis=1) if n else np.zeros((0, 3), np.float32)
    rename = rename or {}
    keep = [c for c in names if c not in ("x", "y", "z")] if columns is None else list(columns)
    feats = {}
    for c in keep:
        if c not in names:
            raise MessageError(f"PointCloud2: requested column {c!r} not in fields {list(names)}")
        col = rec[c]
        feats[rename.get(c, c)] = col if col.dtype == np.float32 else col.astype(np.float32)
    cloud = PointCloud(xyz, feats)
    if (n and native and rec.base is not None and len(keep) + 3 == len(names) and step == 4 * len(names)
            and all(f == "<f4" for f in formats) and sorted(offsets) == list(range(0, step, 4))):
        # every field is a kept float32 and the points are packed: one contiguous check over the buffer
        if np.isfinite(np.ndarray((n, len(names)), np.float32, buffer=buf, offset=0, strides=(step, 4))).all():
            return cloud, CloudStats(received=n, dropped_nonfinite=0)
    cloud, dropped = cloud.finite()
    return cloud, CloudStats(received=n, dropped_nonfinite=dropped)


def image_to_rgb(msg, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB (copies only where the encoding needs it)."""
    try:
        h, w, step = int(msg.height), int(msg.width), int(msg.step)
        enc = str(msg.encoding).lower()
        big = bool(getattr(msg, "is_bigendian", False))
    except (AttributeError, TypeError, ValueError) as e:
        raise MessageError(f"Image: missing or bad header field ({e})") from None
    ch = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8uc3": 3, "8uc1": 1}.get(enc)
    if ch is None:
        raise MessageError(f"Image: unsupported encoding {enc!r} (rgb8, bgr8, rgba8, bgra8, mono8)")
    del big
    if h <= 0 or w <= 0 or h * w > max_pixels:
        raise MessageError(f"Image: size {w}x{h} is empty or exceeds {max_pixels} pixels")
    if step < w * ch:
        raise MessageError(f"Image: step {step} < width*channels {w * ch}")
    buf = _buffer(msg.data)
    if len(buf) < (h - 1) * step + w * ch:
        raise MessageError(f"Image: data has {len(buf)} bytes, {h} rows of step {step} need more")
    img = np.ndarray((h, w, ch), np.uint8, buffer=buf, offset=0, strides=(step, ch, 1))
    if enc in ("rgb8", "8uc3"):
        return np.ascontiguousarray(img)
    if enc == "bgr8":
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2RGB)
    if enc == "rgba8":
        return np.ascontiguousarray(img[..., :3])
    if enc == "bgra8":
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(np.ascontiguousarray(img[..., 0]), cv2.COLOR_GRAY2RGB)


def compressed_to_rgb(msg, max_pixels: int = MAX_PIXELS, min_hw: tuple[int, int] | None = None) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG or PNG) -> (H, W, 3) uint8 RGB; ``min_hw`` as in
    ``perception.sources.images.decode_image``."""
    try:
        fmt = str(msg.format).lower()
        buf = _buffer(msg.data)
    except (AttributeError, TypeError, ValueError) as e:
        raise MessageError(f"CompressedImage: missing or bad field ({e})") from None
    if not any(k in fmt for k in ("jpeg", "jpg", "png")) and fmt:
        raise MessageError(f"CompressedImage: unsupported format {fmt!r} (jpeg, png)")
    if len(buf) < 8:
        raise MessageError("CompressedImage: data is empty or too short")
    try:
        return decode_image(buf, min_hw, max_pixels, f"CompressedImage ({fmt or 'data'})")
    except ImageDecodeError as e:
        raise MessageError(str(e)) from None


@dataclass
class CameraCalibration:
    K: np.ndarray
    D: np.ndarray
    frame_id: str
    width: int
    height: int


def camera_info(msg) -> CameraCalibration:
    """sensor_msgs/CameraInfo -> CameraCalibration (K 3x3, distortion D)."""
    try:
        K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
        D = np.asarray(msg.d, dtype=np.float64).reshape(-1)
        frame = str(msg.header.frame_id)
        w, h = int(msg.width), int(msg.height)
    except (AttributeError, TypeError, ValueError) as e:
        raise MessageError(f"CameraInfo: missing or bad field ({e})") from None
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise MessageError("CameraInfo: K has no positive finite focal lengths")
    return CameraCalibration(K, D, frame, w, h)


def stamp_ns(header) -> int:
    """builtin_interfaces/Time of a header -> integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
