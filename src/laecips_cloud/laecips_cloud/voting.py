# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
SSA voting: each class-agnostic mask takes the majority class of a label map inside it.

This is the rule of Semantic-Segment-Anything as the LAECIPS reference code uses it: masks
are visited from the largest to the smallest, so a smaller mask overwrites a larger one
where they overlap; the votes are counted on the *original* label map (not on what earlier
masks wrote); pixels no mask covers keep their original class. The label map is either a
semantic labeller's prediction or, in the ``sam_predict`` variant, the edge's own answer.

Pure numpy, no torch: the rule is unit-tested on constructed cases.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def mask_order(masks: Sequence[np.ndarray]) -> list[int]:
    """Return mask indices from the largest area to the smallest (stable on ties)."""
    areas = [int(np.count_nonzero(m)) for m in masks]
    return sorted(range(len(masks)), key=lambda i: -areas[i])


def vote_details(base: np.ndarray, masks: Sequence[np.ndarray],
                 ignore: Iterable[int] = (255,)) -> tuple[np.ndarray, list[int]]:
    """
    Apply the SSA vote; also return the class each mask was given (-1: no valid vote).

    base: HxW uint8 class ids. masks: HxW bool arrays (any order; sorted here).
    ignore: ids that never win a vote (void, 'no label'); a mask covering only those keeps
    its pixels unchanged. A tie goes to the smaller class id (deterministic).
    """
    if base.ndim != 2:
        raise ValueError(f'base must be HxW, got shape {base.shape}')
    out = base.copy()
    counts_mask = np.ones(256, bool)
    for i in ignore:
        if 0 <= int(i) < 256:
            counts_mask[int(i)] = False
    chosen = [-1] * len(masks)
    for i in mask_order(masks):
        m = np.asarray(masks[i], bool)
        if m.shape != base.shape:
            raise ValueError(f'mask {i} has shape {m.shape}, label map {base.shape}')
        votes = np.bincount(base[m], minlength=256)
        votes[~counts_mask] = 0
        if votes.max() == 0:
            continue
        cls = int(votes.argmax())
        out[m] = cls
        chosen[i] = cls
    return out, chosen


def vote(base: np.ndarray, masks: Sequence[np.ndarray], ignore: Iterable[int] = (255,)
         ) -> np.ndarray:
    """Apply the SSA vote and return the refined HxW uint8 label map."""
    return vote_details(base, masks, ignore)[0]
