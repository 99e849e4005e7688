"""mmengine BaseModel around FusionModel: loss / predict / tensor modes, and the deploy checkpoint."""

from __future__ import annotations

import torch
from mmengine.model import BaseModel

from perception.pipeline import Preprocessor, detections_from_decoded


class FusionDetector(BaseModel):
    def __init__(self, net: torch.nn.Module, preprocess: dict):
        super().__init__()
        self.net = net
        self.pre = Preprocessor(preprocess)

    def forward(self, inputs, data_samples=None, mode: str = "tensor"):
        device = next(self.net.parameters()).device
        batch = self.pre.collate(inputs, device)
        out = self.net(batch)
        if mode == "tensor":
            return out
        if mode == "loss":
            targets = self.net.head.targets([d["gt"] for d in data_samples], device)
            return self.net.head.loss(out, targets)
        if mode == "predict":
            decoded = self.net.head.decode(out)
            return [{"token": d["token"], "T_global_ego": d["T_global_ego"], "det": detections_from_decoded(x)}
                    for d, x in zip(data_samples, decoded)]
        raise ValueError(f"unknown mode {mode!r}")

    def deploy_checkpoint(self, path, **meta) -> None:
        """Weights + preprocessing only (loadable with torch.load(weights_only=True))."""
        torch.save({"state_dict": self.net.state_dict(),
                    "meta": {"preprocess": self.pre.to_dict(), **meta}}, str(path))
