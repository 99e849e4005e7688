"""Camera-only proxy (issue 17): the tiny network seeing only the cameras, detection only, 800 iterations, with
the small CNN trained from scratch. Evaluated with --modalities camera on the training world's mini_val (a
development split), never on a held-out seed: it chooses the camera backbone."""

from configs._base_.model import fusion_model, preprocess_spec
from configs.tiny import assembly, data, pc_range, runtime, text_encoder, voxel_size  # noqa: F401

CAMERA_BACKBONE = None
model = fusion_model(pc_range, voxel_size, dim=64, layers=2, grounding=None, camera_backbone=CAMERA_BACKBONE)
preprocess = {**preprocess_spec(pc_range, voxel_size, image_size=(128, 224), lidar_points=(20, 16000),
                                radar_points=(6, 3000)), "modalities": ("camera",)}
train = dict(max_iters=800, batch_size=2, lr=2e-3, weight_decay=1e-2, val_interval=100000,
             checkpoint_interval=100000, modality_dropout={}, num_workers=0, log_interval=50, warmup=100)
