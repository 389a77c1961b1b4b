# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
laecips_core.classes.ClassMap <-> laecips_msgs/ClassMap: class names on the wire.

A consumer of an edge's masks (mono8 class ids) subscribes ``~/class_map`` (latched, see
``laecips_core.interface.EDGE_CLASS_MAP``) and maps ids to names and colours with
:func:`from_msg`.
"""

from __future__ import annotations

from laecips_core.classes import ClassMap


def to_msg(class_map: ClassMap, frame_id: str = '', stamp=None):
    """Return the laecips_msgs/ClassMap of ``class_map`` (colours scaled to 0..1)."""
    from std_msgs.msg import ColorRGBA

    from laecips_msgs.msg import ClassMap as ClassMapMsg
    msg = ClassMapMsg(names=list(class_map.names), void_id=int(class_map.void))
    msg.colors = [ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=1.0)
                  for r, g, b in class_map.colors]
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


def from_msg(msg) -> ClassMap:
    """Return the ClassMap a laecips_msgs/ClassMap describes (colours back to 0..255)."""
    colors = tuple(tuple(int(round(min(1.0, max(0.0, v)) * 255)) for v in (c.r, c.g, c.b))
                   for c in msg.colors)
    return ClassMap(tuple(msg.names), colors, int(msg.void_id))
