"""The shipped tiny network and training (configs/tiny.py) with every full voxel keeping the first points in the
cloud's order (``keep="first"``, the previous default) instead of a sample of all of them: with the newest sweep
listed first, a dense pillar keeps almost none of the older sweeps, where the motion is."""

from configs.tiny import *  # noqa: F403 - data, assembly, model, training, runtime, prompts as the shipped tiny network
from configs.tiny import PREPROCESS, pc_range, preprocess_spec, voxel_size

preprocess = preprocess_spec(pc_range, voxel_size, **{**PREPROCESS, "keep": "first"})
