"""Camera-only proxy (issue 17) as configs/ablation/camera_lite0_lift.py, with the lifted map's cells divided by
how many ray points land in each (DepthLift pool="density"): sum pooling piles the cells near the cameras, which
many rays cross, far above the distant ones (the lifted map's picture, `promptfusion-test --pictures`)."""

from configs.ablation.camera_lite0_depth import *  # noqa: F403 - everything else as the depth proxy
from configs.ablation.camera_lite0_depth import CAMERA_BACKBONE, fusion_model, pc_range, voxel_size

model = fusion_model(pc_range, voxel_size, dim=64, layers=2, grounding=None, camera_backbone=CAMERA_BACKBONE,
                     lift=dict(channels=32, pool="density"))
model["encoders"] = {"camera": model["encoders"]["camera"]}
model["fuser"]["channels"] = {"camera": model["fuser"]["channels"]["camera"]}
