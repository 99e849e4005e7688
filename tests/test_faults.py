"""Fault injection: spec parsing, frame faults, a faulted replay that keeps going and counts, interruption."""

import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from perception.faults import FaultSpecError, apply_to_frame, parse_faults
from perception.sources.bag_writer import scene_to_bag


def test_spec_parsing_and_errors():
    f = parse_faults("drop:CAM_FRONT@10-30,drop:LIDAR_TOP@50-55,delay:RADAR_FRONT=80ms,skew:CAM_BACK=+40ms,"
                     "corrupt:5%,reorder:2%,beams:LIDAR_TOP=50%,dark:CAM_*=0.3")
    assert f.dropped("CAM_FRONT", 12) and not f.dropped("CAM_FRONT", 31) and not f.dropped("CAM_FRONT_LEFT", 12)
    assert f.delays == {"RADAR_FRONT": 0.08} and f.skews == {"CAM_BACK": 0.04}
    assert f.corrupt == 0.05 and f.reorder == 0.02 and f.beams["LIDAR_TOP"] == 0.5
    for bad, match in (("drop", "KIND:ARGS"), ("delay:CAM_FRONT", "CHANNEL=DURATION"), ("corrupt:150%", "0..100"),
                       ("skew:CAM=fast", "duration"), ("melt:CAM", "unknown kind"), ("drop:CAM@a-b", "window"),
                       ("zero:CAM_FRONT=time_lag", "LIDAR_TOP=COLUMN"), ("zero:LIDAR_TOP", "LIDAR_TOP=COLUMN")):
        with pytest.raises(FaultSpecError, match=match):
            parse_faults(bad)
    assert not parse_faults("")


def test_frame_faults(synthetic_root):
    from perception.sources.nuscenes import NuScenesSource

    frame = NuScenesSource(synthetic_root, "v1.0-mini", "mini_val", lidar_sweeps=1)[1]
    rng = np.random.default_rng(0)
    f = apply_to_frame(frame, parse_faults("drop:CAM_FRONT,beams:LIDAR_TOP=50%,dark:CAM_*=0.3"), 0.0, rng)
    assert "CAM_FRONT" not in f.cameras and len(f.cameras) == 5
    assert len(np.unique(f.lidar.features["ring"])) == 16 and 0.3 < len(f.lidar) / len(frame.lidar) < 0.7
    assert f.cameras["CAM_BACK"].image.mean() < 0.45 * frame.cameras["CAM_BACK"].image.mean()
    g = apply_to_frame(frame, parse_faults("drop:LIDAR_TOP@0-1,drop:RADAR_*"), 0.5, rng)
    assert g.lidar is None and g.radar is None and g.modalities == ("camera",)
    assert apply_to_frame(frame, parse_faults("drop:LIDAR_TOP@2-3"), 0.5, rng).lidar is not None


def test_zeroed_columns(synthetic_root):
    from perception.sources.nuscenes import NuScenesSource

    frame = NuScenesSource(synthetic_root, "v1.0-mini", "mini_val", lidar_sweeps=3, radar_sweeps=2)[1]
    assert frame.lidar.features["time_lag"].max() > 0 and np.abs(frame.radar.features["vx_comp"]).max() > 0
    f = apply_to_frame(frame, parse_faults("zero:LIDAR_TOP=time_lag,zero:RADAR=vx_comp,zero:RADAR=vy_comp"), 0.0,
                       np.random.default_rng(0))
    assert not f.lidar.features["time_lag"].any() and len(f.lidar) == len(frame.lidar)
    assert not f.radar.features["vx_comp"].any() and not f.radar.features["vy_comp"].any()
    np.testing.assert_array_equal(f.lidar.features["intensity"], frame.lidar.features["intensity"])
    np.testing.assert_array_equal(f.radar.features["rcs"], frame.radar.features["rcs"])
    assert frame.lidar.features["time_lag"].max() > 0  # the source frame is left as it was
    with pytest.raises(FaultSpecError, match="no column 'doppler'.*intensity"):
        apply_to_frame(frame, parse_faults("zero:LIDAR_TOP=doppler"), 0.0, np.random.default_rng(0))


def test_faulted_replay_keeps_going_and_counts(synthetic_root, tmp_path):
    from perception.cli.replay import main as replay_main

    log = tmp_path / "log"
    scene_to_bag(synthetic_root, "scene-0103", log, progress=False)
    out = tmp_path / "out"
    spec = "drop:CAM_*@0.4-1.2,drop:LIDAR_TOP@1.0-1.2,delay:RADAR_FRONT=80ms,skew:CAM_BACK=+40ms,corrupt:10%,reorder:3%"
    assert replay_main([str(log), "--config", "configs/tiny.py", "--checkpoint", "checkpoints/tiny.pth",
                        "--out", str(out), "--faults", spec]) == 0
    with AnyReader([out]) as reader:
        conn = next(c for c in reader.connections if c.topic == "/perception/objects")
        payloads = [json.loads(reader.deserialize(r, conn.msgtype).data) for _, _, r in reader.messages([conn])]
    assert len(payloads) >= 25  # frames continued through every fault
    assert all("lidar" in p["modalities"] for p in payloads)
    assert any(set(p["modalities"]) == {"camera", "lidar", "radar"} for p in payloads)


def test_replay_interrupted_leaves_a_readable_log(synthetic_root, tmp_path):
    log = tmp_path / "log"
    scene_to_bag(synthetic_root, "scene-0103", log, progress=False)
    out = tmp_path / "out"
    # the installed command from another directory: the default config and checkpoint are the project's
    proc = subprocess.Popen([sys.executable, "-m", "perception.cli.replay", str(log), "--out", str(out)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(out.glob("*.mcap")):
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    text = proc.communicate(timeout=60)[0]
    with AnyReader([out]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    n = counts.get("/perception/objects", 0)
    if proc.returncode == 130:
        assert "interrupted, output closed" in text and 0 < n < 40
    else:  # it finished before the signal arrived: still a complete, readable log
        assert proc.returncode == 0 and n == 40
    assert counts.get("/perception/detections", 0) == n


@pytest.mark.parametrize("what", ["make_synthetic", "to_bag"])
def test_killed_writers_never_leave_something_that_looks_complete(synthetic_root, tmp_path, what):
    out = tmp_path / "out"
    cmd = {"make_synthetic": ["-m", "perception.cli.make_synthetic", "--out", str(out), "--scenes", "2",
                              "--samples", "40", "--image-scale", "0.5", "--quiet", "--workers", "1"],
           "to_bag": ["-m", "perception.cli.to_bag", "--data-root", str(synthetic_root), "--scene", "scene-0061",
                      "--out", str(out)]}[what]
    proc = subprocess.Popen([sys.executable, *cmd], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = tmp_path / "out.partial"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not partial.exists():
        time.sleep(0.02)
    time.sleep(0.3)
    proc.kill()
    proc.wait(timeout=30)
    if out.exists():  # a small scene can be renamed into place before the kill: then it is complete
        assert what == "to_bag" and not partial.exists() and (out / "metadata.yaml").exists()
    else:
        assert partial.exists()


def test_prompt_caps():
    from perception.serving import MAX_PROMPT_CHARS, parse_prompts

    assert parse_prompts('["cars ahead", " ", "trucks"]') == ("cars ahead", "trucks")
    assert parse_prompts("") == () and parse_prompts("the bus") == ("the bus",)
    for bad in ("x" * (MAX_PROMPT_CHARS + 1), json.dumps(["a"] * 17), '["a", 3]', "[not json"):
        with pytest.raises(ValueError):
            parse_prompts(bad)


def test_failure_table_runs_every_condition(synthetic_root, tmp_path, capsys):
    from perception.cli.test import main as test_main
    from perception.evaluation.run import FAILURE_TABLE

    assert test_main(["configs/tiny.py", "checkpoints/tiny.pth", "--data-root", str(synthetic_root),
                      "--failure-table", "--out", str(tmp_path / "x.json")]) == 0
    rows = json.loads((tmp_path / "failure_table.json").read_text())
    assert [r["condition"] for r in rows][: len(FAILURE_TABLE)] == [c for c, _, _ in FAILURE_TABLE]
    # then all sensors on the split's scenes by the condition their description names (day or night, ...)
    conds = [r["condition"] for r in rows][len(FAILURE_TABLE):]
    assert conds and all(c.startswith("all sensors, ") for c in conds)
    assert ("all sensors, day scenes" in conds) != ("all sensors, night scenes" in conds) or len(conds) >= 3
    assert all(0 <= r["mAP"] <= 1 and 0 <= r["NDS"] <= 1 for r in rows)
    assert rows[0]["mAP"] > 0.2  # the shipped checkpoint detects on the test world too
    assert "sensor failure table" in capsys.readouterr().out


def test_grounding_evaluation_end_to_end(synthetic_root, tmp_path, capsys):
    """promptfusion-test --prompts auto: the dataroot's prompt file is made, every validation prompt is asked of the
    shipped checkpoint on every frame, and the issue's final line and the per-prompt JSON come out; with --track
    the motion words read the tracks, and --no-prompt-tracking leaves out the prompt AMOTA table (the slow
    per-prompt TrackingEval). Every style's ceiling (a perfect reading of the prompts) is printed."""
    from perception.cli.test import main as test_main

    assert test_main(["configs/tiny.py", "checkpoints/tiny.pth", "--data-root", str(synthetic_root),
                      "--prompts", "auto", "--track", "--no-prompt-tracking",
                      "--out", str(tmp_path / "results.json")]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert re.fullmatch(r"AMOTA: \d\.\d{3} AMOTP: \d+\.\d{3} IDS: \d+", lines[-1]), lines[-1]  # --track's line
    last = next(x for x in reversed(lines) if x.startswith("grounding mAP"))
    m = re.fullmatch(r"grounding mAP: (\d\.\d{3}) heldout mAP: (\d\.\d{3}) dev mAP: (\d\.\d{3})", last)
    assert m, last
    g = json.loads((tmp_path / "grounding.json").read_text())
    assert {p["style"] for p in g["prompts"]} == {"train", "heldout", "dev"}
    assert float(m.group(1)) == round(g["summary"]["train"]["mAP"], 3) and float(m.group(1)) > 0.3
    assert "prompts with the part" in out and "AMOTA:" in out and "prompt AMOTA" not in out
    assert all(0 < s["ceiling"] <= 1 for s in g["summary"].values())
    assert g["summary"]["train"]["ceiling"] >= g["summary"]["train"]["mAP"] - 0.05  # words lose, rarely gain
    # --track also scores the detections with their tracks' velocities: the same boxes and scores, some
    # velocities changed, so the devkit's mAP is the network's and the table names both mAVEs
    net = json.loads((tmp_path / "results.json").read_text())["results"]
    trk = json.loads((tmp_path / "track_velocity" / "results_nusc.json").read_text())["results"]
    assert net.keys() == trk.keys()
    pairs = [(a, b) for t in net for a, b in zip(net[t], trk[t], strict=True)]
    assert all(a["translation"] == b["translation"] and a["detection_score"] == b["detection_score"]
               for a, b in pairs)
    assert sum(a["velocity"] != b["velocity"] for a, b in pairs) > 0.2 * len(pairs)
    assert re.search(r"^mAVE +\d\.\d{3} +\d\.\d{3} +\([+-]\d+\.\d%\)$", out, re.M)
