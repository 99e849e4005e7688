"""The grounding metric (perception.evaluation.grounding) on hand-built frames: AP, the ceiling of a perfect
reading, the per-part summary, the class range."""

import numpy as np
import pytest

from perception.evaluation.grounding import average_precision, evaluate_prompt, summarize
from perception.types import DETECTION_CLASSES, Boxes3D, Detections

C = DETECTION_CLASSES.index


def test_average_precision_by_hand():
    assert average_precision(np.array([1, 0, 1]), 2) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert average_precision(np.array([0, 1]), 1) == pytest.approx(0.5)
    assert average_precision(np.array([]), 3) == 0.0
    assert np.isnan(average_precision(np.array([1]), 0))


def _det(xy, scores, ground):
    d = np.zeros((len(xy), 9))
    d[:, :2] = xy
    d[:, 3:6] = (4, 2, 1.5)
    return Detections(Boxes3D(d, [0] * len(xy)), scores, np.asarray(ground, np.float32)[:, None], ("cars",))


def test_grounding_metric_by_hand():
    gt = Boxes3D(np.array([[10, 0, 0, 4, 2, 1.5, 0, 0, 0], [20, 5, 0, 4, 2, 1.5, 0, 0, 0],
                           [30, -5, 0, 4, 2, 1.5, 0, 0, 0]], float), [0, 0, 0], instance_tokens=["a", "b", "c"])
    record = {"scene_token": "s", "prompt": "cars", "style": "train", "spec": {"group": "car"},
              "frame_token_object_token": {"f1": ["a", "b"], "f2": []}}
    # f1: a matched within 2 m (score .9*.9), a duplicate on a (FP), b missed by 3 m (FP), c not referred (FP)
    dets = {"f1": _det([[10.5, 0.5], [10.2, 0], [23, 5], [30, -5]], [0.9, 0.8, 0.9, 0.9], [0.9, 0.7, 0.5, 0.1]),
            "f2": _det([[10, 0]], [0.9], [0.8])}  # refers to nothing there, yet scores 0.72 > 0.5
    r = evaluate_prompt(record, dets, {"f1": gt, "f2": gt})
    # ranking: a (.81, TP), f2 (.72, FP), dup (.56, FP), b-miss (.45, FP), c (.09, FP): AP = 0.5 * 1
    assert r.ap == pytest.approx(0.5)
    # a perfect reading ranks the two detections near a (.9 then .8; the second a duplicate) and drops the
    # rest: a found, b never -> AP 0.5 as well; here the words cost nothing, the detector's miss of b all
    assert r.ceiling == pytest.approx(0.5)
    assert (r.n_referred, r.tp05, r.fp05, r.empty_frames, r.empty_false_alarms) == (2, 1, 2, 1, 1)
    s = summarize([r])["train"]
    assert s["precision@0.5"] == pytest.approx(1 / 3) and s["recall@0.5"] == pytest.approx(0.5)
    assert s["empty_false_alarm_rate"] == 1.0 and s["mAP"] == pytest.approx(0.5)


def test_grounding_ceiling_is_the_perfect_reading():
    """Both referred cars found, but the prompt's reading ranks an unreferred car first: AP < 1, ceiling 1."""
    gt = Boxes3D(np.array([[10, 0, 0, 4, 2, 1.5, 0, 0, 0], [-20, 5, 0, 4, 2, 1.5, 0, 0, 0],
                           [30, -5, 0, 4, 2, 1.5, 0, 0, 0]], float), [0, 0, 0], instance_tokens=["a", "b", "c"])
    record = {"scene_token": "s", "prompt": "cars", "style": "train", "spec": {"group": "car", "lon": "ahead"},
              "frame_token_object_token": {"f": ["a", "c"]}}
    dets = {"f": _det([[10, 0], [-20, 5], [30, -5]], [0.5, 0.9, 0.6], [0.9, 0.9, 0.2])}
    r = evaluate_prompt(record, dets, {"f": gt})
    # by grounding x score: b (.81, FP), a (.45, TP), c (.12, TP): precision 2/3 at both hits (interpolated)
    assert r.ap == pytest.approx(2 / 3)
    assert r.ceiling == pytest.approx(1.0)
    dets["f"].scores[2] = 0.0  # c kept below every threshold is still found by a perfect reading: rank only
    assert evaluate_prompt(record, dets, {"f": gt}).ceiling == pytest.approx(1.0)


def test_grounding_summary_by_part():
    """Every prompt counts toward each part of its spec: the table says which words a style loses."""
    from perception.evaluation.grounding import PromptResult, format_summary

    def res(style, ap, words):
        return PromptResult("p", "s", style, "x", ap, 1, 0, 0, 0, 0, words, ceiling=0.9 if style == "train" else 1)

    results = [res("train", 0.8, ("moving", "ahead")), res("train", 0.6, ("ahead",)), res("train", 1.0, ()),
               res("heldout", 0.2, ("moving", "ahead")), res("heldout", 0.4, ("within",))]
    s = summarize(results)
    assert s["train"]["by_part"] == {"ahead": {"mAP": pytest.approx(0.7), "prompts": 2, "ceiling": 0.9},
                                     "moving": {"mAP": pytest.approx(0.8), "prompts": 1, "ceiling": 0.9}}
    assert s["heldout"]["by_part"]["within"] == {"mAP": pytest.approx(0.4), "prompts": 1, "ceiling": 1.0}
    lines = format_summary(s).splitlines()
    ahead = next(x for x in lines if x.startswith("ahead "))
    assert ahead.split() == ["ahead", "0.700", "0.200", "0.900", "2"]  # the ceiling of the first style with it
    assert next(x for x in lines if x.startswith("within ")).split() == ["within", "-", "0.400", "1.000", "1"]
    assert lines[-1] == "grounding mAP: 0.800 heldout mAP: 0.300"
    rec = {"scene_token": "s", "prompt": "cars", "spec": {"group": "car", "motion": "parked", "lat": "left",
                                                          "within": 10}, "frame_token_object_token": {}}
    assert evaluate_prompt(rec, {}, {}).words == ("parked", "left", "within")


def test_metric_drops_detections_beyond_the_class_range():
    gt = Boxes3D(np.array([[45, 0, 0, 0.5, 0.5, 1.0, 0, 0, 0]], float), [C("traffic_cone")], instance_tokens=["k"])
    record = {"scene_token": "s", "prompt": "cones", "frame_token_object_token": {"f": ["k"]}}
    d = np.zeros((1, 9))
    d[0, :2], d[0, 3:6] = (45, 0), (0.5, 0.5, 1.0)
    det = Detections(Boxes3D(d, [C("traffic_cone")]), [0.9], np.array([[0.9]], np.float32), ("cones",))
    assert evaluate_prompt(record, {"f": det}, {"f": gt}).ap == 0.0  # cones count to 30 m only


def test_detection_targets_follow_the_metric_rule():
    """promptfusion-tune-text --objects: a detection's target for a prompt is 1 where it lies within 2 m of an
    object the prompt refers to; scored with those targets as grounding, a prompt reaches its ceiling."""
    from perception.training.wrapper import detection_targets

    gt = Boxes3D(np.array([[10, 0, 0, 4, 2, 1.5, 0, 0, 0], [20, 5, 0, 4, 2, 1.5, 0, 0, 0],
                           [-5, -5, 0, 4, 2, 1.5, 0, 0, 0]], float), [0, 0, 0], instance_tokens=["a", "b", "c"])
    xy = np.array([[10.5, 0.5], [19.0, 5.0], [30.0, 0.0], [-5.0, -3.1], [-5.0, -2.9]])
    t = detection_targets(xy, gt, [{"a"}, {"b", "c"}, set()])
    # 0.7 m from a; 1 m from b; far from all; 1.9 m from c; 2.1 m from c (a miss, as the metric counts it)
    np.testing.assert_array_equal(t, [[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert detection_targets(np.zeros((0, 2)), gt, [{"a"}]).shape == (0, 1)
    record = {"scene_token": "s", "prompt": "cars", "style": "train", "spec": {"group": "car"},
              "frame_token_object_token": {"f": ["b", "c"]}}
    dets = {"f": _det(xy, [0.9, 0.5, 0.95, 0.7, 0.99], t[:, 1])}
    r = evaluate_prompt(record, dets, {"f": gt})
    assert r.ap == pytest.approx(r.ceiling) and r.ap == pytest.approx(1.0)
