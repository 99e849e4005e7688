"""Camera-only proxy (issue 17) as configs/ablation/camera_lite0_depth.py, plus the depth-lifted camera BEV map
(Lift-Splat / BEVDepth: every stride-8 feature pixel spread along its ray by the predicted depth, summed per BEV
cell; perception.models.lift) that the queries sample besides the images: the issue's second view transform,
against the depth-weighted image sampling alone."""

from configs.ablation.camera_lite0_depth import *  # noqa: F403 - everything else as the depth proxy
from configs.ablation.camera_lite0_depth import CAMERA_BACKBONE, fusion_model, pc_range, voxel_size

model = fusion_model(pc_range, voxel_size, dim=64, layers=2, grounding=None, camera_backbone=CAMERA_BACKBONE,
                     lift=dict(channels=32))
model["encoders"] = {"camera": model["encoders"]["camera"]}
model["fuser"]["channels"] = {"camera": model["fuser"]["channels"]["camera"]}
