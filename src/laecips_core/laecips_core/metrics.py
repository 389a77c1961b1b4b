# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Segmentation and latency metrics: confusion matrix, IoU, mIoU, pixel accuracy, percentiles.

Conventions (one rule everywhere in the project):

* ``conf[g, p]`` counts pixels with ground truth ``g`` predicted as ``p``; rows are ground
  truth, columns predictions, both ``0..num_classes-1``.
* Pixels whose ground truth is ``void`` (CamVid: 11) are ignored, whatever was predicted.
  Pixels whose prediction is outside ``0..num_classes-1`` (void, 255 = "no label") are
  ignored too, so the matrix stays square; callers that must not reward abstention fill
  such pixels first (the evaluation fills a cloud label's void pixels from the edge mask,
  and edge models never predict void).
* IoU of class c = TP / (TP + FP + FN). ``miou`` averages it over the classes that are
  present in the ground truth or in the prediction (TP + FP + FN > 0); a class absent from
  both has no defined IoU and is excluded (it neither helps nor hurts). This is the usual
  rule when one confusion matrix is accumulated over a whole subset of frames, as the
  evaluation does (one matrix per subset, never a mean of per-frame mIoUs).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

NUM_CLASSES = 11
VOID = 11


def confusion(pred: np.ndarray, gt: np.ndarray, num_classes: int = NUM_CLASSES,
              void: int = VOID) -> np.ndarray:
    """
    Return the ``num_classes x num_classes`` int64 confusion matrix of one or more label maps.

    ``pred`` and ``gt`` are integer arrays of the same shape (any shape, e.g. a batch).
    Pixels with void (or out-of-range) ground truth are ignored; so are pixels whose
    prediction is out of range (see the module docstring). Matrices of several frames add up
    with ``+``.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f'prediction shape {pred.shape} != ground truth shape {gt.shape}')
    g = gt.reshape(-1).astype(np.int64)
    p = pred.reshape(-1).astype(np.int64)
    valid = (g >= 0) & (g < num_classes) & (g != void) & (p >= 0) & (p < num_classes)
    counts = np.bincount(g[valid] * num_classes + p[valid], minlength=num_classes ** 2)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def class_iou(conf: np.ndarray) -> np.ndarray:
    """Return per-class IoU (float64); NaN for classes absent from ground truth and prediction."""
    c = np.asarray(conf, np.float64)
    tp = np.diag(c)
    denom = c.sum(axis=1) + c.sum(axis=0) - tp
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(denom > 0, tp / np.where(denom > 0, denom, 1), np.nan)


def miou(conf: np.ndarray) -> float:
    """
    Return the mean IoU over classes present in ground truth or prediction, in [0, 1].

    Classes absent from both are excluded; NaN when the matrix is empty (no valid pixel).
    """
    iou = class_iou(conf)
    present = ~np.isnan(iou)
    return float(iou[present].mean()) if present.any() else float('nan')


def pixel_accuracy(conf: np.ndarray) -> float:
    """Return correct / counted pixels; NaN when the matrix is empty."""
    c = np.asarray(conf, np.float64)
    total = c.sum()
    return float(np.trace(c) / total) if total > 0 else float('nan')


def percentiles(values: Iterable[float], qs: Iterable[float] = (50, 95)) -> dict[str, float]:
    """
    Return ``{'p50': .., 'p95': .., 'mean': .., 'n': ..}`` of a latency sample.

    NaN and infinite values are dropped; an empty sample gives NaN statistics and ``n = 0``.
    Percentiles use linear interpolation (numpy's default).
    """
    v = np.asarray([x for x in values if x is not None], np.float64)
    v = v[np.isfinite(v)]
    out: dict[str, float] = {}
    for q in qs:
        key = f'p{q:g}'
        out[key] = float(np.percentile(v, q)) if v.size else float('nan')
    out['mean'] = float(v.mean()) if v.size else float('nan')
    out['n'] = int(v.size)
    return out
