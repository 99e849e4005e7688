"""BatchNorm folded into the convolution before it, for inference.

In eval mode a BatchNorm is an affine map per channel, y = s * x + t with s = gamma / sqrt(var + eps) and
t = beta - s * mean; when its input is a convolution's (or a linear layer's) output and nothing else reads
that output, the map can live in the convolution's weights and bias: w' = s * w, b' = s * b + t, and the
BatchNorm becomes the identity. Every deployment toolchain does this (TensorRT, ONNX Runtime's graph
optimizer, ``torch.fx``'s fuser for traced graphs). Our networks are not traceable as one graph (their
branches depend on which sensors are present), so the pairs are found by running the network once with
hooks: a BatchNorm whose input is the very tensor a convolution just returned. Whether anything else read
that tensor cannot be seen from hooks, so the folded copy is checked against the original on random inputs
and not used (the original is returned) unless every output agrees.

    net, n = fold_batchnorm(model, batch)   # a folded deep copy (eval mode) and how many were folded
"""

from __future__ import annotations

import copy
import logging
import weakref

import torch
from torch import nn

log = logging.getLogger(__name__)

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


def conv_bn_pairs(model: nn.Module, batch) -> list[tuple[str, str]]:
    """(layer name, BatchNorm name) for every BatchNorm that, in one eval-mode forward of ``model`` on
    ``batch``, read exactly the tensor a convolution / linear layer returned (a linear layer only where its
    output is (N, C), the layout BatchNorm1d normalizes on the same axis). Branches the batch does not run
    are not seen."""
    names = {m: n for n, m in model.named_modules()}
    last: dict[int, tuple[nn.Module, weakref.ref]] = {}
    pairs: dict[str, str] = {}

    def layer_hook(m, inputs, out):
        if torch.is_tensor(out) and not (isinstance(m, nn.Linear) and out.dim() != 2):
            last[id(out)] = (m, weakref.ref(out))

    def bn_hook(m, inputs, out):
        x = inputs[0] if inputs else None
        hit = last.get(id(x)) if torch.is_tensor(x) else None
        if hit is not None and hit[1]() is x:
            pairs.setdefault(names[m], names[hit[0]])

    hooks = [m.register_forward_hook(layer_hook if isinstance(m, _FOLDABLE) else bn_hook)
             for m in model.modules() if isinstance(m, (*_FOLDABLE, *_BN))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(batch)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return [(layer, bn) for bn, layer in pairs.items()]


def _fold_pair(layer: nn.Module, bn: nn.Module) -> bool:
    if not bn.track_running_stats or bn.running_mean is None:
        return False  # a BatchNorm without running statistics normalizes by the batch: not a fixed map
    if isinstance(layer, nn.modules.conv._ConvTransposeNd) and layer.groups != 1:
        return False
    with torch.no_grad():
        w = layer.weight
        s = torch.rsqrt(bn.running_var.float() + bn.eps)
        if bn.weight is not None:
            s = s * bn.weight.float()
        t = -bn.running_mean.float() * s + (bn.bias.float() if bn.bias is not None else 0.0)
        axis = 1 if isinstance(layer, nn.modules.conv._ConvTransposeNd) else 0  # the output channels' axis
        shape = [1] * w.dim()
        shape[axis] = -1
        w.mul_(s.reshape(shape).to(w.dtype))
        b0 = layer.bias.float() if layer.bias is not None else torch.zeros_like(s)
        layer.bias = nn.Parameter((b0 * s + t).to(w.dtype))
    return True


def _outputs(x) -> list[torch.Tensor]:
    if torch.is_tensor(x):
        return [x]
    if isinstance(x, dict):
        return [t for k in sorted(x, key=str) for t in _outputs(x[k])]
    if isinstance(x, (list, tuple)):
        return [t for v in x for t in _outputs(v)]
    return []


def _agree(a, b, rtol: float) -> tuple[bool, float]:
    worst = 0.0
    ta, tb = _outputs(a), _outputs(b)
    if len(ta) != len(tb):
        return False, float("inf")
    for x, y in zip(ta, tb):
        if x.shape != y.shape or x.dtype != y.dtype:
            return False, float("inf")
        if not x.is_floating_point():
            if not torch.equal(x, y):
                return False, float("inf")
            continue
        x, y = x.float(), y.float()
        scale = max(1.0, float(x.abs().max())) if x.numel() else 1.0
        err = float((x - y).abs().max()) / scale if x.numel() else 0.0
        worst = max(worst, err)
    return worst <= rtol, worst


def fold_batchnorm(model: nn.Module, batch, check_batch=None, rtol: float = 1e-4) -> tuple[nn.Module, int]:
    """An eval-mode deep copy of ``model`` with every BatchNorm :func:`conv_bn_pairs` finds on ``batch``
    folded into its layer (replaced by ``nn.Identity``), and how many were folded. The copy's outputs on
    ``check_batch`` (default ``batch``) must equal the original's to ``rtol`` of each output's largest
    magnitude; otherwise the original model is returned with 0 (and a warning): some layer's output was
    read by something besides its BatchNorm."""
    pairs = conv_bn_pairs(model, batch)
    layers = [layer for layer, _ in pairs]
    pairs = [(layer, bn) for layer, bn in pairs if layers.count(layer) == 1]  # one output, two BatchNorms: keep
    net = copy.deepcopy(model).eval()
    n = 0
    for layer_name, bn_name in pairs:
        if _fold_pair(net.get_submodule(layer_name), net.get_submodule(bn_name)):
            parent, _, attr = bn_name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, attr, nn.Identity())
            n += 1
    if not n:
        return model, 0
    check = batch if check_batch is None else check_batch
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ok, err = _agree(model(check), net(check), rtol)
    finally:
        model.train(was_training)
    if not ok:
        log.warning("BatchNorm folding changed the network's outputs (relative error %.2g): running it unfolded",
                    err)
        return model, 0
    return net, n
