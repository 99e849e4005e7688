"""Ground-truth sampling (SECOND's object database; CenterPoint's and mmdetection3d's ObjectSample): objects of the
training split, with their lidar and radar points, pasted into other training frames, so that the rare classes
(buses, trailers, bicycles) are met in many more frames than the few that hold one.

- ``ObjectPaste.build(dataset)``: the database, from the dataset's gathered training frames (the pass fills the
  dataset's cache, which the first epoch would fill anyway): per annotated box of a configured class with at least
  ``min_points`` lidar points above the ground it stands on, the lidar and radar points that belong to it (a point of
  an earlier sweep belongs where the box's velocity carries it into the box, so a moving object keeps its smear over
  the sweeps), in its frame's ego coordinates, with the box.
- ``ObjectPaste.apply(inputs, gt, rng, token)``: per class up to ``classes[name]`` objects drawn from the other
  frames, put where they stood in theirs (their range and the angle the sensors saw them from stay real), each
  dropped when its footprint overlaps an annotated box or one pasted before it; the frame's points inside a
  pasted box are removed and the object's points added; its box joins the ground truth, marked in ``pasted``.
- ``images=True`` (multi-modal pasting, as UVTR's and MoCa's ground-truth sampling): the database also keeps
  each object's image patch in every camera that saw it (the rectangle its box covers; for objects annotated
  well visible whose patches stay small, see PATCH_MIN_VISIBILITY), and ``apply`` pastes the
  patches into the frame's images where its box projects there, far to near, the frame's own objects repainted
  with their own pixels when they stand nearer (an object behind a parked car stays behind it). A rig of another
  calibration gets the patch stretched onto the rectangle its cameras give the box.

``occlusion=True``: pasting keeps the lidar's line of sight, both ways, as LiDAR-Aug and Real3D-Aug do. A
candidate is passed over where the frame's lidar sees something in front of it (a hedge, a wall, a parked van
between the sensor and where it would stand: ``hidden``), which neither sensor would see through: pasted there,
an object would teach the network to find cars inside buildings; and where it would stand in front of most of a
box of the frame or of an object pasted before it, or behind most of one pasted before it (``covers``: the
network would be taught an object whose points it sees through another, and with ``images`` a box the pasted
patch paints over). A pasted object then casts its shadow: the frame's lidar points behind it, whose ray from
the lidar passes through its box (or through its trail, for the earlier sweeps of a moving one), are removed
(``shadowed``). The rays start at the lidar's mount in the ego frame (``lidar_origin``, nuScenes' LIDAR_TOP as
the synthetic world's rig). Radar points are not shadowed (a radar's returns reach under and around vehicles).
The line-of-sight tests live in ``perception.training.sightlines``.

A moving object's earlier sweeps trail behind its box: the overlap test and the removal of the frame's points
cover the box along that trail (back to the oldest of its points). An object is not pasted beside itself (the
same instance from another keyframe of its scene).

What the sensors that remain cannot show: without ``images`` the images are not changed, so a pasted box carries
visibility 1 (the perspective semantic head ignores its pixels); with them it carries what its patch shows: the
visibility annotated where it came from, lowered by the share of its painted pixels that nearer objects of the frame
cover (``patches.visibility_level``; the semantic head learns a patch left at level 2 or more). The camera depth loss
ignores the pixels a pasted box covers either way (a patch shows its own frame's background about the object, at
depths the frame's lidar does not measure). When modality dropout removes the lidar, a pasted box stays only where
the radar kept has points of it or, with ``images``, where the cameras kept show it (``FrameDataset``; the image
augmentation after the pasting can still crop a patch at an image's border out of view, as it can the frame's own
objects). The grounding loss leaves pasted boxes out of its objects (the frame's prompts were written for its own
objects). The keyframe before (temporal training) is left as it was: a pasted object appears in the current frame
only.
"""

from __future__ import annotations

import sys

import numpy as np
from mmengine.hooks import Hook

from perception.geometry import (
    LIDAR_TOP_T,
    box_corners,
    box_image_rects,
    footprints,
    footprints_overlap,
    points_in_boxes,
)
from perception.training.patches import NEAR, PATCH_MIN_VISIBILITY, paint, patches, visibility_level
from perception.training.sightlines import covers, hidden, polar, seen_from, shadowed
from perception.types import Boxes3D
from perception.types.labels import DETECTION_CLASSES

MARGIN = 0.2  # metres about a box within which a point belongs to it (and is removed where an object is pasted)
PASTED_VISIBILITY = 1  # the nuScenes level "0-40 % visible": the images do not show a pasted object


class ObjectPaste:
    """``classes``: {class name: objects pasted per frame}; ``min_points``: the fewest lidar points above the
    ground (more than the margin over its box's bottom) an object needs to enter the database; ``prob``: the
    probability that a frame gets pasted objects at all; ``fade``: the share
    of the training iterations with pasting (PointAugmenting's and TransFusion's fade: the last ones train on the
    frames as they are, which removes false positives the pasting teaches; ``PasteFade`` stops it); ``images``:
    paste the objects' image patches too (see the module's docstring); ``occlusion``: an object is not pasted
    where the frame's lidar sees something standing in front of it (``hidden``), nor where it would hide most of
    a box or be hidden by a pasted one (``covers``), and it casts its lidar shadow (``shadowed``); ``attempts``:
    candidates drawn per object wanted (1: a candidate that overlaps or is hidden is simply not replaced);
    ``lidar_origin``: where the lidar's rays start, in the ego frame."""

    def __init__(self, classes: dict, min_points: int = 5, prob: float = 1.0, fade: float = 1.0,
                 images: bool = False, occlusion: bool = False, attempts: int = 1,
                 lidar_origin=LIDAR_TOP_T):
        bad = sorted(set(classes) - set(DETECTION_CLASSES))
        if bad:
            raise ValueError(f"train.augment.paste.classes: unknown classes {bad}; valid: {list(DETECTION_CLASSES)}")
        if any(int(n) < 0 for n in classes.values()):
            raise ValueError(f"train.augment.paste.classes: counts must be >= 0, got {dict(classes)}")
        if not 0.0 <= float(prob) <= 1.0 or int(min_points) < 1:
            raise ValueError(f"train.augment.paste: prob in [0, 1] and min_points >= 1, got {prob}, {min_points}")
        self.classes = {DETECTION_CLASSES.index(c): int(n) for c, n in classes.items() if int(n) > 0}
        if not 0.0 < float(fade) <= 1.0:
            raise ValueError(f"train.augment.paste.fade: the share of training with pasting, in (0, 1], got {fade}")
        self.min_points, self.prob, self.fade, self.images = int(min_points), float(prob), float(fade), bool(images)
        self.occlusion = bool(occlusion)
        if int(attempts) < 1:
            raise ValueError(f"train.augment.paste.attempts: candidates per object wanted, >= 1, got {attempts}")
        self.attempts = int(attempts)
        self.origin = np.asarray(lidar_origin, np.float64)
        if self.origin.shape != (3,) or not np.isfinite(self.origin).all():
            raise ValueError(f"train.augment.paste.lidar_origin: the lidar's (x, y, z) in the ego frame, got "
                             f"{lidar_origin}")
        self.shadowed = 0  # frame lidar points removed in pasted objects' shadows (in this process)
        self.active = True  # PasteFade turns it off for the training's last iterations
        self.frames = self.objects = 0  # pasted so far (in this process)
        self.db: dict[int, list[dict]] = {c: [] for c in self.classes}
        self.columns: dict[str, list[str]] = {}

    def build(self, dataset, progress: bool = True, indices=None) -> dict[str, int]:
        """Fill the database from every frame of ``dataset`` (a FrameDataset that keeps gathered inputs), or from
        those of ``indices``; returns the number of objects per class name."""
        from tqdm import tqdm

        if not dataset.augmenting:
            raise ValueError("object paste needs the gathered (not yet voxelized) frames: an augmenting dataset")
        self.columns = {m: list(dataset.pre.spec[m]["columns"]) for m in ("lidar", "radar")}
        self.pc_range = np.asarray(dataset.pre.spec["lidar"]["pc_range"], np.float64)
        for i in tqdm(range(len(dataset)) if indices is None else list(indices), desc="object database",
                      unit="frame", file=sys.stdout, mininterval=5, disable=not progress):
            inputs, meta = dataset._load(i)
            self.add_frame(inputs, meta["gt"], meta["token"])
        return {DETECTION_CLASSES[c]: len(v) for c, v in self.db.items()}

    def add_frame(self, inputs: dict, gt: Boxes3D | None, token: str) -> None:
        if gt is None or not len(gt) or "lidar" not in inputs:
            return
        pick = np.flatnonzero(np.isin(gt.labels, list(self.classes)) & np.isfinite(gt.data[:, :7]).all(1))
        r = self.pc_range
        pick = pick[(gt.data[pick, 0] > r[0]) & (gt.data[pick, 0] < r[3]) & (gt.data[pick, 1] > r[1])
                    & (gt.data[pick, 1] < r[4])]
        if not len(pick):
            return
        inside = {m: self._inside(inputs[m]["points"], gt.data[pick], m) for m in ("lidar", "radar") if m in inputs}
        attrs = gt.attribute_ids
        vis = gt.visibility if gt.visibility is not None else np.zeros(len(gt), np.int64)
        cam = inputs.get("camera") if self.images else None
        if cam is not None:
            rects = box_image_rects(box_corners(gt.data[pick]), cam["ego2img"], NEAR)[0]  # N, K, 4
        for j, k in enumerate(pick):
            lidar = inputs["lidar"]["points"][inside["lidar"][j]]
            if _above_ground(lidar, self.columns["lidar"], gt.data[k]) < self.min_points:
                continue
            radar = inputs["radar"]["points"][inside["radar"][j]] if "radar" in inside else None
            lag = [p[:, self.columns[m].index("time_lag")].max() for m, p in (("lidar", lidar), ("radar", radar))
                   if p is not None and len(p) and "time_lag" in self.columns[m]]
            self.db[int(gt.labels[k])].append({
                "box": gt.data[k].copy(), "label": int(gt.labels[k]), "attribute": int(attrs[k]),
                "lidar": lidar.copy(), "radar": None if radar is None else radar.copy(), "token": token,
                "instance": None if gt.instance_tokens is None else gt.instance_tokens[k],
                "trail": _trail(gt.data[k], max(lag, default=0.0)), "lag": float(max(lag, default=0.0)),
                "visibility": int(vis[k]),
                "views": {} if cam is None or 0 < vis[k] < PATCH_MIN_VISIBILITY else patches(cam, rects[:, j])})

    def _inside(self, points: np.ndarray, boxes: np.ndarray, modality: str) -> np.ndarray:
        """(M, N) which points belong to each box: an earlier sweep's point moved on by the box's velocity times
        its time lag (the sweeps are in the current ego frame; the object moved since)."""
        cols = self.columns[modality]
        xyz = points[:, [cols.index("x"), cols.index("y"), cols.index("z")]].astype(np.float64)
        if "time_lag" not in cols or not len(points):
            return points_in_boxes(xyz, boxes, MARGIN)
        lag = points[:, cols.index("time_lag")].astype(np.float64)
        out = np.zeros((len(boxes), len(points)), bool)
        for j, b in enumerate(boxes):  # only the points that can reach the box are moved and tested
            v = np.nan_to_num(b[7:9])
            reach = _reach(b[None])[0] + np.hypot(*v) * lag.max()
            near = np.flatnonzero((np.abs(xyz[:, 0] - b[0]) <= reach) & (np.abs(xyz[:, 1] - b[1]) <= reach))
            moved = xyz[near]
            moved[:, :2] += lag[near, None] * v[None]
            out[j, near] = points_in_boxes(moved, b[None], MARGIN)[0]
        return out

    def apply(self, inputs: dict, gt: Boxes3D | None, rng: np.random.Generator, token: str
              ) -> tuple[dict, Boxes3D | None, np.ndarray, np.ndarray]:
        """(inputs, ground truth, pasted, imaged: (N,) bool over the ground truth's rows, the pasted ones and those
        of them whose image patch landed in a camera's view); the inputs are not modified."""
        gt = gt if gt is not None else Boxes3D.empty()
        none = np.zeros(len(gt), bool)
        if not self.active or "lidar" not in inputs or not self.classes or rng.random() >= self.prob:
            return inputs, gt, none, none
        own = gt.data[np.isfinite(gt.data[:, :7]).all(1)]
        # the frame's boxes along their own sweeps' trails are not known here: their boxes at this stamp
        taken = [own]
        present = set() if gt.instance_tokens is None else set(gt.instance_tokens)
        chosen: list[dict] = []
        seen = seen_from(inputs["lidar"]["points"], self.columns["lidar"], self.origin) if self.occlusion else None
        view = polar(seen) if seen is not None else None
        for c, n in self.classes.items():
            pool = [e for e in self.db[c] if e["token"] != token and (e["instance"] is None
                                                                      or e["instance"] not in present)]
            placed = 0
            for i in rng.permutation(len(pool))[:n * self.attempts]:
                if placed == n:
                    break
                e = pool[i]
                have = np.concatenate(taken)
                if (e["instance"] is not None and e["instance"] in present) or (
                        len(have) and _overlaps(e["trail"], have)) or (
                        view is not None and (hidden(e["box"], view, self.origin)
                                              or covers(e["box"][None], have, self.origin)
                                              or covers(np.concatenate([p["trail"] for p in chosen] or [have[:0]]),
                                                         e["box"][None], self.origin))):
                    continue
                chosen.append(e)
                placed += 1
                taken.append(e["trail"])
                if e["instance"] is not None:
                    present.add(e["instance"])
        if not chosen:
            return inputs, gt, none, none
        boxes = np.stack([e["box"] for e in chosen])
        trails = np.concatenate([e["trail"] for e in chosen])
        out = dict(inputs)
        for m in ("lidar", "radar"):
            if m not in inputs:
                continue
            cols = self.columns[m]
            pts = inputs[m]["points"]
            xyz = pts[:, [cols.index("x"), cols.index("y"), cols.index("z")]]
            keep = ~_in_any(xyz, trails)
            if m == "lidar" and self.occlusion:
                lag = pts[:, cols.index("time_lag")] if "time_lag" in cols else None
                shade = np.zeros(len(pts), bool)
                for e in chosen:
                    shade |= shadowed(xyz, lag, e["trail"], e["lag"], self.origin, seen[:2])
                self.shadowed += int((shade & keep).sum())
                keep &= ~shade
            added = [e[m] for e in chosen if e.get(m) is not None and len(e[m])]
            out[m] = {**inputs[m], "points": np.concatenate([pts[keep], *added]).astype(pts.dtype)}
        imaged = np.zeros(len(chosen), bool)
        vis = np.full(len(chosen), PASTED_VISIBILITY, np.int64)  # what the frame's images show of each
        if self.images and "camera" in inputs:
            images, share = paint(inputs["camera"], own, boxes, [e["views"] for e in chosen])
            out["camera"] = {**inputs["camera"], "images": images}
            imaged = share > 0
            vis[imaged] = visibility_level(share[imaged], [e["visibility"] for e, i in zip(chosen, imaged) if i])
        fields = {}
        for name, values in gt.fields.items():
            if name == "attributes":
                new = np.array([e["attribute"] for e in chosen], np.int64)
            elif name == "num_lidar_pts":
                new = np.array([len(e["lidar"]) for e in chosen], np.int64)
            elif name == "num_radar_pts":
                new = np.array([0 if e["radar"] is None else len(e["radar"]) for e in chosen], np.int64)
            elif name == "visibility":  # what the frame's images show of it (patches.visibility_level)
                new = vis
            elif name == "instance_tokens":  # the pasted object's own identity, marked
                new = np.array([f"pasted:{e['instance']}" for e in chosen], dtype=object)
            else:  # annotation tokens: the frame it came from
                new = np.array([f"pasted:{e['token']}" for e in chosen], dtype=object)
            fields[name] = np.concatenate([values, new])
        if "visibility" not in fields:  # the frame's own boxes: unknown (0, painted as annotated)
            fields["visibility"] = np.concatenate([np.zeros(len(gt), np.int64), vis])
        self.frames, self.objects = self.frames + 1, self.objects + len(chosen)
        merged = Boxes3D(np.concatenate([gt.data, boxes]), np.concatenate([gt.labels, [e["label"] for e in chosen]]),
                         **fields)
        return out, merged, np.concatenate([none, np.ones(len(chosen), bool)]), np.concatenate([none, imaged])

    def record(self) -> dict:
        """What the training's checkpoint records of the pasting."""
        return {"classes": {DETECTION_CLASSES[c]: n for c, n in self.classes.items()}, "min_points": self.min_points,
                "prob": self.prob, "fade": self.fade, "images": self.images, "occlusion": self.occlusion,
                "attempts": self.attempts, "lidar_origin": [float(v) for v in self.origin],
                "points_shadowed": self.shadowed,
                "database": {DETECTION_CLASSES[c]: len(v) for c, v in self.db.items()},
                "frames_pasted": self.frames, "objects_pasted": self.objects}


class PasteFade(Hook):
    """Stops the pasting after the first ``fade`` x max_iters iterations: switched off after the last of them,
    before the next batch is drawn (and at the start of a run resumed past them). It switches the dataset of the
    main process: a fade with DataLoader workers is refused by promptfusion-train."""

    def __init__(self, paste: ObjectPaste, max_iters: int):
        self.paste, self.stop = paste, int(round(paste.fade * max_iters))

    def before_train(self, runner):  # a resumed run past the stop draws no pasted frame, skipped ones included
        self.paste.active = runner.iter < self.stop

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.paste.active and runner.iter + 1 >= self.stop:
            self.paste.active = False
            runner.logger.info(f"object paste off from iteration {runner.iter + 1} (fade {self.paste.fade}): "
                               f"{self.paste.frames} frames had {self.paste.objects} objects pasted")


def _above_ground(points: np.ndarray, cols: list[str], box: np.ndarray) -> int:
    """How many of an object's points lie above the margin over its box's bottom: the ground it stands on is
    within the margin and returns points under every box, which do not show the object (a pedestrian hidden
    but for the road at its feet would enter the database with ``min_points`` of road)."""
    return int((points[:, cols.index("z")] > box[2] - box[5] / 2 + MARGIN).sum())


def _reach(boxes: np.ndarray) -> np.ndarray:
    """(N,) how far from its centre, in x or y, a point within the margin of each box can lie: its grown corners'
    distance (the prefilter of the point-in-box tests)."""
    return np.hypot(boxes[:, 3] / 2 + MARGIN, boxes[:, 4] / 2 + MARGIN)


def _trail(box: np.ndarray, lag: float) -> np.ndarray:
    """(K, 9) the box where it stood over the last ``lag`` seconds (its velocity back in time), spaced at most
    half its length apart: what its earlier sweeps' points lie in. K = 1 for a still object."""
    v = np.nan_to_num(box[7:9])
    span = float(np.hypot(*v)) * max(float(lag), 0.0)
    k = 1 + int(np.ceil(span / max(box[3] / 2, 0.25)))
    out = np.repeat(box[None], k, 0)
    out[:, :2] -= np.linspace(0.0, max(float(lag), 0.0), k)[:, None] * v[None]
    return out


def _in_any(xyz: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N,) which points lie in any of the boxes (grown by the margin); only the points near a box are tested."""
    inside = np.zeros(len(xyz), bool)
    for b, r in zip(boxes, _reach(boxes)):
        near = np.flatnonzero((np.abs(xyz[:, 0] - b[0]) <= r) & (np.abs(xyz[:, 1] - b[1]) <= r))
        if len(near):
            inside[near[points_in_boxes(xyz[near], b[None], MARGIN)[0]]] = True
    return inside


def _overlaps(trail: np.ndarray, others: np.ndarray) -> bool:
    """Does any of ``trail``'s footprints (grown by the point margin) overlap any of ``others``'?"""
    grow = 2 * MARGIN
    a = footprints(trail[:, :2], trail[:, 6], trail[:, 3] + grow, trail[:, 4] + grow)
    b = footprints(others[:, :2], others[:, 6], others[:, 3] + grow, others[:, 4] + grow)
    ia, ib = np.meshgrid(np.arange(len(a)), np.arange(len(b)), indexing="ij")
    return bool(footprints_overlap(a[ia.ravel()], b[ib.ravel()]).any())


def build_paste(spec: dict | None) -> ObjectPaste | None:
    """The train config's ``augment.paste`` section: dict(classes={name: n}, min_points=5, prob=1.0, fade=1.0,
    images=False, occlusion=False, attempts=1, lidar_origin=LIDAR_TOP_T) or None."""
    from perception.config import check_section

    if spec is None:
        return None
    spec = check_section("train.augment.paste", dict(spec), {"classes": {}, "min_points": 5, "prob": 1.0,
                                                             "fade": 1.0, "images": False, "occlusion": False,
                                                             "attempts": 1, "lidar_origin": LIDAR_TOP_T})
    return ObjectPaste(**spec)
