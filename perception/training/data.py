"""Dataset adapter: NuScenesSource frames -> preprocessed inputs (cached in memory) + ground truth."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from perception.pipeline import Preprocessor
from perception.sources.nuscenes import NuScenesSource
from perception.types import MODALITIES


class FrameDataset(Dataset):
    """Items: {"inputs": prepared numpy dict, "data_samples": {"token", "gt", "T_global_ego"}}.

    ``modality_dropout``: {modality: probability} applied per item (at least one modality is kept), so the
    network learns every subset of sensors. ``cache`` keeps the preprocessed frames in memory.
    """

    def __init__(self, source: NuScenesSource, preprocessor: Preprocessor, modality_dropout: dict | None = None,
                 cache: bool = True, modalities=None, prompts: dict | None = None):
        self.source = source
        self.pre = preprocessor
        self.dropout = dict(modality_dropout or {})
        bad = set(self.dropout) - set(MODALITIES)
        if bad:
            raise ValueError(f"modality_dropout: unknown modalities {sorted(bad)}; valid: {MODALITIES}")
        self.cache = {} if cache else None
        self.modalities = modalities
        self.rng = np.random.default_rng()
        self.prompts = prompts or {}

    def __len__(self) -> int:
        return len(self.source)

    def _load(self, i: int):
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        frame = self.source[i]
        item = (self.pre.prepare(frame, self.modalities),
                {"token": frame.sample_token, "gt": frame.gt, "T_global_ego": frame.T_global_ego})
        if self.cache is not None:
            self.cache[i] = item
        return item

    def __getitem__(self, i: int) -> dict:
        inputs, meta = self._load(i)
        if self.dropout:
            inputs = dict(inputs)
            inputs["present"] = inputs["present"].copy()
            have = [m for m in MODALITIES if inputs["present"][MODALITIES.index(m)]]
            drop = [m for m in have if self.rng.random() < self.dropout.get(m, 0.0)]
            if len(drop) == len(have) and have:
                drop.remove(have[self.rng.integers(len(have))])
            for m in drop:
                inputs.pop(m, None)
                inputs["present"][MODALITIES.index(m)] = False
        if self.prompts:
            meta = {**meta, "prompts": self.prompts.get(meta["token"], [])}
        return {"inputs": inputs, "data_samples": meta}


def collate(batch: list[dict]) -> dict:
    return {"inputs": [b["inputs"] for b in batch], "data_samples": [b["data_samples"] for b in batch]}
