import numpy as np
import pytest

from perception.types import Boxes3D, CameraView, Detections, PointCloud, Prompt, SensorFrame


def _boxes(n=3):
    rng = np.random.default_rng(0)
    d = np.concatenate([rng.normal(0, 10, (n, 3)), rng.uniform(0.5, 5, (n, 3)), rng.uniform(-3, 3, (n, 1)),
                        rng.normal(0, 2, (n, 2))], axis=1)
    return Boxes3D(d, np.arange(n) % 10, tokens=[f"t{i}" for i in range(n)], num_lidar_pts=np.arange(n))


def test_boxes_index_and_fields():
    b = _boxes(5)
    sub = b[np.array([True, False, True, False, False])]
    assert len(sub) == 2
    assert list(sub.tokens) == ["t0", "t2"]
    assert sub.num_lidar_pts.tolist() == [0, 2]
    assert len(b[1]) == 1 and b[1].tokens[0] == "t1"
    assert b.attributes is None  # optional field not set
    assert b.corners().shape == (5, 8, 3)


def test_boxes_without_velocity_get_zeros():
    b = Boxes3D(np.ones((2, 7)), [0, 1])
    assert b.data.shape == (2, 9) and np.all(b.velocity == 0)


@pytest.mark.parametrize(
    "data,labels,match",
    [(np.zeros((2, 8)), [0, 0], "Boxes3D.data"), (np.zeros((2, 9)), [0], "Boxes3D.labels"),
     (np.zeros((2, 9)), [0, 10], "Boxes3D.labels"), (np.zeros((2, 9)), np.array([0.5, 1.0]), "Boxes3D.labels")],
)
def test_boxes_validation_names_field(data, labels, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Boxes3D(data, labels)


def test_boxes_unknown_field_lists_valid():
    with pytest.raises(TypeError, match="num_lidar_pts"):
        Boxes3D(np.zeros((1, 9)), [0], num_lidar_points=[1])


def test_boxes_transform_roundtrip():
    from perception.geometry import invert_transform, make_transform, yaw_to_quat

    b = _boxes(4)
    T = make_transform(yaw_to_quat(0.7), [10.0, -3.0, 1.0])
    back = b.transform(T).transform(invert_transform(T))
    np.testing.assert_allclose(back.data, b.data, atol=1e-9)
    # corners transform like points
    from perception.geometry import transform_points

    moved = b.transform(T)
    np.testing.assert_allclose(np.sort(moved.corners().reshape(-1, 3), axis=0),
                               np.sort(transform_points(T, b.corners().reshape(-1, 3)), axis=0), atol=1e-9)


def test_pointcloud_validation_and_ops():
    xyz = np.array([[0, 0, 0], [1, 2, 3], [np.nan, 0, 0]], np.float32)
    pc = PointCloud(xyz, {"intensity": [1, 2, 3], "vx_comp": [1, 0, 0], "vy_comp": [0, 0, 0]})
    clean, dropped = pc.finite()
    assert len(clean) == 2 and dropped == 1
    with pytest.raises(ValueError, match=r"features\['intensity'\]"):
        PointCloud(xyz, {"intensity": [1, 2]})
    with pytest.raises(ValueError, match="PointCloud.xyz"):
        PointCloud(np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="PointCloud.xyz"):
        PointCloud(np.array([["a", "b", "c"]]))
    from perception.geometry import make_transform, yaw_to_quat

    rot = clean.transform(make_transform(yaw_to_quat(np.pi / 2)))
    np.testing.assert_allclose(rot.features["vy_comp"], [1, 0], atol=1e-6)  # velocity rotated with the cloud
    np.testing.assert_allclose(rot.xyz[1], [-2, 1, 3], atol=1e-5)
    assert PointCloud.empty(["intensity"]).to_array().shape == (0, 4)
    both = PointCloud.concatenate([clean, clean])
    assert len(both) == 4


def test_camera_view_and_frame_validation():
    K = np.array([[100, 0, 50], [0, 100, 40], [0, 0, 1.0]])
    cam = CameraView(np.zeros((80, 100, 3), np.uint8), K, np.eye(4), 5, "CAM_FRONT")
    with pytest.raises(TypeError, match=r"CameraView\(CAM_FRONT\).image"):
        CameraView(np.zeros((80, 100, 3), np.float32), K, np.eye(4), 5, "CAM_FRONT")
    with pytest.raises(ValueError, match="T_ego_cam"):
        CameraView(np.zeros((80, 100, 3), np.uint8), K, np.eye(4) * 2, 5, "CAM_FRONT")
    f = SensorFrame(stamp_ns=10, T_global_ego=np.eye(4), cameras={"CAM_FRONT": cam})
    assert f.modalities == ("camera",)
    with pytest.raises(TypeError, match="SensorFrame.lidar"):
        SensorFrame(stamp_ns=10, T_global_ego=np.eye(4), lidar=np.zeros((3, 3)))
    radar_only = SensorFrame(stamp_ns=1, T_global_ego=np.eye(4), radar=PointCloud.empty())
    assert radar_only.modalities == ("radar",)


def test_detections_like_instances():
    b = _boxes(4)
    det = Detections(b, [0.9, 0.1, 0.5, 0.7], grounding_scores=np.zeros((4, 2)), prompts=("a", "b"))
    assert len(det.filter(0.5)) == 3
    assert det.topk(2).scores.tolist() == pytest.approx([0.9, 0.7])
    assert det[1].grounding_scores.shape == (1, 2)
    with pytest.raises(ValueError, match="grounding_scores"):
        Detections(b, np.zeros(4), grounding_scores=np.zeros((4, 3)), prompts=("a", "b"))
    with pytest.raises(ValueError, match="Detections.scores"):
        Detections(b, np.zeros(3))
    assert len(Detections.empty(("x",))) == 0
    with pytest.raises(ValueError, match="Prompt.text"):
        Prompt("  ")
