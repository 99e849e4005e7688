"""Prompt-referred multi-object tracking, scored NuPrompt-style with the devkit's own tracking metrics.

Each prompt record (one prompt over one scene) becomes one sequence: its ground truth is the objects the
prompt refers to in each frame (identities = instance tokens), its hypotheses are every track seen in that
frame, scored ``accumulated grounding x track score`` (perception.tracking.Tracks.grounding: the prompt's
grounding averaged over the track's life, so one frame's box does not decide), then, as the devkit's own
loader does, each track's boxes carry its mean score over the sequence. Unlike the devkit's TrackingEval,
the ground truth is not interpolated and boxes are not filtered by range or point count (every referred
object counts): figures are comparable among our runs, not to published ones. All sequences of one phrasing
style are pooled and the devkit's ``TrackingEvaluation`` computes AMOTA / AMOTP / MOTA / IDS over them,
class-agnostic (every box under one name: the prompt, not the class, says what is wanted) with the
tracking benchmark's 2 m centre-distance match and its 40 recall thresholds.
"""

from __future__ import annotations

import numpy as np

from perception.geometry import yaw_to_quat
from perception.language.phrasing import style_order
from perception.types import Boxes3D

NAME = "car"  # the one class name every box is scored under (the devkit needs one of its tracking names)


def _box(token, xyz, lwh, yaw, v, tid, score):
    from nuscenes.eval.tracking.data_classes import TrackingBox

    return TrackingBox(sample_token=token, translation=tuple(float(x) for x in xyz),
                       size=(float(lwh[1]), float(lwh[0]), float(lwh[2])),
                       rotation=tuple(float(q) for q in yaw_to_quat(float(yaw))),
                       velocity=tuple(float(x) for x in np.nan_to_num(v)), tracking_id=str(tid), tracking_name=NAME,
                       tracking_score=float(score))


def prompt_tracking_eval(records, frames: dict, max_prompts: int | None = 60, quiet: bool = False) -> dict:
    """``records``: prompt records (NuPrompt-style); ``frames``: sample_token -> {"stamp_ns", "T_global_ego",
    "gt": Boxes3D (ego frame, instance_tokens), "tracks": Tracks seen in that frame (ego frame, grounding
    for the prompts asked there)}. Returns {style: {"amota", "amotp", "mota", "ids", "recall", "prompts",
    "referred"}} over the records that refer to at least one object in an evaluated frame; ``max_prompts``:
    at most this many of them per style, evenly spread over the records in their file order (the devkit's
    metrics cost about a second per prompt and scene on a CPU; None: all)."""
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.tracking.algo import TrackingEvaluation
    from nuscenes.eval.tracking.data_classes import TrackingMetricData
    from tqdm import tqdm

    cfg = config_factory("tracking_nips_2019")
    by_style: dict[str, tuple[dict, dict, int, int]] = {}
    scored = [r for r in records if any(inst for t, inst in r["frame_token_object_token"].items() if t in frames)]
    if max_prompts is not None:
        picked = []
        for style in {r.get("style", "train") for r in scored}:
            rs = [r for r in scored if r.get("style", "train") == style]
            picked += [rs[int(i)] for i in np.unique(np.linspace(0, len(rs) - 1, min(max_prompts, len(rs))).round())]
        scored = picked
    for r in scored:
        seq = [(frames[t]["stamp_ns"], t, inst) for t, inst in r["frame_token_object_token"].items() if t in frames]
        if not seq or not any(inst for _, _, inst in seq):
            continue
        key = f"{r['scene_token']}|{r.get('style', 'train')}|{r['prompt']}"
        gt_seq, pred_seq = {}, {}
        n_ref = 0
        for stamp, tok, inst in sorted(seq):
            f = frames[tok]
            T = f["T_global_ego"]
            gt: Boxes3D = f["gt"]
            idx = {t: k for k, t in enumerate(gt.instance_tokens)} if len(gt) else {}
            g = gt[[idx[t] for t in inst]].transform(T) if inst else Boxes3D.empty()
            gt_seq[stamp] = [_box(tok, b[:3], b[3:6], b[6], b[7:9], t, -1.0) for b, t in zip(g.data, inst)]
            n_ref += len(inst)
            tr = f["tracks"]
            if tr.grounding is None or r["prompt"] not in tr.prompts or not len(tr):
                pred_seq[stamp] = []
                continue
            score = tr.grounding[:, tr.prompts.index(r["prompt"])] * tr.scores
            p = tr.boxes.transform(T)
            pred_seq[stamp] = [_box(tok, b[:3], b[3:6], b[6], b[7:9], i, s)
                               for b, i, s in zip(p.data, tr.ids, score) if s > 0.01]
        # as the devkit's loader does: every box of a track carries the track's mean score over the sequence
        per_track: dict[str, list[float]] = {}
        for boxes in pred_seq.values():
            for b in boxes:
                per_track.setdefault(b.tracking_id, []).append(b.tracking_score)
        for boxes in pred_seq.values():
            for b in boxes:
                b.tracking_score = float(np.mean(per_track[b.tracking_id]))
        gts, preds, n_prompts, n_total = by_style.setdefault(r.get("style", "train"), ({}, {}, 0, 0))
        while key in gts:  # the same prompt twice in a scene: two sequences
            key += "'"
        gts[key], preds[key] = gt_seq, pred_seq
        by_style[r.get("style", "train")] = (gts, preds, n_prompts + 1, n_total + n_ref)
    out = {}
    # the devkit's accumulation is the slow part (minutes per style on a few hundred frames): one step per style
    bar = tqdm(sorted(by_style, key=style_order), desc="prompt-referred tracking (TrackingEvaluation per style)",
               unit="style", disable=quiet)
    for style in bar:
        bar.set_postfix(style=style, refresh=True)
        gts, preds, n_prompts, n_ref = by_style[style]
        ev = TrackingEvaluation(gts, preds, NAME, cfg.dist_fcn_callable, cfg.dist_th_tp, cfg.min_recall,
                                num_thresholds=TrackingMetricData.nelem, metric_worst=cfg.metric_worst,
                                verbose=False)
        md = ev.accumulate()
        res = {"prompts": n_prompts, "referred": n_ref}
        for name, per in (("amota", "motar"), ("amotp", "motp")):
            v = np.array(md.get_metric(per), float)
            res[name] = float("nan") if np.all(np.isnan(v)) else float(
                np.mean(np.where(np.isnan(v), cfg.metric_worst[name], v)))
        mota = np.array(md.mota, float)
        best = None if np.all(np.isnan(mota)) else int(np.nanargmax(mota))
        for name in ("mota", "ids", "recall"):
            res[name] = float("nan") if best is None else float(md.get_metric(name)[best])
        out[style] = res
    return out
