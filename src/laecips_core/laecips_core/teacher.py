# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
What the cloud knows about its own labeller: a calibration, and its health per robot.

The bridge labels the anchor set once at start-up (frames it holds with their labels, see
:mod:`laecips_core.anchor`): the labeller's raw confidences against whether it was right
give its :class:`~laecips_core.calibration.Calibration`, and its confident-pixel fraction
there is the health reference (:mod:`laecips_core.health`). Then, per label,
:meth:`Teacher.judge` returns what goes on the wire: the calibrated confidence grid, its
mean, and the robot's teacher state.

Without an anchor set the calibration is the identity and the state is UNKNOWN (nothing to
compare with); a labeller without confidence is never judged either.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from laecips_core import calibration, fusion, health

# A robot's seq may go back this much (batches answered out of order) before we take it for
# a restart of its edge, i.e. a new stream whose health starts afresh.
SEQ_REORDER = 8


@dataclass
class Verdict:
    """One label's confidence and health, as the CloudLabel carries them."""

    grid: np.ndarray | None  # uint8 calibrated-confidence grid; None: no confidence
    mean: float  # mean calibrated confidence, NaN without confidence
    state: int  # health.UNKNOWN / HEALTHY / UNHEALTHY
    score: float  # health score, NaN when unknown


class Teacher:
    """Calibration and per-robot health of one labeller."""

    def __init__(self, cal: calibration.Calibration = calibration.IDENTITY,
                 reference: float = math.nan, stride: int = fusion.DEFAULT_STRIDE,
                 window: int = 8, trip: float = 0.75, recover: float = 0.85,
                 min_labels: int = 4, measure: Callable[[tuple[int, int]], float] | None = None):
        self.cal, self.reference, self.stride = cal, float(reference), int(stride)
        # A labeller is less sure of a smaller picture: the reference for frames of another
        # size is measured on the anchor frames resized to it (``measure``), once per size.
        self._measure = measure
        self._refs: dict[tuple[int, int], float] = {}
        self._health_args = dict(window=window, trip=trip, recover=recover,
                                 min_labels=min_labels)
        if math.isfinite(self.reference):  # checks the arguments now, not at the first label
            health.TeacherHealth(self.reference, **self._health_args)
        self.robots: dict[str, tuple[health.TeacherHealth, int]] = {}

    @classmethod
    def from_anchor(cls, label: Callable[[Sequence[np.ndarray]], list],
                    rgbs: Sequence[np.ndarray], truths: Sequence[np.ndarray], void: int,
                    **kwargs) -> 'Teacher':
        """
        Fit on anchor frames; ``label`` is the labeller's ``label_with_confidence``.

        A labeller without confidence gets the identity calibration and no reference.
        """
        def measure(shape: tuple[int, int]) -> float:
            out = []
            for rgb in rgbs:
                small = np.asarray(Image.fromarray(rgb).resize((shape[1], shape[0]),
                                                                Image.BILINEAR))
                (_, conf), = label([small])
                out.append(health.confident_fraction(conf))
            return float(np.mean(out))

        kwargs.setdefault('measure', measure)
        confs, correct, fractions = [], [], []
        for rgb, gt in zip(rgbs, truths):
            (lab, conf), = label([rgb])
            if conf is None:
                return cls(**kwargs)
            valid = gt != void
            confs.append(conf[valid])
            correct.append((lab == gt)[valid])
            fractions.append(health.confident_fraction(conf))
        if not confs:
            return cls(**kwargs)
        cal = calibration.fit(np.concatenate(confs), np.concatenate(correct))
        ref = float(np.mean(fractions))
        # A labeller never sure of the anchors gives nothing to compare with: not judged.
        t = cls(cal, ref if ref > 0 else math.nan, **kwargs)
        t._refs[tuple(rgbs[0].shape[:2])] = t.reference
        return t

    def reference_for(self, shape: tuple[int, int]) -> float:
        """Return the confident-pixel reference for frames of ``shape`` (measured once)."""
        shape = tuple(int(v) for v in shape)
        if shape not in self._refs:
            ref = self._measure(shape) if self._measure else self.reference
            # Never judge against nothing: a size the labeller is unsure of everywhere
            # keeps the native reference.
            self._refs[shape] = ref if math.isfinite(ref) and ref > 0 else self.reference
            if len(self._refs) > 16:  # sizes come from robots: bounded
                self._refs.pop(next(iter(self._refs)))
        return self._refs[shape]

    @property
    def judges(self) -> bool:
        """Whether health is judged at all (there is a reference)."""
        return math.isfinite(self.reference) and self.reference > 0

    def judge(self, robot_id: str, seq: int, conf: np.ndarray | None) -> Verdict:
        """Return the verdict for one label of ``robot_id`` (raw confidence or None)."""
        if conf is None:
            return Verdict(None, math.nan, health.UNKNOWN, math.nan)
        calibrated = self.cal(conf)
        grid = fusion.to_grid(calibrated, self.stride)
        mean = float(calibrated.mean())
        if not self.judges:
            return Verdict(grid, mean, health.UNKNOWN, math.nan)
        h, last = self.robots.get(robot_id, (None, -1))
        ref = self.reference_for(conf.shape)
        if h is None or seq < last - SEQ_REORDER or h.reference != ref:
            # New robot, its edge restarted, or its camera changed size: a new stream.
            h = health.TeacherHealth(ref, **self._health_args)
            last = -1
        h.update(health.confident_fraction(conf))
        self.robots[robot_id] = (h, max(last, int(seq)))
        return Verdict(grid, mean, h.state, h.score)

    def unhealthy(self) -> int:
        """Return how many robots' streams are judged unhealthy now."""
        return sum(1 for h, _ in self.robots.values() if not h.healthy)
