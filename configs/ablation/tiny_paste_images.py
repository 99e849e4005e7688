"""The shipped tiny network and training (configs/tiny.py) with multi-modal ground-truth sampling: the pasted
objects bring their image patches too (perception.training.paste, ``images=True``), so the camera branch and its
semantic head meet the rare classes as often as the lidar does. The candidate against the shipped recipe
(issue 17: what the cameras add)."""

from configs.tiny import *  # noqa: F403 - network, data, assembly, runtime as the shipped tiny network
from configs.tiny import train

train = {**train, "augment": {**train["augment"], "paste": {**train["augment"]["paste"], "images": True}}}
