"""Helpers shared by the camera tests (tests/test_backbones.py, tests/test_lift.py): a front camera's projection,
one training item, a camera-only proxy config's losses."""

import numpy as np
import torch


def front_extrinsics(t=(1.5, 0.0, 1.5)) -> np.ndarray:
    """camera -> ego of a camera looking along ego +x (optical z forward, x right, y down), as nuScenes' front."""
    T = np.eye(4)
    T[:3, :3] = [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]  # columns: camera axes in the ego frame
    T[:3, 3] = t
    return T


def front_camera(fx=100.0, W=224, H=128, t=(1.5, 0.0, 1.5)):
    """ego -> image of ``front_extrinsics``' camera with focal length ``fx`` and a W x H image."""
    K = np.eye(4)
    K[:3, :3] = [[fx, 0, W / 2], [0, fx, H / 2], [0, 0, 1]]
    return torch.tensor(K @ np.linalg.inv(front_extrinsics(t)), dtype=torch.float32)


def training_item(pre):
    """One frame for a training step: a front camera (random pixels), lidar points ahead, a car 10 m ahead."""
    from perception.types import Boxes3D, CameraView, PointCloud, SensorFrame

    rng = np.random.default_rng(0)
    pts = np.c_[rng.uniform(3, 40, 3000), rng.uniform(-10, 10, 3000), rng.uniform(-1, 2, 3000)].astype(np.float32)
    cloud = PointCloud(pts, {"intensity": np.zeros(3000, np.float32), "time_lag": np.zeros(3000, np.float32)})
    Kc = np.array([[100.0, 0, 112], [0, 100.0, 64], [0, 0, 1]])
    cams = {"CAM_FRONT": CameraView(rng.integers(0, 255, (128, 224, 3), dtype=np.uint8), Kc, front_extrinsics(), 0,
                                    "CAM_FRONT")}
    frame = SensorFrame(stamp_ns=0, T_global_ego=np.eye(4), cameras=cams, lidar=cloud)
    gt = Boxes3D(np.array([[10.0, 0.0, 0.0, 4.5, 1.9, 1.6, 0.0, 0.0, 0.0]]), np.array([0]))
    return {"inputs": pre.prepare(frame), "data_samples": {"token": "t", "gt": gt, "T_global_ego": np.eye(4)}}


def proxy_losses(config: str):
    """A camera-only proxy config's network and its training losses on one synthetic item."""
    from perception.config import build, load_config
    from perception.pipeline import Preprocessor
    from perception.training.wrapper import FusionDetector

    cfg = load_config(config)
    net = build(cfg["model"])
    pre = Preprocessor(cfg["preprocess"])
    item = training_item(pre)
    return net, FusionDetector(net, pre.to_dict())([item["inputs"]], [item["data_samples"]], mode="loss")
