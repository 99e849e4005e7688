"""The shipped tiny network and training (configs/tiny.py) with ground-truth sampling (perception.training.paste):
every class pasted into the training frames, the rare ones most (counts after mmdetection3d's nuScenes
ObjectSample, scaled to this world's few rare objects), stopped for the last 20% of the iterations (the fade).
The candidate for issue 18's rare classes; not yet trained in full."""

from configs.tiny import *  # noqa: F403 - network, data, assembly, runtime as the shipped tiny network
from configs.tiny import train

PASTE = dict(classes={"car": 2, "truck": 3, "construction_vehicle": 4, "bus": 4, "trailer": 4, "barrier": 2,
                      "motorcycle": 4, "bicycle": 4, "pedestrian": 2, "traffic_cone": 2},
             min_points=5, prob=1.0, fade=0.8)
train = {**train, "augment": {**train["augment"], "paste": PASTE}}
