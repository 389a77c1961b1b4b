# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
rosbag2 files through the `rosbags` library, with the laecips_msgs types registered.

rosbag2_py is not on PyPI, so bags are written and read with `rosbags`; its CDR bytes are
the same bytes rclpy (de)serializes, so messages cross between the two unchanged.
"""

from __future__ import annotations

from functools import lru_cache
import os
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore


def msgs_dir() -> Path:
    """Return the folder of laecips_msgs .msg files (installed share/, else the source)."""
    try:
        from ament_index_python.packages import get_package_share_directory
        d = Path(get_package_share_directory('laecips_msgs')) / 'msg'
        if d.is_dir():
            return d
    except (ImportError, LookupError, ValueError):
        pass
    return Path(__file__).resolve().parents[2] / 'laecips_msgs' / 'msg'


@lru_cache(maxsize=None)
def typestore(distro: str | None = None) -> Typestore:
    """Return a typestore for the ROS distro with every laecips_msgs message registered."""
    distro = (distro or os.environ.get('ROS_DISTRO') or 'jazzy').upper()
    store = get_typestore(getattr(Stores, f'ROS2_{distro}', Stores.ROS2_JAZZY))
    types = {}
    for path in sorted(msgs_dir().glob('*.msg')):
        types.update(get_types_from_msg(path.read_text(), f'laecips_msgs/msg/{path.stem}'))
    store.register(types)
    return store
