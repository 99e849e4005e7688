"""Writing drive logs: a nuScenes (or synthetic) scene as rosbag2 (MCAP or sqlite3) through ``rosbags``,
no ROS installation needed.

``scene_to_bag`` writes a nuScenes (or synthetic) scene with the topics of the ROS-message nuScenes
converters: ``/LIDAR_TOP`` (PointCloud2: x y z intensity ring), ``/RADAR_*`` (PointCloud2 with the 18 PCD
fields packed, point_step 43), ``/CAM_*/image_rect_compressed`` (CompressedImage, the original JPEG bytes),
``/CAM_*/camera_info``, ``/tf`` (map -> base_link at every sensor stamp) and ``/tf_static``
(base_link -> each sensor), at every sweep with the original timestamps (us x 1000), frame_id = channel.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from perception.sources.files import RADAR_DTYPE, SourceDataError, read_lidar_bin, read_radar_pcd
from perception.types import CAMERAS, LIDAR, RADARS

LIDAR_FIELDS = ("x", "y", "z", "intensity", "ring")


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def _time(T, ns: int):
    return T["builtin_interfaces/msg/Time"](sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def _header(T, ns: int, frame: str):
    return T["std_msgs/msg/Header"](stamp=_time(T, ns), frame_id=frame)


def _transform(T, ns: int, parent: str, child: str, translation, rotation_wxyz):
    w, x, y, z = (float(v) for v in rotation_wxyz)
    tx, ty, tz = (float(v) for v in translation)
    return T["geometry_msgs/msg/TransformStamped"](
        header=_header(T, ns, parent), child_frame_id=child,
        transform=T["geometry_msgs/msg/Transform"](
            translation=T["geometry_msgs/msg/Vector3"](x=tx, y=ty, z=tz),
            rotation=T["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w)))


def _cloud(T, ns: int, frame: str, names, formats, offsets, step: int, data: bytes, n: int):
    PF = T["sensor_msgs/msg/PointField"]
    code = {"f4": 7, "f8": 8, "i1": 1, "u1": 2, "i2": 3, "u2": 4, "i4": 5, "u4": 6}
    return T["sensor_msgs/msg/PointCloud2"](
        header=_header(T, ns, frame), height=1, width=n,
        fields=[PF(name=a, offset=o, datatype=code[f.lstrip("<>")], count=1)
                for a, f, o in zip(names, formats, offsets)],
        is_bigendian=False, point_step=step, row_step=step * n, data=np.frombuffer(data, np.uint8), is_dense=False)


def lidar_msg(T, ns: int, pts: np.ndarray, frame: str = LIDAR):
    pts = np.ascontiguousarray(pts, np.float32)
    return _cloud(T, ns, frame, LIDAR_FIELDS, ["f4"] * 5, [0, 4, 8, 12, 16], 20, pts.tobytes(), len(pts))


def radar_msg(T, ns: int, rec: np.ndarray, frame: str):
    if rec.dtype != RADAR_DTYPE:
        raise TypeError("radar_msg: records must have RADAR_DTYPE")
    names = list(RADAR_DTYPE.names)
    return _cloud(T, ns, frame, names, [RADAR_DTYPE.fields[n][0].str[1:] for n in names],
                  [RADAR_DTYPE.fields[n][1] for n in names], RADAR_DTYPE.itemsize, rec.tobytes(), len(rec))


def scene_to_bag(dataroot, scene: str, out, version: str = "v1.0-mini", storage: str = "mcap",
                 progress: bool = True) -> dict:
    """Write one scene as a rosbag2 directory ``out`` (atomically: OUT.partial renamed at the end)."""
    from nuscenes.nuscenes import NuScenes
    from rosbags.rosbag2 import StoragePlugin, Writer
    from tqdm import tqdm

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists")
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(storage)
    if plugin is None:
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
    nusc = NuScenes(version, str(dataroot), verbose=False)
    scenes = {s["name"]: s for s in nusc.scene}
    if scene not in scenes:
        raise ValueError(f"no scene {scene!r} in {dataroot} ({version}); scenes: {sorted(scenes)}")
    first = nusc.get("sample", scenes[scene]["first_sample_token"])
    # every sample_data of the scene, all channels, sweeps included
    records = []
    for tok in first["data"].values():
        sd = nusc.get("sample_data", tok)
        while sd["prev"]:  # sweeps before the first keyframe belong to the scene too
            sd = nusc.get("sample_data", sd["prev"])
        while True:
            records.append(sd)
            if not sd["next"]:
                break
            sd = nusc.get("sample_data", sd["next"])
    records.sort(key=lambda r: (r["timestamp"], r["channel"]))
    store = _typestore()
    T = store.types
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    counts: dict[str, int] = {}
    with Writer(tmp, version=9, storage_plugin=plugin) as w:
        conns = {}

        def conn(topic, msgtype):
            if topic not in conns:
                conns[topic] = w.add_connection(topic, msgtype, typestore=store)
            return conns[topic]

        def write(topic, msgtype, ns, msg):
            w.write(conn(topic, msgtype), ns, store.serialize_cdr(msg, msgtype))
            counts[topic] = counts.get(topic, 0) + 1

        t0 = records[0]["timestamp"] * 1000
        statics = []
        seen_cs = set()
        for r in records:
            if r["calibrated_sensor_token"] in seen_cs:
                continue
            seen_cs.add(r["calibrated_sensor_token"])
            cs = nusc.get("calibrated_sensor", r["calibrated_sensor_token"])
            statics.append(_transform(T, t0, "base_link", r["channel"], cs["translation"], cs["rotation"]))
        write("/tf_static", "tf2_msgs/msg/TFMessage", t0, T["tf2_msgs/msg/TFMessage"](transforms=statics))
        last_pose = None
        for r in tqdm(records, desc=f"{scene} -> {out.name}", unit="msg", disable=not progress):
            ns = r["timestamp"] * 1000
            ch = r["channel"]
            path = os.path.join(str(dataroot), r["filename"])
            if r["ego_pose_token"] != last_pose:
                ep = nusc.get("ego_pose", r["ego_pose_token"])
                write("/tf", "tf2_msgs/msg/TFMessage", ns, T["tf2_msgs/msg/TFMessage"](
                    transforms=[_transform(T, ns, "map", "base_link", ep["translation"], ep["rotation"])]))
                last_pose = r["ego_pose_token"]
            if ch == LIDAR:
                write(f"/{ch}", "sensor_msgs/msg/PointCloud2", ns, lidar_msg(T, ns, read_lidar_bin(path), ch))
            elif ch in RADARS:
                write(f"/{ch}", "sensor_msgs/msg/PointCloud2", ns, radar_msg(T, ns, read_radar_pcd(path), ch))
            elif ch in CAMERAS:
                try:
                    data = Path(path).read_bytes()
                except FileNotFoundError:
                    raise SourceDataError(f"missing file {path} (sample {r['sample_token']})") from None
                write(f"/{ch}/image_rect_compressed", "sensor_msgs/msg/CompressedImage", ns,
                      T["sensor_msgs/msg/CompressedImage"](header=_header(T, ns, ch), format="jpeg",
                                                           data=np.frombuffer(data, np.uint8)))
                cs = nusc.get("calibrated_sensor", r["calibrated_sensor_token"])
                K = np.asarray(cs["camera_intrinsic"], np.float64)
                P = np.zeros((3, 4))
                P[:, :3] = K
                write(f"/{ch}/camera_info", "sensor_msgs/msg/CameraInfo", ns, T["sensor_msgs/msg/CameraInfo"](
                    header=_header(T, ns, ch), height=int(r["height"]), width=int(r["width"]),
                    distortion_model="plumb_bob", d=np.zeros(5), k=K.reshape(-1), r=np.eye(3).reshape(-1),
                    p=P.reshape(-1), binning_x=0, binning_y=0,
                    roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                              do_rectify=False)))
    os.replace(tmp, out)
    return {"bag": str(out), "storage": storage, "messages": counts, "scene": scene,
            "duration_s": (records[-1]["timestamp"] - records[0]["timestamp"]) / 1e6}
