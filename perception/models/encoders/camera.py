"""Camera encoder: a small ResNet-style CNN + FPN in plain torch, shared by all views."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


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
    """(B, N_cam, 3, H, W) normalized images -> (B, N_cam, C, H/stride, W/stride) features (stride 8).

    Backbone stages at strides 4, 8, 16; the FPN adds the upsampled stride-16 map to stride 8.
    """

    stride = 8

    def __init__(self, widths=(32, 64, 128), out_channels: int = 64):
        super().__init__()
        w0, w1, w2 = widths
        self.stem = nn.Sequential(nn.Conv2d(3, w0, 5, 2, 2, bias=False), nn.BatchNorm2d(w0), nn.ReLU(True))
        self.s4 = _Block(w0, w0, 2)
        self.s8 = _Block(w0, w1, 2)
        self.s16 = _Block(w1, w2, 2)
        self.lat8 = nn.Conv2d(w1, out_channels, 1)
        self.lat16 = nn.Conv2d(w2, out_channels, 1)
        self.out = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, 1, 1), nn.ReLU(True))
        self.out_channels = out_channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        B, N = images.shape[:2]
        x = images.flatten(0, 1)
        c8 = self.s8(self.s4(self.stem(x)))
        c16 = self.s16(c8)
        p8 = self.lat8(c8) + F.interpolate(self.lat16(c16), size=c8.shape[-2:], mode="bilinear", align_corners=False)
        p8 = self.out(p8)
        return p8.view(B, N, *p8.shape[1:])
