"""Multi-object tracking over detections (ROS-free): ``Tracker(...).update(detections, T_global_ego, stamp)``."""

from perception.tracking.tracker import (
    GATES,
    TRACKER_DEFAULTS,
    TRACKING_CLASSES,
    Tracker,
    Tracks,
    with_track_velocities,
)

__all__ = ["GATES", "TRACKER_DEFAULTS", "TRACKING_CLASSES", "Tracker", "Tracks", "with_track_velocities"]
