"""How a PromptSpec is said: the training templates and the held-out paraphrases (disjoint word choices).

``render(spec, "train", variant)`` picks one phrasing of every part (noun, motion, position, measures,
prefix) with a generator seeded by ``variant``; variant 0 is the plain form. ``"heldout"`` has one
phrasing per part, with words the training templates never use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from perception.language.prompts import PromptSpec

NOUNS = {
    "train": {"car": ["cars", "passenger cars", "sedans"], "truck": ["trucks", "heavy trucks"],
              "bus": ["buses", "city buses"], "trailer": ["trailers", "towed trailers"],
              "construction_vehicle": ["construction vehicles", "excavators"], "barrier": ["barriers", "barricades"],
              "motorcycle": ["motorcycles", "scooters"], "bicycle": ["bicycles", "cycles"],
              "pedestrian": ["pedestrians", "people", "walkers"], "traffic_cone": ["traffic cones", "pylons"],
              "vehicle": ["vehicles", "road vehicles"], "two_wheeler": ["two-wheelers"],
              "object": ["objects", "road users and obstacles"]},
    "heldout": {"car": ["automobiles"], "truck": ["lorries"], "bus": ["coaches"], "trailer": ["semi-trailers"],
                "construction_vehicle": ["construction machines"], "barrier": ["crash barriers"],
                "motorcycle": ["motorbikes"], "bicycle": ["bikes"], "pedestrian": ["persons on foot"],
                "traffic_cone": ["cones"], "vehicle": ["motor vehicles"], "two_wheeler": ["bikes and motorbikes"],
                "object": ["things"]},
}
# motion: phrasings as (words before the noun, words after it)
MOTION_WORDS = {
    "train": {"moving": [("moving", ""), ("", "that are moving"), ("driving", "")],
              "stopped": [("stopped", ""), ("", "that are stopped"), ("waiting", "")],
              "parked": [("parked", ""), ("", "that are parked"), ("", "parked along the road")],
              "walking": [("walking", ""), ("", "who are walking")],
              "standing": [("standing", ""), ("", "who are standing"), ("idle", "")],
              "crossing": [("", "crossing the road"), ("", "crossing")]},
    "heldout": {"moving": [("", "in motion")], "stopped": [("", "that have come to a halt")],
                "parked": [("", "left parked")], "walking": [("", "on the move")],
                "standing": [("", "standing still")], "crossing": [("", "walking across the street")]},
}
_LON = {"train": {"ahead": ["ahead", "ahead of us", "up ahead"], "behind": ["behind us", "behind", "at our back"]},
        "heldout": {"ahead": ["in front of us"], "behind": ["to our rear"]}}
_LAT = {"train": {"left": ["on the left", "on the left side", "left of us"],
                  "right": ["on the right", "on the right side", "right of us"]},
        "heldout": {"left": ["to our left"], "right": ["to our right"]}}
_BOTH_LAT = {"heldout": {"left": "to the left", "right": "to the right"}}
MEASURE_WORDS = {
    "train": {"within": ["within {} m", "within {} meters", "less than {} m away", "at most {} m away"],
              "beyond": ["more than {} m away", "over {} m away", "beyond {} m"],
              "faster": ["faster than {} m/s", "with a speed above {} m/s", "at more than {} m/s"],
              "approaching": ["approaching us", "approaching", "getting closer"],
              "away": ["moving away from us", "receding", "getting farther away"]},
    "heldout": {"within": ["closer than {} meters"], "beyond": ["farther than {} meters"],
                "faster": ["going above {} meters per second"], "approaching": ["coming towards us"],
                "away": ["heading away from us"]},
}
PREFIXES = {"train": ["", "", "", "the ", "all ", "show me the ", "find "], "heldout": [""]}
STYLES = ("train", "heldout")


def render(spec: PromptSpec, style: str = "train", variant: int = 0) -> str:
    """The spec in words. ``variant`` seeds the choice among a style's phrasings (deterministic); variant 0
    is the plain form (first phrasing of every part)."""
    if style not in STYLES:
        raise ValueError(f"render(): unknown style {style!r}; valid: {STYLES}")
    rng = np.random.default_rng(variant) if variant else None

    def pick(options):
        return options[0] if rng is None else options[int(rng.integers(len(options)))]

    words = [pick(NOUNS[style][spec.group])]
    if spec.motion:
        pre, post = pick(MOTION_WORDS[style][spec.motion])
        if pre:
            words.insert(0, pre)
        if post:
            words.append(post)
    if spec.lon and spec.lat:
        lat = _BOTH_LAT[style][spec.lat] if style in _BOTH_LAT else pick(_LAT[style][spec.lat])
        words.append(f"{pick(_LON[style][spec.lon])} {lat}")
    elif spec.lon:
        words.append(pick(_LON[style][spec.lon]))
    elif spec.lat:
        words.append(pick(_LAT[style][spec.lat]))
    m = MEASURE_WORDS[style]
    if spec.within is not None:
        words.append(pick(m["within"]).format(spec.within))
    if spec.beyond is not None:
        words.append(pick(m["beyond"]).format(spec.beyond))
    if spec.faster is not None:
        words.append(pick(m["faster"]).format(spec.faster))
    if spec.radial:
        words.append(pick(m[spec.radial]))
    return pick(PREFIXES[style]) + " ".join(words)
