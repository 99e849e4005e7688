"""Writing the synthetic world as an exact nuScenes dataroot (tables, samples, sweeps, maps)."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from perception.geometry import (
    matrix_to_quat,
    points_in_boxes,
    transform_points,
    yaw_to_quat,
)
from perception.sources.files import write_lidar_bin, write_radar_pcd
from perception.sources.synthetic.sensors import (
    CAMERA_OFFSET_S,
    LIDAR_PERIOD,
    RADAR_PERIOD,
    RADAR_RIG,
    calib_camera,
    calib_lidar,
    calib_radar,
    get_scene,
    intrinsics,
    render_view,
    simulate_lidar,
    simulate_radar,
)
from perception.sources.synthetic.world import (
    ALL_CATEGORIES,
    ATTRIBUTE_DESCRIPTIONS,
    CLASS_NAMES,
    CLASS_SPECS,
    SAMPLE_PERIOD,
    VISIBILITY,
    Scene,
    build_scene,
    scene_names,
    token,
)
from perception.types.frame import CAMERAS, LIDAR, RADARS


@dataclass(frozen=True)
class WorldConfig:
    scenes: int = 10
    samples: int = 40
    seed: int = 0
    image_scale: float = 1.0
    jpeg_quality: int = 90
    lidar_sweeps_per_sample: int = 10  # 20 Hz lidar between 2 Hz keyframes

    def __post_init__(self):
        if self.scenes < 1 or self.samples < 2:
            raise ValueError("WorldConfig: need at least 1 scene and 2 samples per scene")
        if not (0.05 <= self.image_scale <= 1.0):
            raise ValueError("WorldConfig.image_scale: must be in [0.05, 1.0]")


def _t0_us(cfg: WorldConfig, index: int) -> int:
    return 1533151603547590 + cfg.seed * 7_000_000_000 + index * 1_000_000_000


def _logname(cfg: WorldConfig, index: int) -> str:
    return f"n015-2018-08-{1 + index % 28:02d}-{10 + cfg.seed % 10:02d}-00-00+0800"


def _filename(kind: str, ch: str, logname: str, ts: int, ext: str) -> str:
    return f"{kind}/{ch}/{logname}__{ch}__{ts}.{ext}"


def _radar_times(k: int) -> list[tuple[str, list[int]]]:
    """Per radar: its sweep indices j belonging to sample k (times phase + j*P in (t_k - 0.5 + P/2, t_k + P/2])."""
    out = []
    lo, hi = (k - 1) * SAMPLE_PERIOD + RADAR_PERIOD / 2, k * SAMPLE_PERIOD + RADAR_PERIOD / 2
    for ch in RADARS:
        ph = RADAR_RIG[ch][2]
        j0, j1 = math.floor((lo - ph) / RADAR_PERIOD) + 1, math.floor((hi - ph) / RADAR_PERIOD)
        out.append((ch, [j for j in range(j0, j1 + 1) if lo < ph + j * RADAR_PERIOD <= hi]))
    return out


def _sample_job(args):
    """Generate all sensor files of one keyframe interval of one scene. Returns their records and counts."""
    cfg, root, index, name, k = args
    scene = get_scene(cfg.seed, index, cfg.samples, name)
    log = _logname(cfg, index)
    t0 = _t0_us(cfg, index)
    n_obj = len(scene.cls)
    rec = {"k": k, "lidar": [], "radar": {}, "camera": {}}
    # lidar: the keyframe and the sweeps since the previous one (before the first keyframe: a pre-roll)
    key_pts = None
    for j in range(cfg.lidar_sweeps_per_sample - 1, -1, -1):
        t = k * SAMPLE_PERIOD - j * LIDAR_PERIOD
        ts = t0 + round(t * 1e6)
        rng = np.random.default_rng([cfg.seed, index, 1, k, j])
        pts, T_gl = simulate_lidar(scene, t, rng)
        fn = _filename("samples" if j == 0 else "sweeps", LIDAR, log, ts, "pcd.bin")
        write_lidar_bin(os.path.join(root, fn), pts)
        rec["lidar"].append((t, ts, fn, j == 0))
        if j == 0:
            key_pts = transform_points(T_gl, pts[:, :3].astype(np.float64))
    boxes_k, _ = scene.boxes(k * SAMPLE_PERIOD)
    rec["num_lidar"] = points_in_boxes(key_pts, boxes_k).sum(axis=1)
    # radars: keyframe = the sweep nearest the sample time
    num_radar = np.zeros(n_obj, np.int64)
    for ch, js in _radar_times(k):
        rows = []
        tk = k * SAMPLE_PERIOD
        times = [RADAR_RIG[ch][2] + j * RADAR_PERIOD for j in js]
        key_j = js[int(np.argmin([abs(t - tk) for t in times]))] if js else None
        for j, t in zip(js, times):
            ts = t0 + round(t * 1e6)
            rng = np.random.default_rng([cfg.seed, index, 2, RADARS.index(ch), j + 1000])
            pts = simulate_radar(scene, ch, t, rng)
            is_key = j == key_j
            fn = _filename("samples" if is_key else "sweeps", ch, log, ts, "pcd")
            write_radar_pcd(os.path.join(root, fn), pts)
            rows.append((t, ts, fn, is_key))
            if is_key and len(pts):
                T_gr = scene.ego_pose(t) @ calib_radar(ch)
                pw = transform_points(T_gr, np.stack([pts["x"], pts["y"], pts["z"]], axis=1).astype(np.float64))
                num_radar += points_in_boxes(pw, boxes_k).sum(axis=1)
        rec["radar"][ch] = rows
    rec["num_radar"] = num_radar
    # cameras at the keyframe (exposure offset per camera, like the real rig)
    vis = np.zeros(n_obj, np.int64)
    sil = np.zeros(n_obj, np.int64)
    for ch in CAMERAS:
        t = k * SAMPLE_PERIOD + CAMERA_OFFSET_S[ch]
        ts = t0 + round(t * 1e6)
        img, v, s_ = render_view(scene, ch, t, cfg.image_scale,
                                 np.random.default_rng([cfg.seed, index, 3, k, CAMERAS.index(ch)]))
        vis += v
        sil += s_
        fn = _filename("samples", ch, log, ts, "jpg")
        ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {fn}")
        with open(os.path.join(root, fn), "wb") as f:
            f.write(buf.tobytes())
        rec["camera"][ch] = (t, ts, fn, img.shape[0], img.shape[1])
    rec["visible"], rec["silhouette"] = vis, sil
    return index, rec


def _write_map(root: str, scene: Scene, fn: str) -> None:
    from PIL import Image

    # the drivable surface (roads and the parking lot); the map image has y up, the texture y down
    mask = np.ascontiguousarray(scene.texture["drivable"][::-1]).astype(np.uint8) * 255
    Image.fromarray(mask).save(os.path.join(root, fn), optimize=False)


def _tables(cfg: WorldConfig, names: list[str], results: dict[int, list[dict]]) -> dict[str, list]:
    tb: dict[str, list] = {k: [] for k in ("category", "attribute", "visibility", "instance", "sensor",
                                            "calibrated_sensor", "ego_pose", "log", "scene", "sample",
                                            "sample_data", "sample_annotation", "map")}
    seed = cfg.seed
    cat_tok = {n: token(seed, "category", n) for n, _ in ALL_CATEGORIES}
    for i, (n, desc) in enumerate(ALL_CATEGORIES):
        tb["category"].append({"token": cat_tok[n], "name": n, "description": desc, "index": i + 1})
    att_tok = {n: token(seed, "attribute", n) for n in ATTRIBUTE_DESCRIPTIONS}
    for n, desc in ATTRIBUTE_DESCRIPTIONS.items():
        tb["attribute"].append({"token": att_tok[n], "name": n, "description": desc})
    for tk, level, desc in VISIBILITY:
        tb["visibility"].append({"token": tk, "level": level, "description": desc})
    channels = [(LIDAR, "lidar")] + [(c, "camera") for c in CAMERAS] + [(r, "radar") for r in RADARS]
    sensor_tok = {c: token(seed, "sensor", c) for c, _ in channels}
    for c, mod in channels:
        tb["sensor"].append({"token": sensor_tok[c], "channel": c, "modality": mod})

    for index, name in enumerate(names):
        scene = get_scene(seed, index, cfg.samples, name)
        recs = sorted(results[index], key=lambda r: r["k"])
        log_tok = token(seed, name, "log")
        map_tok = token(seed, name, "map")
        tb["log"].append({"token": log_tok, "logfile": _logname(cfg, index), "vehicle": "n015",
                          "date_captured": _logname(cfg, index)[5:15], "location": f"synthetic-{name}"})
        tb["map"].append({"category": "semantic_prior", "token": map_tok, "filename": f"maps/{map_tok}.png",
                          "log_tokens": [log_tok]})
        cs_tok = {}
        for c, mod in channels:
            cs_tok[c] = token(seed, name, "calib", c)
            if mod == "camera":
                T, K = calib_camera(c), intrinsics(c, cfg.image_scale).tolist()
            elif mod == "lidar":
                T, K = calib_lidar(), []
            else:
                T, K = calib_radar(c), []
            tb["calibrated_sensor"].append({"token": cs_tok[c], "sensor_token": sensor_tok[c],
                                            "translation": T[:3, 3].tolist(),
                                            "rotation": matrix_to_quat(T[:3, :3]).tolist(),
                                            "camera_intrinsic": K})
        sample_tok = [token(seed, name, "sample", k) for k in range(cfg.samples)]
        t0 = _t0_us(cfg, index)
        for k in range(cfg.samples):
            tb["sample"].append({"token": sample_tok[k], "timestamp": t0 + k * 500_000,
                                 "prev": sample_tok[k - 1] if k else "",
                                 "next": sample_tok[k + 1] if k + 1 < cfg.samples else "",
                                 "scene_token": token(seed, name, "scene")})
        tb["scene"].append({"token": token(seed, name, "scene"), "log_token": log_tok,
                            "nbr_samples": cfg.samples, "first_sample_token": sample_tok[0],
                            "last_sample_token": sample_tok[-1], "name": name,
                            "description": scene.description})
        # sample_data chains per channel
        per_ch: dict[str, list] = {c: [] for c, _ in channels}
        for r in recs:
            for t, ts, fn, key in r["lidar"]:
                per_ch[LIDAR].append((t, ts, fn, key, r["k"], 0, 0))
            for ch, rows in r["radar"].items():
                for t, ts, fn, key in rows:
                    per_ch[ch].append((t, ts, fn, key, r["k"], 0, 0))
            for ch, (t, ts, fn, h, w) in r["camera"].items():
                per_ch[ch].append((t, ts, fn, True, r["k"], h, w))
        for c, _mod in channels:
            rows = sorted(per_ch[c], key=lambda x: x[1])
            toks = [token(seed, name, "sd", c, ts) for _, ts, *_ in rows]
            for i, (t, ts, fn, key, k, h, w) in enumerate(rows):
                pose = scene.ego_pose(t)
                tb["ego_pose"].append({"token": toks[i], "timestamp": ts, "rotation":
                                       matrix_to_quat(pose[:3, :3]).tolist(), "translation": pose[:3, 3].tolist()})
                tb["sample_data"].append({
                    "token": toks[i], "sample_token": sample_tok[k], "ego_pose_token": toks[i],
                    "calibrated_sensor_token": cs_tok[c], "timestamp": ts,
                    "fileformat": fn.rsplit(".", 1)[-1] if not fn.endswith(".pcd.bin") else "pcd",
                    "is_key_frame": bool(key), "height": h, "width": w, "filename": fn,
                    "prev": toks[i - 1] if i else "", "next": toks[i + 1] if i + 1 < len(rows) else ""})
        # annotations: objects within 80 m with at least one lidar or radar point (nuScenes' rule)
        inst_anns: dict[int, list[str]] = {}
        anns = []
        for r in recs:
            k = r["k"]
            t = k * SAMPLE_PERIOD
            boxes, _ = scene.boxes(t)
            attrs = scene.attributes(t)
            ego_xy = scene.ego_pose(t)[:2, 3]
            dist = np.hypot(boxes[:, 0] - ego_xy[0], boxes[:, 1] - ego_xy[1])
            for i in np.flatnonzero((dist < 80.0) & (r["num_lidar"] + r["num_radar"] > 0)):
                ratio = r["visible"][i] / r["silhouette"][i] if r["silhouette"][i] else 0.0
                vis = "1" if ratio < 0.4 else "2" if ratio < 0.6 else "3" if ratio < 0.8 else "4"
                at = token(seed, name, "ann", i, k)
                inst_anns.setdefault(i, []).append(at)
                anns.append({"token": at, "sample_token": sample_tok[k],
                             "instance_token": token(seed, name, "instance", i), "visibility_token": vis,
                             "attribute_tokens": [att_tok[attrs[i]]] if attrs[i] else [],
                             "translation": boxes[i, :3].tolist(),
                             "size": [float(boxes[i, 4]), float(boxes[i, 3]), float(boxes[i, 5])],
                             "rotation": yaw_to_quat(boxes[i, 6]).tolist(),
                             "num_lidar_pts": int(r["num_lidar"][i]), "num_radar_pts": int(r["num_radar"][i]),
                             "_inst": int(i)})
        for a in anns:
            chain = inst_anns[a["_inst"]]
            j = chain.index(a["token"])
            a["prev"] = chain[j - 1] if j else ""
            a["next"] = chain[j + 1] if j + 1 < len(chain) else ""
            del a["_inst"]
        tb["sample_annotation"].extend(anns)
        for i in sorted(inst_anns):
            chain = inst_anns[i]
            tb["instance"].append({"token": token(seed, name, "instance", i),
                                   "category_token": cat_tok[CLASS_SPECS[CLASS_NAMES[scene.cls[i]]]["category"]],
                                   "nbr_annotations": len(chain), "first_annotation_token": chain[0],
                                   "last_annotation_token": chain[-1]})
    return tb


def _warm_up() -> None:
    """Compile the numba kernels once in the parent so forked workers inherit them."""
    s = build_scene(0, 0, 2, "warm-up")
    rng = np.random.default_rng(0)
    simulate_lidar(s, 0.0, rng)
    simulate_radar(s, RADARS[0], 0.0, rng)
    render_view(s, CAMERAS[0], 0.0, 0.05)


def generate(out, cfg: WorldConfig = WorldConfig(), workers: int | None = None, progress: bool = True,
             overwrite: bool = False) -> dict:
    """Write a complete nuScenes dataroot to ``out`` and return a summary.

    Written to a temporary sibling directory and renamed at the end, so an interrupted run never leaves
    something that looks complete.
    """
    from tqdm import tqdm

    out = Path(out)
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists (pass overwrite=True / --overwrite to replace it)")
    names, version = scene_names(cfg.scenes)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    for d in ("maps", version, *(f"samples/{c}" for c in (LIDAR, *RADARS, *CAMERAS)),
              *(f"sweeps/{c}" for c in (LIDAR, *RADARS))):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    jobs = [(cfg, str(tmp), i, n, k) for i, n in enumerate(names) for k in range(cfg.samples)]
    workers = workers or max(1, min(len(jobs), os.cpu_count() or 1))
    _warm_up()
    results: dict[int, list[dict]] = {i: [] for i in range(len(names))}
    bar = tqdm(total=len(jobs), desc="synthetic world", unit="sample", disable=not progress)
    if workers == 1:
        for j in jobs:
            i, r = _sample_job(j)
            results[i].append(r)
            bar.update()
    else:
        ctx = mp.get_context("fork")
        with ctx.Pool(workers) as pool:
            for i, r in pool.imap_unordered(_sample_job, jobs, chunksize=1):
                results[i].append(r)
                bar.update()
    bar.close()
    tables = _tables(cfg, names, results)
    for index, name in enumerate(names):
        scene = get_scene(cfg.seed, index, cfg.samples, name)
        _write_map(str(tmp), scene, tables["map"][index]["filename"])
    for tname, rows in tables.items():
        with open(tmp / version / f"{tname}.json", "w") as f:
            json.dump(rows, f, indent=0)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    counts = {n: len(r) for n, r in tables.items()}
    by_class: dict[str, int] = {}
    inst_cat = {i["token"]: i["category_token"] for i in tables["instance"]}
    cat_name = {c["token"]: c["name"] for c in tables["category"]}
    for a in tables["sample_annotation"]:
        n = cat_name[inst_cat[a["instance_token"]]]
        by_class[n] = by_class.get(n, 0) + 1
    return {"dataroot": str(out), "version": version, "scenes": names, "tables": counts,
            "annotations_by_category": dict(sorted(by_class.items()))}
