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
* rehearsal: the trainer mixes *other* factory frames (disjoint from the gate's) into every
  training batch, so adapting to a new condition does not erase the old one (distilling
  on dusk alone took the factory model from 58 to 27-32 anchor mIoU);
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


def _spread(pool: list, n: int) -> list:
    if not pool or n <= 0:
        return []
    idx = np.linspace(0, len(pool) - 1, min(n, len(pool))).round().astype(int)
    return [pool[i] for i in sorted(set(idx.tolist()))]


def frames(root: str | os.PathLike, n: int = DEFAULT_FRAMES) -> list[camvid.Frame]:
    """Return ``n`` frames spread evenly over the factory training data (day ``train``)."""
    return _spread(camvid.frames(root, 'train', camvid.DAY_TRAIN), n)


def rehearsal_frames(root: str | os.PathLike, n: int, n_gate: int = DEFAULT_FRAMES
                     ) -> list[camvid.Frame]:
    """Return ``n`` factory frames for rehearsal, none of them in :func:`frames` (the gate)."""
    gate = set(frames(root, n_gate))
    return _spread([f for f in camvid.frames(root, 'train', camvid.DAY_TRAIN)
                    if f not in gate], n)


@dataclass
class AnchorSet:
    """Anchor frames as arrays: RGB (HxWx3 uint8) and ground truth (HxW uint8)."""

    rgbs: list[np.ndarray]
    labels: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.rgbs)


def load(root: str | os.PathLike | None, n: int = DEFAULT_FRAMES, rehearsal: int = 0,
         ) -> AnchorSet | None:
    """
    Load the anchor set from CamVid at ``root`` (found as usual when None); None if absent.

    ``rehearsal`` > 0 loads that many rehearsal frames instead (disjoint from the ``n`` of
    the gate).
    """
    found = camvid.find_root(root)
    if found is None or n <= 0:
        return None
    fr = rehearsal_frames(found, rehearsal, n) if rehearsal > 0 else frames(found, n)
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
