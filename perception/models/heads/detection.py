"""CenterPoint-style detection head: class heatmaps + per-cell regression of every nuScenes result field.

Per output cell: heatmap (10 classes), centre offset (2), z (1), log size l w h (3), yaw as sin/cos (2),
velocity vx vy (2), attribute logits (8). Targets are built from Boxes3D in the ego frame.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from perception.types import ATTRIBUTES, CLASS_ATTRIBUTES, DETECTION_CLASSES, Boxes3D

REG_FIELDS = {"offset": 2, "z": 1, "size": 3, "rot": 2, "vel": 2, "attr": len(ATTRIBUTES)}


def gaussian_radius(h: float, w: float, min_overlap: float = 0.1) -> float:
    """CenterNet's radius so that a box shifted by it still overlaps the original by ``min_overlap``."""
    a1, b1, c1 = 1, h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4, 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


class CenterHead(nn.Module):
    def __init__(self, in_channels: int, xy_range, out_hw: tuple[int, int], head_channels: int = 32,
                 max_dets: int = 300, score_threshold: float = 0.05, min_radius: int = 2, branch_norm: bool = False,
                 vel_window: int = 0, vel_balance: bool = False, nms: float = 0.0):
        """``branch_norm``: each output branch is conv - BatchNorm - ReLU - conv (CenterPoint's separate heads)
        instead of conv - ReLU - conv. Without it the velocity branch, supervised at a few centre cells whose
        target is mostly 0 (still objects), lets its ReLUs die early in training: the shipped network kept 13 of
        32 velocity units alive, active on 4% of the map, and one of them carries all the speed it predicts, for
        traffic moving the ego's way only (issue 18).
        ``vel_window``: the velocity is also supervised on the cells within this many cells of the centre (the
        same target), not only on the centre cell; ``vel_balance``: the still objects (under 0.5 m/s) and the
        moving ones each weigh half of the velocity loss of a batch (most objects stand still, and an L1 loss
        left to the plain mean predicts their 0 for every object it cannot yet tell apart).
        ``nms``: at decoding, a peak whose centre lies within this fraction of a higher-scored box's longer side,
        of the same class, is the same object read twice (a long vehicle gives two peaks a few cells apart) and
        is dropped: CenterPoint's circle NMS with the radius scaled to each box (0: off)."""
        super().__init__()
        if not float(nms) >= 0:
            raise ValueError(f"CenterHead.nms: {nms} must be >= 0")
        self.nms = float(nms)
        self.vel_window, self.vel_balance = int(vel_window), bool(vel_balance)
        self.xy_range = tuple(xy_range)
        self.out_hw = tuple(out_hw)
        self.max_dets, self.score_threshold, self.min_radius = max_dets, score_threshold, min_radius
        self.shared = nn.Sequential(nn.Conv2d(in_channels, head_channels, 3, 1, 1, bias=False),
                                    nn.BatchNorm2d(head_channels), nn.ReLU(True))

        def branch(n):
            if branch_norm:
                return nn.Sequential(nn.Conv2d(head_channels, head_channels, 3, 1, 1, bias=False),
                                     nn.BatchNorm2d(head_channels), nn.ReLU(True), nn.Conv2d(head_channels, n, 1))
            return nn.Sequential(nn.Conv2d(head_channels, head_channels, 3, 1, 1), nn.ReLU(True),
                                 nn.Conv2d(head_channels, n, 1))

        self.heatmap = branch(len(DETECTION_CLASSES))
        nn.init.constant_(self.heatmap[-1].bias, -2.19)
        self.reg = nn.ModuleDict({k: branch(n) for k, n in REG_FIELDS.items()})
        # attribute logits allowed per class (others masked at decode)
        allowed = torch.zeros(len(DETECTION_CLASSES), len(ATTRIBUTES), dtype=torch.bool)
        for c, name in enumerate(DETECTION_CLASSES):
            for a in CLASS_ATTRIBUTES[name]:
                allowed[c, ATTRIBUTES.index(a)] = True
        self.register_buffer("attr_allowed", allowed, persistent=False)

    @property
    def cell(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.xy_range
        H, W = self.out_hw
        return (x1 - x0) / W, (y1 - y0) / H

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.shared(x)
        out = {"heatmap": self.heatmap(f)}
        for k, m in self.reg.items():
            out[k] = m(f)
        return out

    # -- targets & loss --------------------------------------------------------------------------------
    def targets(self, gts: list[Boxes3D], device) -> dict[str, torch.Tensor]:
        H, W = self.out_hw
        x0, y0, _, _ = self.xy_range
        cx, cy = self.cell
        B = len(gts)
        heat = np.zeros((B, len(DETECTION_CLASSES), H, W), np.float32)
        ind, batch, reg, attr = [], [], [], []
        for b, gt in enumerate(gts):
            if gt is None or not len(gt):
                continue
            d = gt.data
            attrs = gt.attribute_ids
            for k in range(len(gt)):
                fx, fy = (d[k, 0] - x0) / cx, (d[k, 1] - y0) / cy
                ix, iy = int(fx), int(fy)
                if not (0 <= ix < W and 0 <= iy < H) or not np.isfinite(d[k, :7]).all():
                    continue
                r = max(self.min_radius, int(gaussian_radius(d[k, 4] / cy, d[k, 3] / cx)))
                _draw_gaussian(heat[b, gt.labels[k]], ix, iy, r)
                v = np.nan_to_num(d[k, 7:9])
                reg.append([fx - ix, fy - iy, d[k, 2], *np.log(np.maximum(d[k, 3:6], 1e-3)),
                            math.sin(d[k, 6]), math.cos(d[k, 6]), *v, float(np.isfinite(d[k, 7:9]).all())])
                ind.append(iy * W + ix)
                batch.append(b)
                attr.append(int(attrs[k]))
        t = {"heatmap": torch.from_numpy(heat).to(device)}
        t["ind"] = torch.tensor(ind, dtype=torch.long, device=device)
        t["batch"] = torch.tensor(batch, dtype=torch.long, device=device)
        t["reg"] = torch.tensor(reg, dtype=torch.float32, device=device).view(-1, 11)
        t["attr"] = torch.tensor(attr, dtype=torch.long, device=device)
        return t

    def loss(self, out: dict, t: dict) -> dict[str, torch.Tensor]:
        pred = out["heatmap"].float().sigmoid().clamp(1e-4, 1 - 1e-4)
        gt = t["heatmap"]
        pos = gt.eq(1).float()
        neg = 1 - pos
        pos_l = (torch.log(pred) * (1 - pred) ** 2 * pos).sum()
        neg_l = (torch.log(1 - pred) * pred ** 2 * (1 - gt) ** 4 * neg).sum()
        n = max(1.0, float(pos.sum()))
        losses = {"loss_heatmap": -(pos_l + neg_l) / n}
        if len(t["ind"]) == 0:
            zero = sum(v.sum() for v in out.values()) * 0.0
            for k in ("loss_reg", "loss_vel", "loss_attr"):
                losses[k] = zero
            return losses
        def gather(name):
            m = out[name].flatten(2)  # B, C, HW
            return m[t["batch"], :, t["ind"]]

        r = t["reg"]
        pred_reg = torch.cat([gather("offset"), gather("z"), gather("size"), gather("rot")], 1)
        target = torch.cat([r[:, 0:2], r[:, 2:3], r[:, 3:6], r[:, 6:8]], 1)
        losses["loss_reg"] = F.l1_loss(pred_reg, target, reduction="none").sum(1).mean()
        losses["loss_vel"] = 0.5 * self._vel_loss(out["vel"], t)
        ok = t["attr"] >= 0
        losses["loss_attr"] = 0.2 * (F.cross_entropy(gather("attr")[ok], t["attr"][ok]) if ok.any()
                                     else gather("attr").sum() * 0.0)
        return losses

    def _vel_loss(self, vel: torch.Tensor, t: dict) -> torch.Tensor:
        """L1 of the velocity at each object's centre cell (and its ``vel_window`` neighbours), over the objects
        whose velocity is known; with ``vel_balance`` the still and the moving objects' means weigh half each."""
        r = t["reg"]
        known = r[:, 10] > 0
        B, _, H, W = vel.shape
        flat = vel.flatten(2)
        iy, ix = t["ind"] // W, t["ind"] % W
        w = self.vel_window
        errs, masks = [], []
        for dy in range(-w, w + 1):
            for dx in range(-w, w + 1):
                y, x = iy + dy, ix + dx
                ok = known & (y >= 0) & (y < H) & (x >= 0) & (x < W)
                ind = y.clamp(0, H - 1) * W + x.clamp(0, W - 1)
                errs.append(F.l1_loss(flat[t["batch"], :, ind], r[:, 8:10], reduction="none").sum(1))
                masks.append(ok.float())
        err, mask = torch.stack(errs, 1), torch.stack(masks, 1)  # objects, window cells
        per_object = (err * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        if not self.vel_balance:
            return per_object.sum() / max(1.0, float(known.sum()))
        moving = r[:, 8:10].norm(dim=1) >= 0.5
        parts = [per_object[known & m].mean() for m in (moving, ~moving) if bool((known & m).any())]
        return sum(parts) / len(parts) if parts else per_object.sum() * 0.0

    # -- decode -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, out: dict) -> list[dict[str, np.ndarray]]:
        heat = out["heatmap"].float().sigmoid()
        B, C, H, W = heat.shape
        peak = F.max_pool2d(heat, 3, 1, 1)
        heat = heat * (peak == heat)
        x0, y0, _, _ = self.xy_range
        cx, cy = self.cell
        res = []
        for b in range(B):
            scores, idx = heat[b].flatten().topk(min(self.max_dets, C * H * W))
            keep = scores >= self.score_threshold
            scores, idx = scores[keep], idx[keep]
            cls = idx // (H * W)
            pix = idx % (H * W)
            iy, ix = pix // W, pix % W

            def g(name, b=b, pix=pix):
                return out[name][b].flatten(1)[:, pix].T.float()

            off, z, size, rot, vel = g("offset"), g("z"), g("size"), g("rot"), g("vel")
            attr_logits = g("attr").masked_fill(~self.attr_allowed[cls], -1e4)
            boxes = torch.stack([
                x0 + (ix.float() + off[:, 0]) * cx, y0 + (iy.float() + off[:, 1]) * cy, z[:, 0],
                *size.clamp(max=5).exp().T, torch.atan2(rot[:, 0], rot[:, 1]), vel[:, 0], vel[:, 1]], 1)
            attr = torch.where(self.attr_allowed[cls].any(1), attr_logits.argmax(1), torch.full_like(cls, -1))
            d = {"boxes": boxes.cpu().numpy().astype(np.float64), "scores": scores.cpu().numpy(),
                 "labels": cls.cpu().numpy(), "attributes": attr.cpu().numpy()}
            if self.nms > 0:
                keep = circle_nms(d["boxes"], d["labels"], self.nms)
                d = {k: v[keep] for k, v in d.items()}
            res.append(d)
        return res


def circle_nms(boxes: np.ndarray, labels: np.ndarray, fraction: float) -> np.ndarray:
    """Indices kept of boxes sorted by score (high first): each kept box drops the later ones of its class whose
    centre lies within ``fraction`` of its longer side (boxes: rows of x y z l w h ...)."""
    keep = np.ones(len(boxes), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)  # in score order
        if len(idx) < 2:
            continue
        x, y = boxes[idx, 0], boxes[idx, 1]
        d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
        near = np.triu(d <= fraction * boxes[idx, 3:5].max(1)[:, None], 1)
        k = np.ones(len(idx), bool)
        for i in np.flatnonzero(near.any(1)):  # only a box with a later one near it can drop anything
            if k[i]:
                k &= ~near[i]
        keep[idx] = k
    return np.flatnonzero(keep)


def _draw_gaussian(heat: np.ndarray, x: int, y: int, r: int) -> None:
    d = 2 * r + 1
    sigma = d / 6
    ys, xs = np.ogrid[-r : r + 1, -r : r + 1]
    g = np.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma))
    H, W = heat.shape
    left, right = min(x, r), min(W - x, r + 1)
    top, bottom = min(y, r), min(H - y, r + 1)
    patch = heat[y - top : y + bottom, x - left : x + right]
    np.maximum(patch, g[r - top : r + bottom, r - left : r + right], out=patch)
