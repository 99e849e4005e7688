"""The synchronizer the node and replay share. It is pure Python and lives in ``perception.sources.sync``
(replay must not import ROS); this module is its name on the ROS side."""

from perception.sources.sync import FrameSynchronizer, Match

__all__ = ["FrameSynchronizer", "Match"]
