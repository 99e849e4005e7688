"""Per-frame grounding metric over NuPrompt-style prompt records.

For each prompt record (one prompt in one scene), every frame of the scene that was evaluated contributes its
detections, ranked by ``grounding score x detection score`` (pooled over the scene's frames, as nuScenes
pools a class over samples). A detection whose centre lies within 2 m (planar, as nuScenes' matching) of a
referred object of the same frame that is still unmatched is a true positive; each object matches once.
Detections beyond their class's eval range are dropped first, as the nuScenes detection eval does.

Reported: AP per prompt (all-point interpolated precision/recall area), grounding mAP over prompts that refer
to at least one object, precision and recall at combined score 0.5, and the rate of (prompt, frame) pairs
whose prompt refers to nothing there but that still get an object above 0.5 ("empty false alarms"),
separately for each phrasing style (training templates / held-out paraphrases).

Each prompt also gets its **ceiling**: the AP the same detections would reach with a perfect reading of the
prompt (grounding score 1 for a detection within 2 m of a referred object, 0 otherwise, so the ranking is the
detection score among those). It does not depend on the words, only on what the detector found: the gap
between a style's mAP and the ceiling is what the language side loses, the ceiling's own gap to 1 is the
detector's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.language.phrasing import style_order
from perception.types import CLASS_RANGE, Boxes3D, Detections

MATCH_DIST = 2.0
THRESHOLD = 0.5


def average_precision(tp: np.ndarray, n_pos: int) -> float:
    """Area under the interpolated precision/recall curve of a ranked list of hits."""
    if n_pos == 0:
        return float("nan")
    if len(tp) == 0:
        return 0.0
    ctp = np.cumsum(tp)
    prec = ctp / np.arange(1, len(tp) + 1)
    rec = ctp / n_pos
    prec = np.maximum.accumulate(prec[::-1])[::-1]
    r = np.concatenate([[0.0], rec])
    return float(np.sum((r[1:] - r[:-1]) * prec))


@dataclass
class PromptResult:
    prompt: str
    scene: str
    style: str
    kind: str
    ap: float
    n_referred: int
    tp05: int
    fp05: int
    empty_frames: int
    empty_false_alarms: int
    words: tuple[str, ...] = ()   # the spec's parts by their training word ("moving", "ahead", "within", ...)
    ceiling: float = float("nan")  # AP with a perfect reading of the prompt (module docstring)


def _kind(record: dict) -> str:
    spec = record.get("spec") or {}
    parts = [k for k in ("motion", "lon", "lat", "within", "beyond", "faster", "radial") if spec.get(k) is not None]
    if not spec:
        return "external"
    if not parts:
        return "class"
    tags = {"lon": "position", "lat": "position", "within": "distance", "beyond": "distance", "faster": "speed",
            "radial": "approach"}
    return "+".join(sorted({tags.get(p, p) for p in parts}))


def _words(record: dict) -> tuple[str, ...]:
    spec = record.get("spec") or {}
    words = [spec[k] for k in ("motion", "lon", "lat", "radial") if spec.get(k)]
    return tuple(words + [k for k in ("within", "beyond", "faster") if spec.get(k) is not None])


def evaluate_prompt(record: dict, dets: dict[str, Detections], gts: dict[str, Boxes3D]) -> PromptResult:
    """``dets``: sample_token -> Detections carrying this record's prompt; ``gts``: sample_token -> ground truth
    with instance_tokens."""
    text = record["prompt"]
    rows = []  # (score, frame, det index)
    referred_xy: dict[str, np.ndarray] = {}
    n_ref = empty = empty_fa = 0
    for tok, inst in record["frame_token_object_token"].items():
        if tok not in dets:
            continue
        det = dets[tok]
        col = det.prompts.index(text)
        gt = gts[tok]
        idx = {t: k for k, t in enumerate(gt.instance_tokens)} if len(gt) else {}
        missing = [t for t in inst if t not in idx]
        if missing:
            raise ValueError(f"prompt {text!r}: frame {tok} refers to instances {missing[:3]} not in its ground truth")
        referred_xy[tok] = gt.data[[idx[t] for t in inst], :2] if inst else np.zeros((0, 2))
        n_ref += len(inst)
        if len(det):
            rng = np.array([CLASS_RANGE[n] for n in det.boxes.class_names])
            ok = np.hypot(det.boxes.data[:, 0], det.boxes.data[:, 1]) <= rng
            score = det.grounding_scores[:, col] * det.scores
            score = np.where(ok, score, -1.0)
        else:
            score = np.zeros(0)
        if not inst:
            empty += 1
            empty_fa += int((score > THRESHOLD).any())
        for k in np.flatnonzero(score >= 0):
            rows.append((float(score[k]), tok, int(k)))
    tp = _hits(rows, referred_xy, dets)
    ceiling = _ceiling(rows, referred_xy, dets, n_ref)
    above = np.array([r[0] > THRESHOLD for r in rows], bool)
    return PromptResult(text, record["scene_token"], record.get("style", "train"), _kind(record),
                        average_precision(tp, n_ref), n_ref, int(tp[above].sum()), int((1 - tp[above]).sum()),
                        empty, empty_fa, _words(record), ceiling)


def _hits(rows: list, referred_xy: dict, dets: dict) -> np.ndarray:
    """Sorts ``rows`` (score, frame, det index) by score, highest first, and marks each a hit (1) where it lies
    within MATCH_DIST of a referred object of its frame that no higher row took."""
    rows.sort(key=lambda r: -r[0])
    used = {tok: np.zeros(len(xy), bool) for tok, xy in referred_xy.items()}
    tp = np.zeros(len(rows))
    for i, (_score, tok, k) in enumerate(rows):
        xy = referred_xy[tok]
        if not len(xy):
            continue
        d = np.hypot(*(xy - dets[tok].boxes.data[k, :2]).T)
        d[used[tok]] = np.inf
        j = int(np.argmin(d))
        if d[j] <= MATCH_DIST:
            used[tok][j] = True
            tp[i] = 1
    return tp


def _ceiling(rows: list, referred_xy: dict, dets: dict, n_ref: int) -> float:
    """AP of the same detections ranked by detection score among those within MATCH_DIST of a referred object
    (a perfect grounding score); the rest rank below every one of them and cannot add a hit."""
    near = []
    for _score, tok, k in rows:
        xy = referred_xy[tok]
        if len(xy) and np.hypot(*(xy - dets[tok].boxes.data[k, :2]).T).min() <= MATCH_DIST:
            near.append((float(dets[tok].scores[k]), tok, k))
    return average_precision(_hits(near, referred_xy, dets), n_ref)


def _map_by(results: list[PromptResult], keys) -> dict:
    """{key: {"mAP", "prompts"}} over the results whose ``keys(result)`` holds the key."""
    out = {}
    for k in sorted({k for r in results for k in keys(r)}):
        rs = [r for r in results if k in keys(r)]
        out[k] = {"mAP": float(np.mean([r.ap for r in rs])), "prompts": len(rs),
                  "ceiling": float(np.mean([r.ceiling for r in rs]))}
    return out


def summarize(results: list[PromptResult]) -> dict:
    out = {}
    for style in sorted({r.style for r in results}, key=style_order):
        rs = [r for r in results if r.style == style]
        scored = [r for r in rs if r.n_referred > 0]
        tp = sum(r.tp05 for r in rs)
        fp = sum(r.fp05 for r in rs)
        n = sum(r.n_referred for r in rs)
        empty = sum(r.empty_frames for r in rs)
        kinds = _map_by(scored, lambda r: (r.kind,))
        words = _map_by(scored, lambda r: r.words)  # every prompt with this part, whatever else it says
        out[style] = {
            "mAP": float(np.mean([r.ap for r in scored])) if scored else float("nan"),
            "ceiling": float(np.mean([r.ceiling for r in scored])) if scored else float("nan"),
            "prompts": len(rs), "prompts_scored": len(scored),
            "precision@0.5": tp / max(tp + fp, 1), "recall@0.5": tp / max(n, 1),
            "empty_false_alarm_rate": sum(r.empty_false_alarms for r in rs) / max(empty, 1),
            "empty_pairs": empty, "by_kind": kinds, "by_part": words,
        }
    return out


def _table(summary: dict, key: str, title: str, counts: bool = False) -> list[str]:
    """The lines of one breakdown (``by_kind`` / ``by_part``): a column per style, '-' where a style has no
    such prompt, then the ceiling (a perfect reading of the prompts, of the first style that has them: it
    does not depend on the words); ``counts``: a last column with the largest number of prompts over the
    styles."""
    rows = sorted({k for s in summary.values() for k in s.get(key, {})})
    if not rows:
        return []
    lines = ["", f"{title:28s} " + " ".join(f"{st:>9s}" for st in summary) + f" {'ceiling':>9s}"
             + ("  prompts" if counts else "")]
    for k in rows:
        vals = " ".join(f"{s[key][k]['mAP']:9.3f}" if k in s.get(key, {}) else f"{'-':>9s}" for s in summary.values())
        ceiling = next(s[key][k]["ceiling"] for s in summary.values() if k in s.get(key, {}))
        n = max(s.get(key, {}).get(k, {}).get("prompts", 0) for s in summary.values())
        lines.append(f"{k:28s} {vals} {ceiling:9.3f}" + (f"  {n:7d}" if counts else ""))
    return lines


def format_summary(summary: dict) -> str:
    lines = [f"{'style':9s} {'prompts':>7s} {'mAP':>6s} {'P@0.5':>6s} {'R@0.5':>6s} {'empty FA':>8s} "
             f"{'ceiling':>7s}"]
    for style, s in summary.items():
        lines.append(f"{style:9s} {s['prompts_scored']:7d} {s['mAP']:6.3f} {s['precision@0.5']:6.3f} "
                     f"{s['recall@0.5']:6.3f} {s['empty_false_alarm_rate']:8.3f} {s['ceiling']:7.3f}")
    lines += _table(summary, "by_kind", "kind")
    lines += _table(summary, "by_part", "prompts with the part", counts=True)
    train = summary.get("train", {}).get("mAP", float("nan"))
    held = summary.get("heldout", {}).get("mAP", float("nan"))
    dev = f" dev mAP: {summary['dev']['mAP']:.3f}" if "dev" in summary else ""
    lines.append(f"grounding mAP: {train:.3f} heldout mAP: {held:.3f}{dev}")
    return "\n".join(lines)
