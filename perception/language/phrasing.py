"""How a PromptSpec is said: the training templates, the held-out paraphrases and the development
paraphrases (three disjoint word choices).

``render(spec, "train", variant)`` picks one phrasing of every part (noun, motion, position, measures,
prefix) with a generator seeded by ``variant``; variant 0 is the plain form. The training templates give
every part several natural phrasings (the grounding head should learn what a part means, not one word for
it). ``"heldout"`` has one phrasing per part, built on words no training phrasing uses (:data:`HELDOUT_ONLY`).
``"dev"``, the development paraphrases, is a third style of the same kind with words of its own
(:data:`DEV_ONLY`: used by neither of the others, which use none of them): settings are chosen on it, so the
held-out score is never what a choice was made on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from perception.language.prompts import PromptSpec

NOUNS = {
    "train": {"car": ["cars", "passenger cars", "sedans", "hatchbacks", "SUVs", "vans", "family cars",
                      "coupes", "compact cars", "passenger vehicles", "taxis", "minivans", "station wagons",
                      "private cars"],
              "truck": ["trucks", "heavy trucks", "pickup trucks", "box trucks", "freight trucks", "delivery trucks",
                        "dump trucks", "tankers", "large trucks", "cargo trucks", "goods vehicles", "tow trucks"],
              "bus": ["buses", "city buses", "transit buses", "shuttle buses", "public buses", "double-decker buses",
                      "school buses", "articulated buses", "commuter buses"],
              "trailer": ["trailers", "towed trailers", "cargo trailers", "flatbed trailers", "hitched trailers",
                          "utility trailers", "car trailers"],
              "construction_vehicle": ["construction vehicles", "excavators", "bulldozers", "diggers",
                                       "road rollers", "cranes", "backhoes", "loaders", "cement mixers",
                                       "heavy equipment"],
              "barrier": ["barriers", "barricades", "road barriers", "concrete barriers", "guardrails",
                          "traffic barriers", "roadblocks", "safety barriers", "temporary barriers"],
              "motorcycle": ["motorcycles", "scooters", "mopeds", "motorcyclists", "motorcycle riders",
                             "mopeds and scooters"],
              "bicycle": ["bicycles", "cycles", "cyclists", "pedal cycles", "bicyclists",
                          "bicycle riders", "people on bicycles"],
              "pedestrian": ["pedestrians", "people", "walkers", "humans", "passers-by", "individuals",
                             "adults and children", "members of the public", "human beings", "folks"],
              "traffic_cone": ["traffic cones", "pylons", "safety pylons", "road cones", "orange cones",
                               "safety cones"],
              "vehicle": ["vehicles", "road vehicles", "four-wheelers", "wheeled vehicles",
                         "cars and trucks", "autos", "vehicles of any kind"],
              "two_wheeler": ["two-wheelers", "cycles and motorcycles", "riders",
                             "two-wheeled vehicles", "bicycles and motorcycles", "cyclists and motorcyclists"],
              "object": ["objects", "road users and obstacles", "anything", "everything", "all items",
                        "all objects", "obstacles and road users", "every object"]},
    "heldout": {"car": ["automobiles"], "truck": ["lorries"], "bus": ["coaches"], "trailer": ["semi-trailers"],
                "construction_vehicle": ["construction machines"], "barrier": ["crash barriers"],
                "motorcycle": ["motorbikes"], "bicycle": ["bikes"], "pedestrian": ["persons on foot"],
                "traffic_cone": ["cones"], "vehicle": ["motor vehicles"], "two_wheeler": ["bikes and motorbikes"],
                "object": ["things"]},
    "dev": {"car": ["motorcars"], "truck": ["rigs"], "bus": ["minibuses"], "trailer": ["caravans"],
            "construction_vehicle": ["earthmovers"], "barrier": ["jersey barriers"], "motorcycle": ["choppers"],
            "bicycle": ["pushbikes"], "pedestrian": ["bystanders"], "traffic_cone": ["delineators"],
            "vehicle": ["motorised traffic"], "two_wheeler": ["bikers"], "object": ["entities"]},
}
# motion: phrasings as (words before the noun, words after it)
MOTION_WORDS = {
    "train": {"moving": [("moving", ""), ("", "that are moving"), ("driving", ""), ("travelling", ""),
                         ("rolling", ""), ("", "under way"), ("", "that are driving"),
                         ("", "in transit"), ("", "that are travelling"), ("", "driving along"), ("cruising", "")],
              "stopped": [("stopped", ""), ("", "that are stopped"), ("waiting", ""), ("stationary", ""),
                          ("", "at a standstill"), ("", "that have stopped"), ("idling", ""),
                          ("", "that are not moving"), ("stalled", ""), ("", "paused in traffic")],
              "parked": [("parked", ""), ("", "that are parked"), ("", "parked along the road"),
                         ("", "parked at the curb"), ("", "that were parked"),
                         ("", "parked on the side"), ("", "in parking spots"), ("", "in a parking space")],
              "walking": [("walking", ""), ("", "who are walking"), ("strolling", ""), ("", "walking along"),
                          ("", "who walk"), ("", "walking by"), ("", "taking a walk"), ("marching", "")],
              "standing": [("standing", ""), ("", "who are standing"), ("idle", ""), ("", "standing around"),
                           ("waiting", ""), ("", "not walking"), ("", "waiting around"), ("loitering", ""),
                           ("motionless", "")],
              "crossing": [("", "crossing the road"), ("", "crossing"), ("", "crossing the lane"),
                           ("", "crossing the roadway"), ("", "crossing our path"), ("", "crossing our lane"),
                           ("", "crossing the traffic"), ("", "crossing over")]},
    "heldout": {"moving": [("", "in motion")], "stopped": [("", "that have come to a halt")],
                "parked": [("", "left parked")], "walking": [("", "on the move")],
                "standing": [("", "standing still")], "crossing": [("", "walking across the street")]},
    "dev": {"moving": [("", "on the go")], "stopped": [("", "brought to a stop")],
            "parked": [("", "sitting at the kerb")], "walking": [("ambling", "")],
            "standing": [("", "remaining in place")], "crossing": [("", "traversing the carriageway")]},
}
LON_WORDS = {
    "train": {"ahead": ["ahead", "ahead of us", "up ahead", "further up the road", "down the road", "forward of us",
                        "straight ahead", "in our path", "ahead of the car", "further along the road", "forward",
                        "leading us", "preceding us", "where we are driving"],
              "behind": ["behind us", "behind", "at our back", "following us", "back there", "in back of us",
                         "trailing us", "behind the car", "in our wake", "back behind us", "following behind",
                         "at the back", "in the mirror"]},
    "heldout": {"ahead": ["in front of us"], "behind": ["to our rear"]},
    "dev": {"ahead": ["before us on the road"], "behind": ["at our tail"]},
}
LAT_WORDS = {
    "train": {"left": ["on the left", "on the left side", "left of us", "on our left", "on the left-hand side",
                      "off on the left", "along the left", "on our left side", "at the left"],
              "right": ["on the right", "on the right side", "right of us", "on our right", "on the right-hand side",
                       "off on the right", "along the right", "on our right side", "at the right"]},
    "heldout": {"left": ["to our left"], "right": ["to our right"]},
    "dev": {"left": ["leftward"], "right": ["rightward"]},
}
BOTH_LAT_WORDS = {"heldout": {"left": "to the left", "right": "to the right"}}
MEASURE_WORDS = {
    "train": {"within": ["within {} m", "within {} meters", "less than {} m away", "at most {} m away",
                         "nearer than {} m", "no more than {} meters away", "under {} m away", "inside {} meters",
                         "up to {} m away", "within a distance of {} m", "less than {} meters from us"],
              "beyond": ["more than {} m away", "over {} m away", "beyond {} m", "further than {} m",
                         "at least {} meters away", "outside {} meters", "more distant than {} m",
                         "further away than {} m", "at a distance over {} m", "more than {} meters from us"],
              "faster": ["faster than {} m/s", "with a speed above {} m/s", "at more than {} m/s",
                         "quicker than {} m/s", "exceeding {} m/s", "above {} m/s",
                         "at over {} m/s", "with speed over {} m/s", "at a speed greater than {} m/s"],
              "approaching": ["approaching us", "approaching", "getting nearer", "nearing us", "closing in on us",
                              "driving toward us", "nearing", "advancing on us", "getting nearer to us",
                              "converging on us"],
              "away": ["moving away from us", "receding", "getting more distant", "driving away", "pulling away",
                       "leaving us", "departing", "moving off", "driving off", "receding from us"]},
    "heldout": {"within": ["closer than {} meters"], "beyond": ["farther than {} meters"],
                "faster": ["going above {} meters per second"], "approaching": ["coming towards us"],
                "away": ["heading away from us"]},
    "dev": {"within": ["inside a radius of {} metres"], "beyond": ["past {} metres out"],
            "faster": ["at a pace above {} metres a sec"], "approaching": ["drawing near"],
            "away": ["retreating from us"]},
}
# the words that carry the held-out paraphrases: no training phrasing uses them (tests/test_language.py), so
# the held-out score measures how far the frozen text encoder carries the head to words it never trained on
HELDOUT_ONLY = frozenset("""automobiles lorries coaches semi machines crash motorbikes bikes persons foot things
    motor motion halt come move still across street front rear closer farther going per second coming towards
    heading""".split())
# the development paraphrases' own words: in neither of the other styles (tests/test_language.py)
DEV_ONLY = frozenset("""motorcars rigs minibuses caravans earthmovers jersey choppers pushbikes bystanders
    delineators motorised bikers entities go brought stop sitting kerb ambling remaining place traversing
    carriageway before tail leftward rightward radius metres past out pace sec drawing near retreating""".split())
PREFIXES = {"train": ["", "", "", "the ", "all ", "show me the ", "find ", "where are the ", "look for ",
                      "highlight the ", "are there any ", "mark the ", "detect "], "heldout": [""], "dev": [""]}
STYLES = ("train", "heldout", "dev")


def style_order(style: str) -> tuple[bool, str]:
    """Sort key for reports: the training phrasing first, then the other styles by name."""
    return style != "train", style


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
        lat = BOTH_LAT_WORDS[style][spec.lat] if style in BOTH_LAT_WORDS else pick(LAT_WORDS[style][spec.lat])
        words.append(f"{pick(LON_WORDS[style][spec.lon])} {lat}")
    elif spec.lon:
        words.append(pick(LON_WORDS[style][spec.lon]))
    elif spec.lat:
        words.append(pick(LAT_WORDS[style][spec.lat]))
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
