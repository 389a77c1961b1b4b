# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Camera frames DDS dropped before the node saw them, from publication sequence numbers.

A DDS writer numbers its samples 1, 2, 3, ...; the subscription's message info carries that
number (``publication_sequence_number``). A gap between two frames the node took from the
same writer is frames it never saw, whatever dropped them: the reader's KEEP_LAST history
overwriting frames the node had no time to take (no DDS event at all), best-effort loss
(Fast DDS reports part of it as message_lost), a reliable writer giving samples up.

Limits (the README's accounting section says the same): Kilted's message info names the
writer (``publisher_gid``) and gaps are counted per writer; Jazzy's does not, so there gaps
are counted only while exactly one publisher is matched, and a number lower than the last
starts a new writer (a restarted camera) and counts nothing. Either way, frames a writer
sent before the first one this node took, and frames lost after the last one it took, are
not seen as gaps (the latter are counted once a later frame arrives). DDS's own message_lost
reports are kept beside: the count given is the larger of the two (both are lower bounds of
what was lost, and the gaps include what DDS reports).
"""

from __future__ import annotations

from collections import OrderedDict

# Writers remembered by GID (a camera restarting now and then makes a new one each time).
MAX_WRITERS = 64


class CameraLoss:
    """Count frames lost between the camera's writer and the node's callback."""

    def __init__(self) -> None:
        self.gaps = 0  # frames missing between consecutive sequence numbers
        self.reported = 0  # DDS's message_lost event totals
        # The last sequence number taken, per writer (None: the writer is not named).
        self.last: OrderedDict[object, int] = OrderedDict()

    def frame(self, seq: int | None, single_publisher: bool, writer: object = None) -> int:
        """
        Take a frame's publication sequence number; return how many it shows were lost.

        ``writer`` identifies the DDS writer when the middleware says (a GID), else None;
        ``single_publisher``: exactly one publisher is matched (used when ``writer`` is None).
        """
        if not seq or seq < 0:  # 0/None: the middleware gives no numbers
            self.last.pop(writer, None)
            return 0
        last = self.last.pop(writer, None)
        self.last[writer] = seq
        while len(self.last) > MAX_WRITERS:
            self.last.popitem(last=False)
        if last is None or seq <= last or (writer is None and not single_publisher):
            # First frame of a writer, a new one (numbers start again), or unnamed writers
            # interleaved: a gap here would not mean lost frames.
            return 0
        lost = seq - last - 1
        self.gaps += lost
        return lost

    def report(self, n: int) -> None:
        """Add ``n`` frames DDS reported lost (the subscription's message_lost event)."""
        self.reported += max(0, int(n))

    @property
    def lost(self) -> int:
        """Frames lost before the node saw them, as far as can be known (never double)."""
        return max(self.gaps, self.reported)
