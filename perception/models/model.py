"""FusionModel: built from already-built parts; encoders live in a ModuleDict keyed by modality."""

from __future__ import annotations

import torch
from torch import nn

from perception.types import MODALITIES

_LIDAR = MODALITIES.index("lidar")  # its column of inputs["present"]
# parameters used only by training losses: left out of deploy checkpoints, and not required when one is loaded
TRAINING_ONLY = ("encoders.camera.semantic_head.",)


def training_only(key: str) -> bool:
    return any(key.startswith(p) for p in TRAINING_ONLY)


def deploy_state_dict(net: nn.Module) -> dict:
    """The weights a deploy checkpoint carries: the network's state without the training-only parameters."""
    return {k: v for k, v in net.state_dict().items() if not training_only(k)}


class FusionModel(nn.Module):
    """encoders: {"camera"?, "lidar"?, "radar"?} -> fuser (BEV queries) -> neck (x2 up) -> head (+ grounding).

    ``inputs`` (see perception.pipeline.Preprocessor.collate): "present" (B, len(MODALITIES)) bool over
    MODALITIES and, per modality that the batch carries, its tensors (camera: "images" (B, N, 3, H, W) and
    "ego2img" (B, N, 4, 4), ego frame -> image pixels). A modality missing from a frame is absent from the
    attention (mask), not zero-filled.
    """

    def __init__(self, encoders: dict[str, nn.Module], fuser: nn.Module, head: nn.Module, fused_channels: int,
                 skip_channels: int | None = None, grounding: nn.Module | None = None,
                 temporal: nn.Module | None = None, context: nn.Module | None = None):
        super().__init__()
        unknown = set(encoders) - set(MODALITIES)
        if unknown:
            raise ValueError(f"FusionModel.encoders: unknown modalities {sorted(unknown)}; valid: {MODALITIES}")
        self.encoders = nn.ModuleDict(encoders)
        self.fuser = fuser
        head_in = head.shared[0].in_channels
        self.up = nn.Sequential(nn.ConvTranspose2d(fused_channels, head_in, 2, 2, bias=False),
                                nn.BatchNorm2d(head_in), nn.ReLU(True))
        self.skip = nn.Conv2d(skip_channels, head_in, 1) if skip_channels and "lidar" in encoders else None
        self.head = head
        self.grounding = grounding
        self.temporal = temporal  # perception.models.temporal.TemporalFusion: an earlier frame's map mixed in
        self.context = context  # perception.models.context.BEVContext: a coarser stage over the (mixed) map

    def forward(self, inputs: dict) -> dict[str, torch.Tensor]:
        """``inputs["history"]`` (a temporal model): {"bev" (B, D, h, w) an earlier frame's ``out["state"]``,
        "T" (B, 4, 4) current ego -> that frame's ego, "valid" (B,) bool}; absent = no history. A temporal
        model's outputs carry ``state``: this frame's fused map, the next frame's history."""
        fused, hr, aux = self.fuse(inputs)
        B = fused.shape[0]
        state = None
        if self.temporal is not None:
            h = inputs.get("history")
            state = fused
            fused = self.temporal(fused, h["bev"], h["T"], h["valid"]) if h is not None else self.temporal(fused)
        if self.context is not None:  # after the history is mixed in: the stage also sees where things were
            fused = self.context(fused)
        x = self.up(fused)
        if self.skip is not None and hr is not None:  # a frame without lidar gets no skip term, not its bias
            x = x + self.skip(hr) * inputs["present"][:, _LIDAR].to(x.dtype).view(B, 1, 1, 1)
        out = self.head(x)
        if self.training:  # the camera's depth (B, N, bins, h, w), supervised by projected lidar, and semantic
            out.update(aux)  # (B, N, 1 + classes, h, w) logits (the deployed outputs, and the ONNX graph, are
            # the detection head's; depth_maps reads the encoder)
        if self.grounding is not None:
            out["bev"] = x  # the grounding head samples object features here
        if state is not None:
            out["state"] = state
        return out

    def fuse(self, inputs: dict):
        """The encoders and the BEV-query fuser: (fused (B, D, h, w), lidar's high-resolution map or None,
        the camera's auxiliary logits {"depth"?, "semantic"?})."""
        present = inputs["present"]
        B = present.shape[0]
        feats, hr = {}, None
        for m in ("lidar", "radar"):
            if m in self.encoders and inputs.get(m) is not None:
                x = inputs[m]
                out = self.encoders[m](x["voxels"], x["num_points"], x["coords"], B)
                feats[m] = out["bev"]
                if m == "lidar":
                    hr = out["bev_hr"]
        ego2img = img_hw = depth = None
        aux = {}
        if "camera" in self.encoders and inputs.get("camera") is not None:
            cam = inputs["camera"]
            res = self.encoders["camera"](cam["images"], cam["ego2img"])
            if isinstance(res, tuple):  # features, depth logits (or None)[, semantic logits in training]
                feats["camera"], depth_logits, *semantic = res
                if depth_logits is not None:
                    aux["depth"] = depth_logits
                    depth = (torch.softmax(depth_logits.float(), 2), self.encoders["camera"].depth_bins)
                if semantic:
                    aux["semantic"] = semantic[0]
            else:
                feats["camera"] = res
            ego2img, img_hw = cam["ego2img"], tuple(cam["images"].shape[-2:])
        fused = self.fuser(feats, present, ego2img=ego2img, img_hw=img_hw, depth=depth)
        return fused, hr, aux
