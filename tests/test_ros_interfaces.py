"""ROS interfaces that have no PyPI wheel here (vision_msgs, launch, launch_ros, colcon): the Detection3DArray
builder against the real vision_msgs 4.x definitions, the vision_msgs probe, the launch file's parameter-file
resolution (with the real ament_index_python) and the colcon packaging files (package.xml, setup.py, setup.cfg).
"""

from __future__ import annotations

import configparser
import importlib.util
import math
import runpy
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from perception.geometry import box_corners, wrap_angle
from perception.outputs import RclpyTypes, detections_to_detection3d_array, vision_msgs_available
from perception.types import DETECTION_CLASSES, Boxes3D, Detections

ROOT = Path(__file__).resolve().parents[1]
STAMP_NS = 1_700_000_000_123_456_789
FRAME = "base_link"

# vision_msgs 4.x (ROS 2 Humble..Kilted) .msg definitions, comments dropped
VISION_MSGS = {
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose": "ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n",
    "vision_msgs/msg/BoundingBox3D": "geometry_msgs/Pose center\ngeometry_msgs/Vector3 size\n",
    "vision_msgs/msg/Detection3D": "std_msgs/Header header\nObjectHypothesisWithPose[] results\n"
                                   "BoundingBox3D bbox\nstring id\n",
    "vision_msgs/msg/Detection3DArray": "std_msgs/Header header\nDetection3D[] detections\n",
}


def _pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10 (ROS 2 Humble)
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _vision_fields() -> dict:
    from rosbags.typesys import get_types_from_msg

    out = {}
    for name, text in VISION_MSGS.items():
        out.update(get_types_from_msg(text, name))
    return out


# -- detections under test -----------------------------------------------------------------------------------
BOXES = np.array([  # x y z l w h yaw: l != w everywhere so a swapped size shows
    [10.0, -2.5, 0.8, 4.6, 1.9, 1.6, 0.3],
    [-5.2, 7.1, 1.1, 0.8, 0.6, 1.75, -2.9],
    [25.0, 3.3, 1.5, 12.0, 2.9, 3.8, 3.0],     # score below min_score: dropped
    [3.0, -9.0, 0.5, 1.2, 0.7, 1.1, 4.0],      # yaw past pi: comes back wrapped
])
NAMES = ["car", "pedestrian", "truck", "bicycle"]
SCORES = np.array([0.9, 0.55, 0.1, 0.35], np.float32)
TOKENS = ["trk-1", "trk-2", "trk-3", "trk-4"]
MIN_SCORE = 0.2
KEPT = [0, 1, 3]


def _detections(tokens=True) -> Detections:
    labels = [DETECTION_CLASSES.index(n) for n in NAMES]
    return Detections(Boxes3D(BOXES, labels, instance_tokens=TOKENS if tokens else None), SCORES)


def _xyz(v) -> tuple[float, float, float]:
    return (v.x, v.y, v.z)


def _check_array(msg, tokens=True):
    """``msg`` (any message implementation with the vision_msgs field names) carries exactly KEPT."""
    sec, nanosec = divmod(STAMP_NS, 1_000_000_000)
    headers = [msg.header] + [d.header for d in msg.detections]
    for h in headers:
        assert (h.stamp.sec, h.stamp.nanosec, h.frame_id) == (sec, nanosec, FRAME)
    assert len(msg.detections) == len(KEPT)
    corners = _detections().boxes.corners()
    for d, k in zip(msg.detections, KEPT):
        x, y, z, l, w, h, yaw = BOXES[k]
        assert len(d.results) == 1
        hyp = d.results[0].hypothesis
        assert hyp.class_id == NAMES[k]
        assert hyp.score == float(SCORES[k])
        assert d.id == (TOKENS[k] if tokens else "")
        c = d.bbox.center
        assert _xyz(c.position) == (x, y, z)
        assert _xyz(d.bbox.size) == (l, w, h)  # BoundingBox3D size: x = length (heading), y = width, z = height
        q = c.orientation
        assert (q.x, q.y) == (0.0, 0.0)
        assert math.isclose(q.w ** 2 + q.z ** 2, 1.0, rel_tol=1e-12)
        yaw_back = 2.0 * math.atan2(q.z, q.w)
        assert math.isclose(float(wrap_angle(yaw_back - yaw)), 0.0, abs_tol=1e-12)
        # the quaternion turns +x (the box's length axis) onto the heading
        hx, hy = 1.0 - 2.0 * q.z ** 2, 2.0 * q.w * q.z
        assert np.allclose([hx, hy], [math.cos(yaw), math.sin(yaw)], atol=1e-12)
        # the message alone rebuilds the box: same corners as Boxes3D
        rebuilt = box_corners(np.array([[*_xyz(c.position), *_xyz(d.bbox.size), yaw_back]]))[0]
        assert np.allclose(rebuilt, corners[k], atol=1e-9)
        # the hypothesis pose is the box centre, with no covariance claimed
        p = d.results[0].pose
        assert _xyz(p.pose.position) == (x, y, z)
        assert (p.pose.orientation.z, p.pose.orientation.w) == (q.z, q.w)
        assert len(p.covariance) == 36 and not np.any(np.asarray(p.covariance))


# -- rclpy-style stand-ins for vision_msgs (real geometry/std/builtin classes from the rclpy wheels) --------------
def _standin(name: str, fields: list, types) -> type:
    """A class like rclpy's generated ones: keyword constructor with defaults, unknown keyword or wrongly typed
    value rejected (rclpy asserts: a numpy float32 is not a float64 field, a dict is not a message)."""

    def check(field, value):
        kind, spec = fields_by_name[field]
        if kind.name == "BASE":
            want = {"string": str, "float64": float}[spec[0]]
            ok = isinstance(value, want) and not isinstance(value, bool)
        elif kind.name == "NAME":
            ok = isinstance(value, types[spec])
        elif kind.name == "SEQUENCE":
            ok = isinstance(value, list) and all(isinstance(v, types[spec[0][1]]) for v in value)
        else:
            raise AssertionError(f"stand-in {name}: field kind {kind} not modelled")
        if not ok:
            raise TypeError(f"{name}.{field}: {type(value).__name__} {value!r} does not fit {spec}")

    def default(kind, spec):
        if kind.name == "BASE":
            return {"string": "", "float64": 0.0}[spec[0]]
        if kind.name == "NAME":
            return types[spec]()
        return []

    fields_by_name = dict(fields)

    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(fields_by_name)
        if unknown:
            raise TypeError(f"{name}: no fields {sorted(unknown)}")
        for field, (kind, spec) in fields:
            value = kwargs[field] if field in kwargs else default(kind, spec)
            check(field, value)
            object.__setattr__(self, field, value)

    def __setattr__(self, field, value):
        if field not in fields_by_name:
            raise AttributeError(f"{name}: no field {field!r}")
        check(field, value)
        object.__setattr__(self, field, value)

    return type(name.rsplit("/", 1)[1], (), {"__slots__": tuple(fields_by_name), "__init__": __init__,
                                               "__setattr__": __setattr__})


class StandinTypes:
    """vision_msgs/* -> stand-ins built from VISION_MSGS; everything else -> the real rclpy classes."""

    def __init__(self):
        self.real = RclpyTypes()
        self.vision = {}
        for name, (_consts, fields) in _vision_fields().items():
            self.vision[name] = _standin(name, fields, self)

    def __getitem__(self, name):
        return self.vision[name] if name.startswith("vision_msgs/") else self.real[name]


@pytest.fixture(scope="module")
def standin_types():
    pytest.importorskip("geometry_msgs.msg")
    pytest.importorskip("std_msgs.msg")
    return StandinTypes()


def test_standins_are_strict(standin_types):
    """The stand-ins reject what rclpy rejects, so the builder's types are really checked."""
    hyp = standin_types["vision_msgs/msg/ObjectHypothesis"]
    assert hyp(class_id="car", score=0.5).score == 0.5
    with pytest.raises(TypeError):
        hyp(class_id="car", score=np.float32(0.5))
    with pytest.raises(TypeError):
        hyp(label="car")
    with pytest.raises(TypeError):
        standin_types["vision_msgs/msg/BoundingBox3D"](center=standin_types["geometry_msgs/msg/Point"]())


def test_detection3d_array_rclpy_classes(standin_types):
    msg = detections_to_detection3d_array(standin_types, _detections(), STAMP_NS, FRAME, min_score=MIN_SCORE)
    assert type(msg) is standin_types["vision_msgs/msg/Detection3DArray"]
    assert type(msg.header) is standin_types["std_msgs/msg/Header"]
    _check_array(msg)


def test_detection3d_array_without_tokens_and_empty(standin_types):
    msg = detections_to_detection3d_array(standin_types, _detections(tokens=False), STAMP_NS, FRAME,
                                          min_score=MIN_SCORE)
    _check_array(msg, tokens=False)
    empty = detections_to_detection3d_array(standin_types, _detections(), STAMP_NS, FRAME, min_score=0.95)
    assert empty.detections == [] and empty.header.frame_id == FRAME
    assert len(detections_to_detection3d_array(standin_types, Detections.empty(), STAMP_NS, FRAME).detections) == 0


def test_detection3d_array_rosbags_cdr_roundtrip():
    """The offline path: rosbags typestore with the vision_msgs definitions registered; the message survives
    CDR serialization (fixed-size covariance, strings, nested sequences) and decodes to the same content."""
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    store.register(_vision_fields())
    msg = detections_to_detection3d_array(store.types, _detections(), STAMP_NS, FRAME, min_score=MIN_SCORE)
    _check_array(msg)
    raw = store.serialize_cdr(msg, "vision_msgs/msg/Detection3DArray")
    back = store.deserialize_cdr(raw, "vision_msgs/msg/Detection3DArray")
    _check_array(back)


# -- vision_msgs probe -------------------------------------------------------------------------------------------
def test_vision_msgs_not_available_here():
    assert "vision_msgs" not in sys.modules
    assert vision_msgs_available() is False
    assert "vision_msgs" not in sys.modules


def test_vision_msgs_available_finds_without_importing(tmp_path, monkeypatch):
    pkg = tmp_path / "vision_msgs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('vision_msgs must not be imported by the probe')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert vision_msgs_available() is True
    assert "vision_msgs" not in sys.modules


# -- launch file -------------------------------------------------------------------------------------------------
def _load_launch(path: Path):
    spec = importlib.util.spec_from_file_location(f"launch_under_test_{abs(hash(path))}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # imports no launch/launch_ros: they are only in generate_launch_description
    return mod


def _setup_data_files() -> list[tuple[str, list[str]]]:
    return runpy.run_path(str(ROOT / "setup.py"), run_name="setup_under_test")["data_files"]()


def test_launch_from_source_checkout(monkeypatch):
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    launch = _load_launch(ROOT / "ros_nodes" / "launch" / "fusion.launch.py")
    assert launch.source_root() == ROOT
    params = launch.params_file()
    assert params == ROOT / "ros_nodes" / "params" / "fusion.yaml" and params.is_file()
    assert launch.share_dir() is None
    cmd = launch.source_command(str(params), python="python3")
    assert cmd[:3] == ["python3", "-m", "ros_nodes.fusion_node"]
    assert cmd[cmd.index("--params-file") + 1] == str(params)
    # the node name the launch gives is the key the parameter file is written for
    assert list(yaml.safe_load(params.read_text())) == [launch.NODE_NAME]
    # launch_ros runs this console script of the package: it must exist and start the fusion node
    project = _pyproject()
    assert project["scripts"][launch.EXECUTABLE] == "ros_nodes.fusion_node:entry"
    assert launch.PACKAGE == project["name"]


def test_launch_installed_layout(tmp_path, monkeypatch):
    """Lay the files out as colcon installs them (setup.py's data_files under a prefix); the installed launch file
    finds its share directory through the real ament_index_python and uses the installed parameter file."""
    pytest.importorskip("ament_index_python")
    prefix = tmp_path / "install" / "promptfusion"
    for dest, files in _setup_data_files():
        (prefix / dest).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(ROOT / f, prefix / dest / Path(f).name)
    share = prefix / "share" / "promptfusion"
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    launch = _load_launch(share / "launch" / "fusion.launch.py")
    assert launch.source_root() is None
    assert launch.share_dir() == share
    params = launch.params_file()
    assert params == share / "params" / "fusion.yaml"
    assert params.read_text() == (ROOT / "ros_nodes" / "params" / "fusion.yaml").read_text()
    # not sourced: the installed copy says so instead of guessing
    monkeypatch.delenv("AMENT_PREFIX_PATH")
    assert launch.share_dir() is None
    with pytest.raises(FileNotFoundError, match="ament index"):
        launch.params_file()
    assert launch.params_file(share=share) == share / "params" / "fusion.yaml"


# -- colcon packaging --------------------------------------------------------------------------------------------
def test_package_xml_agrees_with_pyproject():
    project = _pyproject()
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == project["name"] == "promptfusion"
    assert root.findtext("version") == project["version"]
    license_ = project["license"]
    assert root.findtext("license") == (license_["text"] if isinstance(license_, dict) else license_)
    assert root.find("maintainer").get("email")
    assert root.findtext("export/build_type") == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    needed = {"rclpy", "std_msgs", "sensor_msgs", "geometry_msgs", "visualization_msgs", "diagnostic_msgs",
              "tf2_msgs", "vision_msgs", "launch", "launch_ros"}
    assert needed <= deps, sorted(needed - deps)


def test_setup_data_files_exist():
    files = dict(_setup_data_files())
    name = _pyproject()["name"]
    assert files["share/ament_index/resource_index/packages"] == [f"resource/{name}"]
    assert files[f"share/{name}"] == ["package.xml"]
    assert "ros_nodes/launch/fusion.launch.py" in files[f"share/{name}/launch"]
    assert {"ros_nodes/params/fusion.yaml", "ros_nodes/params/fastdds.xml"} <= set(files[f"share/{name}/params"])
    for dest, srcs in files.items():
        assert srcs, dest
        for f in srcs:
            assert not Path(f).is_absolute() and (ROOT / f).is_file(), f


def test_setup_cfg_puts_scripts_where_ros2_run_looks():
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    lib = f"$base/lib/{_pyproject()['name']}"
    assert cfg["develop"]["script_dir"] == lib
    assert cfg["install"]["install_scripts"] == lib
