# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Push when it pays: weigh a candidate's validated gain against the bytes its push costs.

The trainer's gate (``gate_margin``) already demands a gain over the active version; this
rule adds the price of the link. ``bytes_per_point`` says how many downlink bytes one point
(0.01) of validated gain is worth; a candidate is pushed only when its gain, in points, is
at least its serialized push size divided by that. A candidate refused here is not lost: the
student keeps training and a later candidate, further ahead of the active version, pays.
"""

from __future__ import annotations

from dataclasses import dataclass
import math


@dataclass(frozen=True)
class Verdict:
    """Whether to push, and the reason in words (logged when it does not)."""

    push: bool
    reason: str


def pays(gain: float, push_bytes: int, bytes_per_point: float) -> Verdict:
    """
    Decide whether a candidate gaining ``gain`` (0-1 agreement) is worth ``push_bytes``.

    ``bytes_per_point`` <= 0 turns the rule off (every gated candidate is pushed).
    """
    if bytes_per_point <= 0:
        return Verdict(True, 'cost rule off')
    need = push_bytes / bytes_per_point  # points of gain this push must bring
    points = gain * 100.0
    if not math.isfinite(points) or points < need:
        return Verdict(False, f'gain {points:.2f} points < {need:.2f} points that '
                              f'{push_bytes} bytes cost at {bytes_per_point:.0f} bytes per '
                              'point')
    return Verdict(True, f'gain {points:.2f} points >= {need:.2f} points for {push_bytes} '
                         'bytes')
