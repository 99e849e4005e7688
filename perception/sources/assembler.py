"""FrameAssembler: decoded sensor messages -> SensorFrames. Shared by the live node and drive-log replay.

It keeps the recent lidar sweeps, radar sweeps per channel, camera calibrations, static extrinsics
(base_link -> sensor) and the ego trajectory (map -> base_link), and builds a frame for a reference lidar
stamp the way NuScenesSource does: the reference sweep plus up to ``lidar_sweeps`` earlier ones, each
motion-compensated into the reference ego frame with its own pose (time_lag column); per radar the
matched sweep plus earlier ones up to ``radar_sweeps`` in total; cameras with T_ego_cam including the ego
motion between the camera's and the reference stamps.
"""

from __future__ import annotations

import bisect
from collections import deque

import numpy as np

from perception.geometry import invert_transform, make_transform, matrix_to_quat, quat_to_matrix
from perception.sources.assembly import DEFAULT_RADAR_FILTERS
from perception.sources.images import scale_intrinsics
from perception.sources.sweeps import merge_in_reference
from perception.types import CAMERAS, LIDAR, RADARS, CameraView, PointCloud, SensorFrame


class PoseError(LookupError):
    """No ego pose near a stamp (the log's /tf does not cover it)."""


def _slerp_pose(Ta, Tb, f):
    qa, qb = matrix_to_quat(Ta[:3, :3]), matrix_to_quat(Tb[:3, :3])
    if np.dot(qa, qb) < 0:
        qb = -qb
    d = float(np.clip(np.dot(qa, qb), -1, 1))
    if d > 0.9995:
        q = qa + f * (qb - qa)
    else:
        th = np.arccos(d)
        q = (np.sin((1 - f) * th) * qa + np.sin(f * th) * qb) / np.sin(th)
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(q / np.linalg.norm(q))
    T[:3, 3] = (1 - f) * Ta[:3, 3] + f * Tb[:3, 3]
    return T


class FrameAssembler:
    def __init__(self, lidar_sweeps: int = 9, radar_sweeps: int = 3, cameras=CAMERAS,
                 radar_filters=DEFAULT_RADAR_FILTERS, remove_close: float = 1.0, max_pose_gap_s: float = 0.5,
                 pose_history: int = 4000):
        self.lidar_sweeps, self.radar_sweeps = lidar_sweeps, radar_sweeps
        self.cameras = tuple(cameras)
        self.radar_filters = radar_filters
        self.remove_close = remove_close
        self.max_gap = int(max_pose_gap_s * 1e9)
        self.static: dict[str, np.ndarray] = {}
        self.pose_stamps: list[int] = []
        self.poses: list[np.ndarray] = []
        self.pose_history = pose_history
        self.lidar = deque(maxlen=lidar_sweeps + 1 + 20)
        self.radar = {ch: deque(maxlen=radar_sweeps + 20) for ch in RADARS}
        self.camera_K: dict[str, np.ndarray] = {}
        self.camera_hw: dict[str, tuple[int, int] | None] = {}

    # -- inputs -----------------------------------------------------------------------------------------
    def add_static(self, child: str, translation, rotation_wxyz) -> None:
        self.static[child] = make_transform(rotation_wxyz, translation)

    def add_pose(self, stamp_ns: int, translation, rotation_wxyz) -> None:
        T = make_transform(rotation_wxyz, translation)
        i = bisect.bisect_left(self.pose_stamps, stamp_ns)
        if i < len(self.pose_stamps) and self.pose_stamps[i] == stamp_ns:
            self.poses[i] = T
            return
        self.pose_stamps.insert(i, stamp_ns)
        self.poses.insert(i, T)
        if len(self.pose_stamps) > self.pose_history:
            del self.pose_stamps[0], self.poses[0]

    def add_lidar(self, stamp_ns: int, cloud: PointCloud) -> None:
        """A sweep in the LIDAR_TOP sensor frame (columns intensity, ring, ...)."""
        self._insert(self.lidar, stamp_ns, cloud)

    def add_radar(self, channel: str, stamp_ns: int, cloud: PointCloud) -> None:
        if channel not in self.radar:
            raise KeyError(f"unknown radar channel {channel!r}; valid: {RADARS}")
        self._insert(self.radar[channel], stamp_ns, cloud)

    def set_camera_info(self, channel: str, K: np.ndarray, hw: tuple[int, int] | None = None) -> None:
        """K of the camera's full image of ``hw`` (height, width) pixels (CameraInfo's size; None or 0 when
        unknown): an image of another size (a reduced JPEG decode, a downscaled stream) gets K scaled to it."""
        self.camera_K[channel] = np.asarray(K, np.float64).reshape(3, 3)
        self.camera_hw[channel] = tuple(hw) if hw and all(hw) else None

    @staticmethod
    def _insert(buf: deque, stamp: int, item) -> None:
        if buf and stamp < buf[-1][0]:  # out of order: keep the buffer sorted
            items = sorted([*buf, (stamp, item)], key=lambda x: x[0])
            buf.clear()
            buf.extend(items)
        else:
            buf.append((stamp, item))

    # -- poses ------------------------------------------------------------------------------------------
    def pose_at(self, stamp_ns: int) -> np.ndarray:
        s = self.pose_stamps
        if not s:
            raise PoseError("no ego pose received yet (/tf map -> base_link)")
        i = bisect.bisect_left(s, stamp_ns)
        if i < len(s) and s[i] == stamp_ns:
            return self.poses[i]
        if 0 < i < len(s):
            a, b = s[i - 1], s[i]
            if b - a <= 2 * self.max_gap:
                return _slerp_pose(self.poses[i - 1], self.poses[i], (stamp_ns - a) / (b - a))
        j = min(max(i - 1, 0), len(s) - 1) if i >= len(s) else i
        if abs(s[j] - stamp_ns) <= self.max_gap:
            return self.poses[j]
        raise PoseError(f"no ego pose within {self.max_gap / 1e9:.2f} s of stamp {stamp_ns}")

    def extrinsic(self, channel: str) -> np.ndarray:
        if channel not in self.static:
            raise PoseError(f"no static transform base_link -> {channel} (/tf_static)")
        return self.static[channel]

    # -- frames -----------------------------------------------------------------------------------------
    def build_match(self, m) -> SensorFrame:
        """The frame of a synchronizer Match: its radar stamps and its camera (stamp, RGB) messages."""
        radar_stamps = {ch: m.stamps[ch] for ch in RADARS if ch in m.stamps}
        images = {ch: m.messages[ch] for ch in self.cameras if ch in m.messages}
        return self.build(m.stamp_ns, radar_stamps, images)

    def build(self, ref_stamp: int, radar_stamps: dict[str, int] | None = None,
              images: dict[str, tuple[int, np.ndarray]] | None = None, lidar: bool = True) -> SensorFrame:
        """The frame at the reference lidar stamp. ``radar_stamps``: the matched sweep per radar channel;
        ``images``: channel -> (stamp, RGB). Missing pieces are left out of the frame."""
        T_ref = self.pose_at(ref_stamp)
        T_ego_global = invert_transform(T_ref)

        def in_reference(channel, stamp, c):
            """(cloud, T_ref_sensor, lag) for merge_in_reference; None without a pose."""
            try:
                T = T_ego_global @ self.pose_at(stamp) @ self.extrinsic(channel)
            except PoseError:
                return None
            return c, T, (ref_stamp - stamp) * 1e-9

        cloud = None
        if lidar:
            sweeps = [x for x in self.lidar if x[0] <= ref_stamp][-(self.lidar_sweeps + 1):][::-1]
            if not sweeps or sweeps[0][0] != ref_stamp:
                raise KeyError(f"no lidar sweep at the reference stamp {ref_stamp}")
            parts = [in_reference(LIDAR, stamp, PointCloud(c.xyz, {k: v for k, v in c.features.items()
                                                                    if k in ("intensity", "ring")}))
                     for stamp, c in sweeps]
            cloud = merge_in_reference(parts, self.remove_close)
        radar = None
        if radar_stamps:
            parts = []
            for ch in RADARS:
                if ch not in radar_stamps:
                    continue
                hist = [x for x in self.radar[ch] if x[0] <= radar_stamps[ch]][-self.radar_sweeps:][::-1]
                parts += [in_reference(ch, stamp, c) for stamp, c in hist]
            parts = [p for p in parts if p is not None]
            if parts:
                radar = merge_in_reference(parts, self.remove_close, self.radar_filters)
        cams = {}
        for ch, (stamp, rgb) in (images or {}).items():
            if ch not in self.cameras or ch not in self.camera_K:
                continue
            try:
                T = T_ego_global @ self.pose_at(stamp) @ self.extrinsic(ch)
            except PoseError:
                continue
            K, hw = self.camera_K[ch], self.camera_hw.get(ch)
            cams[ch] = CameraView(rgb, scale_intrinsics(K, hw, rgb.shape[:2]) if hw else K, T, stamp, ch)
        return SensorFrame(stamp_ns=ref_stamp, T_global_ego=T_ref, cameras=cams, lidar=cloud, radar=radar,
                           source="log")
