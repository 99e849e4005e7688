"""Boxes3D: oriented 3D boxes with per-box fields (labels, tokens, attributes, point counts)."""

from __future__ import annotations

import numpy as np

from perception.geometry import box_corners, points_in_boxes, rotate_vectors, transform_points, wrap_angle
from perception.types._validate import as_array, check_length, check_transform
from perception.types.labels import ATTRIBUTES, DETECTION_CLASSES

# Optional per-box fields and their dtypes; anything else is rejected with the list of valid names.
BOX_FIELDS: dict[str, object] = {
    "tokens": object,            # annotation tokens (str)
    "instance_tokens": object,   # track identities (str)
    "attributes": np.int64,      # index into ATTRIBUTES, -1 = none
    "num_lidar_pts": np.int64,
    "num_radar_pts": np.int64,
    "visibility": np.int64,      # nuScenes visibility level 1..4 (0 = unknown)
}


class Boxes3D:
    """(N, 9) float64 ``data``: x, y, z, l, w, h, yaw, vx, vy in the ego frame; (x, y, z) is the box centre,
    l is along the box's own +x (heading), yaw about +z from +x in radians, velocities in m/s.
    ``labels``: (N,) int64 index into DETECTION_CLASSES. Optional per-box fields: see BOX_FIELDS.
    """

    __slots__ = ("data", "labels", "fields")

    def __init__(self, data, labels, **fields):
        d = as_array("Boxes3D.data", data, np.float64, (None, None))
        if d.shape[1] == 7:  # no velocity: zeros
            d = np.concatenate([d, np.zeros((len(d), 2))], axis=1)
        if d.shape[1] != 9:
            raise ValueError(f"Boxes3D.data: expected shape (N, 9) (x y z l w h yaw vx vy), got {d.shape}")
        if np.any(d[:, 3:6] < 0):
            raise ValueError("Boxes3D.data: sizes l, w, h must be >= 0")
        self.data = d
        self.labels = as_array("Boxes3D.labels", labels, np.int64, (None,))
        check_length("Boxes3D.labels", self.labels, len(d))
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(DETECTION_CLASSES)):
            raise ValueError(f"Boxes3D.labels: values must be in [0, {len(DETECTION_CLASSES)})")
        self.fields: dict[str, np.ndarray] = {}
        for name, value in fields.items():
            if value is None:
                continue
            if name not in BOX_FIELDS:
                raise TypeError(f"Boxes3D: unknown field {name!r}; valid fields are {sorted(BOX_FIELDS)}")
            dtype = BOX_FIELDS[name]
            if dtype is object:
                arr = np.empty(len(value), dtype=object)
                arr[:] = list(value)
            else:
                arr = as_array(f"Boxes3D.{name}", value, dtype, (None,))
            check_length(f"Boxes3D.{name}", arr, len(d))
            self.fields[name] = arr

    # -- container protocol (detectron2 Instances style) ---------------------------------------------
    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, idx) -> Boxes3D:
        if isinstance(idx, (int, np.integer)):
            idx = [int(idx)]
        return Boxes3D(self.data[idx], self.labels[idx], **{k: v[idx] for k, v in self.fields.items()})

    def __getattr__(self, name):
        # slots are found before __getattr__; this serves the optional fields
        fields = object.__getattribute__(self, "fields")
        if name in fields:
            return fields[name]
        if name in BOX_FIELDS:
            return None
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"Boxes3D(n={len(self)}, fields={list(self.fields)})"

    @staticmethod
    def empty() -> Boxes3D:
        return Boxes3D(np.zeros((0, 9)), np.zeros(0, np.int64))

    @staticmethod
    def concatenate(items) -> Boxes3D:
        items = list(items)
        if not items:
            return Boxes3D.empty()
        keys = set(items[0].fields)
        for b in items[1:]:
            keys &= set(b.fields)
        return Boxes3D(np.concatenate([b.data for b in items]), np.concatenate([b.labels for b in items]),
                       **{k: np.concatenate([b.fields[k] for b in items]) for k in keys})

    # -- views ------------------------------------------------------------------------------------------
    @property
    def center(self) -> np.ndarray:
        return self.data[:, 0:3]

    @property
    def size_lwh(self) -> np.ndarray:
        return self.data[:, 3:6]

    @property
    def yaw(self) -> np.ndarray:
        return self.data[:, 6]

    @property
    def velocity(self) -> np.ndarray:
        return self.data[:, 7:9]

    @property
    def class_names(self) -> list[str]:
        return [DETECTION_CLASSES[i] for i in self.labels]

    @property
    def attribute_ids(self) -> np.ndarray:
        """(N,) int64 index into ATTRIBUTES per box, -1 where a box has none (or the boxes carry no field)."""
        attrs = self.fields.get("attributes")
        return np.full(len(self), -1, np.int64) if attrs is None else attrs

    @property
    def attribute_names(self) -> list[str]:
        return [ATTRIBUTES[a] if a >= 0 else "" for a in self.attribute_ids]

    def corners(self) -> np.ndarray:
        """(N, 8, 3) corners in the devkit's order (front face first)."""
        return box_corners(self.data)

    def points_inside(self, xyz) -> np.ndarray:
        """(N_boxes, N_points) bool mask."""
        return points_in_boxes(xyz, self.data)

    def with_data(self, data) -> Boxes3D:
        """The same boxes (labels and fields copied) with ``data`` (N, 9) in place of theirs."""
        return Boxes3D(data, self.labels.copy(), **{k: v.copy() for k, v in self.fields.items()})

    def transform(self, T) -> Boxes3D:
        """Express the boxes in another frame (``T`` = T_new_old, rotation about z assumed for yaw)."""
        T = check_transform("Boxes3D.transform(T)", T)
        d = self.data.copy()
        d[:, :3] = transform_points(T, d[:, :3])
        d[:, 6] = wrap_angle(d[:, 6] + np.arctan2(T[1, 0], T[0, 0]))
        d[:, 7:9] = rotate_vectors(T, d[:, 7:9])
        return self.with_data(d)
