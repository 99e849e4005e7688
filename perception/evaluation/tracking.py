"""Tracks -> nuScenes tracking submission JSON -> the devkit's official TrackingEval (AMOTA, AMOTP, MOTA, IDS...).

The submission file has the detection submission's shape (perception.evaluation.detection.write_submission
writes both): {"meta": {...}, "results": {sample_token: [tracking boxes]}}.

The devkit's tracking evaluation needs ``motmetrics`` (1.1.3, the version it was written against) and
``pandas``; both are project dependencies.
"""

from __future__ import annotations

import numpy as np

from perception.geometry import yaw_to_quat
from perception.tracking import TRACKING_CLASSES, Tracks
from perception.types import DETECTION_CLASSES


def to_tracking_boxes(sample_token: str, tracks: Tracks, T_global_ego: np.ndarray) -> list:
    """One sample's tracks detected in that frame (ego frame) as nuScenes tracking result dicts (global)."""
    cur = tracks.current()
    keep = [i for i in range(len(cur)) if DETECTION_CLASSES[cur.boxes.labels[i]] in TRACKING_CLASSES]
    if not keep:
        return []
    glob = cur.boxes[keep].transform(T_global_ego)
    out = []
    for k, i in enumerate(keep):
        x, y, z, l, w, h, yaw, vx, vy = glob.data[k]
        out.append({
            "sample_token": sample_token, "translation": [float(x), float(y), float(z)],
            "size": [float(w), float(l), float(h)], "rotation": [float(v) for v in yaw_to_quat(float(yaw))],
            "velocity": [float(np.nan_to_num(vx)), float(np.nan_to_num(vy))],
            "tracking_id": str(int(cur.ids[i])), "tracking_name": DETECTION_CLASSES[glob.labels[k]],
            "tracking_score": float(cur.scores[i]),
        })
    return out


def run_tracking_eval(dataroot, version: str, eval_set: str, result_path, output_dir, verbose=False) -> dict:
    """The devkit's TrackingEval (tracking_nips_2019). Returns its summary dict (amota, amotp, mota, ids,
    frag, ... and ``label_metrics`` per class)."""
    import contextlib
    import io

    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.tracking.evaluate import TrackingEval

    from perception.sources import devkit_compat

    devkit_compat.apply()
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink) if not verbose else contextlib.nullcontext():
        ev = TrackingEval(config_factory("tracking_nips_2019"), str(result_path), eval_set, str(output_dir),
                          version, str(dataroot), verbose=verbose)
        metrics = ev.main(render_curves=False)
    return metrics


def format_tracking_table(summary: dict) -> str:
    """Per-class AMOTA / AMOTP / MOTA / recall / IDS / FRAG and the means, as a text table."""
    lm = summary.get("label_metrics", {})
    lines = [f"{'class':12s} {'AMOTA':>6s} {'AMOTP':>6s} {'MOTA':>6s} {'recall':>6s} {'IDS':>5s} {'FRAG':>5s} "
             f"{'GT':>5s}"]

    def val(d, k, fmt):
        v = d.get(k)
        return f"{v:{fmt}}" if v is not None and np.isfinite(v) else "nan"

    for c in TRACKING_CLASSES:
        d = {k: v.get(c) for k, v in lm.items()}
        lines.append(_row(c, d, val))
    lines.append(_row("mean", summary, val))
    return "\n".join(lines)


def _row(name, d, val) -> str:
    cells = [val(d, k, "6.3f").rjust(6) for k in ("amota", "amotp", "mota", "recall")]
    cells += [val(d, k, "5.0f").rjust(5) for k in ("ids", "frag", "gt")]
    return f"{name:12s} " + " ".join(cells)
