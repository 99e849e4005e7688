"""The shipped tiny network and training (configs/tiny.py) without ground-truth sampling: the training frames
as they are (the recipe of the checkpoint before the one shipped with pasting)."""

from configs.tiny import *  # noqa: F403 - network, data, assembly, runtime as the shipped tiny network
from configs.tiny import train

train = {**train, "augment": {k: v for k, v in train["augment"].items() if k != "paste"}}
