"""The live fusion node: subscribe -> sync -> perception.sources.messages -> Pipeline -> publish.

    promptfusion-node --ros-args --params-file ros_nodes/params/fusion.yaml
    (or: python -m ros_nodes.fusion_node --ros-args --params-file ros_nodes/params/fusion.yaml)

Inputs (sensor-data QoS): /LIDAR_TOP (PointCloud2), /RADAR_* (PointCloud2), /CAM_*/image_rect_compressed
(CompressedImage) or /CAM_*/image_rect (Image), /CAM_*/camera_info; /ego_pose (PoseStamped, map ->
base_link); the sensor extrinsics (latched JSON String on /sensor_extrinsics, as the player publishes
them); /perception/prompt (String: one prompt, a JSON list, or "" for none) to change prompts live.
Outputs: /perception/detections (MarkerArray), /perception/objects (JSON String), /perception/status
(JSON String: modalities, per-stage latency, frames dropped, rejected messages), /diagnostics.

Callbacks only decode and synchronize; inference runs on a worker thread. When inference is slower than
the sensors, the worker takes the newest complete frame and counts the ones it skipped (no queue grows).
Every parameter comes from the YAML file; a missing one stops the node at start with its name. Bad
messages are counted, reported and skipped; the node never dies on input.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np

PARAMS = {  # name -> rclpy parameter type; the values live in params/fusion.yaml
    "config": "STRING", "checkpoint": "STRING", "device": "STRING", "prompts": "STRING_ARRAY",
    "camera_channels": "STRING_ARRAY", "radar_channels": "STRING_ARRAY", "lidar_sweeps": "INTEGER",
    "radar_sweeps": "INTEGER", "slop_s": "DOUBLE", "timeout_s": "DOUBLE", "queue_size": "INTEGER",
    "output_frame": "STRING", "min_score": "DOUBLE", "ego_pose_topic": "STRING", "extrinsics_topic": "STRING",
    "reliable_inputs": "BOOL",
}


MAX_PROMPTS, MAX_PROMPT_CHARS = 16, 256


def parse_prompts(text: str) -> tuple[str, ...]:
    """/perception/prompt payload: "" (none), a JSON list of strings, or one prompt (at most MAX_PROMPTS
    prompts of MAX_PROMPT_CHARS characters; JSON only, nothing is evaluated)."""
    if len(text) > MAX_PROMPTS * (MAX_PROMPT_CHARS + 4) + 2:
        raise ValueError(f"prompt message of {len(text)} characters is too long")
    text = text.strip()
    if not text:
        return ()
    if text.startswith("["):
        items = json.loads(text)
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise ValueError("prompt list must be a JSON list of strings")
        out = tuple(x for x in items if x.strip())
    else:
        out = (text,)
    if len(out) > MAX_PROMPTS or any(len(x) > MAX_PROMPT_CHARS for x in out):
        raise ValueError(f"at most {MAX_PROMPTS} prompts of {MAX_PROMPT_CHARS} characters")
    return out


def main(argv=None) -> int:
    from ros_nodes import dds

    dds.configure()
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from geometry_msgs.msg import PoseStamped
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
    from std_msgs.msg import String
    from visualization_msgs.msg import MarkerArray

    from perception.pipeline import Pipeline
    from perception.sources.assembler import FrameAssembler, PoseError
    from perception.sources.bag import RADAR_COLUMNS
    from perception.sources.messages import (
        MessageError,
        camera_info,
        compressed_to_rgb,
        image_to_rgb,
        pointcloud2_to_cloud,
        stamp_ns,
    )
    from perception.types import LIDAR
    from ros_nodes.outputs import RclpyTypes, detections_to_json, detections_to_markers
    from ros_nodes.sync import FrameSynchronizer

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
            if self.prompts and not self.pipe.grounding:
                raise SystemExit(f"fusion_node: prompts {list(self.prompts)} given but {p['checkpoint']} has no "
                                 "grounding head")
            if self.prompts:
                self.pipe.text_encoder(self.prompts)  # encoded once here; every frame then hits the cache
            cams = tuple(p["camera_channels"])
            self.asm = FrameAssembler(p["lidar_sweeps"], p["radar_sweeps"], cams)
            self.sync = FrameSynchronizer([LIDAR, *cams, *p["radar_channels"]], LIDAR, p["queue_size"], p["slop_s"],
                                          p["timeout_s"])
            self.lock = threading.Lock()          # guards asm + sync (callbacks vs worker)
            self.slot_cv = threading.Condition()  # newest pending frame for the worker
            self.slot = None
            self.running = True
            self.arrival: dict[int, float] = {}   # lidar stamp -> monotonic arrival time
            self.last_seen: dict[str, float] = {}  # input -> monotonic time of its last good message
            self.silent_reported = 0.0
            self.types = RclpyTypes()
            self.stats = {"frames": 0, "dropped_frames": 0, "rejected": {}, "skipped": 0, "missing": {},
                          "e2e_ms": []}
            # sensor-data QoS (best effort, keep last 5) on a vehicle; reliable where no message may be lost
            # (replaying a log on one machine, the tests)
            sd = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE) if p["reliable_inputs"] else \
                qos_profile_sensor_data
            latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                 reliability=ReliabilityPolicy.RELIABLE)
            self.create_subscription(PointCloud2, f"/{LIDAR}", self.on_lidar, sd)
            for ch in p["radar_channels"]:
                self.create_subscription(PointCloud2, f"/{ch}", lambda m, ch=ch: self.on_radar(ch, m), sd)
            for ch in cams:
                self.create_subscription(CompressedImage, f"/{ch}/image_rect_compressed",
                                         lambda m, ch=ch: self.on_image(ch, m, True), sd)
                self.create_subscription(Image, f"/{ch}/image_rect", lambda m, ch=ch: self.on_image(ch, m, False), sd)
                self.create_subscription(CameraInfo, f"/{ch}/camera_info", lambda m, ch=ch: self.on_info(ch, m), 10)
            self.create_subscription(PoseStamped, p["ego_pose_topic"], self.on_pose, 100)
            self.create_subscription(String, p["extrinsics_topic"], self.on_extrinsics, latched)
            self.create_subscription(String, "/perception/prompt", self.on_prompt, 10)
            self.pub_markers = self.create_publisher(MarkerArray, "/perception/detections", 10)
            self.pub_objects = self.create_publisher(String, "/perception/objects", 10)
            self.pub_status = self.create_publisher(String, "/perception/status", 10)
            self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.create_timer(0.02, self.on_timer)
            self.create_timer(1.0, self.publish_diagnostics)
            self.warm_up()
            self.worker = threading.Thread(target=self.work, name="inference", daemon=True)
            self.worker.start()
            self.get_logger().info(f"fusion node up: config {p['config']}, prompts {list(self.prompts)}")

        def warm_up(self):
            """One inference on a small synthetic frame, so the first real frame does not pay for JIT
            compilation and allocator warm-up."""
            from perception.types import PointCloud, SensorFrame

            rng = np.random.default_rng(0)
            xyz = rng.uniform(-20, 20, (2000, 3)).astype(np.float32)
            zeros = np.zeros(2000, np.float32)
            cloud = PointCloud(xyz, {"intensity": zeros, "ring": zeros, "time_lag": zeros})
            radar = PointCloud(xyz[:50], {k: zeros[:50] for k in (*RADAR_COLUMNS, "time_lag")})
            t = time.monotonic()
            self.pipe(SensorFrame(stamp_ns=0, T_global_ego=np.eye(4), lidar=cloud, radar=radar), self.prompts)
            self.get_logger().info(f"warm-up inference {1000 * (time.monotonic() - t):.0f} ms")

        # -- callbacks: decode, feed, never raise ----------------------------------------------------------
        def _reject(self, what, err):
            with self.lock:
                self.stats["rejected"][what] = self.stats["rejected"].get(what, 0) + 1
            self.get_logger().warning(f"rejected {what}: {err}", throttle_duration_sec=5.0)
            self.pub_status.publish(String(data=json.dumps({"event": "rejected", "input": what, "reason": str(err),
                                                            "rejected": self.stats["rejected"]})))

        def on_lidar(self, msg):
            t = time.monotonic()
            try:
                cloud, stats = pointcloud2_to_cloud(msg, columns=("intensity", "ring"))
                if stats.received and not len(cloud):
                    raise MessageError(f"all {stats.received} points are NaN/inf")
            except MessageError as e:
                return self._reject(LIDAR, e)
            stamp = stamp_ns(msg.header)
            self.last_seen[LIDAR] = t
            with self.lock:
                self.asm.add_lidar(stamp, cloud)
                self.arrival[stamp] = t
                if len(self.arrival) > 200:
                    self.arrival.pop(min(self.arrival))
                matches = self.sync.add(LIDAR, stamp, stamp, time.monotonic_ns())
            self.hand_over(matches)

        def on_radar(self, ch, msg):
            try:
                cloud, _ = pointcloud2_to_cloud(msg, columns=RADAR_COLUMNS)
            except MessageError as e:
                return self._reject(ch, e)
            stamp = stamp_ns(msg.header)
            self.last_seen[ch] = time.monotonic()
            with self.lock:
                self.asm.add_radar(ch, stamp, cloud)
                matches = self.sync.add(ch, stamp, stamp, time.monotonic_ns())
            self.hand_over(matches)

        def on_image(self, ch, msg, compressed: bool):
            try:
                rgb = compressed_to_rgb(msg, min_hw=self.pipe.pre.decode_hw) if compressed else image_to_rgb(msg)
            except MessageError as e:
                return self._reject(ch, e)
            stamp = stamp_ns(msg.header)
            self.last_seen[ch] = time.monotonic()
            with self.lock:
                matches = self.sync.add(ch, stamp, (stamp, rgb), time.monotonic_ns())
            self.hand_over(matches)

        def on_info(self, ch, msg):
            try:
                info = camera_info(msg)
            except MessageError as e:
                return self._reject(f"{ch}/camera_info", e)
            with self.lock:
                self.asm.set_camera_info(ch, info.K, (info.height, info.width))

        def on_pose(self, msg):
            q, v = msg.pose.orientation, msg.pose.position
            vals = [q.w, q.x, q.y, q.z, v.x, v.y, v.z]
            if not np.all(np.isfinite(vals)) or not any(vals[:4]):
                return self._reject("ego_pose", "non-finite values or zero quaternion")
            with self.lock:
                self.asm.add_pose(stamp_ns(msg.header), (v.x, v.y, v.z), (q.w, q.x, q.y, q.z))

        def on_extrinsics(self, msg):
            try:  # JSON only: nothing received is ever unpickled or evaluated
                items = json.loads(msg.data).items()
                with self.lock:
                    for ch, e in items:
                        self.asm.add_static(ch, e["translation"], e["rotation"])
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                self._reject("extrinsics", err)

        def on_prompt(self, msg):
            try:
                prompts = parse_prompts(msg.data)
                if prompts and not self.pipe.grounding:
                    raise ValueError("this checkpoint has no grounding head; prompts ignored")
                if prompts:
                    self.pipe.text_encoder(prompts)  # encode here, not on the inference thread
                self.prompts = prompts
                self.get_logger().info(f"prompts now {list(self.prompts)}")
            except (ValueError, TypeError) as e:
                self._reject("prompt", e)

        def on_timer(self):
            with self.lock:
                matches = self.sync.poll(time.monotonic_ns())
            self.hand_over(matches)
            now = time.monotonic()
            if self.last_seen and now - self.silent_reported > 1.0:
                # an input that delivered before and has been quiet for over a second while others talk
                newest = max(self.last_seen.values())
                silent = {k: round(now - v, 2) for k, v in self.last_seen.items() if now - v > 1.0}
                if silent and now - newest < 1.0:
                    self.silent_reported = now
                    self.pub_status.publish(String(data=json.dumps({"event": "silent", "inputs": silent})))
                    self.get_logger().warning(f"silent inputs: {silent}", throttle_duration_sec=5.0)

        def hand_over(self, matches):
            """Give the worker the newest frame; frames it had not started yet are dropped and counted."""
            if not matches:
                return
            with self.slot_cv:
                dropped = len(matches) - 1 + (self.slot is not None)
                self.stats["dropped_frames"] += dropped
                self.slot = (matches[-1], time.monotonic())
                self.slot_cv.notify()

        # -- the worker: the one code path -----------------------------------------------------------------
        def work(self):
            while self.running:
                with self.slot_cv:
                    while self.slot is None and self.running:
                        self.slot_cv.wait(0.2)
                    if not self.running:
                        return
                    m, t_ready = self.slot
                    self.slot = None
                try:
                    self.process(m, t_ready)
                except Exception as e:  # keep the node alive; report what happened
                    self.get_logger().error(f"frame {m.stamp_ns} failed: {e!r}")
                    self.stats["skipped"] += 1

        def process(self, m, t_ready):
            t0 = time.monotonic()
            try:
                with self.lock:
                    frame = self.asm.build_match(m)
                    arrived = self.arrival.pop(m.stamp_ns, t_ready)
            except (PoseError, KeyError) as e:
                self.stats["skipped"] += 1
                self.get_logger().warning(f"frame {m.stamp_ns} skipped: {e}", throttle_duration_sec=5.0)
                return
            t1 = time.monotonic()
            prompts = self.prompts
            det = self.pipe(frame, prompts)
            frame_id = self.p["output_frame"]
            timing = {"wait_sync": t_ready - arrived, "queue": t0 - t_ready, "assemble": t1 - t0,
                      **self.pipe.last_timing}
            self.pub_objects.publish(String(data=detections_to_json(
                det.filter(self.p["min_score"]), m.stamp_ns, frame_id, frame.modalities,
                extra={"missing": m.missing, "inputs": m.stamps,
                       "points": {"lidar": len(frame.lidar) if frame.lidar is not None else 0,
                                  "radar": len(frame.radar) if frame.radar is not None else 0}})))
            t_pub = time.monotonic()
            timing["publish"] = t_pub - t1 - sum(self.pipe.last_timing.values())
            e2e = 1000 * (t_pub - arrived)  # to /perception/objects; the RViz markers follow it
            self.pub_markers.publish(detections_to_markers(self.types, det, m.stamp_ns, frame_id,
                                                           min_score=self.p["min_score"]))
            timing["markers"] = time.monotonic() - t_pub
            self.stats["frames"] += 1
            self.stats["e2e_ms"] = (self.stats["e2e_ms"] + [e2e])[-500:]
            for x in m.missing:
                self.stats["missing"][x] = self.stats["missing"].get(x, 0) + 1
            self.pub_status.publish(String(data=json.dumps({
                "event": "frame", "stamp_ns": m.stamp_ns, "modalities": list(frame.modalities),
                "missing": m.missing, "timed_out": m.timed_out, "prompts": list(prompts),
                "latency_ms": {k: round(1000 * v, 2) for k, v in timing.items()},
                "e2e_ms": round(e2e, 2), "inference_ms": round(1000 * sum(self.pipe.last_timing.values()), 2),
                "frames": self.stats["frames"], "dropped_frames": self.stats["dropped_frames"],
                "rejected": self.stats["rejected"], "skipped": self.stats["skipped"],
                "queues": self.sync.queue_lengths()})))

        def publish_diagnostics(self):
            lat = self.stats["e2e_ms"]
            level = DiagnosticStatus.OK if self.stats["frames"] and not self.stats["rejected"] else (
                DiagnosticStatus.WARN if self.stats["frames"] else DiagnosticStatus.STALE)
            st = DiagnosticStatus(level=level, name="promptfusion/fusion", hardware_id="perception",
                                  message=f"{self.stats['frames']} frames, {self.stats['dropped_frames']} dropped")
            st.values = [KeyValue(key="frames", value=str(self.stats["frames"])),
                         KeyValue(key="dropped_frames", value=str(self.stats["dropped_frames"])),
                         KeyValue(key="e2e_p50_ms", value=f"{np.median(lat):.1f}" if lat else "nan"),
                         KeyValue(key="e2e_p95_ms", value=f"{np.percentile(lat, 95):.1f}" if lat else "nan"),
                         KeyValue(key="rejected", value=json.dumps(self.stats["rejected"])),
                         KeyValue(key="missing", value=json.dumps(self.stats["missing"]))]
            arr = DiagnosticArray(status=[st])
            arr.header.stamp = self.get_clock().now().to_msg()
            self.pub_diag.publish(arr)

        def stop(self):
            self.running = False
            with self.slot_cv:
                self.slot_cv.notify_all()
            self.worker.join(timeout=5)

    rclpy.init(args=argv)
    node = None
    try:
        node = FusionNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def entry() -> int:
    return main(sys.argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
