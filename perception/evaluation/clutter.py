"""False alarms on street furniture: confident detections where the synthetic world has a lamp, sign, pole,
tree, hydrant, bollard, bin, parking meter or bus shelter and no annotated object.

The symptom this measures is the one a detector trained on a world without clutter shows on real streets:
poles and tree trunks called pedestrians. nuScenes does not annotate street furniture, so DetectionEval counts
such a detection as one false positive among many; here the synthetic world's layout is rebuilt from its seed
(perception.sources.synthetic: the scene description names the seed, the scene's place in the split names its
index; nothing is stored beside the tables) and every confident detection is checked against the furniture
around it. A detection is a furniture false alarm when its centre is within ``radius`` metres of a piece of
furniture and farther than ``clear`` metres from every annotated box of the sample.

Reported per furniture kind: the furniture within ``max_range`` of the ego summed over keyframes (how often
each was in view), the confident detections on it, and those per 100 pieces in range, split by the class
the detector gave (pedestrian, traffic_cone, barrier, other).
"""

from __future__ import annotations

import re

import numpy as np

from perception.types import DETECTION_CLASSES

COLUMNS = ("pedestrian", "traffic_cone", "barrier", "other")
PEDESTRIAN = DETECTION_CLASSES.index("pedestrian")
PED_RANGE = 40.0  # DetectionEval's range for pedestrians (m)
RECALLS = (0.5, 0.7)


class NotSyntheticError(ValueError):
    """The dataroot is not a synthetic world this code can rebuild."""


def world_furniture(dataroot, version: str, scene_names_wanted=None) -> dict[str, dict]:
    """scene name -> {"kind": (K,) str, "xy": (K, 2) global metres} for the scenes of a synthetic world,
    rebuilt from its seed, with ``ego0``: where the rebuilt drive starts (from_submission checks it against the
    dataroot's poses). Raises NotSyntheticError for a dataroot whose scenes do not name a seed or whose rebuilt
    scene is not the one its tables describe (a world made by another version of the generator)."""
    import json
    from pathlib import Path

    from perception.sources.synthetic.world import build_scene, scene_names

    table = Path(dataroot) / version
    try:
        scenes = json.loads((table / "scene.json").read_text())
        samples = {s["token"]: s for s in json.loads((table / "sample.json").read_text())}
    except (OSError, ValueError) as e:
        raise NotSyntheticError(f"{table}: cannot read the scene tables ({e})") from e
    names, _ = scene_names(len(scenes))
    out = {}
    for sc in scenes:
        if scene_names_wanted is not None and sc["name"] not in scene_names_wanted:
            continue
        m = re.search(r"\(seed (\d+)\)\s*$", sc.get("description", ""))
        if m is None or sc["name"] not in names:
            raise NotSyntheticError(f"scene {sc['name']} of {dataroot} is not a synthetic world's scene "
                                    f"(description {sc.get('description')!r})")
        first = samples.get(sc["first_sample_token"])
        scene = build_scene(int(m.group(1)), names.index(sc["name"]), int(sc["nbr_samples"]), sc["name"])
        if scene.description != sc["description"] or first is None:
            raise NotSyntheticError(f"scene {sc['name']}: the rebuilt scene ({scene.description!r}) is not the "
                                    f"dataroot's ({sc['description']!r}); made by another generator version?")
        out[sc["name"]] = dict(scene.statics["furniture"], ego0=scene.ego_pose(0.0)[:2, 3])
    return out


def furniture_false_alarms(frames, furniture: dict, min_score: float = 0.3, radius: float = 1.0,
                           clear: float = 2.0, max_range: float = 50.0) -> dict:
    """``frames``: [(scene name, T_global_ego (4, 4), detections [(class name, score, (x, y) global)],
    ground-truth centres (G, 2) global, the annotated pedestrians' centres (P, 2) global)]. Returns
    {kind: {"in_range": n, "alarms": {column: n}}} and "all"; with annotated pedestrians in range also
    "pedestrians" (their count) and "at_recall" ({recall: {"score", "alarms"}})."""
    kinds = sorted({str(k) for f in furniture.values() for k in f["kind"]})
    table = {k: {"in_range": 0, "alarms": dict.fromkeys(COLUMNS, 0)} for k in [*kinds, "all"]}
    ped_hits, ped_alarms, n_peds = [], [], 0  # scores of pedestrians found / furniture called pedestrian
    for scene, T, dets, gt_xy, peds in frames:
        f = furniture[scene]
        gt_xy = np.asarray(gt_xy, float).reshape(-1, 2)
        # the annotated pedestrians in range, each found by the best-scored pedestrian detection within radius
        peds = np.asarray(peds, float).reshape(-1, 2)
        peds = peds[np.linalg.norm(peds - T[:2, 3], axis=1) <= PED_RANGE]
        n_peds += len(peds)
        free = np.ones(len(peds), bool)
        for s, xy in sorted(((s, np.asarray(xy, float)) for c, s, xy in dets if c == "pedestrian"),
                            key=lambda d: -d[0]):
            d = np.where(free, np.linalg.norm(peds - xy, axis=1), np.inf) if len(peds) else np.zeros(0)
            if len(d) and d.min() <= radius:
                free[int(d.argmin())] = False
                ped_hits.append(s)
            elif len(f["kind"]) and np.linalg.norm(f["xy"] - xy, axis=1).min() <= radius and \
                    (not len(gt_xy) or np.linalg.norm(gt_xy - xy, axis=1).min() > clear):
                ped_alarms.append(s)
        if not len(f["kind"]):
            continue
        near = np.linalg.norm(f["xy"] - T[:2, 3], axis=1) <= max_range
        for k in f["kind"][near]:
            table[str(k)]["in_range"] += 1
            table["all"]["in_range"] += 1
        conf = [(c, np.asarray(xy, float)) for c, s, xy in dets if s >= min_score]
        if not conf:
            continue
        xy = np.stack([p for _, p in conf])
        free = np.ones(len(xy), bool) if not len(gt_xy) else \
            np.linalg.norm(xy[:, None] - gt_xy[None], axis=2).min(1) > clear
        d = np.linalg.norm(xy[:, None] - f["xy"][None], axis=2)
        for i in np.flatnonzero(free & (d.min(1) <= radius)):
            kind = str(f["kind"][int(d[i].argmin())])
            col = conf[i][0] if conf[i][0] in COLUMNS else "other"
            table[kind]["alarms"][col] += 1
            table["all"]["alarms"][col] += 1
    if n_peds:  # at the score where a given share of the pedestrians is found, independent of calibration
        hits, alarms = np.sort(ped_hits)[::-1], np.asarray(ped_alarms)
        table["at_recall"] = {}
        for r in RECALLS:
            k = int(np.ceil(r * n_peds))
            if k <= len(hits):
                t = float(hits[k - 1])
                table["at_recall"][r] = {"score": t, "alarms": int((alarms >= t).sum())}
        table["pedestrians"] = n_peds
    return table


def from_submission(results: dict, source, dataroot, version: str, **kw) -> dict:
    """furniture_false_alarms() of a detection submission's ``results`` over the keyframes of ``source``
    (a NuScenesSource of the synthetic world; its index gives poses and annotated boxes, no sensor data)."""
    index = source.index
    furniture = world_furniture(dataroot, version, {e["scene"] for e in index})
    frames, seen = [], set()
    for e in index:
        T = np.array(e["T_global_ego"])
        if e["scene"] not in seen:  # the rebuilt drive starts where the dataroot's does
            seen.add(e["scene"])
            off = float(np.linalg.norm(furniture[e["scene"]]["ego0"] - T[:2, 3]))
            if off > 1.0:
                raise NotSyntheticError(f"scene {e['scene']}: the rebuilt drive starts {off:.1f} m from the "
                                        "dataroot's; made by another generator version?")
        boxes = np.array([b[:2] for b in e["gt"]["boxes"]], float).reshape(-1, 2)
        gt_xy = boxes @ T[:2, :2].T + T[:2, 3]
        dets = [(r["detection_name"], r["detection_score"], r["translation"][:2]) for r in results.get(e["token"], [])]
        frames.append((e["scene"], T, dets, gt_xy, gt_xy[np.array(e["gt"]["labels"], int) == PEDESTRIAN]))
    return furniture_false_alarms(frames, furniture, **kw)


def format_table(table: dict) -> str:
    """The per-kind table, then the pedestrian alarms at fixed shares of the annotated pedestrians found."""
    lines = [f"{'furniture':10s} {'in range':>9s} " + " ".join(f"{c:>13s}" for c in COLUMNS)
             + f" {'per 100':>8s}"]
    for kind, row in table.items():
        if kind in ("at_recall", "pedestrians"):
            continue
        n = row["in_range"]
        total = sum(row["alarms"].values())
        lines.append(f"{kind:10s} {n:9d} " + " ".join(f"{row['alarms'][c]:13d}" for c in COLUMNS)
                     + f" {100 * total / max(n, 1):8.2f}")
    for r, v in table.get("at_recall", {}).items():
        lines.append(f"pedestrians at recall {r:.1f} (score >= {v['score']:.2f}, {table['pedestrians']} within "
                     f"{PED_RANGE:.0f} m): {v['alarms']} furniture pieces taken for pedestrians")
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m perception.evaluation.clutter SUBMISSION --data-root DIR --split S [--override-data k=v]``:
    the table for a saved detection submission (``promptfusion-test --furniture`` prints it after a run)."""
    import argparse
    import json
    from pathlib import Path

    from perception.config import data_section
    from perception.sources.nuscenes import NuScenesSource

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("submission")
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--override-data", default="")
    p.add_argument("--min-score", type=float, default=0.3)
    a = p.parse_args(argv)
    version = data_section({}, a.override_data)["version"]
    src = NuScenesSource(a.data_root, version=version, split=a.split, lidar_sweeps=0, radar_sweeps=1, cameras=())
    try:
        table = from_submission(json.loads(Path(a.submission).read_text())["results"], src, a.data_root, version,
                                min_score=a.min_score)
    except NotSyntheticError as e:
        p.error(str(e))
    print(format_table(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
