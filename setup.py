"""ROS 2 (colcon, ament_python) additions only: the metadata, packages and console scripts are pyproject.toml's.

colcon runs this file; setuptools merges ``data_files`` with [project]. It installs what ``ros2 launch`` and
``ros2 run`` look for under the prefix: the ament index marker, package.xml, the launch and parameter files.
"""

from pathlib import Path

from setuptools import setup

PACKAGE = "promptfusion"
ROOT = Path(__file__).resolve().parent


def _files(*patterns: str) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for pattern in patterns for p in ROOT.glob(pattern))


def data_files() -> list[tuple[str, list[str]]]:
    """(install directory under the prefix, source files relative to this file)."""
    return [
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", _files("ros_nodes/launch/*.launch.py")),
        (f"share/{PACKAGE}/params", _files("ros_nodes/params/*.yaml", "ros_nodes/params/*.xml")),
    ]


if __name__ == "__main__":  # setuptools' build backend and colcon both run this file as __main__
    setup(data_files=data_files())
