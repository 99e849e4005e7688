"""Detections: what the pipeline outputs for one frame."""

from __future__ import annotations

import numpy as np

from perception.types._validate import as_array, check_length
from perception.types.boxes import Boxes3D


class Detections:
    """Boxes3D plus ``scores`` (N,) float32 in [0, 1] and optional ``grounding_scores`` (N, P) float32,
    one column per prompt in ``prompts`` (P,). Indexing, ``len`` and ``filter`` act on all fields together.
    """

    __slots__ = ("boxes", "scores", "grounding_scores", "prompts")

    def __init__(self, boxes: Boxes3D, scores, grounding_scores=None, prompts=()):
        if not isinstance(boxes, Boxes3D):
            raise TypeError(f"Detections.boxes: expected Boxes3D, got {type(boxes).__name__}")
        self.boxes = boxes
        self.scores = as_array("Detections.scores", scores, np.float32, (None,))
        check_length("Detections.scores", self.scores, len(boxes))
        self.prompts = tuple(prompts)
        if grounding_scores is None:
            if self.prompts:
                raise ValueError("Detections.grounding_scores: required when prompts are given")
            self.grounding_scores = None
        else:
            g = as_array("Detections.grounding_scores", grounding_scores, np.float32, (None, len(self.prompts)))
            check_length("Detections.grounding_scores", g, len(boxes))
            self.grounding_scores = g

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, idx) -> Detections:
        if isinstance(idx, (int, np.integer)):
            idx = [int(idx)]
        g = None if self.grounding_scores is None else self.grounding_scores[idx]
        return Detections(self.boxes[idx], self.scores[idx], g, self.prompts)

    def __repr__(self) -> str:
        return f"Detections(n={len(self)}, prompts={list(self.prompts)})"

    @property
    def labels(self) -> np.ndarray:
        return self.boxes.labels

    def filter(self, min_score: float = 0.0, labels=None) -> Detections:
        keep = self.scores >= min_score
        if labels is not None:
            keep &= np.isin(self.labels, np.asarray(labels))
        return self[np.flatnonzero(keep)]

    def topk(self, k: int) -> Detections:
        order = np.argsort(-self.scores, kind="stable")[:k]
        return self[order]

    @staticmethod
    def empty(prompts=()) -> Detections:
        g = np.zeros((0, len(prompts)), np.float32) if prompts else None
        return Detections(Boxes3D.empty(), np.zeros(0, np.float32), g, prompts)
