"""ROS message <-> typed structures, without importing rclpy.

Works on anything shaped like the ROS 2 messages: rclpy message objects and ``rosbags``-deserialized ones
alike (attribute access only). Decoders validate every header field and raise ``MessageError`` (a
ValueError) with the reason; size caps are parameters.

- sensor_msgs/PointCloud2 -> PointCloud: any field order, offsets, padding, point_step, row_step,
  endianness, organized or not. xyz and float32 columns are strided views of the message buffer when the
  layout allows (no copy); NaN/inf points are dropped and counted.
- sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8; row padding) and CompressedImage (JPEG/PNG) -> RGB.
- sensor_msgs/CameraInfo -> K (3x3), distortion, frame, size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from perception.types import PointCloud


class MessageError(ValueError):
    """A message that cannot be decoded; the text says which field is wrong."""


# sensor_msgs/PointField datatypes
_PF = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
MAX_POINTS = 5_000_000
MAX_PIXELS = 4096 * 4096


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


_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def jpeg_reduction(full_hw: tuple[int, int], min_hw: tuple[int, int] | None) -> int:
    """The largest JPEG decode reduction (1, 2, 4 or 8) that still gives at least ``min_hw`` pixels.

    libjpeg decodes at 1/2, 1/4, 1/8 size by scaling its DCT (``ceil(size / r)`` pixels) at a fraction of the
    full decode's cost; the model never sees more than its input size, so anything larger is wasted.
    """
    if not min_hw:
        return 1
    (h, w), (H, W) = full_hw, min_hw
    for r in (8, 4, 2):
        if -(-h // r) >= H and -(-w // r) >= W:
            return r
    return 1


def decode_image(buf: np.ndarray, min_hw: tuple[int, int] | None = None, max_pixels: int = MAX_PIXELS,
                 what: str = "image") -> np.ndarray:
    """JPEG / PNG bytes -> (H, W, 3) uint8 RGB. ``min_hw``: decode a JPEG only as large as needed for an
    (H, W) model input (see ``jpeg_reduction``); the caller scales its intrinsics by the returned size.
    A header announcing more than ``max_pixels`` is refused before decoding. Raises MessageError."""
    size = _compressed_size(buf)
    if size is not None and size[0] * size[1] > max_pixels:
        raise MessageError(f"{what}: {size[0]}x{size[1]} exceeds {max_pixels} pixels")
    r = jpeg_reduction((size[1], size[0]), min_hw) if size is not None and buf[:2].tobytes() == b"\xff\xd8" else 1
    img = cv2.imdecode(buf, _REDUCED[r] if r > 1 else cv2.IMREAD_COLOR)
    if img is None:
        raise MessageError(f"{what}: could not be decoded")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise MessageError(f"{what}: {img.shape[1]}x{img.shape[0]} exceeds {max_pixels} pixels")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


_POOL = None


def _forget_pool() -> None:  # a forked child (DataLoader workers) inherits the pool object but not its threads
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_pool)


def decode_images(bufs, min_hw: tuple[int, int] | None = None, max_pixels: int = MAX_PIXELS) -> list:
    """``decode_image`` over several views on a small thread pool (OpenCV decodes without the GIL). Each
    item is the RGB image or the MessageError that view raised, so one bad view does not lose the others."""
    global _POOL

    def one(b):
        try:
            return decode_image(b, min_hw, max_pixels)
        except MessageError as e:
            return e

    bufs = list(bufs)
    if len(bufs) < 2 or (os.cpu_count() or 1) < 2:
        return [one(b) for b in bufs]
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="decode")
    return list(_POOL.map(one, bufs))


def scale_intrinsics(K: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """Pinhole K of an image of ``from_hw`` pixels, for the same image resized to ``to_hw``."""
    if tuple(from_hw) == tuple(to_hw):
        return np.asarray(K, np.float64)
    return np.diag([to_hw[1] / from_hw[1], to_hw[0] / from_hw[0], 1.0]) @ np.asarray(K, np.float64)


def compressed_to_rgb(msg, max_pixels: int = MAX_PIXELS, min_hw: tuple[int, int] | None = None) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG or PNG) -> (H, W, 3) uint8 RGB; ``min_hw`` as in ``decode_image``."""
    try:
        fmt = str(msg.format).lower()
        buf = _buffer(msg.data)
    except (AttributeError, TypeError, ValueError) as e:
        raise MessageError(f"CompressedImage: missing or bad field ({e})") from None
    if not any(k in fmt for k in ("jpeg", "jpg", "png")) and fmt:
        raise MessageError(f"CompressedImage: unsupported format {fmt!r} (jpeg, png)")
    if len(buf) < 8:
        raise MessageError("CompressedImage: data is empty or too short")
    return decode_image(buf, min_hw, max_pixels, f"CompressedImage ({fmt or 'data'})")


def _compressed_size(buf: np.ndarray):
    b = buf[:65536].tobytes()
    if b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) >= 24:
        return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")
    if b[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(b):
            if b[i] != 0xFF:
                i += 1
                continue
            marker = b[i + 1]
            if marker in (0xC0, 0xC1, 0xC2):
                return int.from_bytes(b[i + 7 : i + 9], "big"), int.from_bytes(b[i + 5 : i + 7], "big")
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            i += 2 + int.from_bytes(b[i + 2 : i + 4], "big")
    return None


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
