# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The cloud bridge's checks of a hard frame: it comes from a robot, so it is untrusted.

:func:`check_hard_frame` runs on arrival (robot id, empty image, payload size and, with
``max_pixels``, the pixels the image's header declares; no decoding),
:func:`decode_hard_frame` on the labelling worker (the JPEG or PNG frame and the optional PNG
edge label, which must decode and match the frame's size). Messages are duck-typed
(a laecips_msgs/HardFrame: robot_id, image, edge_label); both raise
:class:`HardFrameError` (and nothing else) for anything malformed.
"""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
from PIL import Image

from laecips_core import codecs

# A robot id names the robot's namespace (the trainer calls /{robot_id}/edge/update_weights):
# ROS name tokens (a letter or _ first) joined by '/', nothing else (no spaces, no newlines).
ROBOT_ID = re.compile(r'[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*')
MAX_ROBOT_ID = 128
MAX_PAYLOAD_BYTES = 16 << 20


class HardFrameError(ValueError):
    """A hard frame the bridge refuses: bad robot id, empty, oversized or corrupt payload."""


def check_robot_id(robot_id: str) -> None:
    """Raise HardFrameError unless ``robot_id`` can name a ROS namespace (see ROBOT_ID)."""
    if not (len(robot_id) <= MAX_ROBOT_ID and ROBOT_ID.fullmatch(robot_id)):
        raise HardFrameError(f'bad robot id {robot_id[:40]!r}: expected ROS name tokens '
                             f'(letters, digits, _; not starting with a digit) joined by /, '
                             f'at most {MAX_ROBOT_ID} characters')


def payload_size(msg: Any) -> int:
    """Return the bytes of a hard frame's image and edge label."""
    return len(msg.image.data) + len(msg.edge_label.data)


def check_hard_frame(msg: Any, max_payload_bytes: int, max_pixels: int | None = None) -> None:
    """Cheap checks on arrival, before queueing (no decoding); raise HardFrameError."""
    check_robot_id(msg.robot_id)
    if not len(msg.image.data):
        raise HardFrameError('empty image')
    size = payload_size(msg)
    if size > max_payload_bytes:
        raise HardFrameError(f'payload of {size} bytes (limit {max_payload_bytes})')
    if max_pixels is not None:
        # A decompression bomb is refused (counted as rejected) on arrival, before it takes
        # a queue slot; a header that does not parse is left to the decoder's verdict.
        try:
            w, h = Image.open(io.BytesIO(bytes(msg.image.data)), formats=('JPEG', 'PNG')).size
        except Exception:
            return
        if w * h > max_pixels:
            raise HardFrameError(f'image: compressed image too large: {w}x{h} is over the '
                                 f'limit of {max_pixels} pixels')


def decode_hard_frame(msg: Any, max_payload_bytes: int = MAX_PAYLOAD_BYTES,
                      max_pixels: int = codecs.MAX_PIXELS
                      ) -> tuple[np.ndarray, np.ndarray | None]:
    """
    Check and decode a hard frame: return (HxWx3 uint8 RGB, HxW uint8 edge label or None).

    Raises HardFrameError (and nothing else) for a bad robot id, an empty, oversized or
    corrupt image, or an edge label that is not an 8-bit PNG of the frame's size.
    """
    check_hard_frame(msg, max_payload_bytes)
    try:
        rgb = codecs.compressed_to_rgb(msg.image, max_pixels)
    except codecs.CodecError as e:
        raise HardFrameError(f'image: {e}') from e
    edge = None
    if len(msg.edge_label.data):
        try:  # the size is checked from the PNG header, before decompressing
            edge = codecs.compressed_to_label(msg.edge_label, rgb.shape[:2], max_pixels)
        except codecs.CodecError as e:
            raise HardFrameError(f'edge label: {e}') from e
    return rgb, edge
