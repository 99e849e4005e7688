"""Referring prompts from annotations, in the spirit of NuPrompt: a structured spec, its phrasings, its referents.

A :class:`PromptSpec` says what a prompt means (which classes, motion state, where relative to ego, how far,
how fast, approaching or moving away). :func:`referred` evaluates it on a frame's boxes (ego frame), and
:func:`render` phrases it in one of three disjoint styles: ``"train"`` (the templates the grounding head is
trained on), ``"heldout"`` (paraphrases with other words and structure, used only for the final figure) and
``"dev"`` (a development set of paraphrases with words of its own, for choosing settings).

Prompts are written per dataroot in NuPrompt's file shape, one object per prompt and scene::

    {"scene_token", "prompt", "original_prompt", "frame_token_object_token": {sample_token: [instance_token]},
     "style": "train" | "heldout" | "dev", "spec": {...}, "split": "mini_train" | ...}

so real NuPrompt annotations (which lack ``style``/``spec``) load with the same reader.

Geometry of the words (ego frame: x forward, y left; velocities absolute, in the ego frame's axes):
ahead x > 0, behind x < 0, on the left y > 2 m, on the right y < -2 m; within N m / more than N m away is
the planar distance to the box centre; moving = speed > 1 m/s; stopped / parked / walking / standing are the
nuScenes attributes; crossing = a pedestrian moving across ego's heading (|vy| > |vx|, speed > 0.5 m/s);
approaching / moving away = the box's velocity along the line of sight below -1 / above +1 m/s.
Only objects the nuScenes detection eval scores are referents: within the class's eval range and hit by at
least one lidar or radar point (see :data:`CLASS_RANGE`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from perception.language.phrasing import STYLES, render
from perception.types import CLASS_RANGE, DETECTION_CLASSES, Boxes3D

VEHICLES = ("car", "truck", "bus", "trailer", "construction_vehicle")
CYCLES = ("bicycle", "motorcycle")
GROUPS: dict[str, tuple[str, ...]] = {
    **{c: (c,) for c in DETECTION_CLASSES}, "vehicle": VEHICLES, "two_wheeler": CYCLES,
    "object": DETECTION_CLASSES,
}
MOTIONS = ("moving", "stopped", "parked", "walking", "standing", "crossing")
# which motion words make sense for which group
MOTION_OK = {"moving": VEHICLES + CYCLES + ("pedestrian",), "stopped": VEHICLES, "parked": VEHICLES,
             "walking": ("pedestrian",), "standing": ("pedestrian",), "crossing": ("pedestrian",)}
DISTANCES = (10, 15, 20, 30)
SPEEDS = (2, 5, 8)
LATERAL_M = 2.0
MOVING_MPS = 1.0
RADIAL_MPS = 1.0
# every part of a spec and the values it can take (None: the prompt does not say)
SLOT_VALUES: dict[str, tuple] = {
    "group": tuple(GROUPS), "motion": (None, *MOTIONS), "lon": (None, "ahead", "behind"),
    "lat": (None, "left", "right"), "within": (None, *DISTANCES), "beyond": (None, *DISTANCES),
    "faster": (None, *SPEEDS), "radial": (None, "approaching", "away")}


@dataclass(frozen=True)
class PromptSpec:
    group: str                       # key of GROUPS
    motion: str | None = None        # one of MOTIONS
    lon: str | None = None           # "ahead" | "behind"
    lat: str | None = None           # "left" | "right"
    within: int | None = None        # distance < within
    beyond: int | None = None        # distance > beyond
    faster: int | None = None        # speed > faster
    radial: str | None = None        # "approaching" | "away"

    def __post_init__(self):
        if self.group not in GROUPS:
            raise ValueError(f"PromptSpec.group: unknown {self.group!r}; valid: {sorted(GROUPS)}")
        for name in ("motion", "lon", "lat", "radial"):
            value, valid = getattr(self, name), SLOT_VALUES[name][1:]
            if value is not None and value not in valid:
                raise ValueError(f"PromptSpec.{name}: unknown {value!r}; valid: {valid}")

    @staticmethod
    def from_dict(d: dict) -> PromptSpec:
        return PromptSpec(**d)


# -- facts and referents ---------------------------------------------------------------------------------

@dataclass
class Facts:
    """Per-box quantities the prompt words are defined on (arrays of one frame, ego frame)."""
    cls: np.ndarray
    attr: list
    x: np.ndarray
    y: np.ndarray
    dist: np.ndarray
    speed: np.ndarray
    radial: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    valid: np.ndarray = field(default=None)


def facts(boxes: Boxes3D, require_points: bool = True) -> Facts:
    d = boxes.data
    x, y = d[:, 0], d[:, 1]
    v = np.nan_to_num(d[:, 7:9])
    dist = np.hypot(x, y)
    speed = np.hypot(v[:, 0], v[:, 1])
    radial = (v[:, 0] * x + v[:, 1] * y) / np.maximum(dist, 1e-6)
    attr = boxes.attribute_names
    valid = dist <= np.array([CLASS_RANGE[n] for n in boxes.class_names], np.float64).reshape(-1)
    if require_points and boxes.fields.get("num_lidar_pts") is not None:
        pts = boxes.fields["num_lidar_pts"] + (boxes.fields.get("num_radar_pts")
                                               if boxes.fields.get("num_radar_pts") is not None else 0)
        valid &= pts > 0
    return Facts(boxes.labels, attr, x, y, dist, speed, radial, v[:, 0], v[:, 1], valid)


def matches(spec: PromptSpec, f: Facts) -> np.ndarray:
    """(N,) bool: which boxes the spec refers to."""
    ok = f.valid & np.isin(f.cls, [DETECTION_CLASSES.index(c) for c in GROUPS[spec.group]])
    attr = np.array(f.attr, dtype=object)
    if spec.motion == "moving":
        ok &= f.speed > MOVING_MPS
    elif spec.motion in ("stopped", "parked"):
        ok &= attr == f"vehicle.{spec.motion}"
    elif spec.motion == "walking":
        ok &= attr == "pedestrian.moving"
    elif spec.motion == "standing":
        ok &= attr == "pedestrian.standing"
    elif spec.motion == "crossing":
        ok &= (f.speed > 0.5) & (np.abs(f.vy) > np.abs(f.vx))
    if spec.lon == "ahead":
        ok &= f.x > 0
    elif spec.lon == "behind":
        ok &= f.x < 0
    if spec.lat == "left":
        ok &= f.y > LATERAL_M
    elif spec.lat == "right":
        ok &= f.y < -LATERAL_M
    if spec.within is not None:
        ok &= f.dist < spec.within
    if spec.beyond is not None:
        ok &= f.dist > spec.beyond
    if spec.faster is not None:
        ok &= f.speed > spec.faster
    if spec.radial == "approaching":
        ok &= f.radial < -RADIAL_MPS
    elif spec.radial == "away":
        ok &= f.radial > RADIAL_MPS
    return ok


def referred(spec: PromptSpec, boxes: Boxes3D) -> list[str]:
    """Instance tokens of the boxes the spec refers to (``boxes`` must carry ``instance_tokens``)."""
    inst = boxes.fields.get("instance_tokens")
    if inst is None:
        raise ValueError("referred(): the boxes carry no instance_tokens")
    return [str(t) for t in inst[matches(spec, facts(boxes))]]


# -- generation -------------------------------------------------------------------------------------------

def _spec_from_object(rng: np.random.Generator, f: Facts, k: int) -> PromptSpec:
    """A spec true for object k: its class (or a group), plus 0-2 of its other properties."""
    cls = DETECTION_CLASSES[f.cls[k]]
    groups = [cls, cls] + [g for g in ("vehicle", "two_wheeler", "object") if cls in GROUPS[g]]
    group = groups[rng.integers(len(groups))]
    motions = [m for m in MOTIONS if cls in MOTION_OK[m]
               and matches(PromptSpec(cls, motion=m), _one(f, k)).all()]
    options = []
    if motions:
        options.append(("motion", motions[rng.integers(len(motions))]))
    lon = "ahead" if f.x[k] > 0 else "behind"
    lat = "left" if f.y[k] > LATERAL_M else "right" if f.y[k] < -LATERAL_M else None
    pos = [(lon, None)] + ([(None, lat), (lon, lat)] if lat else [])
    options.append(("pos", pos[rng.integers(len(pos))]))
    within = [d for d in DISTANCES if f.dist[k] < d - 1]
    beyond = [d for d in DISTANCES if f.dist[k] > d + 1]
    if within:
        options.append(("within", within[rng.integers(len(within))]))
    if beyond:
        options.append(("beyond", beyond[rng.integers(len(beyond))]))
    faster = [s for s in SPEEDS if f.speed[k] > s + 0.5]
    if faster and cls in VEHICLES + CYCLES:
        options.append(("faster", faster[rng.integers(len(faster))]))
    if f.radial[k] < -RADIAL_MPS - 0.5:
        options.append(("radial", "approaching"))
    elif f.radial[k] > RADIAL_MPS + 0.5:
        options.append(("radial", "away"))
    n = int(rng.choice([0, 1, 1, 2, 2]))
    kw: dict = {}
    for i in rng.permutation(len(options))[:n]:
        key, val = options[i]
        if key == "pos":
            kw["lon"], kw["lat"] = val
        elif key in ("within", "beyond") and ("within" in kw or "beyond" in kw):
            continue
        else:
            kw[key] = val
    if kw.get("motion") not in (None, "moving") and not set(GROUPS[group]) <= set(MOTION_OK[kw["motion"]]):
        group = cls  # "walking objects" -> "walking pedestrians"
    return PromptSpec(group, **kw)


def _one(f: Facts, k: int) -> Facts:
    return Facts(f.cls[k:k + 1], f.attr[k:k + 1], f.x[k:k + 1], f.y[k:k + 1], f.dist[k:k + 1],
                 f.speed[k:k + 1], f.radial[k:k + 1], f.vx[k:k + 1], f.vy[k:k + 1], np.ones(1, bool))


def _random_spec(rng: np.random.Generator) -> PromptSpec:
    """A spec drawn without looking at the scene: often refers to nothing."""
    cls = DETECTION_CLASSES[rng.integers(len(DETECTION_CLASSES))]
    motions = [m for m in MOTIONS if cls in MOTION_OK[m]]
    kw: dict = {}
    if motions and rng.random() < 0.5:
        kw["motion"] = motions[rng.integers(len(motions))]
    if rng.random() < 0.5:
        kw["within"] = int(rng.choice(DISTANCES[:2]))
    else:
        kw["lon"], kw["lat"] = [("ahead", "left"), ("behind", "right"), ("behind", None)][rng.integers(3)]
    return PromptSpec(cls, **kw)


def scene_prompts(scene_token: str, frames: list[tuple[str, Boxes3D]], n_specs: int, seed: int = 0,
                  styles=STYLES, split: str = "", phrasings: int = 1) -> list[dict]:
    """NuPrompt-style records for one scene. ``frames``: (sample_token, ground-truth boxes) in time order.
    ``phrasings``: training-style renderings per spec (held-out: one)."""
    h = int(hashlib.sha1(f"{seed}/{scene_token}".encode()).hexdigest()[:12], 16)
    rng = np.random.default_rng(h)
    fs = [(tok, b, facts(b)) for tok, b in frames]
    specs: list[PromptSpec] = []
    seen = set()
    tries = 0
    while len(specs) < n_specs and tries < n_specs * 20:
        tries += 1
        if rng.random() < 0.12:
            spec = _random_spec(rng)
        else:
            tok, b, f = fs[rng.integers(len(fs))]
            idx = np.flatnonzero(f.valid)
            if not len(idx):
                continue
            spec = _spec_from_object(rng, f, int(idx[rng.integers(len(idx))]))
        if spec in seen:
            continue
        seen.add(spec)
        specs.append(spec)
    out = []
    for spec in specs:
        per_frame = {}
        for tok, b, f in fs:
            inst = b.fields.get("instance_tokens")
            per_frame[tok] = [str(t) for t in inst[matches(spec, f)]] if inst is not None else []
        for style in styles:
            texts = {}
            for _ in range(phrasings if style == "train" else 1):
                # the development style (one phrasing per part) draws nothing: adding it left every other
                # record, the held-out set included, exactly as it was
                variant = 1 if style == "dev" else 1 + int(rng.integers(1 << 30))
                texts.setdefault(render(spec, style, variant), variant)
            for text, variant in texts.items():
                out.append({"scene_token": scene_token, "prompt": text, "original_prompt": render(spec, "train", 0),
                            "frame_token_object_token": per_frame, "style": style, "spec": asdict(spec),
                            "variant": variant, "split": split})
    return out


def generate(source, n_specs: int = 60, seed: int = 0, styles=STYLES, progress: bool = False,
             phrasings: int = 1) -> list[dict]:
    """Records for every scene of a NuScenesSource (its index and ground truth; no sensor data is read)."""
    by_scene: dict[str, list] = {}
    for e in source.index:
        by_scene.setdefault(e["scene"], []).append(e)
    out = []
    items = list(by_scene.items())
    if progress:
        from tqdm import tqdm
        items = tqdm(items, desc=f"prompts {source.split}", unit="scene")
    for scene, entries in items:
        entries.sort(key=lambda e: e["timestamp_us"])
        frames = [(e["token"], source.ground_truth(e["token"])) for e in entries]
        out += scene_prompts(scene, frames, n_specs, seed, styles, split=source.split or "", phrasings=phrasings)
    return out


def write(path, records: list[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".partial")
    with open(tmp, "w") as f:
        json.dump(records, f)
    os.replace(tmp, path)


def read(path) -> list[dict]:
    """NuPrompt-style records (a list, or one record per file in a directory)."""
    path = Path(path)
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    out = []
    for p in files:
        try:
            with open(p) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"prompt file not found: {p}") from None
        except ValueError as e:
            raise ValueError(f"{p}: not a JSON prompt file ({e})") from None
        for r in data if isinstance(data, list) else [data]:
            missing = {"scene_token", "prompt", "frame_token_object_token"} - set(r)
            if missing:
                raise ValueError(f"{p}: prompt record lacks {sorted(missing)}")
            r.setdefault("style", "train")
            out.append(r)
    return out


GENERATOR = 5  # bump when generation changes: the file name changes with it, so stale files are not reused
CONFIG_DEFAULTS = {"train_per_scene": 80, "val_per_scene": 60, "train_phrasings": 6, "seed": 0}  # the section


def default_path(dataroot, version: str, train_split: str, val_split: str, n_train: int, n_val: int,
                 train_phrasings: int, seed: int) -> Path:
    """Where :func:`ensure` keeps the file made with these parameters (they are in its name, so a file made
    with other ones is never taken for it)."""
    return Path(dataroot) / "prompts" / (f"{version}.gen{GENERATOR}.{train_split}-{n_train}x{train_phrasings}."
                                         f"{val_split}-{n_val}.seed{seed}.json")


def ensure(dataroot, version: str, train_split: str, val_split: str,
           n_train: int = CONFIG_DEFAULTS["train_per_scene"], n_val: int = CONFIG_DEFAULTS["val_per_scene"],
           seed: int = CONFIG_DEFAULTS["seed"], train_phrasings: int = CONFIG_DEFAULTS["train_phrasings"],
           force: bool = False) -> Path:
    """The dataroot's prompt file, generated (deterministically) when missing or ``force``: training-template
    prompts for ``train_split`` (``train_phrasings`` phrasings of each spec); every style for ``val_split`` (one
    phrasing each; held-out and development paraphrases exist only there). Returns its path."""
    path = default_path(dataroot, version, train_split, val_split, n_train, n_val, train_phrasings, seed)
    if path.is_file() and not force:
        return path
    from perception.sources.nuscenes import NuScenesSource

    records = []
    for split, n, styles, k in ((train_split, n_train, ("train",), train_phrasings), (val_split, n_val, STYLES, 1)):
        src = NuScenesSource(dataroot, version=version, split=split, cameras=(), lidar_sweeps=0, radar_sweeps=1)
        records += generate(src, n, seed, styles=styles, progress=True, phrasings=k)
    write(path, records)
    return path


def ensure_from_config(dataroot, section: dict | None, version: str, train_split: str, val_split: str,
                       force: bool = False) -> Path:
    """:func:`ensure` with a config's ``prompts`` section (unknown keys are an error naming the closest one)."""
    from perception.config import check_section

    pc = check_section("prompts", dict(section or {}), CONFIG_DEFAULTS)
    return ensure(dataroot, version, train_split, val_split, pc["train_per_scene"], pc["val_per_scene"],
                  pc["seed"], pc["train_phrasings"], force=force)


def ensure_for(dataroot, cfg: dict, val_split: str | None = None, force: bool = False) -> Path:
    """:func:`ensure_from_config` for a whole config: its ``prompts`` section and its ``data`` section's version
    and splits (nuScenes mini's by default); ``val_split`` overrides the data section's."""
    data = cfg.get("data") or {}
    return ensure_from_config(dataroot, cfg.get("prompts"), data.get("version", "v1.0-mini"),
                              data.get("train_split", "mini_train"), val_split or data.get("val_split", "mini_val"),
                              force=force)


def by_sample(records: list[dict], style: str | None = None) -> dict[str, list[tuple[int, list[str]]]]:
    """sample_token -> [(record index, referred instance tokens)] for the records of ``style``."""
    out: dict[str, list] = {}
    for i, r in enumerate(records):
        if style is not None and r.get("style", "train") != style:
            continue
        for tok, inst in r["frame_token_object_token"].items():
            out.setdefault(tok, []).append((i, list(inst)))
    return out
