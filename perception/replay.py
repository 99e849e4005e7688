"""Replay: every frame of a drive log through the Pipeline, written back as a drive log with the outputs.

``replay(pipe, BagSource(log, pipe.assembly), out)`` reads the log through the same feeder as the live node
(perception.sources.live) and writes OUT (rosbag2 MCAP): the input topics plus /perception/detections
(visualization_msgs/MarkerArray) and /perception/objects (JSON std_msgs/String), the same payloads the node
publishes. The command line is ``promptfusion-replay`` (perception.cli.replay).
"""

from __future__ import annotations

import time


def stamp_to_sample(nusc) -> dict[int, str]:
    """{LIDAR_TOP keyframe stamp (ns): sample token} of a loaded devkit NuScenes."""
    return {sd["timestamp"] * 1000: sd["sample_token"] for sd in nusc.sample_data
            if sd["is_key_frame"] and sd["channel"] == "LIDAR_TOP"}


def replay(pipe, src, out, prompts=(), samples=None, min_score=0.0, stop=None, max_frames=None, on_frame=None,
           progress=True, tracker: dict | None = None) -> dict:
    """Run every frame of a BagSource through ``pipe`` and write OUT (MCAP): the inputs plus
    /perception/detections and /perception/objects. ``samples``: {lidar stamp ns: sample token} for nuScenes
    results; ``on_frame(frame, det, sample_token or None, tracks or None)`` sees each frame's output;
    ``stop["flag"]`` ends the run cleanly; ``tracker``: Tracker settings ({} = defaults) adds /perception/tracks and
    /perception/track_markers (the node's payloads) and the tracking results per sample. Returns frames,
    wall_s, per-stage seconds, modality counts and the nuScenes (detection and tracking) results per sample."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from tqdm import tqdm

    from perception.evaluation.detection import to_nuscenes_boxes
    from perception.evaluation.tracking import to_tracking_boxes
    from perception.outputs import detections_to_markers, json_to_string_msg, tracks_to_json, tracks_to_markers
    from perception.serving import objects_json
    from perception.tracking import Tracker

    trk = None if tracker is None else Tracker(**tracker)
    tracked: dict[str, list] = {}

    store = get_typestore(Stores.ROS2_KILTED)
    samples = samples or {}
    stop = stop if stop is not None else {"flag": False}
    results: dict[str, list] = {}
    stages: dict[str, list[float]] = {k: [] for k in ("source", "text", "preprocess", "inference", "postprocess",
                                                       "total")}
    modality_counts: dict[str, int] = {}
    n_frames = 0
    t_start = time.perf_counter()
    bar = tqdm(desc="replay", unit="frame", disable=not progress)
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {}

        def conn_for(topic, msgtype):
            if topic not in conns:
                conns[topic] = w.add_connection(topic, msgtype, typestore=store)
            return conns[topic]

        t_src = time.perf_counter()
        for frame, match, raw in src:
            for c, t, data in raw:
                if c.msgtype in store.types:
                    w.write(conn_for(c.topic, c.msgtype), t, data)
            t_frame = time.perf_counter()
            raw_det = pipe(frame, prompts, None if trk is None else trk.motion_source())
            det = raw_det.filter(min_score)
            timing = pipe.last_timing
            stages["source"].append(t_frame - t_src)
            for k in ("text", "preprocess", "inference", "postprocess"):
                stages[k].append(timing.get(k, 0.0))
            mods = frame.modalities
            for m in mods:
                modality_counts[m] = modality_counts.get(m, 0) + 1
            stamp = frame.stamp_ns
            w.write(conn_for("/perception/detections", "visualization_msgs/msg/MarkerArray"), stamp,
                    store.serialize_cdr(detections_to_markers(store.types, det, stamp, "base_link"),
                                        "visualization_msgs/msg/MarkerArray"))
            text = objects_json(det, frame, match, "base_link")
            w.write(conn_for("/perception/objects", "std_msgs/msg/String"), stamp,
                    store.serialize_cdr(json_to_string_msg(store.types, text), "std_msgs/msg/String"))
            tracks = None
            if trk is not None:  # every detection, as the node gives it: the same tracks for the same log
                tracks = trk.update(raw_det, frame.T_global_ego, stamp)
                w.write(conn_for("/perception/tracks", "std_msgs/msg/String"), stamp,
                        store.serialize_cdr(json_to_string_msg(store.types, tracks_to_json(tracks, stamp)),
                                            "std_msgs/msg/String"))
                w.write(conn_for("/perception/track_markers", "visualization_msgs/msg/MarkerArray"), stamp,
                        store.serialize_cdr(tracks_to_markers(store.types, tracks, stamp),
                                            "visualization_msgs/msg/MarkerArray"))
            if stamp in samples:
                tok = samples[stamp]
                results[tok] = to_nuscenes_boxes(tok, det, frame.T_global_ego)
                if tracks is not None:
                    tracked[tok] = to_tracking_boxes(tok, tracks, frame.T_global_ego)
            stages["total"].append(time.perf_counter() - t_src)
            if on_frame is not None:
                on_frame(frame, det, samples.get(stamp), tracks)
            n_frames += 1
            bar.update()
            t_src = time.perf_counter()
            if stop["flag"] or (max_frames and n_frames >= max_frames):
                break
    bar.close()
    return {"frames": n_frames, "wall_s": time.perf_counter() - t_start, "stages": stages,
            "modalities": modality_counts, "results": results, "tracking_results": tracked}
