"""Side-by-side benchmarks: our figure, the peer's in the same run, the ratio, and the floor where one exists.

    python benchmarks/run.py [--quick] [--device cpu|cuda] [--data-root data/demo] [--also NAME[=CHECKPOINT]]

Inputs are real sweeps of the synthetic world (made if missing). Peers (benchmark-only dependencies,
`pip install -e .[bench]`): spconv's PointToVoxel, `pointcloud2`, `ros2-numpy` (installed --no-deps; its
package __init__ imports nav_msgs, so its point_cloud2 module is loaded on its own).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import types
from pathlib import Path

import numpy as np


def timeit(fn, repeat: int, warmup: int = 2, min_s: float = 0.25, max_repeat: int = 5000) -> float:
    """Median seconds of ``fn()`` over at least ``repeat`` calls, and over more until the calls add up to
    ``min_s`` (a sub-millisecond kernel timed 5 times gave medians 2x apart from run to run)."""
    for _ in range(warmup):
        fn()
    ts = []
    total = 0.0
    while len(ts) < repeat or (total < min_s and len(ts) < max_repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
        total += ts[-1]
    return float(np.median(ts))


def timeit_pair(fa, fb, repeat: int, warmup: int = 2) -> tuple[float, float]:
    """Median seconds of ``fa()`` and of ``fb()``, called in turn ``repeat`` times each (a pair of rows whose
    ratio is the point: both see the same moments of a shared machine)."""
    for _ in range(warmup):
        fa()
        fb()
    ta, tb = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        fa()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        fb()
        tb.append(time.perf_counter() - t)
    return float(np.median(ta)), float(np.median(tb))


def _load_ros2_numpy():
    spec = importlib.util.find_spec("ros2_numpy")
    if spec is None:
        return None
    pkg = types.ModuleType("ros2_numpy")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault("ros2_numpy", pkg)
    try:
        return importlib.import_module("ros2_numpy.point_cloud2")
    except Exception:  # noqa: BLE001 - a peer that cannot load is reported, not fatal
        return None


ROWS: list[tuple] = []


def row(what, ours_s, peer_s=None, peer="", floor=None, goal=""):
    ratio = (peer_s / ours_s) if (peer_s and ours_s) else None
    ROWS.append((what, ours_s, peer, peer_s, ratio, floor, goal))


def spread(what, samples_s, goal=""):
    """A row of our own distribution (no peer): p50 in the ours column, p95 in the peer-ms column."""
    ROWS.append((what, float(np.median(samples_s)), "", float(np.percentile(samples_s, 95)), None, None, goal))


def bench_voxelization(sweeps35k, sweeps300k, repeat):
    import torch

    from perception.ops import VoxelGrid, voxelize_hard

    grid = VoxelGrid((-51.2, -51.2, -5.0, 51.2, 51.2, 3.0), (0.2, 0.2, 8.0))
    try:
        from spconv.pytorch.utils import PointToVoxel
    except ImportError:
        PointToVoxel = None  # noqa: N806
    for name, pts in (("35k", sweeps35k), ("300k", sweeps300k)):
        ours = timeit(lambda pts=pts: voxelize_hard(pts, grid, 20, 40000), repeat)
        peer_s, same = None, ""
        if PointToVoxel is not None:
            gen = PointToVoxel(vsize_xyz=[0.2, 0.2, 8.0], coors_range_xyz=list(grid.pc_range),
                               num_point_features=pts.shape[1], max_num_voxels=40000, max_num_points_per_voxel=20)
            tp = torch.from_numpy(pts)
            peer_s = timeit(lambda gen=gen, tp=tp: gen(tp), repeat)
            v, c, n = voxelize_hard(pts, grid, 20, 40000)
            _, pc, pn = gen(tp)
            a = {tuple(x) for x in c.tolist()}
            b = {tuple(x) for x in pc.numpy().tolist()}
            same = "identical voxel sets" if a == b and int(n.sum()) == int(pn.sum()) else \
                f"voxel sets differ ({len(a ^ b)} voxels)"
        # floor: writing the (M, max_points, C) output once into fresh memory, which any implementation must do
        m = len(voxelize_hard(pts, grid, 20, 40000)[0])
        floor = timeit(lambda m=m, c=pts.shape[1]: np.zeros((m, 20, c), np.float32).fill(1.0), repeat)
        row(f"voxelization {name} ({len(pts)} pts -> {m} voxels) [{same}]", ours, peer_s, "spconv PointToVoxel",
            floor=floor, goal=">= 3x" if name == "35k" else ">= 2x")


def _cloud_msg(pts: np.ndarray, pad: int):
    from rosbags.typesys import Stores, get_typestore

    T = get_typestore(Stores.ROS2_KILTED).types
    n = len(pts)
    step = 16 + pad
    buf = np.zeros((n, step), np.uint8)
    buf[:, :16] = pts[:, :4].astype(np.float32).view(np.uint8).reshape(n, 16)
    PF = T["sensor_msgs/msg/PointField"]
    hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id="LIDAR_TOP")
    return T["sensor_msgs/msg/PointCloud2"](
        header=hdr, height=1, width=n, fields=[PF(name=c, offset=4 * i, datatype=7, count=1)
                                               for i, c in enumerate(("x", "y", "z", "intensity"))],
        is_bigendian=False, point_step=step, row_step=step * n, data=buf.reshape(-1), is_dense=True)


def bench_pointcloud2(sweeps35k, sweeps300k, repeat):
    from perception.sources.messages import pointcloud2_to_cloud

    r2n = _load_ros2_numpy()
    try:
        import pointcloud2 as pc2
    except ImportError:
        pc2 = None
    for name, pts in (("35k", sweeps35k), ("300k", sweeps300k)):
        for pad in (0, 16):
            msg = _cloud_msg(pts, pad)
            ours = timeit(lambda msg=msg: pointcloud2_to_cloud(msg, columns=("intensity",)), repeat)
            cloud, _ = pointcloud2_to_cloud(msg, columns=("intensity",))
            zero = np.shares_memory(cloud.xyz, msg.data)
            src = np.asarray(msg.data)
            dst = np.empty_like(src)
            floor = timeit(lambda src=src, dst=dst: np.copyto(dst, src), repeat)
            layout = "packed" if pad == 0 else f"padded +{pad} B"
            if r2n is None and pc2 is None:
                continue
            from sensor_msgs.msg import PointCloud2, PointField

            # is_dense=False: pointcloud2 trusts is_dense=True and then skips its NaN check; ours never trusts it
            rm = PointCloud2(height=1, width=len(pts), point_step=msg.point_step, row_step=msg.row_step,
                             is_bigendian=False, is_dense=False,
                             fields=[PointField(name=f.name, offset=f.offset, datatype=7, count=1)
                                     for f in msg.fields])
            rm.data = src.tobytes()
            label = f"PointCloud2 {name} {layout}{' (zero-copy)' if zero else ''}"
            # the same product: xyz + intensity as float32, non-finite points dropped (ros2-numpy cannot: it
            # returns views without a NaN check and reads intensity as uint16; shown for its raw speed)
            if pc2 is not None:
                try:
                    peer2 = timeit(lambda rm=rm: pc2.read_points(rm, ["x", "y", "z", "intensity"], skip_nans=True),
                                   repeat)
                    row(label, ours, peer2, "pointcloud2 skip_nans", floor=floor,
                        goal=">= 10x peers; copy at >= 50% memcpy")
                except Exception as e:  # noqa: BLE001
                    row(f"{label} (pointcloud2 failed: {type(e).__name__})", ours)
            if r2n is not None:
                peer = timeit(lambda rm=rm: r2n.point_cloud2_to_array(rm), repeat)
                row(f"{label} [peer: views, no NaN check]", ours, peer, "ros2-numpy", floor=floor)


def bench_camera(dataroot, repeat):
    import cv2

    from perception.pipeline import Preprocessor, resize_image
    from perception.sources.images import decode_images

    chans = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
    blobs = [np.frombuffer(Path(next(Path(dataroot, "samples", c).glob("*.jpg"))).read_bytes(), np.uint8)
             for c in chans]
    pre = Preprocessor({})
    H, W = pre.spec["camera"]["size"]

    def ours():  # what the sources and the Preprocessor do (normalization happens batched in torch, timed below)
        for img in decode_images(blobs, pre.decode_hw):
            resize_image(img, W, H)

    def serial():
        for b in blobs:
            img = cv2.cvtColor(cv2.imdecode(b, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            x = cv2.resize(img, (W, H)).astype(np.float32) / 255.0
            (x - 0.45) / 0.225

    single = timeit(lambda: cv2.imdecode(blobs[0], cv2.IMREAD_COLOR), repeat)
    h0, w0 = cv2.imdecode(blobs[0], cv2.IMREAD_COLOR).shape[:2]
    row(f"camera preprocessing, 6 JPEGs {w0}x{h0} -> {W}x{H} (decode, resize)", timeit(ours, repeat),
        timeit(serial, repeat), "serial OpenCV loop", floor=single * 6 / (os.cpu_count() or 1),
        goal="within 1.3x of the floor (6 full decodes / cores)")


def bench_end_to_end(dataroot, repeat, device, name="tiny", checkpoint="checkpoints/tiny.pth"):
    """``name``: configs/<name>.py; base has no shipped weights (its random init times the same work)."""
    import torch

    from perception.pipeline import Pipeline
    from perception.sources.nuscenes import NuScenesSource

    pipe = Pipeline(f"configs/{name}.py", checkpoint, device=device)
    src = NuScenesSource(dataroot, "v1.0-mini", None, **pipe.assembly.source_kwargs())  # as the checkpoint says
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stages = {k: [] for k in ("load", "preprocess", "inference", "postprocess", "total", "total with load")}
    for i in range(min(len(src), 2 + repeat)):
        t = time.perf_counter()
        f = src[i]  # files read, 6 JPEGs decoded, lidar sweeps and radar motion-compensated
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        pipe(f)
        t_pipe = time.perf_counter() - t
        if i < 2:
            continue
        stages["load"].append(t_load)
        stages["total"].append(t_pipe)
        stages["total with load"].append(t_load + t_pipe)
        for k, v in pipe.last_timing.items():
            if k in stages:
                stages[k].append(v)
    goals = {("tiny", "cpu", "total"): "p50 <= 150 ms", ("base", "cuda", "total with load"): "p50 <= 40, p99 <= 50 ms"}
    how = f"{device}, {pipe.runtime['precision']}, {pipe.runtime['backend']}"
    for k, v in stages.items():
        label = (f"end-to-end {name} ({how}), 6 cams + {pipe.assembly.lidar_sweeps + 1}-sweep lidar + radar: {k} "
                 "p50 / p95 ms")
        if k == "total with load":
            label += f" (p99 {1000 * float(np.percentile(v, 99)):.1f})"
        spread(label, v, goals.get((name, device, k), ""))
    if device == "cuda":
        gib = torch.cuda.max_memory_allocated() / 2**30
        row(f"GPU memory, {name}: peak allocated {gib:.2f} GiB (goal <= 4 GB)", None)
    return pipe, src


def bench_onnx(pipe, src, repeat):
    """The network alone (after voxelization): torch eager vs the same graph exported to ONNX Runtime."""
    import tempfile

    import torch

    try:
        from perception.export import OnnxModel, export_onnx
    except ImportError:
        return
    batches = [pipe.pre.collate([pipe.pre.prepare(src[i])]) for i in range(min(len(src), 3))]
    with tempfile.TemporaryDirectory() as d:
        try:
            export_onnx(pipe.model, batches[0], pipe.pre.spec, Path(d) / "net.onnx")
            ort_model = OnnxModel(Path(d) / "net.onnx", pipe.pre.spec)
        except ImportError:
            return
        b = batches[-1]
        net = pipe.net  # what the Pipeline runs: BatchNorm folded into the convolutions (runtime.fold_batchnorm)
        with torch.no_grad():
            ours, plain = timeit_pair(lambda: net(b), lambda: pipe.model(b), 3 * repeat)
        peer = timeit(lambda: ort_model(b), repeat)
    row("network only (tiny, cpu): torch eager (ours) vs the same graph in onnxruntime", ours, peer,
        "onnxruntime (exported)", goal="runtime.backend auto picks the faster: torch")
    row("network only (tiny, cpu): BatchNorm folded (ours) vs the network as trained, in turn", ours, plain,
        "torch, BatchNorm kept", goal="runtime.fold_batchnorm: same outputs, faster")


def bench_tracking(repeat):
    """The tracker's update at 100 objects of mixed classes moving through a drive (20 frames at 2 Hz)."""
    from perception.tracking import Tracker
    from perception.types import DETECTION_CLASSES, Boxes3D, Detections

    rng = np.random.default_rng(0)
    n = 100
    start = np.c_[rng.uniform(-50, 50, (n, 2)), np.zeros(n)]
    vel = rng.normal(0, 4, (n, 2))
    labels = rng.integers(0, len(DETECTION_CLASSES), n)
    frames = []
    for k in range(20):
        t = 0.5 * k
        d = np.c_[start[:, :2] + vel * t + rng.normal(0, 0.1, (n, 2)), np.full(n, 0.8),
                  np.tile([4.5, 1.9, 1.6], (n, 1)), np.arctan2(vel[:, 1], vel[:, 0]), vel + rng.normal(0, 0.5, (n, 2))]
        frames.append((Detections(Boxes3D(d, labels), rng.uniform(0.3, 0.9, n)), np.eye(4), int(t * 1e9)))

    def run(matcher):
        trk = Tracker(matcher=matcher)

        def go():
            trk.reset()
            for det, T, stamp in frames:
                trk.update(det, T, stamp)
        return go

    greedy = timeit(run("greedy"), repeat) / len(frames)
    hungarian = timeit(run("hungarian"), repeat) / len(frames)
    row("tracker update, 100 objects, greedy (per frame)", greedy, hungarian, "optimal assignment", goal="<= 2 ms")


def bench_live_node(root, seconds: float):
    """lidar message arrival -> /perception/objects published, minus the pipeline and the wait for the other
    sensors of the frame: what the node itself costs. Real processes: the node and the log player over DDS."""
    if importlib.util.find_spec("rclpy") is None:
        row("live node overhead (rclpy not installed)", None)
        return
    from perception.sources.bag_writer import scene_to_bag
    from ros_nodes.local_run import node_and_player

    log = root / "bench_log"
    if not log.exists():
        scene_to_bag(root, "scene-0103", log, progress=False)
    with node_and_player(log, start_delay=60.0, domain_base=100, name="pf_bench") as run:
        run.spin(120.0, until=lambda: bool(run.frames()))  # the node loads, the player waits for it
        run.spin(seconds)
    frames = run.frames()[3:]  # the first frames warm up
    if not frames:
        row("live node overhead: no frames came back", None)
        return
    over = [(s["e2e_ms"] - s["inference_ms"] - s["latency_ms"]["wait_sync"]) / 1000 for s in frames]
    spread(f"live node overhead ({len(frames)} frames): arrival -> publish - pipeline - sync wait, p50 / p95 ms",
           over, "p95 <= 10 ms")
    for k, why in (("queue", "frame ready -> worker free (the pipeline is slower than 20 Hz here)"),
                   ("assemble", "sweeps motion-compensated into the frame"),
                   ("publish", "objects JSON made and published")):
        v = [s["latency_ms"].get(k, 0.0) / 1000 for s in frames]
        spread(f"  of which {k}: {why}", v)
    own = [(s["latency_ms"]["assemble"] + s["latency_ms"]["publish"]) / 1000 for s in frames]
    spread("live node per-frame cost without the queue (assemble + publish), p50 / p95 ms", own)
    e2e = [s["e2e_ms"] / 1000 for s in frames]
    spread("live node arrival -> /perception/objects published, p50 / p95 ms", e2e)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--data-root", default="data/demo")
    p.add_argument("--no-live", action="store_true", help="skip the live node row (needs rclpy)")
    p.add_argument("--also", action="append", default=[], metavar="NAME[=CHECKPOINT]",
                   help="also time configs/NAME.py end to end beside the shipped tiny one (e.g. ablation/tiny_lift; "
                        "without a checkpoint its random init times the same work)")
    a = p.parse_args(argv)
    if a.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda but torch sees no CUDA device (this torch: "
                  f"{torch.__version__})", file=sys.stderr)
            return 2
    also = [extra.partition("=")[::2] for extra in a.also]
    for name, ckpt in also:  # checked before minutes of other rows
        for path in (f"configs/{name}.py", ckpt):
            if path and not Path(path).is_file():
                print(f"error: --also {name}: {path} not found", file=sys.stderr)
                return 2
    repeat = 5 if a.quick else 20
    from perception.sources.synthetic.demo_world import ensure_world

    root = ensure_world(Path(a.data_root))
    from perception.sources.nuscenes import NuScenesSource

    # the point workload of nuScenes' usual 10-sweep lidar input (~300k points), whatever the checkpoint uses
    frame = NuScenesSource(root, "v1.0-mini", None, lidar_sweeps=9, cameras=())[3]
    pts300k = frame.lidar.to_array(("x", "y", "z", "intensity", "time_lag"))
    pts35k = pts300k[frame.lidar.features["time_lag"] == 0]
    bench_voxelization(pts35k, pts300k, repeat)
    bench_pointcloud2(pts35k, pts300k, repeat)
    bench_camera(root, repeat)
    bench_tracking(repeat)
    pipe, src = bench_end_to_end(root, repeat, a.device)
    for name, ckpt in also:
        bench_end_to_end(root, repeat, a.device, name, ckpt or None)
    if a.device == "cuda":
        bench_end_to_end(root, repeat * 4, a.device, "base", None)
    if a.device == "cpu":  # both compare CPU paths: ONNX Runtime's CPU provider; the node's params say cpu
        bench_onnx(pipe, src, repeat)
        if not a.no_live:
            bench_live_node(root, 30.0 if a.quick else 120.0)
    print(f"\nPromptFusion benchmarks ({os.cpu_count()} CPUs, device {a.device}); times in ms, ratio = peer / ours")
    print(f"{'what':78s} {'ours':>9s} {'peer':>22s} {'peer ms':>9s} {'ratio':>7s} {'floor':>8s}  goal")
    for what, ours, peer, peer_s, ratio, floor, goal in ROWS:
        if ours is None:
            print(what)
            continue
        ps = f"{1000 * peer_s:9.2f}" if peer_s is not None else f"{'':9s}"
        rs = f"{ratio:7.2f}" if ratio is not None else f"{'':7s}"
        fs = f"{1000 * floor:8.2f}" if floor is not None else f"{'':8s}"
        print(f"{what:78s} {1000 * ours:9.2f} {peer:>22s} {ps} {rs} {fs}  {goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
