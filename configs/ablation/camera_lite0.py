"""Camera-only proxy (issue 17) as configs/ablation/camera_scratch.py, with the ImageNet-pretrained
EfficientNet-Lite0 backbone (BatchNorm statistics frozen)."""

from configs._base_.model import fusion_model
from configs.ablation.camera_scratch import (  # noqa: F401
    assembly,
    data,
    pc_range,
    preprocess,
    runtime,
    text_encoder,
    train,
    voxel_size,
)

CAMERA_BACKBONE = dict(backbone="efficientnet_lite0", weights="imagenet", freeze_bn=True)
model = fusion_model(pc_range, voxel_size, dim=64, layers=2, grounding=None, camera_backbone=CAMERA_BACKBONE)
