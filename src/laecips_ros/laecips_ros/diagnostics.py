# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
/diagnostics for the LAECIPS nodes: laecips_core.diagnostics statuses as DiagnosticArray.

``Diagnostics(node, make)`` publishes ``make(now, before)`` (a Status or a list of them)
whenever :meth:`Diagnostics.update` is called with the node's current counters (its stats
timer), so rqt_robot_monitor and a diagnostic aggregator show each node's health.
"""

from __future__ import annotations

import copy
from typing import Callable

from laecips_core.diagnostics import Status

TOPIC = '/diagnostics'


def to_msg(statuses: list[Status], stamp=None):
    """Return a diagnostic_msgs/DiagnosticArray of ``statuses``."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    arr = DiagnosticArray()
    if stamp is not None:
        arr.header.stamp = stamp
    for s in statuses:
        arr.status.append(DiagnosticStatus(
            level=bytes([s.level]), name=s.name, message=s.message[:1000],
            hardware_id=s.hardware_id,
            values=[KeyValue(key=k, value=v) for k, v in s.values.items()]))
    return arr


class Diagnostics:
    """Publish a node's statuses on /diagnostics (depth 10, reliable, as diagnostic_updater)."""

    def __init__(self, node, make: Callable[[object, object], Status | list[Status]],
                 prefix: str | None = None):
        from diagnostic_msgs.msg import DiagnosticArray
        self.node = node
        self.make = make
        self.prefix = prefix if prefix is not None else node.get_fully_qualified_name()
        self.pub = node.create_publisher(DiagnosticArray, TOPIC, 10)
        self.before = None
        self.last: list[Status] = []

    def update(self, now) -> list[Status]:
        """Publish the statuses of ``now`` (counters) against the previous update's."""
        out = self.make(now, self.before)
        out = out if isinstance(out, list) else [out]
        for s in out:
            s.name = f'{self.prefix}: {s.name}' if self.prefix else s.name
        self.pub.publish(to_msg(out, self.node.get_clock().now().to_msg()))
        self.before = copy.deepcopy(now)
        self.last = out
        return out
