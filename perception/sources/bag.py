"""Reading drive logs: a rosbag2 log (MCAP or sqlite3) into SensorFrames through ``rosbags``, no ROS
installation needed. The log's messages go through the same ``Feeder`` (perception.sources.live) as the
live node's subscriptions, so replay and the vehicle make the same frames from the same messages.
Writing logs: perception.sources.bag_writer. Faults on a log's message stream: perception.faults.
"""

from __future__ import annotations

from pathlib import Path

from perception.sources.assembly import Assembly


class BagSource:
    """Iterating yields ``(frame, match, raw)``: the SensorFrame, the synchronizer's Match (stamps, missing
    inputs) and ``raw``, the list of (connection, log time, rawdata) read since the previous frame (for
    copying the log into an output). The log time is the feeder's clock (timeouts of late sensors).

    ``assembly``: how frames are made (the checkpoint's ``Pipeline.assembly``; the defaults otherwise).
    ``keyframes_only``: emit only frames in which every camera matched (the 2 Hz keyframes of a
    nuScenes-converted log). ``faults``: a fault spec (perception.faults) applied to the message stream.
    Undecodable and invalid messages are skipped and counted in ``rejected``; frames that cannot be built
    in ``skipped_frames``.
    """

    def __init__(self, path, assembly: Assembly | None = None, keyframes_only: bool = False, faults=None,
                 seed: int = 0):
        from perception.faults import parse_faults
        from perception.sources.live import Feeder

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"drive log not found: {self.path}")
        self.feeder = Feeder(assembly, keyframes_only)
        self.cameras = self.feeder.cameras
        self.counts: dict[str, int] = {}
        self.faults = parse_faults(faults) if isinstance(faults, (str, type(None))) else faults
        self.fault_counts: dict = {}
        self.seed = seed

    @property
    def rejected(self) -> dict[str, int]:
        return self.feeder.rejected

    @property
    def skipped_frames(self) -> int:
        return self.feeder.skipped_frames

    def __iter__(self):
        from rosbags.highlevel import AnyReader

        from perception.faults import faulted_messages

        feeder = self.feeder
        route = {i.topic: i for i in feeder.inputs(tf=True)}
        raw_since: list = []
        with AnyReader([self.path]) as reader:
            for topic, t, rawdata, conn in faulted_messages(reader, self.faults, self.seed, self.fault_counts):
                raw_since.append((conn, t, rawdata))
                self.counts[topic] = self.counts.get(topic, 0) + 1
                inp = route.get(topic)
                if inp is None:  # a topic the feeder does not take: the clock still moves
                    matches = feeder.poll(t)
                else:
                    try:
                        msg = reader.deserialize(rawdata, conn.msgtype)
                    except Exception as err:  # noqa: BLE001 - any undecodable bytes (SerdeError, AnyReaderError, ...)
                        feeder.reject(inp.name, f"undecodable {conn.msgtype}: {err}")
                        continue
                    matches = feeder.take(inp, msg, t)
                for m in matches:
                    frame = feeder.build(m)
                    if frame is not None:
                        yield frame, m, raw_since
                        raw_since = []
            for m in feeder.flush():
                frame = feeder.build(m)
                if frame is not None:
                    yield frame, m, raw_since
                    raw_since = []
