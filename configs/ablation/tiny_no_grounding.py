"""The shipped tiny network and training (configs/tiny.py) without the grounding head: the baseline that says
what grounding costs detection (issue 19: detection mAP within 0.02 of this)."""

from configs.tiny import *  # noqa: F403 - data, assembly, training, runtime as the shipped tiny network
from configs.tiny import NETWORK, fusion_model, pc_range, voxel_size

model = fusion_model(pc_range, voxel_size, **{**NETWORK, "grounding": None})
