"""Publish a drive log onto live ROS 2 topics with its original timing (the ``ros2 bag play`` role).

    python -m ros_nodes.player LOG [--rate 1.0] [--loop] [--start-delay 1.0]

Sensor messages are published as the log's raw CDR bytes (no conversion). Because tf2_msgs has no PyPI
wheel, /tf's map -> base_link becomes geometry_msgs/PoseStamped on /ego_pose, and /tf_static becomes a
latched JSON std_msgs/String on /sensor_extrinsics ({channel: {translation, rotation [w,x,y,z]}}), which the
fusion node reads (or give it the same as parameters on a vehicle with a full ROS install).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path


def _msg_class(msgtype: str):
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log")
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--loop", action="store_true")
    p.add_argument("--start-delay", type=float, default=5.0,
                   help="wait at most this long for subscribers on the sensor topics before playing")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this much wall time")
    p.add_argument("--faults", default="",
                   help="fault spec (see perception.faults), e.g. drop:CAM_FRONT@2-5,corrupt:5%%")
    a, ros_args = p.parse_known_args(argv)

    from ros_nodes import dds

    dds.configure()
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosbags.highlevel import AnyReader
    from std_msgs.msg import String

    from perception.faults import FaultSpecError, faulted_messages, parse_faults, shift_stamps

    try:
        faults = parse_faults(a.faults)
    except FaultSpecError as e:
        p.error(str(e))
    fault_counts: dict = {}

    rclpy.init(args=ros_args)
    node = rclpy.create_node("promptfusion_player")
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {}
    pose_pub = node.create_publisher(PoseStamped, "/ego_pose", 50)
    extr_pub = node.create_publisher(String, "/sensor_extrinsics", latched)
    t_wall0 = time.monotonic()
    published = 0
    waited = False
    loop_index, loop_span = 0, 0
    try:
        while True:
            with AnyReader([Path(a.log)]) as reader:
                for c in reader.connections:
                    if c.topic in ("/tf", "/tf_static") or c.topic in pubs:
                        continue
                    try:
                        cls = _msg_class(c.msgtype)
                    except (ImportError, AttributeError):
                        node.get_logger().warning(f"no rclpy class for {c.msgtype} ({c.topic}); not published")
                        continue
                    # reliable publishers match best-effort (sensor-data) and reliable subscribers alike
                    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
                    pubs[c.topic] = node.create_publisher(cls, c.topic, qos)
                if not waited:  # wait (up to --start-delay) until the sensors and /ego_pose have a subscriber
                    waited = True
                    until = time.monotonic() + a.start_delay
                    sensors = ("/LIDAR", "/CAM", "/RADAR")
                    main_pubs = [pose_pub] + [pb for tp, pb in pubs.items() if tp.startswith(sensors)]
                    while time.monotonic() < until and any(pb.get_subscription_count() == 0 for pb in main_pubs):
                        time.sleep(0.05)
                    time.sleep(0.3)  # let the matched endpoints finish their handshakes
                t_log0, t_start = None, time.monotonic()
                shift = loop_index * loop_span  # each loop continues the clock instead of repeating stamps
                store = getattr(reader, "typestore", None)
                for _topic, t, raw, c in faulted_messages(reader, faults, loop_index, fault_counts):
                    if shift and store is not None:
                        raw = shift_stamps(reader, store, raw, c, shift)
                    if t_log0 is None:
                        t_log0 = t
                    wait = (t - t_log0) / 1e9 / a.rate - (time.monotonic() - t_start)
                    if wait > 0:
                        time.sleep(wait)
                    if a.max_seconds and time.monotonic() - t_wall0 > a.max_seconds:
                        return 0
                    if c.topic == "/tf_static":
                        msg = reader.deserialize(raw, c.msgtype)
                        ext = {tr.child_frame_id: {
                            "translation": [tr.transform.translation.x, tr.transform.translation.y,
                                            tr.transform.translation.z],
                            "rotation": [tr.transform.rotation.w, tr.transform.rotation.x, tr.transform.rotation.y,
                                         tr.transform.rotation.z]} for tr in msg.transforms}
                        extr_pub.publish(String(data=json.dumps(ext)))
                    elif c.topic == "/tf":
                        msg = reader.deserialize(raw, c.msgtype)
                        for tr in msg.transforms:
                            if tr.child_frame_id != "base_link":
                                continue
                            ps = PoseStamped()
                            ps.header.stamp.sec, ps.header.stamp.nanosec = tr.header.stamp.sec, tr.header.stamp.nanosec
                            ps.header.frame_id = tr.header.frame_id
                            q, v = tr.transform.rotation, tr.transform.translation
                            ps.pose.position.x, ps.pose.position.y, ps.pose.position.z = v.x, v.y, v.z
                            ps.pose.orientation.x, ps.pose.orientation.y = q.x, q.y
                            ps.pose.orientation.z, ps.pose.orientation.w = q.z, q.w
                            pose_pub.publish(ps)
                    elif c.topic in pubs:
                        pubs[c.topic].publish(bytes(raw))
                    published += 1
            if not a.loop:
                break
            if loop_span == 0:
                with AnyReader([Path(a.log)]) as r:
                    loop_span = r.end_time - r.start_time + 50_000_000
            loop_index += 1
    except KeyboardInterrupt:
        pass
    finally:
        node.get_logger().info(f"published {published} messages" + (f"; faults {fault_counts}" if faults else ""))
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
