"""The synthetic world: a small driving world written as an exact nuScenes dataroot.

Scenes are places (straight and curved streets, 4-way intersections with signals and turning traffic, a
parking lot, narrow streets) in day, night and rain, with traffic from a car-following model: the ego and the
others accelerate, brake, queue, stop at red lights and crosswalks and turn. Objects of the 10 detection
classes are built from primitives inside their annotation boxes (a car's body, cabin and wheels, a person's
legs, torso, arms and head, ...), sized from nuScenes-like distributions and coloured from palettes shared
across classes; unannotated street furniture (lamps, signs, poles, trees, hydrants, bollards, bins, fences,
hedges, bus stops), buildings and kerbs stand along every street. One ray caster (``_raycast``) serves all
sensors: LIDAR_TOP (32 beams, 20 Hz, range noise, surface-dependent dropouts and intensity), the 5 radars
(ray-cast with occlusion, radar-equation detection, noisy position and Doppler, ghosts and clutter) and the
6 cameras (shading, lights, exposure, white balance, noise, blur, rain). Annotations, point counts and
visibility come from the generated data.

Modules: ``world`` (classes, paths, the car-following model, ``Scene``), ``layout`` (one scene from its
seed, built from ``streets`` (places), ``objects`` (the object list, the overlap pass), ``traffic`` (the ego
and the movers, parking), ``roadside`` (construction zone, people), ``furniture`` (buildings, street furniture,
kerbs) and ``ground`` (the ground texture)), ``shapes`` (primitives, materials, palettes), ``sensors`` (the rig
and its simulation), ``writer`` (the dataroot). ``generate(out, WorldConfig(scenes, samples, seed))`` writes
``v1.0-mini`` (or ``v1.0-trainval`` past 10 scenes) tables, ``samples/``, ``sweeps/`` and ``maps/``; scenes
are named after the official mini split so the devkit's split logic and DetectionEval work unchanged.
Everything is a pure function of the seed: same seed, same bytes.
"""

from perception.sources.synthetic.sensors import EGO_BODY
from perception.sources.synthetic.world import CLASS_NAMES, CLASS_SPECS, Scene, build_scene, scene_names
from perception.sources.synthetic.writer import WorldConfig, generate

__all__ = ["CLASS_NAMES", "CLASS_SPECS", "EGO_BODY", "Scene", "WorldConfig", "build_scene", "generate", "scene_names"]
