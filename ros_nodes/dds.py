"""DDS settings the node and the player apply before rclpy starts (see params/fastdds.xml)."""

import os
from pathlib import Path

PROFILE = Path(__file__).resolve().parent / "params" / "fastdds.xml"


def configure() -> None:
    if "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ and "FASTRTPS_DEFAULT_PROFILES_FILE" not in os.environ:
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
