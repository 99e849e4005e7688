"""The synthetic world: a small driving world written as an exact nuScenes dataroot.

An ego vehicle drives a straight multi-lane road between buildings; objects of all 10 detection classes
move on it (lanes, bike lanes, parking lanes, sidewalks, a crosswalk and a construction zone). Sensors are
simulated from one geometry: LIDAR_TOP (32 beams, 20 Hz) and the 6 cameras are ray-cast against the same
boxes (``_raycast``), the 5 radars return points on the same boxes with Doppler consistent with their
velocities. Annotations, point counts and visibility come from the generated data.

``generate(out, scenes, samples, seed)`` writes ``v1.0-mini`` (or ``v1.0-trainval`` past 10 scenes) tables,
``samples/``, ``sweeps/`` and ``maps/``; scenes are named after the official mini split so the devkit's split
logic and DetectionEval work unchanged. Everything is a pure function of the seed: same seed, same bytes.
"""

from perception.sources.synthetic.sensors import EGO_BODY
from perception.sources.synthetic.world import CLASS_NAMES, CLASS_SPECS, Scene, build_scene, scene_names
from perception.sources.synthetic.writer import WorldConfig, generate

__all__ = ["CLASS_NAMES", "CLASS_SPECS", "EGO_BODY", "Scene", "WorldConfig", "build_scene", "generate", "scene_names"]
