"""The feeder (perception.sources.live) rule by rule, the live runner (perception.serving) with a list as its
sink, and the node class's pure parts. Messages are real ROS message objects (rosbags' Kilted typestore; the
same fields as rclpy's), built in memory: no DDS, no log file."""

import json

import cv2
import numpy as np
import pytest

from perception.sources.assembly import Assembly
from perception.sources.bag_writer import _transform, _typestore, lidar_msg
from perception.sources.live import Feeder, Input
from perception.types import LIDAR

MS = 1_000_000
T = _typestore().types
CAM = "CAM_FRONT"


def spec(**kw):
    """One camera, no radar: the smallest rig that exercises every rule."""
    return Assembly(**{"lidar_sweeps": 1, "radar_sweeps": 1, "radars": (), "cameras": (CAM,), **kw})


def inp(feeder, kind, channel=""):
    return next(i for i in feeder.inputs(tf=True) + feeder.inputs(tf=False)
                if i.kind == kind and (not channel or i.channel == channel))


def cloud(n=200, seed=0, nan=0):
    rng = np.random.default_rng(seed)
    pts = np.c_[rng.uniform(-20, 20, (n, 2)), rng.uniform(-1, 1, n), rng.uniform(0, 1, n), rng.integers(0, 32, n)]
    pts[:nan, :3] = np.nan
    return pts.astype(np.float32)


def jpeg_msg(ns, value=128):
    buf = cv2.imencode(".jpg", np.full((90, 160, 3), value, np.uint8))[1]
    return T["sensor_msgs/msg/CompressedImage"](header=_header(ns, CAM), format="jpeg", data=buf.reshape(-1))


def info_msg():
    K = np.array([[100.0, 0, 80], [0, 100, 45], [0, 0, 1]])
    return T["sensor_msgs/msg/CameraInfo"](
        header=_header(0, CAM), height=90, width=160, distortion_model="plumb_bob", d=np.zeros(5),
        k=K.reshape(-1), r=np.eye(3).reshape(-1), p=np.c_[K, np.zeros(3)].reshape(-1), binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def _header(ns, frame):
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9),
                                    frame_id=frame)


def tf_msg(ns, x=0.0, parent="map", child="base_link", q=(1.0, 0.0, 0.0, 0.0)):
    return T["tf2_msgs/msg/TFMessage"](transforms=[_transform(T, ns, parent, child, (x, 0.0, 0.0), q)])


def ready_feeder(**kw):
    """A feeder that has its calibration: extrinsics of the lidar and the camera, the camera's intrinsics."""
    f = Feeder(spec(**kw))
    f.take(inp(f, "tf_static"), T["tf2_msgs/msg/TFMessage"](transforms=[
        _transform(T, 0, "base_link", LIDAR, (0.9, 0, 1.8), (1, 0, 0, 0)),
        _transform(T, 0, "base_link", CAM, (1.7, 0, 1.5), (0.5, -0.5, 0.5, -0.5))]), 0)
    f.take(inp(f, "camera_info", CAM), info_msg(), 0)
    return f


def drive(f, events):
    """events: (kind, stamp_ms, arrival_ms[, extra]) -> the built frames, in order."""
    frames = []
    for ev in events:
        kind, stamp, now = ev[0], ev[1] * MS, ev[2] * MS
        if kind == "pose":
            msg = tf_msg(stamp, x=ev[3] if len(ev) > 3 else stamp / 1e9 * 10)  # 10 m/s along x
            ms = f.take(inp(f, "tf"), msg, now)
        elif kind == "lidar":
            ms = f.take(inp(f, "lidar"), lidar_msg(T, stamp, cloud(seed=ev[1])), now)
        elif kind == "cam":
            ms = f.take(inp(f, "compressed_image", CAM), jpeg_msg(stamp), now)
        else:
            ms = f.poll(now)
        frames += [x for x in (f.build(m) for m in ms) if x is not None]
    return frames


def poses(*stamps_ms):
    return [("pose", s, 0) for s in stamps_ms]


def test_frame_from_messages_has_motion_compensated_sweeps_and_the_camera():
    f = ready_feeder()
    first, fr = drive(f, [*poses(0, 50, 100, 150), ("lidar", 50, 50), ("cam", 60, 60), ("lidar", 100, 100),
                          ("cam", 105, 110)])
    assert first.stamp_ns == 50 * MS and first.cameras[CAM].stamp_ns == 60 * MS
    assert fr.stamp_ns == 100 * MS and set(fr.cameras) == {CAM} and fr.cameras[CAM].stamp_ns == 105 * MS
    lag = fr.lidar.features["time_lag"]
    np.testing.assert_allclose(np.unique(lag), [0.0, 0.05], atol=1e-6)  # the reference sweep and one earlier
    # the earlier sweep moved into the reference frame: the ego drove 0.5 m along x in between
    own = cloud(seed=50)
    own = own[np.any(np.abs(own[:, :2]) >= 1.0, axis=1)]  # remove_close: |x| and |y| within 1 m of the lidar
    got = np.sort(fr.lidar.xyz[lag > 0][:, 0])
    np.testing.assert_allclose(got, np.sort(own[:, 0] + 0.9 - 0.5), atol=1e-4)
    assert f.rejected == {} and f.skipped_frames == 0


def test_bad_cloud_rejected_and_nan_points_dropped():
    f = ready_feeder()
    seen = []
    f.on_reject = lambda what, err: seen.append((what, str(err)))
    assert f.take(inp(f, "lidar"), lidar_msg(T, 0, np.full((50, 5), np.nan, np.float32)), 0) == []
    assert f.rejected == {LIDAR: 1} and "NaN" in f.reasons[LIDAR] and seen[0][0] == LIDAR
    bad = lidar_msg(T, 0, cloud())
    bad.point_step = 4  # fields no longer fit
    f.take(inp(f, "lidar"), bad, 0)
    assert f.rejected == {LIDAR: 2}
    (fr,) = drive(f, [*poses(0, 50, 100), ("lidar", 50, 50), ("cam", 50, 50), ("lidar", 100, 100)])
    assert fr.stamp_ns == 50 * MS  # the good sweeps went through

    def one_frame(pts):
        g = ready_feeder()
        g.take(inp(g, "tf"), tf_msg(0), 0)
        g.take(inp(g, "lidar"), lidar_msg(T, 0, pts), 0)
        return g.build(g.flush()[0])

    # a cloud with NaN points makes the frame of the same cloud without them
    np.testing.assert_array_equal(one_frame(cloud(nan=30)).lidar.xyz, one_frame(cloud()[30:]).lidar.xyz)


def test_pose_gap_and_bad_pose_skip_frames_instead_of_guessing():
    f = ready_feeder()
    # poses at 0 and 2000 ms: 2 s apart, more than 2 x max_pose_gap: no interpolation at 1000 ms
    frames = drive(f, [*poses(0, 2000), ("lidar", 1000, 1000), ("tick", 0, 5000)])
    assert frames == [] and f.skipped_frames == 1 and "no ego pose near the stamp" in f.skip_reasons
    # within the gap limit the pose is interpolated: 10 m/s -> x = 2.5 m at 250 ms
    f = ready_feeder()
    (fr,) = drive(f, [*poses(200, 300), ("lidar", 250, 250), ("tick", 0, 5000)])
    assert fr.T_global_ego[0, 3] == pytest.approx(2.5)
    # a non-finite pose or a zero quaternion is rejected, not stored
    f.take(inp(f, "tf"), tf_msg(400, x=float("nan")), 0)
    f.take(inp(f, "tf"), tf_msg(500, q=(0.0, 0.0, 0.0, 0.0)), 0)
    assert f.rejected == {"tf": 2} and 400 * MS not in f.assembler.pose_stamps


def test_late_camera_times_out_then_later_frames_keep_it():
    f = ready_feeder()
    events = [*poses(0, 50, 100, 150, 200), ("lidar", 0, 0), ("tick", 0, 99)]
    assert drive(f, events) == []  # waiting for the camera, within the 0.1 s timeout
    (fr,) = drive(f, [("tick", 0, 100)])
    assert fr.stamp_ns == 0 and fr.cameras == {}
    # the late image arrives now: too late for frame 0, in time for the next sweep
    frames = drive(f, [("cam", 10, 120), ("lidar", 50, 130), ("cam", 60, 140)])
    assert [x.stamp_ns for x in frames] == [50 * MS] and set(frames[0].cameras) == {CAM}


def test_reordered_messages_make_the_same_frames():
    ordered = [*poses(0, 50, 100, 150), ("lidar", 0, 0), ("cam", 5, 5), ("lidar", 50, 50), ("cam", 55, 55),
               ("lidar", 100, 100), ("cam", 105, 105), ("tick", 0, 1000)]
    swapped = list(ordered)
    swapped[4], swapped[6] = swapped[6], swapped[4]  # the second sweep arrives before the first
    a, b = drive(ready_feeder(), ordered), drive(ready_feeder(), swapped)
    assert [x.stamp_ns for x in a] == [0, 50 * MS, 100 * MS]
    assert [x.stamp_ns for x in b] == [x.stamp_ns for x in a]
    # the last frame (both sweeps buffered in either order) is the same cloud
    np.testing.assert_array_equal(a[-1].lidar.xyz, b[-1].lidar.xyz)
    assert a[-1].cameras[CAM].stamp_ns == b[-1].cameras[CAM].stamp_ns


def test_clock_skew_beyond_slop_leaves_the_camera_out():
    f = ready_feeder()
    (fr,) = drive(f, [*poses(0, 100), ("cam", 49, 0), ("lidar", 0, 0), ("cam", 200, 10)])
    assert set(fr.cameras) == {CAM}  # 49 ms off: within the 50 ms slop
    f = ready_feeder()
    frames = drive(f, [*poses(0, 100), ("cam", 50, 0), ("lidar", 0, 0), ("cam", 200, 10)])
    assert len(frames) == 1 and frames[0].cameras == {}  # 50 ms (strict slop) or more: left out, named missing


def test_keyframes_only_and_silent_inputs():
    f = ready_feeder()
    f.keyframes_only = True
    assert drive(f, [*poses(0, 50), ("lidar", 0, 0), ("tick", 0, 200)]) == []
    assert f.skip_reasons == {"camera missing (keyframes only)": 1}
    f.last_seen.clear()
    f.take(inp(f, "lidar"), lidar_msg(T, 60 * MS, cloud()), 0)
    f.take(inp(f, "compressed_image", CAM), jpeg_msg(60 * MS), 1500 * MS)
    assert f.silent(1600 * MS) == {LIDAR: 1.6}   # the lidar stopped while the camera talks
    assert f.silent(3000 * MS) == {}              # everything quiet: a stopped stream, not one silent sensor


def test_tf_tree_only_the_transforms_that_define_the_frame():
    f = ready_feeder()
    # a pose from another world frame is someone else's transform: ignored, not stored, not an error
    f.take(inp(f, "tf"), tf_msg(100 * MS, x=5.0, parent="odom"), 0)
    assert f.assembler.pose_stamps == [] and f.rejected == {}
    # a sensor hung below another frame would need the chain composed: refused with the reason
    f.take(inp(f, "tf_static"), T["tf2_msgs/msg/TFMessage"](transforms=[
        _transform(T, 0, "roof_mount", CAM, (0, 0, 0), (1, 0, 0, 0))]), 0)
    assert f.rejected == {"tf_static": 1} and "from base_link" in f.reasons["tf_static"]
    np.testing.assert_allclose(f.assembler.extrinsic(CAM)[:3, 3], [1.7, 0, 1.5])  # the good one stays
    # other children of the static tree (wheels, a GNSS antenna) are ignored
    f.take(inp(f, "tf_static"), T["tf2_msgs/msg/TFMessage"](transforms=[
        _transform(T, 0, "base_link", "gnss", (0, 0, 2), (1, 0, 0, 0))]), 0)
    assert f.rejected == {"tf_static": 1} and "gnss" not in f.assembler.static


def test_pose_topics_fallback_equals_tf():
    """/ego_pose + the JSON extrinsics (no tf2_msgs) make the same frame as /tf + /tf_static."""
    a = drive(ready_feeder(), [*poses(0, 100), ("lidar", 50, 50), ("tick", 0, 1000)])
    f = Feeder(spec())
    f.take(inp(f, "extrinsics"), T["std_msgs/msg/String"](data=json.dumps({
        LIDAR: {"translation": [0.9, 0, 1.8], "rotation": [1, 0, 0, 0]},
        CAM: {"translation": [1.7, 0, 1.5], "rotation": [0.5, -0.5, 0.5, -0.5]}})), 0)
    f.take(inp(f, "camera_info", CAM), info_msg(), 0)
    for s in (0, 100):
        pose = T["geometry_msgs/msg/PoseStamped"](header=_header(s * MS, "map"), pose=T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=s / 100, y=0.0, z=0.0),
            orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)))
        f.take(inp(f, "pose"), pose, 0)
    f.take(inp(f, "lidar"), lidar_msg(T, 50 * MS, cloud(seed=50)), 50 * MS)
    (m,) = f.poll(1000 * MS)
    b = f.build(m)
    np.testing.assert_array_equal(a[0].lidar.xyz, b.lidar.xyz)
    np.testing.assert_allclose(a[0].T_global_ego, b.T_global_ego)
    f.take(inp(f, "extrinsics"), T["std_msgs/msg/String"](data="[1, 2]"), 0)
    f.take(inp(f, "extrinsics"), T["std_msgs/msg/String"](data="{not json"), 0)
    assert f.rejected == {"extrinsics": 2}


def test_inputs_cover_the_rig_and_replay_uses_the_feeder(tmp_path):
    from perception.sources.bag import BagSource

    f = Feeder(Assembly())
    topics = {i.topic for i in f.inputs(tf=True)}
    assert "/LIDAR_TOP" in topics and "/RADAR_BACK_LEFT" in topics and "/CAM_BACK/camera_info" in topics
    assert {"/tf", "/tf_static"} <= topics and "/ego_pose" not in topics
    assert {"/ego_pose", "/sensor_extrinsics"} <= {i.topic for i in f.inputs(tf=False)}
    (tmp_path / "log").mkdir()
    src = BagSource(tmp_path / "log", Assembly(lidar_sweeps=2))
    assert isinstance(src.feeder, Feeder) and src.feeder.assembler.lidar_sweeps == 2
    with pytest.raises(FileNotFoundError):
        BagSource(tmp_path / "missing")


def test_assembly_spec_validation_and_sections():
    from perception.config import ConfigError

    a = Assembly.from_section({"lidar_sweeps": 4}, {"modalities": ["lidar", "radar"]})
    assert a.cameras == () and a.image_min_hw is None and a.lidar_sweeps == 4
    assert Assembly.from_section(a.section(), {"modalities": ["lidar", "radar"]}) == a  # round trip
    with pytest.raises(ConfigError, match="lidar_sweep"):
        Assembly.from_section({"lidar_sweep": 4})
    with pytest.raises(ConfigError, match="unknown channels"):
        Assembly(radars=("RADAR_TOP",))
    with pytest.raises(ConfigError, match="lidar_sweeps must be"):
        Assembly(lidar_sweeps=-1)


def test_old_checkpoint_loads_with_a_message_about_what_it_assumed(tmp_path):
    import torch

    from perception.pipeline import Pipeline

    ckpt = torch.load("checkpoints/tiny.pth", weights_only=True)
    assert ckpt["meta"]["assembly"]["lidar_sweeps"] == 4  # the shipped checkpoint carries its spec
    del ckpt["meta"]["assembly"]
    old = tmp_path / "old.pth"
    torch.save(ckpt, old)
    cfg = {**__import__("perception.config", fromlist=["x"]).load_config("configs/tiny.py")}
    cfg.pop("assembly")
    cfg["data"] = {**cfg["data"], "lidar_sweeps": 2}  # a config of that time held the sweeps in data
    with pytest.warns(UserWarning, match="no frame-assembly spec.*lidar_sweeps=2"):
        pipe = Pipeline(cfg, old)
    assert pipe.assembly.lidar_sweeps == 2 and pipe.assembly.radar_sweeps == 3


# -- the live runner ------------------------------------------------------------------------------------
class ListSink:
    def __init__(self):
        self.out, self.dets, self.events, self.logs, self.track_events = [], [], [], [], []

    def objects(self, text, m):
        self.out.append(json.loads(text))

    def detections(self, det, m):
        self.dets.append((m.stamp_ns, len(det)))

    def status(self, payload):
        self.events.append(payload)

    def tracks(self, tracks, m):
        self.track_events.append((m.stamp_ns, tracks))

    def log(self, level, text):
        self.logs.append((level, text))


@pytest.fixture(scope="module")
def pipe():
    from perception.pipeline import Pipeline

    return Pipeline("configs/tiny.py", "checkpoints/tiny.pth")


def test_runner_drops_stale_frames_reports_and_survives(pipe):
    from perception.serving import LiveRunner

    sink = ListSink()
    feeder = ready_feeder()
    runner = LiveRunner(pipe, feeder, sink, prompts=("cars ahead",), tracker={})
    assert runner.warm_up() > 0
    drive(feeder, poses(0, 50, 100, 150))
    lid, cam = inp(feeder, "lidar"), inp(feeder, "compressed_image", CAM)
    for s in (0, 50, 100):  # three complete frames before the worker runs: only the newest is processed
        runner.take(lid, lidar_msg(T, s * MS, cloud(seed=s)))
        runner.take(cam, jpeg_msg(s * MS + 60 * MS))
    runner.take(lid, lidar_msg(T, 0, np.full((5, 5), np.nan, np.float32)))  # rejected, reported
    runner.start()
    try:
        import time

        end = time.monotonic() + 60
        while time.monotonic() < end and not sink.out:
            time.sleep(0.05)
    finally:
        runner.stop()
    assert [o["stamp_ns"] for o in sink.out] == [100 * MS] and sink.out[0]["prompts"] == ["cars ahead"]
    assert [d[0] for d in sink.dets] == [100 * MS]
    # the tracker saw the processed frame: its confident detections started tracks (not yet confirmed)
    assert not [x for x in sink.logs if x[0] == "error"], sink.logs  # no frame failed on the worker
    assert [t[0] for t in sink.track_events] == [100 * MS]
    tracks = sink.track_events[0][1]
    assert tracks.reset and (tracks.misses == 0).all() and not tracks.confirmed.any()
    frame_events = [e for e in sink.events if e["event"] == "frame"]
    assert frame_events[0]["dropped_frames"] == 2 and "inference" in frame_events[0]["latency_ms"]
    rejected = [e for e in sink.events if e["event"] == "rejected"]
    assert rejected and rejected[-1]["rejected"] == {LIDAR: 1}
    level, message, values = runner.diagnostics()
    assert level == "WARN" and values["frames"] == "1" and message.startswith("1 frames")
    # prompts change live; a bad payload is an error the node reports, the old prompts stay
    runner.set_prompts('["pedestrians", "trucks"]')
    assert runner.prompts == ("pedestrians", "trucks")
    with pytest.raises(ValueError):
        runner.set_prompts('["a", 3]')
    assert runner.prompts == ("pedestrians", "trucks")


def test_runner_queue_keeps_every_released_frame_in_order(pipe):
    """queue_frames > 1: frames released before the worker runs all reach the network, oldest first, and the
    tracker sees each (what replay gives); beyond the queue the oldest are dropped and counted."""
    import time

    from perception.serving import LiveRunner

    with pytest.raises(ValueError, match="queue_frames"):
        LiveRunner(pipe, ready_feeder(), ListSink(), queue_frames=0)
    for depth, expect in ((3, [0, 50, 100, 150]), (2, [0, 100, 150])):
        sink, feeder = ListSink(), ready_feeder()
        runner = LiveRunner(pipe, feeder, sink, tracker={}, queue_frames=depth)
        drive(feeder, poses(0, 50, 100, 150, 200))
        lid, cam = inp(feeder, "lidar"), inp(feeder, "compressed_image", CAM)
        runner.take(lid, lidar_msg(T, 0, cloud(seed=0)))
        runner.take(cam, jpeg_msg(60 * MS))
        runner.process(*runner.pending.popleft())  # the worker took the first frame before the others arrived
        for s in (50, 100, 150):
            runner.take(lid, lidar_msg(T, s * MS, cloud(seed=s)))
            runner.take(cam, jpeg_msg(s * MS + 60 * MS))
        runner.start()
        try:
            end = time.monotonic() + 60
            while time.monotonic() < end and len(sink.out) < len(expect):
                time.sleep(0.05)
        finally:
            runner.stop()
        got = [o["stamp_ns"] for o in sink.out]
        assert got == [s * MS for s in expect], (depth, got)
        assert [t[0] for t in sink.track_events] == got
        assert runner.stats["dropped_frames"] == 3 - min(depth, 3)


def test_node_class_is_importable_and_its_transport_rules_hold():
    pytest.importorskip("rclpy")
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    from ros_nodes.fusion_node import PARAMS, FusionNode, qos_for, tf_available, use_tf

    assert issubclass(FusionNode, __import__("rclpy.node", fromlist=["Node"]).Node)
    import yaml

    params = yaml.safe_load(open("ros_nodes/params/fusion.yaml"))["promptfusion_fusion"]["ros__parameters"]
    assert set(params) == set(PARAMS)  # every parameter in the YAML, and nothing about frame assembly
    assert not {"lidar_sweeps", "radar_sweeps", "camera_channels", "radar_channels"} & set(params)
    assert use_tf("tf") and not use_tf("topics") and use_tf("auto") == tf_available()
    with pytest.raises(ValueError):
        use_tf("sometimes")
    static = qos_for(Input("/tf_static", "tf2_msgs/msg/TFMessage", "tf_static"), False)
    assert static.durability == DurabilityPolicy.TRANSIENT_LOCAL
    lidar = Input("/LIDAR_TOP", "sensor_msgs/msg/PointCloud2", "lidar", LIDAR)
    assert qos_for(lidar, False).reliability == ReliabilityPolicy.BEST_EFFORT
    assert qos_for(lidar, True).reliability == ReliabilityPolicy.RELIABLE
