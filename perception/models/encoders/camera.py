"""Camera encoder shared by all views: a backbone and an FPN to a stride-8 map (and, with ``levels``, its
stride-16 / 32 levels, which the BEV queries' camera attention also samples).

``backbone="scratch"`` is a small ResNet-style CNN trained from random weights (the tests, and checkpoints
made before pretrained backbones); ``"efficientnet_lite0"`` (ImageNet weights packaged offline:
``weights="imagenet"``) or ``"resnet18"``/``"resnet34"``/``"resnet50"`` (a torchvision state-dict file as
``weights``) are the pretrained backbones of perception.models.encoders.backbones, their stride 8/16/32
features merged top-down. ``freeze_bn`` keeps the backbone's BatchNorm statistics at their pretrained values
while training (its affine parameters still learn).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from perception.geometry import box_image_rects


class _Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = None if (cin == cout and stride == 1) else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return torch.relu(y + (x if self.skip is None else self.skip(x)))


class CameraEncoder(nn.Module):
    """(B, N_cam, 3, H, W) normalized images -> (B, N_cam, C, H/stride, W/stride) features (stride 8; with
    ``levels`` > 1 a list, strides 8, 16[, 32])."""

    stride = 8

    def __init__(self, widths=(32, 64, 128), out_channels: int = 64, backbone: str = "scratch", weights=None,
                 freeze_bn: bool = False, depth: dict | None = None, levels: int = 1, frozen_stages: int = 0,
                 semantic: bool = False):
        """``levels``: FPN levels returned, 1 (stride 8, a tensor) or 2 / 3 (strides 8, 16[, 32], a list; the
        scratch CNN has two). ``frozen_stages``: the first stages of a pretrained backbone (``stages()``: the
        stem, then one per stride step) keep their weights; nothing is back-propagated through them (the
        high-resolution early layers are most of the backward time: 2 stages save a quarter of
        EfficientNet-Lite0's training step on a CPU).
        ``depth``: dict(dmin, dmax, bins) adds a camera-aware depth head (a distribution over ``bins``
        uniform bins of metric depth per feature pixel, conditioned on the focal length) whose probabilities
        weight the BEV queries' camera sampling; the training loss supervises it with projected lidar.
        ``semantic``: a perspective head, in training only, that labels every stride-8 pixel background or one
        of the detection classes, supervised by the annotated boxes projected into the image
        (``box_semantic_targets``), so the features the BEV queries sample say what is there (a parking meter
        is not a pedestrian), not only that something is (BEVFormer v2's perspective supervision, as a
        segmentation). Not run at inference, not exported and not in deploy checkpoints (TRAINING_ONLY)."""
        super().__init__()
        self.semantic_head = None
        if semantic:
            from perception.types import DETECTION_CLASSES

            self.semantic_head = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, 1, 1), nn.ReLU(True),
                                               nn.Conv2d(out_channels, 1 + len(DETECTION_CLASSES), 1))
        self.depth_bins = None
        if depth:
            d = {"dmin": 1.0, "dmax": 61.0, "bins": 30, **depth}
            self.depth_bins = (float(d["dmin"]), float(d["dmax"]), int(d["bins"]))
            self.depth_cond = nn.Linear(1, out_channels)
            self.depth_head = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, 1, 1), nn.ReLU(True),
                                            nn.Conv2d(out_channels, self.depth_bins[2], 1))
        self.backbone_name, self.freeze_bn = backbone, freeze_bn
        if levels not in (1, 2, 3) or (backbone == "scratch" and levels > 2):
            raise ValueError(f"CameraEncoder.levels: {levels} is not available for backbone {backbone!r} "
                             f"(1-{2 if backbone == 'scratch' else 3})")
        self.levels = levels
        self.out_channels = out_channels
        if backbone == "scratch":
            if weights or frozen_stages:
                raise ValueError("backbone 'scratch' has no pretrained weights (nor stages to freeze)")
            w0, w1, w2 = widths
            self.stem = nn.Sequential(nn.Conv2d(3, w0, 5, 2, 2, bias=False), nn.BatchNorm2d(w0), nn.ReLU(True))
            self.s4 = _Block(w0, w0, 2)
            self.s8 = _Block(w0, w1, 2)
            self.s16 = _Block(w1, w2, 2)
            self.lat8 = nn.Conv2d(w1, out_channels, 1)
            self.lat16 = nn.Conv2d(w2, out_channels, 1)
        else:
            from perception.models.encoders.backbones import build_backbone

            self.backbone = build_backbone(backbone, weights)
            stages = self.backbone.stages()
            if not 0 <= frozen_stages < len(stages):
                raise ValueError(f"CameraEncoder.frozen_stages: {frozen_stages} is not in [0, {len(stages) - 1}]")
            self._frozen = [m for stage in stages[:frozen_stages] for m in stage]  # registered in the backbone
            for mod in self._frozen:
                mod.requires_grad_(False)
            self.lat = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in self.backbone.channels)
        self.out = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, 1, 1), nn.ReLU(True))
        self.out_coarse = nn.ModuleList(nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, 1, 1), nn.ReLU(True))
                                        for _ in range(levels - 1))

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.backbone_name != "scratch":
            for m in self.backbone.modules() if self.freeze_bn else (x for f in self._frozen for x in f.modules()):
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, images: torch.Tensor, ego2img: torch.Tensor | None = None):
        """Features (B, N, C, h, w); with a depth head a tuple of them and the depth logits (B, N, bins, h, w)
        (needs ``ego2img``, ego -> input-image pixels, for the focal length); in training with a semantic head
        a tuple (features, depth logits or None, semantic logits (B, N, 1 + classes, h, w))."""
        B, N = images.shape[:2]
        x = images.flatten(0, 1)
        if self.backbone_name == "scratch":
            c8 = self.s8(self.s4(self.stem(x)))
            c16 = self.s16(c8)
            p16 = self.lat16(c16)
            pyramid = [self.lat8(c8) + F.interpolate(p16, size=c8.shape[-2:], mode="bilinear", align_corners=False),
                       p16]
        else:
            feats = self.backbone(x)  # strides 8, 16, 32
            pyramid = [self.lat[2](feats[2])]
            for lat, f in ((self.lat[1], feats[1]), (self.lat[0], feats[0])):
                pyramid.insert(0, lat(f) + F.interpolate(pyramid[0], size=f.shape[-2:], mode="bilinear",
                                                         align_corners=False))
        p8 = self.out(pyramid[0])
        coarse = [conv(p) for conv, p in zip(self.out_coarse, pyramid[1:])]
        feats = p8.view(B, N, *p8.shape[1:])
        if coarse:
            feats = [feats] + [p.view(B, N, *p.shape[1:]) for p in coarse]
        semantic = None
        if self.semantic_head is not None and self.training:
            sem = self.semantic_head(p8)
            semantic = sem.view(B, N, *sem.shape[1:])
        if self.depth_bins is None:
            return feats if semantic is None else (feats, None, semantic)
        fx = focal_length(ego2img).reshape(B * N, 1)  # pixels of the input image
        cond = torch.sigmoid(self.depth_cond(torch.log(fx.clamp(min=1.0) / 100.0)))[..., None, None]
        logits = self.depth_head(p8 * cond)
        logits = logits.view(B, N, *logits.shape[1:])
        return (feats, logits) if semantic is None else (feats, logits, semantic)


def focal_length(ego2img: torch.Tensor) -> torch.Tensor:
    """fx in pixels of ego -> image matrices (..., 4, 4) = K [R | t]: the first row of K R minus its part along
    the optical axis (the third row, a unit vector)."""
    M = ego2img[..., :3, :3].float()
    r3 = M[..., 2, :] / M[..., 2, :].norm(dim=-1, keepdim=True).clamp(min=1e-9)
    r1 = M[..., 0, :]
    return (r1 - (r1 * r3).sum(-1, keepdim=True) * r3).norm(dim=-1)


def lidar_depth_map(points: torch.Tensor, batch_index: torch.Tensor, ego2img: torch.Tensor, feat_hw, img_hw,
                    dmin: float = 0.0, dmax: float = float("inf")) -> torch.Tensor:
    """Depth (metres along the optical axis) of the nearest lidar point per camera feature pixel: (B, N, h, w),
    inf where no point in [dmin, dmax) lands. ``points`` (M, 3) in the ego frame, ``batch_index`` (M,)."""
    B, N = ego2img.shape[:2]
    h, w = feat_hw
    out = torch.full((B, N, h * w), float("inf"), device=points.device)
    hom = torch.cat([points.float(), torch.ones_like(points[:, :1]).float()], 1)  # M, 4
    for b in range(B):
        p = hom[batch_index == b]
        if not len(p):
            continue
        proj = torch.einsum("nij,mj->nmi", ego2img[b].float(), p)  # N, M, 4
        z = proj[..., 2]
        u = proj[..., 0] / z.clamp(min=1e-3) * (w / img_hw[1])
        v = proj[..., 1] / z.clamp(min=1e-3) * (h / img_hw[0])
        ok = (z >= max(dmin, 1e-3)) & (z < dmax) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        cam = torch.arange(N, device=points.device).view(N, 1).expand_as(z)
        cell = v.long().clamp(0, h - 1) * w + u.long().clamp(0, w - 1)
        out[b].view(-1).scatter_reduce_(0, (cam * h * w + cell)[ok], z[ok], reduce="amin")
    return out.view(B, N, h, w)


def depth_targets(points: torch.Tensor, batch_index: torch.Tensor, ego2img: torch.Tensor, feat_hw, img_hw,
                  bins) -> torch.Tensor:
    """The depth bin of ``lidar_depth_map`` per camera feature pixel: (B, N, h, w) long, -1 where no point
    lands (BEVDepth's supervision, at the feature resolution; the nearest point of a pixel wins)."""
    dmin, dmax, D = bins
    d = lidar_depth_map(points, batch_index, ego2img, feat_hw, img_hw, dmin, dmax)
    idx = ((d - dmin) / ((dmax - dmin) / D)).floor()
    idx[~torch.isfinite(d)] = -1
    return idx.long().clamp(min=-1, max=D - 1)


def expected_depth(logits: torch.Tensor, bins) -> torch.Tensor:
    """The mean of the predicted depth distribution (metres): logits (..., bins, h, w) -> (..., h, w)."""
    dmin, dmax, D = bins
    centres = dmin + (torch.arange(D, device=logits.device, dtype=torch.float32) + 0.5) * (dmax - dmin) / D
    p = torch.softmax(logits.float(), -3)
    return (p * centres.view(D, 1, 1)).sum(-3)


_NEAR = 0.3  # metres: the plane in front of a camera where a box's edges are cut


def box_semantic_targets(gts, ego2img: torch.Tensor, feat_hw, img_hw, min_visibility: int = 2) -> torch.Tensor:
    """The perspective semantic head's labels per camera feature pixel: (B, N, h, w) long; 0 background,
    1 + class index inside the image rectangle of an annotated box, -1 ignored.

    A box's rectangle bounds its corners in front of the camera and the points where its edges cross the plane
    0.3 m in front of it (a car beside the ego, half behind a side camera, covers the image to its edge).
    Where two rectangles overlap, the box whose nearest point is nearer wins. A box annotated less visible
    than ``min_visibility`` (the nuScenes levels 1-4; 0 = unknown, painted) is painted -1: what shows of it is
    neither taught as background nor as its class from a rectangle that is mostly something else. A camera
    without a view (its ego2img all zero: a dropped modality or camera) is -1 throughout. ``gts``: per batch
    item a Boxes3D in the ego frame, or None. Rectangle edges are rounded to the nearest feature-pixel edge
    (at least one pixel), so a pedestrian 30 m away is one or two pixels, not three."""
    B, N = ego2img.shape[:2]
    h, w = feat_hw
    out = torch.zeros((B, N, h, w), dtype=torch.long)
    P = ego2img.detach().float().cpu().numpy().astype(np.float64)
    sx, sy = w / img_hw[1], h / img_hw[0]
    for b in range(B):
        views = [n for n in range(N) if np.any(P[b, n])]
        for n in set(range(N)) - set(views):
            out[b, n] = -1
        gt = gts[b]
        if gt is None or not len(gt) or not views:
            continue
        keep = np.isfinite(gt.data[:, :7]).all(1)
        if not keep.any():
            continue
        paint = 1 + np.asarray(gt.labels)[keep]
        vis = gt.fields.get("visibility")
        if vis is not None:
            vis = np.asarray(vis)[keep]
            paint = np.where((vis == 0) | (vis >= min_visibility), paint, -1)
        rects, near = box_image_rects(gt.corners()[keep], P[b], _NEAR)  # N, K, 4 in pixels; N, K
        for n in views:
            seen = np.flatnonzero(np.isfinite(near[n]))
            for k in seen[np.argsort(-near[n, seen], kind="stable")]:  # far first (ties: in order)
                u0, u1 = _span(rects[n, k, 0] * sx, rects[n, k, 2] * sx, w)
                v0, v1 = _span(rects[n, k, 1] * sy, rects[n, k, 3] * sy, h)
                if u1 > u0 and v1 > v0:
                    out[b, n, v0:v1, u0:u1] = int(paint[k])
    return out.to(ego2img.device)


def _span(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Feature pixels [a, b) covered by the interval [lo, hi] of pixel coordinates: edges rounded to the nearest
    pixel edge, at least the pixel holding the interval's middle; clipped to [0, size) (empty if outside)."""
    a, b = int(np.floor(lo + 0.5)), int(np.floor(hi + 0.5))
    if b <= a:
        a = int(np.floor((lo + hi) / 2))
        b = a + 1
    return max(a, 0), min(b, size)
