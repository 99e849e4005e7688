"""Look at what training sees: frames drawn as promptfusion-train draws them (ground-truth sampling, scene and
image augmentation, modality dropout), one picture each (mmdetection3d's browse_dataset, for this pipeline).

    promptfusion-browse configs/tiny.py --data-root data/synthetic30 \\
        --override-data version=v1.0-trainval,train_split=train --samples 4 --out work_dirs/browse

Each picture: the cameras as the network receives them (resized, augmented; the annotated boxes projected
with the augmented calibration, pasted ones framed in white) above the bird's-eye view of the points it gets
(lidar shaded by height, radar in orange; boxes in their class colours, pasted ones ringed) and a title with
the frame, what was dropped and what was pasted. A dropped sensor is missing from both. ``--database-frames``
builds the paste database from that many frames spread over the split instead of all of them (quicker to look,
fewer objects to draw from).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", default=None, help="default: the config's train split")
    p.add_argument("--override-data", default="", help="k=v,... over the config's data section")
    p.add_argument("--override-assembly", default="", help="k=v,... over the config's assembly section")
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--database-frames", type=int, default=None,
                   help="build the paste database from this many frames spread over the split (default: all)")
    p.add_argument("--out", default="work_dirs/browse")
    a = p.parse_args(argv)
    if a.samples < 1 or (a.database_frames is not None and a.database_frames < 1):
        p.error("--samples and --database-frames must be >= 1")

    from perception.cli.train import TRAIN_DEFAULTS
    from perception.config import check_section, data_section, load_config, parse_overrides
    from perception.pipeline import Preprocessor
    from perception.sources.assembly import Assembly
    from perception.sources.nuscenes import NuScenesSource
    from perception.training.data import training_set
    from perception.viz import save_rgb

    cfg = load_config(a.config)
    tc = check_section("train", cfg.get("train", {}), TRAIN_DEFAULTS)
    dc = data_section(cfg, a.override_data)
    pre = Preprocessor(cfg.get("preprocess", {}))
    asm = {**cfg.get("assembly", {}), **parse_overrides(a.override_assembly)}
    assembly = Assembly.from_section(asm, pre.to_dict())
    source = NuScenesSource(a.data_root, version=dc["version"], split=a.split or dc["train_split"],
                            **assembly.source_kwargs())
    ds = training_set(source, pre, tc, history=False, seed=a.seed)
    ds.gathered = True  # draws before voxelization, also for a config that does not augment
    if ds.paste is not None:
        every = None if a.database_frames is None else np.unique(
            np.linspace(0, len(ds) - 1, min(a.database_frames, len(ds))).round().astype(int))
        counts = ds.paste.build(ds, indices=every)
        print("object paste database: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    for j, i in enumerate(rng.choice(len(ds), min(a.samples, len(ds)), replace=False)):
        inputs, meta, drop, _ = ds.draw(int(i))
        path = out / f"sample_{j:02d}.jpg"
        save_rgb(path, training_picture(inputs, meta, drop, pre.spec))
        pasted = meta.get("pasted")
        print(f"{path}: frame {meta['token']}, {len(meta['gt'])} boxes"
              + (f" ({int(pasted.sum())} pasted, {int(meta['pasted_imaged'].sum())} with image patches)"
                 if pasted is not None else "")
              + (f", dropped {'+'.join(drop)}" if drop else "") + (", scene moved" if meta.get("scene_moved") else ""))
    return 0


def training_picture(inputs: dict, meta: dict, drop: list[str], spec: dict, width: int = 1500) -> np.ndarray:
    """(H, W, 3) RGB: the draw's cameras (2 x 3, CAM_FRONT in the middle of the top row when the rig has the
    nuScenes channels) over its bird's-eye view; see the module's docstring."""
    import cv2

    from perception.geometry import box_image_rects
    from perception.types import MODALITIES, PointCloud, SensorFrame
    from perception.viz import bev_image, draw_boxes_projected

    gt, pasted = meta["gt"], meta.get("pasted")
    pasted = np.zeros(len(gt), bool) if pasted is None else pasted
    finite = np.isfinite(gt.data[:, :7]).all(1)
    tile_w = width // 3
    tiles = []
    cam = inputs.get("camera")
    channels = list(spec["camera"]["channels"]) if "camera" in spec else []
    order = [channels.index(c) for c in ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT",
                                         "CAM_BACK", "CAM_BACK_RIGHT") if c in channels] or list(range(len(channels)))
    for n in order:
        H, W = spec["camera"]["size"]
        tile_h = tile_w * H // W
        if cam is None or not np.any(cam["ego2img"][n]):
            tile = np.full((tile_h, tile_w, 3), 30, np.uint8)
            cv2.putText(tile, f"{channels[n]}: {'dropped' if 'camera' in drop else 'no view'}", (10, 30),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.6, (200, 80, 80), 2)
            tiles.append(tile)
            continue
        P = cam["ego2img"][n].astype(np.float64)
        img = draw_boxes_projected(cam["images"][n], P, gt[np.flatnonzero(finite)], thickness=1)
        s = tile_w / W
        tile = cv2.resize(img, (tile_w, tile_h), interpolation=cv2.INTER_NEAREST)
        if pasted.any():
            rects = box_image_rects(gt.corners()[pasted & finite], P[None])[0][0]
            for r in rects[np.isfinite(rects).all(1)]:
                cv2.rectangle(tile, (int(r[0] * s), int(r[1] * s)), (int(r[2] * s), int(r[3] * s)), (255, 255, 255),
                              1, cv2.LINE_AA)
        cv2.putText(tile, channels[n], (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    while len(tiles) % 3:
        tiles.append(np.zeros_like(tiles[0]))
    mosaic = np.vstack([np.hstack(tiles[k:k + 3]) for k in range(0, len(tiles), 3)]) if tiles else None

    clouds = {}
    for m in ("lidar", "radar"):
        if m in inputs and inputs["present"][MODALITIES.index(m)]:
            cols = list(spec[m]["columns"])
            pts = inputs[m]["points"]
            clouds[m] = PointCloud(pts[:, [cols.index(c) for c in "xyz"]],
                                   {c: pts[:, k] for k, c in enumerate(cols) if c not in "xyz"})
    frame = SensorFrame(stamp_ns=0, T_global_ego=np.eye(4), lidar=clouds.get("lidar"), radar=clouds.get("radar"))
    rng = float(max(abs(v) for v in spec["lidar"]["pc_range"][:2]))
    title = (f"{meta['token'][:12]}  {len(gt)} boxes, {int(pasted.sum())} pasted"
             + (f", {int(meta['pasted_imaged'].sum())} with image patches" if "pasted_imaged" in meta else "")
             + (f"; dropped {'+'.join(drop)}" if drop else "") + ("; scene moved" if meta.get("scene_moved") else ""))
    kept = np.flatnonzero(finite)
    bev = bev_image(frame, gt[kept], range_m=rng, px_per_m=width / (2 * rng), title=title,
                    grounded=[("pasted", np.flatnonzero(pasted[kept]))] if pasted.any() else ())
    bev = cv2.resize(bev, (width, width * bev.shape[0] // bev.shape[1]), interpolation=cv2.INTER_AREA)
    if mosaic is None:
        return bev
    mosaic = cv2.resize(mosaic, (width, width * mosaic.shape[0] // mosaic.shape[1]), interpolation=cv2.INTER_NEAREST)
    return np.vstack([mosaic, bev])


if __name__ == "__main__":
    raise SystemExit(main())
