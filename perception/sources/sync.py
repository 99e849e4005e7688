"""Approximate-time synchronization with a reference input and a timeout (no rclpy needed).

Semantics follow message_filters' ApproximateTimeSynchronizer where they apply: every input keeps a queue
of at most ``queue_size`` messages keyed by stamp (the oldest is evicted, a repeated stamp overwrites);
``slop`` is strict. Unlike message_filters, the reference input (the lidar) drives emission: each other
input contributes its message closest to the reference stamp, if it lies within ``slop`` of it; a frame
is complete once every input has delivered a message at or after the reference stamp (so the choice does
not depend on the order in which topics arrive: replay and the live node pick the same messages)
(message_filters asks max - min < slop over the whole set, which a 6-camera + 5-radar rig with staggered
triggers rarely meets). With ``consume=False`` (the default, Autoware's "latest image" behaviour) a
matched camera/radar message stays available to the next reference too, so a 20 Hz lidar does not steal
the 12 Hz images from the sweep they belong to; ``consume=True`` removes matched messages as
message_filters does. Messages older than every pending reference by more than ``slop`` are dropped.

A sensor that stops does not stall the pipeline: a reference message that has waited ``timeout`` (on
the clock the caller passes: wall time live, log time in replay) is emitted with whatever matched, and
the match names the missing inputs (Autoware's fusion nodes do the same with a 0.1 s default).

Pure Python, no rclpy: the live node and offline replay use this same class, so both make the same
frames from the same messages.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class Match:
    stamp_ns: int                              # the reference message's stamp
    messages: dict[str, object]                # input -> message (reference included)
    stamps: dict[str, int]
    missing: list[str] = field(default_factory=list)
    timed_out: bool = False
    arrival_ns: int | None = None              # when the reference message was added (the caller's clock)


class FrameSynchronizer:
    def __init__(self, inputs, reference: str, queue_size: int = 10, slop_s: float = 0.1, timeout_s: float = 0.1,
                 consume: bool = False):
        inputs = list(inputs)
        if reference not in inputs:
            raise ValueError(f"reference {reference!r} is not one of the inputs {inputs}")
        if queue_size < 1 or slop_s <= 0 or timeout_s < 0:
            raise ValueError("queue_size must be >= 1, slop_s > 0, timeout_s >= 0")
        self.inputs, self.reference = inputs, reference
        self.consume = consume
        self.queue_size = queue_size
        self.slop = int(slop_s * 1e9)
        self.timeout = int(timeout_s * 1e9)
        self.queues: dict[str, OrderedDict[int, object]] = {k: OrderedDict() for k in inputs}
        self.arrival: dict[int, int] = {}     # reference stamp -> arrival time
        self.evicted = {k: 0 for k in inputs}  # dropped by queue overflow, per input
        self.latest: dict[str, int] = {}       # newest stamp seen per input

    def add(self, name: str, stamp_ns: int, msg, now_ns: int) -> list[Match]:
        """Queue one message; return the frames that are complete (or timed out) now."""
        if name not in self.queues:
            raise KeyError(f"unknown input {name!r}; inputs are {self.inputs}")
        q = self.queues[name]
        stamp_ns = int(stamp_ns)
        self.latest[name] = max(self.latest.get(name, stamp_ns), stamp_ns)
        if stamp_ns in q:
            del q[stamp_ns]
        q[stamp_ns] = msg
        while len(q) > self.queue_size:
            old, _ = q.popitem(last=False)
            self.evicted[name] += 1
            if name == self.reference:
                self.arrival.pop(old, None)
        if name == self.reference:
            self.arrival[stamp_ns] = now_ns
        return self.poll(now_ns)

    def poll(self, now_ns: int) -> list[Match]:
        out = []
        for ref_stamp in sorted(self.queues[self.reference]):
            chosen = self._candidates(ref_stamp)
            # an input's choice is final once it has delivered a message at or after the reference stamp
            # (later ones can only be farther): the match then no longer depends on arrival order
            if all(self.latest.get(k, -1) >= ref_stamp for k in self.inputs if k != self.reference):
                out.append(self._emit(ref_stamp, {k: v for k, v in chosen.items() if v is not None},
                                      timed_out=False))
                continue
            waited = now_ns - self.arrival.get(ref_stamp, now_ns)
            if waited >= self.timeout:
                out.append(self._emit(ref_stamp, {k: v for k, v in chosen.items() if v is not None}, timed_out=True))
            else:
                break  # later references wait behind this one, keeping the output in stamp order
        return out

    def flush(self) -> list[Match]:
        """Emit every queued reference message with what it has (end of a log)."""
        return self.poll(now_ns=2**62)

    def _candidates(self, ref_stamp: int) -> dict[str, int | None]:
        chosen: dict[str, int | None] = {self.reference: ref_stamp}
        for name in self.inputs:
            if name == self.reference:
                continue
            best = None
            for s in self.queues[name]:
                if abs(s - ref_stamp) < self.slop and (best is None or abs(s - ref_stamp) < abs(best - ref_stamp)):
                    best = s
            chosen[name] = best
        return chosen

    def _emit(self, ref_stamp: int, chosen: dict[str, int], timed_out: bool) -> Match:
        msgs = {k: (self.queues[k].pop(s) if (self.consume or k == self.reference) else self.queues[k][s])
                for k, s in chosen.items() if s is not None}
        arrival = self.arrival.pop(ref_stamp, None)
        # messages older than an emitted frame can never match a later reference: drop them
        for name in self.inputs:
            if name == self.reference:
                continue
            for s in [s for s in self.queues[name] if s < ref_stamp - self.slop]:
                del self.queues[name][s]
        missing = [k for k in self.inputs if k not in msgs]
        return Match(ref_stamp, msgs, {k: s for k, s in chosen.items() if s is not None}, missing, timed_out,
                     arrival)

    def queue_lengths(self) -> dict[str, int]:
        return {k: len(q) for k, q in self.queues.items()}
