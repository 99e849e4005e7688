"""Point encoders: pillars (voxels one cell tall) -> PointNet per pillar -> BEV scatter -> 2D backbone.

Lidar and radar share the pillar machinery; each has its own grid, features and backbone.
Inputs are the voxelized points (see ``perception.ops.voxelize``): voxels (M, P, C), coords (M, 4) as
(batch, z, y, x), num_points (M,).
"""

from __future__ import annotations

import torch
from torch import nn

from perception.ops.voxelize import VoxelGrid

# typical magnitudes of the point columns (``normalize=True`` divides each by its own, so every input of the pillar
# net is of order one): raw, the absolute x / y (tens of metres) drown the time lag (tenths of a second) and the
# points' offsets in their pillar (tenths of a metre) in the BatchNorm that follows the first layer, and a network
# trained on the raw columns learned nothing from the time lag (its velocities did not change when the time lag
# was zeroed: the motion between sweeps unread). x and y are scaled by the grid's half extent.
COLUMN_SCALE = {"z": 4.0, "intensity": 50.0, "time_lag": 0.1, "vx_comp": 5.0, "vy_comp": 5.0, "rcs": 10.0}


def conv_bn(cin, cout, stride=1, k=3):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class PillarFeatureNet(nn.Module):
    """Per point: its C input columns, offsets to the pillar's mean (3) and to the pillar's centre (2);
    Linear + BN + ReLU, max over the pillar's points -> (M, out_channels)."""

    def __init__(self, in_channels: int, out_channels: int, grid: VoxelGrid, columns: tuple | None = None):
        """``columns``: the names of the input columns, to divide each by its typical magnitude (``COLUMN_SCALE``;
        the offsets in the pillar by half a cell, the height offset by 1 m); None: the raw columns (the networks
        trained before; their checkpoints have no ``in_scale``)."""
        super().__init__()
        self.grid = grid
        self.linear = nn.Linear(in_channels + 5, out_channels, bias=False)
        self.norm = nn.BatchNorm1d(out_channels)
        if columns is None:
            self.register_buffer("in_scale", None)
        else:
            if len(columns) != in_channels:
                raise ValueError(f"PillarFeatureNet: {in_channels} input columns, {len(columns)} names {columns}")
            x0, y0, _, x1, y1, _ = grid.pc_range
            half = {"x": max(abs(x0), abs(x1)), "y": max(abs(y0), abs(y1))}
            unknown = [c for c in columns if c not in COLUMN_SCALE and c not in half]
            if unknown:
                raise ValueError(f"PillarFeatureNet: no scale for columns {unknown}; known: "
                                 f"{sorted([*COLUMN_SCALE, *half])}")
            cell = [grid.voxel_size[0] / 2, grid.voxel_size[1] / 2]
            scale = [half.get(c) or COLUMN_SCALE[c] for c in columns] + [*cell, 1.0] + cell
            # saved with the weights: a checkpoint trained on scaled columns fails to load into a raw net
            self.register_buffer("in_scale", 1.0 / torch.tensor(scale, dtype=torch.float32))

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
        if self.in_scale is not None:
            feats = feats * self.in_scale.to(feats.dtype)
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

    columns: tuple = ()  # the point columns a subclass reads

    def __init__(self, grid: VoxelGrid, pillar_channels: int = 32, out_channels: int = 64, normalize: bool = False):
        """``normalize``: the pillar net reads the columns scaled to order one (``PillarFeatureNet``)."""
        super().__init__()
        self.grid = grid
        self.pfn = PillarFeatureNet(len(self.columns), pillar_channels, grid, self.columns if normalize else None)
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

    def __init__(self, grid: VoxelGrid, pillar_channels: int = 32, out_channels: int = 64, normalize: bool = False):
        super().__init__(grid, pillar_channels, out_channels, normalize)


class RadarEncoder(PointBEVEncoder):
    """Radar columns: x y z, compensated Doppler vx_comp vy_comp, RCS, time lag."""

    columns = ("x", "y", "z", "vx_comp", "vy_comp", "rcs", "time_lag")

    def __init__(self, grid: VoxelGrid, pillar_channels: int = 16, out_channels: int = 32, normalize: bool = False):
        super().__init__(grid, pillar_channels, out_channels, normalize)
