from perception.models.encoders.camera import CameraEncoder
from perception.models.encoders.lidar import LidarEncoder, PillarFeatureNet, RadarEncoder

__all__ = ["CameraEncoder", "LidarEncoder", "PillarFeatureNet", "RadarEncoder"]
