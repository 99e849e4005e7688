"""The shipped tiny network and training (configs/tiny.py) without temporal fusion: one frame at a time. The
baseline that says what the history buys (issue 18: velocity error, mAP, tracking)."""

from configs.tiny import *  # noqa: F403 - data, assembly, training, runtime, prompts as the shipped tiny network
from configs.tiny import NETWORK, fusion_model, pc_range, voxel_size

model = fusion_model(pc_range, voxel_size, **{**NETWORK, "temporal": None})
