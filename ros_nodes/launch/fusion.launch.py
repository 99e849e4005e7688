"""ros2 launch for vehicles with a full ROS 2 install: the fusion node with its parameter file.

    ros2 launch promptfusion fusion.launch.py [params_file:=/path/fusion.yaml]   # colcon-installed package
    ros2 launch ros_nodes/launch/fusion.launch.py [params_file:=...]             # from a source checkout

Installed (this file is <share>/promptfusion/launch/, found through ament_index): launch_ros starts the
``promptfusion-node`` executable of the package with <share>/params/fusion.yaml. From a source checkout
(this file is ros_nodes/launch/ of the repository): ``python -m ros_nodes.fusion_node`` runs in the
repository root with ros_nodes/params/fusion.yaml. The file's relative ``config``/``checkpoint`` are looked
up in the node's working directory, then beside the installed ``perception`` package (perception.paths: a
checkout or an editable install); a vehicle's parameter file should give absolute paths.

Everything above ``generate_launch_description`` is plain Python (tests load it without ROS); ``launch`` and
``launch_ros`` are imported only when ros2 launch asks for the description.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "promptfusion"
EXECUTABLE = "promptfusion-node"     # [project.scripts]; colcon installs it to lib/promptfusion (setup.cfg)
NODE_NAME = "promptfusion_fusion"    # the top-level key of params/fusion.yaml
HERE = Path(__file__).resolve().parent


def share_dir(package: str = PACKAGE) -> Path | None:
    """The package's installed share directory from the ament index, or None (not installed, no index)."""
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(package))
    except (LookupError, OSError, ValueError):  # PackageNotFoundError is a KeyError; OSError: no AMENT_PREFIX_PATH
        return None


def source_root(here: Path = HERE) -> Path | None:
    """The repository root when ``here`` is a source checkout's ros_nodes/launch, else None."""
    root = here.parent.parent
    if here.name == "launch" and here.parent.name == "ros_nodes" and (root / "pyproject.toml").is_file():
        return root
    return None


def params_file(name: str = "fusion.yaml", here: Path = HERE, share: Path | None = None) -> Path:
    """The parameter file this launch uses: the checkout's ros_nodes/params/<name> when this file lives in a
    source checkout, else <share>/params/<name> of the installed package (``share`` or the ament index)."""
    root = source_root(here)
    if root is not None:
        return root / "ros_nodes" / "params" / name
    share = share if share is not None else share_dir()
    if share is None:
        raise FileNotFoundError(f"{PACKAGE}: neither a source checkout ({here}) nor an installed package in the "
                                "ament index (source the workspace's install/setup.bash)")
    return share / "params" / name


def source_command(params, python: str = sys.executable) -> list:
    """The command that runs the node from a source checkout (cwd = the repository root); ``params``: a path
    or a launch substitution."""
    return [python, "-m", "ros_nodes.fusion_node", "--ros-args", "-r", f"__node:={NODE_NAME}",
            "--params-file", params]


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, ExecuteProcess
    from launch.substitutions import LaunchConfiguration

    params = LaunchConfiguration("params_file")
    arg = DeclareLaunchArgument("params_file", default_value=str(params_file()),
                                description="ROS parameter file of the fusion node")
    root = source_root()
    if root is not None:
        return LaunchDescription([arg, ExecuteProcess(cmd=source_command(params), cwd=str(root), output="screen")])

    from launch_ros.actions import Node

    return LaunchDescription([arg, Node(package=PACKAGE, executable=EXECUTABLE, name=NODE_NAME,
                                        parameters=[params], output="screen")])
