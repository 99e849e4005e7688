"""BatchNorm folded into the layer before it (perception.models.fold) and the Pipeline's folded network."""

import logging

import numpy as np
import pytest
import torch
from torch import nn

from perception.models.fold import conv_bn_pairs, fold_batchnorm


def _randomize_stats(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) + 0.2)
            if m.affine:
                m.weight.data.copy_(torch.randn(n, generator=g))
                m.bias.data.copy_(torch.randn(n, generator=g))


class Block(nn.Module):
    """Every shape of pair the networks have: a Sequential conv + BN, a conv called in forward code and its BN,
    a depthwise conv, a transposed conv, a linear layer + BatchNorm1d, a BN without affine parameters; and
    one BatchNorm after a ReLU (no layer right before it: stays)."""

    def __init__(self):
        super().__init__()
        self.seq = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.dw, self.dw_bn = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8)
        self.up, self.up_bn = nn.ConvTranspose2d(8, 4, 2, 2, bias=False), nn.BatchNorm2d(4, affine=False)
        self.after_relu = nn.BatchNorm2d(4)
        self.fc, self.fc_bn = nn.Linear(4, 5), nn.BatchNorm1d(5)

    def forward(self, x):
        x = self.seq(x)
        x = self.dw_bn(self.dw(x))
        x = self.after_relu(torch.relu(self.up_bn(self.up(x))))
        return {"map": x, "vec": self.fc_bn(self.fc(x.mean((2, 3))))}


def test_fold_gives_the_same_outputs_and_leaves_the_original():
    torch.manual_seed(0)
    model = Block().eval()
    _randomize_stats(model)
    x = torch.randn(2, 3, 16, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pairs = conv_bn_pairs(model, x)
    assert sorted(pairs) == [("dw", "dw_bn"), ("fc", "fc_bn"), ("seq.0", "seq.1"), ("up", "up_bn")]
    net, n = fold_batchnorm(model, x)
    assert n == 4 and net is not model
    assert isinstance(net.seq[1], nn.Identity) and isinstance(net.up_bn, nn.Identity)
    assert isinstance(net.after_relu, nn.BatchNorm2d)  # nothing to fold it into
    with torch.no_grad():
        ref, got = model(torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))), None
        got = net(torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-5)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the original is untouched
    assert isinstance(model.seq[1], nn.BatchNorm2d) and not model.training


class Reused(nn.Module):
    """A convolution whose output a residual also reads: folding its BatchNorm would change the sum."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class Shared(nn.Module):
    """One convolution's output normalized by two BatchNorms: folding either would change the other."""

    def __init__(self):
        super().__init__()
        self.conv, self.a, self.b = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.a(y) - self.b(y)


def test_a_layer_output_read_elsewhere_is_not_folded(caplog):
    x = torch.randn(1, 4, 8, 8)
    model = Reused().eval()
    _randomize_stats(model)
    assert conv_bn_pairs(model, x) == [("conv", "bn")]  # hooks cannot see the residual ...
    with caplog.at_level(logging.WARNING, logger="perception.models.fold"):
        net, n = fold_batchnorm(model, x)
    assert net is model and n == 0  # ... the check on the outputs does
    assert "changed the network's outputs" in caplog.text
    shared = Shared().eval()
    _randomize_stats(shared)
    net, n = fold_batchnorm(shared, x)
    assert n == 0 and net is shared


class Unpairable(nn.Module):
    """Pairs the hooks must refuse: a convolution also called without its BatchNorm, an output changed in
    place between the layer and its BatchNorm, and a weight two layers share."""

    def __init__(self):
        super().__init__()
        self.twice, self.bn1 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.edited, self.bn2 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.a, self.b = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)
        self.b.weight = self.a.weight
        self.bn3 = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.bn1(self.twice(x)) + self.twice(x)
        y = self.bn2(self.edited(y).relu_())
        return self.bn3(self.a(y)) + self.b(y)


def test_the_hooks_refuse_what_folding_would_change():
    x = torch.randn(1, 4, 8, 8)
    model = Unpairable().eval()
    _randomize_stats(model)
    assert conv_bn_pairs(model, x) == []
    net, n = fold_batchnorm(model, x)
    assert n == 0 and net is model


def test_a_nan_only_one_side_has_is_a_difference():
    from perception.models.fold import _agree

    a = torch.tensor([1.0, float("nan"), 2.0])
    assert _agree({"x": a}, {"x": a.clone()}, 1e-4)[0]  # NaN in the same place: the same output
    assert not _agree({"x": a}, {"x": torch.tensor([1.0, 5.0, 2.0])}, 1e-4)[0]
    assert not _agree({"x": torch.tensor([1.0, 5.0])}, {"x": torch.tensor([1.0, float("nan")])}, 1e-4)[0]
    assert not _agree({"x": torch.tensor([1.0, 5.0])}, {"x": torch.tensor([1.0, float("inf")])}, 1e-4)[0]


@pytest.fixture(scope="module")
def frames(synthetic_root):
    from perception.sources.nuscenes import NuScenesSource

    return NuScenesSource(synthetic_root, "v1.0-mini", None, lidar_sweeps=4)


def test_pipeline_runs_the_folded_network_with_the_same_detections(frames):
    from perception.pipeline import Pipeline

    folded = Pipeline("configs/tiny.py", "checkpoints/tiny.pth")
    plain = Pipeline("configs/tiny.py", "checkpoints/tiny.pth", runtime={"fold_batchnorm": False})
    assert plain.net is plain.model
    for i in (0, len(frames) - 1):
        a, b = folded(frames[i]), plain(frames[i])
        assert (folded.last_timing["fold"] > 0) == (i == 0)  # folded once, at the first frame
        assert len(a.scores) == len(b.scores) > 0
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        np.testing.assert_allclose(a.boxes.data, b.boxes.data, atol=1e-3)
    net = folded.net
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.model.modules())
    left = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert net is not folded.model and folded.fold_stats["batchnorms"] == n_bn - left > 0.9 * n_bn
    assert folded.net is net  # made once, not per frame
    # the model as trained stays as it was: its state dict still loads into a fresh network
    assert set(folded.model.state_dict()) == set(plain.model.state_dict())
    # an edit of the model's weights after the first frame reaches inference (the copy is made again)
    with torch.no_grad():
        for p in (folded, plain):
            conv = p.model.encoders["lidar"].modules()
            w = next(m for m in conv if isinstance(m, nn.Conv2d)).weight
            w.mul_(-1.0)
    assert folded.net is not net
    a, b = folded(frames[1]), plain(frames[1])
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    # new memory for a weight is seen too; an edit through .data in place needs refresh_net()
    net = folded.net
    for p in (folded, plain):
        bias = p.model.head.heatmap[-1].bias  # the class heatmap's last convolution
        bias.data = bias.data + 0.5
    assert folded.net is not net
    net = folded.net
    for p in (folded, plain):
        p.model.head.heatmap[-1].bias.data.add_(0.5)
    assert folded.net is net
    folded.refresh_net()
    a, b = folded(frames[1]), plain(frames[1])
    assert folded.fold_stats["folds"] == 4
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    # training mode: the model itself (a folded copy cannot learn)
    folded.model.train()
    assert folded.net is folded.model
    folded.model.eval()
