"""The shipped tiny network and training (configs/tiny.py) plus the depth-lifted camera BEV map
(perception.models.lift.DepthLift, Lift-Splat / BEVDepth): every stride-8 camera feature pixel spread along its
ray by the predicted depth and summed per BEV cell, sampled by the queries beside the images. Issue 17's second
view transform at full scale, against the shipped network's depth-weighted image sampling alone."""

from configs.tiny import *  # noqa: F403 - data, assembly, training, runtime, prompts as the shipped tiny network
from configs.tiny import NETWORK, fusion_model, pc_range, voxel_size

model = fusion_model(pc_range, voxel_size, **{**NETWORK, "lift": dict(channels=32)})
