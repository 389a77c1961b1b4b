# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Drift on the edge, from its own hardness: when the stream turns harder than it has been.

The upload budget saves in steady state and spends the savings when the conditions change
(``laecips_core.policy.Budget``). This says when, from one number the edge computes for
every frame anyway: its mean normalised entropy (``hardness.features``[1]). A fast average
(a few frames) is compared with a slow reference (its mean and spread over the last few
hundred steady frames): the stream drifts while the fast one sits more than ``sigmas``
spreads above the reference. On CamVid the factory model's entropy goes from 0.22 +- 0.03
by day to 0.33-0.41 within a frame of the first dusk frame, where the first layer's BatchNorm
shift (``bn_adapt``) takes tens of frames and restarts with every push.

The reference stays frozen while the stream drifts, so a drift lasts until the edge has
adapted (pushed weights bring the entropy back down) or, for a change that no push undoes
(a darker site for good), until ``max_frames`` have passed: then the new level becomes the
reference. The detector only spends savings sooner; the budget's long-run rate holds
whatever it says.
"""

from __future__ import annotations

import math

FAST_HALF_LIFE = 2.0  # frames: a new condition shows within a few frames
SLOW_HALF_LIFE = 150.0  # frames: the reference is the recent steady state
WARMUP = 60  # frames before any verdict (the reference needs a spread it can trust)
MIN_SPREAD = 0.02  # entropy units: a nearly constant stream must not alarm on noise


def _alpha(half_life: float) -> float:
    return 1.0 - 0.5 ** (1.0 / half_life)


class DriftDetector:
    """Say, frame by frame, whether a hardness statistic has risen above its steady state."""

    def __init__(self, sigmas: float = 3.0, max_frames: int = 600) -> None:
        if not (math.isfinite(sigmas) and sigmas > 0 and max_frames >= 1):
            raise ValueError(f'drift detector needs sigmas > 0 and max_frames >= 1, not '
                             f'{sigmas}, {max_frames}')
        self.sigmas, self.max_frames = float(sigmas), int(max_frames)
        self.fast = self.mean = math.nan
        self.var = 0.0
        self.n = 0
        self.drifting = False
        self.drift_frames = 0  # frames of the current drift
        self.drifts = 0  # drifts begun so far

    def update(self, x: float) -> bool:
        """Take one frame's statistic; return whether the stream drifts now."""
        if not math.isfinite(x):
            return self.drifting
        self.n += 1
        if self.n == 1:
            self.fast = self.mean = float(x)
            return False
        self.fast += _alpha(FAST_HALF_LIFE) * (x - self.fast)
        spread = max(math.sqrt(self.var), MIN_SPREAD)
        if self.drifting:
            self.drift_frames += 1
            # Hysteresis: it ends half-way back, or becomes the new normal after max_frames.
            if self.fast <= self.mean + 0.5 * self.sigmas * spread:
                self.drifting = False
            elif self.drift_frames >= self.max_frames:
                self.drifting = False
                self.mean, self.var = self.fast, 0.0
                self.n = 1  # a new warm-up: the spread of the new level is unknown
            return self.drifting
        if self.n > WARMUP and self.fast > self.mean + self.sigmas * spread:
            self.drifting, self.drift_frames = True, 0
            self.drifts += 1
            return True
        d = x - self.mean
        if self.n > WARMUP and abs(d) > self.sigmas * spread:
            return False  # an outlier, or the first frames of a drift: not the steady state
        a = _alpha(SLOW_HALF_LIFE) if self.n > WARMUP else 1.0 / self.n
        self.mean += a * d
        self.var = (1 - a) * (self.var + a * d * d)
        return False


__all__ = ['DriftDetector']
