"""The frame-assembly half of the deploy spec: how sensor messages become one ``SensorFrame``.

A checkpoint is trained on frames built one way (how many lidar sweeps are merged, which radar points are
kept, how close a camera image must be to the lidar stamp) and must be served with frames built the same
way. ``Assembly`` is that recipe. The training tool writes it into the deploy checkpoint beside the
preprocessing (``meta["assembly"]``); ``Pipeline.assembly`` reads it back, and every source takes it from
there: ``NuScenesSource(root, version, split, **pipe.assembly.source_kwargs())``,
``BagSource(log, pipe.assembly)``, ``Feeder(pipe.assembly)`` (the live node). Nothing else in the code holds
a sweep count.

Config section ``assembly`` (a deployment property the training data is made with; the ``data`` section
names the training data only):

    lidar_sweeps     earlier lidar sweeps merged into each frame (0 = the reference sweep only)
    radar_sweeps     sweeps per radar, the matched one included
    radars           radar channels used
    radar_filters    the devkit's radar point filters ({field: allowed values}); {} keeps every point
    remove_close     points within this many metres of their sensor (|x| and |y|) are dropped
    slop_s           a camera or radar message belongs to a lidar sweep within this many seconds
    timeout_s        a frame waits at most this long for late sensors, then goes without them
    queue_size       messages kept per input while waiting
    max_pose_gap_s   ego poses further apart than this are not interpolated (the frame is skipped)

The cameras are the preprocessing's camera channels (``preprocess.camera.channels``), so they are not
repeated here.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

from perception.config import ConfigError, check_section
from perception.types import CAMERAS, RADARS

# The devkit's default radar filters (RadarPointCloud.default_filters): valid points, every dynamic
# property, no ambiguous state other than "unambiguous".
DEFAULT_RADAR_FILTERS = {"invalid_state": (0,), "dyn_prop": tuple(range(7)), "ambig_state": (3,)}

ASSEMBLY_DEFAULTS = {
    "lidar_sweeps": 9, "radar_sweeps": 3, "radars": RADARS, "radar_filters": DEFAULT_RADAR_FILTERS,
    "remove_close": 1.0, "slop_s": 0.05, "timeout_s": 0.1, "queue_size": 10, "max_pose_gap_s": 0.5,
}


@dataclass(frozen=True)
class Assembly:
    lidar_sweeps: int = ASSEMBLY_DEFAULTS["lidar_sweeps"]
    radar_sweeps: int = ASSEMBLY_DEFAULTS["radar_sweeps"]
    radars: tuple[str, ...] = RADARS
    radar_filters: dict = field(default_factory=lambda: dict(DEFAULT_RADAR_FILTERS))
    remove_close: float = ASSEMBLY_DEFAULTS["remove_close"]
    slop_s: float = ASSEMBLY_DEFAULTS["slop_s"]
    timeout_s: float = ASSEMBLY_DEFAULTS["timeout_s"]
    queue_size: int = ASSEMBLY_DEFAULTS["queue_size"]
    max_pose_gap_s: float = ASSEMBLY_DEFAULTS["max_pose_gap_s"]
    cameras: tuple[str, ...] = CAMERAS          # from the preprocessing, not the assembly section
    image_min_hw: tuple[int, int] | None = None  # JPEGs are decoded no larger than this needs (the preprocessing)

    def __post_init__(self):
        if int(self.lidar_sweeps) < 0 or int(self.radar_sweeps) < 1:
            raise ConfigError(f"assembly: lidar_sweeps must be >= 0 and radar_sweeps >= 1, got "
                              f"{self.lidar_sweeps} and {self.radar_sweeps}")
        for name, valid, given in (("radars", RADARS, self.radars), ("cameras", CAMERAS, self.cameras)):
            bad = sorted(set(given) - set(valid))
            if bad:
                raise ConfigError(f"assembly.{name}: unknown channels {bad}; valid: {valid}")
        if self.slop_s <= 0 or self.timeout_s < 0 or self.queue_size < 1 or self.max_pose_gap_s <= 0:
            raise ConfigError("assembly: slop_s and max_pose_gap_s must be > 0, timeout_s >= 0, queue_size >= 1")
        # plain, hashable-free forms: tuples for channel lists, tuples for filter values
        object.__setattr__(self, "radars", tuple(self.radars))
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "radar_filters", {k: tuple(v) for k, v in dict(self.radar_filters).items()})
        if self.image_min_hw is not None:
            object.__setattr__(self, "image_min_hw", tuple(int(x) for x in self.image_min_hw))

    @classmethod
    def from_section(cls, section: dict | None, preprocess: dict | None = None) -> Assembly:
        """From a config's (or checkpoint's) ``assembly`` section and the preprocessing spec (cameras and
        the decode size come from it). Unknown keys are a ConfigError naming the closest valid one."""
        s = check_section("assembly", dict(section or {}), ASSEMBLY_DEFAULTS)
        cams, hw = camera_inputs(preprocess)
        return cls(**s, cameras=cams, image_min_hw=hw)

    def section(self) -> dict:
        """The ``assembly`` section (plain lists and numbers: weights_only- and JSON-safe)."""
        d = asdict(self)
        d.pop("cameras")
        d.pop("image_min_hw")
        d["radars"] = list(d["radars"])
        d["radar_filters"] = {k: list(v) for k, v in d["radar_filters"].items()}
        return d

    def source_kwargs(self) -> dict:
        """Keyword arguments of NuScenesSource that make its frames the way this spec does."""
        return {"lidar_sweeps": self.lidar_sweeps, "radar_sweeps": self.radar_sweeps, "cameras": self.cameras,
                "radars": self.radars, "radar_filters": self.radar_filters, "remove_close": self.remove_close,
                "image_min_hw": self.image_min_hw}


def camera_inputs(preprocess: dict | None) -> tuple[tuple[str, ...], tuple[int, int] | None]:
    """(camera channels, smallest decode size) of a preprocessing spec; no cameras when its modalities
    leave the camera out (a dict as ``Preprocessor.to_dict`` writes it, or a config's preprocess section)."""
    from perception.pipeline import PREPROCESS_DEFAULTS

    pre = dict(preprocess or {})
    if "camera" not in tuple(pre.get("modalities", PREPROCESS_DEFAULTS["modalities"])):
        return (), None
    cam = {**PREPROCESS_DEFAULTS["camera"], **pre.get("camera", {})}
    return tuple(cam["channels"]), tuple(int(x) for x in cam["size"])


def from_checkpoint_meta(meta: dict, config: dict, where: str = "checkpoint") -> Assembly:
    """The assembly a checkpoint was trained with. A checkpoint written before the spec was saved in it
    has none: then the config's ``assembly`` section (or, for configs of that time, its ``data`` section's
    sweep counts) is used, with a warning that says what was assumed."""
    pre = meta.get("preprocess", config.get("preprocess"))
    if "assembly" in meta:
        return Assembly.from_section(meta["assembly"], pre)
    section = dict(config.get("assembly", {}))
    data = config.get("data", {})
    for k in ("lidar_sweeps", "radar_sweeps"):
        if k in data and k not in section:
            section[k] = data[k]
    spec = Assembly.from_section(section, pre)
    warnings.warn(f"{where} has no frame-assembly spec (written before it was saved in checkpoints); assuming "
                  f"lidar_sweeps={spec.lidar_sweeps}, radar_sweeps={spec.radar_sweeps}, "
                  f"radar_filters={spec.radar_filters}, slop_s={spec.slop_s} from the config "
                  f"{config.get('_path', '')} and the defaults", UserWarning, stacklevel=3)
    return spec
