"""Camera encoder shared by all views: a backbone and an FPN to one stride-8 map.

``backbone="scratch"`` is a small ResNet-style CNN trained from random weights (the tests, and checkpoints
made before pretrained backbones); ``"efficientnet_lite0"`` (ImageNet weights packaged offline:
``weights="imagenet"``) or ``"resnet18"``/``"resnet34"``/``"resnet50"`` (a torchvision state-dict file as
``weights``) are the pretrained backbones of perception.models.encoders.backbones, their stride 8/16/32
features merged top-down. ``freeze_bn`` keeps the backbone's BatchNorm statistics at their pretrained values
while training (its affine parameters still learn).
"""

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
    """(B, N_cam, 3, H, W) normalized images -> (B, N_cam, C, H/stride, W/stride) features (stride 8)."""

    stride = 8

    def __init__(self, widths=(32, 64, 128), out_channels: int = 64, backbone: str = "scratch", weights=None,
                 freeze_bn: bool = False):
        super().__init__()
        self.backbone_name, self.freeze_bn = backbone, freeze_bn
        self.out_channels = out_channels
        if backbone == "scratch":
            if weights:
                raise ValueError("backbone 'scratch' has no pretrained weights")
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
            self.lat = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in self.backbone.channels)
        self.out = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, 1, 1), nn.ReLU(True))

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.freeze_bn and self.backbone_name != "scratch":
            for m in self.backbone.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        B, N = images.shape[:2]
        x = images.flatten(0, 1)
        if self.backbone_name == "scratch":
            c8 = self.s8(self.s4(self.stem(x)))
            c16 = self.s16(c8)
            p8 = self.lat8(c8) + F.interpolate(self.lat16(c16), size=c8.shape[-2:], mode="bilinear",
                                               align_corners=False)
        else:
            feats = self.backbone(x)  # strides 8, 16, 32
            p = self.lat[2](feats[2])
            for lat, f in ((self.lat[1], feats[1]), (self.lat[0], feats[0])):
                p = lat(f) + F.interpolate(p, size=f.shape[-2:], mode="bilinear", align_corners=False)
            p8 = p
        p8 = self.out(p8)
        return p8.view(B, N, *p8.shape[1:])
