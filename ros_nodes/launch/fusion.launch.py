"""ros2 launch for vehicles with a full ROS 2 install: the fusion node with its parameter file."""

from pathlib import Path

from launch import LaunchDescription
from launch.actions import ExecuteProcess

ROOT = Path(__file__).resolve().parents[2]


def generate_launch_description():
    params = ROOT / "ros_nodes" / "params" / "fusion.yaml"
    return LaunchDescription([
        ExecuteProcess(cmd=["python3", "-m", "ros_nodes.fusion_node", "--ros-args", "--params-file", str(params)],
                       cwd=str(ROOT), output="screen"),
    ])
