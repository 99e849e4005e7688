"""Image patches for multi-modal ground-truth sampling (perception.training.paste, ``images=True``): each
database object's pixels per camera that saw it, and the painting of those patches into another frame's images,
far to near, the frame's own nearer objects repainted with their own pixels."""

from __future__ import annotations

import numpy as np

from perception.geometry import box_corners, box_image_rects

NEAR = 0.3  # metres in front of a camera where a box's image rectangle is cut (as the semantic head's targets)
# image patches are kept only of objects annotated at least 60-80 % visible (the nuScenes level 3; 0 = unknown
# passes), whose patch shows the object rather than what hid it, and only where no camera's patch covers more
# than this share of the image (a car beside the ego fills a side camera: its patch would carry the rest of its
# frame, other objects included, into the new one unannotated); the others are pasted with their points only
PATCH_MIN_VISIBILITY = 3
PATCH_MAX_AREA = 0.3


def _region(r: np.ndarray, H: int, W: int) -> tuple[int, int, int, int] | None:
    """The pixels (u0, v0, u1, v1) an image rectangle (u_min, v_min, u_max, v_max; pixel i spans [i, i + 1))
    covers inside an H x W image; None where it covers none (or is NaN: behind the camera)."""
    if not np.isfinite(r).all():
        return None
    u0, v0 = max(int(np.floor(r[0])), 0), max(int(np.floor(r[1])), 0)
    u1, v1 = min(int(np.ceil(r[2])), W), min(int(np.ceil(r[3])), H)
    return (u0, v0, u1, v1) if u1 > u0 and v1 > v0 else None


def patches(cam: dict, rects: np.ndarray) -> dict[int, dict]:
    """{camera index: {"rect": the box's unclipped image rectangle (u_min, v_min, u_max, v_max), "origin": (u, v)
    of the patch's first pixel, "patch": (h, w, 3) the image's pixels inside the rectangle}} for every camera with
    a view that shows some of ``rects`` ((N, 4) one box's rectangles, NaN where behind the camera); {} when a
    patch would cover more than PATCH_MAX_AREA of its image."""
    images, P = cam["images"], cam["ego2img"]
    H, W = images.shape[1:3]
    out = {}
    for n, r in enumerate(rects):
        reg = _region(r, H, W) if np.any(P[n]) else None
        if reg is None:
            continue
        u0, v0, u1, v1 = reg
        if (u1 - u0) * (v1 - v0) > PATCH_MAX_AREA * H * W:
            return {}
        out[n] = {"rect": r.copy(), "origin": (u0, v0), "patch": images[n, v0:v1, u0:u1].copy()}
    return out


def paint(cam: dict, own: np.ndarray, boxes: np.ndarray, views: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The frame's images with the pasted objects' patches (``views``: per pasted box its ``patches``) painted
    where ``boxes`` project in each camera, far to near (ties in the boxes' order, the frame's own first); a
    frame's own box (``own``) nearer than a pasted one gets its own pixels back over its rectangle; a pasted box
    without a patch from a camera is not drawn in it (what lies behind shows through). Returns (images, shown:
    (len(boxes),) the share of each pasted box's painted pixels, over all cameras, that the nearer boxes left;
    0 where no pixel is left or where a camera whose image its rectangle reaches had no patch of it to paint:
    ``shown > 0`` is "the images show it")."""
    images, P = cam["images"], cam["ego2img"]
    H, W = images.shape[1:3]
    canvas = images.copy()
    everything = np.concatenate([own[:, :9], boxes[:, :9]])
    rects, depth = box_image_rects(box_corners(everything), P, NEAR)
    n_own = len(own)
    drawn, missing = np.zeros(len(boxes)), np.zeros(len(boxes), bool)
    left = np.zeros(len(boxes))
    for n in range(len(P)):
        if not np.any(P[n]):
            continue
        regions = {int(k): reg for k in np.flatnonzero(np.isfinite(depth[n]))
                   if (reg := _region(rects[n, k], H, W)) is not None}
        for k in regions:
            if k >= n_own and n not in views[k - n_own]:
                missing[k - n_own] = True
        if not any(k >= n_own and n in views[k - n_own] for k in regions):
            continue
        owner = np.full((H, W), -1)  # which pasted box each pixel shows (-1: the frame's own pixels)
        for k in sorted(regions, key=lambda k: (-depth[n, k], k)):
            u0, v0, u1, v1 = regions[k]
            if k < n_own:  # the frame's own object, in front of what was pasted so far
                canvas[n, v0:v1, u0:u1] = images[n, v0:v1, u0:u1]
                owner[v0:v1, u0:u1] = -1
                continue
            view = views[k - n_own].get(n)
            if view is None:
                continue
            # each target pixel's centre, mapped from this rectangle onto the one the patch was cut from
            r, s = rects[n, k], view["rect"]
            cols = (np.arange(u0, u1) + 0.5 - r[0]) / max(r[2] - r[0], 1e-6) * (s[2] - s[0]) + s[0]
            rows = (np.arange(v0, v1) + 0.5 - r[1]) / max(r[3] - r[1], 1e-6) * (s[3] - s[1]) + s[1]
            cu = np.floor(cols).astype(np.int64) - view["origin"][0]
            rv = np.floor(rows).astype(np.int64) - view["origin"][1]
            patch = view["patch"]
            okc, okr = (cu >= 0) & (cu < patch.shape[1]), (rv >= 0) & (rv < patch.shape[0])
            if okc.any() and okr.any():
                at = np.ix_(v0 + np.flatnonzero(okr), u0 + np.flatnonzero(okc))
                canvas[n][at] = patch[np.ix_(rv[okr], cu[okc])]
                owner[at] = k - n_own
                drawn[k - n_own] += okr.sum() * okc.sum()
        left += np.bincount(owner[owner >= 0], minlength=len(boxes))
    return canvas, np.where(missing, 0.0, left / np.maximum(drawn, 1))


def visibility_level(share: np.ndarray, annotated: np.ndarray) -> np.ndarray:
    """The nuScenes visibility level (1: 0-40 %, 2: 40-60 %, 3: 60-80 %, 4: 80-100 % of the object visible) of
    pasted objects whose patches kept ``share`` of their pixels, each annotated ``annotated`` where it came from
    (the middle of its level's range visible there; 0 = unknown: the patch as all of it)."""
    annotated = np.asarray(annotated, np.int64)
    there = np.array([1.0, 0.2, 0.5, 0.7, 0.9])[np.clip(annotated, 0, 4)]
    return 1 + np.searchsorted([0.4, 0.6, 0.8], np.asarray(share, np.float64) * there, side="right")
