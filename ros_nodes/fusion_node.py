"""The live fusion node: subscribe -> sync -> perception.sources.messages -> Pipeline -> publish.

    python -m ros_nodes.fusion_node --ros-args --params-file ros_nodes/params/fusion_node.yaml

Inputs: /LIDAR_TOP (PointCloud2), /RADAR_* (PointCloud2), /CAM_*/image_rect_compressed (CompressedImage),
/CAM_*/camera_info, /ego_pose (PoseStamped, map -> base_link) and the sensor extrinsics (latched JSON
String on /sensor_extrinsics, as the player publishes them). Outputs: /perception/detections
(MarkerArray), /perception/objects (JSON String), /perception/status (JSON String), /diagnostics.
Every parameter comes from the YAML file; a missing one stops the node at start with its name.
Bad messages are counted and skipped; the node never dies on input.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

PARAMS = {  # name -> rclpy parameter type name; values live in params/fusion_node.yaml
    "config": "STRING", "checkpoint": "STRING", "device": "STRING", "prompts": "STRING_ARRAY",
    "camera_channels": "STRING_ARRAY", "radar_channels": "STRING_ARRAY", "lidar_sweeps": "INTEGER",
    "radar_sweeps": "INTEGER", "slop_s": "DOUBLE", "timeout_s": "DOUBLE", "queue_size": "INTEGER",
    "output_frame": "STRING", "min_score": "DOUBLE", "ego_pose_topic": "STRING", "extrinsics_topic": "STRING",
}


def main(argv=None) -> int:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from geometry_msgs.msg import PoseStamped
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, CompressedImage, PointCloud2
    from std_msgs.msg import String
    from visualization_msgs.msg import MarkerArray

    from perception.pipeline import Pipeline
    from perception.sources.assembler import FrameAssembler, PoseError
    from perception.sources.bag import RADAR_COLUMNS
    from perception.sources.messages import MessageError, camera_info, compressed_to_rgb, pointcloud2_to_cloud
    from perception.sources.sync import FrameSynchronizer
    from perception.types import LIDAR
    from ros_nodes.outputs import RclpyTypes, detections_to_json, detections_to_markers

    class FusionNode(Node):
        def __init__(self):
            super().__init__("promptfusion_fusion")
            p = {}
            for name, typ in PARAMS.items():
                self.declare_parameter(name, getattr(Parameter.Type, typ))
                v = self.get_parameter(name).value
                if v is None:
                    raise SystemExit(f"fusion_node: parameter {name!r} missing (give --params-file)")
                p[name] = v
            self.p = p
            self.pipe = Pipeline(p["config"], p["checkpoint"], device=p["device"])
            self.prompts = tuple(x for x in p["prompts"] if x)
            cams = tuple(p["camera_channels"])
            self.asm = FrameAssembler(p["lidar_sweeps"], p["radar_sweeps"], cams)
            self.sync = FrameSynchronizer([LIDAR, *cams, *p["radar_channels"]], LIDAR, p["queue_size"], p["slop_s"],
                                          p["timeout_s"])
            self.types = RclpyTypes()
            self.stats = {"frames": 0, "rejected": {}, "skipped": 0, "missing": {}, "latency_ms": []}
            sd = qos_profile_sensor_data
            latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                 reliability=ReliabilityPolicy.RELIABLE)
            self.create_subscription(PointCloud2, f"/{LIDAR}", self.on_lidar, sd)
            for ch in p["radar_channels"]:
                self.create_subscription(PointCloud2, f"/{ch}", lambda m, ch=ch: self.on_radar(ch, m), sd)
            for ch in cams:
                self.create_subscription(CompressedImage, f"/{ch}/image_rect_compressed",
                                         lambda m, ch=ch: self.on_image(ch, m), sd)
                self.create_subscription(CameraInfo, f"/{ch}/camera_info", lambda m, ch=ch: self.on_info(ch, m), 10)
            self.create_subscription(PoseStamped, p["ego_pose_topic"], self.on_pose, 100)
            self.create_subscription(String, p["extrinsics_topic"], self.on_extrinsics, latched)
            self.pub_markers = self.create_publisher(MarkerArray, "/perception/detections", 10)
            self.pub_objects = self.create_publisher(String, "/perception/objects", 10)
            self.pub_status = self.create_publisher(String, "/perception/status", 10)
            self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.create_timer(0.02, self.on_timer)
            self.create_timer(1.0, self.publish_diagnostics)
            self.get_logger().info(f"fusion node up: config {p['config']}, prompts {list(self.prompts)}")

        # -- callbacks: decode, feed, never raise ----------------------------------------------------------
        def _reject(self, what, err):
            self.stats["rejected"][what] = self.stats["rejected"].get(what, 0) + 1
            self.get_logger().warn(f"rejected {what}: {err}", throttle_duration_sec=5.0)

        @staticmethod
        def _ns(h):
            return h.stamp.sec * 1_000_000_000 + h.stamp.nanosec

        def on_lidar(self, msg):
            try:
                cloud, _ = pointcloud2_to_cloud(msg, columns=("intensity", "ring"))
            except MessageError as e:
                return self._reject(LIDAR, e)
            stamp = self._ns(msg.header)
            self.asm.add_lidar(stamp, cloud)
            self.process(self.sync.add(LIDAR, stamp, stamp, time.monotonic_ns()))

        def on_radar(self, ch, msg):
            try:
                cloud, _ = pointcloud2_to_cloud(msg, columns=RADAR_COLUMNS)
            except MessageError as e:
                return self._reject(ch, e)
            stamp = self._ns(msg.header)
            self.asm.add_radar(ch, stamp, cloud)
            self.process(self.sync.add(ch, stamp, stamp, time.monotonic_ns()))

        def on_image(self, ch, msg):
            try:
                rgb = compressed_to_rgb(msg)
            except MessageError as e:
                return self._reject(ch, e)
            stamp = self._ns(msg.header)
            self.process(self.sync.add(ch, stamp, (stamp, rgb), time.monotonic_ns()))

        def on_info(self, ch, msg):
            try:
                self.asm.set_camera_info(ch, camera_info(msg).K)
            except MessageError as e:
                self._reject(f"{ch}/camera_info", e)

        def on_pose(self, msg):
            q, v = msg.pose.orientation, msg.pose.position
            if not np.all(np.isfinite([q.w, q.x, q.y, q.z, v.x, v.y, v.z])) or abs(q.w) + abs(q.x) + abs(q.y) + abs(
                    q.z) == 0:
                return self._reject("ego_pose", "non-finite or zero quaternion")
            self.asm.add_pose(self._ns(msg.header), (v.x, v.y, v.z), (q.w, q.x, q.y, q.z))

        def on_extrinsics(self, msg):
            try:  # JSON only: nothing received is ever unpickled or evaluated
                for ch, e in json.loads(msg.data).items():
                    self.asm.add_static(ch, e["translation"], e["rotation"])
            except (ValueError, KeyError, TypeError) as err:
                self._reject("extrinsics", err)

        def on_timer(self):
            self.process(self.sync.poll(time.monotonic_ns()))

        # -- the one code path ---------------------------------------------------------------------------
        def process(self, matches):
            for m in matches:
                t0 = time.perf_counter()
                radar = {ch: m.stamps[ch] for ch in self.p["radar_channels"] if ch in m.stamps}
                images = {ch: m.messages[ch] for ch in self.p["camera_channels"] if ch in m.messages}
                try:
                    frame = self.asm.build(m.stamp_ns, radar, images)
                except (PoseError, KeyError) as e:
                    self.stats["skipped"] += 1
                    self.get_logger().warn(f"frame {m.stamp_ns} skipped: {e}", throttle_duration_sec=5.0)
                    continue
                det = self.pipe(frame, self.prompts)
                frame_id = self.p["output_frame"]
                self.pub_markers.publish(detections_to_markers(self.types, det, m.stamp_ns, frame_id,
                                                               min_score=self.p["min_score"]))
                self.pub_objects.publish(String(data=detections_to_json(
                    det.filter(self.p["min_score"]), m.stamp_ns, frame_id, frame.modalities,
                    extra={"missing": m.missing, "timing_ms": {k: round(1000 * v, 2)
                                                               for k, v in self.pipe.last_timing.items()}})))
                lat = 1000 * (time.perf_counter() - t0)
                self.stats["frames"] += 1
                self.stats["latency_ms"] = (self.stats["latency_ms"] + [lat])[-200:]
                for x in m.missing:
                    self.stats["missing"][x] = self.stats["missing"].get(x, 0) + 1
                self.pub_status.publish(String(data=json.dumps({
                    "stamp_ns": m.stamp_ns, "modalities": list(frame.modalities), "missing": m.missing,
                    "timed_out": m.timed_out, "latency_ms": round(lat, 2), "frames": self.stats["frames"],
                    "rejected": self.stats["rejected"], "skipped": self.stats["skipped"],
                    "queues": self.sync.queue_lengths()})))

        def publish_diagnostics(self):
            lat = self.stats["latency_ms"]
            level = DiagnosticStatus.OK if self.stats["frames"] and not self.stats["rejected"] else (
                DiagnosticStatus.WARN if self.stats["frames"] else DiagnosticStatus.STALE)
            st = DiagnosticStatus(level=level, name="promptfusion/fusion", hardware_id="perception",
                                  message=f"{self.stats['frames']} frames")
            st.values = [KeyValue(key="frames", value=str(self.stats["frames"])),
                         KeyValue(key="latency_p50_ms", value=f"{np.median(lat):.1f}" if lat else "nan"),
                         KeyValue(key="rejected", value=json.dumps(self.stats["rejected"])),
                         KeyValue(key="missing", value=json.dumps(self.stats["missing"]))]
            arr = DiagnosticArray(status=[st])
            arr.header.stamp = self.get_clock().now().to_msg()
            self.pub_diag.publish(arr)

    rclpy.init(args=argv)
    node = None
    try:
        node = FusionNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
