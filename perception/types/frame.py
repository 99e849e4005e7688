"""SensorFrame and CameraView: what every source yields and the pipeline consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from perception.types._validate import as_array, check_transform
from perception.types.boxes import Boxes3D
from perception.types.pointcloud import PointCloud

CAMERAS: tuple[str, ...] = (
    "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT",
)
RADARS: tuple[str, ...] = ("RADAR_FRONT", "RADAR_FRONT_LEFT", "RADAR_FRONT_RIGHT", "RADAR_BACK_LEFT",
                           "RADAR_BACK_RIGHT")
LIDAR = "LIDAR_TOP"
# the model's modalities, in the order of its "present" flags (B, len(MODALITIES))
MODALITIES: tuple[str, ...] = ("camera", "lidar", "radar")


@dataclass
class CameraView:
    """One camera image with its calibration.

    ``image``: (H, W, 3) uint8 RGB. ``intrinsics``: (3, 3) pinhole K for this image (after any resize).
    ``T_ego_cam``: (4, 4) camera (optical frame: x right, y down, z forward) in the frame's ego frame at
    the frame stamp, ego motion between the camera's and the frame's stamps included. ``stamp_ns``: exposure.
    """

    image: np.ndarray
    intrinsics: np.ndarray
    T_ego_cam: np.ndarray
    stamp_ns: int
    channel: str = ""

    def __post_init__(self):
        self.image = as_array(f"CameraView({self.channel}).image", self.image, np.uint8, (None, None, 3))
        self.intrinsics = as_array(f"CameraView({self.channel}).intrinsics", self.intrinsics, np.float64, (3, 3))
        if not np.all(np.isfinite(self.intrinsics)) or self.intrinsics[0, 0] <= 0 or self.intrinsics[1, 1] <= 0:
            raise ValueError(f"CameraView({self.channel}).intrinsics: focal lengths must be finite and > 0")
        self.T_ego_cam = check_transform(f"CameraView({self.channel}).T_ego_cam", self.T_ego_cam)
        self.stamp_ns = int(self.stamp_ns)

    @property
    def hw(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]


@dataclass
class SensorFrame:
    """All sensors of one instant, in the ego frame at ``stamp_ns`` (integer nanoseconds).

    ``T_global_ego``: (4, 4) ego pose. ``lidar``: every sweep merged, motion-compensated, with a time_lag
    column; ``radar``: all radars merged, same convention. A missing modality is None (or no cameras),
    never zero-filled. ``gt``: ground-truth boxes in the ego frame when the source has them.
    """

    stamp_ns: int
    T_global_ego: np.ndarray
    cameras: dict[str, CameraView] = field(default_factory=dict)
    lidar: PointCloud | None = None
    radar: PointCloud | None = None
    gt: Boxes3D | None = None
    sample_token: str = ""
    scene: str = ""
    source: str = ""

    def __post_init__(self):
        self.stamp_ns = int(self.stamp_ns)
        self.T_global_ego = check_transform("SensorFrame.T_global_ego", self.T_global_ego)
        for name, view in self.cameras.items():
            if not isinstance(view, CameraView):
                raise TypeError(f"SensorFrame.cameras[{name!r}]: expected CameraView, got {type(view).__name__}")
        for name in ("lidar", "radar"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, PointCloud):
                raise TypeError(f"SensorFrame.{name}: expected PointCloud or None, got {type(v).__name__}")
        if self.gt is not None and not isinstance(self.gt, Boxes3D):
            raise TypeError(f"SensorFrame.gt: expected Boxes3D or None, got {type(self.gt).__name__}")

    @property
    def modalities(self) -> tuple[str, ...]:
        """Which of camera, lidar, radar this frame carries."""
        out = []
        if self.cameras:
            out.append("camera")
        if self.lidar is not None:
            out.append("lidar")
        if self.radar is not None:
            out.append("radar")
        return tuple(out)


@dataclass(frozen=True)
class Prompt:
    """A referring expression, e.g. "moving cars ahead on the left"."""

    text: str

    def __post_init__(self):
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError("Prompt.text: must be a non-empty string")
