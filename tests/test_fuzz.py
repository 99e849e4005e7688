"""Property-based tests: any bytes and any header values give a valid result or a typed error, quickly."""

from types import SimpleNamespace as NS

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perception.sources.files import SourceDataError, read_lidar_bin, read_radar_pcd
from perception.sources.messages import (
    MessageError,
    camera_info,
    compressed_to_rgb,
    image_to_rgb,
    pointcloud2_to_cloud,
)
from perception.types import PointCloud

FAST = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
ints = st.integers(min_value=-(2**31), max_value=2**31)
small = st.integers(min_value=-4, max_value=64)


@st.composite
def pointcloud2(draw):
    names = draw(st.lists(st.sampled_from(["x", "y", "z", "intensity", "ring", "t", "x"]), max_size=6))
    fields = [NS(name=n, offset=draw(small), datatype=draw(st.integers(-1, 10)), count=draw(st.integers(-1, 3)))
              for n in names]
    return NS(height=draw(st.integers(-2, 8)), width=draw(st.integers(-2, 64)), point_step=draw(small),
              row_step=draw(st.integers(-4, 600)), is_bigendian=draw(st.booleans()), fields=fields,
              data=draw(st.binary(max_size=2048)))


@FAST
@given(pointcloud2())
def test_pointcloud2_any_header(msg):
    try:
        cloud, stats = pointcloud2_to_cloud(msg, max_points=10_000)
    except MessageError:
        return
    assert isinstance(cloud, PointCloud) and cloud.xyz.shape[1] == 3
    assert np.isfinite(cloud.xyz).all() and len(cloud) + stats.dropped_nonfinite == stats.received


@FAST
@given(h=st.integers(-2, 40), w=st.integers(-2, 40), step=st.integers(-2, 200),
       enc=st.sampled_from(["rgb8", "bgr8", "mono8", "rgba8", "bgra8", "yuv422", "", "16UC1"]),
       data=st.binary(max_size=5000))
def test_image_any_header(h, w, step, enc, data):
    msg = NS(height=h, width=w, step=step, encoding=enc, is_bigendian=False, data=data)
    try:
        img = image_to_rgb(msg, max_pixels=1600)
    except MessageError:
        return
    assert img.dtype == np.uint8 and img.shape == (h, w, 3)


@FAST
@given(data=st.binary(max_size=3000), fmt=st.sampled_from(["jpeg", "png", "", "bmp"]))
def test_compressed_any_bytes(data, fmt):
    try:
        img = compressed_to_rgb(NS(format=fmt, data=data), max_pixels=10_000)
    except MessageError:
        return
    assert img.ndim == 3 and img.shape[2] == 3


def test_compressed_header_cap_refuses_before_decoding():
    # a PNG header announcing 100k x 100k pixels is refused from its header alone
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + (100_000).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
    with pytest.raises(MessageError, match="exceeds"):
        compressed_to_rgb(NS(format="png", data=png + bytes(100)))


@FAST
@given(k=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=12))
def test_camera_info_any_values(k):
    msg = NS(k=k, d=[], header=NS(frame_id="CAM"), width=1, height=1)
    try:
        cal = camera_info(msg)
    except MessageError:
        return
    assert cal.K.shape == (3, 3) and np.isfinite(cal.K).all()


def _read_file(tmp_path_factory, name, blob, reader):
    """``reader`` on a file holding ``blob``: its result, or None when it raised SourceDataError."""
    p = tmp_path_factory.mktemp("f") / name
    p.write_bytes(blob)
    try:
        return reader(p)
    except SourceDataError:
        return None


@FAST
@given(blob=st.binary(max_size=4096))
def test_lidar_file_any_bytes(tmp_path_factory, blob):
    pts = _read_file(tmp_path_factory, "x.pcd.bin", blob, read_lidar_bin)
    assert pts is None or pts.shape[1] == 5


HEADER = ("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {n}\nHEIGHT 1\n"
          "VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {d}\n")


@FAST
@given(n=st.integers(-5, 50), d=st.sampled_from(["binary", "ascii", "binary_compressed"]),
       junk=st.binary(max_size=800), mutate=st.integers(0, 200))
def test_radar_file_any_header(tmp_path_factory, n, d, junk, mutate):
    head = bytearray(HEADER.format(n=n, d=d).encode())
    if mutate < len(head):
        head[mutate] = (head[mutate] + 7) % 256
    rec = _read_file(tmp_path_factory, "x.pcd", bytes(head) + junk, read_radar_pcd)
    assert rec is None or (len(rec) <= max(n, 0) and rec.dtype.names is not None)


@FAST
@given(blob=st.binary(max_size=6000))
def test_radar_file_any_bytes(tmp_path_factory, blob):
    rec = _read_file(tmp_path_factory, "x.pcd", blob, read_radar_pcd)
    assert rec is None or rec.dtype.names is not None


@FAST
@given(n=st.integers(0, 200), pad=st.integers(0, 9), big=st.booleans(), data=st.data())
def test_pointcloud2_valid_layout_random_values(n, pad, big, data):
    step = 12 + pad
    raw = data.draw(st.binary(min_size=n * step, max_size=n * step))
    msg = NS(height=1, width=n, point_step=step, row_step=n * step, is_bigendian=big, data=raw,
             fields=[NS(name=c, offset=4 * i, datatype=7, count=1) for i, c in enumerate("xyz")])
    cloud, stats = pointcloud2_to_cloud(msg)
    xyz = np.frombuffer(raw, np.dtype([("p", (">" if big else "<") + "f4", 3), ("_", "V", pad)]) if pad else
                        np.dtype([("p", (">" if big else "<") + "f4", 3)]))["p"] if n else np.zeros((0, 3))
    finite = np.isfinite(xyz).all(axis=1)
    assert stats.received == n and stats.dropped_nonfinite == int((~finite).sum())
    np.testing.assert_array_equal(cloud.xyz, xyz[finite].astype(np.float32))
