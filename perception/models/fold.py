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

import contextlib
import copy
import logging
import weakref

import torch
from torch import nn

log = logging.getLogger(__name__)

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """``model`` in eval mode for the block, every submodule's own mode restored after it."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def conv_bn_pairs(model: nn.Module, batch) -> list[tuple[str, str]]:
    """(layer name, BatchNorm name) for every BatchNorm that, in one eval-mode forward of ``model`` on
    ``batch``, read exactly the tensor a convolution / linear layer returned, unchanged since (a linear layer
    only where its output is (N, C), the layout BatchNorm1d normalizes on the same axis), where every call
    of the BatchNorm read that layer's output and every call of the layer fed that BatchNorm, and the
    layer's weight belongs to no other module. Branches the batch does not run are not seen."""
    names = {m: n for n, m in model.named_modules()}
    last: dict[int, tuple[str, weakref.ref, int]] = {}
    calls: dict[str, int] = {}
    matched: dict[tuple[str, str], int] = {}

    def layer_hook(m, inputs, out):
        calls[names[m]] = calls.get(names[m], 0) + 1
        if torch.is_tensor(out) and not (isinstance(m, nn.Linear) and out.dim() != 2):
            last[id(out)] = (names[m], weakref.ref(out), out._version)

    def bn_hook(m, inputs, out):
        calls[names[m]] = calls.get(names[m], 0) + 1
        x = inputs[0] if inputs else None
        hit = last.get(id(x)) if torch.is_tensor(x) else None
        if hit is not None and hit[1]() is x and x._version == hit[2]:  # the layer's output, not edited since
            matched[(hit[0], names[m])] = matched.get((hit[0], names[m]), 0) + 1

    hooks = [m.register_forward_hook(layer_hook if isinstance(m, _FOLDABLE) else bn_hook)
             for m in model.modules() if isinstance(m, (*_FOLDABLE, *_BN))]
    try:
        with _eval_mode(model), torch.no_grad():
            model(batch)
    finally:
        for h in hooks:
            h.remove()
    owners: dict[int, int] = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    return [(layer, bn) for (layer, bn), n in matched.items()
            if n == calls[layer] == calls[bn] and owners.get(id(model.get_submodule(layer).weight)) == 1]


def _fold_pair(layer: nn.Module, bn: nn.Module) -> bool:
    if not bn.track_running_stats or bn.running_mean is None:
        return False  # a BatchNorm without running statistics normalizes by the batch: not a fixed map
    if isinstance(layer, nn.modules.conv._ConvTransposeNd) and layer.groups != 1:
        return False
    with torch.no_grad():  # in float64, rounded once to the layer's dtype
        w = layer.weight
        s = torch.rsqrt(bn.running_var.double() + bn.eps)
        if bn.weight is not None:
            s = s * bn.weight.double()
        t = -bn.running_mean.double() * s + (bn.bias.double() if bn.bias is not None else 0.0)
        axis = 1 if isinstance(layer, nn.modules.conv._ConvTransposeNd) else 0  # the output channels' axis
        shape = [1] * w.dim()
        shape[axis] = -1
        w.copy_((w.double() * s.reshape(shape)).to(w.dtype))
        b0 = layer.bias.double() if layer.bias is not None else torch.zeros_like(s)
        layer.bias = nn.Parameter((b0 * s + t).to(w.dtype), requires_grad=False)
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
        x, y = x.double(), y.double()
        if not torch.equal(torch.isnan(x), torch.isnan(y)):
            return False, float("nan")
        x, y = torch.nan_to_num(x, nan=0.0), torch.nan_to_num(y, nan=0.0)
        if not x.numel():
            continue
        scale = max(1.0, float(x.abs().max()))
        err = float((x - y).abs().max()) / scale
        if err != err or err > rtol:  # an infinity on one side only: nan or inf
            return False, err
        worst = max(worst, err)
    return True, worst


@contextlib.contextmanager
def _exact_float32():
    """CUDA's TF32 matmuls and convolutions off (they round the two networks differently)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def fold_batchnorm(model: nn.Module, batch, check_batch=None, rtol: float = 1e-4) -> tuple[nn.Module, int]:
    """An eval-mode deep copy of ``model`` (no gradients) with every BatchNorm :func:`conv_bn_pairs` finds
    on ``batch`` folded into its layer (replaced by ``nn.Identity``), and how many were folded. The copy's
    outputs on ``check_batch`` (default ``batch``; fp32, TF32 off) must equal the original's to ``rtol`` of
    each output's largest magnitude, with NaNs in the same places; otherwise the original model is returned
    with 0 (and a warning): some layer's output was read by something besides its BatchNorm."""
    pairs = conv_bn_pairs(model, batch)
    layers = [layer for layer, _ in pairs]
    pairs = [(layer, bn) for layer, bn in pairs if layers.count(layer) == 1]  # one output, two BatchNorms: keep
    net = copy.deepcopy(model).eval().requires_grad_(False)
    for p in net.parameters():
        p.grad = None
    n = 0
    for layer_name, bn_name in pairs:
        if _fold_pair(net.get_submodule(layer_name), net.get_submodule(bn_name)):
            parent, _, attr = bn_name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, attr, nn.Identity())
            n += 1
    if not n:
        return model, 0
    check = batch if check_batch is None else check_batch
    with _eval_mode(model), torch.no_grad(), _exact_float32():
        ok, err = _agree(model(check), net(check), rtol)
    if not ok:
        log.warning("BatchNorm folding changed the network's outputs (relative error %.2g): running it unfolded",
                    err)
        return model, 0
    return net, n
