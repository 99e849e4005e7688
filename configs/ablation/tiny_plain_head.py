"""The shipped tiny network (configs/tiny.py) as it was before issue 18's velocity fixes: raw point columns into the
pillar nets and the detection head's plain conv - ReLU - conv branches with the velocity supervised on the centre
cell only, every object's error weighed alike. The tiny checkpoint shipped before those fixes (in the repository's
history) is this network; kept to load and compare it."""

from configs.tiny import *  # noqa: F403 - data, assembly, training, runtime, prompts as the shipped tiny network
from configs.tiny import NETWORK, fusion_model, pc_range, voxel_size

model = fusion_model(pc_range, voxel_size, **{**NETWORK, "point_norm": False, "head": None})
