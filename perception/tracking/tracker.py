"""3D multi-object tracking over per-frame detections, ROS-free (CenterPoint's tracking-by-detection).

Each frame: detections go to the global frame; every living track is moved forward by its velocity over the
time since its last update; detections and tracks of the same class are paired by centre distance inside a
per-class gate (greedy in detection-score order, as CenterPoint, or an optimal assignment); a paired track
takes the detection's box and smooths its velocity, heading and size; an unpaired track coasts on its
velocity for up to ``max_age`` frames and then dies; an unpaired detection above ``birth_score`` starts a
track, confirmed after ``min_hits`` detections. The state resets on a time gap, time going backwards or a
jump of the ego pose (a new scene or log), so tracks never span two drives.

The Kalman filter is perception.tracking.kalman, the pairing (gates, class groups, greedy or optimal
assignment) perception.tracking.association. Everything is vectorized numpy: a frame of 100 objects
costs well under a millisecond (``make bench``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from perception.geometry import invert_transform, wrap_angle
from perception.tracking.association import GATES, assign, class_groups
from perception.tracking.kalman import centre_noise, kalman_birth, kalman_predict, kalman_update
from perception.types import DETECTION_CLASSES, Boxes3D, Detections

# The seven classes of the nuScenes tracking benchmark.
TRACKING_CLASSES = ("bicycle", "bus", "car", "motorcycle", "pedestrian", "trailer", "truck")

TRACKER_DEFAULTS = {"matcher": "greedy", "min_score": 0.1, "birth_score": 0.3, "min_hits": 2, "max_age": 3,
                    "smoothing": 0.5, "displacement": 0.5, "velocity": "kalman", "pos_noise": 0.4,
                    "vel_noise": 4.0, "accel_noise": 1.0, "long_noise": 0.3, "centre": "filter", "max_gap_s": 1.5,
                    "max_jump_m": 20.0, "classes": None, "motion_hint": True, "score": "last", "groups": None}
SCORES = ("last", "mean")
CENTRES = ("filter", "detection")


@dataclass
class Tracks:
    """Living tracks after one frame, in that frame's ego frame.

    ``boxes``: the tracks' boxes (smoothed velocity and heading); ``ids``: (N,) stable identities;
    ``scores``: the last detection score (decayed while coasting); ``hits``: detections so far;
    ``misses``: frames since the last detection (0 = detected in this frame); ``confirmed``: hits >= min_hits;
    ``age``: frames since birth; ``det_index``: (N,) the index in the frame's Detections that updated each
    track (-1 while coasting); ``grounding``: (N, len(prompts)) each prompt's grounding score averaged over
    the track's detections that were asked it (a prompt is answered by tracks, not by one frame's box).
    """

    boxes: Boxes3D
    ids: np.ndarray
    scores: np.ndarray
    hits: np.ndarray
    misses: np.ndarray
    confirmed: np.ndarray
    age: np.ndarray
    det_index: np.ndarray
    stamp_ns: int = 0
    reset: bool = False  # the state was reset at this frame (gap, pose jump, first frame)
    grounding: np.ndarray | None = None
    prompts: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)

    def current(self, confirmed_only: bool = False) -> Tracks:
        """The tracks detected in this frame (what a tracking benchmark scores); with ``confirmed_only``
        only those past ``min_hits`` (what a planner consumes)."""
        keep = self.misses == 0
        if confirmed_only:
            keep &= self.confirmed
        return self.select(np.flatnonzero(keep))

    def select(self, idx) -> Tracks:
        idx = np.asarray(idx, np.int64)
        return Tracks(self.boxes[idx] if len(idx) else Boxes3D.empty(), self.ids[idx], self.scores[idx],
                      self.hits[idx], self.misses[idx], self.confirmed[idx], self.age[idx], self.det_index[idx],
                      self.stamp_ns, self.reset, None if self.grounding is None else self.grounding[idx],
                      self.prompts)

    @staticmethod
    def empty(stamp_ns: int = 0) -> Tracks:
        z = np.zeros(0, np.int64)
        return Tracks(Boxes3D.empty(), z, np.zeros(0), z, z, np.zeros(0, bool), z, z, stamp_ns, False)


@dataclass
class _State:
    data: np.ndarray = field(default_factory=lambda: np.zeros((0, 9)))  # global frame, as Boxes3D.data
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    misses: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    age: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    g_sum: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # per prompt column (Tracker.prompts)
    g_n: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    cov: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 4)))  # "kalman": covariance of x y vx vy
    score_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))  # of the detections' scores ("mean")
    offset: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # filter's centre - the box's reported one
    votes: np.ndarray = field(default_factory=lambda: np.zeros((0, len(DETECTION_CLASSES))))  # scores per class


class Tracker:
    """``Tracker(**settings)`` (TRACKER_DEFAULTS); ``update(detections, T_global_ego, stamp_ns) -> Tracks``.

    ``matcher``: "greedy" or "hungarian"; ``min_score``: detections below are ignored; ``birth_score``: the
    least score that starts a track; ``min_hits``: detections before a track is confirmed; ``max_age``:
    frames a track coasts without a detection; ``smoothing``: weight of the new observation in the velocity,
    heading and size averages; ``displacement``: weight of the displacement since the previous frame in the
    velocity observed for a track seen then (the rest is the detection's own velocity); ``velocity``: "average"
    (the above) or "kalman": each track's centre and velocity a constant-velocity Kalman filter fed the
    detections' centres (``pos_noise`` m) and velocities (``vel_noise`` m/s), with ``accel_noise`` m/s^2 of
    process noise, so the frame interval weighs the displacement as it should (at 20 Hz a centre's noise is a
    large velocity error, at 2 Hz a small one); ``long_noise``: m of centre noise added per metre of a box's
    length beyond a car's (4.6 m), so the wandering centre of a long vehicle is not taken for motion; ``centre``:
    the centre a detected track reports, "filter" (the Kalman filter's) or "detection" (its detection's, as
    CenterPoint; the filter still runs for the velocity); ``max_gap_s`` /
    ``max_jump_m``: a longer pause or a larger ego jump between frames resets the state; ``classes``: class
    names tracked (None: all detection classes); ``motion_hint``: the grounding head reads each object's
    velocity from its track (``motion_source``); ``score``: a track's score, the one a tracking benchmark ranks
    its boxes by: "last" (its latest detection's, CenterPoint) or "mean" (the mean of its detections' scores
    so far: one confident frame of a flickering false track weighs less, a steady object's dip does too);
    ``groups``: classes whose detections may continue one another's tracks (``class_groups``; e.g. bicycles and
    motorcycles, which a detector confuses from frame to frame): a track's class is then the one its
    detections' scores add up to most, so an object read as one class in some frames and as the other in the
    rest keeps one identity and one class; None: a class only continues its own tracks.
    """

    def __init__(self, **settings):
        bad = set(settings) - set(TRACKER_DEFAULTS)
        if bad:
            raise ValueError(f"tracker: unknown settings {sorted(bad)}; valid: {sorted(TRACKER_DEFAULTS)}")
        self.cfg = {**TRACKER_DEFAULTS, **settings}
        for k in ("smoothing", "displacement"):
            if not 0.0 <= float(self.cfg[k]) <= 1.0:
                raise ValueError(f"tracker.{k}: {self.cfg[k]} is outside [0, 1]")
        if self.cfg["velocity"] not in ("average", "kalman"):
            raise ValueError(f"tracker.velocity: {self.cfg['velocity']!r}; valid: 'average', 'kalman'")
        for k in ("pos_noise", "vel_noise", "accel_noise"):
            if not float(self.cfg[k]) > 0:
                raise ValueError(f"tracker.{k}: {self.cfg[k]} must be > 0")
        if not float(self.cfg["long_noise"]) >= 0:
            raise ValueError(f"tracker.long_noise: {self.cfg['long_noise']} must be >= 0")
        if self.cfg["centre"] not in CENTRES:
            raise ValueError(f"tracker.centre: {self.cfg['centre']!r}; valid: {', '.join(map(repr, CENTRES))}")
        if self.cfg["score"] not in SCORES:
            raise ValueError(f"tracker.score: {self.cfg['score']!r}; valid: {', '.join(map(repr, SCORES))}")
        if self.cfg["matcher"] not in ("greedy", "hungarian"):
            raise ValueError(f"tracker.matcher: {self.cfg['matcher']!r}; valid: 'greedy', 'hungarian'")
        classes = self.cfg["classes"] or DETECTION_CLASSES
        unknown = set(classes) - set(DETECTION_CLASSES)
        if unknown:
            raise ValueError(f"tracker.classes: unknown {sorted(unknown)}; valid: {DETECTION_CLASSES}")
        self.tracked = np.array([c in classes for c in DETECTION_CLASSES])
        self.gates = np.array([GATES[c] for c in DETECTION_CLASSES])
        self.group = class_groups(self.cfg["groups"])
        self.reset()

    def reset(self) -> None:
        self.state = _State()
        self.prompts: list[str] = []  # the columns of the grounding accumulators
        self.next_id = 1
        self.last_stamp: int | None = None
        self.last_pose: np.ndarray | None = None

    def _needs_reset(self, T: np.ndarray, stamp_ns: int) -> bool:
        if self.last_stamp is None:
            return True
        dt = (stamp_ns - self.last_stamp) * 1e-9
        jump = np.linalg.norm(T[:3, 3] - self.last_pose[:3, 3])
        return dt <= 0 or dt > self.cfg["max_gap_s"] or jump > self.cfg["max_jump_m"] + 60.0 * dt

    def update(self, detections: Detections, T_global_ego, stamp_ns: int) -> Tracks:
        c = self.cfg
        T = np.asarray(T_global_ego, np.float64)
        stamp_ns = int(stamp_ns)
        reset = self._needs_reset(T, stamp_ns)
        if reset:
            self.state, self.prompts = _State(), []  # ids keep counting: never reused within a stream
            dt = 0.0
        else:
            dt = (stamp_ns - self.last_stamp) * 1e-9
        self.last_stamp, self.last_pose = stamp_ns, T
        keep = self._kept(detections)
        det = detections.boxes[keep].transform(T) if len(keep) else Boxes3D.empty()
        dscore = detections.scores[keep]
        s = self.state
        asked = tuple(detections.prompts) if detections.grounding_scores is not None else ()
        cols = self._prompt_columns(asked)
        if s.g_sum.shape[1] < len(self.prompts):  # new prompts: new, empty columns
            grow = len(self.prompts) - s.g_sum.shape[1]
            s.g_sum = np.pad(s.g_sum, ((0, 0), (0, grow)))
            s.g_n = np.pad(s.g_n, ((0, 0), (0, grow)))
        g_det = detections.grounding_scores[keep] if asked else np.zeros((len(keep), 0))
        pred, pairs = self._associate(det, dscore, dt)
        di = np.array([p[0] for p in pairs], np.int64)
        ti = np.array([p[1] for p in pairs], np.int64)
        a, w = float(c["smoothing"]), float(c["displacement"])
        new = pred.copy()
        kalman = c["velocity"] == "kalman"
        cov = kalman_predict(s.cov, dt, float(c["accel_noise"])) if kalman else s.cov
        offset = s.offset.copy()
        if len(pairs):
            obs = det.data[di]
            old = s.data[ti]
            new[ti, :6] = obs[:, :6]
            new[ti, 3:6] = (1 - a) * old[:, 3:6] + a * obs[:, 3:6]
            if kalman:  # centre and velocity: the filter's
                prior = np.concatenate([pred[ti, :2] + offset[ti], np.nan_to_num(pred[ti, 7:9])], 1)
                z = np.concatenate([obs[:, :2], obs[:, 7:9]], 1)
                noise = centre_noise(obs[:, 3], float(c["pos_noise"]), float(c["long_noise"]))
                m, cov[ti] = kalman_update(prior, cov[ti], z, noise, float(c["vel_noise"]))
                new[ti, 7:9] = m[:, 2:4]
                new[ti, :2] = m[:, :2] if c["centre"] == "filter" else obs[:, :2]
                offset[ti] = m[:, :2] - new[ti, :2]
            else:
                # velocity: the detection's, averaged with the displacement since the last detection when the
                # track was seen in the previous frame (weight ``displacement``: a detector that reads no motion
                # of crossing traffic gives 0 there, the displacement does not)
                disp = (obs[:, :2] - old[:, :2]) / max(dt, 1e-3)
                fresh = (s.misses[ti] == 0)[:, None] & (dt > 0)
                v_old_or = np.where(np.isnan(old[:, 7:9]), disp, old[:, 7:9])
                # a detection without velocity: the displacement when the track was seen one frame ago, else (it
                # coasted on a predicted position) the track's own velocity
                v_obs = np.where(np.isnan(obs[:, 7:9]), np.where(fresh, disp, v_old_or),
                                 np.where(fresh, (1 - w) * obs[:, 7:9] + w * disp, obs[:, 7:9]))
                v_old = np.where(np.isnan(old[:, 7:9]), v_obs, old[:, 7:9])
                new[ti, 7:9] = (1 - a) * v_old + a * v_obs
            # heading: averaged unless the detection turned it round (then the detection's)
            d_yaw = wrap_angle(obs[:, 6] - old[:, 6])
            new[ti, 6] = np.where(np.abs(d_yaw) > np.pi / 2, obs[:, 6], wrap_angle(old[:, 6] + a * d_yaw))
        hits, misses, scores, age = s.hits.copy(), s.misses + 1, s.scores * 0.8, s.age + 1
        g_sum, g_n = s.g_sum.copy(), s.g_n.copy()
        if len(pairs) and asked:
            g_sum[np.ix_(ti, cols)] += g_det[di]
            g_n[np.ix_(ti, cols)] += 1
        hits[ti] += 1
        misses[ti] = 0
        score_sum = s.score_sum.copy()
        score_sum[ti] += dscore[di]
        votes = s.votes.copy()
        np.add.at(votes, (ti, det.labels[di]), dscore[di])
        # a track's class: the one its detections' scores say most (its own class unless ``groups`` is set)
        labels = np.where(votes.max(1, initial=0.0) > 0, np.argmax(votes, 1), s.labels)
        scores[ti] = dscore[di] if c["score"] == "last" else score_sum[ti] / hits[ti]
        det_index = np.full(len(s.ids), -1, np.int64)
        det_index[ti] = keep[di]
        alive = np.flatnonzero(misses <= c["max_age"])
        # births: unpaired detections confident enough
        free = np.setdiff1d(np.arange(len(det)), di)
        born = free[dscore[free] >= c["birth_score"]]
        ids = np.arange(self.next_id, self.next_id + len(born), dtype=np.int64)
        self.next_id += len(born)
        self.state = _State(
            np.concatenate([new[alive], det.data[born]]), np.concatenate([labels[alive], det.labels[born]]),
            np.concatenate([s.ids[alive], ids]), np.concatenate([scores[alive], dscore[born]]),
            np.concatenate([hits[alive], np.ones(len(born), np.int64)]),
            np.concatenate([misses[alive], np.zeros(len(born), np.int64)]),
            np.concatenate([age[alive], np.zeros(len(born), np.int64)]))
        born_sum = np.zeros((len(born), len(self.prompts)))
        born_n = np.zeros_like(born_sum)
        if asked:
            born_sum[:, cols] = g_det[born]
            born_n[:, cols] = 1
        if kalman:
            born_data = self.state.data[len(alive):]
            noise = centre_noise(born_data[:, 3], float(c["pos_noise"]), float(c["long_noise"]))
            self.state.cov = np.concatenate([cov[alive], kalman_birth(born_data, noise, float(c["vel_noise"]))])
            born_data[:, 7:9] = np.nan_to_num(born_data[:, 7:9])  # the filter's mean: unknown starts at 0
        self.state.score_sum = np.concatenate([score_sum[alive], dscore[born]])
        born_votes = np.zeros((len(born), len(DETECTION_CLASSES)))
        born_votes[np.arange(len(born)), det.labels[born]] = dscore[born]
        self.state.votes = np.concatenate([votes[alive], born_votes])
        self.state.offset = np.concatenate([offset[alive], np.zeros((len(born), 2))])
        self.state.g_sum = np.concatenate([g_sum[alive], born_sum])
        self.state.g_n = np.concatenate([g_n[alive], born_n])
        det_index = np.concatenate([det_index[alive], keep[born]])
        st = self.state
        boxes = Boxes3D(st.data, st.labels).transform(invert_transform(T)) if len(st.ids) else Boxes3D.empty()
        grounding = None
        if asked:
            n = st.g_n[:, cols]
            grounding = np.where(n > 0, st.g_sum[:, cols] / np.maximum(n, 1), 0.0)
        return Tracks(boxes, st.ids.copy(), st.scores.copy(), st.hits.copy(), st.misses.copy(),
                      st.hits >= c["min_hits"], st.age.copy(), det_index, stamp_ns, reset, grounding, asked)

    def _kept(self, detections: Detections) -> np.ndarray:
        """Indices of the detections the tracker takes: tracked classes scored at least ``min_score``."""
        return np.flatnonzero((detections.scores >= self.cfg["min_score"]) & self.tracked[detections.labels])

    def _associate(self, det: Boxes3D, dscore: np.ndarray, dt: float):
        """The tracks moved on by ``dt`` (predicted state) and the (detection, track) pairs: same class (or class
        group), within the detection class's gate, by the matcher. ``det``: global-frame boxes."""
        s = self.state
        # predict: every track moves on by its velocity (unknown velocity: stays)
        pred = s.data.copy()
        pred[:, :2] += np.nan_to_num(pred[:, 7:9]) * dt
        dv = np.nan_to_num(det.data[:, 7:9])
        back = det.data[:, :2] - dv * dt  # the detection moved back by its own velocity (CenterPoint)
        dist = np.linalg.norm(back[:, None, :] - s.data[None, :, :2], axis=2) if len(s.ids) else \
            np.zeros((len(det), 0))
        dist_pred = np.linalg.norm(det.data[:, None, :2] - pred[None, :, :2], axis=2) if len(s.ids) else dist
        dist = np.minimum(dist, dist_pred)
        # the gates are for keyframes 0.5 s apart; between 20 Hz sweeps an object moves a tenth as far, so a
        # gate that wide would let a track jump to the next car in a queue: halved at high frame rates
        gate = self.gates[det.labels][:, None] * float(np.clip(dt / 0.5, 0.5, 1.0))
        ok = (self.group[det.labels][:, None] == self.group[s.labels][None, :]) & (dist <= gate)
        cost = np.where(ok, dist, np.inf)
        return pred, assign(cost, np.argsort(-dscore, kind="stable"), self.cfg["matcher"])

    def motion_hint(self, detections: Detections, T_global_ego, stamp_ns: int) -> np.ndarray:
        """(N, 2) ego-frame velocity of each detection as its confirmed track would carry it after this frame
        (the track's smoothed velocity averaged with the detection's), NaN where it would join no confirmed
        track. Reads the state, changes nothing: the grounding head can read an object's motion from its
        history (``Pipeline.run_batch(motion=...)``) before ``update`` takes the grounded detections."""
        out = np.full((len(detections), 2), np.nan)
        T = np.asarray(T_global_ego, np.float64)
        if not len(self.state.ids) or self._needs_reset(T, int(stamp_ns)):
            return out
        dt = (int(stamp_ns) - self.last_stamp) * 1e-9
        keep = self._kept(detections)
        if not len(keep):
            return out
        det = detections.boxes[keep].transform(T)
        _, pairs = self._associate(det, detections.scores[keep], dt)
        pairs = [(i, j) for i, j in pairs if self.state.hits[j] >= self.cfg["min_hits"]]
        if not pairs:
            return out
        di = np.array([p[0] for p in pairs], np.int64)
        ti = np.array([p[1] for p in pairs], np.int64)
        v_trk = self.state.data[ti, 7:9]
        v_det = det.data[di, 7:9]
        a = float(self.cfg["smoothing"])
        v = np.where(np.isnan(v_trk), v_det, np.where(np.isnan(v_det), v_trk, (1 - a) * v_trk + a * v_det))
        out[keep[di]] = v @ T[:2, :2]  # global -> ego: R^T v, row-wise
        return out

    def motion_source(self):
        """What callers give ``Pipeline.run_batch(motion=...)``: (frame, detections) -> ``motion_hint`` when the
        ``motion_hint`` setting is on, else None."""
        if not self.cfg["motion_hint"]:
            return None
        return lambda frame, det: self.motion_hint(det, frame.T_global_ego, frame.stamp_ns)

    def _prompt_columns(self, prompts) -> np.ndarray:
        for p in prompts:
            if p not in self.prompts:
                self.prompts.append(p)
        return np.array([self.prompts.index(p) for p in prompts], np.int64)


def with_track_velocities(detections: Detections, tracks: Tracks) -> Detections:
    """The frame's detections with each one's velocity taken from the track it updated in this frame
    (``Tracks.det_index``; ``tracks`` as ``Tracker.update`` returned them for these detections): the filtered
    velocity of the object's history, what a planner reading the tracks gets, on the detection benchmark. A
    detection that updated no track (a class not tracked, below ``min_score``) keeps its own. Online: the
    tracks hold only this frame and the ones before it."""
    last = int(tracks.det_index.max(initial=-1))
    if last >= len(detections):
        raise ValueError(f"with_track_velocities: a track refers to detection {last} of {len(detections)}: the "
                         "tracks are not this frame's")
    data = detections.boxes.data.copy()
    hit = np.flatnonzero((tracks.misses == 0) & (tracks.det_index >= 0))
    data[tracks.det_index[hit], 7:9] = tracks.boxes.data[hit, 7:9]
    return Detections(detections.boxes.with_data(data), detections.scores, detections.grounding_scores,
                      detections.prompts)

