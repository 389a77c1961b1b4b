# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Calibrated per-pixel confidence: a model's raw top-1 probability -> P(its label is right).

Two models' raw confidences are not comparable (a small edge model and a large labeller are
over- or under-confident in their own ways), so fusion compares *calibrated* ones. A
:class:`Calibration` is histogram binning made monotone (pool-adjacent-violators): raw
confidences are cut into ``bins`` equal-width bins over [0, 1] and each bin maps to the
accuracy of the pixels that fell in it, on labelled reference data.

Where the reference comes from (no ground truth of the robot's stream is ever used): the
*anchor set*, frames of the factory model's own training data (CamVid day ``train``
sequences) with their labels, which the cloud side holds because it trained the factory
model. The bridge fits its labeller's calibration on it at start-up; the trainer fits the
edge model's on it for every version it pushes and ships it in the weights' metadata. A
model with no calibration uses the identity (raw confidence), which is what
:data:`IDENTITY` is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BINS = 20


@dataclass(frozen=True)
class Calibration:
    """Monotone map from raw confidence to estimated accuracy, one value per bin."""

    table: tuple[float, ...]  # accuracy of each equal-width bin of [0, 1], non-decreasing

    def __post_init__(self):
        t = np.asarray(self.table, np.float64)
        if t.ndim != 1 or t.size < 1 or not np.all(np.isfinite(t)) or t.min() < 0 \
                or t.max() > 1:
            raise ValueError(f'calibration table must be 1-D values in [0, 1], got {self.table}')

    def __call__(self, conf: np.ndarray) -> np.ndarray:
        """Map raw confidences (any shape, float in [0, 1] or uint8 0-255) to float32."""
        c = np.asarray(conf)
        if c.dtype == np.uint8:
            c = c.astype(np.float32) / 255.0
        idx = np.clip((c * len(self.table)).astype(np.int64), 0, len(self.table) - 1)
        return np.asarray(self.table, np.float32)[idx]

    def to_list(self) -> list[float]:
        """Return the table as a JSON-friendly list (rounded to 4 decimals)."""
        return [round(float(v), 4) for v in self.table]

    @classmethod
    def from_list(cls, values: list[float] | tuple[float, ...] | None) -> 'Calibration':
        """Build from a table; empty or None gives the identity."""
        return cls(tuple(float(v) for v in values)) if values else IDENTITY


def _identity(bins: int = BINS) -> Calibration:
    return Calibration(tuple((np.arange(bins) + 0.5) / bins))


IDENTITY = _identity()


def _pav(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators: the non-decreasing fit of y with weights w."""
    vals, wts, sizes = [], [], []
    for yi, wi in zip(y, w):
        vals.append(float(yi))
        wts.append(float(wi))
        sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            tw = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / tw if tw > 0 else vals[-1]
            vals[-2:], wts[-2:], sizes[-2:] = [v], [tw], [sizes[-2] + sizes[-1]]
    return np.repeat(vals, sizes)


def fit(conf: np.ndarray, correct: np.ndarray, bins: int = BINS, prior: float = 20.0
        ) -> Calibration:
    """
    Fit a calibration from raw confidences and whether each pixel's label was right.

    Bins with few pixels lean on the identity (``prior`` pseudo-pixels of it), so a bin seen
    a handful of times is not set to 0 or 1 by chance; the result is made non-decreasing.
    """
    c = np.asarray(conf, np.float64).ravel()
    ok = np.asarray(correct, bool).ravel()
    if c.size != ok.size:
        raise ValueError(f'{c.size} confidences but {ok.size} correctness values')
    idx = np.clip((c * bins).astype(np.int64), 0, bins - 1)
    n = np.bincount(idx, minlength=bins).astype(np.float64)
    k = np.bincount(idx, weights=ok.astype(np.float64), minlength=bins)
    centre = (np.arange(bins) + 0.5) / bins
    acc = (k + prior * centre) / (n + prior)
    return Calibration(tuple(np.clip(_pav(acc, n + prior), 0.0, 1.0)))
