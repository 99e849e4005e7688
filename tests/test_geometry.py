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


def test_box_edges_in_front_cut_at_the_near_plane_and_what_the_camera_draws():
    from perception.geometry import box_edges_in_front
    from perception.types import Boxes3D
    from perception.viz import draw_boxes_on_camera

    # in a camera frame (z forward): a 4 m long box from z = -1 to z = 3, a box wholly behind, one wholly ahead
    boxes = np.array([[0.0, 0.0, 1.0, 1.0, 1.0, 4.0, 0.0], [0.0, 0.0, -5.0, 1.0, 1.0, 2.0, 0.0],
                      [0.0, 0.0, 10.0, 1.0, 1.0, 2.0, 0.0]])
    # box_corners' z is the camera's z here: the boxes' length runs along its axis through h
    ends = box_edges_in_front(box_corners(boxes), 0.5)
    assert ends.shape == (3, 12, 2, 3)
    assert np.isnan(ends[1]).all() and np.isfinite(ends[2]).all()
    z = ends[0, ..., 2]
    assert np.isnan(z).sum() == 4 * 2  # the 4 edges of the face at z = -1 are wholly behind
    seen = np.round(np.sort(z[np.isfinite(z).all(1)], 1), 9).tolist()
    # the face at z = 3 whole, and the 4 edges along z cut at the plane
    assert sorted(seen) == [[0.5, 3.0]] * 4 + [[3.0, 3.0]] * 4
    # drawn into an image: the camera frame is the ego frame here (identity extrinsics)
    K = np.array([[100.0, 0, 64], [0, 100.0, 64], [0, 0, 1]])
    img = np.zeros((128, 128, 3), np.uint8)
    drawn = [draw_boxes_on_camera(img, K, np.eye(4), Boxes3D(np.c_[b[None], np.zeros((1, 2))], np.array([0])))
             for b in boxes]
    assert drawn[0].any() and not drawn[1].any() and drawn[2].any()


def test_bev_heat_background_is_drawn_where_the_grid_says():
    """A BEV grid's cell (rows along y, columns along x) is drawn where the BEV picture puts that ego point:
    ahead is up, left is left; the points of the frame are left out under the map."""
    from perception.types import SensorFrame
    from perception.viz import bev_image

    heat = np.zeros((64, 64), np.float32)
    ix, iy = int((20.0 + 51.2) / 1.6), int((10.0 + 51.2) / 1.6)  # the cell of x = 20 m ahead, y = 10 m left
    heat[iy, ix] = 1.0
    img = bev_image(SensorFrame(stamp_ns=0, T_global_ego=np.eye(4)), range_m=51.2, px_per_m=5.0, heat=heat)
    lum = img.astype(float).sum(-1)
    lum[225:270, 245:267] = 0  # the ego's white rectangle (x -1 to 4 m, y +-0.95 m)
    row, col = np.unravel_index(np.argmax(lum), lum.shape)
    size = img.shape[0]
    assert abs((size / 2 - row) / 5.0 - 20.8) <= 1.0 and abs((size / 2 - col) / 5.0 - 10.4) <= 1.0
