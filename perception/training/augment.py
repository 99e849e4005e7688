"""Training augmentation on gathered inputs (perception.pipeline.Preprocessor.gather), geometry kept exact.

- ``BevAugment``: one rotation about z, scale and flips of the whole scene per sample, applied together to
  the lidar and radar points (positions and radar velocities), the ground-truth boxes (centres, sizes,
  headings, velocities) and every camera's ego -> pixel matrix (``ego2img @ A^-1``: the images are unchanged
  and still show what the moved points show). As BEVDet / BEVFusion's global rot-scale-trans and flips.
- ``ImageAugment``: per camera, a resize about a random centre, a crop back to the input size, a horizontal
  flip and a brightness / contrast change; the pixel map is folded into ``ego2img`` so projections (the BEV
  queries' sampling, the lidar depth targets) land where the content moved.

Both draw from the ``rng`` they are given, return new dicts and never modify the cached inputs.
"""

from __future__ import annotations

import cv2
import numpy as np

from perception.types import Boxes3D

_VECTORS = (("vx_comp", "vy_comp"), ("vx", "vy"))
_HALF = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])  # OpenCV pixel -> continuous coordinate
_HALF_INV = np.linalg.inv(_HALF)


def _check(name: str, value, lo: float, hi: float) -> float:
    v = float(value)
    if not lo <= v <= hi:
        raise ValueError(f"{name}: {v} is outside [{lo}, {hi}]")
    return v


class BevAugment:
    """``rot``: max |angle| (radians, uniform); ``scale``: (lo, hi) uniform; ``flip``: probability of each of
    the two flips (across the x axis, across the y axis); ``prob``: probability that a sample is augmented at
    all (the rest pass unchanged)."""

    def __init__(self, rot: float = 0.3925, scale=(0.95, 1.05), flip: float = 0.5, prob: float = 1.0):
        self.rot = _check("bev_aug.rot", rot, 0.0, np.pi)
        self.scale = (_check("bev_aug.scale[0]", scale[0], 0.5, 1.0), _check("bev_aug.scale[1]", scale[1], 1.0, 2.0))
        self.flip = _check("bev_aug.flip", flip, 0.0, 1.0)
        self.prob = _check("bev_aug.prob", prob, 0.0, 1.0)

    def sample(self, rng: np.random.Generator) -> np.ndarray | None:
        """A 4x4 ego -> augmented-ego matrix (None: leave this sample as it is)."""
        if rng.random() >= self.prob:
            return None
        a = rng.uniform(-self.rot, self.rot)
        s = rng.uniform(*self.scale)
        L = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        if rng.random() < self.flip:  # across the x axis: y -> -y
            L = L @ np.diag([1.0, -1.0])
        if rng.random() < self.flip:  # across the y axis: x -> -x
            L = L @ np.diag([-1.0, 1.0])
        A = np.eye(4)
        A[:2, :2] = L
        A[2, 2] = s
        return A

    @staticmethod
    def apply(inputs: dict, gt: Boxes3D | None, A: np.ndarray, columns: dict) -> tuple[dict, Boxes3D | None]:
        """Points (``columns``: modality -> column names), boxes and cameras moved by ``A``."""
        out = dict(inputs)
        L = A[:2, :2]
        s = A[2, 2]
        for m in ("lidar", "radar"):
            if m not in inputs:
                continue
            cols = list(columns[m])
            ix, iy, iz = cols.index("x"), cols.index("y"), cols.index("z")
            p = inputs[m]["points"].copy()
            p[:, [ix, iy]] = p[:, [ix, iy]] @ L.T.astype(np.float32)
            p[:, iz] *= np.float32(s)
            for a, b in _VECTORS:
                if a in cols and b in cols:
                    i, j = cols.index(a), cols.index(b)
                    p[:, [i, j]] = p[:, [i, j]] @ L.T.astype(np.float32)
            out[m] = {**inputs[m], "points": p}
        if "camera" in inputs:
            e2i = inputs["camera"]["ego2img"]
            moved = (e2i.astype(np.float64) @ np.linalg.inv(A)).astype(np.float32)
            moved[~np.any(e2i, axis=(1, 2))] = 0.0  # a missing camera stays all-zero
            out["camera"] = {**inputs["camera"], "ego2img": moved}
        if gt is not None and len(gt):
            d = gt.data.copy()
            d[:, :2] = d[:, :2] @ L.T
            d[:, 2] *= s
            d[:, 3:6] *= s
            head = np.stack([np.cos(d[:, 6]), np.sin(d[:, 6])], 1) @ L.T
            d[:, 6] = np.arctan2(head[:, 1], head[:, 0])
            unknown = np.isnan(d[:, 7:9]).any(1)  # the devkit's NaN velocity stays unknown
            d[:, 7:9] = np.nan_to_num(d[:, 7:9]) @ L.T
            d[unknown, 7:9] = np.nan
            gt = gt.with_data(d)
        return out, gt


class ImageAugment:
    """``scale``: (lo, hi) resize factor about a random point; ``flip``: probability of a horizontal flip;
    ``color``: max relative change of brightness and of contrast; ``prob``: per camera."""

    def __init__(self, scale=(0.9, 1.1), flip: float = 0.5, color: float = 0.2, prob: float = 1.0):
        self.scale = (_check("image_aug.scale[0]", scale[0], 0.5, 1.0),
                      _check("image_aug.scale[1]", scale[1], 1.0, 2.0))
        self.flip = _check("image_aug.flip", flip, 0.0, 1.0)
        self.color = _check("image_aug.color", color, 0.0, 1.0)
        self.prob = _check("image_aug.prob", prob, 0.0, 1.0)

    def sample(self, rng: np.random.Generator, hw) -> np.ndarray | None:
        """A 3x3 pixel map (input pixel -> augmented pixel), None for no geometric change."""
        H, W = hw
        s = rng.uniform(*self.scale)
        # about a random point of the image (zoomed out, s < 1, the rest of the frame is black)
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        M = np.array([[s, 0.0, cx - s * cx], [0.0, s, cy - s * cy], [0.0, 0.0, 1.0]])
        if rng.random() < self.flip:
            M = np.array([[-1.0, 0.0, W], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ M
        return M

    def apply(self, inputs: dict, rng: np.random.Generator) -> dict:
        if "camera" not in inputs:
            return inputs
        imgs, e2i = inputs["camera"]["images"], inputs["camera"]["ego2img"]
        H, W = imgs.shape[1:3]
        out_imgs, out_e2i = imgs.copy(), e2i.copy()
        for i in range(len(imgs)):
            if not np.any(e2i[i]) or rng.random() >= self.prob:
                continue
            M = self.sample(rng, (H, W))
            # M maps continuous pixel coordinates (pixel i spans [i, i + 1), as the projections and
            # grid_sample(align_corners=False) read them); OpenCV puts pixel centres on the integers
            cv_m = _HALF_INV @ M @ _HALF
            out_imgs[i] = cv2.warpAffine(imgs[i], cv_m[:2].astype(np.float32), (W, H), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
            P = np.eye(4)
            P[:2, :2] = M[:2, :2]
            P[:2, 2] = M[:2, 2]  # u' z = a (u z) + b (v z) + c z: the offset multiplies the depth row
            out_e2i[i] = (P @ e2i[i].astype(np.float64)).astype(np.float32)
            if self.color:
                b = rng.uniform(-self.color, self.color) * 255 * 0.5
                c = 1.0 + rng.uniform(-self.color, self.color)
                x = out_imgs[i].astype(np.float32)
                out_imgs[i] = np.clip((x - x.mean()) * c + x.mean() + b, 0, 255).astype(np.uint8)
        return {**inputs, "camera": {**inputs["camera"], "images": out_imgs, "ego2img": out_e2i}}


def build_augment(spec: dict | None) -> tuple[BevAugment | None, ImageAugment | None]:
    """The train config's ``augment`` section: dict(bev=dict(...) or None, image=dict(...) or None, paste=...);
    ``paste`` (ground-truth sampling) is built by perception.training.paste.build_paste."""
    from perception.config import check_section

    spec = check_section("train.augment", dict(spec or {}), {"bev": None, "image": None, "paste": None})
    bev = None if spec["bev"] is None else BevAugment(**check_section(
        "train.augment.bev", spec["bev"], {"rot": 0.3925, "scale": (0.95, 1.05), "flip": 0.5, "prob": 1.0}))
    img = None if spec["image"] is None else ImageAugment(**check_section(
        "train.augment.image", spec["image"], {"scale": (0.9, 1.1), "flip": 0.5, "color": 0.2, "prob": 1.0}))
    return bev, img
