"""The shipped tiny network and training (configs/tiny.py) with every frame drawn equally often
(``class_balanced=False``, the sampling before CBGS): frames holding a bus or a motorcycle are seen no more
often than the others."""

from configs.tiny import *  # noqa: F403 - data, assembly, model, preprocessing, runtime, prompts as shipped
from configs.tiny import train

train = {**train, "class_balanced": False}
