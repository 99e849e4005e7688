"""nuScenes scene -> rosbag2 (real MCAP / sqlite3 files) -> decoded back with rosbags and rclpy."""

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from perception.sources.bag_writer import scene_to_bag
from perception.sources.files import read_lidar_bin, read_radar_pcd
from perception.sources.messages import compressed_to_rgb, pointcloud2_to_cloud


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_scene_to_bag_roundtrip(synthetic_root, nusc, tmp_path, storage):
    out = tmp_path / f"log_{storage}"
    info = scene_to_bag(synthetic_root, "scene-0103", out, storage=storage, progress=False)
    scene = next(s for s in nusc.scene if s["name"] == "scene-0103")
    sample = nusc.get("sample", scene["first_sample_token"])
    n_lidar = 0
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    while sd["prev"]:
        sd = nusc.get("sample_data", sd["prev"])
    stamps = {}
    while sd:
        stamps[sd["timestamp"] * 1000] = sd["filename"]
        n_lidar += 1
        sd = nusc.get("sample_data", sd["next"]) if sd["next"] else None
    assert info["messages"]["/LIDAR_TOP"] == n_lidar
    seen = {"lidar": 0, "radar": 0, "camera": 0, "tf_static": 0}
    with AnyReader([out]) as reader:
        topics = {c.topic for c in reader.connections}
        assert {"/tf", "/tf_static", "/CAM_FRONT/image_rect_compressed", "/CAM_FRONT/camera_info",
                "/RADAR_FRONT"} <= topics
        for conn, t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == "/LIDAR_TOP":
                ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                assert ns == t and msg.header.frame_id == "LIDAR_TOP"
                cloud, _ = pointcloud2_to_cloud(msg)
                pts = read_lidar_bin(synthetic_root / stamps[ns])
                np.testing.assert_array_equal(cloud.xyz, pts[:, :3])
                np.testing.assert_array_equal(cloud.features["ring"], pts[:, 4])
                seen["lidar"] += 1
            elif conn.topic == "/RADAR_FRONT" and seen["radar"] == 0:
                assert msg.point_step == 43
                cloud, _ = pointcloud2_to_cloud(msg)
                seen["radar"] += 1
            elif conn.topic == "/CAM_FRONT/image_rect_compressed" and seen["camera"] == 0:
                assert compressed_to_rgb(msg).shape == (225, 400, 3)
                seen["camera"] += 1
            elif conn.topic == "/tf_static":
                assert {tr.child_frame_id for tr in msg.transforms} >= {"LIDAR_TOP", "CAM_FRONT", "RADAR_FRONT"}
                seen["tf_static"] += 1
    assert seen == {"lidar": n_lidar, "radar": 1, "camera": 1, "tf_static": 1}
    if storage == "mcap":  # the MCAP file itself, read with the mcap library (Foxglove's format tooling)
        from mcap.reader import make_reader

        (path,) = out.glob("*.mcap")
        with open(path, "rb") as f:
            reader = make_reader(f)
            summary = reader.get_summary()
            per_topic = {summary.channels[cid].topic: n for cid, n in summary.statistics.channel_message_counts.items()}
            schemas = {summary.schemas[c.schema_id].name for c in summary.channels.values()}
        assert per_topic == info["messages"]
        assert {"sensor_msgs/msg/PointCloud2", "tf2_msgs/msg/TFMessage", "sensor_msgs/msg/CompressedImage"} <= schemas
        assert per_topic["/CAM_FRONT/image_rect_compressed"] == 4 and per_topic["/tf_static"] == 1
    assert not (tmp_path / f"log_{storage}.partial").exists()
    with pytest.raises(FileExistsError):
        scene_to_bag(synthetic_root, "scene-0103", out, progress=False)


def test_radar_fields_roundtrip_and_rclpy_decodes_cdr(synthetic_root, nusc, tmp_path):
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import PointCloud2

    out = tmp_path / "log"
    scene_to_bag(synthetic_root, "scene-0061", out, progress=False)
    with AnyReader([out]) as reader:
        conn = next(c for c in reader.connections if c.topic == "/RADAR_FRONT_LEFT")
        _, t, raw = next(iter(reader.messages(connections=[conn])))
        msg = reader.deserialize(raw, conn.msgtype)
    ours, _ = pointcloud2_to_cloud(msg)
    sd = next(s for s in nusc.sample_data if s["channel"] == "RADAR_FRONT_LEFT" and s["timestamp"] * 1000 == t)
    rec = read_radar_pcd(synthetic_root / sd["filename"])
    np.testing.assert_array_equal(ours.features["vx_comp"], rec["vx_comp"])
    np.testing.assert_array_equal(ours.features["dyn_prop"], rec["dyn_prop"].astype(np.float32))
    ros = deserialize_message(bytes(raw), PointCloud2)  # real rclpy reads rosbags' CDR
    cloud, _ = pointcloud2_to_cloud(ros)
    np.testing.assert_array_equal(cloud.xyz, ours.xyz)


@pytest.mark.parametrize("min_hw", [None, (56, 100)], ids=["full-images", "reduced-decode"])
def test_log_frames_equal_dataset_frames(synthetic_root, tmp_path, min_hw):
    """Live/replay path (decode -> sync -> assemble) gives the same frames as NuScenesSource, number for number;
    with reduced JPEG decoding both scale the same K (CameraInfo's size vs the decoded size)."""
    from perception.sources.assembly import Assembly
    from perception.sources.bag import BagSource
    from perception.sources.nuscenes import NuScenesSource

    log = tmp_path / "log"
    scene_to_bag(synthetic_root, "scene-0103", log, progress=False)
    spec = Assembly(image_min_hw=min_hw)  # one assembly spec for both sources
    src = BagSource(log, spec, keyframes_only=True)
    frames = [f for f, _, _ in src]
    ref = NuScenesSource(synthetic_root, "v1.0-mini", "mini_val", cache_dir=tmp_path / "cache",
                         **spec.source_kwargs())
    assert len(frames) == len(ref) == 4 and src.rejected == {}
    for f, g in zip(frames, ref):
        assert f.stamp_ns == g.stamp_ns
        np.testing.assert_allclose(f.T_global_ego, g.T_global_ego, atol=1e-9)
        np.testing.assert_allclose(f.lidar.xyz, g.lidar.xyz, atol=1e-4)
        np.testing.assert_allclose(f.lidar.features["time_lag"], g.lidar.features["time_lag"], atol=1e-6)
        np.testing.assert_allclose(f.radar.xyz, g.radar.xyz, atol=1e-4)
        np.testing.assert_allclose(f.radar.features["vx_comp"], g.radar.features["vx_comp"], atol=1e-4)
        assert set(f.cameras) == set(g.cameras)
        for ch, view in f.cameras.items():
            np.testing.assert_allclose(view.T_ego_cam, g.cameras[ch].T_ego_cam, atol=1e-6)
            np.testing.assert_array_equal(view.image, g.cameras[ch].image)
            np.testing.assert_allclose(view.intrinsics, g.cameras[ch].intrinsics, rtol=1e-9)
            if min_hw:
                assert view.hw[0] < 2 * min_hw[0] and view.hw[0] >= min_hw[0]


def test_replay_writes_a_readable_log_and_results(synthetic_root, tmp_path):
    import json

    import torch

    from perception.cli.replay import main as replay_main
    from perception.pipeline import Pipeline

    torch.manual_seed(0)
    pipe = Pipeline("configs/tiny.py")
    ckpt = tmp_path / "model.pth"
    torch.save({"state_dict": pipe.model.state_dict(),
                "meta": {"preprocess": pipe.pre.to_dict(), "assembly": pipe.assembly.section()}}, ckpt)
    log = tmp_path / "log"
    scene_to_bag(synthetic_root, "scene-0103", log, progress=False)
    out, res = tmp_path / "out", tmp_path / "results.json"
    assert replay_main([str(log), "--config", "configs/tiny.py", "--checkpoint", str(ckpt), "--out", str(out),
                        "--results", str(res), "--data-root", str(synthetic_root), "--keyframes-only",
                        "--prompt", "cars ahead"]) == 0
    with AnyReader([out]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts["/perception/objects"] == counts["/perception/detections"] == 4
        assert counts["/LIDAR_TOP"] >= 31 and counts["/CAM_FRONT/image_rect_compressed"] == 4
        conn = next(c for c in reader.connections if c.topic == "/perception/objects")
        payloads = [json.loads(reader.deserialize(r, conn.msgtype).data) for _, _, r in reader.messages([conn])]
    assert all(p["modalities"] == ["camera", "lidar", "radar"] and p["prompts"] == ["cars ahead"] for p in payloads)
    sub = json.loads(res.read_text())
    assert len(sub["results"]) == 4
