"""Compressed image decoding, shared by the file sources and the ROS message decoders. No ROS needed.

- ``decode_image``: JPEG / PNG bytes -> (H, W, 3) uint8 RGB, refusing a header that announces more than
  ``max_pixels`` before decoding, and decoding a JPEG only as large as the model input needs
  (``jpeg_reduction``: libjpeg's 1/2, 1/4, 1/8 DCT scaling);
- ``decode_images``: the same over several views on a small thread pool, one result or error per view;
- ``scale_intrinsics``: the pinhole K of an image for the same image at another size (after a reduced
  decode or a resize).

Errors are ``ImageDecodeError`` (a ValueError); ``perception.sources.messages`` turns them into its
``MessageError`` for a CompressedImage message.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

MAX_PIXELS = 4096 * 4096


class ImageDecodeError(ValueError):
    """Compressed image bytes that cannot be decoded or are too large; the text says why."""


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
    A header announcing more than ``max_pixels`` is refused before decoding. Raises ImageDecodeError."""
    size = _compressed_size(buf)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageDecodeError(f"{what}: {size[0]}x{size[1]} exceeds {max_pixels} pixels")
    r = jpeg_reduction((size[1], size[0]), min_hw) if size is not None and buf[:2].tobytes() == b"\xff\xd8" else 1
    img = cv2.imdecode(buf, _REDUCED[r] if r > 1 else cv2.IMREAD_COLOR)
    if img is None:
        raise ImageDecodeError(f"{what}: could not be decoded")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise ImageDecodeError(f"{what}: {img.shape[1]}x{img.shape[0]} exceeds {max_pixels} pixels")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


_POOL = None


def _forget_pool() -> None:  # a forked child (DataLoader workers) inherits the pool object but not its threads
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_pool)


def decode_images(bufs, min_hw: tuple[int, int] | None = None, max_pixels: int = MAX_PIXELS) -> list:
    """``decode_image`` over several views on a small thread pool (OpenCV decodes without the GIL). Each
    item is the RGB image or the ImageDecodeError that view raised, so one bad view does not lose the others."""
    global _POOL

    def one(b):
        try:
            return decode_image(b, min_hw, max_pixels)
        except ImageDecodeError as e:
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


def _compressed_size(buf: np.ndarray):
    """(width, height) from a PNG IHDR or a JPEG SOF0-2 header in the first 64 KiB, or None."""
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
