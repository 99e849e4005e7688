"""ONNX export of the network after voxelization, and an onnxruntime runner with the model's interface.

The exported graph has one fixed signature for every frame: the voxel counts are dynamic axes, and a
modality a frame lacks is fed as zero voxels (or zero images) with its ``present`` flag off, which the
fusion masks out exactly as the torch model does when the modality is absent from its inputs.

    from perception.export import export_onnx, OnnxModel
    export_onnx(model, batch, "tiny.onnx")          # batch from Preprocessor.collate
    out = OnnxModel("tiny.onnx")(batch)             # dict of tensors, as model(batch)
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from perception.types import MODALITIES

POINT_MODALITIES = ("lidar", "radar")
POINT_FIELDS = ("voxels", "num_points", "coords")
INPUT_NAMES = ("present", *(f"{m}_{k}" for m in POINT_MODALITIES for k in POINT_FIELDS), "images", "ego2img")
# a temporal network's extra inputs: the earlier frame's fused map (its "state" output), current ego -> that
# frame's ego, and whether there is one (perception.models.temporal)
HISTORY_NAMES = ("history_bev", "history_T", "history_valid")


def input_names(model: nn.Module) -> tuple[str, ...]:
    return INPUT_NAMES + (HISTORY_NAMES if getattr(model, "temporal", None) is not None else ())


def output_names(model: nn.Module) -> tuple[str, ...]:
    """The head's maps in a fixed order, plus "bev" (the grounding head's input) when the model has one and
    "state" (the next frame's history) for a temporal network."""
    names = tuple(sorted(model.head.reg)) + ("heatmap",)
    names += ("bev",) if getattr(model, "grounding", None) is not None else ()
    return names + (("state",) if getattr(model, "temporal", None) is not None else ())


class FlatModel(nn.Module):
    """``model`` with positional tensors in and a tuple out (what the ONNX exporter traces)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.names = output_names(model)

    def forward(self, present, lidar_voxels, lidar_num_points, lidar_coords, radar_voxels, radar_num_points,
                radar_coords, images, ego2img, *history):
        batch = {
            "present": present,
            "lidar": {"voxels": lidar_voxels, "num_points": lidar_num_points, "coords": lidar_coords},
            "radar": {"voxels": radar_voxels, "num_points": radar_num_points, "coords": radar_coords},
            "camera": {"images": images, "ego2img": ego2img},
        }
        if history:
            batch["history"] = dict(zip(("bev", "T", "valid"), history))
        out = self.model(batch)
        return tuple(out[k] for k in self.names)


def flat_inputs(batch: dict, spec: dict, history_shape=None) -> dict[str, torch.Tensor]:
    """Preprocessor.collate's batch -> the graph's named inputs; absent modalities become empty inputs.

    ``spec``: the Preprocessor's spec (``pipeline.pre.spec``) for the shapes of what is absent;
    ``history_shape``: (C, h, w) of a temporal network's history map (None: not a temporal graph); a batch
    without ``history`` is fed a zero map flagged invalid.
    """
    present = batch["present"]
    B, dev = present.shape[0], present.device
    feeds = {"present": present}
    for m in POINT_MODALITIES:
        x = batch.get(m)
        if x is None:
            s = spec[m]
            x = {"voxels": torch.zeros((0, s["max_points"], len(s["columns"])), device=dev),
                 "num_points": torch.zeros(0, dtype=torch.int32, device=dev),
                 "coords": torch.zeros((0, 4), dtype=torch.int32, device=dev)}
        for k in POINT_FIELDS:
            feeds[f"{m}_{k}"] = x[k]
    cam = batch.get("camera")
    if cam is None:
        cs = spec["camera"]
        H, W = cs["size"]
        cam = {"images": torch.zeros((B, len(cs["channels"]), 3, H, W), device=dev),
               "ego2img": torch.zeros((B, len(cs["channels"]), 4, 4), device=dev)}
    feeds["images"], feeds["ego2img"] = cam["images"], cam["ego2img"]
    if history_shape is not None:
        h = batch.get("history")
        if h is None:
            h = {"bev": torch.zeros((B, *history_shape), device=dev), "T": torch.eye(4, device=dev).repeat(B, 1, 1),
                 "valid": torch.zeros(B, dtype=torch.bool, device=dev)}
        feeds.update(history_bev=h["bev"].float(), history_T=h["T"].float(), history_valid=h["valid"])
    return feeds


def history_shape(model: nn.Module):
    """(C, h, w) of a temporal network's history map, None for a one-frame network."""
    t = getattr(model, "temporal", None)
    return None if t is None else (t.mix[-1].out_channels, *t.hw)


def example_batch(spec: dict) -> dict:
    """A batch of one frame with every modality, shaped by the Preprocessor ``spec``, for tracing: a few
    one-point voxels per point modality (more than one: a traced size of 1 can be baked into a reshape),
    black images. The values do not matter (the graph has no branch on them); the round-trip test checks
    the graph on real frames."""
    batch: dict = {"present": torch.ones((1, len(MODALITIES)), dtype=torch.bool)}
    for m in POINT_MODALITIES:
        s = spec[m]
        x0, y0, z0, x1, y1, z1 = s["pc_range"]
        vx, vy, _ = s["voxel_size"]
        k = 3
        vox = torch.zeros((k, s["max_points"], len(s["columns"])))
        coords = torch.zeros((k, 4), dtype=torch.int32)
        for j in range(k):
            x, y = x0 + (j + 0.5) * vx, y0 + (j + 0.5) * vy
            vox[j, 0, :3] = torch.tensor([x, y, (z0 + z1) / 2])
            coords[j, 2], coords[j, 3] = j, j
        batch[m] = {"voxels": vox, "num_points": torch.ones(k, dtype=torch.int32), "coords": coords}
    cs = spec["camera"]
    H, W = cs["size"]
    e2i = torch.eye(4).repeat(1, len(cs["channels"]), 1, 1)
    batch["camera"] = {"images": torch.zeros((1, len(cs["channels"]), 3, H, W)), "ego2img": e2i}
    return batch


def export_onnx(model: nn.Module, batch: dict, spec: dict, path=None, opset: int = 17) -> Path | bytes:
    """Trace ``model`` (eval mode) on ``batch`` and write ``path`` (None: return the graph's bytes). Voxel
    counts are dynamic; batch size, camera count and image size are those of ``batch``. Every modality must
    be present in ``batch`` so that every branch is traced."""
    missing = [m for i, m in enumerate(MODALITIES) if batch.get(m) is None or not bool(batch["present"][:, i].all())]
    if missing:
        raise ValueError(f"export needs a frame with every modality; this one lacks {missing}")
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
    target = io.BytesIO() if path is None else str(path)
    was_training = model.training
    flat = FlatModel(model).eval()  # the exporter restores the wrapper's mode recursively afterwards
    names = input_names(model)
    feeds = flat_inputs(batch, spec, history_shape(model))
    if "history_valid" in feeds:  # trace the branch that reads the history (valid = 0 multiplies it away)
        feeds["history_valid"] = torch.ones_like(feeds["history_valid"])
    dynamic = {f"{m}_{k}": {0: f"{m}_voxels"} for m in POINT_MODALITIES for k in POINT_FIELDS}
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns about the Python branches on sizes; the traced graph is checked against torch
        warnings.simplefilter("ignore")
        torch.onnx.export(flat, tuple(feeds[n] for n in names), target, input_names=list(names),
                          output_names=list(flat.names), dynamic_axes=dynamic, opset_version=opset,
                          dynamo=False)
    model.train(was_training)
    return target.getvalue() if path is None else path


class OnnxModel:
    """An exported graph run by onnxruntime, called like the torch model: ``batch -> {name: tensor}``."""

    def __init__(self, path, spec: dict, providers=None, threads: int = 0):
        """``path``: an .onnx file or the graph's bytes (``export_onnx(..., path=None)``); ``threads``: intra-op
        threads (0: onnxruntime's default, one per physical core)."""
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError("onnxruntime is not installed: pip install -e .[export]") from e
        if not isinstance(path, bytes):
            path = Path(path)
            if not path.is_file():
                raise FileNotFoundError(f"ONNX model not found: {path}")
            path = str(path)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        # no busy-waiting between runs: spinning ORT threads starved torch (decode, grounding) and the decode
        # threads on a 2-core CPU (e2e inference 101 ms with spinning, postprocess 17 ms instead of 3)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads > 0:
            opts.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(path, opts, providers=providers or ["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]  # unused inputs are pruned by the exporter
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.history_shape = next((tuple(i.shape[1:]) for i in self.session.get_inputs() if i.name == "history_bev"),
                                  None)
        self.spec = spec
        self.calls = 0

    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        self.calls += 1
        feeds = flat_inputs(batch, self.spec, self.history_shape)
        res = self.session.run(None, {n: feeds[n].cpu().numpy() for n in self.inputs})
        return {n: torch.from_numpy(np.asarray(r)) for n, r in zip(self.outputs, res)}


def max_abs_diff(a: dict, b: dict) -> dict[str, float]:
    """Per output name, the largest absolute difference between two output dicts."""
    return {k: float((a[k].float().cpu() - b[k].float().cpu()).abs().max()) if a[k].numel() else 0.0
            for k in b}
