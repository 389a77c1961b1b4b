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

import numpy as np
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


STORAGES = ('mcap', 'sqlite3')
IMAGE = 'sensor_msgs/msg/Image'
HEADER = 'std_msgs/msg/Header'
FRAME_HEADER = 'laecips_msgs/msg/FrameHeader'  # HardFrame's bounded header: stamp first too
TIME = 'builtin_interfaces/msg/Time'


def storage_plugin(name: str):
    """Return the rosbags StoragePlugin for ``'mcap'`` or ``'sqlite3'``."""
    from rosbags.rosbag2 import StoragePlugin
    if name not in STORAGES:
        raise ValueError(f'storage must be one of {STORAGES}, not {name!r}')
    return StoragePlugin.MCAP if name == 'mcap' else StoragePlugin.SQLITE3


def image_cdr(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str,
              store: Typestore | None = None) -> bytes:
    """Serialize an HxW (mono8) or HxWx3 (rgb8) uint8 array as a sensor_msgs/Image (CDR)."""
    store = store or typestore()
    array = np.ascontiguousarray(array, np.uint8)
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    Image = store.types[IMAGE]  # noqa: N806 (a message class)
    Header = store.types[HEADER]  # noqa: N806
    Time = store.types[TIME]  # noqa: N806
    msg = Image(header=Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
                              frame_id=frame_id),
                height=h, width=w, encoding=encoding, is_bigendian=0, step=w * channels,
                data=array.reshape(-1))
    return bytes(store.serialize_cdr(msg, IMAGE))


def image_array(msg) -> np.ndarray:
    """Return a sensor_msgs/Image (rclpy or rosbags object) rgb8/mono8 as a numpy view."""
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray)
                         else msg.data.tobytes(), np.uint8)
    channels = {'mono8': 1, '8UC1': 1, 'rgb8': 3, 'bgr8': 3, '8UC3': 3}[msg.encoding]
    rows = data.reshape(msg.height, msg.step)[:, : msg.width * channels]
    arr = rows.reshape(msg.height, msg.width, channels)
    if msg.encoding == 'bgr8':
        arr = arr[..., ::-1]
    return arr[..., 0] if channels == 1 else arr


def header_stamp_offset(msgtype: str, store: Typestore | None = None) -> int | None:
    """
    Return the CDR byte offset of the stamp when a type's first field is a Header or a Time.

    The offset counts from the start of the serialized buffer (4 bytes of encapsulation
    header, then ``int32 sec`` and ``uint32 nanosec``); None when the type has no leading
    ``std_msgs/Header``, ``laecips_msgs/FrameHeader`` or ``builtin_interfaces/Time`` (no stamp to
    rewrite in place).
    """
    store = store or typestore()
    fields = store.get_msgdef(msgtype).fields
    if not fields:
        return None
    _, (_, name) = fields[0]
    return 4 if name in (HEADER, FRAME_HEADER, TIME) else None


def restamp_cdr(raw: bytes | bytearray, offset: int, stamp_ns: int) -> bytes:
    """Return ``raw`` with the header stamp at ``offset`` set to ``stamp_ns``."""
    buf = bytearray(raw)
    order = 'little' if buf[1] & 1 else 'big'  # encapsulation kind: odd = little endian
    buf[offset:offset + 4] = int(stamp_ns // 10**9).to_bytes(4, order, signed=True)
    buf[offset + 4:offset + 8] = int(stamp_ns % 10**9).to_bytes(4, order)
    return bytes(buf)


def cdr_stamp(raw: bytes | bytearray, offset: int) -> int:
    """Return the header stamp at ``offset`` of a CDR buffer, in nanoseconds."""
    order = 'little' if raw[1] & 1 else 'big'
    sec = int.from_bytes(raw[offset:offset + 4], order, signed=True)
    return sec * 10**9 + int.from_bytes(raw[offset + 4:offset + 8], order)
