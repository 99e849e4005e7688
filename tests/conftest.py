import os

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
