"""Temporal BEV fusion: the fused BEV map of an earlier frame, warped into the current ego frame, mixed in.

BEVDet4D's recipe on this network's fused map (the queries' output, before the upsampling neck): the earlier
map is resampled at every current cell's centre moved into the earlier ego frame (bilinear, zeros outside
it), concatenated with the current map and a validity plane, and two convolutions add their result to the
current map. With ``corr`` the mixing also reads a cost volume (FlowNet's correlation layer on the BEV): at every
cell, the current feature vector's mean product with the warped earlier map's at each offset within ``corr``
cells, so where an object was 0.5 s earlier is an input of the mix, not something two convolutions must find.
A frame without usable history (stream start, a gap, a scene change, a pose jump) gets zeros
and validity 0: the network is trained on both (``TemporalFusion.history_drop``), so it detects from one
frame when it must. The history is the state the Pipeline keeps per stream (:class:`History`); training
pairs each keyframe with the one before it (0.5 s earlier on nuScenes), and the Pipeline serves the state
closest to that lag.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def correlation(a: torch.Tensor, b: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, C, H, W) x2 -> (B, (2r+1)^2, H, W): channel k = (dy, dx) in row-major order over [-r, r]^2 holds
    mean_c a[c, y, x] * b[c, y + dy, x + dx] (zeros beyond the map's edge). Pads and slices only, so it exports
    to ONNX as it runs in torch."""
    r = int(radius)
    H, W = a.shape[-2:]
    bp = F.pad(b, (r, r, r, r))
    return torch.stack([(a * bp[:, :, r + dy:r + dy + H, r + dx:r + dx + W]).mean(1)
                        for dy in range(-r, r + 1) for dx in range(-r, r + 1)], 1)


class TemporalFusion(nn.Module):
    """(current (B, C, H, W), earlier (B, C, H, W) | None, T (B, 4, 4) current ego -> earlier ego, valid (B,))
    -> (B, C, H, W)."""

    def __init__(self, channels: int, xy_range, bev_hw: tuple[int, int], lag: float = 0.5,
                 history_drop: float = 0.2, dilation: int = 1, corr: int = 0):
        """``dilation`` of the two mixing convolutions: an object that moved by more than their reach between
        the two maps (1: two cells either way; 2: four) is seen in the history only by the layers after them.
        ``corr``: the cost volume's radius in cells (0: none; 4 on the tiny 1.6 m map: 6.4 m, 12.8 m/s over
        0.5 s)."""
        super().__init__()
        if int(dilation) < 1:
            raise ValueError(f"temporal.dilation: the mixing convolutions' dilation, >= 1, got {dilation}")
        if int(corr) < 0:
            raise ValueError(f"temporal.corr: the cost volume's radius in cells, >= 0, got {corr}")
        d, self.corr = int(dilation), int(corr)
        H, W = bev_hw
        self.hw, self.lag, self.history_drop = (H, W), float(lag), float(history_drop)
        x0, y0, x1, y1 = xy_range
        self.xy_range = (x0, y0, x1, y1)
        xs = x0 + (torch.arange(W) + 0.5) * (x1 - x0) / W
        ys = y0 + (torch.arange(H) + 0.5) * (y1 - y0) / H
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        self.register_buffer("xy1", torch.stack([gx, gy, torch.ones_like(gx)], -1).view(-1, 3), persistent=False)
        extra = (2 * self.corr + 1) ** 2 if self.corr else 0
        self.mix = nn.Sequential(nn.Conv2d(2 * channels + 1 + extra, channels, 3, padding=d, dilation=d, bias=False),
                                 nn.BatchNorm2d(channels), nn.ReLU(True),
                                 nn.Conv2d(channels, channels, 3, padding=d, dilation=d))
        nn.init.zeros_(self.mix[-1].weight)  # starts as the single-frame network
        nn.init.zeros_(self.mix[-1].bias)

    def warp(self, earlier: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        """The earlier map seen from the current ego frame: each current cell's centre, moved by ``T`` (current
        ego -> earlier ego, planar part), sampled bilinearly (zeros outside the earlier grid)."""
        B, C, H, W = earlier.shape
        A = torch.stack([T[:, 0, [0, 1, 3]], T[:, 1, [0, 1, 3]]], 1).to(earlier.dtype)   # (B, 2, 3)
        xy = torch.einsum("bij,nj->bni", A, self.xy1.to(earlier.dtype))                  # (B, HW, 2)
        x0, y0, x1, y1 = self.xy_range
        g = torch.stack([(xy[..., 0] - x0) / (x1 - x0) * 2 - 1, (xy[..., 1] - y0) / (y1 - y0) * 2 - 1], -1)
        return F.grid_sample(earlier, g.view(B, H, W, 2), mode="bilinear", padding_mode="zeros",
                             align_corners=False)

    def forward(self, current: torch.Tensor, earlier: torch.Tensor | None = None, T: torch.Tensor | None = None,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        B, _, H, W = current.shape
        if earlier is None or T is None or valid is None:
            warped = torch.zeros_like(current)
            v = current.new_zeros(B, 1, H, W)
        else:
            v = valid.to(current.dtype).view(B, 1, 1, 1)
            warped = self.warp(earlier.to(current.dtype), T) * v
            v = v.expand(B, 1, H, W)
        parts = [current, warped, v]
        if self.corr:
            parts.append(correlation(current, warped, self.corr))
        return current + self.mix(torch.cat(parts, 1))


@dataclass
class _State:
    stamp_ns: int
    T_global_ego: np.ndarray
    bev: torch.Tensor


class History:
    """One stream's earlier fused maps for :class:`TemporalFusion`, as the Pipeline keeps them.

    ``history.lookup(stamp_ns, T_global_ego, scene)`` -> (earlier map, T current ego -> earlier ego) of the
    kept state nearest ``lag`` seconds before (within ``tolerance``), or None; ``history.push(...)`` keeps
    this frame's map. The state is reset (nothing served) after a gap of more than ``max_gap`` s since the
    last frame, on a scene change, when time runs backwards, and on a pose jump (the ego moving faster than
    ``max_speed`` m/s between two frames): each reason is counted in ``resets``.
    """

    def __init__(self, lag: float = 0.5, tolerance: float = 0.2, max_gap: float = 0.6, max_speed: float = 60.0):
        self.lag, self.tolerance, self.max_gap, self.max_speed = lag, tolerance, max_gap, max_speed
        self.states: deque[_State] = deque()
        self.scene: str | None = None
        self.resets = {"gap": 0, "scene": 0, "backwards": 0, "pose jump": 0}

    def reset(self) -> None:
        self.states.clear()
        self.scene = None

    def _check(self, stamp_ns: int, T_global_ego: np.ndarray, scene: str) -> None:
        if not self.states:
            return
        last = self.states[-1]
        dt = (stamp_ns - last.stamp_ns) * 1e-9
        jump = float(np.linalg.norm(T_global_ego[:3, 3] - last.T_global_ego[:3, 3]))
        why = ("scene" if scene and self.scene and scene != self.scene else "backwards" if dt <= 0 else
               "gap" if dt > self.max_gap else "pose jump" if jump > self.max_speed * dt + 1.0 else None)
        if why:
            self.resets[why] += 1
            self.reset()

    def lookup(self, stamp_ns: int, T_global_ego: np.ndarray, scene: str = ""):
        self._check(stamp_ns, T_global_ego, scene)
        best = None
        for s in self.states:
            err = abs((stamp_ns - s.stamp_ns) * 1e-9 - self.lag)
            if err <= self.tolerance and (best is None or err < best[0]):
                best = (err, s)
        if best is None:
            return None
        s = best[1]
        T = np.linalg.inv(s.T_global_ego) @ T_global_ego   # current ego -> global -> earlier ego
        return s.bev, torch.as_tensor(T, dtype=torch.float32)

    def push(self, stamp_ns: int, T_global_ego: np.ndarray, scene: str, bev: torch.Tensor) -> None:
        self._check(stamp_ns, T_global_ego, scene)
        self.scene = scene or self.scene
        self.states.append(_State(int(stamp_ns), np.asarray(T_global_ego, np.float64), bev))
        while self.states and (stamp_ns - self.states[0].stamp_ns) * 1e-9 > self.lag + self.tolerance:
            self.states.popleft()
