"""A depth-lifted camera BEV map (Lift-Splat-Shoot, BEVDepth's view transform) for the BEV queries to attend to.

Every camera feature pixel is spread along its ray: its features, weighted by the predicted probability of each
depth bin, land at the bin centre's point in the ego frame, and everything landing in one cell of the fused BEV
grid is summed (sum pooling, no height axis). A convolution then mixes the map. The queries read it like the
lidar's map (``perception.models.fusion.BEVSampler``), in addition to sampling the images through their reference
points: issue 17's two view transforms, either alone or both, chosen by measurement.
"""

from __future__ import annotations

import torch
from torch import nn


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The cross product over the last axis (written out: it traces into plain ONNX arithmetic)."""
    a0, a1, a2 = a.unbind(-1)
    b0, b1, b2 = b.unbind(-1)
    return torch.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], -1)


def invert_projection(M: torch.Tensor, eps: float = 1e-9) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 4, 4) ego -> pixel matrices whose last row is (0, 0, 0, 1) (intrinsics times extrinsics, with any
    image or BEV augmentation folded in) -> (their inverses, blind (...): an all-zero matrix, a camera without a
    view, or a singular one). The block inverse [A b; 0 1]^-1 = [A^-1, -A^-1 b; 0 1] with A^-1 from cross
    products, so the ONNX export needs no matrix inverse (ONNX has none)."""
    A, t = M[..., :3, :3], M[..., :3, 3]
    r0, r1, r2 = A.unbind(-2)
    cols = torch.stack([_cross(r1, r2), _cross(r2, r0), _cross(r0, r1)], -1)  # adjugate: A^-1 = cols / det
    det = (r0 * _cross(r1, r2)).sum(-1)
    blind = det.abs() <= eps * A.flatten(-2).abs().amax(-1).clamp_min(1.0) ** 3
    inv = cols / torch.where(blind, torch.ones_like(det), det)[..., None, None]
    top = torch.cat([inv, -(inv @ t.unsqueeze(-1))], -1)  # ..., 3, 4
    bottom = torch.zeros_like(M[..., 3:, :]) + torch.tensor([0.0, 0.0, 0.0, 1.0], device=M.device, dtype=M.dtype)
    out = torch.cat([top, bottom], -2)
    return torch.where(blind[..., None, None], torch.eye(4, device=M.device, dtype=M.dtype), out), blind


class DepthLift(nn.Module):
    """(features (B, N, C, h, w), depth probabilities (B, N, D, h, w), bins (dmin, dmax, D), ego2img (B, N, 4, 4)
    ego -> input-image pixels, input image (H_in, W_in)) -> (B, channels, H, W) over ``xy_range``."""

    def __init__(self, in_channels: int, xy_range, bev_hw: tuple[int, int], channels: int = 32,
                 z_range: tuple[float, float] = (-5.0, 3.0), pool: str = "sum"):
        """``pool``: "sum" (Lift-Splat's sum pooling: a cell near the cameras, crossed by many rays, gets many
        times the features of a far one) or "density" (each cell's sum divided by how many (pixel, bin) points
        of the rays land in it whatever their probability: the rays' geometric density taken out, the depth's
        confidence kept)."""
        super().__init__()
        if pool not in ("sum", "density"):
            raise ValueError(f"DepthLift pool={pool!r}: 'sum' or 'density'")
        self.pool = pool
        self.channels = int(channels)
        self.xy_range = tuple(float(v) for v in xy_range)
        self.hw = tuple(int(v) for v in bev_hw)
        self.z_range = (float(z_range[0]), float(z_range[1]))
        self.reduce = nn.Conv2d(in_channels, self.channels, 1)
        self.mix = nn.Sequential(nn.Conv2d(self.channels, self.channels, 3, 1, 1, bias=False),
                                 nn.BatchNorm2d(self.channels), nn.ReLU(True))

    def points(self, ego2img: torch.Tensor, img_hw, feat_hw, bins) -> torch.Tensor:
        """(B, N, D, h, w, 3) ego-frame points of every feature pixel's centre at every depth bin's centre; NaN for
        a camera without a view (its ego2img all zeros: dropped or missing in the frame)."""
        dmin, dmax, D = bins
        h, w = feat_hw
        dev = ego2img.device
        d = dmin + (torch.arange(D, device=dev, dtype=torch.float32) + 0.5) * (dmax - dmin) / D
        u = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) * (img_hw[1] / w)
        v = (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) * (img_hw[0] / h)
        dd, vv, uu = torch.meshgrid(d, v, u, indexing="ij")
        pix = torch.stack([uu * dd, vv * dd, dd, torch.ones_like(dd)], -1)  # D, h, w, 4 (u d, v d, d, 1)
        img2ego, blind = invert_projection(ego2img.float())
        pts = torch.einsum("bnij,dhwj->bndhwi", img2ego, pix)[..., :3]
        return pts.masked_fill(blind.view(*blind.shape, 1, 1, 1, 1), float("nan"))

    def splat(self, f: torch.Tensor, probs: torch.Tensor, bins, ego2img: torch.Tensor, img_hw) -> torch.Tensor:
        """The sum pooling alone: features ``f`` (B, N, C, h, w) times each depth bin's probability, summed into
        the BEV cell of the bin centre's point -> (B, C, H, W)."""
        B, N, C, h, w = f.shape
        D = int(bins[2])
        if probs.shape != (B, N, D, h, w):
            raise ValueError(f"DepthLift: depth probabilities {tuple(probs.shape)} do not match the features "
                             f"{(B, N, D, h, w)}")
        with torch.autocast(f.device.type, enabled=False):  # geometry in float32
            pts = self.points(ego2img, img_hw, (h, w), bins)
        x0, y0, x1, y1 = self.xy_range
        H, W = self.hw
        ix = ((pts[..., 0] - x0) / ((x1 - x0) / W)).floor()
        iy = ((pts[..., 1] - y0) / ((y1 - y0) / H)).floor()
        ok = (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H) & (pts[..., 2] >= self.z_range[0]) & \
            (pts[..., 2] < self.z_range[1])
        # one cell index per (camera, bin, pixel); whatever lands off the grid (or comes from a blind camera: NaN)
        # goes to a spare cell past the grid's end, dropped after the sum: no data-dependent shapes, so the same
        # code traces into the ONNX graph (ScatterElements with reduction "add")
        cell = torch.where(ok, iy * W + ix, torch.full_like(ix, H * W))
        cell = cell + (torch.arange(B, device=cell.device) * (H * W + 1)).view(B, 1, 1, 1, 1)
        # each (camera, bin, pixel): its pixel's features times that bin's probability
        val = probs.unsqueeze(-1).to(f.dtype) * f.permute(0, 1, 3, 4, 2).unsqueeze(2)  # B, N, D, h, w, C
        flat = cell.long().reshape(-1)
        acc = f.new_zeros(B * (H * W + 1), C).scatter_add(0, flat.unsqueeze(1).expand(-1, C), val.reshape(-1, C))
        if self.pool == "density":
            count = f.new_zeros(B * (H * W + 1)).scatter_add(0, flat, torch.ones_like(flat, dtype=f.dtype))
            acc = acc / count.clamp_min(1.0).unsqueeze(1)
        return acc.view(B, H * W + 1, C)[:, :H * W].transpose(1, 2).reshape(B, C, H, W)

    def forward(self, feats: torch.Tensor, probs: torch.Tensor, bins, ego2img: torch.Tensor, img_hw) -> torch.Tensor:
        B, N, _, h, w = feats.shape
        f = self.reduce(feats.flatten(0, 1)).view(B, N, self.channels, h, w)
        return self.mix(self.splat(f, probs, bins, ego2img, img_hw))
