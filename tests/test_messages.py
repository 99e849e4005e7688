"""Message decoders on real message objects: rosbags' dataclasses and rclpy's generated classes."""

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from perception.sources.messages import (
    MessageError,
    camera_info,
    compressed_to_rgb,
    image_to_rgb,
    pointcloud2_to_cloud,
)

TS = get_typestore(Stores.ROS2_KILTED)
T = TS.types


def _header():
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=5), frame_id="LIDAR_TOP")


def _cloud_msg(fields, records: np.ndarray, height=1, row_pad=0, big=False):
    """fields: [(name, offset, datatype)], records: structured array with matching itemsize."""
    n = len(records)
    step = records.dtype.itemsize
    width = n // height
    rows = records.tobytes()
    if row_pad:
        rows = b"".join(rows[r * width * step:(r + 1) * width * step] + b"\xaa" * row_pad for r in range(height))
    PF = T["sensor_msgs/msg/PointField"]
    return T["sensor_msgs/msg/PointCloud2"](
        header=_header(), height=height, width=width, fields=[PF(name=a, offset=o, datatype=d, count=1)
                                                              for a, o, d in fields],
        is_bigendian=big, point_step=step, row_step=width * step + row_pad,
        data=np.frombuffer(rows, np.uint8), is_dense=False)


def _points(n=1000, seed=0):
    return np.random.default_rng(seed).normal(0, 10, (n, 4)).astype(np.float32)


def test_packed_xyzi_is_zero_copy():
    p = _points(35_000)
    rec = np.zeros(len(p), np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")]))
    for i, c in enumerate(("x", "y", "z", "intensity")):
        rec[c] = p[:, i]
    msg = _cloud_msg([("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 12, 7)], rec)
    cloud, stats = pointcloud2_to_cloud(msg)
    np.testing.assert_array_equal(cloud.xyz, p[:, :3])
    np.testing.assert_array_equal(cloud.features["intensity"], p[:, 3])
    assert np.shares_memory(cloud.xyz, msg.data) and stats.dropped_nonfinite == 0
    # the same packed all-float32 layout (its fast all-finite check) with NaN / inf in any field
    for i, c in ((5, "x"), (17, "z"), (400, "intensity")):
        rec[c][i] = np.nan if c != "z" else np.inf
    cloud, stats = pointcloud2_to_cloud(_cloud_msg([("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 12, 7)],
                                                   rec))
    assert stats.dropped_nonfinite == 3 and len(cloud) == len(p) - 3
    assert np.isfinite(cloud.xyz).all() and np.isfinite(cloud.features["intensity"]).all()
    # keeping fewer columns than the message has: NaN in a dropped column does not drop the point
    cloud, stats = pointcloud2_to_cloud(_cloud_msg([("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 12, 7)],
                                                   rec), columns=())
    assert stats.dropped_nonfinite == 2


@pytest.mark.parametrize("big", [False, True])
def test_any_order_padding_rows_and_endianness(big):
    p = _points(600)
    e = ">" if big else "<"
    dt = np.dtype({"names": ["ring", "z", "x", "y", "intensity"],
                   "formats": [e + "u2", e + "f8", e + "f4", e + "f4", "u1"],
                   "offsets": [0, 4, 12, 20, 26], "itemsize": 32})
    rec = np.zeros(len(p), dt)
    rec["x"], rec["y"], rec["z"] = p[:, 0], p[:, 1], p[:, 2]
    rec["intensity"] = np.arange(len(p)) % 255
    rec["ring"] = np.arange(len(p)) % 32
    rec["x"][7] = np.nan
    msg = _cloud_msg([("ring", 0, 4), ("z", 4, 8), ("x", 12, 7), ("y", 20, 7), ("intensity", 26, 2)], rec,
                     height=20, row_pad=13, big=big)
    cloud, stats = pointcloud2_to_cloud(msg)
    keep = np.ones(len(p), bool)
    keep[7] = False
    np.testing.assert_allclose(cloud.xyz, p[keep, :3], rtol=1e-6)
    assert stats.received == 600 and stats.dropped_nonfinite == 1
    np.testing.assert_array_equal(cloud.features["ring"], (np.arange(600) % 32)[keep])


def test_rclpy_message_objects_decode_too():
    from sensor_msgs.msg import PointCloud2, PointField

    p = _points(50)
    m = PointCloud2()
    m.height, m.width, m.point_step, m.row_step = 1, 50, 16, 800
    m.fields = [PointField(name=c, offset=4 * i, datatype=7, count=1) for i, c in enumerate(("x", "y", "z", "i"))]
    m.data = p.tobytes()
    cloud, _ = pointcloud2_to_cloud(m)
    np.testing.assert_array_equal(cloud.xyz, p[:, :3])


@pytest.mark.parametrize("mutate,match", [
    (lambda m: setattr(m, "point_step", 0), "bad sizes"),
    (lambda m: setattr(m, "data", m.data[:-5]), "layout needs"),
    (lambda m: setattr(m, "row_step", 3), "row_step"),
    (lambda m: m.fields.pop(1), "no 'y' field"),
    (lambda m: setattr(m.fields[0], "datatype", 42), "unknown datatype"),
])
def test_bad_pointcloud2_raises_typed_error(mutate, match):
    rec = np.zeros(10, np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4")]))
    msg = _cloud_msg([("x", 0, 7), ("y", 4, 7), ("z", 8, 7)], rec)
    mutate(msg)
    for _ in range(2):  # layouts are cached: the second message with the same layout fails the same way
        with pytest.raises(MessageError, match=match):
            pointcloud2_to_cloud(msg)


def test_images_and_camera_info():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (30, 41, 3), np.uint8)
    Img = T["sensor_msgs/msg/Image"]
    pad = 7
    rows = b"".join(rgb[r, :, ::-1].tobytes() + b"\0" * pad for r in range(30))
    msg = Img(header=_header(), height=30, width=41, encoding="bgr8", is_bigendian=0, step=41 * 3 + pad,
              data=np.frombuffer(rows, np.uint8))
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)
    mono = Img(header=_header(), height=30, width=41, encoding="mono8", is_bigendian=0, step=41,
               data=rgb[..., 0].reshape(-1).copy())
    assert image_to_rgb(mono).shape == (30, 41, 3)
    with pytest.raises(MessageError, match="unsupported encoding"):
        image_to_rgb(Img(header=_header(), height=1, width=1, encoding="yuv422", is_bigendian=0, step=2,
                         data=np.zeros(2, np.uint8)))
    ok, png = cv2.imencode(".png", rgb[..., ::-1])
    C = T["sensor_msgs/msg/CompressedImage"]
    np.testing.assert_array_equal(compressed_to_rgb(C(header=_header(), format="png", data=png.reshape(-1))), rgb)
    ok, jpg = cv2.imencode(".jpg", rgb[..., ::-1])
    assert compressed_to_rgb(C(header=_header(), format="jpeg", data=jpg.reshape(-1))).shape == (30, 41, 3)
    with pytest.raises(MessageError, match="exceeds"):
        compressed_to_rgb(C(header=_header(), format="png", data=png.reshape(-1)), max_pixels=100)
    with pytest.raises(MessageError, match="could not be decoded"):
        compressed_to_rgb(C(header=_header(), format="jpeg", data=jpg.reshape(-1)[:40]))
    Info = T["sensor_msgs/msg/CameraInfo"]
    K = [1266.4, 0, 816.3, 0, 1266.4, 491.5, 0, 0, 1]
    info = Info(header=_header(), height=900, width=1600, distortion_model="plumb_bob", d=np.zeros(5), k=np.array(K),
                r=np.eye(3).reshape(-1), p=np.zeros(12), binning_x=0, binning_y=0,
                roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    cal = camera_info(info)
    np.testing.assert_allclose(cal.K, np.reshape(K, (3, 3)))
    assert cal.frame_id == "LIDAR_TOP" and cal.width == 1600


def test_reduced_jpeg_decoding_keeps_what_the_model_input_needs():
    from perception.sources.images import (
        ImageDecodeError,
        decode_image,
        decode_images,
        jpeg_reduction,
        scale_intrinsics,
    )

    assert jpeg_reduction((900, 1600), (128, 224)) == 4  # 225 x 400 still covers 128 x 224
    assert jpeg_reduction((900, 1600), (256, 704)) == 2  # 1/4 would give 400 < 704 columns
    assert jpeg_reduction((900, 1600), None) == 1 and jpeg_reduction((100, 100), (128, 224)) == 1
    yy, xx = np.mgrid[0:240, 0:320]
    rgb = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    ok, jpg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    full, small = decode_image(jpg.reshape(-1)), decode_image(jpg.reshape(-1), (60, 80))
    assert full.shape == (240, 320, 3) and small.shape == (60, 80, 3)  # 1/4: the largest that covers 60 x 80
    area = cv2.resize(full, (80, 60), interpolation=cv2.INTER_AREA)
    assert np.abs(area.astype(int) - small).mean() < 3.0  # the same picture, not a crop or a shift
    ok, png = cv2.imencode(".png", rgb[..., ::-1])
    assert decode_image(png.reshape(-1), (60, 80)).shape == (240, 320, 3)  # PNG: no DCT scaling, full size
    # several views: a bad one is reported in its place and the others are kept
    out = decode_images([jpg.reshape(-1), np.frombuffer(b"\xff\xd8garbage-not-a-jpeg", np.uint8), png.reshape(-1)],
                        (60, 80))
    assert out[0].shape == (60, 80, 3) and isinstance(out[1], ImageDecodeError) and out[2].shape == (240, 320, 3)
    K = np.array([[300.0, 0, 160], [0, 300, 120], [0, 0, 1]])
    Ks = scale_intrinsics(K, (240, 320), (60, 80))
    np.testing.assert_allclose(Ks, [[75, 0, 40], [0, 75, 30], [0, 0, 1]])
    with pytest.raises(ImageDecodeError, match="exceeds"):  # refused from the header, before decoding
        decode_image(png.reshape(-1), max_pixels=100)
