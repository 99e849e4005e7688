"""One scene from its seed: ``build`` lays out the place's streets, the ego's drive and the traffic around it,
the people, the construction zone and the static structures, keeps the objects that never overlap, and places
the scene in world coordinates with its ground texture and looks. The parts live in ``streets`` (places),
``objects`` (the object list and the overlap pass), ``traffic`` (the ego and every mover on the roads, parking),
``roadside`` (construction zone, people on and across the sidewalks), ``furniture`` (buildings, street
furniture, fences, kerbs) and ``ground`` (the ground texture)."""

from __future__ import annotations

import math

import numpy as np

from perception.sources.synthetic import shapes
from perception.sources.synthetic.furniture import static_structures
from perception.sources.synthetic.ground import ground_texture
from perception.sources.synthetic.objects import Objects, resolve_overlaps
from perception.sources.synthetic.roadside import construction_zone, crossing_people, sidewalk_people
from perception.sources.synthetic.streets import place_streets, road_polys
from perception.sources.synthetic.traffic import ego_drive, parking_lot, street_traffic, turning_traffic
from perception.sources.synthetic.world import CLASS_NAMES, DT, MAP_RES, SAMPLE_PERIOD, T_PRE, Scene


def build(seed: int, index: int, n_samples: int, name: str, place: str, night: bool, rain: bool,
          manoeuvre: str) -> Scene:
    """The scene ``index`` of a world with ``seed``: a pure function of its arguments (one generator, drawn
    from in a fixed order: streets, ego drive, traffic, people, statics, placement, shapes, ground, looks)."""
    rng = np.random.default_rng([seed, index, 7])
    T = (n_samples - 1) * SAMPLE_PERIOD
    tgrid = np.round(np.arange(-T_PRE, T + 0.3 + 1e-9, DT), 6)
    G = len(tgrid)
    streets, extra = place_streets(rng, place, T)
    main = streets[0]
    road, walk, lot = road_polys(streets, extra)
    O = Objects(rng, G)
    # ---- the ego's path and drive, its lane's leaders and followers ---------------------------------------
    drive = ego_drive(rng, O, place, manoeuvre, streets, extra, tgrid, T)
    ego_traj = drive.traj
    # ---- other lanes, bike lanes, kerbside parking; turning traffic; the parking lot -------------------
    span = (drive.s0 - 110.0, drive.s0 + drive.speed * T + 110.0)
    street_traffic(rng, O, streets, extra, tgrid, T, place, drive, span)
    if "center" in extra:
        turning_traffic(rng, O, streets, extra, tgrid)
    if lot is not None:
        parking_lot(rng, O, main, extra, tgrid)
    # ---- construction zone and trailer, people on the sidewalks and crossing ----------------------------
    construction_zone(rng, O, main, drive.s0, drive.speed, T)
    sidewalk_people(rng, O, streets, tgrid, span)
    crossing_people(rng, O, streets, extra, tgrid)
    # ---- static structures: buildings, furniture, kerbs -------------------------------------------------
    SB, lights, feet, furniture = static_structures(rng, streets, road, walk, lot, drive.s0, T)
    # ---- keep the objects that never overlap anything --------------------------------------------------
    static_foot = np.array(feet) if feet else np.zeros((0, 4, 2))
    keep = resolve_overlaps(O, ego_traj, static_foot)
    rows = [O.rows[i] for i in keep]
    # ---- place the scene in positive world coordinates, rotated -------------------------------------------
    theta = float(rng.uniform(-math.pi, math.pi))
    Rz = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    ego_c = ego_traj[:, :2].mean(axis=0)
    half = 160.0
    corners = (np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half + ego_c) @ Rz.T
    origin = 10.0 - corners.min(axis=0)
    extent = corners.max(axis=0) + origin + 10.0
    frame = WorldFrame(theta, Rz, origin)
    st_arr = SB.arrays()
    st_arr["center"][:, :2] = frame.xy(st_arr["center"][:, :2])
    st_arr["yaw"] = st_arr["yaw"] + theta
    lights_w = np.array(lights).reshape(-1, 3)
    if len(lights_w):
        lights_w[:, :2] = frame.xy(lights_w[:, :2])
    ground = (float(rng.normal(0, 0.012)), float(rng.normal(0, 0.012)), 0.0)
    ec_w = frame.xy(ego_c)
    ground = (ground[0], ground[1], -(ground[0] * ec_w[0] + ground[1] * ec_w[1]))  # z ~ 0 near the ego
    # statics stand on the ground plane
    st_arr["center"][:, 2] += ground[0] * st_arr["center"][:, 0] + ground[1] * st_arr["center"][:, 1] + ground[2]
    if len(lights_w):
        lights_w[:, 2] += ground[0] * lights_w[:, 0] + ground[1] * lights_w[:, 1] + ground[2]
    ego_w = frame.traj(ego_traj)
    cls = [r["cls"] for r in rows]
    rider = np.array([bool(r["rider"]) for r in rows], bool)
    obj_shapes, rcs_k, lamps = shapes.object_shapes(rng, cls, np.array([r["lwh"] for r in rows]).reshape(-1, 3),
                                                    rider)
    map_w, map_h = int(math.ceil(extent[0] / MAP_RES)), int(math.ceil(extent[1] / MAP_RES))
    texture = ground_texture(rng, streets, extra, road, walk, lot, frame.xy, map_w, map_h, rain)
    yaw_u = np.unwrap(ego_w[:, 2])
    k_idx = np.searchsorted(tgrid, np.arange(n_samples) * SAMPLE_PERIOD - 1e-9)
    turn = float(np.degrees(yaw_u[k_idx].max() - yaw_u[k_idx].min()))
    speed = np.hypot(*np.diff(ego_w[k_idx, :2], axis=0).T) / SAMPLE_PERIOD
    looks = _looks(rng, night, rain)
    return Scene(
        index=index, name=name, seed=seed, n_samples=n_samples, place=place, night=night, rain=rain,
        tgrid=tgrid, ego=ego_w, cls=np.array([CLASS_NAMES.index(c) for c in cls], np.int64),
        lwh=np.array([r["lwh"] for r in rows]).reshape(-1, 3),
        traj=np.stack([frame.traj(r["traj"]) for r in rows]) if rows else np.zeros((0, G, 3)),
        base=np.array([r["base"] for r in rows], float), parked=np.array([r["parked"] for r in rows], bool),
        rider=rider, ground=ground, streets=streets,
        statics=dict(prims=st_arr, lights=lights_w,
                     furniture=dict(kind=np.array([f[0] for f in furniture], dtype=object),
                                    xy=frame.xy(np.array([f[1:] for f in furniture], float).reshape(-1, 2)))),
        texture=texture, map_size=(map_w, map_h),
        ego_turn_deg=turn, ego_stops=bool(len(speed) and speed.min() < 0.2),
        shapes=dict(prims=obj_shapes, rcs_k=rcs_k, lamps=lamps), looks=looks,
    )


class WorldFrame:
    """The scene's placement in world coordinates: local xy turned by theta (rotation ``rot``), then shifted by
    ``origin``."""

    def __init__(self, theta: float, rot: np.ndarray, origin: np.ndarray):
        self.theta, self.rot, self.origin = theta, rot, origin

    def xy(self, xy) -> np.ndarray:
        """World xy (..., 2) of local xy."""
        return np.asarray(xy) @ self.rot.T + self.origin

    def traj(self, tr: np.ndarray) -> np.ndarray:
        """World x y yaw (..., 3) of a local track."""
        out = tr.copy()
        out[..., :2] = self.xy(tr[..., :2])
        out[..., 2] = tr[..., 2] + self.theta
        return out


def _looks(rng, night: bool, rain: bool) -> dict:
    """Light, sky and camera settings of a scene."""
    az, el = rng.uniform(-math.pi, math.pi), rng.uniform(0.25, 1.1)
    sun = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    if night:
        return dict(sun=sun, sun_k=0.0, ambient=0.06, sky_top=np.array([8.0, 10, 18]),
                    sky_hor=np.array([25.0, 24, 30]), fog=250.0, gain=rng.uniform(1.2, 1.6), noise=8.0)
    if rain:
        return dict(sun=sun, sun_k=0.15, ambient=0.62, sky_top=np.array([140.0, 145, 150]),
                    sky_hor=np.array([170.0, 172, 175]), fog=180.0, gain=rng.uniform(0.9, 1.1), noise=3.5)
    top = np.array([150.0, 168, 196]) * rng.uniform(0.85, 1.1)
    return dict(sun=sun, sun_k=rng.uniform(0.4, 0.6), ambient=rng.uniform(0.45, 0.6), sky_top=top,
                sky_hor=np.array([200.0, 204, 210]) * rng.uniform(0.9, 1.05), fog=rng.uniform(400, 900),
                gain=rng.uniform(0.85, 1.15), noise=2.0)
