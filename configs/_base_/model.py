"""Shared model builder: a function of the grid/camera settings, so tiny.py and base.py differ in numbers only."""

from perception.models.context import BEVContext
from perception.models.encoders import CameraEncoder, LidarEncoder, RadarEncoder
from perception.models.fusion import BEVCrossAttentionFusion
from perception.models.heads import CenterHead, GroundingHead
from perception.models.model import FusionModel
from perception.models.temporal import TemporalFusion
from perception.ops.voxelize import VoxelGrid


def fusion_model(pc_range, voxel_size, dim=64, lidar_channels=(32, 64), radar_channels=(16, 32),
                 camera_widths=(32, 64, 128), layers=2, head_channels=32, grounding=None, camera_backbone=None,
                 temporal=None, context=None, point_norm=False, head=None, lift=None):
    """``grounding``: None (detection only) or GroundingHead keyword arguments ({} for the defaults);
    ``camera_backbone``: CameraEncoder's backbone arguments (None: the small CNN trained from scratch), e.g.
    dict(backbone="efficientnet_lite0", weights="imagenet", freeze_bn=True, levels=2) (``levels``: the camera
    FPN levels the BEV queries sample, also given to the fuser); ``temporal``: None (one frame at a time) or
    TemporalFusion keyword arguments ({} for the defaults: the keyframe 0.5 s earlier mixed in); ``context``: None or
    BEVContext keyword arguments ({} for the defaults: a stride-2 stage of twice the channels over the fused map);
    ``point_norm``: the lidar and radar pillar nets read every point column divided by its typical magnitude
    (perception.models.encoders.lidar.COLUMN_SCALE) instead of raw; ``head``: CenterHead keyword arguments
    (e.g. dict(branch_norm=True, vel_balance=True)); ``lift``: None or DepthLift keyword arguments ({} for the
    defaults): the camera features lifted into a BEV map by the predicted depth, sampled by the queries too
    (needs ``camera_backbone``'s ``depth``)."""
    if lift is not None and not (camera_backbone or {}).get("depth"):
        raise ValueError("fusion_model(lift=...): the lifted camera map needs the camera's depth head "
                         "(camera_backbone=dict(..., depth=dict(dmin=..., dmax=..., bins=...)))")
    grid = VoxelGrid(tuple(pc_range), tuple(voxel_size))
    W, H, _ = grid.shape_xyz
    xy_range = (pc_range[0], pc_range[1], pc_range[3], pc_range[4])
    return dict(
        type=FusionModel,
        encoders=dict(
            camera=dict(type=CameraEncoder, widths=camera_widths, out_channels=dim, **(camera_backbone or {})),
            lidar=dict(type=LidarEncoder, grid=grid, pillar_channels=lidar_channels[0],
                       out_channels=lidar_channels[1], normalize=point_norm),
            radar=dict(type=RadarEncoder, grid=grid, pillar_channels=radar_channels[0],
                       out_channels=radar_channels[1], normalize=point_norm),
        ),
        fuser=dict(type=BEVCrossAttentionFusion, dim=dim,
                   channels=dict(camera=dim, lidar=lidar_channels[1], radar=radar_channels[1]),
                   bev_hw=(H // 2, W // 2), xy_range=xy_range, layers=layers,
                   camera_levels=(camera_backbone or {}).get("levels", 1), lift=lift),
        head=dict(type=CenterHead, in_channels=head_channels, xy_range=xy_range, out_hw=(H, W),
                  head_channels=head_channels, **(head or {})),
        fused_channels=dim,
        skip_channels=lidar_channels[0],
        grounding=None if grounding is None else dict(type=GroundingHead, bev_channels=head_channels,
                                                      xy_range=xy_range, **grounding),
        temporal=None if temporal is None else dict(type=TemporalFusion, channels=dim, xy_range=xy_range,
                                                    bev_hw=(H // 2, W // 2), **temporal),
        context=None if context is None else dict(type=BEVContext, channels=dim, **context),
    )


def preprocess_spec(pc_range, voxel_size, image_size, lidar_points=(20, 16000), radar_points=(6, 3000),
                    keep="first"):
    """The preprocessing saved with the checkpoint: voxelization caps per modality and the camera input size;
    ``keep``: which points a full voxel keeps (perception.pipeline.KEEP)."""
    from perception.types import CAMERAS

    return dict(
        modalities=("camera", "lidar", "radar"),
        lidar=dict(pc_range=pc_range, voxel_size=voxel_size, max_points=lidar_points[0], max_voxels=lidar_points[1],
                   columns=("x", "y", "z", "intensity", "time_lag"), keep=keep),
        radar=dict(pc_range=pc_range, voxel_size=voxel_size, max_points=radar_points[0], max_voxels=radar_points[1],
                   columns=("x", "y", "z", "vx_comp", "vy_comp", "rcs", "time_lag"), keep=keep),
        camera=dict(channels=CAMERAS, size=image_size),
    )
