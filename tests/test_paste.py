"""Ground-truth sampling (perception.training.paste): objects of the training frames, with their points, pasted
into another frame without overlapping its boxes; what the cameras cannot show is kept out of the camera losses
and out of a camera-only sample's ground truth."""

import numpy as np
import pytest
import torch

from perception.geometry import footprints, footprints_overlap, points_in_boxes
from perception.pipeline import Preprocessor
from perception.training.paste import MARGIN, PASTED_VISIBILITY, ObjectPaste, build_paste
from perception.types import MODALITIES
from perception.types.labels import DETECTION_CLASSES

ALL = {c: 3 for c in DETECTION_CLASSES}


@pytest.fixture(scope="module")
def sets(synthetic_root):
    from perception.sources.nuscenes import NuScenesSource
    from perception.training.data import FrameDataset

    pre = Preprocessor({"camera": {"size": (64, 112)}})
    kw = dict(lidar_sweeps=2, radar_sweeps=2, image_min_hw=(64, 112))
    train = NuScenesSource(synthetic_root, "v1.0-mini", "mini_train", **kw)
    val = NuScenesSource(synthetic_root, "v1.0-mini", "mini_val", **kw)
    paste = ObjectPaste(ALL, min_points=5)
    ds = FrameDataset(train, pre, paste=paste, seed=0)
    counts = paste.build(ds, progress=False)
    return pre, ds, FrameDataset(val, pre, paste=paste, seed=0), counts


def test_database_holds_each_objects_points_from_the_training_frames(sets):
    pre, ds, _, counts = sets
    assert sum(counts.values()) >= 10, counts
    cols = list(pre.spec["lidar"]["columns"])
    tokens = {ds._load(i)[1]["token"] for i in range(len(ds))}
    for c, entries in paste_db(ds).items():
        for e in entries:
            assert e["label"] == c and e["token"] in tokens and len(e["lidar"]) >= 5
            # every point belongs to the box once moved on by the box's velocity over its time lag
            xyz = e["lidar"][:, :3].astype(np.float64)
            xyz[:, :2] += e["lidar"][:, [cols.index("time_lag")]] * np.nan_to_num(e["box"][7:9])
            assert points_in_boxes(xyz, e["box"][None], MARGIN + 1e-4).all()


def paste_db(ds):
    return ds.paste.db


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pasted_objects_bring_their_points_and_overlap_nothing(sets, seed):
    pre, _, val, _ = sets
    paste = val.paste
    inputs, meta = val._load(0)
    before = {m: inputs[m]["points"].copy() for m in ("lidar", "radar")}
    out, gt, pasted = paste.apply(inputs, meta["gt"], np.random.default_rng(seed), meta["token"])
    assert all(np.array_equal(inputs[m]["points"], before[m]) for m in before)  # the cached inputs untouched
    n_own = len(meta["gt"])
    assert len(gt) == len(pasted) and not pasted[:n_own].any() and pasted[n_own:].all() and pasted.any()
    np.testing.assert_array_equal(gt.data[:n_own], meta["gt"].data)
    new = gt[np.flatnonzero(pasted)]
    assert (new.visibility == PASTED_VISIBILITY).all()
    assert all(t.startswith("pasted:") and t != "pasted:" + meta["token"] for t in new.instance_tokens)
    assert all(np.bincount(new.labels, minlength=len(DETECTION_CLASSES)) <= 3)
    # no two footprints overlap: the frame's own boxes and the pasted ones
    foot = footprints(gt.data[:, :2], gt.data[:, 6], gt.data[:, 3], gt.data[:, 4])
    for k in np.flatnonzero(pasted):
        others = np.delete(np.arange(len(gt)), k)
        assert not footprints_overlap(np.repeat(foot[k:k + 1], len(others), 0), foot[others]).any()
    for m in ("lidar", "radar"):
        pts = out[m]["points"]
        cols = list(pre.spec[m]["columns"])
        kept = ~points_in_boxes(before[m][:, [cols.index(c) for c in "xyz"]], new.data, MARGIN).any(0)
        # the frame's points inside a pasted box are gone; the objects' own points follow the frame's
        np.testing.assert_array_equal(pts[:kept.sum()], before[m][kept])
        added = pts[kept.sum():]
        if m == "lidar":
            assert len(added) == new.num_lidar_pts.sum() >= 5 * len(new)
    # the same draws give the same frame
    again = paste.apply(inputs, meta["gt"], np.random.default_rng(seed), meta["token"])
    np.testing.assert_array_equal(again[0]["lidar"]["points"], out["lidar"]["points"])


def test_camera_only_samples_lose_the_pasted_boxes_and_prompts_are_dropped(sets):
    pre, _, val, _ = sets
    from perception.training.data import FrameDataset

    token = val.source[0].sample_token
    ds = FrameDataset(val.source, pre, paste=val.paste, seed=0, prompts={token: [(0, ["x"])]},
                      modality_dropout={"lidar": 1.0, "radar": 1.0})
    own = len(val.source[0].gt)
    item = ds[0]
    present = dict(zip(MODALITIES, item["inputs"]["present"]))
    assert present["camera"] and not present["lidar"] and not present["radar"]
    meta = item["data_samples"]
    assert len(meta["gt"]) == own and not meta["pasted"].any()
    with_points = FrameDataset(val.source, pre, paste=val.paste, seed=0, prompts={token: [(0, ["x"])]})
    meta = with_points[0]["data_samples"]
    assert meta["pasted"].any() and len(meta["gt"]) > own and meta["prompts"] == []


def test_camera_depth_loss_ignores_the_pixels_of_pasted_objects(sets):
    from perception.config import build, load_config
    from perception.training.data import FrameDataset, collate
    from perception.training.wrapper import FusionDetector

    pre, _, val, _ = sets
    net = build(load_config("configs/tiny.py")["model"])  # its depth bins; the logits below are random
    model = FusionDetector(net, pre.to_dict())
    ds = FrameDataset(val.source, pre, paste=val.paste, seed=0)
    hits = 0
    for seed in range(4):
        ds._rng = np.random.default_rng(seed)
        item = ds[0]
        batch = pre.collate(collate([item])["inputs"], "cpu")
        D = net.encoders["camera"].depth_bins[2]
        B, N = batch["camera"]["images"].shape[:2]
        h, w = [s // 8 for s in batch["camera"]["images"].shape[-2:]]
        logits = torch.randn(B, N, D, h, w, generator=torch.Generator().manual_seed(seed))
        samples = [item["data_samples"]]
        full = model.depth_loss(logits, batch)
        masked = model.depth_loss(logits, batch, samples)
        unmarked = model.depth_loss(logits, batch, [{**samples[0], "pasted": np.zeros_like(samples[0]["pasted"])}])
        assert torch.equal(full, unmarked)
        hits += int(not torch.equal(full, masked))
    assert hits >= 1  # some pasted object lands in a camera's view and its pixels leave the loss


def test_paste_config_is_checked():
    assert build_paste(None) is None
    assert build_paste({"classes": {"bus": 2}}).classes == {DETECTION_CLASSES.index("bus"): 2}
    with pytest.raises(ValueError, match="buss"):
        build_paste({"classes": {"buss": 2}})
    with pytest.raises(Exception, match="min_pts"):
        build_paste({"classes": {"bus": 2}, "min_pts": 3})
    with pytest.raises(ValueError, match="prob"):
        build_paste({"classes": {"bus": 2}, "prob": 2.0})
    with pytest.raises(ValueError, match="fade"):
        build_paste({"classes": {"bus": 2}, "fade": 0.0})
