# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The trainer's bookkeeping of (hard frame, cloud label) pairs, without ROS.

:class:`Joiner` pairs a hard frame with its cloud label by (robot_id, seq, camera stamp),
whichever arrives first (the stamp because an edge counts seq from 0 again when it
restarts); the unmatched wait, bounded in number and age. :class:`SeqContinuation`
continues a robot's seq across such a restart, so its newest frames stay the newest for the
policy fit. :func:`backoff_delay` is the retry delay of a push. Messages are duck-typed
(robot_id, seq, header.stamp).
"""

from __future__ import annotations

from collections import OrderedDict
import time
from typing import Any, Callable

# A robot's seq may go back this much (pairs completing out of order) without being taken
# for an edge restart.
SEQ_REORDER = 8

Key = tuple[str, int, int]


def join_key(msg: Any) -> Key:
    """Return the key that pairs a hard frame with its label: (robot_id, seq, stamp ns)."""
    stamp = msg.header.stamp
    return msg.robot_id, int(msg.seq), stamp.sec * 10**9 + stamp.nanosec


class Joiner:
    """Pair frames and labels by :func:`join_key`; not thread-safe (the caller locks)."""

    def __init__(self, max_items: int, timeout: float,
                 clock: Callable[[], float] = time.monotonic):
        self.max_items, self.timeout, self.clock = max_items, timeout, clock
        self.frames: OrderedDict[Key, tuple[float, Any]] = OrderedDict()
        self.labels: OrderedDict[Key, tuple[float, Any]] = OrderedDict()
        self.unmatched = 0  # halves dropped unpaired (too many or too old)

    def add_frame(self, frame: Any) -> Any | None:
        """Take a hard frame; return its waiting label (then the pair is complete), else None."""
        key = join_key(frame)
        label = self.labels.pop(key, None)
        if label is None:
            self._remember(self.frames, key, frame)
            return None
        return label[1]

    def add_label(self, label: Any) -> Any | None:
        """Take a cloud label; return its waiting frame, else None (the label waits)."""
        key = join_key(label)
        frame = self.frames.pop(key, None)
        if frame is None:  # the label overtook its frame: wait for it
            self._remember(self.labels, key, label)
            return None
        return frame[1]

    def _remember(self, table: OrderedDict, key: Key, msg: Any) -> None:
        now = self.clock()
        table[key] = (now, msg)
        table.move_to_end(key)
        while table and (len(table) > self.max_items
                         or now - next(iter(table.values()))[0] > self.timeout):
            table.popitem(last=False)
            self.unmatched += 1


class SeqContinuation:
    """
    One robot's seq, continued across edge restarts.

    A restart is a drop of more than ``reorder`` in seq *with a camera stamp newer than any
    seen*: a restarted edge counts from 0 again while time goes on. A frame labelled late
    (the bridge's training lane answers old frames when nothing fresh waits) also comes with
    a much lower seq, but with an old stamp: it keeps its own number.
    """

    def __init__(self, reorder: int = SEQ_REORDER):
        self.reorder = reorder
        self.base = 0  # added to the edge's seq, which starts from 0 at each edge start
        self.last = -1  # the largest continued seq so far
        self.newest: float | None = None  # the newest camera stamp so far (seconds)

    def __call__(self, seq: int, stamp: float | None = None) -> tuple[int, bool]:
        """Return (the continued seq, whether the edge restarted); ``stamp``: camera time."""
        s = seq + self.base
        late = stamp is not None and self.newest is not None and stamp <= self.newest
        if stamp is not None:
            self.newest = stamp if self.newest is None else max(self.newest, stamp)
        restarted = s < self.last - self.reorder and not late
        if restarted:  # the edge counts from 0 again: continue after what came before
            self.base = self.last + 1 - seq
            s = self.last + 1
        self.last = max(self.last, s)
        return s, restarted


def backoff_delay(failures: int, initial: float, maximum: float, at_least: float = 0.0
                  ) -> float:
    """
    Return the wait before the next try after ``failures`` (>= 1) failed ones.

    Exponential, so a missing or overloaded edge is not hammered; ``at_least`` lets a slow
    edge finish (after a timeout the next try waits at least the timeout again).
    """
    return max(at_least, min(maximum, initial * 2 ** (failures - 1)))
