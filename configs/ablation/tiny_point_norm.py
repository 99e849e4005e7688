"""The shipped tiny network and training (configs/tiny.py) with the lidar and radar pillar nets reading every point
column divided by its typical magnitude (``point_norm=True``, perception.models.encoders.lidar.COLUMN_SCALE): the
candidate for velocity (issue 18: the network trained on raw columns predicts the same velocities with the lidar's
time lag zeroed, so oncoming and crossing cars get none)."""

from configs.tiny import *  # noqa: F403 - data, assembly, training, runtime, prompts as the shipped tiny network
from configs.tiny import NETWORK, fusion_model, pc_range, voxel_size

model = fusion_model(pc_range, voxel_size, **{**NETWORK, "point_norm": True})
