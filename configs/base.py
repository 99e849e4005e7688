"""Base: the GPU configuration. nuScenes-size BEV (180x180 cells of 0.6 m, fused at 90x90), images 256x704."""

from configs._base_.model import fusion_model
from perception.types import CAMERAS

pc_range = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)
voxel_size = (0.6, 0.6, 8.0)

model = fusion_model(pc_range, voxel_size, dim=128, lidar_channels=(64, 128), radar_channels=(32, 64),
                     camera_widths=(64, 128, 256), layers=3, head_channels=64)

preprocess = dict(
    modalities=("camera", "lidar", "radar"),
    lidar=dict(pc_range=pc_range, voxel_size=voxel_size, max_points=32, max_voxels=40000,
               columns=("x", "y", "z", "intensity", "time_lag")),
    radar=dict(pc_range=pc_range, voxel_size=voxel_size, max_points=8, max_voxels=6000,
               columns=("x", "y", "z", "vx_comp", "vy_comp", "rcs", "time_lag")),
    camera=dict(channels=CAMERAS, size=(256, 704)),
)

data = dict(version="v1.0-trainval", train_split="train", val_split="val", lidar_sweeps=9, radar_sweeps=3)

train = dict(max_iters=60000, batch_size=4, lr=2e-4, weight_decay=1e-2, val_interval=10000, checkpoint_interval=2000,
             modality_dropout=dict(camera=0.15, lidar=0.25, radar=0.2), num_workers=4, log_interval=50)
