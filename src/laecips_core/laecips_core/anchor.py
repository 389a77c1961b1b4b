# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The anchor set: labelled frames the cloud side trusts, from the factory model's own data.

The factory edge model was trained (``laecips train-factory``) on the CamVid *day*
sequences of the ``train`` split; whoever trained it holds those frames and their labels,
so the cloud side may use them. Nothing from ``val`` or ``test`` is ever an anchor. They
serve three checks that must not depend on the cloud labeller being right:

* the trainer's gate: a candidate that loses more than ``max_drop`` mIoU points on the
  anchor set against the factory model is rejected, whatever it scores against the cloud;
* calibration of the edge model's and the labeller's confidences
  (:mod:`laecips_core.calibration`);
* the teacher-health reference (:mod:`laecips_core.health`).
"""

from __future__ import annotations

from dataclasses import dataclass
import os

import numpy as np

from laecips_core import camvid

DEFAULT_FRAMES = 24


def frames(root: str | os.PathLike, n: int = DEFAULT_FRAMES) -> list[camvid.Frame]:
    """Return ``n`` frames spread evenly over the factory training data (day ``train``)."""
    pool = camvid.frames(root, 'train', camvid.DAY_TRAIN)
    if not pool or n <= 0:
        return []
    idx = np.linspace(0, len(pool) - 1, min(n, len(pool))).round().astype(int)
    return [pool[i] for i in sorted(set(idx.tolist()))]


@dataclass
class AnchorSet:
    """Anchor frames as arrays: RGB (HxWx3 uint8) and ground truth (HxW uint8)."""

    rgbs: list[np.ndarray]
    labels: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.rgbs)


def load(root: str | os.PathLike | None, n: int = DEFAULT_FRAMES) -> AnchorSet | None:
    """Load the anchor set from CamVid at ``root`` (found as usual when None); None if absent."""
    found = camvid.find_root(root)
    if found is None or n <= 0:
        return None
    fr = frames(found, n)
    return AnchorSet([f.rgb() for f in fr], [f.gt() for f in fr]) if fr else None


def gate(candidate_miou: float, reference_miou: float, max_drop: float = 0.01
         ) -> tuple[bool, str]:
    """Return (passed, why): a candidate may lose at most ``max_drop`` (0-1 mIoU) on anchors."""
    drop = reference_miou - candidate_miou
    if not np.isfinite(candidate_miou):
        return False, 'anchor mIoU is not a number'
    ok = drop <= max_drop
    return ok, (f'anchor mIoU {candidate_miou:.4f} vs factory {reference_miou:.4f} '
                f'({-drop:+.4f}, limit -{max_drop:.4f})')
