"""Detections -> visualization_msgs/MarkerArray and a JSON std_msgs/String, for rclpy AND rosbags.

Message classes come from a ``types`` lookup: ``rosbags`` typestore ``.types`` (dataclasses that need every
field) or ``RclpyTypes()`` (rclpy classes with defaults). ``make`` fills the fields a caller leaves out, so
one builder serves the live node and offline replay. No algorithm lives here.

vision_msgs (Detection3DArray) has no PyPI wheel: ``vision_msgs_available()`` says whether this Python can
import it (a full ROS 2 install); the builder itself only needs a ``types`` lookup that provides it.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import re

import numpy as np

from perception.geometry import yaw_to_quat
from perception.types import DETECTION_CLASSES, Detections
from perception.viz import CLASS_COLORS


class RclpyTypes:
    """``types["pkg/msg/Name"]`` -> the rclpy message class (imported on first use)."""

    def __getitem__(self, name: str):
        pkg, _, cls = name.split("/")
        return getattr(importlib.import_module(f"{pkg}.msg"), cls)


_ARRAY = re.compile(r"np\.ndarray.*np\.dtype\[np\.(\w+)\]")


def make(types, name: str, **given):
    cls = types[name]
    if not dataclasses.is_dataclass(cls):
        return cls(**given)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in given:
            kwargs[f.name] = given[f.name]
            continue
        t = str(f.type)
        if t.startswith("ClassVar"):
            continue
        if t in ("int",):
            kwargs[f.name] = 0
        elif t == "float":
            kwargs[f.name] = 0.0
        elif t == "bool":
            kwargs[f.name] = False
        elif t == "str":
            kwargs[f.name] = ""
        elif t.startswith("list["):
            kwargs[f.name] = []
        elif (m := _ARRAY.search(t)) is not None:
            kwargs[f.name] = np.zeros(0, getattr(np, m.group(1)))
        elif "__msg__" in t:
            kwargs[f.name] = make(types, t.replace("__", "/"))
        else:
            raise TypeError(f"make({name}): cannot default field {f.name} of type {t}")
    return cls(**kwargs)


def _stamp(types, ns: int):
    return make(types, "builtin_interfaces/msg/Time", sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def detections_to_markers(types, det: Detections, stamp_ns: int, frame_id: str = "base_link",
                          lifetime_s: float = 0.2, min_score: float = 0.0, texts=None):
    """One CUBE (class colour, alpha = score) and one TEXT marker per detection, plus DELETEALL first;
    ``texts``: the TEXT of each detection (default: class and score)."""
    header = make(types, "std_msgs/msg/Header", stamp=_stamp(types, stamp_ns), frame_id=frame_id)
    life = make(types, "builtin_interfaces/msg/Duration", sec=int(lifetime_s), nanosec=int((lifetime_s % 1) * 1e9))
    markers = [make(types, "visualization_msgs/msg/Marker", header=header, ns="detections", id=0, action=3)]
    det = det.filter(min_score)
    for k in range(len(det)):
        x, y, z, l, w, h, yaw = (float(v) for v in det.boxes.data[k, :7])
        qw, qx, qy, qz = (float(v) for v in yaw_to_quat(yaw))
        pose = make(types, "geometry_msgs/msg/Pose",
                    position=make(types, "geometry_msgs/msg/Point", x=x, y=y, z=z),
                    orientation=make(types, "geometry_msgs/msg/Quaternion", x=qx, y=qy, z=qz, w=qw))
        name = DETECTION_CLASSES[det.labels[k]]
        r, g, b = (c / 255.0 for c in CLASS_COLORS[name])
        color = make(types, "std_msgs/msg/ColorRGBA", r=r, g=g, b=b, a=float(max(0.2, min(1.0, det.scores[k]))))
        markers.append(make(types, "visualization_msgs/msg/Marker", header=header, ns="boxes", id=k + 1, type=1,
                            action=0, pose=pose, scale=make(types, "geometry_msgs/msg/Vector3", x=l, y=w, z=h),
                            color=color, lifetime=life))
        text_pose = make(types, "geometry_msgs/msg/Pose",
                         position=make(types, "geometry_msgs/msg/Point", x=x, y=y, z=z + h / 2 + 0.5),
                         orientation=make(types, "geometry_msgs/msg/Quaternion", w=1.0))
        markers.append(make(types, "visualization_msgs/msg/Marker", header=header, ns="labels", id=k + 1, type=9,
                            action=0, pose=text_pose, scale=make(types, "geometry_msgs/msg/Vector3", z=0.8),
                            color=make(types, "std_msgs/msg/ColorRGBA", r=1.0, g=1.0, b=1.0, a=1.0),
                            lifetime=life, text=f"{name} {det.scores[k]:.2f}" if texts is None else texts[k]))
    return make(types, "visualization_msgs/msg/MarkerArray", markers=markers)


def tracks_to_markers(types, tracks, stamp_ns: int, frame_id: str = "base_link", lifetime_s: float = 0.2):
    """The confirmed tracks seen in this frame as /perception/track_markers: a box each, labelled "#id class"."""
    cur = tracks.current(confirmed_only=True)
    texts = [f"#{int(i)} {DETECTION_CLASSES[c]}" for i, c in zip(cur.ids, cur.boxes.labels)]
    return detections_to_markers(types, Detections(cur.boxes, cur.scores), stamp_ns, frame_id, lifetime_s,
                                 texts=texts)


def tracks_to_json(tracks, stamp_ns: int, frame_id: str = "base_link") -> str:
    """The /perception/tracks payload: every living track (ego frame of the frame) with its identity, class,
    box, smoothed velocity, score, hits, age, whether it is confirmed and whether it was seen in this frame."""
    objs = []
    for k in range(len(tracks)):
        d = tracks.boxes.data[k]
        objs.append({"id": int(tracks.ids[k]), "label": DETECTION_CLASSES[tracks.boxes.labels[k]],
                     "score": round(float(tracks.scores[k]), 6), "center": [round(float(v), 5) for v in d[:3]],
                     "size_lwh": [round(float(v), 5) for v in d[3:6]], "yaw": round(float(d[6]), 6),
                     "velocity": [round(float(np.nan_to_num(v)), 5) for v in d[7:9]], "hits": int(tracks.hits[k]),
                     "age": int(tracks.age[k]), "confirmed": bool(tracks.confirmed[k]),
                     "seen": bool(tracks.misses[k] == 0)})
    return json.dumps({"stamp_ns": int(stamp_ns), "frame_id": frame_id, "reset": bool(tracks.reset),
                       "tracks": objs})


def vision_msgs_available() -> bool:
    """True when ``vision_msgs`` can be imported here (a full ROS 2 install); nothing is imported."""
    try:
        return importlib.util.find_spec("vision_msgs") is not None
    except (ImportError, ValueError):  # ValueError: a half-imported module without __spec__ in sys.modules
        return False


def _box_pose(types, x: float, y: float, z: float, yaw: float):
    qw, qx, qy, qz = (float(v) for v in yaw_to_quat(yaw))
    return make(types, "geometry_msgs/msg/Pose", position=make(types, "geometry_msgs/msg/Point", x=x, y=y, z=z),
                orientation=make(types, "geometry_msgs/msg/Quaternion", x=qx, y=qy, z=qz, w=qw))


def detections_to_detection3d_array(types, det: Detections, stamp_ns: int, frame_id: str = "base_link",
                                    min_score: float = 0.0):
    """vision_msgs/Detection3DArray (vision_msgs 4.x, ROS 2 Humble..Kilted): one Detection3D per detection with
    score >= ``min_score``: ``bbox`` = box centre, yaw as a quaternion about +z, size (x = length along the
    heading, y = width, z = height); one hypothesis (``class_id`` = class name, ``score``) whose pose is the box
    centre (zero covariance: the model gives none); ``id`` = the box's instance token when it has one (a track
    identity), else "" (vision_msgs: "may be empty"; a per-message index would break its cross-message meaning).
    """
    header = make(types, "std_msgs/msg/Header", stamp=_stamp(types, stamp_ns), frame_id=frame_id)
    det = det.filter(min_score)
    tokens = det.boxes.instance_tokens
    detections = []
    for k in range(len(det)):
        x, y, z, l, w, h, yaw = (float(v) for v in det.boxes.data[k, :7])
        hyp = make(types, "vision_msgs/msg/ObjectHypothesisWithPose",
                   hypothesis=make(types, "vision_msgs/msg/ObjectHypothesis",
                                   class_id=DETECTION_CLASSES[det.labels[k]], score=float(det.scores[k])),
                   pose=make(types, "geometry_msgs/msg/PoseWithCovariance", pose=_box_pose(types, x, y, z, yaw),
                             covariance=np.zeros(36, np.float64)))
        bbox = make(types, "vision_msgs/msg/BoundingBox3D", center=_box_pose(types, x, y, z, yaw),
                    size=make(types, "geometry_msgs/msg/Vector3", x=l, y=w, z=h))
        detections.append(make(types, "vision_msgs/msg/Detection3D", header=header, results=[hyp], bbox=bbox,
                               id="" if tokens is None or tokens[k] is None else str(tokens[k])))
    return make(types, "vision_msgs/msg/Detection3DArray", header=header, detections=detections)


def detections_to_json(det: Detections, stamp_ns: int, frame_id: str = "base_link", modalities=(), extra=None) -> str:
    """The /perception/objects payload: boxes, scores, labels, grounding per prompt, stamp, frame."""
    objs = []
    attrs = det.boxes.attribute_names
    for k in range(len(det)):
        d = det.boxes.data[k]
        o = {"label": DETECTION_CLASSES[det.labels[k]], "score": round(float(det.scores[k]), 6),
             "center": [round(float(v), 5) for v in d[:3]], "size_lwh": [round(float(v), 5) for v in d[3:6]],
             "yaw": round(float(d[6]), 6), "velocity": [round(float(np.nan_to_num(v)), 5) for v in d[7:9]],
             "attribute": attrs[k]}
        if det.grounding_scores is not None:
            o["grounding"] = {p: round(float(s), 6) for p, s in zip(det.prompts, det.grounding_scores[k])}
        objs.append(o)
    payload = {"stamp_ns": int(stamp_ns), "frame_id": frame_id, "modalities": list(modalities),
               "prompts": list(det.prompts), "objects": objs}
    if extra:
        payload.update(extra)
    return json.dumps(payload)


def json_to_string_msg(types, text: str):
    return make(types, "std_msgs/msg/String", data=text)
