"""The shipped tiny network and training (configs/tiny.py) with temporal BEV fusion (issue 18): the fused map
of the keyframe 0.5 s earlier, warped into the current ego frame, is mixed into the current one
(perception.models.temporal). Trained on keyframe pairs; compared against configs/tiny.py for mAVE and mAP."""

from configs.tiny import *  # noqa: F403 - data, assembly, training, runtime, prompts as the shipped tiny network
from configs.tiny import CAMERA, fusion_model, pc_range, voxel_size

model = fusion_model(pc_range, voxel_size, dim=64, layers=2, grounding=dict(dim=64, layers=2), camera_backbone=CAMERA,
                     temporal=dict(lag=0.5, history_drop=0.2))
