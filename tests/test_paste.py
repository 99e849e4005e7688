"""Ground-truth sampling (perception.training.paste): objects of the training frames, with their points, pasted
into another frame without overlapping its boxes; what the cameras cannot show is kept out of the camera losses
and out of a camera-only sample's ground truth."""

import numpy as np
import pytest
import torch

from perception.geometry import LIDAR_TOP_T, box_corners, footprints, footprints_overlap, points_in_boxes
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
    out, gt, pasted, imaged = paste.apply(inputs, meta["gt"], np.random.default_rng(seed), meta["token"])
    assert all(np.array_equal(inputs[m]["points"], before[m]) for m in before)  # the cached inputs untouched
    assert not imaged.any() and out["camera"] is inputs["camera"]  # points only: the images as they were
    n_own = len(meta["gt"])
    assert len(gt) == len(pasted) and not pasted[:n_own].any() and pasted[n_own:].all() and pasted.any()
    np.testing.assert_array_equal(gt.data[:n_own], meta["gt"].data)
    new = gt[np.flatnonzero(pasted)]
    assert (new.visibility == PASTED_VISIBILITY).all()
    assert all(t.startswith("pasted:") and t != "pasted:" + meta["token"] for t in new.tokens)
    # no object pasted beside itself: another keyframe's copy of an object this frame holds
    assert not {t[len("pasted:"):] for t in new.instance_tokens} & set(meta["gt"].instance_tokens)
    assert len(set(new.instance_tokens)) == len(new)
    assert all(np.bincount(new.labels, minlength=len(DETECTION_CLASSES)) <= 3)
    # no two footprints overlap: the frame's own boxes and the pasted ones
    foot = footprints(gt.data[:, :2], gt.data[:, 6], gt.data[:, 3], gt.data[:, 4])
    for k in np.flatnonzero(pasted):
        others = np.delete(np.arange(len(gt)), k)
        assert not footprints_overlap(np.repeat(foot[k:k + 1], len(others), 0), foot[others]).any()
    entry = {(e["instance"], e["token"]): e for entries in paste.db.values() for e in entries}
    trails = np.concatenate([entry[i[len("pasted:"):], t[len("pasted:"):]]["trail"]
                             for i, t in zip(new.instance_tokens, new.tokens)])
    assert len(trails) >= len(new)  # each box where it stands now, and back along its velocity for a moving one
    for m in ("lidar", "radar"):
        pts = out[m]["points"]
        cols = list(pre.spec[m]["columns"])
        kept = ~points_in_boxes(before[m][:, [cols.index(c) for c in "xyz"]].astype(np.float64), trails,
                                MARGIN).any(0)
        # the frame's points inside a pasted box (along its trail) are gone; the objects' own points follow
        np.testing.assert_array_equal(pts[:kept.sum()], before[m][kept])
        added = pts[kept.sum():]
        if m == "lidar":
            assert len(added) == new.num_lidar_pts.sum() >= 5 * len(new)
    # the same draws give the same frame
    again = paste.apply(inputs, meta["gt"], np.random.default_rng(seed), meta["token"])
    np.testing.assert_array_equal(again[0]["lidar"]["points"], out["lidar"]["points"])


def test_without_lidar_a_pasted_box_stays_only_where_the_radar_has_points_of_it(sets):
    pre, _, val, _ = sets
    from perception.training.data import FrameDataset

    token = val.source[0].sample_token
    own = len(val.source[0].gt)
    kw = dict(paste=val.paste, seed=0, prompts={token: [(0, ["x"])]})
    full = FrameDataset(val.source, pre, **kw)[0]["data_samples"]
    assert full["pasted"].any() and len(full["gt"]) > own and full["prompts"] == [(0, ["x"])]
    radar_pts = full["gt"].num_radar_pts[full["pasted"]]
    # the same draws (the paste comes before the dropout), the lidar dropped: pasted boxes the radar has points of
    item = FrameDataset(val.source, pre, modality_dropout={"lidar": 1.0}, **kw)[0]
    present = dict(zip(MODALITIES, item["inputs"]["present"]))
    assert not present["lidar"] and present["radar"]
    meta = item["data_samples"]
    assert meta["pasted"].sum() == (radar_pts > 0).sum() and len(meta["gt"]) == own + (radar_pts > 0).sum()
    assert (meta["gt"].num_radar_pts[meta["pasted"]] > 0).all()
    item = FrameDataset(val.source, pre, modality_dropout={"lidar": 1.0, "radar": 1.0}, **kw)[0]
    present = dict(zip(MODALITIES, item["inputs"]["present"]))
    assert present["camera"] and not present["lidar"] and not present["radar"]
    meta = item["data_samples"]  # cameras only: no pasted box is shown
    assert len(meta["gt"]) == own and not meta["pasted"].any() and meta["prompts"] == [(0, ["x"])]


def test_grounding_loss_leaves_pasted_boxes_out_of_its_objects(sets):
    """The loss with pasted rows marked equals the loss over the frame's own boxes alone (same draws)."""
    from perception.config import build, load_config
    from perception.language.text_encoder import PromptBank, TextEncoder
    from perception.models.heads.grounding import N_GEOM
    from perception.training.wrapper import FusionDetector

    pre, _, val, _ = sets
    inputs, meta = val._load(0)
    _, gt, pasted, _ = val.paste.apply(inputs, meta["gt"], np.random.default_rng(0), meta["token"])
    assert pasted.any()
    net = build(load_config("configs/tiny.py")["model"])
    bank = PromptBank(["cars ahead", "pedestrians on the left"], TextEncoder.from_config(None))
    cars = frozenset(t for t, c in zip(gt.instance_tokens, gt.labels) if c == 0)
    channels = net.grounding.obj[0].in_features - N_GEOM  # the fused BEV map's, which the head samples
    bev = torch.randn(1, channels, 128, 128, generator=torch.Generator().manual_seed(0))

    def loss(boxes, mask):
        torch.manual_seed(0)  # the jitter of the ground-truth boxes
        model = FusionDetector(net, pre.to_dict(), prompt_bank=bank, seed=0)
        sample = {"gt": boxes, "prompts": [(0, cars), (1, frozenset())], "pasted": mask}
        return model.grounding_loss({"bev": bev}, [sample], "cpu")

    marked = loss(gt, pasted)
    alone = loss(gt[np.flatnonzero(~pasted)], None)
    unmarked = loss(gt, np.zeros_like(pasted))
    assert torch.allclose(marked, alone) and not torch.allclose(marked, unmarked)


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
    with pytest.raises(ValueError, match="attempts"):
        build_paste({"classes": {"bus": 2}, "attempts": 0})
    assert build_paste({"classes": {"bus": 2}, "occlusion": True, "attempts": 3}).record()["attempts"] == 3


def test_a_moving_objects_trail_counts_for_overlaps_and_for_the_points_removed():
    """A car at 10 m/s with a sweep 0.3 s old: its older points lie 3 m behind its box. A parked car on that
    trail (clear of the box itself) keeps it from being pasted; on a free road the frame's points along the
    trail are removed and the car's own points of both sweeps added."""
    from perception.types import Boxes3D

    paste = ObjectPaste({"car": 1}, min_points=5)
    paste.columns = {"lidar": ["x", "y", "z", "intensity", "time_lag"]}
    paste.pc_range = np.array([-50.0, -50.0, -5.0, 50.0, 50.0, 3.0])
    box = np.array([10.0, 0.0, 0.8, 4.0, 1.8, 1.5, 0.0, 10.0, 0.0])
    rng = np.random.default_rng(0)
    now = np.c_[rng.uniform(8.2, 11.8, 40), rng.uniform(-0.8, 0.8, 40), rng.uniform(0.2, 1.4, 40), np.ones(40),
                np.zeros(40)]
    before = now + np.array([-3.0, 0, 0, 0, 0.3])  # the same surface 0.3 s earlier
    far = np.array([[30.0, 10.0, 0.5, 1.0, 0.0]])  # a point of something else, outside the trail
    paste.add_frame({"lidar": {"points": np.r_[now, before, far].astype(np.float32)}},
                    Boxes3D(box[None], [0], instance_tokens=["a"]), "src")
    assert len(paste.db[0]) == 1 and len(paste.db[0][0]["lidar"]) == 80  # both sweeps, not the far point
    parked = Boxes3D(np.array([[5.5, 0.0, 0.8, 2.0, 1.8, 1.5, 0.0, 0.0, 0.0]]), [0], instance_tokens=["b"])
    ground = np.c_[rng.uniform(0.0, 14.0, 200), rng.uniform(-0.8, 0.8, 200), np.full(200, 0.3), np.ones(200),
                   np.zeros(200)].astype(np.float32)
    frame = {"lidar": {"points": ground}}
    _, gt, pasted, _ = paste.apply(frame, parked, np.random.default_rng(1), "dst")
    assert not pasted.any()  # the box alone (8-12 m) would clear the parked car (4.5-6.5 m); its trail does not
    empty = Boxes3D(np.zeros((0, 9)), np.zeros(0, np.int64), instance_tokens=[])
    out, gt, pasted, _ = paste.apply(frame, empty, np.random.default_rng(1), "dst")
    assert pasted.all() and len(gt) == 1
    kept = out["lidar"]["points"][:-80]
    # the frame's points from the trail's rear end (5 m less the margin) to the box's front (12 m plus it) are gone
    span = (ground[:, 0] >= 4.8 - 1e-4) & (ground[:, 0] <= 12.2 + 1e-4)
    np.testing.assert_array_equal(kept, ground[~span])


@pytest.fixture(scope="module")
def imaged(sets):
    """The same frames with multi-modal pasting: the objects' image patches pasted too."""
    from perception.training.data import FrameDataset

    pre, ds, val, _ = sets
    paste = ObjectPaste(ALL, min_points=5, images=True)
    train = FrameDataset(ds.source, pre, paste=paste, seed=0)
    paste.build(train, progress=False)
    return pre, FrameDataset(val.source, pre, paste=paste, seed=0), train


def test_image_patches_are_kept_of_well_visible_objects_and_stay_small(imaged):
    from perception.training.patches import PATCH_MAX_AREA, PATCH_MIN_VISIBILITY

    pre, val, train = imaged
    H, W = pre.spec["camera"]["size"]
    entries = [e for c in val.paste.db.values() for e in c]
    with_views = [e for e in entries if e["views"]]
    assert with_views and len(with_views) < len(entries)
    assert all(e["visibility"] == 0 or e["visibility"] >= PATCH_MIN_VISIBILITY for e in with_views)
    assert all(v["patch"].size <= PATCH_MAX_AREA * H * W * 3 for e in with_views for v in e["views"].values())
    # each patch is its frame's pixels at its origin
    frames = {train._load(i)[1]["token"]: train._load(i)[0]["camera"]["images"] for i in range(len(train))}
    for e in with_views:
        for n, v in e["views"].items():
            (u, w), (h, pw) = v["origin"], v["patch"].shape[:2]
            np.testing.assert_array_equal(v["patch"], frames[e["token"]][n, w:w + h, u:u + pw])


def test_patch_bounds_count_only_the_cameras_that_see_the_object():
    """A rectangle in front of a camera but beside and below its image (a cone a side camera does not see)
    neither becomes a patch nor counts against the area cap; a rectangle over most of an image keeps the object
    out of image pasting."""
    from perception.training.patches import patches

    images = np.arange(2 * 128 * 224 * 3, dtype=np.uint32).astype(np.uint8).reshape(2, 128, 224, 3)
    cam = {"images": images, "ego2img": np.stack([np.eye(4)] * 2)}
    views = patches(cam, np.array([[10.0, 20.0, 30.0, 50.0], [598.0, 151.0, 852.0, 290.0]]))
    assert list(views) == [0] and views[0]["patch"].shape == (30, 20, 3) and views[0]["origin"] == (10, 20)
    assert patches(cam, np.array([[10.0, 20.0, 30.0, 50.0], [0.0, 0.0, 200.0, 120.0]])) == {}
    assert list(patches(cam, np.array([[10.0, 20.0, 30.0, 50.0], [np.nan] * 4]))) == [0]


def _owner(rects: np.ndarray, depth: np.ndarray, hw) -> np.ndarray:
    """(H, W) which box each pixel shows, painting the boxes' rectangles far to near (-1: none)."""
    out = np.full(hw, -1)
    seen = np.flatnonzero(np.isfinite(depth))
    for k in seen[np.argsort(-depth[seen], kind="stable")]:
        u0, v0 = max(int(np.floor(rects[k, 0])), 0), max(int(np.floor(rects[k, 1])), 0)
        out[v0:max(int(np.ceil(rects[k, 3])), 0), u0:max(int(np.ceil(rects[k, 2])), 0)] = k
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_image_patches_land_where_the_pasted_boxes_project_behind_nearer_own_objects(imaged, seed):
    """Every pixel shows what the nearest box covering it brought: a pasted object's own pixels from the frame
    it came from (stretched from its rectangle there onto its rectangle here: the ego pose at each camera's
    stamp moves the rig a little), the frame's own pixels where an own object stands nearer or nothing was
    pasted."""
    from perception.geometry import box_image_rects

    pre, val, _ = imaged
    paste = val.paste
    inputs, meta = val._load(1)
    images = inputs["camera"]["images"].copy()
    out, gt, pasted, shown = paste.apply(inputs, meta["gt"], np.random.default_rng(seed), meta["token"])
    np.testing.assert_array_equal(inputs["camera"]["images"], images)  # the cached frame untouched
    assert pasted.any() and shown.any() and not shown[~pasted].any()
    new = np.flatnonzero(pasted)
    entry = {(e["instance"], e["token"]): e for entries in paste.db.values() for e in entries}
    chosen = [entry[i[len("pasted:"):], t[len("pasted:"):]] for i, t in zip(gt.instance_tokens[new], gt.tokens[new])]
    # a patch shown carries at most the visibility annotated where it came from (less where nearer objects
    # cover some of it); one no camera shows, none
    for e, s, v in zip(chosen, shown[new], gt.visibility[new]):
        assert v == PASTED_VISIBILITY if not s else 1 <= v <= (e["visibility"] or 4)
    P = inputs["camera"]["ego2img"]
    rects, depth = box_image_rects(gt.corners(), P)
    painted = 0
    for n in range(len(P)):
        # a pasted object without a patch from this camera (pasted with its points only) is not drawn in it: what
        # lies behind shows through
        drawn = np.array([k not in new or n in chosen[int(np.flatnonzero(new == k)[0])]["views"]
                          for k in range(len(gt))])
        owner = _owner(rects[n], np.where(drawn, depth[n], np.inf), images.shape[1:3])
        frame_px = (owner < 0) | ~np.isin(owner, new)
        np.testing.assert_array_equal(out["camera"]["images"][n][frame_px], images[n][frame_px])
        for k in np.intersect1d(np.unique(owner), new):
            view = chosen[int(np.flatnonzero(new == k)[0])]["views"][n]
            v, u = np.nonzero(owner == k)
            # the ego pose at each camera's own stamp moves the rig a little from frame to frame: the patch is
            # stretched from the rectangle it was cut from onto this frame's (pixel centres, nearest pixel)
            r, src = rects[n, k], view["rect"]
            pu = np.floor((u + 0.5 - r[0]) / (r[2] - r[0]) * (src[2] - src[0]) + src[0]).astype(int) - view["origin"][0]
            pv = np.floor((v + 0.5 - r[1]) / (r[3] - r[1]) * (src[3] - src[1]) + src[1]).astype(int) - view["origin"][1]
            inside = (pv >= 0) & (pv < view["patch"].shape[0]) & (pu >= 0) & (pu < view["patch"].shape[1])
            np.testing.assert_array_equal(out["camera"]["images"][n][v[inside], u[inside]],
                                          view["patch"][pv[inside], pu[inside]])
            np.testing.assert_array_equal(out["camera"]["images"][n][v[~inside], u[~inside]],
                                          images[n][v[~inside], u[~inside]])
            painted += int(inside.sum())
    assert painted > 0


def _rig(f, yaw=0.0):
    """One camera looking along the ego's heading turned by ``yaw``, principal point at the centre of a
    64 x 96 image: (1, 4, 4) ego -> pixel."""
    K = np.array([[f, 0, 48, 0], [0, f, 32, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])  # camera yaw in the ego frame
    return (K @ np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]]) @ R.T)[None]


def test_a_patch_is_stretched_onto_another_rigs_rectangle():
    """A camera with twice the focal length sees the pasted box's rectangle twice as large about the image
    centre: the patch (each pixel's column and row written in its colour) covers that rectangle and nothing else,
    in order, its first and last columns and rows at the rectangle's edges."""
    from perception.geometry import box_image_rects
    from perception.training.patches import paint, patches

    box = np.array([[20.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0]])
    v, u = np.mgrid[0:64, 0:96]
    coded = np.stack([u + 1, v + 1, np.full_like(u, 255)], -1).astype(np.uint8)[None]  # 0 nowhere
    source = {"images": coded, "ego2img": _rig(40.0)}
    views = patches(source, box_image_rects(box_corners(box), source["ego2img"])[0][:, 0])
    assert list(views) == [0]
    target = {"images": np.zeros((1, 64, 96, 3), np.uint8), "ego2img": _rig(80.0)}
    canvas, shown = paint(target, np.zeros((0, 9)), box, [views])
    r = box_image_rects(box_corners(box), target["ego2img"])[0][0, 0]
    assert shown.all() and (r[2] - r[0]) == pytest.approx(2 * (views[0]["rect"][2] - views[0]["rect"][0]))
    lit = np.argwhere(canvas[0, :, :, 2] == 255)
    assert lit[:, 1].min() == int(np.floor(r[0])) and lit[:, 1].max() == int(np.ceil(r[2])) - 1
    assert lit[:, 0].min() == int(np.floor(r[1])) and lit[:, 0].max() == int(np.ceil(r[3])) - 1
    assert len(lit) == (np.ptp(lit[:, 0]) + 1) * (np.ptp(lit[:, 1]) + 1)  # the whole rectangle, nothing beside it
    rows, cols = slice(lit[:, 0].min(), lit[:, 0].max() + 1), slice(lit[:, 1].min(), lit[:, 1].max() + 1)
    got_u, got_v = canvas[0, rows, cols, 0].astype(int) - 1, canvas[0, rows, cols, 1].astype(int) - 1
    (u0, v0), (ph, pw) = views[0]["origin"], views[0]["patch"].shape[:2]
    # every source column and row of the patch appears, in order, each twice or so (nearest pixel)
    assert (np.diff(got_u, axis=1) >= 0).all() and (np.diff(got_v, axis=0) >= 0).all()
    assert (got_u[:, 0] == u0).all() and (got_u[:, -1] == u0 + pw - 1).all()
    assert (got_v[0] == v0).all() and (got_v[-1] == v0 + ph - 1).all()
    assert set(np.unique(got_u)) == set(range(u0, u0 + pw)) and set(np.unique(got_v)) == set(range(v0, v0 + ph))


def test_a_patch_hidden_by_a_nearer_own_object_or_missing_from_a_camera_is_not_imaged():
    from perception.training.patches import paint

    far = np.array([[30.0, 0.0, 0.0, 4.0, 1.8, 1.5, 0.0, 0.0, 0.0]])
    truck = np.array([[10.0, 0.0, 0.0, 6.0, 2.5, 3.0, 0.0, 0.0, 0.0]])  # between the camera and the car
    images = np.zeros((1, 64, 96, 3), np.uint8)
    view = {0: {"rect": np.array([40.0, 28.0, 56.0, 36.0]), "origin": (40, 28), "patch": np.full((8, 16, 3), 9,
                                                                                                 np.uint8)}}
    cam = {"images": images, "ego2img": _rig(40.0)}
    canvas, shown = paint(cam, truck, far, [view])
    assert not shown.any() and np.array_equal(canvas, images)  # painted, then covered by the truck's own pixels
    canvas, shown = paint(cam, np.zeros((0, 9)), far, [view])
    assert shown.all() and (canvas == 9).any()
    # a second camera (turned a little) whose image the car reaches too, with no patch from it: not imaged,
    # though the first camera shows it (the semantic head would paint it in both)
    two = {"images": np.zeros((2, 64, 96, 3), np.uint8), "ego2img": np.concatenate([_rig(40.0), _rig(40.0, 0.3)])}
    canvas, shown = paint(two, np.zeros((0, 9)), far, [view])
    assert not shown.any() and (canvas[0] == 9).any()


def test_a_half_covered_patch_shows_its_share_and_lowers_the_visibility():
    """A nearer own box covering part of a pasted car's rectangle: paint reports the share of the car's painted
    pixels still showing it (counted here on the canvas), and the visibility level falls with it."""
    from perception.training.patches import paint, visibility_level

    far = np.array([[12.0, 0.0, 0.0, 4.0, 1.8, 1.5, 0.0, 0.0, 0.0]])
    view = {0: {"rect": np.array([30.0, 20.0, 66.0, 44.0]), "origin": (30, 20),
                "patch": np.full((24, 36, 3), 9, np.uint8)}}
    cam = {"images": np.zeros((1, 64, 96, 3), np.uint8), "ego2img": _rig(40.0)}
    canvas, share = paint(cam, np.zeros((0, 9)), far, [view])
    whole = int((canvas[0, :, :, 0] == 9).sum())
    assert share[0] == 1.0 and whole > 0
    for y, width in ((0.2, 0.4), (0.6, 1.2)):  # a post 6 m ahead, its right edge on the car's centre line
        post = np.array([[6.0, y, 0.0, 0.3, width, 2.5, 0.0, 0.0, 0.0]])
        canvas, share = paint(cam, post, far, [view])
        assert 0 < share[0] < 1 and share[0] == pytest.approx((canvas[0, :, :, 0] == 9).sum() / whole)
        assert visibility_level(share, [4])[0] == (2 if width < 1 else 1)  # 0.5 x 0.9, 0.375 x 0.9 of it
    np.testing.assert_array_equal(visibility_level([1.0, 1.0, 1.0, 0.5, 0.3, 0.85, 0.5, 0.0], [4, 3, 0, 4, 4, 0, 0, 2]),
                                  [4, 3, 4, 2, 1, 4, 2, 1])


def test_min_points_counts_only_the_points_above_the_ground():
    """The road under a pedestrian hidden but for its feet returns points within the margin of the box's bottom:
    those do not show the object and do not let it into the database."""
    from perception.types import Boxes3D

    ped = np.array([12.0, 3.0, 0.9, 0.7, 0.7, 1.8, 0.0, 0.0, 0.0])
    rng = np.random.default_rng(0)
    road = np.c_[rng.uniform(11.7, 12.3, (40, 2)) - [0, 9.0], np.full(40, 0.05), np.ones(40)]
    for body, entered in ((3, False), (5, True)):
        paste = ObjectPaste({"pedestrian": 1}, min_points=5)
        paste.columns = {"lidar": ["x", "y", "z", "intensity"]}
        paste.pc_range = np.array([-50.0, -50.0, -5.0, 50.0, 50.0, 3.0])
        torso = np.c_[np.full(body, 12.0), np.full(body, 3.0), np.linspace(0.6, 1.6, body), np.ones(body)]
        pts = np.r_[road, torso].astype(np.float32)
        assert points_in_boxes(pts[:, :3].astype(np.float64), ped[None], MARGIN)[0].sum() == 40 + body
        paste.add_frame({"lidar": {"points": pts}}, Boxes3D(ped[None], [DETECTION_CLASSES.index("pedestrian")],
                                                            instance_tokens=["p"]), "f")
        assert (len(paste.db[DETECTION_CLASSES.index("pedestrian")]) == 1) == entered


def test_with_image_patches_a_camera_only_sample_keeps_the_pasted_objects_it_shows(imaged):
    pre, val, _ = imaged
    from perception.training.data import FrameDataset

    kw = dict(paste=val.paste, seed=0)
    full = FrameDataset(val.source, pre, **kw)[1]["data_samples"]
    assert full["pasted_imaged"].any() and not full["pasted_imaged"][~full["pasted"]].any()
    item = FrameDataset(val.source, pre, modality_dropout={"lidar": 1.0, "radar": 1.0}, **kw)[1]
    meta = item["data_samples"]
    assert meta["pasted"].sum() == full["pasted_imaged"].sum() and meta["pasted_imaged"][meta["pasted"]].all()
    # the semantic head is taught the patches: the shown pasted boxes carry a visibility it paints
    assert (meta["gt"].visibility[meta["pasted"]] != PASTED_VISIBILITY).any()


def test_an_object_behind_a_wall_the_lidar_sees_is_not_pasted():
    """occlusion=True: a car 20 m ahead (60 lidar points where it came from) is pasted on an open road; a wall
    at 12 m across its azimuths (its points fill the cells in front of the car, above the road) keeps it out; the
    road's own points at ground level in front of it do not, nor the same wall off to the side."""
    from perception.types import Boxes3D

    def paste_over(frame_points):
        paste = ObjectPaste({"car": 1}, min_points=5, occlusion=True)
        paste.columns = {"lidar": ["x", "y", "z", "intensity"]}
        paste.pc_range = np.array([-50.0, -50.0, -5.0, 50.0, 50.0, 3.0])
        rng = np.random.default_rng(0)
        car = np.c_[rng.uniform(18.2, 21.8, 60), rng.uniform(-0.8, 0.8, 60), rng.uniform(0.2, 1.4, 60), np.ones(60)]
        paste.add_frame({"lidar": {"points": car.astype(np.float32)}},
                        Boxes3D(np.array([[20.0, 0.0, 0.8, 4.0, 1.8, 1.5, 0.0, 0.0, 0.0]]), [0],
                                instance_tokens=["a"]), "src")
        empty = Boxes3D(np.zeros((0, 9)), np.zeros(0, np.int64), instance_tokens=[])
        return paste.apply({"lidar": {"points": frame_points.astype(np.float32)}}, empty, rng, "dst")[2]

    rng = np.random.default_rng(1)
    road = np.c_[rng.uniform(2.0, 17.0, 400), rng.uniform(-3.0, 3.0, 400), np.full(400, 0.02), np.ones(400)]
    wall = np.c_[np.full(800, 12.0), rng.uniform(-4.0, 4.0, 800), rng.uniform(0.0, 2.5, 800), np.ones(800)]
    aside = wall + [0.0, 30.0, 0.0, 0.0]  # the same wall off to the left: not in front of the car
    assert paste_over(road).all()
    assert not paste_over(np.r_[road, wall]).any()
    assert paste_over(np.r_[road, aside]).all()


def test_attempts_replace_a_hidden_candidate():
    """Two cars in the database, one behind a wall of the frame, one clear of it: one car wanted. With one
    attempt per car the draw that picks the hidden one pastes nothing; with two, every draw pastes the other."""
    from perception.types import Boxes3D

    rng = np.random.default_rng(0)
    wall = np.c_[np.full(800, 12.0), rng.uniform(-4.0, 4.0, 800), rng.uniform(0.0, 2.5, 800), np.ones(800)]
    frame = {"lidar": {"points": wall.astype(np.float32)}}
    empty = Boxes3D(np.zeros((0, 9)), np.zeros(0, np.int64), instance_tokens=[])

    def pasted(attempts):
        paste = ObjectPaste({"car": 1}, min_points=5, occlusion=True, attempts=attempts)
        paste.columns = {"lidar": ["x", "y", "z", "intensity"]}
        paste.pc_range = np.array([-50.0, -50.0, -5.0, 50.0, 50.0, 3.0])
        for name, y in (("behind", 0.0), ("aside", 25.0)):
            pts = np.c_[rng.uniform(18.2, 21.8, 60), rng.uniform(y - 0.8, y + 0.8, 60), rng.uniform(0.2, 1.4, 60),
                        np.ones(60)]
            paste.add_frame({"lidar": {"points": pts.astype(np.float32)}},
                            Boxes3D(np.array([[20.0, y, 0.8, 4.0, 1.8, 1.5, 0.0, 0.0, 0.0]]), [0],
                                    instance_tokens=[name]), name)
        return [int(paste.apply(frame, empty, np.random.default_rng(s), "dst")[2].sum()) for s in range(8)]

    assert 0 in pasted(1) and 1 in pasted(1)
    assert pasted(2) == [1] * 8


def test_occlusion_looks_across_the_rear_where_the_azimuth_wraps():
    """A car straight behind the ego spans azimuths on both sides of +-pi: the wall behind the ego hides it (its
    cells on both sides are found), the same wall in front of the ego does not."""
    from perception.training.sightlines import hidden, polar, seen_from

    rng = np.random.default_rng(0)
    wall = np.c_[np.full(800, -12.0), rng.uniform(-4.0, 4.0, 800), rng.uniform(0.0, 2.5, 800)]
    car = np.array([-20.0, 0.0, 0.8, 4.0, 1.8, 1.5, 0.0, 0.0, 0.0])
    assert hidden(car, polar(seen_from(wall, ["x", "y", "z"])))
    assert not hidden(car, polar(seen_from(wall * [-1.0, 1.0, 1.0], ["x", "y", "z"])))
    # the wall only on one side of the rear (y > 0): half the cells, not hidden
    assert not hidden(car, polar(seen_from(wall[wall[:, 1] > 0.05], ["x", "y", "z"])))


def _one_object_paste(classes, objects, **kw):
    """An ObjectPaste over hand-made sources: ``objects`` = [(class index, box row, name)], each with 60 lidar
    points inside its box."""
    from perception.types import Boxes3D

    paste = ObjectPaste(classes, min_points=5, **kw)
    paste.columns = {"lidar": ["x", "y", "z", "intensity"]}
    paste.pc_range = np.array([-50.0, -50.0, -5.0, 50.0, 50.0, 3.0])
    rng = np.random.default_rng(0)
    for label, box, name in objects:
        b = np.asarray(box, np.float64)
        pts = np.c_[rng.uniform(-0.45, 0.45, (60, 3)) * b[3:6] + b[:3], np.ones(60)]
        paste.add_frame({"lidar": {"points": pts.astype(np.float32)}}, Boxes3D(b[None], [label],
                                                                                instance_tokens=[name]), name)
    return paste


def test_segment_test_finds_what_lies_behind_a_box():
    """segment_enters: the ray from the origin to a point passes through the box before the point: a point
    behind the box, not one in front of it, inside it, beside it, or above it when the box is low."""
    from perception.training.sightlines import segment_enters

    box = np.array([10.0, 0.0, 0.75, 4.0, 2.0, 1.5, 0.3, 0.0, 0.0])
    pts = np.array([[20.0, 0.0, 0.5], [5.0, 0.0, 0.5], [10.0, 0.0, 0.75], [20.0, 8.0, 0.5], [20.0, 0.0, 6.0],
                    [-20.0, 0.0, 0.5]])
    assert segment_enters((0.0, 0.0, 1.0), pts, box).tolist() == [True, False, False, False, False, False]
    # seen from above the box (a lidar 3 m up), a point on the road just behind it is in its shadow
    assert segment_enters((0.0, 0.0, 3.0), np.array([[13.0, 0.0, 0.0]]), box).tolist() == [True]


def test_a_pasted_object_casts_its_lidar_shadow():
    """occlusion=True: a car pasted 10 m ahead removes the points of a wall 25 m ahead that its box hides from the
    lidar (in its azimuths, up to the height its roof shadows), not the wall's other points nor the road in front;
    without occlusion nothing of the wall is removed. The count is recorded."""
    from perception.types import Boxes3D

    car = [0, [10.0, 0.0, 0.75, 4.0, 1.8, 1.5, 0.0, 0.0, 0.0], "a"]
    rng = np.random.default_rng(1)
    wall = np.c_[np.full(2000, 25.0), rng.uniform(-10.0, 10.0, 2000), rng.uniform(0.0, 4.0, 2000), np.ones(2000)]
    road = np.c_[rng.uniform(3.0, 7.0, 200), rng.uniform(-2.0, 2.0, 200), np.full(200, 0.02), np.ones(200)]
    frame = {"lidar": {"points": np.r_[wall, road].astype(np.float32)}}
    empty = Boxes3D(np.zeros((0, 9)), np.zeros(0, np.int64), instance_tokens=[])
    from perception.training.sightlines import segment_enters

    behind = segment_enters(LIDAR_TOP_T, wall[:, :3], np.array(car[1]))
    assert 100 < behind.sum() < 1000  # the car hides part of the wall
    for occlusion in (True, False):
        paste = _one_object_paste({"car": 1}, [car], occlusion=occlusion)
        out, gt, pasted, _ = paste.apply(frame, empty, np.random.default_rng(0), "dst")
        assert pasted.sum() == 1
        pts = out["lidar"]["points"]
        kept_wall = pts[np.isclose(pts[:, 0], 25.0)]
        kept_road = pts[np.isclose(pts[:, 2], 0.02) & (pts[:, 0] < 7.5)]
        assert len(kept_road) == 200
        if occlusion:
            assert len(kept_wall) == 2000 - behind.sum() and paste.record()["points_shadowed"] == behind.sum()
            assert not segment_enters(LIDAR_TOP_T, kept_wall[:, :3].astype(np.float64), np.array(car[1])).any()
        else:
            assert len(kept_wall) == 2000 and paste.record()["points_shadowed"] == 0


def test_an_object_is_not_pasted_in_front_of_a_box_nor_behind_one_pasted_before():
    """occlusion=True: a car 10 m ahead would hide the frame's own car at 20 m straight behind it: not pasted;
    the same car 10 m ahead and 8 m to the side is. A truck 20 m ahead is not pasted behind a car pasted at 10 m
    before it (the classes are drawn in the config's order), and is without that car."""
    from perception.types import Boxes3D

    rng = np.random.default_rng(2)
    own_box = np.array([[20.0, 0.0, 0.75, 4.0, 1.8, 1.5, 0.0, 0.0, 0.0]])
    own_pts = np.c_[rng.uniform(18.2, 21.8, 80), rng.uniform(-0.8, 0.8, 80), rng.uniform(0.1, 1.4, 80), np.ones(80)]
    frame = {"lidar": {"points": own_pts.astype(np.float32)}}
    own = Boxes3D(own_box, [0], instance_tokens=["own"])
    ahead = [0, [10.0, 0.0, 0.75, 4.0, 1.8, 1.5, 0.0, 0.0, 0.0], "ahead"]
    aside = [0, [10.0, 8.0, 0.75, 4.0, 1.8, 1.5, 0.0, 0.0, 0.0], "aside"]
    for obj, want in ((ahead, 0), (aside, 1)):
        paste = _one_object_paste({"car": 1}, [obj], occlusion=True)
        assert paste.apply(frame, own, np.random.default_rng(0), "dst")[2].sum() == want
    # without the line-of-sight rules the hiding car is pasted
    paste = _one_object_paste({"car": 1}, [ahead])
    assert paste.apply(frame, own, np.random.default_rng(0), "dst")[2].sum() == 1

    empty = Boxes3D(np.zeros((0, 9)), np.zeros(0, np.int64), instance_tokens=[])
    truck = [DETECTION_CLASSES.index("truck"), [20.0, 0.0, 1.2, 6.0, 2.4, 2.4, 0.0, 0.0, 0.0], "truck"]
    both = _one_object_paste({"car": 1, "truck": 1}, [ahead, truck], occlusion=True)
    out, gt, pasted, _ = both.apply({"lidar": {"points": np.zeros((0, 4), np.float32)}}, empty,
                                    np.random.default_rng(0), "dst")
    assert gt.labels[pasted].tolist() == [0]
    alone = _one_object_paste({"car": 1, "truck": 1}, [truck], occlusion=True)
    out, gt, pasted, _ = alone.apply({"lidar": {"points": np.zeros((0, 4), np.float32)}}, empty,
                                     np.random.default_rng(0), "dst")
    assert gt.labels[pasted].tolist() == [DETECTION_CLASSES.index("truck")]


def test_lidar_origin_is_checked_and_recorded():
    paste = build_paste({"classes": {"car": 1}, "occlusion": True, "lidar_origin": (1.0, 0.0, 2.0)})
    assert paste.record()["lidar_origin"] == [1.0, 0.0, 2.0]
    with pytest.raises(ValueError, match="lidar_origin"):
        build_paste({"classes": {"car": 1}, "lidar_origin": (1.0, 2.0)})


def test_points_at_the_corners_of_a_turned_box_belong_to_it():
    """The points a pasted box removes and the points a database object keeps are every point within the margin
    of the box: also at the corners of a box turned 45 degrees, which lie farther from its centre than half its
    diagonal plus the margin."""
    from perception.training.paste import _in_any

    box = np.array([[0.0, 0.0, 0.0, 4.0, 4.0, 2.0, np.pi / 4, 0.0, 0.0]])
    corner = np.hypot(2 + MARGIN, 2 + MARGIN)  # 3.09 m along x, beyond 0.5 * diagonal + margin = 3.03 m
    pts = np.array([[corner - 0.01, 0.0, 0.0], [corner + 0.01, 0.0, 0.0], [0.0, -(corner - 0.01), 0.5]])
    np.testing.assert_array_equal(points_in_boxes(pts, box, MARGIN)[0], [True, False, True])
    np.testing.assert_array_equal(_in_any(pts, box), [True, False, True])
    paste = ObjectPaste({"car": 1}, min_points=1)
    paste.columns = {"lidar": ["x", "y", "z", "time_lag"]}
    lagged = np.c_[pts, np.zeros(3)]
    np.testing.assert_array_equal(paste._inside(lagged, box, "lidar")[0], [True, False, True])
