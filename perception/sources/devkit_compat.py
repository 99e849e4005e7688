"""Fixes for nuscenes-devkit 1.2.0 under numpy 2 (the devkit pins numpy<2; we run it on numpy 2).

- ``MapMask.to_pixel_coords`` returns 1-element arrays for scalar inputs; the explorer then calls ``int()``
  on them, which numpy 2 rejects, so ``render_sample`` / ``render_sample_data(underlay_map=True)`` fail on
  any dataroot. We return plain ints for scalar inputs (array inputs unchanged).

Call ``apply()`` before using those devkit functions; it is idempotent.
"""

from __future__ import annotations

import numpy as np

_APPLIED = False


def apply() -> None:
    global _APPLIED
    if _APPLIED:
        return
    from nuscenes.utils.map_mask import MapMask

    original = MapMask.to_pixel_coords

    def to_pixel_coords(self, x, y):
        px, py = original(self, x, y)
        if np.ndim(x) == 0 and np.ndim(y) == 0:
            return int(np.asarray(px).reshape(-1)[0]), int(np.asarray(py).reshape(-1)[0])
        return px, py

    MapMask.to_pixel_coords = to_pixel_coords
    _APPLIED = True
