"""Point encoders: pillars (voxels one cell tall) -> PointNet per pillar -> BEV scatter -> 2D backbone.

Lidar and radar share the pillar machinery; each has its own grid, features and backbone.
Inputs are the voxelized points (see ``perception.ops.voxelize``): voxels (M, P, C), coords (M, 4) as
(batch, z, y, x), num_points (M,).
"""

from __future__ import annotations

import torch
from torch import nn

from perception.ops.voxelize import VoxelGrid


def conv_bn(cin, cout, stride=1, k=3):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class PillarFeatureNet(nn.Module):
    """Per point: its C input columns, offsets to the pillar's mean (3) and to the pillar's centre (2);
    Linear + BN + ReLU, max over the pillar's points -> (M, out_channels)."""

    def __init__(self, in_channels: int, out_channels: int, grid: VoxelGrid):
        super().__init__()
        self.grid = grid
        self.linear = nn.Linear(in_channels + 5, out_channels, bias=False)
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, voxels: torch.Tensor, num_points: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        M, P, _ = voxels.shape
        if M == 0:  # an empty cloud: no pillars (BatchNorm cannot see zero rows)
            return voxels.new_zeros((0, self.linear.out_features)) + 0 * self.linear.weight.sum()
        mask = (torch.arange(P, device=voxels.device)[None, :] < num_points[:, None]).unsqueeze(-1)
        n = num_points.clamp(min=1).to(voxels.dtype).view(M, 1, 1)
        mean = (voxels[..., :3] * mask).sum(1, keepdim=True) / n
        vx, vy = self.grid.voxel_size[0], self.grid.voxel_size[1]
        cx = coords[:, 3].to(voxels.dtype) * vx + vx / 2 + self.grid.pc_range[0]
        cy = coords[:, 2].to(voxels.dtype) * vy + vy / 2 + self.grid.pc_range[1]
        centre = torch.stack([cx, cy], -1).unsqueeze(1)
        feats = torch.cat([voxels, voxels[..., :3] - mean, voxels[..., :2] - centre], dim=-1) * mask
        x = self.linear(feats.reshape(M * P, feats.shape[-1]))
        x = torch.relu(self.norm(x)).view(M, P, self.linear.out_features)  # explicit: M may be 0 in ONNX
        x = x.masked_fill(~mask, float("-inf")).amax(dim=1)
        return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def scatter_bev(feats: torch.Tensor, coords: torch.Tensor, batch_size: int, hw: tuple[int, int]) -> torch.Tensor:
    """(M, C) pillar features at (batch, z, y, x) -> (B, C, H, W); empty cells are zero."""
    H, W = hw
    out = feats.new_zeros((batch_size, H * W, feats.shape[1]))
    if len(feats):
        out[coords[:, 0].long(), coords[:, 2].long() * W + coords[:, 3].long()] = feats
    return out.permute(0, 2, 1).reshape(batch_size, -1, H, W)


class PointBEVEncoder(nn.Module):
    """Pillars -> BEV grid -> backbone. Returns {"bev": (B, C_out, H/2, W/2), "bev_hr": (B, C_hr, H, W)}."""

    def __init__(self, in_channels: int, grid: VoxelGrid, pillar_channels: int = 32, out_channels: int = 64):
        super().__init__()
        self.grid = grid
        self.pfn = PillarFeatureNet(in_channels, pillar_channels, grid)
        c = pillar_channels
        self.hr = nn.Sequential(conv_bn(c, c), conv_bn(c, c))
        self.down = nn.Sequential(conv_bn(c, out_channels, stride=2), conv_bn(out_channels, out_channels),
                                  conv_bn(out_channels, out_channels))
        self.out_channels = out_channels
        self.hr_channels = c

    def forward(self, voxels, num_points, coords, batch_size: int) -> dict[str, torch.Tensor]:
        sx, sy, _ = self.grid.shape_xyz
        f = self.pfn(voxels, num_points, coords)
        bev = scatter_bev(f, coords, batch_size, (sy, sx))
        hr = self.hr(bev)
        return {"bev": self.down(hr), "bev_hr": hr}


class LidarEncoder(PointBEVEncoder):
    """Lidar columns: x y z intensity time_lag."""

    columns = ("x", "y", "z", "intensity", "time_lag")

    def __init__(self, grid: VoxelGrid, pillar_channels: int = 32, out_channels: int = 64):
        super().__init__(len(self.columns), grid, pillar_channels, out_channels)


class RadarEncoder(PointBEVEncoder):
    """Radar columns: x y z, compensated Doppler vx_comp vy_comp, RCS, time lag."""

    columns = ("x", "y", "z", "vx_comp", "vy_comp", "rcs", "time_lag")

    def __init__(self, grid: VoxelGrid, pillar_channels: int = 16, out_channels: int = 32):
        super().__init__(len(self.columns), grid, pillar_channels, out_channels)
