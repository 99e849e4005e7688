import numpy as np
import pytest
from nuscenes.utils.data_classes import LidarPointCloud, RadarPointCloud

from perception.sources.files import (
    RADAR_DTYPE,
    RADAR_FIELDS,
    SourceDataError,
    read_lidar_bin,
    read_radar_pcd,
    write_lidar_bin,
    write_radar_pcd,
)


def _radar(n=7):
    rng = np.random.default_rng(3)
    pts = np.zeros(n, RADAR_DTYPE)
    for f in RADAR_FIELDS:
        if pts[f].dtype.kind == "f":
            pts[f] = rng.normal(0, 10, n)
        else:
            pts[f] = rng.integers(0, 8, n)
    return pts


def test_radar_pcd_roundtrip_and_devkit_reads_it(tmp_path):
    pts = _radar()
    p = tmp_path / "r.pcd"
    write_radar_pcd(p, pts)
    back = read_radar_pcd(p)
    assert back.tobytes() == pts.tobytes()
    every = list(range(18))
    dk = RadarPointCloud.from_file(str(p), invalid_states=every, dynprop_states=every, ambig_states=every)
    assert dk.points.shape == (18, len(pts))
    for i, f in enumerate(RADAR_FIELDS):
        np.testing.assert_allclose(dk.points[i], pts[f].astype(np.float64), rtol=1e-6)


def test_empty_radar_pcd(tmp_path):
    p = tmp_path / "e.pcd"
    write_radar_pcd(p, np.zeros(0, RADAR_DTYPE))
    assert len(read_radar_pcd(p)) == 0


def test_truncated_radar_names_file(tmp_path):
    p = tmp_path / "r.pcd"
    write_radar_pcd(p, _radar(20))
    blob = p.read_bytes()
    p.write_bytes(blob[:-200])
    with pytest.raises(SourceDataError, match=r"truncated radar file .*r\.pcd \(sample abc\)"):
        read_radar_pcd(p, sample="abc")
    p.write_bytes(b"garbage without header" * 300)
    with pytest.raises(SourceDataError, match="bad PCD header"):
        read_radar_pcd(p)
    with pytest.raises(SourceDataError, match="missing radar file"):
        read_radar_pcd(tmp_path / "nope.pcd")


def test_lidar_bin_roundtrip_and_truncation(tmp_path):
    pts = np.random.default_rng(0).normal(size=(100, 5)).astype(np.float32)
    p = tmp_path / "l.pcd.bin"
    write_lidar_bin(p, pts)
    np.testing.assert_array_equal(read_lidar_bin(p), pts)
    np.testing.assert_array_equal(LidarPointCloud.from_file(str(p)).points.T, pts[:, :4])
    p.write_bytes(p.read_bytes()[:-6])
    with pytest.raises(SourceDataError, match=r"truncated lidar file .*not a multiple of 20"):
        read_lidar_bin(p)
