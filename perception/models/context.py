"""BEV context: a coarser stage over the fused map, so a cell's features see a whole large vehicle.

The fuser's queries sample the lidar and radar maps a few cells around their own cell and each other within
about 6 m; a 12 m bus or trailer has its centre farther than that from most of its returns, and the held-out
world's confusion table shows them missed, not misnamed. The anchors put a BEV backbone after fusion
(BEVFusion's SECOND + FPN decoder, CenterPoint's two-stride backbone); this is its smallest form: a stride-2
stage (3.2 m cells on the tiny grid) of ``depth`` convolutions, upsampled and added back to the map. The last
BatchNorm's scale starts at zero, so the block starts as the identity and training decides what it adds.
"""

from __future__ import annotations

import torch
from torch import nn

from perception.models.encoders.lidar import conv_bn


class BEVContext(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): x + up(stage(x)); H and W even."""

    def __init__(self, channels: int, width: int | None = None, depth: int = 2):
        super().__init__()
        width = width or 2 * channels
        self.stage = nn.Sequential(conv_bn(channels, width, stride=2), *(conv_bn(width, width) for _ in range(depth)))
        self.up = nn.Sequential(nn.ConvTranspose2d(width, channels, 2, 2, bias=False), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.up[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ValueError(f"BEVContext: the map's height and width must be even, got {tuple(x.shape[-2:])}")
        return x + self.up(self.stage(x))
