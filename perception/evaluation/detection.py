"""Detections -> nuScenes submission JSON -> the devkit's official DetectionEval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from perception.geometry import yaw_to_quat
from perception.types import ATTRIBUTES, CLASS_ATTRIBUTES, DETECTION_CLASSES, Detections

# The devkit's default attribute per class when a model gives none (most common one in nuScenes).
DEFAULT_ATTRIBUTE = {"car": "vehicle.parked", "truck": "vehicle.parked", "construction_vehicle": "vehicle.parked",
                     "bus": "vehicle.moving", "trailer": "vehicle.parked", "motorcycle": "cycle.without_rider",
                     "bicycle": "cycle.without_rider", "pedestrian": "pedestrian.moving", "barrier": "",
                     "traffic_cone": ""}


def to_nuscenes_boxes(sample_token: str, det: Detections, T_global_ego: np.ndarray, max_boxes: int = 500) -> list:
    """One sample's detections (ego frame) as nuScenes result dicts (global frame)."""
    det = det.topk(max_boxes)
    glob = det.boxes.transform(T_global_ego)
    out = []
    attrs = det.boxes.attribute_ids
    for k in range(len(det)):
        name = DETECTION_CLASSES[det.labels[k]]
        a = int(attrs[k])
        attr = ATTRIBUTES[a] if a >= 0 and ATTRIBUTES[a] in CLASS_ATTRIBUTES[name] else DEFAULT_ATTRIBUTE[name]
        x, y, z, l, w, h, yaw, vx, vy = glob.data[k]
        out.append({
            "sample_token": sample_token, "translation": [float(x), float(y), float(z)],
            "size": [float(w), float(l), float(h)],
            "rotation": [float(v) for v in yaw_to_quat(float(yaw))],
            "velocity": [float(np.nan_to_num(vx)), float(np.nan_to_num(vy))],
            "detection_name": name, "detection_score": float(det.scores[k]), "attribute_name": attr,
        })
    return out


def write_submission(path, results: dict[str, list], modalities=("camera", "lidar", "radar")) -> None:
    sub = {"meta": {"use_camera": "camera" in modalities, "use_lidar": "lidar" in modalities,
                    "use_radar": "radar" in modalities, "use_map": False, "use_external": False},
           "results": results}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(sub, f)


def _devkit_eval(dataroot, version: str, eval_set: str, result_path, output_dir, verbose=False):
    """The devkit's table and its DetectionEval (detection_cvpr_2019) on a submission, loaded and filtered."""
    import contextlib
    import io

    from nuscenes import NuScenes
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    with contextlib.redirect_stdout(io.StringIO()) if not verbose else contextlib.nullcontext():
        nusc = NuScenes(version=version, dataroot=str(dataroot), verbose=False)
        return nusc, DetectionEval(nusc, config_factory("detection_cvpr_2019"), str(result_path), eval_set,
                                   str(output_dir), verbose=verbose)


def annotated_motion(dataroot, version: str, eval_set: str, result_path, output_dir) -> tuple:
    """(the evaluated ground truth, the ego's heading per sample): what ``velocity_by_heading`` reads besides the
    predictions, loaded once for scoring many track sets (``promptfusion-track --velocity``)."""
    nusc, ev = _devkit_eval(dataroot, version, eval_set, result_path, output_dir)
    return ev.gt_boxes, ego_yaws(nusc, ev.sample_tokens)


TRACK_VELOCITY_TITLE = ("velocity error by heading of the tracks (each annotated object matched to the nearest track "
                        "of its class with score >= 0.3 within 2 m)")


def run_detection_eval(dataroot, version: str, eval_set: str, result_path, output_dir, verbose=False,
                       sample_tokens=None, tracks_path=None) -> dict:
    """The devkit's DetectionEval (detection_cvpr_2019). Returns its summary dict (mean_ap, nd_score, ...).
    ``sample_tokens``: evaluate only these samples of the split (e.g. its night scenes); the devkit's own
    loading and filtering run first, then both the ground truth and the predictions are cut to the subset.
    ``tracks_path``: a tracking submission whose velocities are also split by heading against the same ground
    truth (``summary["track_velocity_by_heading"]``: what a planner reading the tracks gets)."""
    import contextlib
    import io

    nusc, ev = _devkit_eval(dataroot, version, eval_set, result_path, output_dir, verbose)
    with contextlib.redirect_stdout(io.StringIO()) if not verbose else contextlib.nullcontext():
        if sample_tokens is not None:
            _restrict(ev, set(sample_tokens))
        metrics, _ = ev.evaluate()
    yaws = ego_yaws(nusc, ev.sample_tokens)
    out = {**metrics.serialize(), "confusion": class_confusion(ev.gt_boxes, ev.pred_boxes),
           "velocity_by_heading": velocity_by_heading(ev.gt_boxes, ev.pred_boxes, yaws),
           "heading_by_orientation": heading_by_orientation(ev.gt_boxes, ev.pred_boxes, yaws)}
    if tracks_path is not None:
        out["track_velocity_by_heading"] = velocity_by_heading(ev.gt_boxes, tracks_as_detections(tracks_path), yaws)
    return out


def track_velocity_eval(results: dict[str, list], path, dataroot, version: str, eval_set: str,
                        modalities=("camera", "lidar", "radar")) -> dict:
    """The detections with their tracks' velocities (``results``: sample -> nuScenes boxes, e.g. of
    ``perception.tracking.with_track_velocities``) written at ``path`` and scored by the DetectionEval (output
    beside it, ``eval/``): the parts of its summary a velocity comparison reads (mAP, NDS, the TP errors and
    the per-class ones)."""
    write_submission(path, results, modalities)
    tv = run_detection_eval(dataroot, version, eval_set, path, Path(path).parent / "eval")
    return {k: tv[k] for k in ("mean_ap", "nd_score", "tp_errors", "label_tp_errors")}


def tracks_as_detections(path):
    """A tracking submission's boxes as the devkit's DetectionBoxes (tracking name and score as the detection's),
    for the tables that read detections."""
    from nuscenes.eval.common.data_classes import EvalBoxes
    from nuscenes.eval.detection.data_classes import DetectionBox

    with open(path) as f:
        results = json.load(f)["results"]
    boxes = {tok: [{**{k: v for k, v in b.items() if k not in ("tracking_id", "tracking_name", "tracking_score")},
                    "detection_name": b["tracking_name"], "detection_score": b["tracking_score"], "attribute_name": ""}
                   for b in rows]
             for tok, rows in results.items()}
    return EvalBoxes.deserialize(boxes, DetectionBox)


def ego_yaws(nusc, sample_tokens) -> dict[str, float]:
    """The ego's heading (global frame, radians) at each sample's lidar keyframe."""
    from perception.geometry import quat_to_yaw

    out = {}
    for tok in sample_tokens:
        sd = nusc.get("sample_data", nusc.get("sample", tok)["data"]["LIDAR_TOP"])
        out[tok] = float(quat_to_yaw(nusc.get("ego_pose", sd["ego_pose_token"])["rotation"]))
    return out


def _confident(pred_boxes, tok: str, min_score: float) -> list:
    """A sample's predictions with score >= ``min_score`` (none if the submission lacks the sample)."""
    return [p for p in (pred_boxes[tok] if tok in pred_boxes.sample_tokens else []) if p.detection_score >= min_score]


def _nearest(preds: list, box, max_dist: float):
    """The prediction whose centre is nearest ``box``'s in the ground plane, if within ``max_dist`` m; else None."""
    if not preds:
        return None
    d = np.linalg.norm(np.array([p.translation[:2] for p in preds]) - np.array(box.translation[:2]), axis=1)
    return preds[int(d.argmin())] if d.min() <= max_dist else None


HEADINGS = ("still", "with the ego", "oncoming", "crossing")
# the classes whose velocity the table splits, in groups that move alike (barriers and cones never move)
MOVERS = {"vehicles": ("car", "truck", "bus", "trailer", "construction_vehicle"),
          "cycles": ("motorcycle", "bicycle"), "pedestrians": ("pedestrian",)}


def velocity_by_heading(gt_boxes, pred_boxes, ego_yaw: dict, max_dist: float = 2.0, min_score: float = 0.3,
                        still: float = 1.0) -> dict:
    """The velocity error per group of classes (``MOVERS``), split by where each annotated object moves
    relative to the ego's heading: still (slower than ``still`` m/s), with the ego (within 45 degrees of its
    heading), oncoming (within 45 degrees of the opposite) and crossing (the rest). Each evaluated object with a
    known velocity is matched to the nearest prediction of its own class with score >= ``min_score`` within
    ``max_dist`` m. {group: {heading: {"n", "ave" (mean |v_pred - v_gt| m/s), "gt_speed", "pred_speed"
    (medians)}}}. A detector that reads no motion from its sweeps can still guess the speed of traffic going its
    own way from where it is; oncoming and crossing objects show whether it measures."""
    group = {c: g for g, cs in MOVERS.items() for c in cs}
    rows = {g: {h: [] for h in HEADINGS} for g in MOVERS}
    for tok in gt_boxes.sample_tokens:
        preds = _confident(pred_boxes, tok, min_score)
        c, s = np.cos(ego_yaw.get(tok, 0.0)), np.sin(ego_yaw.get(tok, 0.0))
        for g in gt_boxes[tok]:
            v = np.asarray(g.velocity[:2], np.float64)
            if g.detection_name not in group or not np.isfinite(v).all():
                continue
            match = _nearest([p for p in preds if p.detection_name == g.detection_name], g, max_dist)
            if match is None:
                continue
            pv = np.nan_to_num(np.asarray(match.velocity[:2], np.float64))
            speed = float(np.linalg.norm(v))
            along = (v[0] * c + v[1] * s) / max(speed, 1e-9)  # cosine of the angle to the ego's heading
            h = ("still" if speed < still else "with the ego" if along > np.sqrt(0.5)
                 else "oncoming" if along < -np.sqrt(0.5) else "crossing")
            rows[group[g.detection_name]][h].append((float(np.linalg.norm(pv - v)), speed, float(np.linalg.norm(pv))))
    out = {}
    for grp, by in rows.items():
        out[grp] = {}
        for h, r in by.items():
            r = np.array(r).reshape(-1, 3)
            out[grp][h] = {"n": len(r), "ave": float(r[:, 0].mean()) if len(r) else float("nan"),
                           "gt_speed": float(np.median(r[:, 1])) if len(r) else float("nan"),
                           "pred_speed": float(np.median(r[:, 2])) if len(r) else float("nan")}
    return out


ORIENTATIONS = ("along", "across")


def heading_by_orientation(gt_boxes, pred_boxes, ego_yaw: dict, max_dist: float = 2.0, min_score: float = 0.3) -> dict:
    """The heading error of vehicles (``MOVERS["vehicles"]``) split by how each annotated one lies relative to
    the ego: along its axis (within 45 degrees of its heading or the opposite) or across it, each matched to the
    nearest prediction of its own class with score >= ``min_score`` within ``max_dist`` m. {orientation: {"n",
    "median_deg" (the devkit's orientation error: the smallest angle between the two headings), "axis_deg"
    (the same modulo 180: the box's axis, front and back not told apart), "flipped" (share off by more than
    90 degrees)}}. A detector that takes every vehicle to lie along the road it drives on scores well on the
    devkit's mean orientation error in a world whose vehicles mostly do, and shows it here: across, its error
    is that of a guess."""
    from perception.geometry import quat_to_yaw, wrap_angle

    vehicles = set(MOVERS["vehicles"])
    rows = {o: [] for o in ORIENTATIONS}
    for tok in gt_boxes.sample_tokens:
        preds = _confident(pred_boxes, tok, min_score)
        ego = ego_yaw.get(tok, 0.0)
        for g in gt_boxes[tok]:
            if g.detection_name not in vehicles:
                continue
            match = _nearest([p for p in preds if p.detection_name == g.detection_name], g, max_dist)
            if match is None:
                continue
            gy, py = float(quat_to_yaw(g.rotation)), float(quat_to_yaw(match.rotation))
            err = abs(float(wrap_angle(py - gy)))
            o = "along" if abs(np.cos(gy - ego)) >= np.sqrt(0.5) else "across"
            rows[o].append((err, min(err, np.pi - err)))
    out = {}
    for o, r in rows.items():
        r = np.degrees(np.array(r).reshape(-1, 2))
        out[o] = {"n": len(r), "median_deg": float(np.median(r[:, 0])) if len(r) else float("nan"),
                  "axis_deg": float(np.median(r[:, 1])) if len(r) else float("nan"),
                  "flipped": float((r[:, 0] > 90).mean()) if len(r) else float("nan")}
    return out


def format_heading_by_orientation(table: dict) -> str:
    lines = [f"{'vehicles lying':14s} {'n':>5s} {'heading err':>11s} {'axis err':>8s} {'> 90 deg':>8s}"]
    for o in ORIENTATIONS:
        r = table.get(o)
        if r and r["n"]:
            lines.append(f"{o + ' the ego':14s} {r['n']:5d} {r['median_deg']:9.1f} d {r['axis_deg']:6.1f} d "
                         f"{r['flipped']:8.2f}")
    return "\n".join(lines)


def format_velocity_by_heading(table: dict) -> str:
    lines = [f"{'':12s} {'moving':14s} {'n':>5s} {'AVE m/s':>8s} {'median speed':>12s} {'predicted':>9s}"]
    for grp, by in table.items():
        for h in HEADINGS:
            r = by.get(h)
            if r and r["n"]:
                lines.append(f"{grp:12s} {h:14s} {r['n']:5d} {r['ave']:8.2f} {r['gt_speed']:12.2f} "
                             f"{r['pred_speed']:9.2f}")
    return "\n".join(lines)


# class_confusion's name for an object found only with its centre 2-4 m off
OFF_CENTRE = "off-centre"


def class_confusion(gt_boxes, pred_boxes, max_dist: float = 2.0, min_score: float = 0.3,
                    far_dist: float = 4.0) -> dict:
    """What each evaluated ground-truth object (the devkit's filtered boxes) is found as: the class of the
    nearest prediction of any class with score >= ``min_score`` whose centre is within ``max_dist`` m (the
    devkit's middle matching threshold, in the ground plane, and the tracking eval's); OFF_CENTRE when none
    is but one of its own class is within ``far_dist`` m (the devkit's loosest threshold: a long bus found
    with its centre 3 m off, which only that threshold and no tracking metric counts); else "missed".
    {gt class: {found as: count}}. Tells a class the detector misses (a bus with nothing on it) from one it
    names wrongly (a bus called a truck) or places badly, which the per-class AP cannot."""
    out = {c: {} for c in DETECTION_CLASSES}
    for tok in gt_boxes.sample_tokens:
        preds = _confident(pred_boxes, tok, min_score)
        for g in gt_boxes[tok]:
            match = _nearest(preds, g, max_dist)
            if match is not None:
                found = match.detection_name
            else:
                same = [p for p in preds if p.detection_name == g.detection_name]
                found = OFF_CENTRE if _nearest(same, g, far_dist) is not None else "missed"
            row = out[g.detection_name]
            row[found] = row.get(found, 0) + 1
    return out


def format_confusion(confusion: dict) -> str:
    """The confusion as a table: one row per annotated class (its count), the share found as each class
    (columns in DETECTION_CLASSES order, abbreviated), the share found only 2-4 m off centre and the share
    missed."""
    short = {c: c.replace("construction_vehicle", "constr").replace("traffic_cone", "cone")[:6]
             for c in DETECTION_CLASSES}
    lines = [f"{'annotated as':22s} {'n':>5s} " + " ".join(f"{short[c]:>6s}" for c in DETECTION_CLASSES)
             + f" {'2-4 m':>6s} {'missed':>6s}"]
    cols = [*DETECTION_CLASSES, OFF_CENTRE, "missed"]
    for c in DETECTION_CLASSES:
        row = confusion.get(c, {})
        n = sum(row.values())
        if not n:
            continue
        lines.append(f"{c:22s} {n:5d} " + " ".join(f"{row.get(k, 0) / n:6.2f}" for k in cols))
    return "\n".join(lines)


def _restrict(ev, keep: set) -> None:
    from nuscenes.eval.common.data_classes import EvalBoxes

    missing = keep - set(ev.gt_boxes.sample_tokens)
    if missing:
        raise ValueError(f"sample_tokens: {len(missing)} are not in the evaluated split")
    for name in ("gt_boxes", "pred_boxes"):
        old = getattr(ev, name)
        new = EvalBoxes()
        for tok in old.sample_tokens:
            if tok in keep:
                new.add_boxes(tok, old[tok])
        setattr(ev, name, new)
    ev.sample_tokens = [t for t in ev.sample_tokens if t in keep]


def scene_conditions(nusc) -> dict[str, list[str]]:
    """Sample tokens per condition named in the scene descriptions, as nuScenes writes them: 'night',
    'rain', and 'day' (not night), 'dry' (not rain)."""
    out: dict[str, list[str]] = {"day": [], "night": [], "dry": [], "rain": []}
    for sample in nusc.sample:
        desc = nusc.get("scene", sample["scene_token"])["description"].lower()
        out["night" if "night" in desc else "day"].append(sample["token"])
        out["rain" if "rain" in desc else "dry"].append(sample["token"])
    return out


def format_table(summary: dict) -> str:
    """Per-class AP and TP errors as the devkit prints them, plus the final line."""
    lines = [f"{'class':22s} {'AP':>6s} {'ATE':>6s} {'ASE':>6s} {'AOE':>6s} {'AVE':>6s} {'AAE':>6s}"]
    tp = summary["label_tp_errors"]
    for c in DETECTION_CLASSES:
        e = tp[c]
        lines.append(f"{c:22s} {summary['mean_dist_aps'][c]:6.3f} {e['trans_err']:6.3f} {e['scale_err']:6.3f} "
                     f"{e['orient_err']:6.3f} {e['vel_err']:6.3f} {e['attr_err']:6.3f}")
    m = summary.get("tp_errors")
    if m:  # the devkit's mean TP errors (mATE ... mAAE): the classes that have the error
        lines.append(f"{'mean (mATE ... mAAE)':22s} {summary['mean_ap']:6.3f} {m['trans_err']:6.3f} "
                     f"{m['scale_err']:6.3f} {m['orient_err']:6.3f} {m['vel_err']:6.3f} {m['attr_err']:6.3f}")
    lines.append(f"mAP: {summary['mean_ap']:.3f} NDS: {summary['nd_score']:.3f}")
    return "\n".join(lines)
