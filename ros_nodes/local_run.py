"""The fusion node and the log player as real processes on a private ROS domain of this machine, with a
listener in the calling process collecting ``/perception/status``: what the soak test and the live-node
benchmark both drive.

    with node_and_player(log) as run:
        run.spin(30.0)            # spin the listener for 30 s
        frames = run.frames()     # the node's per-frame status events
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class LocalRun:
    def __init__(self, listener, node: subprocess.Popen, player: subprocess.Popen):
        self.listener, self.node, self.player = listener, node, player
        self.status: list[dict] = []

    def spin(self, seconds: float, until=None) -> None:
        """Spin the listener for ``seconds`` or until ``until()`` is true."""
        import rclpy

        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until()):
            rclpy.spin_once(self.listener, timeout_sec=0.1)

    def frames(self) -> list[dict]:
        return [s for s in self.status if s.get("event") == "frame"]


@contextmanager
def node_and_player(log, params: str = "ros_nodes/params/fusion.yaml", start_delay: float = 30.0,
                    domain_base: int = 150, name: str = "pf_listener"):
    """Start ``ros_nodes.fusion_node`` (``params``) and ``ros_nodes.player LOG --loop`` with their output
    discarded, on ROS domain ``domain_base + pid % 50`` limited to this host; yield a LocalRun; terminate
    both and shut rclpy down on exit."""
    import rclpy
    from std_msgs.msg import String

    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_base + os.getpid() % 50),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONPATH=str(ROOT))
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    rclpy.init()
    listener = rclpy.create_node(name)
    quiet = dict(env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = subprocess.Popen([sys.executable, "-m", "ros_nodes.fusion_node", "--ros-args", "--params-file", params],
                            **quiet)
    player = subprocess.Popen([sys.executable, "-m", "ros_nodes.player", str(log), "--loop", "--start-delay",
                               str(start_delay)], **quiet)
    run = LocalRun(listener, node, player)
    listener.create_subscription(String, "/perception/status", lambda m: run.status.append(json.loads(m.data)), 100)
    try:
        yield run
    finally:
        for p in (player, node):
            p.terminate()
            p.wait(timeout=30)
        listener.destroy_node()
        rclpy.try_shutdown()
