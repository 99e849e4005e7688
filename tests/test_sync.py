import pytest

from perception.sources.sync import FrameSynchronizer

MS = 1_000_000


def test_matches_within_slop_and_removes_only_matched():
    s = FrameSynchronizer(["lidar", "cam"], "lidar", queue_size=5, slop_s=0.05, timeout_s=1.0, consume=True)
    assert s.add("cam", 100 * MS, "c1", 0) == []
    assert s.add("cam", 140 * MS, "c2", 0) == []
    out = s.add("lidar", 130 * MS, "l1", 0)
    assert len(out) == 1 and out[0].messages == {"lidar": "l1", "cam": "c2"} and not out[0].missing
    assert s.queue_lengths()["cam"] == 1  # c1 stays (it may still match another reference within slop)
    # strict slop: exactly 50 ms from the reference does not match; a camera past the reference settles it
    assert s.add("lidar", 190 * MS, "l2", 10) == []
    out = s.add("cam", 240 * MS, "c3", 20)
    assert len(out) == 1 and out[0].missing == ["cam"] and not out[0].timed_out


def test_each_input_within_slop_of_the_reference():
    s = FrameSynchronizer(["lidar", "cam", "radar"], "lidar", slop_s=0.05, timeout_s=1.0)
    s.add("cam", 145 * MS, "c", 0)  # +45 ms
    s.add("radar", 62 * MS, "r", 0)  # -38 ms: 83 ms from the camera, still a match for the reference
    assert s.add("lidar", 100 * MS, "l", 0) == []  # the radar may still send one closer to 100 ms
    out = s.add("radar", 139 * MS, "r2", 0)  # +39 ms: farther than -38 ms, and it settles the radar
    assert len(out) == 1 and not out[0].missing and out[0].stamps == {"lidar": 100 * MS, "cam": 145 * MS,
                                                                       "radar": 62 * MS}


def test_stopped_sensor_times_out_instead_of_stalling():
    s = FrameSynchronizer(["lidar", "cam", "radar"], "lidar", slop_s=0.05, timeout_s=0.1)
    s.add("radar", 0, "r0", 0)
    assert s.add("lidar", 0, "l0", 0) == []  # cam missing: wait
    out = s.poll(100 * MS)
    assert len(out) == 1 and out[0].timed_out and out[0].missing == ["cam"]
    assert out[0].messages == {"lidar": "l0", "radar": "r0"}
    # next frames keep flowing in order while the camera is silent
    s.add("lidar", 50 * MS, "l1", 150 * MS)
    s.add("lidar", 100 * MS, "l2", 160 * MS)
    out = s.poll(260 * MS)
    assert [m.messages["lidar"] for m in out] == ["l1", "l2"] and all(m.missing == ["cam", "radar"] for m in out)


def test_latest_image_is_shared_between_references():
    s = FrameSynchronizer(["lidar", "cam"], "lidar", slop_s=0.05, timeout_s=1.0)
    s.add("cam", 20 * MS, "c", 0)
    a = s.add("lidar", 0, "l0", 0)
    assert s.add("lidar", 50 * MS, "l1", 0) == []  # a later image could be closer to 50 ms
    b = s.add("cam", 95 * MS, "c2", 0)
    assert a[0].messages["cam"] == "c" and b[0].messages["cam"] == "c"
    s.add("lidar", 200 * MS, "l2", 0)
    (late,) = s.poll(2000 * MS)
    assert late.missing == ["cam"] and s.queue_lengths()["cam"] == 0  # too old for any reference: dropped


def test_queue_overflow_and_same_stamp_overwrite():
    s = FrameSynchronizer(["lidar", "cam"], "lidar", queue_size=2, slop_s=0.01, timeout_s=10, consume=True)
    for i in range(4):
        s.add("cam", i * 1000 * MS, f"c{i}", 0)
    assert s.queue_lengths()["cam"] == 2 and s.evicted["cam"] == 2
    s.add("cam", 3000 * MS, "c3b", 0)
    out = s.add("lidar", 3000 * MS, "l", 0)
    assert out[0].messages["cam"] == "c3b"
    with pytest.raises(KeyError, match="unknown input"):
        s.add("gps", 0, None, 0)
    assert len(s.flush()) == 0
