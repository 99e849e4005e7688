"""The shipped tiny network and training (configs/tiny.py) with the scene rotation of the augmented half of the
samples drawn over the full circle (+-180 deg) instead of +-22.5 deg. The development split showed the shipped
network reading every vehicle as lying along the ego's axis: vehicles lying across it (parked in lots, waiting at
a cross street) get a median heading error of 78.7 deg (46.2 deg modulo 180) against 1.2 deg along it
(promptfusion-test's heading table), and traffic
crossing the ego's path gets no speed (0.00 m/s predicted for 5.4 m/s): in this world most vehicles lie along
the main street, so the heading and the lane say the direction of motion, and a scene turned by at most 22.5 deg
never asks the network to read either from the points. Turned over the full circle (boxes, headings,
velocities, radar Doppler and the cameras' extrinsics with it), any heading and direction of motion is as common
as any other; the unturned half keeps its prompts."""

from configs.tiny import *  # noqa: F403 - data, assembly, network, runtime, prompts as the shipped tiny network
from configs.tiny import train as _train

train = {**_train, "augment": {**_train["augment"], "bev": {**_train["augment"]["bev"], "rot": 3.141592653589793}}}
