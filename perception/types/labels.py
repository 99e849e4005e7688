"""The label spaces PromptFusion predicts: the 10 nuScenes detection classes and the 8 attributes."""

DETECTION_CLASSES: tuple[str, ...] = (
    "car", "truck", "construction_vehicle", "bus", "trailer",
    "barrier", "motorcycle", "bicycle", "pedestrian", "traffic_cone",
)

ATTRIBUTES: tuple[str, ...] = (
    "vehicle.moving", "vehicle.stopped", "vehicle.parked",
    "cycle.with_rider", "cycle.without_rider",
    "pedestrian.moving", "pedestrian.standing", "pedestrian.sitting_lying_down",
)

# nuScenes general category -> detection class (the devkit's category_to_detection_name, as a table).
CATEGORY_TO_CLASS: dict[str, str] = {
    "vehicle.car": "car",
    "vehicle.truck": "truck",
    "vehicle.construction": "construction_vehicle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.trailer": "trailer",
    "movable_object.barrier": "barrier",
    "vehicle.motorcycle": "motorcycle",
    "vehicle.bicycle": "bicycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
}

# The nuScenes detection eval's range per class (m, detection_cvpr_2019): boxes beyond are not scored.
CLASS_RANGE: dict[str, int] = {
    "car": 50, "truck": 50, "bus": 50, "trailer": 50, "construction_vehicle": 50, "pedestrian": 40,
    "motorcycle": 40, "bicycle": 40, "traffic_cone": 30, "barrier": 30,
}

# Which attributes are legal for which class (what the nuScenes detection eval accepts).
CLASS_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "car": ATTRIBUTES[0:3], "truck": ATTRIBUTES[0:3], "construction_vehicle": ATTRIBUTES[0:3],
    "bus": ATTRIBUTES[0:3], "trailer": ATTRIBUTES[0:3],
    "motorcycle": ATTRIBUTES[3:5], "bicycle": ATTRIBUTES[3:5],
    "pedestrian": ATTRIBUTES[5:8],
    "barrier": (), "traffic_cone": (),
}
