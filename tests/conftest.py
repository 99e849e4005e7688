import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small synthetic dataroot: 2 scenes (one mini_train, one mini_val) x 4 keyframes, quarter-size images."""
    from perception.sources.synthetic import WorldConfig, generate

    root = tmp_path_factory.mktemp("synthetic") / "nuscenes"
    generate(root, WorldConfig(scenes=2, samples=4, seed=0, image_scale=0.25), progress=False)
    return root


@pytest.fixture(scope="session")
def nusc(synthetic_root):
    from nuscenes.nuscenes import NuScenes

    from perception.sources import devkit_compat

    devkit_compat.apply()
    return NuScenes("v1.0-mini", str(synthetic_root), verbose=False)


def _same_detections(ref, det, tol_m: float) -> int:
    """``det`` finds what ``ref`` finds: finite boxes, as many confident (score > 0.3) detections within one,
    and every confident ``ref`` box a ``det`` box of the same class within ``tol_m`` metres. Returns how many
    confident ``ref`` boxes there were."""
    keep = ref.scores > 0.3
    assert np.all(np.isfinite(det.boxes.data[:, :7]))
    assert abs(int((det.scores > 0.3).sum()) - int(keep.sum())) <= 1
    for box, label in zip(ref.boxes.data[keep], ref.labels[keep]):
        d = np.linalg.norm(det.boxes.data[:, :2] - box[:2], axis=1)
        d[det.labels != label] = np.inf
        assert d.min() < tol_m, box[:3]
    return int(keep.sum())


@pytest.fixture(scope="session")
def same_detections():
    """The check that two runs of a network (another precision, device or voxelizer) detect the same objects."""
    return _same_detections
