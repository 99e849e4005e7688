"""The fusion network on CPU: shapes, gradients, missing modalities, bad input, overfitting, voxelization."""

import math

import numpy as np
import pytest
import torch

from perception.config import ConfigError, build, load_config
from perception.models.model import training_only
from perception.ops import VoxelGrid, voxelize_dynamic, voxelize_hard
from perception.pipeline import Pipeline, Preprocessor
from perception.types import MODALITIES, Detections, PointCloud, SensorFrame


@pytest.fixture(scope="module")
def frames(synthetic_root):
    from perception.sources.nuscenes import NuScenesSource

    src = NuScenesSource(synthetic_root, "v1.0-mini", "mini_train", lidar_sweeps=3)
    return [src[1], src[2]]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Pipeline("configs/tiny.py")


def test_voxelization_numba_and_torch_agree(frames):
    g = VoxelGrid((-51.2, -51.2, -5.0, 51.2, 51.2, 3.0), (0.4, 0.4, 8.0))
    pts = frames[0].lidar.to_array(("x", "y", "z", "intensity", "time_lag"))
    pts[::97, 0] = np.nan  # NaN rows are dropped by both
    for max_pts, max_vox in ((5, 2000), (32, 60000)):
        a = voxelize_hard(pts, g, max_pts, max_vox)
        b = voxelize_hard(torch.from_numpy(pts), g, max_pts, max_vox)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y.numpy())
    # the last run (max_points 32, max_voxels far above the occupied cells): every occupied cell is one voxel
    # holding min(its point count, 32) points, zero-padded; some cells hold more than 32, so the cap is exercised
    vox, coords, npts = a
    cells = voxelize_dynamic(pts, g)
    occupied, counts = np.unique(cells[cells[:, 0] >= 0], axis=0, return_counts=True)  # rows sorted (z, y, x)
    order = np.lexsort(coords.T[::-1])
    assert len(vox) > 1000 and (counts > 32).any()
    np.testing.assert_array_equal(coords[order], occupied)
    np.testing.assert_array_equal(npts[order], np.minimum(counts, 32))
    assert not vox[np.arange(32)[None, :] >= npts[:, None]].any()
    np.testing.assert_array_equal(voxelize_dynamic(pts, g), voxelize_dynamic(torch.from_numpy(pts), g).numpy())
    empty = voxelize_hard(np.zeros((0, 5), np.float32), g, 5, 10)
    assert len(empty[0]) == 0 and len(voxelize_hard(torch.zeros(0, 5), g, 5, 10)[0]) == 0


def test_spread_keeps_every_sweep_in_a_full_voxel_and_is_deterministic():
    """keep="first" fills a dense pillar with the newest sweep (listed first); keep="spread" keeps a sample of
    every sweep, the same sample for the same cloud (the order is fixed before either voxelizer runs)."""
    from perception.pipeline import spread_order

    rng = np.random.default_rng(1)
    lags = np.repeat(np.arange(5) * 0.05, 40).astype(np.float32)          # 5 sweeps x 40 points, newest first
    xyz = rng.uniform(0.05, 0.6, (200, 3)).astype(np.float32)             # all in one 0.8 m pillar
    xyz[:, 0] += 0.03 * lags / 0.05                                       # older sweeps further along x: motion
    xyz[:, 2] = 0.0
    frame = SensorFrame(stamp_ns=1, T_global_ego=np.eye(4), lidar=PointCloud(
        xyz, {"intensity": np.zeros(200, np.float32), "time_lag": lags}))
    spec = {"modalities": ["lidar"], "lidar": {"max_points": 20, "max_voxels": 100}}
    first = Preprocessor(spec).prepare(frame)["lidar"]
    spread = Preprocessor({**spec, "lidar": {**spec["lidar"], "keep": "spread"}})
    a, b = spread.prepare(frame)["lidar"], spread.prepare(frame)["lidar"]
    lag_col = 4
    assert len(first["num_points"]) == len(a["num_points"]) == 1 and a["num_points"][0] == 20
    assert set(np.round(first["voxels"][0, :20, lag_col], 2)) == {0.0}                 # the newest sweep only
    assert len(set(np.round(a["voxels"][0, :20, lag_col], 2))) == 5                    # every sweep
    np.testing.assert_array_equal(a["voxels"], b["voxels"])
    np.testing.assert_array_equal(a["coords"], b["coords"])
    for n in (0, 1, 7, 1000):
        assert sorted(spread_order(n).tolist()) == list(range(n))
    with pytest.raises(ConfigError, match="keep"):
        Preprocessor({**spec, "lidar": {**spec["lidar"], "keep": "newest"}})


def test_output_shapes_and_gradients_reach_every_encoder(tiny, frames):
    model = tiny.model.train()
    batch = tiny.pre.collate([tiny.pre.prepare(f) for f in frames])
    assert batch["present"].all()
    out = model(batch)
    H, W = model.head.out_hw
    assert out["heatmap"].shape == (2, 10, H, W) and out["attr"].shape == (2, 8, H, W)
    losses = model.head.loss(out, model.head.targets([f.gt for f in frames], "cpu"))
    model.zero_grad()
    sum(losses.values()).backward()
    for m in MODALITIES:  # the training-only heads (the camera's semantic head) have their own losses
        grads = [p.grad for n, p in model.encoders[m].named_parameters()
                 if p.requires_grad and not training_only(f"encoders.{m}.{n}")]
        assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0, m
    model.eval()


def _strip(frame, **kw):
    d = dict(stamp_ns=frame.stamp_ns, T_global_ego=frame.T_global_ego, cameras=frame.cameras, lidar=frame.lidar,
             radar=frame.radar, sample_token=frame.sample_token)
    d.update(kw)
    return SensorFrame(**d)


def test_degraded_inputs_run(tiny, frames):
    f = frames[0]
    nan_lidar = PointCloud(np.concatenate([f.lidar.xyz, [[np.nan, 0, 0], [np.inf, 1, 1]]]),
                           {k: np.concatenate([v, [0, 0]]) for k, v in f.lidar.features.items()})
    cases = {
        "empty lidar": _strip(f, lidar=PointCloud.empty(f.lidar.features)),
        "nan/inf points": _strip(f, lidar=nan_lidar),
        "no cameras": _strip(f, cameras={}),
        "radar only": _strip(f, cameras={}, lidar=None),
        "camera only": _strip(f, lidar=None, radar=None),
        "one camera": _strip(f, cameras={"CAM_FRONT": f.cameras["CAM_FRONT"]}),
        "nothing": _strip(f, cameras={}, lidar=None, radar=None),
    }
    for name, frame in cases.items():
        det = tiny(frame)
        assert isinstance(det, Detections), name
        assert np.all(np.isfinite(det.boxes.data[:, :7])), name
    assert len(tiny(cases["nothing"])) == 0


def test_config_errors_name_the_key():
    cfg = load_config("configs/tiny.py")
    bad = dict(cfg["model"])
    bad["head"] = dict(bad["head"], score_treshold=0.1)
    with pytest.raises(ConfigError, match="score_treshold.*score_threshold"):
        build(bad)
    with pytest.raises(ConfigError, match="max_voxel.*max_voxels"):
        Preprocessor({"lidar": {"max_voxel": 10}})
    from perception.config import data_section

    assert data_section(cfg, "version=v1.0-trainval,train_split=train")["val_split"] == "mini_val"
    with pytest.raises(ConfigError, match="versoin.*version"):
        data_section(cfg, "versoin=v1.0-trainval")


def test_overfit_one_sample(frames):
    """The network learns: 30 steps on one frame cut its detection loss five-fold (about seven-fold measured)."""
    torch.manual_seed(0)
    pipe = Pipeline("configs/tiny.py")
    model = pipe.model.train()
    batch = pipe.pre.collate([pipe.pre.prepare(frames[0])])
    targets = model.head.targets([frames[0].gt], "cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = sum(model.head.loss(model(batch), targets).values())
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first / 5, (first, float(loss))


# the base config at its own batch of 4 spends ~2 min of a 2-core CPU in two steps: one frame a step runs the
# same network, data path and deploy round trip
@pytest.mark.parametrize("config,batch", [("configs/tiny.py", []), ("configs/base.py", ["--batch-size", "1"])],
                         ids=["configs/tiny.py", "configs/base.py"])
def test_two_iteration_training_smoke(synthetic_root, tmp_path, config, batch):
    from perception.cli.train import main as train_main

    assert train_main([config, "--data-root", str(synthetic_root), "--work-dir", str(tmp_path), "--max-iters", "2",
                       "--no-val", "--override-data", "version=v1.0-mini,train_split=mini_train,val_split=mini_val",
                       "--override-assembly", "lidar_sweeps=1", *batch]) == 0
    ckpt = torch.load(tmp_path / "final.pth", weights_only=True)
    # the deploy spec travels with the weights: what the frames were made with is what serving uses
    assert "preprocess" in ckpt["meta"] and ckpt["meta"]["assembly"]["lidar_sweeps"] == 1
    pipe = Pipeline(config, tmp_path / "final.pth")
    assert pipe.assembly.lidar_sweeps == 1
    assert isinstance(pipe(_first_frame(synthetic_root, pipe)), Detections)


def test_training_with_one_seed_repeats_bit_for_bit(synthetic_root, tmp_path):
    """promptfusion-train --seed: the initial weights, the frame draws, augmentation, modality dropout and
    prompts all come from the seed, so two runs give the same weights and another seed other ones."""
    from perception.cli.train import main as train_main

    def run(name, seed):
        assert train_main(["configs/tiny.py", "--data-root", str(synthetic_root), "--work-dir", str(tmp_path / name),
                           "--max-iters", "2", "--no-val", "--override-assembly", "lidar_sweeps=1",
                           "--seed", str(seed)]) == 0
        return torch.load(tmp_path / name / "final.pth", weights_only=True)["state_dict"]

    a, b, c = run("a", 0), run("b", 0), run("c", 1)
    floats = [k for k, v in a.items() if v.is_floating_point()]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in floats)


def test_grounding_trained_later_leaves_the_head_to_tune_text(synthetic_root, tmp_path):
    """train.grounding='later': promptfusion-train trains the detector alone (here with objects pasted into the
    points) and leaves the grounding head at its initial weights; promptfusion-tune-text then trains the head and
    keeps every detection.
    A value that is neither 'joint' nor 'later' is refused, naming the key."""
    from perception.cli.train import main as train_main
    from perception.cli.tune_text import main as tune_main

    args = ["--data-root", str(synthetic_root), "--no-val", "--override-assembly", "lidar_sweeps=1", "--max-iters", "2"]
    later = tmp_path / "tiny_later.py"
    # with ground-truth sampling too (perception.training.paste, the image patches as well): the database built,
    # objects pasted in training
    later.write_text("from configs.ablation.tiny_grounding_later import *  # noqa: F403\ntrain = {**train, 'augment': "
                     "{**train['augment'], 'paste': dict(classes={'car': 2, 'pedestrian': 2}, fade=0.5, "
                     "images=True)}}\n")
    assert train_main([str(later), "--work-dir", str(tmp_path / "w"), *args]) == 0
    ckpt = torch.load(tmp_path / "w" / "final.pth", weights_only=True)
    assert ckpt["meta"]["grounding_training"] == "later"
    paste = ckpt["meta"]["paste"]  # pasted in the first iteration's batch of two frames only (fade 0.5)
    assert paste["database"]["car"] > 0 and 1 <= paste["frames_pasted"] <= 2 and paste["images"] is True
    assert paste["objects_pasted"] >= paste["frames_pasted"]
    assert "object paste off from iteration 1" in "".join(f.read_text() for f in (tmp_path / "w").glob("*/*.log"))
    torch.manual_seed(0)  # the initial weights promptfusion-train builds with --seed 0
    init = build(load_config("configs/tiny.py")["model"]).state_dict()
    head = [k for k in init if k.startswith("grounding.")]
    assert head and all(torch.equal(ckpt["state_dict"][k], init[k]) for k in head)
    trained = [k for k in init if k.startswith("head.") and init[k].is_floating_point()]
    assert any(not torch.equal(ckpt["state_dict"][k], init[k]) for k in trained)
    out = tmp_path / "tuned.pth"
    assert tune_main(["configs/tiny.py", str(tmp_path / "w" / "final.pth"), "--data-root", str(synthetic_root),
                      "--out", str(out), "--mode", "none", "--steps", "1", "--max-samples", "1"]) == 0
    tuned = torch.load(out, weights_only=True)["state_dict"]
    assert any(not torch.equal(tuned[k], init[k]) for k in head if init[k].is_floating_point())
    assert all(torch.equal(tuned[k], ckpt["state_dict"][k]) for k in tuned if not k.startswith("grounding."))
    cfg = tmp_path / "tiny_bad.py"
    cfg.write_text("from configs.tiny import *  # noqa: F403\ntrain = {**train, 'grounding': 'after'}\n")
    with pytest.raises(SystemExit, match="train.grounding"):
        train_main([str(cfg), "--work-dir", str(tmp_path / "bad"), *args])


def test_training_fine_tunes_the_text_encoder_into_a_delta(synthetic_root, tmp_path):
    """text_encoder.tune in a config: promptfusion-train trains low-rank adapters on the encoder with the
    grounding head (their own learning rate), the deploy checkpoint carries the fp16 delta and what it is,
    and the Pipeline's encoder loads it (weights_only) and answers prompts."""
    from perception.cli.train import main as train_main

    cfg = tmp_path / "tiny_tuned.py"
    cfg.write_text("from configs.tiny import *  # noqa: F403\n"
                   "text_encoder = dict(path=None, max_tokens=32, tune=dict(mode='lora', rank=4, layers=1))\n")
    assert train_main([str(cfg), "--data-root", str(synthetic_root), "--work-dir", str(tmp_path / "w"), "--max-iters",
                       "2", "--no-val", "--override-assembly", "lidar_sweeps=1"]) == 0
    ckpt = torch.load(tmp_path / "w" / "final.pth", weights_only=True)
    delta, tune = ckpt["text_delta"], ckpt["meta"]["text_tune"]
    assert tune["mode"] == "lora" and tune["layers"] == 1 and len(delta) == tune["weights"] == 4
    assert all(d.dtype == torch.float16 for d in delta.values()) and any(d.abs().max() > 0 for d in delta.values())
    pipe = Pipeline(str(cfg), tmp_path / "w" / "final.pth")
    det = pipe(_first_frame(synthetic_root, pipe), ["moving cars ahead"])
    assert pipe.text_encoder.tuned == sum(d.numel() for d in delta.values())
    assert det.grounding_scores.shape == (len(det), 1)


def test_tune_text_changes_grounding_and_keeps_every_detection(synthetic_root, tmp_path):
    """promptfusion-tune-text on the shipped checkpoint: the detector is frozen (same boxes and scores), the
    grounding head and the encoder's delta are trained (here with the paraphrase contrast on the training prompts'
    specs); tuning its output again, head alone on the detector's own boxes, drops the delta."""
    from perception.cli.tune_text import main as tune_main

    out = tmp_path / "tuned.pth"
    assert tune_main(["configs/tiny.py", "checkpoints/tiny.pth", "--data-root", str(synthetic_root), "--out", str(out),
                      "--mode", "lora", "--layers", "1", "--steps", "4", "--max-samples", "2",
                      "--contrast", "0.1", "--contrast-specs", "4"]) == 0
    ref, tuned = Pipeline("configs/tiny.py", "checkpoints/tiny.pth"), Pipeline("configs/tiny.py", out)
    frame = _first_frame(synthetic_root, ref)
    a, b = ref(frame, ["moving cars ahead"]), tuned(frame, ["moving cars ahead"])
    np.testing.assert_array_equal(a.boxes.data, b.boxes.data)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert len(a) and not np.allclose(a.grounding_scores, b.grounding_scores)
    meta = torch.load(out, weights_only=True)["meta"]["text_tune"]
    assert meta["steps"] == 4 and meta["keyframes"] == 2 and meta["from"] == "tiny.pth"
    assert meta["contrast"] == 0.1 and meta["contrast_specs"] == 4
    assert tune_main(["configs/tiny.py", str(out), "--data-root", str(synthetic_root), "--out", str(tmp_path / "x.pth"),
                      "--mode", "none", "--steps", "2", "--every", "2", "--objects", "detections",
                      "--max-dets", "8"]) == 0
    again = torch.load(tmp_path / "x.pth", weights_only=True)
    assert "text_delta" not in again and "text_tune" not in again["meta"]
    record = again["meta"]["grounding_tune"]
    assert record["steps"] == 2 and record["every"] == 2 and record["keyframes"] == 2  # of mini_train's 4
    assert record["objects"] == "detections" and record["max_dets"] == 8  # trained on the detector's boxes
    assert meta["objects"] == "gt" and meta["max_dets"] == 0
    with pytest.raises(SystemExit):
        tune_main(["configs/tiny.py", str(out), "--data-root", str(synthetic_root), "--out", str(tmp_path / "y.pth"),
                   "--every", "0"])
    with pytest.raises(SystemExit):
        tune_main(["configs/tiny.py", str(out), "--data-root", str(synthetic_root), "--out", str(tmp_path / "y.pth"),
                   "--objects", "both", "--max-dets", "0"])
    with pytest.raises(SystemExit):  # nothing to contrast without an encoder to tune
        tune_main(["configs/tiny.py", str(out), "--data-root", str(synthetic_root), "--out", str(tmp_path / "y.pth"),
                   "--mode", "none", "--contrast", "0.1"])


def _first_frame(root, pipe):
    from perception.sources.nuscenes import NuScenesSource

    return NuScenesSource(root, "v1.0-mini", "mini_val", **pipe.assembly.source_kwargs())[0]


def test_checkpoint_mismatch_lists_keys(tmp_path):
    torch.save({"state_dict": {"bogus.weight": torch.zeros(1)}, "meta": {}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="bogus.weight"):
        Pipeline("configs/tiny.py", tmp_path / "bad.pth")


def test_training_resumes_to_the_same_final_iteration(synthetic_root, tmp_path):
    """A run resumed at iteration 2 of 4 ends where the run it continues would have: the data's random draws
    restored from the checkpoint (the same objects pasted, counted over the whole run), the two trained
    iterations' frames passed over without loading them."""
    from perception.cli.train import main as train_main

    whole = tmp_path / "whole"
    args = ["configs/tiny.py", "--data-root", str(synthetic_root), "--work-dir", str(tmp_path), "--no-val",
            "--override-assembly", "lidar_sweeps=1"]
    assert train_main([*args[:4], str(whole), *args[5:], "--max-iters", "4"]) == 0
    assert train_main([*args, "--max-iters", "2"]) == 0
    assert (tmp_path / "iter_2.pth").exists()
    assert train_main([*args, "--max-iters", "4", "--resume"]) == 0
    logs = "".join(f.read_text() for f in tmp_path.glob("*/*.log"))
    assert "resumed epoch: 0, iter: 2" in logs
    # the two trained iterations' frames were passed over as placeholders (one reaching training is an error)
    assert "the 4 frames of the 2 trained iterations are passed over without loading them" in logs
    assert (tmp_path / "iter_4.pth").exists() and (tmp_path / "last_checkpoint").read_text().strip().endswith(
        "iter_4.pth")
    meta = torch.load(tmp_path / "final.pth", weights_only=True)["meta"]
    assert meta["iters"] == 4
    # the data's generator ends where the uninterrupted run's does (mmengine's own checkpoints, written here)
    ends = [torch.load(d / "iter_4.pth", weights_only=False)["frame_dataset"] for d in (tmp_path, whole)]
    assert ends[0]["rng"] == ends[1]["rng"] and ends[0]["pasted"] == ends[1]["pasted"]
    # configs/tiny.py pastes in the first 80% of the iterations (3 of 4), counted over the whole run
    reference = torch.load(whole / "final.pth", weights_only=True)["meta"]["paste"]
    assert meta["paste"]["objects_pasted"] == reference["objects_pasted"] > 0
    assert meta["paste"]["frames_pasted"] == reference["frames_pasted"]


def test_runtime_precision_and_device_voxelization_keep_the_detections(frames, same_detections):
    """The GPU path's switches, exercised on the CPU: autocast (bf16, and fp16 whose masked softmax once divided
    by an underflowed 1e-6 for queries that see no camera) and the torch voxelization kernel."""
    ref = Pipeline("configs/tiny.py", "checkpoints/tiny.pth")
    base = ref(frames[0], ["moving cars ahead"])
    assert (base.scores > 0.3).sum() >= 3
    for runtime in ({"precision": "bf16"}, {"precision": "fp16"}, {"voxelize_on_device": True, "pin_memory": True}):
        pipe = Pipeline("configs/tiny.py", "checkpoints/tiny.pth", runtime=runtime)
        det = pipe(frames[0], ["moving cars ahead"])
        assert np.all(np.isfinite(det.grounding_scores)), runtime
        # every confident reference box has a detection of the same class within 0.3 m
        same_detections(base, det, 0.3)
        if "voxelize_on_device" in runtime:  # same kernel result, same numbers
            np.testing.assert_allclose(det.scores, base.scores, atol=1e-5)
    with pytest.raises(ConfigError, match="runtime"):
        Pipeline("configs/tiny.py", runtime={"precison": "fp16"})
    with pytest.raises(ConfigError, match="precision"):
        Pipeline("configs/tiny.py", runtime={"precision": "int8"})


def test_camera_attention_per_camera_path_equals_the_dense_graph():
    """The per-camera sampling (only the queries a camera sees; one trilinear depth read) gives the dense
    graph's output and gradients, with two levels, a depth prior, a batch of two and cameras seeing nothing."""
    from perception.models.fusion import CameraCrossAttention

    torch.manual_seed(0)
    B, N, C, Q, bins = 2, 3, 8, 64, 5
    att = CameraCrossAttention(16, C, levels=2)
    torch.nn.init.normal_(att.offsets.weight, std=0.5)
    q = torch.randn(B, Q, 16)
    feats = [torch.randn(B, N, C, 12, 20, requires_grad=True), torch.randn(B, N, C, 6, 10, requires_grad=True)]
    xy = torch.stack(torch.meshgrid(torch.linspace(-30, 30, 8), torch.linspace(-30, 30, 8), indexing="ij"), -1)
    xy = xy.reshape(Q, 2)
    K = torch.tensor([[80.0, 0, 80], [0, 80, 48], [0, 0, 1]])
    ego2img = torch.zeros(B, N, 4, 4)
    for n, yaw in enumerate((0.0, 2.1, 4.2)):  # cameras looking out in three directions (x forward, z up)
        c, s = math.cos(yaw), math.sin(yaw)
        R = torch.tensor([[-s, c, 0.0], [0, 0, -1], [c, s, 0]])  # ego -> camera (right, down, forward)
        ego2img[:, n, :3, :3] = K @ R
        ego2img[:, n, 3, 3] = 1
    ego2img[1, 2] = 0  # the second sample's third camera sees nothing
    probs = torch.softmax(torch.randn(B, N, bins, 12, 20), 2).requires_grad_()
    prior = (probs, (1.0, 41.0, bins))
    outs, grads = [], []
    for dense in (True, False):
        att.dense = dense
        y, hit = att(q, feats, ego2img, (96, 160), xy, prior)
        outs.append((y, hit))
        grads.append(torch.autograd.grad(y.square().sum(), [*feats, probs, att.offsets.weight]))
    hit = outs[0][1]
    assert hit.any() and not hit.all() and not hit[1].all() and torch.equal(hit, outs[1][1])
    torch.testing.assert_close(outs[1][0], outs[0][0], atol=1e-5, rtol=1e-4)
    for a, b in zip(*grads):
        assert a.abs().sum() > 0
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


def test_class_balanced_sampling_draws_every_class_equally(synthetic_root):
    """CBGS: per class the same number of draws among the frames that hold it, only frames that hold a class
    drawn for it, and the presence read from the source's boxes the network learns from."""
    from perception.pipeline import Preprocessor
    from perception.sources.nuscenes import NuScenesSource
    from perception.training.data import ClassBalanced, FrameDataset, class_presence

    presence = np.zeros((10, 3), bool)
    presence[:, 0] = True  # a class in every frame
    presence[3, 1] = True  # a rare one in one frame
    presence[[2, 5, 7], 2] = True
    ds = ClassBalanced(list(range(10)), presence, seed=0)
    assert len(ds) == 3 * ((10 + 1 + 3) // 3)
    draws = np.bincount(ds.indices, minlength=10)
    assert draws[3] >= len(ds) // 3  # the rare class's only frame gets its whole share
    before, after = ds.shares()
    assert after[1] > 0.3 > before[1] and after[0] == 1.0
    with pytest.raises(ValueError, match="no frame"):
        ClassBalanced(list(range(2)), np.zeros((2, 3), bool))

    source = NuScenesSource(synthetic_root, split="mini_train", lidar_sweeps=0, radar_sweeps=1)
    pc_range = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)
    pres = class_presence(source, pc_range, 10)
    for i in range(len(source)):
        gt = source.ground_truth(source.index[i]["token"])
        inside = (np.abs(gt.data[:, :2]) < 51.2).all(1)
        assert set(np.flatnonzero(pres[i])) == set(gt.labels[inside].tolist())
    sampled = ClassBalanced(FrameDataset(source, Preprocessor({})), pres)
    assert sampled[0]["data_samples"]["token"] in source.sample_tokens()


def test_point_columns_scaled_to_order_one_and_saved_with_the_weights():
    """``normalize=True``: every pillar-net input divided by its typical magnitude (x / y by the grid's half
    extent, the time lag by 0.1 s, the offsets in the pillar by half a cell); the scale is in the state dict,
    so a checkpoint of the raw net does not load into the scaled one (nor the other way round) silently."""
    from perception.models.encoders.lidar import LidarEncoder, PillarFeatureNet, RadarEncoder
    from perception.ops.voxelize import VoxelGrid

    grid = VoxelGrid((-51.2, -51.2, -5.0, 51.2, 51.2, 3.0), (0.8, 0.8, 8.0))
    lid = LidarEncoder(grid, normalize=True)
    expect = 1 / torch.tensor([51.2, 51.2, 4.0, 50.0, 0.1, 0.4, 0.4, 1.0, 0.4, 0.4])
    assert torch.allclose(lid.pfn.in_scale, expect)
    assert RadarEncoder(grid, normalize=True).pfn.in_scale.shape == (7 + 5,)
    raw = LidarEncoder(grid)
    assert raw.pfn.in_scale is None and "pfn.in_scale" not in raw.state_dict()
    with pytest.raises(RuntimeError, match="in_scale"):
        lid.load_state_dict(raw.state_dict())
    with pytest.raises(RuntimeError, match="in_scale"):
        raw.load_state_dict(lid.state_dict())
    with pytest.raises(ValueError, match="no scale for columns"):
        PillarFeatureNet(2, 8, grid, ("x", "doppler"))
    # the scaled net reads the time lag: the same pillar with its points 0.1 s older gives other features
    torch.manual_seed(0)
    pfn = PillarFeatureNet(5, 16, grid, LidarEncoder.columns).eval()
    pts = torch.tensor([[[10.1, 5.1, 0.5, 10.0, 0.0], [10.3, 5.2, 0.7, 12.0, 0.0]]])
    older = pts.clone()
    older[..., 4] = 0.1
    coords = torch.tensor([[0, 0, int((5.1 + 51.2) / 0.8), int((10.1 + 51.2) / 0.8)]])
    a, b = pfn(pts, torch.tensor([2]), coords), pfn(older, torch.tensor([2]), coords)
    assert (a - b).abs().max() > 0.1 * a.abs().max()


def test_velocity_loss_window_and_balance():
    from perception.models.heads import CenterHead
    from perception.types import Boxes3D

    def head(**kw):
        return CenterHead(32, (-8.0, -8.0, 8.0, 8.0), (20, 20), **kw)

    # three still cars and one moving at (3, -4) m/s, centres in cells (3, 3), (11, 3), (3, 11), (11, 11) of 0.8 m
    centres = [(-5.6, -5.6), (0.8, -5.6), (-5.6, 0.8), (0.8, 0.8)]
    data = [[x, y, 0.5, 4.0, 1.8, 1.5, 0.0, 0.0, 0.0] for x, y in centres]
    data[3][7:9] = [3.0, -4.0]
    gt = Boxes3D(np.array(data), np.zeros(4, np.int64))
    t = head().targets([gt], "cpu")
    assert t["ind"].tolist() == [3 * 20 + 3, 3 * 20 + 11, 11 * 20 + 3, 11 * 20 + 11]

    def loss(h, vel):
        out = {k: torch.zeros(1, n, 20, 20) for k, n in (("heatmap", 10), ("offset", 2), ("z", 1), ("size", 3),
                                                          ("rot", 2), ("attr", 8))}
        return float(h.loss({**out, "vel": vel}, t)["loss_vel"])

    zero = torch.zeros(1, 2, 20, 20)
    # L1 summed over vx, vy, averaged over objects, weighed 0.5: the plain mean lets the still objects dominate ...
    assert loss(head(), zero) == pytest.approx(0.5 * 7.0 / 4)
    # ... balanced, the moving objects' mean and the still ones' weigh half each
    assert loss(head(vel_balance=True), zero) == pytest.approx(0.5 * (7.0 + 0.0) / 2)
    # the window: right at the centre only is not enough, the 3x3 cells about it are supervised as well
    centre = zero.clone()
    centre[0, :, 11, 11] = torch.tensor([3.0, -4.0])
    assert loss(head(), centre) == 0.0
    assert loss(head(vel_window=1), centre) == pytest.approx(0.5 * 7.0 * 8 / 9 / 4)
    block = zero.clone()
    block[0, :, 10:13, 10:13] = torch.tensor([3.0, -4.0]).view(2, 1, 1)
    assert loss(head(vel_window=1), block) == 0.0
    # an unknown (NaN) velocity is left out, and a window at the map's edge uses the cells inside it
    gt.data[3, 7:9] = np.nan
    gt.data[0, :2] = (-7.6, -7.6)  # cell (0, 0)
    t = head().targets([gt], "cpu")
    assert loss(head(vel_window=1, vel_balance=True), block) == 0.0


def test_decode_circle_nms_drops_a_second_peak_of_the_same_object_only():
    """Two peaks 2.4 m apart on one 11 m bus, a truck peak on the same bus, and two pedestrians 1.6 m apart:
    with nms=0.4 the bus's weaker peak goes (within 0.4 x 11 m of the stronger), the truck reading (another
    class) and both pedestrians (1.6 m is more than 0.4 x 0.7 m) stay; without it all five are decoded."""
    from perception.models.heads import CenterHead
    from perception.types import DETECTION_CLASSES

    bus, truck, ped = (DETECTION_CLASSES.index(c) for c in ("bus", "truck", "pedestrian"))
    logit = torch.full((1, 10, 20, 20), -9.0)
    for c, cell, score in ((bus, (10, 5), 0.8), (bus, (10, 8), 0.5), (truck, (10, 6), 0.4), (ped, (3, 3), 0.7),
                           (ped, (3, 5), 0.6)):
        logit[0, c, cell[0], cell[1]] = float(np.log(score / (1 - score)))
    size = torch.zeros(1, 3, 20, 20)
    size[0, :, 10] = torch.tensor([11.0, 2.9, 3.4]).log().view(3, 1)
    size[0, :, 3] = torch.tensor([0.7, 0.7, 1.7]).log().view(3, 1)
    out = {"heatmap": logit, "size": size, "rot": torch.zeros(1, 2, 20, 20), "attr": torch.zeros(1, 8, 20, 20),
           **{k: torch.zeros(1, n, 20, 20) for k, n in (("offset", 2), ("z", 1), ("vel", 2))}}

    def decoded(**kw):
        d = CenterHead(32, (-8.0, -8.0, 8.0, 8.0), (20, 20), **kw).decode(out)[0]
        return sorted((int(c), round(float(s), 2)) for c, s in zip(d["labels"], d["scores"]))

    assert decoded() == sorted([(bus, 0.8), (bus, 0.5), (truck, 0.4), (ped, 0.7), (ped, 0.6)])
    assert decoded(nms=0.4) == sorted([(bus, 0.8), (truck, 0.4), (ped, 0.7), (ped, 0.6)])
    with pytest.raises(ValueError, match="nms"):
        CenterHead(32, (-8.0, -8.0, 8.0, 8.0), (20, 20), nms=-1)


def test_branch_norm_head_layout():
    from perception.models.heads import CenterHead

    plain = CenterHead(32, (-8, -8, 8, 8), (20, 20))
    normed = CenterHead(32, (-8, -8, 8, 8), (20, 20), branch_norm=True)
    assert isinstance(normed.reg["vel"][1], torch.nn.BatchNorm2d) and normed.reg["vel"][0].bias is None
    for h in (plain, normed):
        assert float(h.heatmap[-1].bias.detach().mean()) == pytest.approx(-2.19)
    with pytest.raises(RuntimeError, match="Missing key|Unexpected key|size mismatch"):
        normed.load_state_dict(plain.state_dict())  # a plain checkpoint does not load into a normed head


def test_a_resumed_runs_passed_over_frames_are_placeholders_and_then_real_again(synthetic_root):
    from perception.sources.nuscenes import NuScenesSource
    from perception.training.data import FrameDataset, collate

    pre = Preprocessor({"camera": {"size": (32, 56)}})
    ds = FrameDataset(NuScenesSource(synthetic_root, "v1.0-mini", "mini_train", lidar_sweeps=1), pre, cache=False)
    ds.skipping = 3
    items = [ds[i % len(ds)] for i in range(5)]
    assert [it.get("skipped") for it in items[:3]] == [0, 1, 2] and ds.skipping == 0
    assert all("inputs" in it for it in items[3:])
    assert collate(items[:2]) == {"skipped": [0, 1]} and "inputs" in collate(items[3:])
