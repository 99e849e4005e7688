import numpy as np
from nuscenes.utils.data_classes import Box
from pyquaternion import Quaternion

from perception.geometry import (
    box_corners,
    invert_transform,
    make_transform,
    matrix_to_quat,
    points_in_boxes,
    quat_to_matrix,
    quat_to_yaw,
    yaw_to_quat,
)


def test_quaternions_match_pyquaternion():
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        np.testing.assert_allclose(quat_to_matrix(q), Quaternion(q).rotation_matrix, atol=1e-12)
        back = matrix_to_quat(quat_to_matrix(q))
        assert np.allclose(back, q) or np.allclose(back, -q)
    assert abs(quat_to_yaw(yaw_to_quat(2.5)) - 2.5) < 1e-12


def test_invert_transform():
    T = make_transform(Quaternion(axis=[1, 2, 3], angle=0.8).elements, [1, -2, 3])
    np.testing.assert_allclose(invert_transform(T) @ T, np.eye(4), atol=1e-12)


def test_box_corners_match_devkit_and_points_in_box():
    from nuscenes.utils.geometry_utils import points_in_box

    box = np.array([[3.0, -1.0, 0.9, 4.6, 1.9, 1.7, 0.6]])
    dk = Box([3.0, -1.0, 0.9], [1.9, 4.6, 1.7], Quaternion(yaw_to_quat(0.6)))
    np.testing.assert_allclose(box_corners(box)[0], dk.corners().T, atol=1e-9)
    pts = np.random.default_rng(0).uniform(-5, 8, (2000, 3))
    np.testing.assert_array_equal(points_in_boxes(pts, box)[0], points_in_box(dk, pts.T))
