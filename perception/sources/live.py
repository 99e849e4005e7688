"""The feeder: decoded sensor messages in, synchronized ``SensorFrame``s out. No ROS needed.

Every rule between a message and a frame lives here, once:

- validation: an undecodable message, a cloud whose points are all NaN/inf, a pose with non-finite values
  or a zero quaternion, a malformed extrinsics payload are rejected and counted per input (``rejected``,
  with the last reason in ``reasons``); NaN points inside a good cloud are dropped by the decoder;
- sweeps: the last ``lidar_sweeps`` lidar sweeps and ``radar_sweeps`` per radar, motion-compensated into
  the reference ego frame with their own poses (``FrameAssembler``); messages arriving out of order are
  put back in stamp order;
- filters: the devkit's radar filters and the ``remove_close`` radius;
- synchronization: the lidar is the reference; each camera and radar contributes its message closest to
  the lidar stamp within ``slop_s``; a frame waits at most ``timeout_s`` (on the caller's clock: wall time
  live, log time in replay) for a late sensor, then goes without it and names it (``FrameSynchronizer``);
- poses: a stamp between two ego poses up to 2 x ``max_pose_gap_s`` apart gets the interpolated pose; a
  stamp within ``max_pose_gap_s`` before the first or after the last pose gets that pose held; any other
  frame (a longer gap, no pose yet) is skipped and counted (``skipped_frames``). The ego pose comes from
  /tf (``world_frame`` -> base_link, other transforms ignored) or /ego_pose; extrinsics from /tf_static
  (base_link -> sensor only) or the JSON /sensor_extrinsics;
- silence: an input that delivered before and has been quiet for over a second while others talk is
  reported by ``silent()``.

All of it comes from one ``Assembly`` (the checkpoint's deploy spec). ``BagSource`` is the feeder fed from a
log; the live node (``ros_nodes.fusion_node``) is the feeder fed from subscriptions; both route messages
with ``inputs()`` and ``take()``, so they make the same frames from the same messages. The feeder is
thread-safe: the node's callbacks add messages (decoded outside the lock) while its worker thread builds
frames; ``silent()`` reads without the lock (a dict snapshot) and is meant for one caller at a time.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import numpy as np

from perception.sources.assembler import FrameAssembler, PoseError
from perception.sources.assembly import Assembly
from perception.sources.files import RADAR_DTYPE
from perception.sources.messages import (
    MessageError,
    camera_info,
    compressed_to_rgb,
    image_to_rgb,
    pointcloud2_to_cloud,
    stamp_ns,
)
from perception.sources.sync import FrameSynchronizer, Match
from perception.types import LIDAR, SensorFrame

LIDAR_COLUMNS = ("intensity", "ring")
RADAR_COLUMNS = tuple(n for n in RADAR_DTYPE.names if n not in ("x", "y", "z"))
# what a decoder raises on a malformed message (rclpy and rosbags messages are plain attribute bags)
BAD_INPUT = (MessageError, ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError)
SILENT_S = 1.0
BASE_FRAME = "base_link"


def _check_transform(translation, rotation_wxyz, what: str) -> None:
    vals = np.asarray([*rotation_wxyz, *translation], np.float64)
    if vals.shape != (7,) or not np.all(np.isfinite(vals)) or not np.any(vals[:4]):
        raise ValueError(f"{what} with non-finite values or a zero quaternion")


@dataclass(frozen=True)
class Input:
    """One subscription: ``topic`` of ROS type ``msgtype``; ``kind`` says how the feeder takes it."""
    topic: str
    msgtype: str
    kind: str            # lidar | radar | image | compressed_image | camera_info | tf | tf_static | pose | extrinsics
    channel: str = ""

    @property
    def name(self) -> str:
        """How rejections and silence name this input: the channel, CAM_X/camera_info, or the kind."""
        if self.kind == "camera_info":
            return f"{self.channel}/camera_info"
        return self.channel if self.sensor else self.kind

    @property
    def sensor(self) -> bool:
        """A high-rate sensor stream (sensor-data QoS); the others are state (poses, calibration)."""
        return self.kind in ("lidar", "radar", "image", "compressed_image")


class Feeder:
    def __init__(self, assembly: Assembly | None = None, keyframes_only: bool = False, on_reject=None,
                 world_frame: str = "map"):
        """``keyframes_only``: frames in which a camera is missing are skipped (the 2 Hz keyframes of a
        nuScenes-converted log). ``on_reject(input, error)`` is told about every rejected message.
        ``world_frame``: the parent of the ego pose on /tf (``world_frame`` -> base_link); sensor extrinsics
        come from /tf_static as base_link -> sensor."""
        self.spec = a = assembly or Assembly()
        self.world_frame = world_frame
        self.cameras, self.radars = a.cameras, a.radars
        self.assembler = FrameAssembler(a.lidar_sweeps, a.radar_sweeps, a.cameras, a.radar_filters, a.remove_close,
                                        a.max_pose_gap_s)
        self.sync = FrameSynchronizer([LIDAR, *a.cameras, *a.radars], LIDAR, a.queue_size, a.slop_s, a.timeout_s)
        self.keyframes_only = keyframes_only
        self.on_reject = on_reject
        self.lock = threading.RLock()
        self.rejected: dict[str, int] = {}
        self.reasons: dict[str, str] = {}
        self.skipped_frames = 0
        self.skip_reasons: dict[str, int] = {}
        self.last_seen: dict[str, int] = {}

    # -- routing ------------------------------------------------------------------------------------------
    def inputs(self, tf: bool = True) -> list[Input]:
        """The topics a log or a vehicle delivers. ``tf``: poses and extrinsics from /tf and /tf_static
        (tf2_msgs/TFMessage); otherwise from /ego_pose (PoseStamped) and /sensor_extrinsics (a latched JSON
        String), the fallback where tf2_msgs is not installed."""
        out = [Input(f"/{LIDAR}", "sensor_msgs/msg/PointCloud2", "lidar", LIDAR)]
        out += [Input(f"/{ch}", "sensor_msgs/msg/PointCloud2", "radar", ch) for ch in self.radars]
        for ch in self.cameras:
            out += [Input(f"/{ch}/image_rect_compressed", "sensor_msgs/msg/CompressedImage", "compressed_image", ch),
                    Input(f"/{ch}/image_rect", "sensor_msgs/msg/Image", "image", ch),
                    Input(f"/{ch}/camera_info", "sensor_msgs/msg/CameraInfo", "camera_info", ch)]
        if tf:
            out += [Input("/tf", "tf2_msgs/msg/TFMessage", "tf"),
                    Input("/tf_static", "tf2_msgs/msg/TFMessage", "tf_static")]
        else:
            out += [Input("/ego_pose", "geometry_msgs/msg/PoseStamped", "pose"),
                    Input("/sensor_extrinsics", "std_msgs/msg/String", "extrinsics")]
        return out

    def take(self, inp: Input, msg, now_ns: int) -> list[Match]:
        """Add one decoded ROS message (rclpy or rosbags: the same fields); return the frames that are
        complete now (build them with ``build``). A bad message is rejected and counted; nothing raises."""
        try:
            decoded = self._decode(inp, msg)  # outside the lock: decoding is the expensive part
            with self.lock:
                matches = self._take(inp, msg, decoded, int(now_ns))
        except BAD_INPUT as err:
            self.reject(inp.name, err)
            return []
        if inp.sensor:
            self.last_seen[inp.name] = int(now_ns)
        return matches

    def _decode(self, inp: Input, msg):
        """A sensor message's payload: (stamp, cloud) or (stamp, RGB image); None for the other inputs."""
        kind = inp.kind
        if kind in ("lidar", "radar"):
            cloud, stats = pointcloud2_to_cloud(msg, columns=LIDAR_COLUMNS if kind == "lidar" else RADAR_COLUMNS)
            if kind == "lidar" and stats.received and not len(cloud):
                raise MessageError(f"all {stats.received} points are NaN/inf")
            return stamp_ns(msg.header), cloud
        if kind in ("image", "compressed_image"):
            rgb = compressed_to_rgb(msg, min_hw=self.spec.image_min_hw) if kind == "compressed_image" \
                else image_to_rgb(msg)
            return stamp_ns(msg.header), rgb
        return None

    def _take(self, inp: Input, msg, decoded, now: int) -> list[Match]:
        a, kind, ch = self.assembler, inp.kind, inp.channel
        if kind == "lidar":
            stamp, cloud = decoded
            a.add_lidar(stamp, cloud)
            return self.sync.add(LIDAR, stamp, stamp, now)
        if kind == "radar":
            stamp, cloud = decoded
            a.add_radar(ch, stamp, cloud)
            return self.sync.add(ch, stamp, stamp, now)
        if kind in ("image", "compressed_image"):
            stamp, rgb = decoded
            return self.sync.add(ch, stamp, (stamp, rgb), now)
        if kind == "camera_info":
            info = camera_info(msg)
            a.set_camera_info(ch, info.K, (info.height, info.width))
        elif kind in ("tf", "tf_static"):
            sensors = {LIDAR, *self.cameras, *self.radars}
            for tr in msg.transforms:
                q, p = tr.transform.rotation, tr.transform.translation
                parent, child = tr.header.frame_id.lstrip("/"), tr.child_frame_id.lstrip("/")
                if kind == "tf_static" and child in sensors:
                    if parent != BASE_FRAME:  # chains (base_link -> mount -> sensor) are not composed
                        raise ValueError(f"/tf_static {parent} -> {child}: sensor extrinsics must be given "
                                         f"from {BASE_FRAME}")
                    self._static(child, (p.x, p.y, p.z), (q.w, q.x, q.y, q.z))
                elif kind == "tf" and child == BASE_FRAME and parent == self.world_frame:
                    self._pose(stamp_ns(tr.header), (p.x, p.y, p.z), (q.w, q.x, q.y, q.z))
                # every other transform of the tree is someone else's
        elif kind == "pose":
            q, p = msg.pose.orientation, msg.pose.position
            self._pose(stamp_ns(msg.header), (p.x, p.y, p.z), (q.w, q.x, q.y, q.z))
        elif kind == "extrinsics":  # JSON only: nothing received is ever unpickled or evaluated
            items = json.loads(msg.data)
            if not isinstance(items, dict):
                raise ValueError("extrinsics must be a JSON object {channel: {translation, rotation}}")
            for child, e in items.items():
                self._static(child, e["translation"], e["rotation"])
        else:
            raise KeyError(f"unknown input kind {kind!r}")
        return self.sync.poll(now)

    def _pose(self, stamp: int, translation, rotation_wxyz) -> None:
        _check_transform(translation, rotation_wxyz, "ego pose")
        self.assembler.add_pose(stamp, translation, rotation_wxyz)

    def _static(self, child: str, translation, rotation_wxyz) -> None:
        _check_transform(translation, rotation_wxyz, f"extrinsic of {child!r}")
        self.assembler.add_static(str(child), translation, rotation_wxyz)

    def reject(self, name: str, err) -> None:
        with self.lock:
            self.rejected[name] = self.rejected.get(name, 0) + 1
            self.reasons[name] = str(err)
        if self.on_reject is not None:
            self.on_reject(name, err)

    # -- frames -------------------------------------------------------------------------------------------
    def poll(self, now_ns: int) -> list[Match]:
        """Frames whose late sensors have timed out by ``now_ns``."""
        with self.lock:
            return self.sync.poll(int(now_ns))

    def flush(self) -> list[Match]:
        """Every pending frame with what it has (the end of a log)."""
        with self.lock:
            return self.sync.flush()

    def build(self, m: Match) -> SensorFrame | None:
        """The frame of a match; None (counted in ``skipped_frames`` by reason) when it has no ego pose, its
        lidar sweep is gone, or ``keyframes_only`` and a camera is missing."""
        if self.keyframes_only and any(c in m.missing for c in self.cameras):
            return self._skip("camera missing (keyframes only)")
        try:
            with self.lock:
                return self.assembler.build_match(m)
        except PoseError:
            return self._skip("no ego pose near the stamp")
        except KeyError:
            return self._skip("lidar sweep no longer buffered")

    def _skip(self, why: str) -> None:
        with self.lock:
            self.skipped_frames += 1
            self.skip_reasons[why] = self.skip_reasons.get(why, 0) + 1
        return None

    def silent(self, now_ns: int, after_s: float = SILENT_S) -> dict[str, float]:
        """{input: seconds quiet} of inputs that delivered before, have been quiet for over ``after_s`` while
        another delivered within ``after_s``: a sensor that stopped (empty when all or none talk)."""
        seen = dict(self.last_seen)  # a snapshot: callbacks update it meanwhile
        if not seen:
            return {}
        lim = int(after_s * 1e9)
        if now_ns - max(seen.values()) >= lim:
            return {}
        return {k: round((now_ns - v) / 1e9, 2) for k, v in seen.items() if now_ns - v > lim}

    def queue_lengths(self) -> dict[str, int]:
        with self.lock:
            return self.sync.queue_lengths()
