"""Pictures people would rather look at than read: a bird's-eye view and a 6-camera mosaic with boxes.

Everything draws from typed structures (SensorFrame, Boxes3D, Detections), in the ego frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from perception.geometry import box_edges_in_front, invert_transform
from perception.types import CAMERAS, DETECTION_CLASSES, Boxes3D, SensorFrame

# One colour per detection class (RGB), shared by every picture.
CLASS_COLORS = {
    "car": (230, 60, 60), "truck": (60, 110, 230), "construction_vehicle": (235, 200, 40), "bus": (40, 180, 80),
    "trailer": (150, 80, 200), "barrier": (150, 230, 60), "motorcycle": (60, 190, 230), "bicycle": (230, 80, 190),
    "pedestrian": (40, 220, 200), "traffic_cone": (245, 140, 30),
}
# Box edges as corner index pairs (corner order of perception.geometry.box_corners).


def _bgr(rgb):
    return (int(rgb[2]), int(rgb[1]), int(rgb[0]))


# One colour per prompt (RGB) for grounded objects: rings around the object and the prompt in the legend.
PROMPT_COLORS = [(255, 255, 0), (255, 0, 255), (0, 255, 255), (255, 255, 255)]


def bev_image(frame: SensorFrame, boxes: Boxes3D | None = None, range_m: float = 50.0, px_per_m: float = 10.0,
              title: str = "", gt: Boxes3D | None = None, grounded=(), trails=None, heat=None) -> np.ndarray:
    """(H, W, 3) RGB bird's-eye view, ego at the centre, x (forward) up. Lidar points shaded by height,
    radar points as orange dots with their compensated velocity, boxes with a heading tick.

    ``gt``: ground-truth boxes drawn as thin grey footprints under ``boxes`` (e.g. detections).
    ``grounded``: [(prompt, indices into ``boxes``)]: those objects get a ring in the prompt's colour
    (PROMPT_COLORS, in order) and the prompts are listed at the top.
    ``trails``: {track id: (class index, (K, 2) past centres in this ego frame, oldest first)}: a line in the
    class colour behind each tracked object and its "#id" at the newest point.
    ``heat``: None, or an (H, W) map in [0, 1] over the square of side 2 ``range_m`` about the ego, rows along y
    and columns along x (the BEV grids' layout), drawn as the background in a colour map instead of the points.
    """
    size = int(2 * range_m * px_per_m)
    img = np.full((size, size, 3), 18, np.uint8)
    if heat is not None:  # grid rows y, columns x -> image rows -x (forward up), columns -y (left on the left)
        h = np.clip(np.asarray(heat, np.float32), 0, 1).T[::-1, ::-1]
        h = cv2.resize(np.ascontiguousarray(h), (size, size), interpolation=cv2.INTER_NEAREST)
        img = cv2.applyColorMap((255 * h).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1].copy()

    def to_px(xy):
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        return np.stack([size / 2 - xy[:, 1] * px_per_m, size / 2 - xy[:, 0] * px_per_m], axis=1)

    for r in range(10, int(range_m) + 1, 10):
        cv2.circle(img, (size // 2, size // 2), int(r * px_per_m), (45, 45, 45), 1, cv2.LINE_AA)
    if heat is None and frame.lidar is not None and len(frame.lidar):  # no points over a heat map
        p = to_px(frame.lidar.xyz[:, :2])
        ok = (p[:, 0] >= 0) & (p[:, 0] < size) & (p[:, 1] >= 0) & (p[:, 1] < size)
        z = np.clip((frame.lidar.xyz[ok, 2] + 0.5) / 4.0, 0, 1)
        shade = (90 + 165 * z).astype(np.uint8)
        img[p[ok, 1].astype(int), p[ok, 0].astype(int)] = shade[:, None]
    if heat is None and frame.radar is not None and len(frame.radar):
        p = to_px(frame.radar.xyz[:, :2])
        v = np.stack([frame.radar.features.get("vx_comp", np.zeros(len(p))),
                      frame.radar.features.get("vy_comp", np.zeros(len(p)))], axis=1)
        q = to_px(frame.radar.xyz[:, :2] + v * 0.5)
        for a, b in zip(p.astype(int), q.astype(int)):
            cv2.line(img, tuple(a), tuple(b), (255, 160, 40), 1, cv2.LINE_AA)
            cv2.circle(img, tuple(a), 2, (255, 160, 40), -1, cv2.LINE_AA)
    if gt is not None and len(gt):
        for poly in to_px(gt.corners()[:, [0, 1, 5, 4], :2].reshape(-1, 2)).reshape(-1, 4, 2):
            cv2.polylines(img, [poly.round().astype(np.int32)], True, (150, 150, 150), 1, cv2.LINE_AA)
    for j, (_prompt, idx) in enumerate(grounded):
        color = PROMPT_COLORS[j % len(PROMPT_COLORS)]
        for k in np.asarray(idx, int):
            r = 0.5 * float(np.hypot(*boxes.size_lwh[k, :2])) + 1.2
            cv2.circle(img, tuple(to_px(boxes.center[k, :2])[0].round().astype(int)), int(r * px_per_m),
                       color, 3 - min(j, 1), cv2.LINE_AA)
    for tid, (label, pts) in (trails or {}).items():
        color = _bgr(CLASS_COLORS[DETECTION_CLASSES[label]])[::-1]
        px = to_px(pts).round().astype(np.int32)
        if len(px) > 1:
            cv2.polylines(img, [px], False, color, 1, cv2.LINE_AA)
        for q in px[:-1]:
            cv2.circle(img, tuple(q), 2, color, -1, cv2.LINE_AA)
        cv2.putText(img, f"#{tid}", tuple(px[-1] + [8, -8]), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (235, 235, 235), 1,
                    cv2.LINE_AA)
    if boxes is not None and len(boxes):
        corners = boxes.corners()[:, [0, 1, 5, 4], :2]  # bottom-up footprint: front-left, front-right, ...
        for k in range(len(boxes)):
            color = CLASS_COLORS[DETECTION_CLASSES[boxes.labels[k]]]
            poly = to_px(corners[k]).round().astype(np.int32)
            cv2.polylines(img, [poly], True, _bgr(color)[::-1], 2, cv2.LINE_AA)
            c = boxes.center[k, :2]
            h = c + 0.5 * boxes.size_lwh[k, 0] * np.array([np.cos(boxes.yaw[k]), np.sin(boxes.yaw[k])])
            a, b = to_px(c)[0].round().astype(int), to_px(h)[0].round().astype(int)
            cv2.line(img, tuple(a), tuple(b), _bgr(color)[::-1], 2, cv2.LINE_AA)
    # ego
    ego = np.array([[4.0, 0.95], [4.0, -0.95], [-1.0, -0.95], [-1.0, 0.95]]) - [0.0, 0.0]
    cv2.fillPoly(img, [to_px(ego).round().astype(np.int32)], (240, 240, 240))
    if title:
        cv2.putText(img, title, (12, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (235, 235, 235), 2, cv2.LINE_AA)
    for j, (prompt, idx) in enumerate(grounded):
        y = 60 + 26 * j
        color = PROMPT_COLORS[j % len(PROMPT_COLORS)]
        cv2.circle(img, (22, y - 6), 8, color, 2, cv2.LINE_AA)
        cv2.putText(img, f'"{prompt}": {len(idx)}', (38, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, color, 1, cv2.LINE_AA)
    _legend(img, boxes if boxes is not None and len(boxes) else gt)
    return img


def _legend(img, boxes) -> None:
    if boxes is None or not len(boxes):
        return
    present = sorted(set(boxes.labels.tolist()))
    y = img.shape[0] - 12 - 22 * len(present)
    for lab in present:
        name = DETECTION_CLASSES[lab]
        cv2.rectangle(img, (12, y - 12), (28, y + 4), _bgr(CLASS_COLORS[name])[::-1], -1)
        cv2.putText(img, name, (36, y + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (225, 225, 225), 1, cv2.LINE_AA)
        y += 22


def draw_boxes_on_camera(image: np.ndarray, K: np.ndarray, T_ego_cam: np.ndarray, boxes: Boxes3D,
                         thickness: int = 2, near: float = 0.2) -> np.ndarray:
    """Project 3D box edges (ego frame) into one RGB image; edges are clipped at the near plane."""
    if boxes is None or not len(boxes):
        return image.copy()
    T_cam_ego = invert_transform(T_ego_cam)
    return draw_boxes_projected(image, np.asarray(K, np.float64) @ T_cam_ego[:3], boxes, thickness, near)


def draw_boxes_projected(image: np.ndarray, ego2img: np.ndarray, boxes: Boxes3D, thickness: int = 2,
                         near: float = 0.2) -> np.ndarray:
    """``draw_boxes_on_camera`` with a (3 or 4, 4) ego -> pixel matrix (rows u z, v z, z: a calibration after an
    image augmentation, as training sees it)."""
    out = image.copy()
    if boxes is None or not len(boxes):
        return out
    P = np.asarray(ego2img, np.float64)[:3]
    corners = boxes.corners().reshape(-1, 3) @ P[:, :3].T + P[:, 3]
    ends = box_edges_in_front(corners.reshape(-1, 8, 3), near)  # (K, 12, 2, 3) in (u z, v z, z); NaN: behind
    with np.errstate(invalid="ignore", divide="ignore"):
        uv = ends[..., :2] / ends[..., 2:]
    for k in range(len(boxes)):
        color = CLASS_COLORS[DETECTION_CLASSES[boxes.labels[k]]]
        for pa, pb in uv[k]:
            if np.all(np.isfinite([*pa, *pb])) and max(abs(pa).max(), abs(pb).max()) < 1e5:
                cv2.line(out, (int(pa[0]), int(pa[1])), (int(pb[0]), int(pb[1])), color, thickness, cv2.LINE_AA)
    return out


def camera_mosaic(frame: SensorFrame, boxes: Boxes3D | None = None, width: int = 1800) -> np.ndarray:
    """2x3 RGB mosaic (front row: FRONT_LEFT, FRONT, FRONT_RIGHT; back row: BACK_LEFT, BACK, BACK_RIGHT)."""
    order = ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"]
    assert set(order) == set(CAMERAS)
    tile_w = width // 3
    tiles = []
    for ch in order:
        view = frame.cameras.get(ch)
        if view is None:
            tile = np.full((tile_w * 9 // 16, tile_w, 3), 30, np.uint8)
            cv2.putText(tile, f"{ch}: missing", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (200, 80, 80), 2)
        else:
            img = draw_boxes_on_camera(view.image, view.intrinsics, view.T_ego_cam, boxes,
                                       thickness=max(1, view.image.shape[1] // 500))
            tile = cv2.resize(img, (tile_w, tile_w * img.shape[0] // img.shape[1]), interpolation=cv2.INTER_AREA)
            cv2.putText(tile, ch, (10, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
        tiles.append(tile)
    h = min(t.shape[0] for t in tiles)
    tiles = [t[:h] for t in tiles]
    return np.vstack([np.hstack(tiles[:3]), np.hstack(tiles[3:])])


def depth_panel(image: np.ndarray, pred: np.ndarray, lidar: np.ndarray, dmax: float = 60.0, width: int = 800,
                title: str = "") -> np.ndarray:
    """One camera, three rows at ``width``: the image, the predicted depth per feature pixel, and the lidar
    depth of the pixels a lidar point lands in (black where none does); near is warm, far is cool (turbo)."""
    h = width * image.shape[0] // image.shape[1]

    def colour(d):
        x = np.clip(np.nan_to_num(d, posinf=dmax) / dmax, 0, 1)
        rgb = cv2.cvtColor(cv2.applyColorMap((255 * (1 - x)).astype(np.uint8), cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
        return cv2.resize(rgb, (width, h), interpolation=cv2.INTER_NEAREST)

    have = np.isfinite(lidar)
    lid = colour(lidar)
    lid[~cv2.resize(have.astype(np.uint8), (width, h), interpolation=cv2.INTER_NEAREST).astype(bool)] = 0
    rows = [cv2.resize(image, (width, h), interpolation=cv2.INTER_AREA), colour(pred), lid]
    labels = [title or "camera", "predicted depth (camera head)", "lidar depth (reference sweep, projected)"]
    for r, t in zip(rows, labels):
        cv2.putText(r, t, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    bar_rgb = cv2.resize(colour(np.linspace(0, dmax, width)[None]), (width, 18), interpolation=cv2.INTER_NEAREST)
    for m in range(0, int(dmax) + 1, 10):
        x = int(m / dmax * (width - 1))
        cv2.putText(bar_rgb, f"{m} m", (min(x + 2, width - 40), 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return np.vstack(rows + [bar_rgb])


def save_rgb(path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
