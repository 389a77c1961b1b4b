# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Teacher health: whether the cloud labeller is out of its depth on this robot's stream.

No ground truth is needed. A labeller that meets conditions it has not learned loses its
*confident* pixels: the fraction of pixels whose top-1 probability is at least
``CONFIDENT`` (0.9) falls. The monitor compares that fraction, averaged over the last
``window`` labels of one robot, with the same statistic on the anchor set (frames the cloud
has labels for and trusts; see :mod:`laecips_core.calibration`):

    score = window mean / reference        healthy while score >= trip
                                           unhealthy once it drops below ``trip``,
                                           healthy again once it is back above ``recover``

The hysteresis (``recover`` > ``trip``) keeps a borderline stream from flapping. Measured
with ESPNet-C (``docs/eval``): the fraction is 0.83 on clean day frames, 0.75-0.83 on the
dusk drive (where the labeller is right, 57-83 mIoU), and 0.27-0.41 under sensor noise
(where it is wrong, 3-15 mIoU, below the edge): score about 0.9 against 0.3-0.5.

What it cannot see: a labeller that stays confident while wrong (strong haze made
ESPNet-C *more* confident). Against that the trainer's anchor gate and the edge's
calibrated fusion remain; a labeller without confidence is never judged (always healthy).
"""

from __future__ import annotations

from collections import deque
import math

import numpy as np

CONFIDENT = 0.9
UNKNOWN, HEALTHY, UNHEALTHY = 0, 1, 2  # CloudLabel.teacher_state


def confident_fraction(conf: np.ndarray) -> float:
    """Return the fraction of pixels with raw confidence >= CONFIDENT (NaN if empty)."""
    c = np.asarray(conf)
    return float((c >= CONFIDENT).mean()) if c.size else math.nan


class TeacherHealth:
    """The health verdict for one robot's stream, updated label by label."""

    def __init__(self, reference: float, window: int = 8, trip: float = 0.75,
                 recover: float = 0.85, min_labels: int = 4):
        if not (math.isfinite(reference) and reference > 0):
            raise ValueError(f'reference must be a positive number, got {reference}')
        if not 0 < trip <= recover:
            raise ValueError(f'need 0 < trip <= recover, got {trip}, {recover}')
        if window < 1 or not 1 <= min_labels <= window:
            raise ValueError(f'need 1 <= min_labels <= window, got {min_labels}, {window}')
        self.reference, self.trip, self.recover = float(reference), trip, recover
        self.min_labels = min_labels
        self.values: deque[float] = deque(maxlen=window)
        self.healthy = True
        self.trips = 0  # times it went unhealthy

    @property
    def score(self) -> float:
        """Window mean / reference (NaN before the first label)."""
        return float(np.mean(self.values)) / self.reference if self.values else math.nan

    def update(self, fraction: float) -> bool:
        """Add one label's confident fraction; return whether the teacher is healthy now."""
        if math.isfinite(fraction):
            self.values.append(float(fraction))
        if len(self.values) >= self.min_labels:
            s = self.score
            if self.healthy and s < self.trip:
                self.healthy = False
                self.trips += 1
            elif not self.healthy and s >= self.recover:
                self.healthy = True
        return self.healthy

    def reset(self) -> None:
        """Forget the window (a new stream: the robot restarted)."""
        self.values.clear()
        self.healthy = True

    @property
    def state(self) -> int:
        """HEALTHY or UNHEALTHY (CloudLabel.teacher_state)."""
        return HEALTHY if self.healthy else UNHEALTHY
