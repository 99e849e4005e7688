"""The shipped tiny network and training (configs/tiny.py) without the camera's perspective semantic head: the
baseline that says what supervising the camera features with projected boxes buys (issue 17: camera-only mAP,
what the cameras add to lidar+radar, street furniture taken for pedestrians)."""

from configs.tiny import *  # noqa: F403 - data, assembly, training, runtime, prompts as the shipped tiny network
from configs.tiny import CAMERA, NETWORK, fusion_model, pc_range, voxel_size

model = fusion_model(pc_range, voxel_size, **{**NETWORK, "camera_backbone": {**CAMERA, "semantic": False}})
