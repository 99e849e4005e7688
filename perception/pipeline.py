"""Pipeline: SensorFrame (+ prompts) -> Detections, with the pre/post-processing saved in the checkpoint.

``Preprocessor`` is the one place that turns frames into model inputs: training, evaluation, replay and
the ROS node all call it, so deployment runs exactly the training transforms.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from perception.config import ConfigError, build, check_section, load_config
from perception.geometry import invert_transform
from perception.language.text_encoder import DEFAULTS as TEXT_ENCODER_DEFAULTS
from perception.models.model import training_only
from perception.ops.voxelize import VoxelGrid, voxelize_hard
from perception.sources.assembly import Assembly, from_checkpoint_meta
from perception.types import CAMERAS, MODALITIES, Boxes3D, Detections, Prompt, SensorFrame

PREPROCESS_DEFAULTS = {
    "modalities": ("camera", "lidar", "radar"),
    "lidar": {"pc_range": (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0), "voxel_size": (0.8, 0.8, 8.0),
              "max_points": 20, "max_voxels": 30000, "columns": ("x", "y", "z", "intensity", "time_lag"),
              "keep": "first"},
    "radar": {"pc_range": (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0), "voxel_size": (0.8, 0.8, 8.0),
              "max_points": 6, "max_voxels": 4000,
              "columns": ("x", "y", "z", "vx_comp", "vy_comp", "rcs", "time_lag"), "keep": "first"},
    "camera": {"channels": CAMERAS, "size": (128, 224), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
    "max_points": 2_000_000,
}
# which points a full voxel keeps (``preprocess.<lidar|radar>.keep``): "first" = the first ``max_points`` in
# the cloud's order (a multi-sweep cloud lists the newest sweep first, so a dense voxel keeps little or nothing
# of the older sweeps, and with them the motion); "spread" = the points in a fixed pseudo-random order, so a
# full voxel keeps a sample of every sweep. The same frame always gives the same voxels.
KEEP = ("first", "spread")


def spread_order(n: int) -> np.ndarray:
    """A fixed permutation of range(n) that scatters neighbouring indices over the whole range: i -> i * step
    mod n with step the integer next to n / golden ratio that is coprime with n (a golden-ratio sequence: any
    run of consecutive outputs is spread evenly over the range)."""
    if n < 3:
        return np.arange(n, dtype=np.int64)
    step = max(1, round(n * 0.6180339887498949))
    while math.gcd(step, n) != 1:
        step += 1
    return (np.arange(n, dtype=np.int64) * step) % n

log = logging.getLogger(__name__)

# How the Pipeline runs (config section ``runtime``; not saved with the checkpoint, a deployment choice):
# precision "fp32" | "fp16" | "bf16" | "auto" (autocast around the network; "auto" = fp16 on CUDA, fp32 elsewhere:
# CPUs have no fast fp16 kernels), voxelization with the
# torch kernel on the Pipeline's device, and pinned host memory + asynchronous copies for the inputs.
# backend "torch" | "onnxruntime" | "auto": "onnxruntime" exports the network (after voxelization) to ONNX in
# memory at start-up and runs it with ONNX Runtime on the CPU (the grounding head and the decoding stay in
# torch). "auto" = torch: its camera attention samples each camera only where it sees, which a static ONNX
# graph cannot, and is 1.4x faster than the exported graph on a 2-core CPU (benchmarks/run.py).
# threads: intra-op threads of torch (process-wide) and of the ONNX Runtime session; 0 = the libraries' defaults
# (a fleet worker given one CPU uses 1, so its outputs do not depend on how many cores the machine has).
# fold_batchnorm: the torch backend runs a copy of the network with every BatchNorm folded into the
# convolution before it (perception.models.fold; ``Pipeline.net``); ``Pipeline.model`` stays as trained.
RUNTIME_DEFAULTS = {"precision": "fp32", "voxelize_on_device": False, "pin_memory": False, "backend": "torch",
                    "threads": 0, "fold_batchnorm": True}
_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def resize_image(img: np.ndarray, W: int, H: int) -> np.ndarray:
    """Area-averaging resize to (H, W). From a much larger image it goes through an integer-factor area
    step first: 2.5x faster than one INTER_AREA step at 1600x900 -> 224x128 (1.9 vs 4.8 ms), mean
    difference 0.3 grey levels."""
    h0, w0 = img.shape[:2]
    k = min(h0 // H, w0 // W)
    if k >= 2:
        img = cv2.resize(img, (w0 // k, h0 // k), interpolation=cv2.INTER_AREA)
    return cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)


def _section(name, given, defaults):
    return check_section(f"preprocess.{name}", given or {}, defaults)


class Preprocessor:
    """frame -> per-sample numpy inputs (``prepare``) -> batched tensors (``collate``)."""

    def __init__(self, spec: dict | None = None):
        spec = check_section("preprocess", dict(spec or {}), PREPROCESS_DEFAULTS)
        self.spec = {"modalities": tuple(spec["modalities"]), "max_points": int(spec["max_points"])}
        for m in ("lidar", "radar", "camera"):
            self.spec[m] = _section(m, spec.get(m), PREPROCESS_DEFAULTS[m])
        for m in ("lidar", "radar"):
            if self.spec[m]["keep"] not in KEEP:
                raise ConfigError(f"preprocess.{m}.keep: {self.spec[m]['keep']!r} is not one of {KEEP}")
        bad = set(self.spec["modalities"]) - set(MODALITIES)
        if bad:
            raise ConfigError(f"preprocess.modalities: unknown {sorted(bad)}; valid: {MODALITIES}")
        self.grids = {m: VoxelGrid(tuple(self.spec[m]["pc_range"]), tuple(self.spec[m]["voxel_size"]))
                      for m in ("lidar", "radar")}
        self.voxel_device: torch.device | None = None  # set: points go to it and the torch kernel voxelizes
        self.pin_memory = False

    @property
    def decode_hw(self) -> tuple[int, int] | None:
        """The smallest image (H, W) the camera input needs: sources decode JPEGs no larger than that allows
        (``NuScenesSource(image_min_hw=...)``, ``compressed_to_rgb(min_hw=...)``); None without cameras."""
        if "camera" not in self.spec["modalities"]:
            return None
        return tuple(int(x) for x in self.spec["camera"]["size"])

    def to_dict(self) -> dict:
        """Plain, JSON/weights_only-safe description (saved with the checkpoint)."""
        def plain(v):
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            if isinstance(v, (tuple, list)):
                return [plain(x) for x in v]
            return v
        return plain(self.spec)

    def prepare(self, frame: SensorFrame, modalities=None) -> dict:
        """Numpy inputs of one frame; ``modalities`` restricts what is used (for dropout / ablations)."""
        return self.voxelize(self.gather(frame, modalities))

    def gather(self, frame: SensorFrame, modalities=None) -> dict:
        """The frame's inputs before voxelization: per point modality {"points": (M, C) float32 of its
        ``columns``}, the resized images and their ego -> pixel matrices (training augments this form)."""
        use = set(self.spec["modalities"] if modalities is None else modalities) & set(self.spec["modalities"])
        out: dict = {"present": np.zeros(len(MODALITIES), bool)}
        for m in ("lidar", "radar"):
            cloud = getattr(frame, m)
            if m not in use or cloud is None:
                continue
            cloud, _ = cloud.finite()
            if len(cloud) > self.spec["max_points"]:
                raise ValueError(f"{m}: {len(cloud)} points exceed preprocess.max_points={self.spec['max_points']}")
            cols = [c for c in self.spec[m]["columns"]]
            missing = [c for c in cols if c not in cloud.columns]
            if missing:
                raise ValueError(f"{m} point cloud lacks columns {missing} (has {list(cloud.columns)})")
            out[m] = {"points": cloud.to_array(cols)}
            out["present"][MODALITIES.index(m)] = True
        if "camera" in use and frame.cameras:
            cs = self.spec["camera"]
            H, W = cs["size"]
            chans = list(cs["channels"])
            imgs = np.zeros((len(chans), H, W, 3), np.uint8)
            e2i = np.zeros((len(chans), 4, 4), np.float32)
            for i, ch in enumerate(chans):
                view = frame.cameras.get(ch)
                if view is None:
                    continue
                h0, w0 = view.hw
                imgs[i] = resize_image(view.image, W, H)
                S = np.diag([W / w0, H / h0, 1.0])
                K = np.eye(4)
                K[:3, :3] = S @ view.intrinsics
                e2i[i] = K @ invert_transform(view.T_ego_cam)
            if np.any(e2i):
                out["camera"] = {"images": imgs, "ego2img": e2i}
                out["present"][MODALITIES.index("camera")] = True
        return out

    def voxelize(self, gathered: dict) -> dict:
        """``gather``'s output with each point modality's points voxelized (a new dict; the rest shared)."""
        out = dict(gathered)
        for m in ("lidar", "radar"):
            if m not in gathered:
                continue
            pts = gathered[m]["points"]
            s = self.spec[m]
            if s["keep"] == "spread":
                pts = pts[spread_order(len(pts))]
            if self.voxel_device is not None:
                pts = self._to_device(torch.from_numpy(pts), self.voxel_device)
            vox, coords, npts = voxelize_hard(pts, self.grids[m], s["max_points"], s["max_voxels"])
            out[m] = {"voxels": vox, "coords": coords, "num_points": npts}
        return out

    def _to_device(self, x: torch.Tensor, device) -> torch.Tensor:
        """To ``device``; a host tensor bound for CUDA goes through pinned memory without blocking when
        ``pin_memory`` is set (a tensor already on the device, e.g. voxelized there, is left as it is)."""
        device = torch.device(device)
        if device.type == "cuda" and x.device.type == "cpu" and self.pin_memory:
            return x.pin_memory().to(device, non_blocking=True)
        return x.to(device)

    def collate(self, items: list[dict], device="cpu") -> dict:
        B = len(items)
        batch: dict = {"present": torch.as_tensor(np.stack([it["present"] for it in items]), device=device)}
        for m in ("lidar", "radar"):
            if not any(m in it for it in items):
                continue
            vox, coords, npts = [], [], []
            for b, it in enumerate(items):
                if m in it:
                    x = it[m]
                    vox.append(torch.as_tensor(x["voxels"]))
                    c = torch.as_tensor(x["coords"], dtype=torch.int32)
                    coords.append(torch.cat([torch.full((len(c), 1), b, dtype=torch.int32, device=c.device), c], 1))
                    npts.append(torch.as_tensor(x["num_points"]))
            batch[m] = {k: self._to_device(torch.cat(v), device)
                        for k, v in (("voxels", vox), ("coords", coords), ("num_points", npts))}
        if any("camera" in it for it in items):
            cs = self.spec["camera"]
            N, (H, W) = len(cs["channels"]), cs["size"]
            imgs = torch.zeros((B, N, H, W, 3), dtype=torch.uint8)
            e2i = torch.zeros((B, N, 4, 4))
            for b, it in enumerate(items):
                if "camera" in it:
                    imgs[b] = torch.as_tensor(it["camera"]["images"])
                    e2i[b] = torch.as_tensor(it["camera"]["ego2img"])
            mean = torch.tensor(cs["mean"]).view(1, 1, 3, 1, 1) * 255
            std = torch.tensor(cs["std"]).view(1, 1, 3, 1, 1) * 255
            x = (self._to_device(imgs, device).permute(0, 1, 4, 2, 3).float() - mean.to(device)) / std.to(device)
            batch["camera"] = {"images": x, "ego2img": self._to_device(e2i, device)}
        return batch


def detections_from_decoded(d: dict, prompts=(), grounding=None) -> Detections:
    boxes = Boxes3D(d["boxes"], d["labels"], attributes=d["attributes"])
    if grounding is None and prompts:
        grounding = np.zeros((len(boxes), len(prompts)), np.float32)
    return Detections(boxes, d["scores"], grounding, prompts)


def load_checkpoint(path) -> dict:
    """A deploy checkpoint: {"state_dict", "meta": {"preprocess", "assembly", ...}}; loaded with
    weights_only=True (a relative path missing here is looked up in the project: perception.paths)."""
    from perception.paths import resolve

    path = resolve(path)
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {path}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a PromptFusion checkpoint (no state_dict)")
    sd = ckpt["state_dict"]
    if any(k.startswith("net.") for k in sd):  # saved from the training wrapper
        sd = {k[4:]: v for k, v in sd.items() if k.startswith("net.")}
    ckpt["state_dict"] = sd
    return ckpt


class Pipeline:
    """Pipeline(config, checkpoint, device): ``pipeline(frame) -> Detections`` (ego frame of the frame).

    The deploy spec comes from the checkpoint: ``pre`` (the Preprocessor: voxels, columns, image size) and
    ``assembly`` (how frames are made: sweeps, radar filters, synchronization; perception.sources.assembly),
    which every source takes: ``BagSource(log, pipe.assembly)``, ``Feeder(pipe.assembly)``,
    ``NuScenesSource(root, version, split, **pipe.assembly.source_kwargs())``.
    """

    def __init__(self, config, checkpoint=None, device: str = "cpu", modalities=None, runtime: dict | None = None):
        """``runtime`` overrides the config's runtime section (RUNTIME_DEFAULTS: precision, voxelize_on_device,
        pin_memory, backend)."""
        cfg = load_config(config) if isinstance(config, (str, Path)) else dict(config)
        self.cfg = cfg
        self.device = torch.device(device)
        self.runtime = check_section("runtime", {**cfg.get("runtime", {}), **(runtime or {})}, RUNTIME_DEFAULTS)
        if self.runtime["precision"] == "auto":
            self.runtime["precision"] = "fp16" if self.device.type == "cuda" else "fp32"
        if self.runtime["precision"] not in _DTYPES:
            raise ConfigError(f"runtime.precision: {self.runtime['precision']!r}; valid: {sorted(_DTYPES)} or 'auto'")
        if int(self.runtime["threads"]) > 0:
            torch.set_num_threads(int(self.runtime["threads"]))
        self.model = build(cfg["model"]).to(self.device).eval()
        preprocess = cfg.get("preprocess", {})
        self.text_delta, self.text_tune = None, None  # a checkpoint's fine-tuning of the text encoder
        self.meta: dict = {}  # the checkpoint's deploy meta (none for an untrained network)
        if checkpoint is not None:
            ckpt = load_checkpoint(checkpoint)
            missing, unexpected = self.model.load_state_dict(ckpt["state_dict"], strict=False)
            missing = [k for k in missing if not training_only(k)]  # training losses' heads are not deployed
            if missing or unexpected:
                raise ValueError(f"{checkpoint} does not match the config: missing keys {missing[:20]}, "
                                 f"unexpected keys {unexpected[:20]}")
            meta = self.meta = ckpt.get("meta", {})
            self.text_delta, self.text_tune = ckpt.get("text_delta"), meta.get("text_tune")
            preprocess = meta.get("preprocess", preprocess)
            self.pre = Preprocessor(preprocess)
            self.assembly = from_checkpoint_meta({**meta, "preprocess": self.pre.to_dict()}, cfg, str(checkpoint))
        else:  # an untrained network (tests, export checks): the config says how frames are made
            self.pre = Preprocessor(preprocess)
            self.assembly = Assembly.from_section(cfg.get("assembly"), self.pre.to_dict())
        if self.runtime["voxelize_on_device"]:
            self.pre.voxel_device = self.device
        self.pre.pin_memory = bool(self.runtime["pin_memory"]) and self.device.type == "cuda"
        self._onnx = None
        backend = self.runtime["backend"]
        if backend not in ("torch", "onnxruntime", "auto"):
            raise ConfigError(f"runtime.backend: {backend!r}; valid: 'torch', 'onnxruntime', 'auto'")
        ort_can_run = self.device.type == "cpu" and self.runtime["precision"] == "fp32"
        if backend == "onnxruntime" and not ort_can_run:
            raise ConfigError("runtime.backend 'onnxruntime' runs fp32 on the CPU; use the torch backend for "
                              f"device {self.device.type} / precision {self.runtime['precision']}")
        if backend == "auto":  # torch eager is the faster one wherever it was measured
            self.runtime["backend"] = "torch"
        if self.runtime["backend"] == "onnxruntime":
            from perception.export import OnnxModel, example_batch, export_onnx

            graph = export_onnx(self.model, example_batch(self.pre.spec), self.pre.spec)  # in memory, ~1 s
            self._onnx = OnnxModel(graph, self.pre.spec, threads=int(self.runtime["threads"]))
        self.modalities = modalities
        # a temporal network's earlier fused maps, per stream (this Pipeline is one stream: replay and the
        # node feed it frames in time order; perception.models.temporal.History says when it resets)
        self.history = None
        if getattr(self.model, "temporal", None) is not None:
            from perception.models.temporal import History

            self.history = History(lag=self.model.temporal.lag)
        self.last_timing: dict[str, float] = {}
        self._folded: tuple | None = None  # (model, its tensors, their versions, the folded copy)
        self.fold_stats: dict = {"folds": 0, "batchnorms": 0, "seconds": 0.0}  # how often, how many, how long
        self._text_encoder = None
        self.text_cfg = check_section("text_encoder", cfg.get("text_encoder", {}), TEXT_ENCODER_DEFAULTS)

    @property
    def net(self) -> torch.nn.Module:
        """The network the torch backend runs: ``self.model`` itself (in training mode, or with
        ``runtime.fold_batchnorm`` off), else a copy of it with its BatchNorms folded into the convolutions
        (perception.models.fold: the same outputs to float rounding, one pass over each feature map fewer).
        The copy is made at the first frame and again when ``self.model`` is another module or one of its
        parameters or buffers was changed in place (an optimizer step, ``load_state_dict``, an in-place edit
        of the tensor itself) or given new memory (``.data = ...``, ``.half()``); an edit through ``.data``
        in place, a submodule or tensor replaced by another, or a flag read in forward is not seen: call
        :meth:`refresh_net` after those. Should folding fail, the model runs as it is (logged once)."""
        if not self.runtime["fold_batchnorm"] or self.model.training:
            return self.model
        f = self._folded
        if f is None or f[0] is not self.model or [(t._version, t.data_ptr()) for t in f[1]] != f[2]:
            t = time.perf_counter()
            net, n = self._fold()
            tensors = [*self.model.parameters(), *self.model.buffers()]
            f = self._folded = (self.model, tensors, [(x._version, x.data_ptr()) for x in tensors], net)
            self.fold_stats["folds"] += 1
            self.fold_stats["batchnorms"] = n
            self.fold_stats["seconds"] += time.perf_counter() - t
        return f[3]

    def refresh_net(self) -> None:
        """Fold the network again at the next frame (after an edit :attr:`net` cannot see)."""
        self._folded = None

    def _fold(self) -> tuple[torch.nn.Module, int]:
        from perception.export import example_batch
        from perception.models.fold import fold_batchnorm

        def on_device(x):
            return {k: on_device(v) for k, v in x.items()} if isinstance(x, dict) else x.to(self.device)

        try:
            trace = on_device(example_batch(self.pre.spec))  # every branch (each modality) runs on it
            check = example_batch(self.pre.spec)
            gen = torch.Generator().manual_seed(0)
            check["camera"]["images"] = torch.randn(check["camera"]["images"].shape, generator=gen)
            for m in ("lidar", "radar"):  # every column of each voxel's point random
                v = check[m]["voxels"]
                v[:, 0] += torch.randn(v[:, 0].shape, generator=gen)
            return fold_batchnorm(self.model, trace, on_device(check))
        except Exception as e:  # a network the example batch cannot run, out of memory, ...: run it as it is
            if not self.fold_stats.get("error"):
                log.warning("BatchNorm folding failed (%s: %s): the network runs unfolded", type(e).__name__, e)
            self.fold_stats["error"] = f"{type(e).__name__}: {e}"
            return self.model, 0

    @property
    def grounding(self) -> bool:
        return getattr(self.model, "grounding", None) is not None

    @property
    def text_encoder(self):
        """The sentence encoder (with the checkpoint's fine-tuning delta added), loaded on first use; prompts
        are encoded once and cached."""
        if self._text_encoder is None:
            from perception.language.text_encoder import TextEncoder

            self._text_encoder = TextEncoder.from_config(self.text_cfg, device=self.device, delta=self.text_delta,
                                                         delta_base=(self.text_tune or {}).get("base"))
        return self._text_encoder

    @staticmethod
    def _prompt_texts(prompts) -> tuple[str, ...]:
        if isinstance(prompts, str):
            prompts = (prompts,)
        return tuple(p.text if isinstance(p, Prompt) else p for p in prompts)

    @torch.no_grad()
    def __call__(self, frame: SensorFrame, prompts=(), motion=None) -> Detections:
        return self.run_batch([frame], prompts, motion)[0]

    @torch.no_grad()
    def run_batch(self, frames: list[SensorFrame], prompts=(), motion=None) -> list[Detections]:
        """Detections per frame; per-stage seconds of this call in ``self.last_timing`` ("fold": folding the
        network, at the first frame and after the model changed; see :attr:`net`).

        ``prompts``: zero, one or several referring expressions (str or Prompt); every frame's Detections
        then carry ``grounding_scores`` (objects x prompts, in [0, 1]). A checkpoint without a grounding head
        rejects prompts with ValueError; an empty prompt is a ValueError. ``motion``: None, or a callable
        (frame, Detections before grounding) -> (N, 2) ego-frame velocities (NaN: the box's own) that the
        grounding head reads instead of the detector's single-frame ones (``Tracker.motion_source()``: an
        object's velocity from its track's history); the Detections keep the detector's velocities.
        """
        prompts = self._prompt_texts(prompts)
        if prompts and not self.grounding:
            raise ValueError("this model has no grounding head: prompts need a checkpoint trained with grounding")
        s0 = self.fold_stats["seconds"]
        net = self.net  # folded at the first frame and after the model changed: last_timing["fold"]
        t_fold = self.fold_stats["seconds"] - s0
        t0 = time.perf_counter()
        text = self.text_encoder.batch(prompts) if prompts else None
        t_text = time.perf_counter() - t0
        items = [self.pre.prepare(f, self.modalities) for f in frames]
        if not any(it["present"].any() for it in items):
            self.last_timing = {"preprocess": time.perf_counter() - t0 - t_text, "inference": 0.0,
                                "postprocess": 0.0, "text": t_text, "fold": t_fold}
            return [Detections.empty(prompts) for _ in frames]
        # the exported graph has batch size 1 and always computes every modality's branch, so it runs frames
        # with every modality; a frame without one (e.g. a lidar sweep between camera frames) is cheaper in
        # torch, which skips the missing branch (the outputs agree: tests/test_export.py)
        # a temporal network runs one frame after the other, each with its history
        if self.history is not None or (self._onnx is not None and all(it["present"].all() for it in items)):
            batches = [self.pre.collate([it], self.device) for it in items]
            t1 = time.perf_counter()
            parts = [self._forward(f, it, b, net) for f, it, b in zip(frames, items, batches)]
            out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        else:
            batch = self.pre.collate(items, self.device)
            t1 = time.perf_counter()
            with self._autocast():
                out = net(batch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        dets = []
        for b, (d, it) in enumerate(zip(self.model.head.decode(out), items)):
            if not it["present"].any():
                dets.append(Detections.empty(prompts))
                continue
            det = detections_from_decoded(d)
            if prompts:
                dg = d
                if motion is not None:
                    v = np.asarray(motion(frames[b], det), np.float32).reshape(-1, 2)
                    boxes = np.array(d["boxes"], np.float32, copy=True)
                    boxes[:, 7:9] = np.where(np.isfinite(v), v, boxes[:, 7:9])
                    dg = {**d, "boxes": boxes}
                with self._autocast():
                    g = self._ground(out["bev"][b], dg, text)
                det = Detections(det.boxes, det.scores, g, prompts)
            dets.append(det)
        t3 = time.perf_counter()
        self.last_timing = {"preprocess": t1 - t0 - t_text, "inference": t2 - t1, "postprocess": t3 - t2,
                            "text": t_text, "fold": t_fold}
        return dets

    def _forward(self, frame: SensorFrame, item: dict, batch: dict, net: torch.nn.Module) -> dict:
        """One frame through the exported graph (when it runs this frame) or the torch model; a temporal
        network's frame reads its stream's history and leaves its own state there."""
        seen = self.history is not None and bool(item["present"].any())
        h = self.history.lookup(frame.stamp_ns, frame.T_global_ego, frame.scene) if seen else None
        if h is not None:
            batch["history"] = {"bev": h[0][None], "T": h[1][None].to(self.device),
                                "valid": torch.ones(1, dtype=torch.bool, device=self.device)}
        if self._onnx is not None and item["present"].all():
            out = self._onnx(batch)
        else:
            with self._autocast():
                out = net(batch)
        if seen:
            self.history.push(frame.stamp_ns, frame.T_global_ego, frame.scene, out["state"][0])
        return out

    def reset_history(self) -> None:
        """Forget the earlier frames a temporal network reads (a new stream); a no-op for one-frame networks."""
        if self.history is not None:
            self.history.reset()

    def _autocast(self):
        dtype = _DTYPES[self.runtime["precision"]]
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def _ground(self, bev: torch.Tensor, d: dict, text: dict) -> np.ndarray:
        g = self.model.grounding
        if not len(d["scores"]):
            return np.zeros((0, text["tokens"].shape[0]), np.float32)
        dev = bev.device
        obj = g.objects(bev, torch.as_tensor(d["boxes"], dtype=torch.float32, device=dev),
                        torch.as_tensor(d["labels"], device=dev), torch.as_tensor(d["attributes"], device=dev))
        logits = g(obj, {k: v.to(dev) for k, v in text.items()})
        return torch.sigmoid(logits.float()).cpu().numpy()
