"""Soak (slow, outside default CI): the live node on a looped log at real rate.

    PF_SOAK_SECONDS=600 .venv/bin/python -m pytest -m slow tests/test_soak.py -s

Asserts that the node stays alive and processes more than 10 frames; that its RSS grows by at most 5%
after warm-up (the largest sample of the second half after warm-up against the first sample after it);
that the longest sync queue in the last quarter of the frames is at most 2 longer than in the first
quarter; that no message was rejected and at most 2 frames were skipped; and that frames were dropped
(newest-frame policy) only if the worker was busy over 60% of the time. It does not count the sweeps the
node received (its status reports none), so it does not check that every sweep is accounted for. Prints
the figures.
"""

import json
import os
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytestmark = [pytest.mark.slow, pytest.mark.ros]


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_soak_live_node(synthetic_root, tmp_path):
    from perception.sources.bag_writer import scene_to_bag
    from ros_nodes.local_run import node_and_player

    seconds = float(os.environ.get("PF_SOAK_SECONDS", "600"))
    # the node's memory settles within about a minute (a 180 s run with a 36 s warm-up read +7.4%, the same
    # node over 300 s with 60 s +0.02%): warm up for a minute, or half of a shorter run
    warmup = min(60.0, seconds / 2)
    log = tmp_path / "log"
    scene_to_bag(synthetic_root, "scene-0103", log, progress=False)
    rss = []
    t0 = time.monotonic()
    with node_and_player(log, name="pf_soak") as run:
        while time.monotonic() - t0 < seconds:
            run.spin(5.0)
            rss.append((time.monotonic() - t0, _rss_kib(run.node.pid)))
            assert run.node.poll() is None, "the node died"
    frames = run.frames()
    assert len(frames) > 10
    after = [r for t, r in rss if t >= warmup]
    growth = (max(after[len(after) // 2:]) - after[0]) / after[0]
    q_first = max(max(s["queues"].values()) for s in frames[: len(frames) // 4])
    q_last = max(max(s["queues"].values()) for s in frames[-len(frames) // 4:])
    last = frames[-1]
    e2e = [s["e2e_ms"] for s in frames[len(frames) // 4:]]
    inference = [s["inference_ms"] for s in frames[len(frames) // 4:]]
    busy = sum(inference) / 1000 / max(1e-9, (len(inference)) * np.mean(np.diff([s["stamp_ns"] for s in frames[
        len(frames) // 4:]])) / 1e9) if len(frames) > 8 else float("nan")
    print(json.dumps({"seconds": seconds, "frames": last["frames"], "dropped_frames": last["dropped_frames"],
                      "skipped": last["skipped"], "rejected": last["rejected"], "rss_mib_after_warmup": after[0] / 1024,
                      "rss_growth": round(growth, 4), "queue_max_first_quarter": q_first,
                      "queue_max_last_quarter": q_last, "e2e_p50_ms": float(np.median(e2e)),
                      "e2e_p95_ms": float(np.percentile(e2e, 95)), "inference_p50_ms": float(np.median(inference)),
                      "worker_busy_share": round(float(busy), 3)}, indent=1))
    assert growth <= 0.05
    assert q_last <= q_first + 2
    assert last["rejected"] == {} and last["skipped"] <= 2
    # drops come from latency alone: the worker is busy most of the time whenever it drops frames
    assert last["dropped_frames"] == 0 or busy > 0.6
