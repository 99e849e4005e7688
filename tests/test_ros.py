"""Real ROS 2 (Kilted wheels, DDS on loopback): the player publishes a drive log, the fusion node runs the
Pipeline on it, and this test process listens to the node's outputs as a third participant."""

import json
import os
import subprocess
import sys
import time

import pytest

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros


@pytest.fixture()
def ros_env(tmp_path):
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(100 + os.getpid() % 100)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_player_node_and_listener(synthetic_root, tmp_path, ros_env):
    import torch
    from std_msgs.msg import String

    from perception.pipeline import Pipeline
    from perception.sources.bag import scene_to_bag

    torch.manual_seed(0)
    pipe = Pipeline("configs/tiny.py")
    ckpt = tmp_path / "model.pth"
    torch.save({"state_dict": pipe.model.state_dict(), "meta": {"preprocess": pipe.pre.to_dict()}}, ckpt)
    log = tmp_path / "log"
    scene_to_bag(synthetic_root, "scene-0103", log, progress=False)
    params = tmp_path / "params.yaml"
    text = open("ros_nodes/params/fusion_node.yaml").read()
    text = text.replace("checkpoints/tiny.pth", str(ckpt)).replace('prompts: [""]', 'prompts: ["cars ahead"]')
    params.write_text(text)

    os.environ.update({k: ros_env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    rclpy.init()
    listener = rclpy.create_node("pf_test_listener")
    objects, status = [], []
    listener.create_subscription(String, "/perception/objects", lambda m: objects.append(json.loads(m.data)), 50)
    listener.create_subscription(String, "/perception/status", lambda m: status.append(json.loads(m.data)), 50)
    node = subprocess.Popen([sys.executable, "-m", "ros_nodes.fusion_node", "--ros-args", "--params-file", str(params)],
                            env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    player = None
    try:
        deadline = time.monotonic() + 60
        # wait for the node to come up (its status publisher appears on the graph)
        while time.monotonic() < deadline and not listener.get_publishers_info_by_topic("/perception/status"):
            rclpy.spin_once(listener, timeout_sec=0.2)
        assert listener.get_publishers_info_by_topic("/perception/status"), "fusion node did not start"
        player = subprocess.Popen([sys.executable, "-m", "ros_nodes.player", str(log), "--start-delay", "1.0",
                                   "--rate", "0.5"], env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        while time.monotonic() < deadline and (player.poll() is None or len(objects) < 3):
            rclpy.spin_once(listener, timeout_sec=0.1)
            if player.poll() is not None and time.monotonic() > deadline - 50 and len(objects) >= 3:
                break
        end = time.monotonic() + 3
        while time.monotonic() < end:
            rclpy.spin_once(listener, timeout_sec=0.1)
    finally:
        for p in (player, node):
            if p is not None and p.poll() is None:
                p.terminate()
        out = node.communicate(timeout=20)[0]
        listener.destroy_node()
        rclpy.try_shutdown()
    assert len(objects) >= 3, out[-3000:]
    assert all(o["prompts"] == ["cars ahead"] for o in objects)
    assert any(set(o["modalities"]) == {"camera", "lidar", "radar"} for o in objects), [o["modalities"] for o in objects]
    # sweeps between keyframes have no images: the node went on without them and said so
    assert any("CAM_FRONT" in o["missing"] and "lidar" in o["modalities"] for o in objects)
    assert status and all("latency_ms" in s and "queues" in s for s in status)
    assert max(max(s["queues"].values()) for s in status) <= 10
