"""Sensor fault injection, shared by replay, the player and evaluation.

A spec is a comma-separated list (times in seconds from the start of the stream or scene):

    drop:CAM_FRONT@10-30    drop a channel's messages in a window (no window: always); a channel may be a
                            glob: CAM_* is every camera, RADAR_* every radar
    delay:RADAR_FRONT=80ms  deliver a channel's messages late (their stamps unchanged)
    skew:CAM_BACK=+40ms     shift a channel's header stamps (a clock error)
    corrupt:5%              damage that share of messages (flipped bytes or truncation)
    reorder:2%              swap that share of messages with the next one
    beams:LIDAR_TOP=50%     keep that share of the lidar's rings (beam reduction)
    dark:CAM_*=0.3          scale camera brightness (low light), with sensor noise
    zero:LIDAR_TOP=time_lag set one point column to 0 (LIDAR_TOP or RADAR, the merged radars): e.g. the lidar's
                            time lag (every sweep looks current) or the radar's Doppler (vx_comp, vy_comp);
                            a check of what the network reads (issue 18) as much as a fault

Message-level faults (drop, delay, skew, corrupt, reorder) act on a raw message stream; frame-level ones
(drop, beams, dark, zero) act on SensorFrames. A bad spec raises FaultSpecError naming the item.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import numpy as np

from perception.types import PointCloud, SensorFrame


class FaultSpecError(ValueError):
    pass


@dataclass
class Faults:
    drops: list[tuple[str, float, float]] = field(default_factory=list)
    delays: dict[str, float] = field(default_factory=dict)
    skews: dict[str, float] = field(default_factory=dict)
    corrupt: float = 0.0
    reorder: float = 0.0
    beams: dict[str, float] = field(default_factory=dict)
    dark: dict[str, float] = field(default_factory=dict)
    zero: dict[str, list[str]] = field(default_factory=dict)
    spec: str = ""

    def __bool__(self) -> bool:
        return bool(self.drops or self.delays or self.skews or self.corrupt or self.reorder or self.beams
                    or self.dark or self.zero)

    def dropped(self, channel: str, t: float) -> bool:
        return any(fnmatchcase(channel, ch) and lo <= t <= hi for ch, lo, hi in self.drops)

    @staticmethod
    def _lookup(table: dict, channel: str):
        for k, v in table.items():
            if fnmatchcase(channel, k):
                return v
        return None


_DUR = re.compile(r"^([+-]?\d+(?:\.\d+)?)(ms|s)?$")
_PCT = re.compile(r"^(\d+(?:\.\d+)?)%$")


def _seconds(item, text):
    m = _DUR.match(text)
    if not m:
        raise FaultSpecError(f"fault {item!r}: {text!r} is not a duration like 80ms or 0.5s")
    v = float(m.group(1))
    return v / 1000 if (m.group(2) or "ms") == "ms" else v


def _share(item, text):
    m = _PCT.match(text)
    if m:
        v = float(m.group(1)) / 100
    else:
        try:
            v = float(text)
        except ValueError:
            raise FaultSpecError(f"fault {item!r}: {text!r} is not a share like 5% or 0.05") from None
    if not 0 <= v <= 1:
        raise FaultSpecError(f"fault {item!r}: share must be within 0..100%")
    return v


def parse_faults(spec: str | None) -> Faults:
    f = Faults(spec=spec or "")
    for item in filter(None, (s.strip() for s in (spec or "").split(","))):
        kind, _, arg = item.partition(":")
        if not arg:
            raise FaultSpecError(f"fault {item!r}: expected KIND:ARGS "
                                 "(drop, delay, skew, corrupt, reorder, beams, dark, zero)")
        if kind == "drop":
            ch, _, window = arg.partition("@")
            lo, hi = 0.0, float("inf")
            if window:
                a, sep, b = window.partition("-")
                try:
                    lo, hi = float(a), float(b) if sep else float(a)
                except ValueError:
                    raise FaultSpecError(f"fault {item!r}: window must look like 10-30 (seconds)") from None
            f.drops.append((ch, lo, hi))
        elif kind in ("delay", "skew"):
            ch, sep, val = arg.partition("=")
            if not sep:
                raise FaultSpecError(f"fault {item!r}: expected {kind}:CHANNEL=DURATION")
            (f.delays if kind == "delay" else f.skews)[ch] = _seconds(item, val)
            if kind == "delay" and f.delays[ch] < 0:
                raise FaultSpecError(f"fault {item!r}: a delay cannot be negative")
        elif kind in ("corrupt", "reorder"):
            setattr(f, kind, _share(item, arg))
        elif kind in ("beams", "dark"):
            ch, sep, val = arg.partition("=")
            if not sep:
                raise FaultSpecError(f"fault {item!r}: expected {kind}:CHANNEL=VALUE")
            (f.beams if kind == "beams" else f.dark)[ch] = _share(item, val)
        elif kind == "zero":
            ch, sep, col = arg.partition("=")
            if not sep or not col or ch not in ("LIDAR_TOP", "RADAR"):
                raise FaultSpecError(f"fault {item!r}: expected zero:LIDAR_TOP=COLUMN or zero:RADAR=COLUMN")
            f.zero.setdefault(ch, []).append(col)
        else:
            raise FaultSpecError(f"fault {item!r}: unknown kind {kind!r} "
                                 "(drop, delay, skew, corrupt, reorder, beams, dark, zero)")
    return f


# -- frame level ---------------------------------------------------------------------------------------
def apply_to_frame(frame: SensorFrame, faults: Faults, t: float, rng: np.random.Generator) -> SensorFrame:
    """A copy of ``frame`` with the frame-level faults at time ``t`` (s from the scene start) applied."""
    cams = {}
    for ch, view in frame.cameras.items():
        if faults.dropped(ch, t):
            continue
        k = faults._lookup(faults.dark, ch)
        if k is not None:
            from dataclasses import replace

            img = view.image.astype(np.float32) * k + rng.normal(0, 4.0, view.image.shape)
            view = replace(view, image=np.clip(img, 0, 255).astype(np.uint8))
        cams[ch] = view
    lidar = None if frame.lidar is None or faults.dropped("LIDAR_TOP", t) or faults.dropped("LIDAR", t) else frame.lidar
    share = faults._lookup(faults.beams, "LIDAR_TOP")
    if lidar is not None and share is not None and "ring" in lidar.features:
        rings = lidar.features["ring"].astype(int)
        n = int(rings.max()) + 1 if len(rings) else 0
        keep_rings = np.zeros(max(n, 1), bool)
        keep_rings[np.round(np.linspace(0, max(n - 1, 0), max(1, int(round(n * share))))).astype(int)] = True
        lidar = lidar[keep_rings[rings]] if share > 0 else PointCloud.empty(lidar.features)
    # a frame's radar is all radars merged: at frame level only the whole family (RADAR_* / RADAR) drops
    radar_off = any(ch in ("RADAR", "RADAR_*") and lo <= t <= hi for ch, lo, hi in faults.drops)
    radar = None if frame.radar is None or radar_off else frame.radar
    lidar, radar = (_zeroed(c, faults.zero.get(ch, ()), ch) for c, ch in ((lidar, "LIDAR_TOP"), (radar, "RADAR")))
    return SensorFrame(stamp_ns=frame.stamp_ns, T_global_ego=frame.T_global_ego, cameras=cams, lidar=lidar,
                       radar=radar, gt=frame.gt, sample_token=frame.sample_token, scene=frame.scene,
                       source=frame.source)


def _zeroed(cloud: PointCloud | None, columns, channel: str) -> PointCloud | None:
    if cloud is None or not columns:
        return cloud
    missing = [c for c in columns if c not in cloud.features]
    if missing:
        raise FaultSpecError(f"fault zero:{channel}: the cloud has no column {missing[0]!r} "
                             f"(has {sorted(cloud.features)})")
    return PointCloud(cloud.xyz, {k: np.zeros_like(v) if k in columns else v for k, v in cloud.features.items()})


# -- message level -------------------------------------------------------------------------------------
def channel_of(topic: str) -> str:
    return topic.strip("/").split("/")[0]


def apply_to_stream(stream, faults: Faults, rng: np.random.Generator, restamp=None, counts: dict | None = None):
    """Apply message-level faults to an iterable of (topic, log_time_ns, raw, extra) items, yielding the
    same shape in delivery order. ``restamp(raw, extra, delta_ns) -> raw`` re-writes a message's header stamp
    (for skew). ``counts`` gets {"dropped", "corrupted", "delayed", "reordered", "skewed"} per channel."""
    counts = {} if counts is None else counts

    def bump(kind, ch):
        counts.setdefault(kind, {})
        counts[kind][ch] = counts[kind].get(ch, 0) + 1

    heap: list = []
    seq = 0
    t0 = None
    held = None
    for topic, t, raw, extra in stream:
        t0 = t if t0 is None else t0
        ch = channel_of(topic)
        rel = (t - t0) / 1e9
        if faults.dropped(ch, rel):
            bump("dropped", ch)
            continue
        skew = faults._lookup(faults.skews, ch)
        if skew and restamp is not None:
            raw = restamp(raw, extra, int(skew * 1e9))
            bump("skewed", ch)
        if faults.corrupt and rng.random() < faults.corrupt and topic not in ("/tf", "/tf_static"):
            b = bytearray(raw)
            if len(b) > 8 and rng.random() < 0.5:
                b = b[: int(rng.integers(4, len(b)))]
            else:
                for i in rng.integers(4, max(5, len(b)), size=max(1, len(b) // 50)):
                    if i < len(b):
                        b[i] = int(rng.integers(0, 256))
            raw = bytes(b)
            bump("corrupted", ch)
        delay = faults._lookup(faults.delays, ch) or 0.0
        if delay:
            bump("delayed", ch)
        heapq.heappush(heap, (t + int(delay * 1e9), seq, (topic, t + int(delay * 1e9), raw, extra)))
        seq += 1
        while heap and heap[0][0] <= t:
            item = heapq.heappop(heap)[2]
            if faults.reorder and held is None and rng.random() < faults.reorder:
                held = item
                bump("reordered", channel_of(item[0]))
                continue
            yield item
            if held is not None:
                yield held
                held = None
    while heap:
        yield heapq.heappop(heap)[2]
    if held is not None:
        yield held


# ------------------------------------------------------------------------------------------------------
# Faults on a drive log's raw message stream (replay and the player read logs through this)
# ------------------------------------------------------------------------------------------------------
def shift_stamps(reader, store, raw, conn, shift_ns: int) -> bytes:
    """Re-serialize a message with its header stamp (and /tf transforms' stamps) moved by ``shift_ns``;
    used for clock skew faults and by the player to continue the clock when it loops."""
    from perception.sources.messages import stamp_ns

    msg = reader.deserialize(raw, conn.msgtype)
    headers = ([msg.header] if hasattr(msg, "header") else []) + [tr.header for tr in getattr(msg, "transforms", [])]
    if store is None or not headers:
        return raw
    for h in headers:
        ns = stamp_ns(h) + shift_ns
        h.stamp.sec, h.stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
    return bytes(store.serialize_cdr(msg, conn.msgtype))


def faulted_messages(reader, faults, seed: int = 0, counts: dict | None = None):
    """(topic, log time, raw CDR, connection) of an open rosbags AnyReader, in delivery order, with the
    message-level faults of ``faults`` applied; shared by replay and the player."""
    stream = ((c.topic, t, raw, c) for c, t, raw in reader.messages())
    if not faults:
        yield from stream
        return
    store = getattr(reader, "typestore", None)

    def restamp(raw, conn, delta):
        return shift_stamps(reader, store, raw, conn, delta)

    yield from apply_to_stream(stream, faults, np.random.default_rng(seed), restamp, counts)
