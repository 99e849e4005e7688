"""The live fusion node: a thin ROS 2 transport over ``perception.serving.LiveRunner``.

    promptfusion-node --ros-args --params-file ros_nodes/params/fusion.yaml
    ros2 launch promptfusion fusion.launch.py            (a colcon workspace with a full ROS 2 install)

It subscribes to the inputs the checkpoint's frame assembly names (``Feeder.inputs``: /LIDAR_TOP and
/RADAR_* PointCloud2, /CAM_*/image_rect_compressed or /CAM_*/image_rect with /CAM_*/camera_info), the ego
pose and the sensor extrinsics from /tf and /tf_static (tf2_msgs/TFMessage) where tf2_msgs is installed,
otherwise from /ego_pose (PoseStamped) and the latched JSON /sensor_extrinsics that the player publishes,
and /perception/prompt (one prompt, a JSON list, or "" for none) to change prompts live. It hands every
message to the runner, which makes frames with the same feeder as offline replay and runs the Pipeline on
a worker thread, and publishes what the runner gives it: /perception/objects (JSON String),
/perception/detections (MarkerArray), /perception/detections_3d (vision_msgs/Detection3DArray, where
vision_msgs is installed), with ``tracking`` /perception/tracks (JSON String: every living track with its
identity) and /perception/track_markers (MarkerArray of the confirmed tracks, "#id class"), /perception/status
(JSON String) and /diagnostics.

The YAML holds transport settings only (``PARAMS``); how frames are made comes from the checkpoint.
A missing parameter stops the node at start with its name; bad messages never stop it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

PARAMS = {  # name -> rclpy parameter type; the values live in params/fusion.yaml
    "config": "STRING", "checkpoint": "STRING", "device": "STRING", "prompts": "STRING_ARRAY",
    "output_frame": "STRING", "min_score": "DOUBLE", "reliable_inputs": "BOOL", "pose_source": "STRING",
    "ego_pose_topic": "STRING", "extrinsics_topic": "STRING", "timeout_s": "DOUBLE", "tracking": "BOOL",
    "queue_frames": "INTEGER",
}
POSE_SOURCES = ("auto", "tf", "topics")


def tf_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tf2_msgs") is not None


def use_tf(pose_source: str) -> bool:
    """Poses from /tf and /tf_static? ``auto``: where tf2_msgs is installed."""
    if pose_source not in POSE_SOURCES:
        raise ValueError(f"pose_source must be one of {POSE_SOURCES}, got {pose_source!r}")
    return pose_source == "tf" or (pose_source == "auto" and tf_available())


def qos_for(inp, reliable_inputs: bool) -> QoSProfile | int:
    """Sensor-data QoS (best effort, keep last 5) for sensor streams on a vehicle, reliable where no message
    may be lost (a log replayed on one machine, the tests); latched for /tf_static and the extrinsics."""
    if inp.kind in ("tf_static", "extrinsics"):
        return QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    if inp.sensor:
        return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE) if reliable_inputs \
            else qos_profile_sensor_data
    return 100


class FusionNode(Node):
    def __init__(self, name: str = "promptfusion_fusion"):
        super().__init__(name)
        from perception.outputs import RclpyTypes, vision_msgs_available
        from perception.pipeline import Pipeline
        from perception.serving import LiveRunner
        from perception.sources.live import Feeder

        p = self.p = self._params()
        pipe = Pipeline(p["config"], p["checkpoint"], device=p["device"])
        assembly = pipe.assembly if p["timeout_s"] < 0 else replace(pipe.assembly, timeout_s=p["timeout_s"])
        self.feeder = Feeder(assembly)
        self.types = RclpyTypes()
        try:
            self.runner = LiveRunner(pipe, self.feeder, self, p["prompts"], p["min_score"], p["output_frame"],
                                     tracker={} if p["tracking"] else None, queue_frames=p["queue_frames"])
        except ValueError as e:
            raise SystemExit(f"fusion_node: {e}") from None
        # before any subscription exists: the first inference (and the network's BatchNorm folding) can take
        # seconds on a busy CPU, and sensor messages arriving meanwhile would overflow the QoS queues
        self.log("info", f"warm-up inference {1000 * self.runner.warm_up():.0f} ms")
        topics = {"pose": p["ego_pose_topic"], "extrinsics": p["extrinsics_topic"]}
        for inp in self.feeder.inputs(tf=use_tf(p["pose_source"])):
            self.create_subscription(self.types[inp.msgtype], topics.get(inp.kind, inp.topic),
                                     lambda m, inp=inp: self.runner.take(inp, m), qos_for(inp, p["reliable_inputs"]))
        String = self.types["std_msgs/msg/String"]
        self.create_subscription(String, "/perception/prompt", self.on_prompt, 10)
        self.pub = {"objects": self.create_publisher(String, "/perception/objects", 10),
                    "markers": self.create_publisher(self.types["visualization_msgs/msg/MarkerArray"],
                                                     "/perception/detections", 10),
                    "status": self.create_publisher(String, "/perception/status", 10),
                    "tracks": self.create_publisher(String, "/perception/tracks", 10),
                    "track_markers": self.create_publisher(self.types["visualization_msgs/msg/MarkerArray"],
                                                           "/perception/track_markers", 10),
                    "diag": self.create_publisher(self.types["diagnostic_msgs/msg/DiagnosticArray"], "/diagnostics",
                                                  10)}
        if vision_msgs_available():
            self.pub["vision"] = self.create_publisher(self.types["vision_msgs/msg/Detection3DArray"],
                                                       "/perception/detections_3d", 10)
        self.create_timer(0.02, self.runner.tick)
        self.create_timer(1.0, self.publish_diagnostics)
        self.runner.start()
        self.log("info", f"fusion node up: config {p['config']}, {p['checkpoint']} ({assembly.lidar_sweeps} lidar "
                         f"sweeps), prompts {list(self.runner.prompts)}, poses from "
                         f"{'/tf' if use_tf(p['pose_source']) else topics['pose']}")

    def _params(self) -> dict:
        p = {}
        for name, typ in PARAMS.items():
            self.declare_parameter(name, getattr(Parameter.Type, typ))
            v = self.get_parameter(name).value
            if v is None:
                raise SystemExit(f"fusion_node: parameter {name!r} missing (give --params-file)")
            p[name] = v
        if p["pose_source"] not in POSE_SOURCES:
            raise SystemExit(f"fusion_node: pose_source must be one of {POSE_SOURCES}, got {p['pose_source']!r}")
        return p

    # -- the runner's sink --------------------------------------------------------------------------------
    def objects(self, text, m) -> None:
        self.pub["objects"].publish(self.types["std_msgs/msg/String"](data=text))

    def detections(self, det, m) -> None:
        from perception.outputs import detections_to_detection3d_array, detections_to_markers

        frame_id, min_score = self.p["output_frame"], self.p["min_score"]
        self.pub["markers"].publish(detections_to_markers(self.types, det, m.stamp_ns, frame_id, min_score=min_score))
        if "vision" in self.pub:
            self.pub["vision"].publish(detections_to_detection3d_array(self.types, det, m.stamp_ns, frame_id,
                                                                       min_score=min_score))

    def tracks(self, tracks, m) -> None:
        from perception.outputs import tracks_to_json, tracks_to_markers

        frame_id = self.p["output_frame"]
        self.pub["tracks"].publish(self.types["std_msgs/msg/String"](data=tracks_to_json(tracks, m.stamp_ns,
                                                                                           frame_id)))
        self.pub["track_markers"].publish(tracks_to_markers(self.types, tracks, m.stamp_ns, frame_id))

    def status(self, payload: dict) -> None:
        self.pub["status"].publish(self.types["std_msgs/msg/String"](data=json.dumps(payload)))

    def log(self, level: str, text: str) -> None:
        # one call site per severity: rclpy refuses a log line whose severity changes between calls
        logger = self.get_logger()
        if level == "info":
            logger.info(text)
        elif level == "warning":
            logger.warning(text, throttle_duration_sec=5.0)
        else:
            logger.error(text, throttle_duration_sec=5.0)

    # -- callbacks -----------------------------------------------------------------------------------------
    def on_prompt(self, msg) -> None:
        try:
            self.runner.set_prompts(msg.data)
            self.log("info", f"prompts now {list(self.runner.prompts)}")
        except Exception as e:  # noqa: BLE001 - a bad prompt (or an encoder failure) never stops the node
            self.feeder.reject("prompt", e)

    def publish_diagnostics(self) -> None:
        T = self.types
        Status = T["diagnostic_msgs/msg/DiagnosticStatus"]
        level, message, values = self.runner.diagnostics()
        st = Status(level=getattr(Status, level), name="promptfusion/fusion", hardware_id="perception",
                    message=message, values=[T["diagnostic_msgs/msg/KeyValue"](key=k, value=v)
                                             for k, v in values.items()])
        arr = T["diagnostic_msgs/msg/DiagnosticArray"](status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub["diag"].publish(arr)


def main(argv=None) -> int:
    from ros_nodes import dds

    dds.configure()
    rclpy.init(args=argv)
    node = None
    try:
        node = FusionNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.runner.stop()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def entry() -> int:
    return main(sys.argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
