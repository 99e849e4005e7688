"""The shipped tiny network and training (configs/tiny.py) with the detector trained alone: the grounding head is
built (the same initial weights) but left untrained by promptfusion-train, and promptfusion-tune-text trains it
on the frozen detector afterwards. Its detections are the network's without grounding (issue 19's baseline)."""

from configs.tiny import *  # noqa: F403 - network, data, assembly, runtime as the shipped tiny network
from configs.tiny import train

train = {**train, "grounding": "later"}
