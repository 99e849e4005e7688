"""Pretrained image backbones in plain torch: strict loading that names what does not fit, the packaged
ImageNet weights wired the way they were trained (checked on rendered camera images through BatchNorm's own
statistics), torchvision's ResNet layout by its published sizes, and the camera encoder around them."""

import cv2
import numpy as np
import pytest
import torch
from camera_helpers import front_camera, proxy_losses, training_item

from perception.models.encoders.backbones import (
    EfficientNetLite0,
    ResNet,
    build_backbone,
    load_weights,
    packaged_weights,
)
from perception.models.encoders.camera import CameraEncoder


@pytest.fixture(scope="module")
def lite0_file():
    return packaged_weights("efficientnet_lite0")


def test_packaged_weights_load_strictly_and_errors_name_the_keys(lite0_file, tmp_path):
    net = EfficientNetLite0()
    counts = load_weights(net, lite0_file)
    assert counts["loaded"] == len(net.state_dict()) and counts["left_out"] == 8  # the classifier head
    sd = torch.load(lite0_file, weights_only=True)
    torch.testing.assert_close(net._blocks[5]._depthwise_conv.weight, sd["_blocks.5._depthwise_conv.weight"])
    cases = {
        "missing keys ['_blocks.3._bn1.weight']": lambda d: d.pop("_blocks.3._bn1.weight"),
        "unexpected keys ['_blocks.16._bn1.weight']": lambda d: d.__setitem__("_blocks.16._bn1.weight",
                                                                              torch.zeros(3)),
        "wrong shapes ['_bn0.weight (31,) != (32,)']": lambda d: d.__setitem__("_bn0.weight", torch.zeros(31)),
    }
    for message, damage in cases.items():
        d = dict(sd)
        damage(d)
        torch.save(d, tmp_path / "w.pth")
        with pytest.raises(ValueError) as e:
            load_weights(EfficientNetLite0(), tmp_path / "w.pth")
        assert message in str(e.value)
    with pytest.raises(FileNotFoundError):
        load_weights(EfficientNetLite0(), tmp_path / "none.pth")
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg16")


def _bn_agreement(net, images):
    """Per BatchNorm layer: correlation between the channel means of its input on ``images`` and the running
    means the weights were trained with. A network wired as its weights were trained agrees closely."""
    corr = []

    def hook(m, inp, out):
        mu = inp[0].detach().mean((0, 2, 3)).numpy()
        corr.append(np.corrcoef(mu, m.running_mean.numpy())[0, 1])

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        net(images)
    for h in hooks:
        h.remove()
    return np.array(corr)


def test_imagenet_weights_are_wired_as_trained(synthetic_root, lite0_file):
    files = sorted(synthetic_root.glob("samples/CAM_*/*.jpg"))[:12]
    imgs = np.stack([cv2.resize(cv2.imread(str(f))[:, :, ::-1], (224, 128), interpolation=cv2.INTER_AREA)
                     for f in files]).astype(np.float32) / 255
    x = torch.tensor((imgs - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225], dtype=torch.float32).permute(0, 3, 1, 2)
    net = build_backbone("efficientnet_lite0", "imagenet").eval()
    good = _bn_agreement(net, x)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert len(good) == n_bn == 48 and np.median(good) > 0.8, np.round(good, 2)
    # the classic porting error, a convolution's output channels out of step with its BatchNorm: caught
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    perm = torch.randperm(80, generator=torch.Generator().manual_seed(0))
    sd["_blocks.5._project_conv.weight"] = sd["_blocks.5._project_conv.weight"][perm]
    wrong = EfficientNetLite0()
    wrong.load_state_dict(sd)
    bad = _bn_agreement(wrong.eval(), x)
    bn2 = 3 + 3 * 4 + 2  # _blocks.5._bn2: stem 1, block 0 two, then three per block
    assert good[bn2] > 0.7 and bad[bn2] < 0.3, (good[bn2], bad[bn2])
    assert np.median(bad[bn2:]) < np.median(good[bn2:]) - 0.1


@pytest.mark.parametrize("depth,params,keys", [(18, 11_689_512, 122), (50, 25_557_032, 320)])
def test_resnet_has_torchvisions_layout(depth, params, keys):
    """torchvision's published sizes: parameters (with the 1000-class fc) and state-dict entries."""
    net = ResNet(depth)
    fc = net.channels[-1] * 1000 + 1000
    assert sum(p.numel() for p in net.parameters()) + fc == params
    assert len(net.state_dict()) + 2 == keys
    assert "layer4.1.downsample.0.weight" not in net.state_dict() and "layer2.0.downsample.1.running_var" in \
        net.state_dict()
    outs = net(torch.zeros(1, 3, 128, 224))
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 28), (8, 14), (4, 7)]
    assert [o.shape[1] for o in outs] == list(net.channels)


def test_camera_encoder_with_a_pretrained_backbone(lite0_file):
    enc = CameraEncoder(out_channels=32, backbone="efficientnet_lite0", weights="imagenet", freeze_bn=True)
    y = enc(torch.randn(2, 3, 3, 128, 224))
    assert y.shape == (2, 3, 32, 16, 28)
    enc.train()
    bns = [m for m in enc.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not any(m.training for m in bns) and enc.out.training  # frozen statistics, the rest trains
    before = bns[0].running_mean.clone()
    enc(torch.randn(1, 2, 3, 128, 224))
    torch.testing.assert_close(bns[0].running_mean, before)
    y.sum().backward()
    assert enc.backbone._conv_stem.weight.grad is not None  # the backbone fine-tunes
    with pytest.raises(ValueError, match="no pretrained weights"):
        CameraEncoder(weights="imagenet")


def test_focal_length_and_lidar_depth_targets():
    from perception.models.encoders.camera import depth_targets, focal_length

    e2i = torch.stack([front_camera(fx=100.0), front_camera(fx=250.0)]).unsqueeze(0)  # B 1, N 2
    torch.testing.assert_close(focal_length(e2i), torch.tensor([[100.0, 250.0]]))
    bins = (1.0, 61.0, 30)  # 2 m bins
    # straight ahead of the camera at 10.2 m and, on the same ray, 30 m (the nearer wins); one behind; one left
    pts = torch.tensor([[11.7, 0.0, 1.5], [31.5, 0.0, 1.5], [-5.0, 0.0, 1.5], [11.5, 60.0, 1.5]])
    tgt = depth_targets(pts, torch.zeros(4, dtype=torch.long), e2i, (16, 28), (128, 224), bins)
    assert tgt.shape == (1, 2, 16, 28)
    assert tgt[0, 0, 8, 14] == 4  # floor((10.2 - 1) / 2)
    assert tgt[0, 1, 8, 14] == 4 and (tgt >= 0).sum() == 2  # the others are behind or outside the images


def test_depth_prior_steers_the_camera_sampling():
    from perception.models.fusion import CameraCrossAttention

    torch.manual_seed(0)
    att = CameraCrossAttention(dim=16, in_channels=8)
    xy = torch.tensor([[10.0, 0.0], [20.0, 0.0]])  # two cells ahead: 10 m and 20 m from the ego
    q = torch.randn(1, 2, 16)
    feats = torch.randn(1, 1, 8, 16, 28)
    e2i = front_camera().view(1, 1, 4, 4)
    probs = torch.full((1, 1, 30, 16, 28), 1e-3)
    probs[:, :, 3] = 1.0  # the camera sees something 7-9 m away along every ray: the 10 m cell (8.5 m deep)
    seen = probs.clone().requires_grad_(True)
    out, hit = att(q, feats, e2i, (128, 224), xy, (seen, (1.0, 61.0, 30)))
    base, _ = att(q, feats, e2i, (128, 224), xy, None)
    bias = att.out(torch.zeros(att.out.in_features))
    assert hit.all()
    torch.testing.assert_close(out[0, 0], base[0, 0])  # where the camera sees depth, it contributes fully
    assert (out[0, 1] - bias).norm() < 0.01 * (base[0, 1] - bias).norm()  # behind what it sees: nothing
    out.sum().backward()
    assert seen.grad.abs().sum() > 0  # the depth distribution learns from the detection loss too


def test_depth_config_trains_end_to_end():
    net, losses = proxy_losses("configs/ablation/camera_lite0_depth.py")
    assert 0 < float(losses["loss_depth"]) < 10 and torch.isfinite(sum(losses.values()))
    sum(losses.values()).backward()
    assert net.encoders["camera"].depth_head[2].weight.grad.abs().sum() > 0


def test_box_semantic_targets_paint_the_nearer_box_and_ignore_hidden_ones():
    from perception.models.encoders.camera import box_semantic_targets
    from perception.types import DETECTION_CLASSES, Boxes3D

    e2i = torch.stack([front_camera(), torch.zeros(4, 4)]).unsqueeze(0)  # camera 2 has no view (dropped)
    car, ped = DETECTION_CLASSES.index("car"), DETECTION_CLASSES.index("pedestrian")
    # listed nearest first (painting in list order would let the car cover the pedestrian): a pedestrian 10 m
    # ahead, a car 20 m ahead behind it, a car behind the ego, a car 40 m ahead annotated as hidden
    boxes = np.array([[11.5, 0.0, 1.0, 0.6, 0.6, 1.8, 0.0, 0, 0], [21.5, -1.5, 1.0, 4.5, 1.9, 1.6, 0.0, 0, 0],
                      [-10.0, 0.0, 1.0, 4.5, 1.9, 1.6, 0.0, 0, 0], [41.5, 8.0, 1.0, 4.5, 1.9, 1.6, 0.0, 0, 0]])
    gt = Boxes3D(boxes, np.array([ped, car, car, car]), visibility=np.array([4, 4, 4, 1]))
    tgt = box_semantic_targets([gt], e2i, (16, 28), (128, 224))
    assert tgt.shape == (1, 2, 16, 28)
    assert (tgt[0, 1] == -1).all()  # no view: ignored, not background
    front = tgt[0, 0]
    assert front[8, 14] == 1 + ped and (front == 1 + car).any()  # the pedestrian over the car behind it
    alone = box_semantic_targets([gt[np.array([1])]], e2i, (16, 28), (128, 224))[0, 0]
    assert alone[8, 14] == 1 + car and (alone > 0).sum() > (front == 1 + car).sum()
    # the car 40 m ahead and 8 m left, annotated hidden, is ignored (-1), neither background nor a car
    col = int((112 - 100 * 8.0 / 40.0) * 28 / 224)  # its centre column in feature pixels
    assert (front[:, col] == -1).any() and not (front[:, col] == 1 + car).any()
    shown = Boxes3D(boxes, gt.labels, visibility=np.array([4, 4, 4, 4]))
    assert (box_semantic_targets([shown], e2i, (16, 28), (128, 224))[0, 0, :, col] == 1 + car).any()
    # the pedestrian: about 6 x 18 input pixels -> one column and two or three rows, not a widened block
    assert 1 <= int((front == 1 + ped).sum(1).max()) <= 2 and 2 <= int((front == 1 + ped).sum(0).max()) <= 3


def test_box_semantic_targets_cut_a_box_half_behind_the_camera_at_the_near_plane():
    """A car passing the camera on its left, its rear half behind the image plane: its image reaches the
    image's left edge (the edges cut at the near plane), though only four corners are in front."""
    from perception.models.encoders.camera import box_semantic_targets
    from perception.types import Boxes3D

    e2i = front_camera().view(1, 1, 4, 4)  # the camera at x = 1.5 m
    gt = Boxes3D(np.array([[1.5, 2.5, 1.0, 4.5, 1.9, 1.6, 0.0, 0, 0]]), np.array([0]))
    tgt = box_semantic_targets([gt], e2i, (16, 28), (128, 224))[0, 0]
    assert (tgt[:, 0] == 1).any()  # reaches the left edge
    cols = (tgt == 1).any(0).nonzero().flatten()
    # its front corners (2.25 m in front of the camera, 1.55-3.45 m left) end at pixel 112 - 100 * 1.55 / 2.25
    assert int(cols.min()) == 0 and int(cols.max()) == round((112 - 100 * 1.55 / 2.25) / 8) - 1


def test_semantic_head_trains_and_stays_out_of_the_deploy_checkpoint(tmp_path):
    from perception.config import build, load_config
    from perception.pipeline import Pipeline, Preprocessor
    from perception.training.wrapper import FusionDetector

    cfg = load_config("configs/tiny.py")
    assert cfg["model"]["encoders"]["camera"]["semantic"]
    net = build(cfg["model"]).train()
    pre = Preprocessor(cfg["preprocess"])
    det = FusionDetector(net, pre.to_dict())
    item = training_item(pre)
    losses = det([item["inputs"]], [item["data_samples"]], mode="loss")
    assert 0.5 < float(losses["loss_semantic"]) < 10  # about log(11) from random weights
    losses["loss_semantic"].backward()  # alone: the detection and depth losses reach the backbone anyway
    head = net.encoders["camera"].semantic_head
    assert head[2].weight.grad.abs().sum() > 0
    last = [p for m in net.encoders["camera"].backbone.stages()[-1] for p in m.parameters()]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in last)  # it reaches the backbone
    assert net.head.heatmap[-1].weight.grad is None
    net.eval()  # at inference: features and depth only (the ONNX graph and the Pipeline never see the head)
    with torch.no_grad():
        assert len(net.encoders["camera"](torch.zeros(1, 6, 3, 128, 224), torch.eye(4).repeat(1, 6, 1, 1))) == 2
    det.deploy_checkpoint(tmp_path / "c.pth")
    saved = torch.load(tmp_path / "c.pth", weights_only=True)["state_dict"]
    assert not any("semantic_head" in k for k in saved) and any("depth_head" in k for k in saved)
    Pipeline("configs/tiny.py", tmp_path / "c.pth")  # loads: the training-only head is not required
    del saved["encoders.camera.depth_head.0.weight"]
    torch.save({"state_dict": saved, "meta": {"preprocess": pre.to_dict()}}, tmp_path / "d.pth")
    with pytest.raises(ValueError, match="depth_head"):  # any other missing weight is still an error
        Pipeline("configs/tiny.py", tmp_path / "d.pth")


def test_bev_context_starts_as_identity_and_learns():
    from perception.models.context import BEVContext

    torch.manual_seed(0)
    ctx = BEVContext(8)
    x = torch.randn(2, 8, 16, 16)
    assert torch.equal(ctx(x), x)  # zero-initialized last scale: the block starts as the identity
    opt = torch.optim.SGD(ctx.parameters(), lr=0.1)
    target = x + torch.randn_like(x)
    for _ in range(2):  # the first step moves the scale, the second reaches the stage behind it
        opt.zero_grad()
        ((ctx(x) - target) ** 2).mean().backward()
        opt.step()
    assert ctx.stage[0][0].weight.grad.abs().sum() > 0 and not torch.equal(ctx(x), x)
    with pytest.raises(ValueError, match="even"):
        ctx(torch.randn(1, 8, 15, 16))


def test_context_config_trains_end_to_end():
    """The candidate config (configs/ablation/tiny_context.py): the context stage sits between the fused map and
    the head, after the temporal mix, and gets gradients from the detection loss."""
    from perception.config import build, load_config
    from perception.pipeline import Preprocessor
    from perception.training.wrapper import FusionDetector

    cfg = load_config("configs/ablation/tiny_context.py")
    net = build(cfg["model"])
    assert net.context is not None and net.temporal is not None
    with torch.no_grad():  # a non-identity block, so its gradient reaches the stage's first convolution
        net.context.up[1].weight.fill_(1.0)
    pre = Preprocessor(cfg["preprocess"])
    det = FusionDetector(net, pre.to_dict())
    item = training_item(pre)
    losses = det([item["inputs"]], [item["data_samples"]], mode="loss")
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert net.context.stage[0][0].weight.grad.abs().sum() > 0
