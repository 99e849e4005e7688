"""The shipped tiny network and training (configs/tiny.py) with a cost volume in the temporal fusion: at every
cell of the 64x64 fused map (1.6 m cells), the current features' mean product with the warped earlier map's at
each offset within 4 cells (81 channels: 6.4 m either way, 12.8 m/s over the 0.5 s between the two maps) is an
input of the mixing convolutions (perception.models.temporal.correlation). The candidate for issue 18's velocity
goal after the wider reach (configs/ablation/tiny_temporal_wide.py) left mAVE where it was: the mix is handed
where each object was, as optical-flow networks are, instead of finding it with two convolutions."""

from configs.tiny import *  # noqa: F403 - data, assembly, training, runtime, prompts as the shipped tiny network
from configs.tiny import NETWORK, TEMPORAL, fusion_model, pc_range, voxel_size

model = fusion_model(pc_range, voxel_size, **{**NETWORK, "temporal": {**TEMPORAL, "corr": 4}})
