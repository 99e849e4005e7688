"""ROS-free typed structures: the only currency between layers."""

from perception.types.boxes import Boxes3D
from perception.types.detections import Detections
from perception.types.frame import CAMERAS, LIDAR, MODALITIES, RADARS, CameraView, Prompt, SensorFrame
from perception.types.labels import ATTRIBUTES, CATEGORY_TO_CLASS, CLASS_ATTRIBUTES, CLASS_RANGE, DETECTION_CLASSES
from perception.types.pointcloud import PointCloud

__all__ = [
    "ATTRIBUTES", "CAMERAS", "CATEGORY_TO_CLASS", "CLASS_ATTRIBUTES", "CLASS_RANGE", "DETECTION_CLASSES", "LIDAR",
    "MODALITIES", "RADARS",
    "Boxes3D", "CameraView", "Detections", "PointCloud", "Prompt", "SensorFrame",
]
