"""Fleet replay on a real local Ray cluster (2 CPUs) and one after another in-process, and multi-process
training under torchrun on CPU (gloo): the outputs a user would compare, byte for byte."""

import filecmp
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from perception.cli.replay import main as replay_main
from perception.sources.bag_writer import scene_to_bag

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def logs(synthetic_root, tmp_path_factory):
    """Two good drive logs and a third whose MCAP file is cut short (a log damaged in transfer)."""
    d = tmp_path_factory.mktemp("logs")
    scene_to_bag(synthetic_root, "scene-0061", d / "drive-a", progress=False)
    scene_to_bag(synthetic_root, "scene-0103", d / "drive-b", progress=False)
    shutil.copytree(d / "drive-b", d / "drive-bad")
    (mcap,) = (d / "drive-bad").glob("*.mcap")
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 3])
    return d


def _same_tree(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    if names != sorted(p.name for p in b.iterdir()):
        return False
    cmp = filecmp.cmpfiles(a, b, names, shallow=False)
    return cmp[0] == names


def _single(logs, tmp_path, name):
    out = tmp_path / "single" / name  # a fleet writes each log to DIR/<log name>: the same name here
    assert replay_main([str(logs / name), "--out", str(out), "--keyframes-only", "--threads", "1"]) == 0
    return out


def test_fleet_on_local_ray_equals_single_replay_and_reports_the_bad_log(logs, synthetic_root, tmp_path):
    pytest.importorskip("ray", reason="the fleet extra is installed by the set-up; without it this fails below")
    single = {n: _single(logs, tmp_path, n) for n in ("drive-a", "drive-b")}
    listing = tmp_path / "logs.txt"
    listing.write_text(f"# three logs\n{logs / 'drive-a'}\n{logs / 'drive-bad'}\n{logs / 'drive-b'}\n")
    fleet = tmp_path / "fleet"
    rc = replay_main(["--logs-from", str(listing), "--out", str(fleet), "--ray", "local", "--workers", "2",
                      "--keyframes-only", "--data-root", str(synthetic_root)])
    assert rc == 1  # one log failed
    summary = json.loads((fleet / "summary.json").read_text())
    assert summary["backend"] == "ray (local)" and summary["workers"] == 2
    assert summary["succeeded"] == 2 and summary["failed"] == 1 and not summary["interrupted"]
    per = summary["per_log"]  # by output name
    assert per["drive-bad"]["attempts"] == 2 and per["drive-bad"]["error"]
    assert not (fleet / "drive-bad").exists() and not (fleet / ".partial").exists()
    # two workers really ran (two processes), each loaded the checkpoint once
    assert len({per["drive-a"]["pid"], per["drive-b"]["pid"]} | {per["drive-bad"]["pid"]}) >= 2
    for n in ("drive-a", "drive-b"):
        assert per[n]["frames"] == 4 and per[n]["rejected"] == {}
        assert _same_tree(fleet / n, single[n]), f"{n}: fleet output differs from single-process replay"
    ev = summary["evaluation"]
    sub = json.loads(Path(ev["submission"]).read_text())
    assert ev["split"] == "mini_val" and ev["samples"] == 4 and 0.0 <= ev["mAP"] <= 1.0
    # the split's keyframes (drive-b is the mini_val scene), each with boxes
    assert len(sub["results"]) == 4 and all(len(v) > 0 for v in sub["results"].values())


def test_fleet_without_ray_runs_in_process_with_the_same_outputs(logs, tmp_path):
    single = _single(logs, tmp_path, "drive-a")
    fleet = tmp_path / "fleet"
    rc = replay_main([str(logs / "drive-a"), str(logs / "drive-bad"), str(logs / "missing"), "--out", str(fleet),
                      "--keyframes-only", "--threads", "1"])
    assert rc == 1
    summary = json.loads((fleet / "summary.json").read_text())
    assert summary["backend"] == "in-process" and summary["succeeded"] == 1 and summary["failed"] == 2
    per = summary["per_log"]
    assert "not found" in per["missing"]["error"]
    assert _same_tree(fleet / "drive-a", single)
    # a second run into the same directory refuses to mix outputs, or continues with --skip-existing
    assert replay_main([str(logs / "drive-a"), str(logs / "drive-b"), "--out", str(fleet)]) == 2
    stamp = (fleet / "drive-a").stat().st_mtime_ns
    assert replay_main([str(logs / "drive-a"), str(logs / "drive-b"), str(logs / "drive-b"), "--out", str(fleet),
                        "--keyframes-only", "--threads", "1", "--skip-existing"]) == 0
    summary = json.loads((fleet / "summary.json").read_text())
    assert summary["skipped_existing"] == ["drive-a"] and summary["succeeded"] == 2  # drive-b given twice: two jobs
    assert sorted(summary["per_log"]) == ["drive-b-1", "drive-b-2"] and (fleet / "drive-a").stat().st_mtime_ns == stamp


def test_fleet_interrupted_keeps_every_finished_log(logs, tmp_path):
    """Ctrl-C during a fleet: exit 130, the finished logs complete and in place, nothing half-written."""
    import signal
    import time

    fleet = tmp_path / "fleet"
    names = ["drive-a", "drive-b", "drive-b", "drive-b", "drive-b"]
    proc = subprocess.Popen([sys.executable, "-m", "perception.cli.replay", *[str(logs / n) for n in names],
                             "--out", str(fleet), "--keyframes-only", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (fleet / "drive-a").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    text = proc.communicate(timeout=120)[0]
    summary = json.loads((fleet / "summary.json").read_text())
    done = sorted(p.name for p in fleet.iterdir() if p.is_dir())
    assert not (fleet / ".partial").exists()
    if proc.returncode == 130:
        assert summary["interrupted"] and "interrupted, finished logs kept" in text
        assert 1 <= len(done) < len(names) and summary["not_run"]
    else:  # every log finished before the signal arrived
        assert proc.returncode == 0 and len(done) == len(names), text[-2000:]
    assert summary["succeeded"] == len(done)
    assert _same_tree(fleet / "drive-a", _single(logs, tmp_path, "drive-a"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-port", str(_free_port()), str(ROOT / "tools" / "train.py"), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow  # 70 s (two torchrun launches of two processes each); `make test-all` runs it
def test_torchrun_two_cpu_ranks_disjoint_data_rank0_checkpoint_and_resume(synthetic_root, tmp_path):
    wd = tmp_path / "work"
    # frames drawn uniformly: with class-balanced draws one frame is in the epoch several times, and two ranks'
    # disjoint shares of the draws may hold the same frame
    args = ["configs/ablation/tiny_uniform.py", "--data-root", str(synthetic_root), "--work-dir", str(wd), "--no-val",
            "--launcher", "pytorch", "--batch-size", "1", "--override-assembly", "lidar_sweeps=1"]
    r = _torchrun([*args, "--max-iters", "2"], cwd=tmp_path)  # from another directory: configs/ is the project's
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 ranks finished with identical weights" in r.stdout + r.stderr

    def seen(rank):
        lines = (wd / "seen_samples" / f"rank{rank}.txt").read_text().split("\n")
        return [tuple(x.split()) for x in lines if x]

    a, b = seen(0), seen(1)
    assert len(a) == len(b) == 2  # batch 1 per rank, 2 iterations
    assert not {t for _, t in a} & {t for _, t in b}  # the ranks saw disjoint samples
    final = torch.load(wd / "final.pth", weights_only=True)
    assert final["meta"]["assembly"]["lidar_sweeps"] == 1
    iter2 = torch.load(wd / "iter_2.pth", weights_only=False, map_location="cpu")["state_dict"]
    from perception.models.model import training_only

    rank0 = {k[4:]: v for k, v in iter2.items() if k.startswith("net.")}
    assert any(training_only(k) for k in rank0)  # the training checkpoint keeps the camera's semantic head
    rank0 = {k: v for k, v in rank0.items() if not training_only(k)}  # the deploy checkpoint leaves it out
    assert rank0.keys() == final["state_dict"].keys()
    assert all(torch.equal(rank0[k], final["state_dict"][k]) for k in rank0)  # rank 0's weights
    r = _torchrun([*args, "--max-iters", "4", "--resume"], cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    logs = "".join(f.read_text() for f in wd.glob("*/*.log"))
    assert "resumed epoch: 0, iter: 2" in logs or "resumed epoch: 1, iter: 2" in logs
    a, b = seen(0), seen(1)
    assert [int(i) for i, _ in a] == [0, 1, 2, 3] and len(b) == 4  # resumed at iteration 2, not from 0
    # the second epoch (iterations 2-3) is split between the ranks again
    assert not {t for i, t in a if int(i) >= 2} & {t for i, t in b if int(i) >= 2}
    assert (wd / "iter_4.pth").exists()
