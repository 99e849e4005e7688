"""Fleet replay: many drive logs through the Pipeline, one task per log, on Ray or one after another.

``run_fleet(logs, out_dir, ...)`` writes each log's output to ``out_dir/<log name>/`` in the same layout as a
single replay (``perception.replay``: a rosbag2 MCAP directory with the inputs and the outputs), plus
``out_dir/summary.json`` (per log: frames, frames/s, latency, detections, rejected messages, the error of a
log that failed) and, with a dataroot, the merged nuScenes submission ``out_dir/results_nusc.json``.

Without Ray the logs run one after another in this process, with the checkpoint loaded once. With
``ray`` (``"local"``: a cluster of this machine's CPUs started here; ``"auto"``: the running cluster;
an address: that cluster), each worker is a Ray actor that loads the checkpoint once and replays the logs it
is given; no scheduler of our own, only Ray's. A log that fails is retried once (on any worker), then
reported with its error while the others finish. An output appears under its name only when complete (it
is written in ``out_dir/.partial/`` and moved), so an interrupted run keeps every finished log and
leaves nothing that looks finished. Ray is an optional extra: ``pip install -e .[fleet]``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from pathlib import Path

import numpy as np

ATTEMPTS = 2  # a failing log is tried twice


def output_names(logs) -> list[str]:
    """One output directory name per log: the log's name, made unique with its position when two agree."""
    names = [Path(x).name for x in logs]
    return [n if names.count(n) == 1 else f"{n}-{i}" for i, n in enumerate(names)]


def replay_log(pipe, log, out, prompts=(), samples=None, keyframes_only: bool = False, faults: str = "",
               min_score: float = 0.0, stop=None) -> dict:
    """Replay one log into ``out`` (which must not exist) and summarize it (plain, JSON-safe values plus the
    nuScenes results of its keyframes)."""
    from perception.replay import replay
    from perception.sources.bag import BagSource

    src = BagSource(log, pipe.assembly, keyframes_only=keyframes_only, faults=faults)
    count = {"detections": 0}

    def on_frame(_frame, det, _token, _tracks):
        count["detections"] += int(np.sum(det.scores >= max(min_score, 0.3)))

    r = replay(pipe, src, out, tuple(prompts), samples or {}, min_score, stop=stop, on_frame=on_frame,
               progress=False, tracker={})
    total = r["stages"]["total"]
    return {"frames": r["frames"], "wall_s": r["wall_s"], "fps": r["frames"] / max(r["wall_s"], 1e-9),
            "p50_ms": 1000 * float(np.percentile(total, 50)) if total else None,
            "p95_ms": 1000 * float(np.percentile(total, 95)) if total else None,
            "detections_0.3": count["detections"], "rejected": dict(src.rejected),
            "skipped_frames": src.skipped_frames, "modalities": r["modalities"], "results": r["results"]}


class Worker:
    """Loads the Pipeline once and replays logs. A Ray actor on the cluster; a plain object in-process."""

    def __init__(self, config, checkpoint, device: str = "cpu", threads: int = 0):
        from perception.pipeline import Pipeline

        self.pipe = Pipeline(config, checkpoint, device=device, runtime={"threads": threads} if threads else None)

    def run(self, log: str, staging: str, final: str, options: dict) -> dict:
        """Replay ``log`` into ``staging``, then move it to ``final``. Never raises: a failure is returned as
        ``{"error": ...}`` with the staging output removed."""
        t0 = time.perf_counter()
        staging_p, final_p = Path(staging), Path(final)
        try:
            if staging_p.exists():
                shutil.rmtree(staging_p)
            staging_p.parent.mkdir(parents=True, exist_ok=True)
            out = replay_log(self.pipe, log, staging_p, **options)
            if (options.get("stop") or {}).get("flag"):  # stopped part-way: an incomplete log is not kept
                shutil.rmtree(staging_p, ignore_errors=True)
                return {"stopped": True}
            if out["frames"] == 0:
                raise RuntimeError("no frame could be made from the log")
            os.replace(staging_p, final_p)
            return {**out, "pid": os.getpid(), "rss_mib": _rss_mib()}
        except Exception as e:  # noqa: BLE001 - reported per log; the other logs go on
            shutil.rmtree(staging_p, ignore_errors=True)
            return {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=3),
                    "wall_s": time.perf_counter() - t0, "pid": os.getpid()}

    def rss_mib(self) -> float:
        return _rss_mib()


def _rss_mib() -> float:
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def run_fleet(logs, out_dir, config, checkpoint, prompts=(), data_root=None, version: str = "v1.0-mini",
              eval_split: str | None = None, keyframes_only: bool = False, faults: str = "", min_score: float = 0.0,
              device: str = "cpu", ray: str | None = None, workers: int | None = None, cpus_per_task: float = 1,
              gpus_per_task: float = 0, threads: int = 0, progress: bool = True, skip_existing: bool = False,
              stop: dict | None = None) -> dict:
    """Replay ``logs`` into ``out_dir`` (see the module docstring). Returns the summary that is also written
    to ``out_dir/summary.json``. ``threads``: intra-op threads per worker (0: the library default in-process,
    ``cpus_per_task`` on Ray). Setting ``stop["flag"]`` (from a signal handler: the CLI's way, since an
    exception raised at an arbitrary point can land inside library code) or a KeyboardInterrupt stops the
    run: finished logs are kept, the others dropped, and the summary says ``interrupted``; ``skip_existing``
    continues such a run (logs whose output exists are not replayed again). With a cluster address, every
    node must see the logs and ``out_dir`` at the same paths (a shared filesystem): workers read and write
    them directly."""
    from tqdm import tqdm

    from perception.paths import resolve

    # absolute paths: Ray workers do not share this process's working directory
    logs = [str(Path(x).resolve()) for x in logs]
    config, checkpoint = str(resolve(config).resolve()), str(resolve(checkpoint).resolve())
    if not logs:
        raise ValueError("no drive logs given")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging_root = out_dir / ".partial"
    names = output_names(logs)
    existing = [n for n in names if (out_dir / n).exists()]
    if existing and not skip_existing:
        raise FileExistsError(f"{out_dir} already holds outputs for {existing} (--skip-existing continues an "
                              "interrupted run)")
    samples = {}
    if data_root:
        from nuscenes.nuscenes import NuScenes

        from perception.replay import stamp_to_sample

        samples = stamp_to_sample(NuScenes(version, str(data_root), verbose=False))
    options = {"prompts": tuple(prompts), "samples": samples, "keyframes_only": keyframes_only, "faults": faults,
               "min_score": min_score}
    jobs = [(log, str(staging_root / n), str(out_dir / n)) for log, n in zip(logs, names)
            if not (skip_existing and (out_dir / n).exists())]
    skipped = [n for n in names if skip_existing and (out_dir / n).exists()]
    per_log: dict[str, dict] = {}  # by output name: one log given twice is two jobs
    attempts = dict.fromkeys(names, 0)
    t0 = time.perf_counter()
    bar = tqdm(total=len(jobs), desc="logs", unit="log", disable=not progress or not jobs)
    stop = stop if stop is not None else {"flag": False}
    interrupted = False
    backend = "in-process" if ray is None else f"ray ({ray})"
    worker_info: dict = {"workers": 0 if ray is None else workers}

    def finish(job, res):
        name = Path(job[2]).name
        attempts[name] += 1
        if "error" in res and attempts[name] < ATTEMPTS:
            return job  # try again
        per_log[name] = {"log": job[0], "attempts": attempts[name], **res}
        bar.update()
        return None

    try:
        if ray is None:
            w = Worker(config, checkpoint, device, threads)
            worker_info = {"workers": 1, "rss_mib": [w.rss_mib()]}
            queue = list(jobs)
            while queue and not stop["flag"]:
                job = queue.pop(0)
                res = w.run(*job, {**options, "stop": stop})
                if res.get("stopped"):
                    break
                again = finish(job, res)
                if again:
                    queue.append(again)
            worker_info = {"workers": 1, "rss_mib": [w.rss_mib()]}
        else:
            worker_info = _run_on_ray(jobs, options, finish, config, checkpoint, device, ray, workers,
                                      cpus_per_task, gpus_per_task, threads, stop)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        shutil.rmtree(staging_root, ignore_errors=True)
    interrupted = interrupted or bool(stop["flag"])
    wall = time.perf_counter() - t0
    summary = _summarize(names, per_log, wall, backend, worker_info, interrupted)
    summary["skipped_existing"] = skipped
    if data_root and not interrupted:
        summary["evaluation"] = _merged_eval(per_log, out_dir, data_root, version, eval_split)
    for r in per_log.values():
        r.pop("results", None)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _run_on_ray(jobs, options, finish, config, checkpoint, device, address, workers, cpus_per_task, gpus_per_task,
                threads, stop) -> dict:
    try:
        import ray
    except ImportError as e:
        raise ImportError("--ray needs Ray: pip install -e .[fleet]") from e
    started_here = not ray.is_initialized()
    if started_here:
        kw = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address == "local":
            ray.init(num_cpus=max(1, int(workers * cpus_per_task)) if workers else None, **kw)
        else:
            ray.init(address=address, **kw)
    try:
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus_per_task, 1e-9)))
        n = min(n, len(jobs))
        actor = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task)(Worker)

        def make():
            return actor.remote(config, checkpoint, device, threads or max(1, int(cpus_per_task)))

        pool = [make() for _ in range(n)]
        try:  # a worker that cannot load the checkpoint fails here, with its reason, before any log is given out
            ray.get([a.rss_mib.remote() for a in pool])
        except ray.exceptions.RayError as e:
            raise RuntimeError(f"fleet workers could not start: {str(e).strip().splitlines()[-1]}") from None
        options = ray.put(options)  # the stamp -> sample table goes to the object store once
        queue, running = list(jobs), {}  # running: object ref -> (actor, job)
        try:
            while (queue or running) and not stop["flag"]:
                busy = {id(a) for a, _ in running.values()}
                for a in [a for a in pool if id(a) not in busy]:
                    if not queue:
                        break
                    job = queue.pop(0)
                    running[a.run.remote(*job, options)] = (a, job)
                done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)  # wakes to see a stop
                if not done:
                    continue
                (ref,) = done
                a, job = running.pop(ref)
                try:
                    res = ray.get(ref)
                except ray.exceptions.RayError as e:  # the worker process died: a fresh one takes its place
                    res = {"error": f"worker lost: {type(e).__name__}: {str(e).strip().splitlines()[-1]}"}
                    pool[pool.index(a)] = make()
                again = finish(job, res)
                if again:
                    queue.append(again)
            try:
                rss = [] if stop["flag"] else ray.get([a.rss_mib.remote() for a in pool])
            except ray.exceptions.RayError:
                rss = []
        finally:
            for a in pool:
                ray.kill(a)
        return {"workers": n, "rss_mib": rss, "cpus_per_task": cpus_per_task, "gpus_per_task": gpus_per_task}
    finally:
        if started_here:
            ray.shutdown()


def _summarize(names, per_log, wall, backend, worker_info, interrupted) -> dict:
    """``per_log`` by output name, in the order the logs were given."""
    ok = [r for r in per_log.values() if "error" not in r]
    frames = sum(r["frames"] for r in ok)
    return {"backend": backend, **worker_info, "logs": len(names), "succeeded": len(ok),
            "failed": sum("error" in r for r in per_log.values()),
            "not_run": [x for x in names if x not in per_log], "interrupted": interrupted,
            "wall_s": wall, "logs_per_s": len(ok) / max(wall, 1e-9), "frames": frames,
            "frames_per_s": frames / max(wall, 1e-9), "per_log": {k: per_log[k] for k in names if k in per_log}}


def _merged_eval(per_log, out_dir: Path, data_root, version, eval_split) -> dict | None:
    """The keyframes of every finished log in ``eval_split`` as one nuScenes submission, evaluated by the devkit
    on the samples the logs cover (the split's other samples are filled with no boxes, then left out of the
    evaluation; keyframes of other splits are not part of it: their detections are in each log's output)."""
    from nuscenes.nuscenes import NuScenes
    from nuscenes.utils.splits import create_splits_scenes

    from perception.evaluation.detection import run_detection_eval, write_submission

    results = {}
    for r in per_log.values():
        results.update(r.get("results", {}))
    if not results:
        return None
    path = out_dir / "results_nusc.json"
    nusc = NuScenes(version, str(data_root), verbose=False)
    split = eval_split or ("mini_val" if version == "v1.0-mini" else "val")
    scenes = set(create_splits_scenes()[split])
    in_split = [s["token"] for s in nusc.sample if nusc.get("scene", s["scene_token"])["name"] in scenes]
    covered = [t for t in in_split if t in results]
    write_submission(path, {t: results.get(t, []) for t in in_split})  # the devkit wants the split, exactly
    if not covered:
        return {"submission": str(path), "split": split, "samples": 0, "note": f"no log covers a sample of {split}"}
    s = run_detection_eval(data_root, version, split, path, out_dir / "eval", sample_tokens=covered)
    return {"submission": str(path), "split": split, "samples": len(covered), "mAP": s["mean_ap"],
            "NDS": s["nd_score"]}
