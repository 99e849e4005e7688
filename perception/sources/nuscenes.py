"""nuScenes (and the synthetic world, which writes the same format) as a source of SensorFrames.

The devkit walks the tables once to build an index (like mmdetection3d's info files: per keyframe the
ego pose, every sweep's path/calibration/pose/stamp, camera calibration, and the ground truth in the ego
frame). The index is cached as JSON next to the data, keyed by the tables' sizes and mtimes, so a second
pass reads only sensor files. Reading a frame:

- LIDAR_TOP keyframe plus the previous ``lidar_sweeps`` sweeps, each motion-compensated into the keyframe's
  ego frame with its own ego pose, with columns intensity, ring, time_lag (s);
- the 5 radars, ``radar_sweeps`` sweeps each (keyframe included), all 18 PCD fields as columns, positions
  and velocities (vx, vy, vx_comp, vy_comp) in the keyframe ego frame, plus time_lag;
- the 6 cameras as RGB with K and T_ego_cam (ego motion between camera and keyframe stamps included);
- ground truth as Boxes3D in the keyframe ego frame, mapped to the 10 detection classes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from perception.geometry import (
    invert_transform,
    make_transform,
    quat_to_yaw,
    rotate_vectors,
    transform_points,
    wrap_angle,
)
from perception.sources.assembly import DEFAULT_RADAR_FILTERS
from perception.sources.files import RADAR_FIELDS, SourceDataError, read_lidar_bin, read_radar_pcd
from perception.sources.images import ImageDecodeError, decode_images, scale_intrinsics
from perception.sources.sweeps import merge_in_reference
from perception.types import (
    ATTRIBUTES,
    CAMERAS,
    CATEGORY_TO_CLASS,
    DETECTION_CLASSES,
    LIDAR,
    RADARS,
    Boxes3D,
    CameraView,
    PointCloud,
    SensorFrame,
)

INDEX_FORMAT = 2
VERSIONS = ("v1.0-mini", "v1.0-trainval", "v1.0-test")


def _pose(rec) -> list:
    return make_transform(rec["rotation"], rec["translation"]).tolist()


def split_scenes(version: str, split: str | None, all_scene_names: Sequence[str]) -> list[str]:
    """Scene names of a split (the devkit's create_splits_scenes), or every scene for split=None."""
    if split is None:
        return list(all_scene_names)
    from nuscenes.utils.splits import create_splits_scenes

    splits = create_splits_scenes(verbose=False)
    if split not in splits:
        raise ValueError(f"unknown split {split!r}; valid splits: {sorted(splits)}")
    if split.startswith("mini") != version.endswith("mini"):
        raise ValueError(f"split {split!r} does not belong to version {version!r}")
    present = set(all_scene_names)
    return [s for s in splits[split] if s in present]


class NuScenesSource:
    """Yields SensorFrames (with ground truth) for the keyframes of a nuScenes split.

    ``source[i]`` reads one frame; iterating reads them in scene/time order. ``cameras`` selects camera
    channels (empty = no images). ``image_min_hw`` (H, W): decode JPEGs only as large as a model input of
    that size needs (1/2, 1/4 or 1/8 scale DCT decoding, intrinsics scaled to match); None = full size.
    Radar points are filtered like the devkit unless ``radar_filters=None``.
    Points within ``remove_close`` metres of their sensor (|x| and |y|) are dropped, as the devkit does.
    """

    def __init__(self, dataroot, version: str = "v1.0-mini", split: str | None = None, lidar_sweeps: int = 9,
                 radar_sweeps: int = 3, cameras: Sequence[str] = CAMERAS, radar_filters=DEFAULT_RADAR_FILTERS,
                 radars: Sequence[str] = RADARS,
                 remove_close: float = 1.0, cache_dir=None, use_cache: bool = True,
                 image_min_hw: tuple[int, int] | None = None):
        self.dataroot = Path(dataroot)
        self.image_min_hw = tuple(image_min_hw) if image_min_hw else None
        if version not in VERSIONS:
            raise ValueError(f"unknown version {version!r}; valid: {VERSIONS}")
        table_dir = self.dataroot / version
        if not table_dir.is_dir():
            raise SourceDataError(f"no nuScenes tables at {table_dir} (dataroot {self.dataroot}, version {version})")
        if lidar_sweeps < 0 or radar_sweeps < 1:
            raise ValueError("lidar_sweeps must be >= 0 and radar_sweeps >= 1")
        unknown = set(cameras) - set(CAMERAS)
        if unknown:
            raise ValueError(f"unknown camera channels {sorted(unknown)}; valid: {CAMERAS}")
        self.version, self.split = version, split
        self.lidar_sweeps, self.radar_sweeps = lidar_sweeps, radar_sweeps
        self.cameras = tuple(cameras)
        self.radar_filters = radar_filters
        bad = set(radars) - set(RADARS)
        if bad:
            raise ValueError(f"unknown radar channels {sorted(bad)}; valid: {RADARS}")
        self.radars = tuple(radars)
        self.remove_close = remove_close
        self.loaded_from_cache = False
        key = self._cache_key(table_dir)
        cache_root = Path(cache_dir) if cache_dir else self.dataroot / ".promptfusion_cache"
        self.cache_path = cache_root / f"index_{version}_{split or 'all'}_{key}.json"
        index = self._read_cache() if use_cache else None
        if index is None:
            index = self._build_index()
            if use_cache:
                self._write_cache(index)
        else:
            self.loaded_from_cache = True
        self.index: list[dict] = index["samples"]
        self.scenes: list[str] = index["scenes"]

    # -- index -----------------------------------------------------------------------------------------
    def _cache_key(self, table_dir: Path) -> str:
        h = hashlib.sha1(f"{INDEX_FORMAT}/{self.lidar_sweeps}/{self.radar_sweeps}".encode())
        if self.radars != RADARS:  # a subset indexes fewer sweeps (the full rig keeps its existing cache key)
            h.update("/".join(self.radars).encode())
        for f in sorted(table_dir.glob("*.json")):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]

    def _read_cache(self):
        try:
            with open(self.cache_path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return None
        return data if data.get("format") == INDEX_FORMAT else None

    def _write_cache(self, index) -> None:
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_path.with_suffix(".tmp")
            with open(tmp, "w") as f:
                json.dump(index, f)
            os.replace(tmp, self.cache_path)
        except OSError:
            pass  # read-only dataroot: work without a cache

    def _build_index(self) -> dict:
        from nuscenes.nuscenes import NuScenes

        nusc = NuScenes(self.version, str(self.dataroot), verbose=False)
        scenes = split_scenes(self.version, self.split, [s["name"] for s in nusc.scene])
        by_name = {s["name"]: s for s in nusc.scene}
        samples = []
        for name in scenes:
            tok = by_name[name]["first_sample_token"]
            while tok:
                sample = nusc.get("sample", tok)
                samples.append(self._index_sample(nusc, sample, name))
                tok = sample["next"]
        return {"format": INDEX_FORMAT, "scenes": scenes, "samples": samples}

    def _sweeps(self, nusc, sd_token: str, n: int) -> list[dict]:
        out = []
        while sd_token and len(out) < n:
            sd = nusc.get("sample_data", sd_token)
            cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            ep = nusc.get("ego_pose", sd["ego_pose_token"])
            out.append({"path": sd["filename"], "timestamp_us": sd["timestamp"], "T_ego_sensor": _pose(cs),
                        "T_global_ego": _pose(ep), "K": cs["camera_intrinsic"],
                        "hw": [int(sd.get("height") or 0), int(sd.get("width") or 0)]})
            sd_token = sd["prev"]
        return out

    def _index_sample(self, nusc, sample: dict, scene: str) -> dict:
        data = sample["data"]
        if LIDAR not in data:
            raise SourceDataError(f"sample {sample['token']} has no {LIDAR} keyframe")
        lidar = self._sweeps(nusc, data[LIDAR], self.lidar_sweeps + 1)
        T_global_ego = np.array(lidar[0]["T_global_ego"])
        T_ego_global = invert_transform(T_global_ego)
        entry = {"token": sample["token"], "scene": scene, "timestamp_us": lidar[0]["timestamp_us"],
                 "T_global_ego": lidar[0]["T_global_ego"], "lidar": lidar,
                 "radar": {ch: self._sweeps(nusc, data[ch], self.radar_sweeps) for ch in self.radars if ch in data},
                 "cameras": {ch: self._sweeps(nusc, data[ch], 1)[0] for ch in CAMERAS if ch in data}}
        boxes, labels, attrs, tokens, inst, nl, nr, vis = [], [], [], [], [], [], [], []
        for ann_tok in sample["anns"]:
            ann = nusc.get("sample_annotation", ann_tok)
            cls = CATEGORY_TO_CLASS.get(ann["category_name"])
            if cls is None:
                continue
            vel = nusc.box_velocity(ann_tok)[:2]
            center = transform_points(T_ego_global, np.array([ann["translation"]]))[0]
            yaw = quat_to_yaw(ann["rotation"]) + np.arctan2(T_ego_global[1, 0], T_ego_global[0, 0])
            v = rotate_vectors(T_ego_global, vel[None])[0]
            w, length, h = ann["size"]
            boxes.append([*center.tolist(), length, w, h, float(wrap_angle(yaw)),
                          float(v[0]), float(v[1])])
            labels.append(DETECTION_CLASSES.index(cls))
            names = [nusc.get("attribute", a)["name"] for a in ann["attribute_tokens"]]
            attrs.append(ATTRIBUTES.index(names[0]) if names and names[0] in ATTRIBUTES else -1)
            tokens.append(ann_tok)
            inst.append(ann["instance_token"])
            nl.append(ann["num_lidar_pts"])
            nr.append(ann["num_radar_pts"])
            vis.append(int(ann["visibility_token"]) if str(ann["visibility_token"]).isdigit() else 0)
        # NaN velocities (single-annotation tracks) are stored as null in JSON
        entry["gt"] = {"boxes": [[None if isinstance(x, float) and np.isnan(x) else x for x in b] for b in boxes],
                       "labels": labels, "attributes": attrs, "tokens": tokens, "instance_tokens": inst,
                       "num_lidar_pts": nl, "num_radar_pts": nr, "visibility": vis}
        return entry

    # -- frames ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self) -> Iterator[SensorFrame]:
        for i in range(len(self)):
            yield self[i]

    def sample_tokens(self) -> list[str]:
        return [s["token"] for s in self.index]

    def ground_truth(self, sample_token: str) -> Boxes3D:
        """Ground-truth boxes of one sample in its ego frame (no sensor data is read)."""
        if not hasattr(self, "_by_token"):
            self._by_token = {e["token"]: e for e in self.index}
        e = self._by_token.get(sample_token)
        if e is None:
            raise KeyError(f"sample {sample_token} is not in this source ({self.version}, split {self.split})")
        return self._gt(e)

    def __getitem__(self, i: int) -> SensorFrame:
        e = self.index[i]
        T_ego_global = invert_transform(np.array(e["T_global_ego"]))
        return SensorFrame(
            stamp_ns=e["timestamp_us"] * 1000, T_global_ego=np.array(e["T_global_ego"]),
            cameras=self._cameras(e, T_ego_global), lidar=self._lidar(e, T_ego_global),
            radar=self._radar(e, T_ego_global), gt=self._gt(e), sample_token=e["token"], scene=e["scene"],
            source=f"nuscenes:{self.version}")

    def _path(self, rel: str, e: dict) -> str:
        p = self.dataroot / rel
        if not p.is_file():
            raise SourceDataError(f"missing file {p} (sample {e['token']}, scene {e['scene']})")
        return str(p)

    def _lidar(self, e: dict, T_ego_global) -> PointCloud:
        parts = []
        for sw in e["lidar"]:
            pts = read_lidar_bin(self._path(sw["path"], e), 5, sample=e["token"])
            T = T_ego_global @ np.array(sw["T_global_ego"]) @ np.array(sw["T_ego_sensor"])
            lag = (e["timestamp_us"] - sw["timestamp_us"]) * 1e-6
            parts.append((PointCloud(pts[:, :3], {"intensity": pts[:, 3], "ring": pts[:, 4]}), T, lag))
        return merge_in_reference(parts, self.remove_close)

    def _radar(self, e: dict, T_ego_global) -> PointCloud | None:
        if not e["radar"]:
            return None
        parts = []
        for ch in self.radars:
            for sw in e["radar"].get(ch, []):
                rec = read_radar_pcd(self._path(sw["path"], e), sample=e["token"])
                T = T_ego_global @ np.array(sw["T_global_ego"]) @ np.array(sw["T_ego_sensor"])
                raw = PointCloud(np.stack([rec["x"], rec["y"], rec["z"]], axis=1),
                                 {f: rec[f] for f in RADAR_FIELDS[3:]})
                parts.append((raw, T, (e["timestamp_us"] - sw["timestamp_us"]) * 1e-6))
        return merge_in_reference(parts, self.remove_close, self.radar_filters)

    def _cameras(self, e: dict, T_ego_global) -> dict[str, CameraView]:
        blobs = {}
        for ch in self.cameras:
            cam = e["cameras"].get(ch)
            if cam is None:
                continue
            path = self._path(cam["path"], e)
            with open(path, "rb") as f:
                blob = f.read()
            if path.lower().endswith((".jpg", ".jpeg")) and not blob.rstrip(b"\x00").endswith(b"\xff\xd9"):
                raise SourceDataError(f"truncated JPEG {path} (sample {e['token']}): no end-of-image marker")
            blobs[ch] = (path, np.frombuffer(blob, np.uint8))
        images = decode_images([b for _, b in blobs.values()], self.image_min_hw)
        out = {}
        for (ch, (path, _)), img in zip(blobs.items(), images):
            if isinstance(img, ImageDecodeError):
                raise SourceDataError(f"cannot decode image {path} (sample {e['token']}): {img}")
            cam = e["cameras"][ch]
            T = T_ego_global @ np.array(cam["T_global_ego"]) @ np.array(cam["T_ego_sensor"])
            K = np.array(cam["K"])
            full = tuple(cam["hw"]) if all(cam["hw"]) else img.shape[:2]  # K belongs to the table's image size
            K = scale_intrinsics(K, full, img.shape[:2])
            out[ch] = CameraView(image=img, intrinsics=K, T_ego_cam=T, stamp_ns=cam["timestamp_us"] * 1000, channel=ch)
        return out

    @staticmethod
    def _gt(e: dict) -> Boxes3D:
        g = e["gt"]
        if not g["labels"]:
            return Boxes3D.empty()
        boxes = np.array([[np.nan if x is None else x for x in b] for b in g["boxes"]], np.float64)
        return Boxes3D(boxes, g["labels"], attributes=g["attributes"], tokens=g["tokens"],
                       instance_tokens=g["instance_tokens"], num_lidar_pts=g["num_lidar_pts"],
                       num_radar_pts=g["num_radar_pts"], visibility=g["visibility"])
