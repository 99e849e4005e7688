"""perception.evaluation.world_report and perception.cli.world_report on a small synthetic world, plus unit tests of
the kNN probe, balanced accuracy and the pole counter on hand-made data."""

import json
import re

import numpy as np
import pytest

from perception.evaluation.world_probes import balanced_accuracy, count_pole_like, knn_probe
from perception.evaluation.world_report import (
    GOALS,
    detect_version,
    format_report,
    report,
)
from perception.types import CATEGORY_TO_CLASS, DETECTION_CLASSES


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from perception.sources.synthetic import WorldConfig, generate

    root = tmp_path_factory.mktemp("world_report") / "nuscenes"
    generate(root, WorldConfig(scenes=2, samples=3, seed=1, image_scale=0.1), progress=False, workers=1)
    return root


@pytest.fixture(scope="module")
def nusc(world):
    from nuscenes import NuScenes

    from perception.sources import devkit_compat

    devkit_compat.apply()
    return NuScenes("v1.0-mini", str(world), verbose=False)


@pytest.fixture(scope="module")
def rep(world):
    return report(world, progress=False)


# ---- the report on a real dataroot --------------------------------------------------------------------------

def test_structure_and_json(rep):
    assert rep["version"] == "v1.0-mini"
    assert rep["n_samples"] == rep["n_samples_total"] == 6 and rep["n_scenes"] == 2
    for section in ("content", "lidar", "radar", "conditions", "probes", "checks"):
        assert section in rep
    assert set(rep["checks"]) == set(GOALS)
    for c in rep["checks"].values():
        assert c["ok"] in (True, False, None)
    json.loads(json.dumps(rep))  # plain numbers only


def test_box_counts_equal_devkit_tables(rep, nusc):
    det = [a for a in nusc.sample_annotation if a["category_name"] in CATEGORY_TO_CLASS]
    assert rep["content"]["n_boxes"] == len(det)
    assert rep["content"]["boxes_per_keyframe"] == pytest.approx(len(det) / len(nusc.sample))
    for c in DETECTION_CLASSES:
        n_c = sum(CATEGORY_TO_CLASS[a["category_name"]] == c for a in det)
        assert rep["content"]["class_shares"][c] == pytest.approx(n_c / len(det))
    nl = np.array([a["num_lidar_pts"] for a in det])
    nr = np.array([a["num_radar_pts"] for a in det])
    assert rep["lidar"]["mean_pts_per_box"] == pytest.approx(nl.mean())
    assert rep["lidar"]["median_pts_per_box"] == pytest.approx(np.median(nl))
    assert rep["lidar"]["share_no_lidar_no_radar"] == pytest.approx(np.mean((nl == 0) & (nr == 0)))
    assert rep["radar"]["mean_radar_pts_per_box"] == pytest.approx(nr.mean())
    # lateral-position probe: one row per box; intensity probe: one row per box with a keyframe lidar point in it
    # (nuScenes' num_lidar_pts counts exactly those points, so the two agree up to box-edge round-off)
    assert rep["probes"]["lateral_y"]["n"] == len(det)
    assert abs(rep["probes"]["intensity"]["n"] - int(np.sum(nl > 0))) <= max(2, 0.05 * len(det))


def test_eval_boxes_equal_detection_eval_filter(rep, nusc):
    """Our 'kept by DetectionEval' count against the devkit's own load_gt + filter_eval_boxes."""
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.common.loaders import add_center_dist, filter_eval_boxes, load_gt
    from nuscenes.eval.detection.data_classes import DetectionBox
    from nuscenes.utils.splits import create_splits_scenes

    cfg = config_factory("detection_cvpr_2019")
    names = {s["name"] for s in nusc.scene}
    kept = 0
    for split in ("mini_train", "mini_val"):
        if not names & set(create_splits_scenes(verbose=False)[split]):
            continue
        gt = add_center_dist(nusc, load_gt(nusc, split, DetectionBox, verbose=False))
        gt = filter_eval_boxes(nusc, gt, cfg.class_range, verbose=False)
        kept += sum(len(gt[t]) for t in gt.sample_tokens)
    racks = any(a["category_name"] == "static_object.bicycle_rack" for a in nusc.sample_annotation)
    if racks:  # the devkit also drops bicycles / motorcycles parked in bike racks; we do not
        assert kept <= rep["content"]["n_eval_boxes"]
    else:
        assert rep["content"]["n_eval_boxes"] == kept
    assert rep["content"]["eval_boxes_per_keyframe"] == pytest.approx(rep["content"]["n_eval_boxes"] / 6)


def test_shares_and_ranges(rep):
    assert sum(rep["content"]["class_shares"].values()) == pytest.approx(1.0)
    assert sum(rep["content"]["distance_shares"].values()) == pytest.approx(1.0)
    for key in ("share_no_lidar", "share_no_lidar_no_radar"):
        assert 0.0 <= rep["lidar"][key] <= 1.0
    assert rep["lidar"]["share_no_lidar_no_radar"] <= rep["lidar"]["share_no_lidar"]
    assert 0.0 <= rep["radar"]["share_returns_in_boxes"] <= 1.0
    assert rep["radar"]["returns_per_sample"] > 0
    assert rep["lidar"]["pole_like_per_keyframe"] >= 0
    for v in rep["conditions"].values():
        assert v is not None and v >= 0
    for name, p in rep["probes"].items():
        assert p["n"] > 0, name
        assert p["chance"] == pytest.approx(1.0 / p["n_classes"])
        assert p["balanced_accuracy"] is not None and 0.0 <= p["balanced_accuracy"] <= 1.0, name


def test_format_report(rep):
    text = format_report(rep)
    for section in ("[content]", "[lidar]", "[radar]", "[conditions & motion]", "[cue probes"):
        assert section in text
    assert "quantity" in text and "real nuScenes" in text and "goal" in text
    assert "41.5%" in text  # car share of real v1.0-mini in the reference column
    assert text.splitlines()[-1] == "world report: 6 samples, 2 scenes"
    widths = {len(line.split("|")[0]) for line in text.splitlines() if line.count("|") == 4}
    assert len(widths) == 1  # fixed-width columns


def test_cli(world, tmp_path, capsys):
    from perception.cli.world_report import main

    out = tmp_path / "wr.json"
    assert main(["--data-root", str(world), "--max-samples", "2", "--json", str(out), "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"world report: 2 samples, 2 scenes", lines[-1])
    d = json.loads(out.read_text())
    assert d["n_samples"] == 2 and d["n_samples_total"] == 6
    assert main(["--data-root", str(tmp_path), "--quiet"]) == 2  # no table folder: a clear error


def test_detect_version(tmp_path):
    with pytest.raises(ValueError, match="no v1.0-mini"):
        detect_version(tmp_path)
    (tmp_path / "v1.0-mini").mkdir()
    assert detect_version(tmp_path) == "v1.0-mini"
    (tmp_path / "v1.0-trainval").mkdir()
    with pytest.raises(ValueError, match="both"):
        detect_version(tmp_path)


# ---- the probe -------------------------------------------------------------------------------------------------

def test_balanced_accuracy():
    y = np.array([0] * 90 + [1] * 10)
    assert balanced_accuracy(y, np.zeros(100, int)) == pytest.approx(0.5)  # plain accuracy would say 0.9
    assert balanced_accuracy(y, y) == 1.0
    assert balanced_accuracy(["a", "b", "b"], ["b", "b", "b"]) == pytest.approx(0.5)


def _scenes(n_scenes, per_scene):
    return np.repeat(np.arange(n_scenes), per_scene)


def test_probe_separable_feature_scores_one():
    rng = np.random.default_rng(0)
    g = _scenes(6, 60)
    y = rng.integers(0, 4, len(g))
    x = y * 10.0 + rng.normal(0, 0.5, len(g))  # the label itself, slightly blurred
    r = knn_probe(x[:, None], y, g)
    assert r["balanced_accuracy"] == 1.0 and r["chance"] == 0.25 and r["n_groups"] == 6


def test_probe_random_feature_scores_chance():
    rng = np.random.default_rng(1)
    g = _scenes(8, 150)
    y = rng.integers(0, 3, len(g))
    r = knn_probe(rng.normal(size=(len(g), 3)), y, g)
    assert abs(r["balanced_accuracy"] - 1 / 3) < 0.06


@pytest.mark.parametrize("n_scenes", [6, 24])  # leave-one-scene-out, and grouped 10-fold past 10 scenes
def test_probe_holds_scenes_out(n_scenes):
    """A feature that names the scene (each scene holds one class) must not read the class across scenes."""
    rng = np.random.default_rng(2)
    g = _scenes(n_scenes, 40)
    y = g % 3  # class is constant within a scene
    x = g * 5.0 + rng.normal(0, 0.3, len(g))  # the scene's fingerprint, not the class
    held_out = knn_probe(x[:, None], y, g)["balanced_accuracy"]
    leaky = knn_probe(x[:, None], y, np.arange(len(g)))["balanced_accuracy"]  # every row its own group
    assert leaky > 0.95  # without grouping the scene fingerprint gives the class away ...
    assert held_out < 1 / 3 + 0.1  # ... with scenes held out it does not


def test_probe_degenerate_inputs():
    r = knn_probe(np.arange(10.0), np.zeros(10), _scenes(2, 5))
    assert r["balanced_accuracy"] is None and r["n_classes"] == 1
    r = knn_probe(np.arange(10.0), np.arange(10) % 2, np.zeros(10))
    assert r["balanced_accuracy"] is None and r["n_groups"] == 1


# ---- the pole counter -----------------------------------------------------------------------------------------

def _cloud(rng):
    """Sloped ground (+5 cm per m in x) over 80 x 80 m, two thin poles, a 6 m wall, a pole 39 m out and a thin
    1.7 m column of points (a pedestrian, when annotated)."""
    gx, gy = np.meshgrid(np.arange(-40, 40, 0.5), np.arange(-40, 40, 0.5))
    ground = np.stack([gx.ravel(), gy.ravel(), 0.05 * gx.ravel()], axis=1)

    def pole(x, y, n=30, top=4.0):
        z = np.linspace(0.0, top, n)
        return np.stack([x + rng.normal(0, 0.03, n), y + rng.normal(0, 0.03, n), 0.05 * x + z], axis=1)

    wy, wz = np.meshgrid(np.arange(0.0, 6.0, 0.1), np.arange(0.0, 3.0, 0.2))
    wall = np.stack([np.full(wy.size, -12.0), wy.ravel() - 3, wz.ravel() + 0.05 * -12.0], axis=1)
    parts = {"ground": ground, "pole_a": pole(5.0, 3.0), "pole_b": pole(20.0, -8.0), "wall": wall,
             "far_pole": pole(38.0, 10.0), "pedestrian": pole(-6.0, 9.0, top=1.7)}
    return parts


def test_pole_counter_two_poles_and_a_wall():
    from nuscenes.utils.data_classes import Box
    from pyquaternion import Quaternion

    parts = _cloud(np.random.default_rng(3))
    pts = np.concatenate(list(parts.values()))
    # the pedestrian's annotation: its points are no unannotated structure
    ped = Box([-6.0, 9.0, 0.05 * -6.0 + 0.9], [0.6, 0.6, 1.8], Quaternion(axis=[0, 0, 1], angle=0.3))
    assert count_pole_like(pts, [ped]) == 2
    assert count_pole_like(pts) == 3  # without its annotation the pedestrian looks like a pole too
    assert count_pole_like(np.concatenate([parts["ground"], parts["wall"]])) == 0  # a wall is no pole
    assert count_pole_like(np.concatenate([parts["ground"], parts["far_pole"]])) == 0  # beyond 30 m
    assert count_pole_like(np.concatenate([parts["ground"], parts["far_pole"]]), radius=45.0) == 1
    assert count_pole_like(parts["ground"]) == 0  # sloped ground alone: nothing 0.5-3 m above local ground
    assert count_pole_like(np.zeros((0, 3))) == 0


def test_pole_counter_needs_three_points():
    ground = np.stack(np.meshgrid(np.arange(-10, 10, 0.5), np.arange(-10, 10, 0.5)), -1).reshape(-1, 2)
    ground = np.concatenate([ground, np.zeros((len(ground), 1))], axis=1)
    two = np.array([[8.0, 0.0, 1.0], [8.0, 0.0, 1.5]])
    assert count_pole_like(np.concatenate([ground, two])) == 0
    assert count_pole_like(np.concatenate([ground, two, [[8.0, 0.0, 2.0]]])) == 1


def test_pictures_draw_the_cameras_by_condition_and_a_bev(world, nusc, tmp_path):
    import cv2

    from perception.evaluation.world_report import pictures

    files = pictures(world, tmp_path / "pics")
    names = {p.name for p in files}
    conds = set()
    for s in nusc.scene:
        d = s["description"].lower()
        conds.add("night" if "night" in d else "rain" if "rain" in d else "day")
    assert {f"cameras_{c}.jpg" for c in conds} | {"conditions.jpg"} <= names
    assert ("bev.png" in names) == ("day" in conds)
    for p in files:
        img = cv2.imread(str(p))
        assert img is not None and img.std() > 5, p  # a picture, not a blank canvas
    rows = cv2.imread(str(tmp_path / "pics" / "conditions.jpg"))
    one = cv2.imread(str(files[0]))
    assert rows.shape[0] == len(conds) * (one.shape[0] // 2)  # the front row of each condition
