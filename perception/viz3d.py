"""Open3D offscreen render of one frame: lidar coloured by height, radar, detections and ground truth as boxes.

Uses Open3D's legacy Visualizer with an invisible window (Mesa EGL offscreen rendering where no display
exists). Open3D needs the Debian package libusb-1.0-0.
"""

from __future__ import annotations

import numpy as np

from perception.geometry import BOX_EDGES
from perception.types import DETECTION_CLASSES, Boxes3D, SensorFrame
from perception.viz import CLASS_COLORS


def _boxes_lineset(o3d, boxes: Boxes3D, colors):
    corners = boxes.corners().reshape(-1, 3)
    lines = np.array([[8 * k + i, 8 * k + j] for k in range(len(boxes)) for i, j in BOX_EDGES])
    ls = o3d.geometry.LineSet(o3d.utility.Vector3dVector(corners), o3d.utility.Vector2iVector(lines))
    ls.colors = o3d.utility.Vector3dVector(np.repeat(np.asarray(colors, np.float64), len(BOX_EDGES), axis=0))
    return ls


def render_frame(path, frame: SensorFrame, boxes: Boxes3D | None = None, gt: Boxes3D | None = None,
                 highlight=None, width: int = 1600, height: int = 900, range_m: float = 45.0) -> None:
    """Write a PNG seen from behind and above the ego vehicle. ``highlight``: indices of ``boxes`` drawn in
    yellow (e.g. grounded objects); other boxes in their class colour, ground truth in grey."""
    import open3d as o3d

    geoms = []
    if frame.lidar is not None and len(frame.lidar):
        xyz = frame.lidar.xyz.astype(np.float64)
        keep = (np.abs(xyz[:, 0]) < range_m) & (np.abs(xyz[:, 1]) < range_m)
        xyz = xyz[keep]
        z = np.clip((xyz[:, 2] + 1.5) / 5.0, 0, 1)
        col = np.stack([0.25 + 0.5 * z, 0.45 + 0.45 * z, 0.95 - 0.4 * z], 1)
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz))
        pc.colors = o3d.utility.Vector3dVector(col)
        geoms.append(pc)
    if frame.radar is not None and len(frame.radar):
        rc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(frame.radar.xyz.astype(np.float64)))
        rc.paint_uniform_color([1.0, 0.55, 0.1])
        geoms.append(rc)
    if gt is not None and len(gt):
        geoms.append(_boxes_lineset(o3d, gt, [[0.6, 0.6, 0.6]] * len(gt)))
    if boxes is not None and len(boxes):
        hl = set(np.asarray(highlight if highlight is not None else [], int).tolist())
        cols = [[1.0, 1.0, 0.0] if k in hl else np.array(CLASS_COLORS[DETECTION_CLASSES[c]]) / 255.0
                for k, c in enumerate(boxes.labels)]
        geoms.append(_boxes_lineset(o3d, boxes, cols))
    ego = o3d.geometry.TriangleMesh.create_box(4.8, 1.9, 1.6)
    ego.translate([-1.0, -0.95, 0.0])
    ego.paint_uniform_color([0.9, 0.9, 0.9])
    ego.compute_vertex_normals()
    geoms.append(ego)

    vis = o3d.visualization.Visualizer()
    if not vis.create_window(visible=False, width=width, height=height):
        raise RuntimeError("Open3D could not open an offscreen window (is libusb-1.0-0 / Mesa EGL installed?)")
    try:
        for g in geoms:
            vis.add_geometry(g)
        opt = vis.get_render_option()
        opt.background_color = np.array([0.07, 0.07, 0.09])
        opt.point_size = 1.5
        opt.line_width = 2.0
        ctr = vis.get_view_control()
        ctr.set_lookat([14.0, 0.0, 0.0])
        ctr.set_front([-0.88, 0.0, 0.48])
        ctr.set_up([0.48, 0.0, 0.88])
        ctr.set_zoom(0.16)
        for g in geoms:
            vis.update_geometry(g)
        vis.poll_events()
        vis.update_renderer()
        img = np.asarray(vis.capture_screen_float_buffer(do_render=True))
    finally:
        vis.destroy_window()
    if img.size == 0 or not np.isfinite(img).all():
        raise RuntimeError("Open3D returned an empty image")
    import cv2

    rgb = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
