"""Base: the GPU configuration. nuScenes-size BEV (180x180 cells of 0.6 m, fused at 90x90), images 256x704."""

from configs._base_.model import fusion_model, preprocess_spec

pc_range = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)
voxel_size = (0.6, 0.6, 8.0)

# the camera branch one trains on real nuScenes (issue 17): ImageNet-pretrained EfficientNet-Lite0 (packaged
# offline; for a torchvision ResNet-50 file: backbone="resnet50", weights="path/to/resnet50.pth"), three FPN
# levels, depth over 1-61 m in 1 m bins supervised by the projected lidar
CAMERA = dict(backbone="efficientnet_lite0", weights="imagenet", freeze_bn=True, frozen_stages=1, levels=3,
              depth=dict(dmin=1.0, dmax=61.0, bins=60), semantic=True)
# point_norm: the pillar nets read the point columns scaled to order one (with raw columns the tiny network learned
# nothing from the time lag of its sweeps, and no velocity of oncoming traffic; README, Tracking)
model = fusion_model(pc_range, voxel_size, dim=128, lidar_channels=(64, 128), radar_channels=(32, 64),
                     camera_widths=(64, 128, 256), layers=3, head_channels=64,
                     grounding=dict(dim=128, layers=2), camera_backbone=CAMERA, point_norm=True,
                     head=dict(nms=0.4))  # circle NMS at decoding, as configs/tiny.py
preprocess = preprocess_spec(pc_range, voxel_size, image_size=(256, 704), lidar_points=(32, 40000),
                             radar_points=(8, 6000), keep="spread")  # every sweep sampled in a full pillar

# the training data (perception.sources.nuscenes); how frames are made is the assembly below
data = dict(version="v1.0-trainval", train_split="train", val_split="val")

# how messages become frames, saved in the deploy checkpoint and used by every source at inference
# (perception.sources.assembly: sweeps, radar filters, synchronization; the rest at its defaults)
assembly = dict(lidar_sweeps=9, radar_sweeps=3)

train = dict(max_iters=60000, batch_size=4, lr=2e-4, weight_decay=1e-2, val_interval=10000, checkpoint_interval=2000,
             modality_dropout=dict(camera=0.15, lidar=0.25, radar=0.2), num_workers=4, log_interval=50,
             class_balanced=True,  # CBGS, as the nuScenes anchors train
             augment=dict(bev=dict(rot=0.3925, scale=(0.95, 1.05), flip=0.5, prob=0.5),
                          image=dict(scale=(0.9, 1.1), flip=0.5, color=0.2)))

# the GPU path: fp16 autocast on CUDA (fp32 on a CPU), voxelization by the torch kernel on the GPU, pinned
# host memory with asynchronous copies; on a CPU the network runs in ONNX Runtime when it is installed
# (perception.pipeline.RUNTIME_DEFAULTS)
runtime = dict(precision="auto", voxelize_on_device=True, pin_memory=True, backend="auto")

text_encoder = dict(path=None, max_tokens=32)
prompts = dict(train_per_scene=80, val_per_scene=60, train_phrasings=6, seed=0)
