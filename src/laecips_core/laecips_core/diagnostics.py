# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The edge's, the bridge's and the trainer's health as diagnostic statuses (no rclpy).

Levels are diagnostic_msgs/DiagnosticStatus's: OK 0, WARN 1, ERROR 2, STALE 3. Each function
takes a node's cumulative counters now and at its previous report (an EdgeStats or
CloudStats message, or a dict with the same field names; ``before`` None on the first
report) and returns a :class:`Status`: the worst level, a message naming each problem of
the period, and key values. ``laecips_ros.diagnostics`` publishes them on ``/diagnostics``
(rqt_robot_monitor, diagnostic_aggregator).

What is not OK:

* edge: WARN no cloud (uploads chosen while no bridge was matched), skipping frames (more
  than ``skip_warn`` of the camera frames skipped or lost), updates refused, the cloud
  teacher unhealthy (its labels not trusted), labels or camera frames rejected, no camera
  frames in the period; ERROR camera frames arrive and none is segmented.
* bridge: WARN the teacher unhealthy for some robots, hard frames dropped from a full queue
  or rejected; ERROR hard frames arrive and no label has gone out for a whole period.
* trainer: WARN a robot's teacher unhealthy (not learning, not pushing), updates refused or
  failed, labels or pairs refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: 'OK', WARN: 'WARN', ERROR: 'ERROR', STALE: 'STALE'}


@dataclass
class Status:
    """One DiagnosticStatus as plain data."""

    name: str
    hardware_id: str = ''
    level: int = OK
    problems: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)

    @property
    def message(self) -> str:
        """Return the problems joined, or 'ok'."""
        return '; '.join(self.problems) or 'ok'

    def add(self, level: int, text: str) -> None:
        """Record a problem; the status takes the worst level."""
        self.level = max(self.level, level)
        self.problems.append(text)


def _get(stats, name: str, default=0):
    if stats is None:
        return default
    if isinstance(stats, dict):
        return stats.get(name, default)
    return getattr(stats, name, default)


def _delta(now, before, name: str) -> int:
    return int(_get(now, name)) - (int(_get(before, name)) if before is not None else 0)


def _values(stats, names: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for n in names:
        v = _get(stats, n, None)
        if v is not None:
            out[n] = f'{v:.3g}' if isinstance(v, float) else str(v)
    return out


EDGE_VALUES = ('frames_in', 'masks_out', 'skipped', 'camera_lost', 'rejected', 'fps',
               'latency_p50_ms', 'latency_p95_ms', 'uploaded', 'upload_ratio', 'no_cloud',
               'held_back', 'labels_in', 'labels_rejected', 'labels_untrusted',
               'cloud_trusted', 'updates_accepted', 'updates_rejected', 'model_version')


def edge_status(now, before=None, name: str = 'laecips edge', skip_warn: float = 0.1) -> Status:
    """Return the edge's status from its EdgeStats now and at the previous report."""
    s = Status(name, str(_get(now, 'robot_id', '')))
    s.values = _values(now, EDGE_VALUES)
    policy = _get(now, 'policy', None)
    if policy is not None:
        s.values['policy'] = str(_get(policy, 'rule', ''))
    frames, masks = _delta(now, before, 'frames_in'), _delta(now, before, 'masks_out')
    skipped, lost = _delta(now, before, 'skipped'), _delta(now, before, 'camera_lost')
    rejected = _delta(now, before, 'rejected')
    offered = frames + lost
    if frames > 0 and masks == 0 and rejected >= frames:
        s.add(ERROR, f'every camera frame refused ({rejected}): see the log for why '
              '(encoding, size)')
    elif rejected:
        s.add(WARN, f'{rejected} camera frames refused')
    if before is not None and offered == 0:
        s.add(WARN, 'no camera frames')
    elif offered and (skipped + lost) / offered > skip_warn:
        s.add(WARN, f'skipping frames: {skipped} skipped and {lost} lost of {offered} '
              f'({(skipped + lost) / offered:.0%})')
    no_cloud = _delta(now, before, 'no_cloud')
    if no_cloud:
        s.add(WARN, f'no cloud: {no_cloud} uploads not sent (no cloud bridge matched)')
    if not _get(now, 'cloud_trusted', True):
        s.add(WARN, 'cloud teacher unhealthy on this stream: its labels are not trusted, '
              'the edge keeps its own masks')
    refused = _delta(now, before, 'updates_rejected')
    if refused:
        s.add(WARN, f'{refused} weight updates refused')
    bad_labels = _delta(now, before, 'labels_rejected')
    if bad_labels:
        s.add(WARN, f'{bad_labels} cloud labels rejected')
    return s


BRIDGE_VALUES = ('labeller', 'device', 'frames_in', 'labels_out', 'dropped_queue', 'rejected',
                 'queue_len', 'mean_batch', 'seconds_per_frame', 'labels_unhealthy',
                 'robots_unhealthy')


def bridge_status(now, before=None, name: str = 'laecips cloud bridge') -> Status:
    """Return the bridge's status from its CloudStats now and at the previous report."""
    s = Status(name, 'cloud')
    s.values = _values(now, BRIDGE_VALUES)
    frames, labels = _delta(now, before, 'frames_in'), _delta(now, before, 'labels_out')
    if before is not None and frames > 0 and labels == 0 and _get(now, 'queue_len') > 0:
        s.add(ERROR, f'{frames} hard frames in and no label out (the labeller is stuck or '
              'too slow)')
    unhealthy = int(_get(now, 'robots_unhealthy'))
    if unhealthy:
        s.add(WARN, f'teacher unhealthy for {unhealthy} robot(s): their labels are marked '
              'untrusted')
    dropped = _delta(now, before, 'dropped_queue')
    if dropped:
        s.add(WARN, f'queue full: {dropped} hard frames dropped')
    rejected = _delta(now, before, 'rejected')
    if rejected:
        s.add(WARN, f'{rejected} hard frames rejected (robot id, size or decoding)')
    return s


def trainer_status(now: dict, before: dict | None = None,
                   name: str = 'laecips trainer') -> Status:
    """
    Return the trainer's status.

    ``now``: ``{'counts': {'frames', 'labels', 'pairs', 'bad', 'untrusted'}, 'robots':
    {robot_id: {'teacher_ok': bool, 'pairs': int, 'pushes': {'accepted', 'rejected',
    'failed'}}}}``, cumulative.
    """
    s = Status(name, 'cloud')
    counts, before_counts = now.get('counts', {}), (before or {}).get('counts')
    s.values = {k: str(v) for k, v in counts.items()}
    bad = _delta(counts, before_counts, 'bad')
    if bad:
        s.add(WARN, f'{bad} labels or pairs refused')
    for rid, robot in sorted(now.get('robots', {}).items()):
        pushes = robot.get('pushes', {})
        prev = ((before or {}).get('robots', {}).get(rid) or {}).get('pushes')
        s.values[f'{rid}.teacher_ok'] = str(bool(robot.get('teacher_ok', True)))
        s.values[f'{rid}.pairs'] = str(robot.get('pairs', 0))
        s.values[f'{rid}.pushes'] = ', '.join(f'{k} {v}' for k, v in pushes.items())
        if not robot.get('teacher_ok', True):
            s.add(WARN, f'{rid}: cloud teacher unhealthy: not learning from its labels, '
                  'not pushing')
        refused = _delta(pushes, prev, 'rejected') + _delta(pushes, prev, 'failed')
        if refused:
            s.add(WARN, f'{rid}: {refused} updates refused or failed')
    return s
