"""Camera-only proxy (issue 17) as configs/ablation/camera_lite0.py, plus depth: a camera-aware depth head
supervised by the lidar points that land in each image (the lidar is read for the targets only: the network
has no lidar encoder), its probabilities weighting the BEV queries' camera sampling."""

from configs.ablation.camera_lite0 import *  # noqa: F403 - everything else as the EfficientNet-Lite0 proxy
from configs.ablation.camera_lite0 import fusion_model, pc_range, preprocess, voxel_size

CAMERA_BACKBONE = dict(backbone="efficientnet_lite0", weights="imagenet", freeze_bn=True,
                       depth=dict(dmin=1.0, dmax=61.0, bins=30))
model = fusion_model(pc_range, voxel_size, dim=64, layers=2, grounding=None, camera_backbone=CAMERA_BACKBONE)
model["encoders"] = {"camera": model["encoders"]["camera"]}
model["fuser"]["channels"] = {"camera": model["fuser"]["channels"]["camera"]}
preprocess = {**preprocess, "modalities": ("camera", "lidar")}  # lidar voxels carry the depth targets
