"""The live node's work without ROS: ``LiveRunner``.

Messages go to the ``Feeder`` (perception.sources.live: every rule between a message and a frame); the
newest complete frame goes to the Pipeline on a worker thread. When inference is slower than the sensors,
the worker takes the newest frame and counts the ones it skipped (no queue grows). Outputs go to a
``sink`` with four methods, which the ROS node implements with publishers and tests with lists:

    sink.objects(text, match)               the /perception/objects JSON (end-to-end latency is taken here)
    sink.detections(det, match)             what else is made from the detections (markers, vision_msgs)
    sink.status(payload)                    a /perception/status event: frame | rejected | silent
    sink.log(level, text)                   "info" | "warning" | "error"

The clock is ``time.monotonic_ns`` (the feeder's timeouts of late sensors are wall time live). Nothing
here raises on input: bad messages are counted and reported, a frame that fails is skipped and counted.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque

import numpy as np

from perception.sources.live import RADAR_COLUMNS, Feeder, Input

MAX_PROMPTS, MAX_PROMPT_CHARS = 16, 256
SILENT_REPORT_S = 1.0
STALE_S = 2.0  # /diagnostics says STALE when no frame was published for this long


def parse_prompts(text: str) -> tuple[str, ...]:
    """/perception/prompt payload: "" (none), a JSON list of strings, or one prompt (at most MAX_PROMPTS
    prompts of MAX_PROMPT_CHARS characters; JSON only, nothing is evaluated)."""
    if len(text) > MAX_PROMPTS * (MAX_PROMPT_CHARS + 4) + 2:
        raise ValueError(f"prompt message of {len(text)} characters is too long")
    text = text.strip()
    if not text:
        return ()
    if text.startswith("["):
        items = json.loads(text)
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise ValueError("prompt list must be a JSON list of strings")
        out = tuple(x for x in items if x.strip())
    else:
        out = (text,)
    if len(out) > MAX_PROMPTS or any(len(x) > MAX_PROMPT_CHARS for x in out):
        raise ValueError(f"at most {MAX_PROMPTS} prompts of {MAX_PROMPT_CHARS} characters")
    return out


class LiveRunner:
    def __init__(self, pipe, feeder: Feeder, sink, prompts=(), min_score: float = 0.2,
                 output_frame: str = "base_link", tracker: dict | None = None, queue_frames: int = 1):
        """``tracker``: perception.tracking.Tracker settings ({} = defaults; None: no tracking); the sink's
        ``tracks(tracks, m)`` then gets every frame's Tracks. ``queue_frames``: how many complete frames may
        wait for the worker (1: newest only)."""
        from perception.tracking import Tracker

        if isinstance(queue_frames, bool) or not isinstance(queue_frames, int) or queue_frames < 1:
            raise ValueError(f"queue_frames must be an integer >= 1, got {queue_frames!r}")

        self.pipe, self.feeder, self.sink = pipe, feeder, sink
        self.tracker = None if tracker is None else Tracker(**tracker)
        self.min_score, self.output_frame = min_score, output_frame
        self.feeder.on_reject = self._on_reject
        self.prompts: tuple[str, ...] = ()
        self.set_prompts(tuple(x for x in prompts if x))
        self.slot_cv = threading.Condition()  # the frames waiting for the worker, oldest first
        self.pending: deque = deque()
        self.queue_frames = queue_frames
        self.running = False
        self.worker: threading.Thread | None = None
        self.silent_reported = 0
        self.stats = {"frames": 0, "dropped_frames": 0, "skipped": 0, "missing": {}, "e2e_ms": []}
        self.last_frame_t = 0.0   # monotonic time of the last published frame
        self._rejects_seen = 0    # rejections already reported by diagnostics()

    # -- inputs (any thread) ------------------------------------------------------------------------------
    def take(self, inp: Input, msg) -> None:
        self.hand_over(self.feeder.take(inp, msg, time.monotonic_ns()))

    def tick(self) -> None:
        """Frames whose late sensors timed out; a report of inputs that went silent (call every ~20 ms)."""
        now = time.monotonic_ns()
        self.hand_over(self.feeder.poll(now))
        if now - self.silent_reported > SILENT_REPORT_S * 1e9:
            silent = self.feeder.silent(now)
            if silent:
                self.silent_reported = now
                self.sink.status({"event": "silent", "inputs": silent})
                self.sink.log("warning", f"silent inputs: {silent}")

    def set_prompts(self, prompts) -> None:
        """New referring prompts (a tuple, or a /perception/prompt payload), encoded here, not on the
        inference thread. ValueError for a bad payload or prompts to a checkpoint without grounding."""
        prompts = parse_prompts(prompts) if isinstance(prompts, str) else tuple(prompts)
        if prompts and not self.pipe.grounding:
            raise ValueError(f"prompts {list(prompts)} given but this checkpoint has no grounding head")
        if prompts:
            self.pipe.text_encoder(prompts)  # every frame then hits the cache
        self.prompts = prompts

    def _on_reject(self, what: str, err) -> None:
        self.sink.log("warning", f"rejected {what}: {err}")
        self.sink.status({"event": "rejected", "input": what, "reason": str(err),
                          "rejected": dict(self.feeder.rejected)})

    def hand_over(self, matches) -> None:
        """Queue released frames for the worker; beyond ``queue_frames`` the oldest waiting ones are dropped
        and counted."""
        if not matches:
            return
        with self.slot_cv:
            now = time.monotonic()
            self.pending.extend((m, now) for m in matches)
            while len(self.pending) > self.queue_frames:
                self.pending.popleft()
                self.stats["dropped_frames"] += 1
            self.slot_cv.notify()

    # -- the worker ---------------------------------------------------------------------------------------
    def start(self) -> None:
        self.running = True
        self.worker = threading.Thread(target=self._work, name="inference", daemon=True)
        self.worker.start()

    def stop(self) -> None:
        self.running = False
        with self.slot_cv:
            self.slot_cv.notify_all()
        if self.worker is not None:
            self.worker.join(timeout=5)

    def _work(self) -> None:
        while self.running:
            with self.slot_cv:
                while not self.pending and self.running:
                    self.slot_cv.wait(0.2)
                if not self.running:
                    return
                m, t_ready = self.pending.popleft()
            try:
                self.process(m, t_ready)
            except Exception as e:  # keep the node alive; report what happened  # noqa: BLE001
                self.stats["skipped"] += 1
                try:
                    self.sink.log("error", f"frame {m.stamp_ns} failed: {e!r}")
                except Exception:  # noqa: BLE001, S110 - the worker outlives a failing logger
                    pass

    def process(self, m, t_ready: float) -> bool:
        """One frame: assemble, infer, publish objects and a status event. False when it was skipped."""
        t0 = time.monotonic()
        frame = self.feeder.build(m)
        if frame is None:
            self.stats["skipped"] += 1
            self.sink.log("warning", f"frame {m.stamp_ns} skipped: {self.feeder.skip_reasons}")
            return False
        arrived = m.arrival_ns / 1e9 if m.arrival_ns is not None else t_ready
        t1 = time.monotonic()
        prompts = self.prompts
        det = self.pipe(frame, prompts, None if self.tracker is None else self.tracker.motion_source())
        # every detection, as replay gives it, before anything is published (a failing publish never costs
        # the tracker a frame): the same tracks for the same log
        tracks = None if self.tracker is None else self.tracker.update(det, frame.T_global_ego, frame.stamp_ns)
        timing = {"wait_sync": t_ready - arrived, "queue": t0 - t_ready, "assemble": t1 - t0,
                  **self.pipe.last_timing}
        text = objects_json(det.filter(self.min_score), frame, m, self.output_frame)
        self.sink.objects(text, m)
        t_pub = time.monotonic()
        e2e = 1000 * (t_pub - arrived)  # to /perception/objects; the markers follow it
        timing["publish"] = t_pub - t1 - sum(self.pipe.last_timing.values())
        self.sink.detections(det, m)
        if tracks is not None:
            self.sink.tracks(tracks, m)
        timing["markers"] = time.monotonic() - t_pub
        st = self.stats
        st["frames"] += 1
        self.last_frame_t = time.monotonic()
        st["e2e_ms"] = (st["e2e_ms"] + [e2e])[-500:]
        for x in m.missing:
            st["missing"][x] = st["missing"].get(x, 0) + 1
        self.sink.status({
            "event": "frame", "stamp_ns": m.stamp_ns, "modalities": list(frame.modalities),
            "missing": m.missing, "timed_out": m.timed_out, "prompts": list(prompts),
            "latency_ms": {k: round(1000 * v, 2) for k, v in timing.items()},
            "e2e_ms": round(e2e, 2), "inference_ms": round(1000 * sum(self.pipe.last_timing.values()), 2),
            "frames": st["frames"], "dropped_frames": st["dropped_frames"],
            "rejected": dict(self.feeder.rejected), "skipped": st["skipped"],
            "queues": self.feeder.queue_lengths()})
        return True

    def warm_up(self) -> float:
        """One inference on a small synthetic frame, so the first real frame does not pay for JIT compilation
        and allocator warm-up. Returns its seconds."""
        from perception.types import PointCloud, SensorFrame

        rng = np.random.default_rng(0)
        xyz = rng.uniform(-20, 20, (2000, 3)).astype(np.float32)
        zeros = np.zeros(2000, np.float32)
        cloud = PointCloud(xyz, {"intensity": zeros, "ring": zeros, "time_lag": zeros})
        radar = PointCloud(xyz[:50], {k: zeros[:50] for k in (*RADAR_COLUMNS, "time_lag")})
        t = time.monotonic()
        self.pipe(SensorFrame(stamp_ns=0, T_global_ego=np.eye(4), lidar=cloud, radar=radar), self.prompts)
        if self.pipe.grounding:  # the text encoder loaded now, not when the first prompt arrives live
            self.pipe.text_encoder(("warm-up",))
        return time.monotonic() - t

    def diagnostics(self) -> tuple[str, str, dict[str, str]]:
        """(level OK | WARN | STALE, message, values) for /diagnostics, called about once a second: STALE
        when no frame was published in the last STALE_S seconds, WARN when messages were rejected since
        the previous call or a sensor is silent, OK otherwise."""
        st, lat, rejected = self.stats, self.stats["e2e_ms"], self.feeder.rejected
        now = time.monotonic()
        recent_rejects = sum(rejected.values()) - self._rejects_seen
        self._rejects_seen = sum(rejected.values())
        fresh = st["frames"] and now - self.last_frame_t < STALE_S
        warn = recent_rejects or self.feeder.silent(time.monotonic_ns())
        level = "STALE" if not fresh else ("WARN" if warn else "OK")
        values = {"frames": str(st["frames"]), "dropped_frames": str(st["dropped_frames"]),
                  "e2e_p50_ms": f"{np.median(lat):.1f}" if lat else "nan",
                  "e2e_p95_ms": f"{np.percentile(lat, 95):.1f}" if lat else "nan",
                  "rejected": json.dumps(rejected), "missing": json.dumps(st["missing"])}
        return level, f"{st['frames']} frames, {st['dropped_frames']} dropped", values


def objects_json(det, frame, m, output_frame: str = "base_link") -> str:
    """The /perception/objects payload of one frame, the same in the node and in replay."""
    from perception.outputs import detections_to_json

    return detections_to_json(det, m.stamp_ns, output_frame, frame.modalities, extra={
        "missing": m.missing, "inputs": m.stamps,
        "points": {"lidar": len(frame.lidar) if frame.lidar is not None else 0,
                   "radar": len(frame.radar) if frame.radar is not None else 0}})
