# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""laecips_core.metrics on constructed cases whose confusion matrix and mIoU are known."""

import math

import numpy as np
import pytest

from laecips_core import metrics

# No ROS in this module: its result is the same in every distro's venv (see .ci/run).
pytestmark = pytest.mark.ros_free


def test_perfect_prediction_is_one():
    gt = np.array([[0, 1], [2, 3]], np.uint8)
    conf = metrics.confusion(gt, gt)
    assert conf.dtype == np.int64 and conf.shape == (11, 11)
    assert np.array_equal(np.diag(conf)[:4], [1, 1, 1, 1]) and conf.sum() == 4
    assert metrics.miou(conf) == 1.0
    assert metrics.pixel_accuracy(conf) == 1.0


def test_known_two_class_case():
    # gt:   0 0 0 0 1 1 1 1 ; pred: 0 0 0 1 1 1 1 1
    gt = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    pred = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    conf = metrics.confusion(pred, gt)
    assert conf[0, 0] == 3 and conf[0, 1] == 1 and conf[1, 1] == 4 and conf.sum() == 8
    iou = metrics.class_iou(conf)
    assert iou[0] == pytest.approx(3 / 4) and iou[1] == pytest.approx(4 / 5)
    assert np.isnan(iou[2:]).all()  # absent from both: excluded
    assert metrics.miou(conf) == pytest.approx((3 / 4 + 4 / 5) / 2)
    assert metrics.pixel_accuracy(conf) == pytest.approx(7 / 8)


def test_void_ground_truth_is_ignored_and_false_positive_class_counts():
    gt = np.array([0, 0, 11, 11, 11])
    pred = np.array([0, 2, 5, 5, 5])  # predictions on void pixels are ignored
    conf = metrics.confusion(pred, gt)
    assert conf.sum() == 2 and conf[5].sum() == 0 and conf[:, 5].sum() == 0
    # class 0: TP 1, FN 1 -> 1/2; class 2: only a false positive -> 0 (present in prediction)
    assert metrics.miou(conf) == pytest.approx((0.5 + 0.0) / 2)


def test_out_of_range_predictions_are_ignored():
    gt = np.array([0, 0, 1])
    pred = np.array([0, 255, 11])
    conf = metrics.confusion(pred, gt)
    assert conf.sum() == 1 and conf[0, 0] == 1


def test_matrices_add_up_over_frames():
    rng = np.random.default_rng(0)
    gts = rng.integers(0, 12, (5, 6, 7))
    preds = rng.integers(0, 11, (5, 6, 7))
    total = sum(metrics.confusion(p, g) for p, g in zip(preds, gts))
    assert np.array_equal(total, metrics.confusion(preds, gts))
    # Check against a plain loop.
    ref = np.zeros((11, 11), np.int64)
    for p, g in zip(preds.ravel(), gts.ravel()):
        if g != 11:
            ref[g, p] += 1
    assert np.array_equal(total, ref)


def test_empty_and_shape_mismatch():
    conf = metrics.confusion(np.zeros(3), np.full(3, 11))
    assert conf.sum() == 0 and math.isnan(metrics.miou(conf))
    with pytest.raises(ValueError):
        metrics.confusion(np.zeros((2, 2)), np.zeros((2, 3)))


def test_other_class_count():
    conf = metrics.confusion(np.array([0, 1, 2]), np.array([0, 1, 1]), num_classes=3, void=255)
    assert conf.shape == (3, 3)
    assert metrics.miou(conf) == pytest.approx((1 + 0.5 + 0) / 3)


def test_percentiles():
    s = metrics.percentiles([1, 2, 3, 4, float('nan'), None, 100])
    assert s['n'] == 5 and s['p50'] == 3 and s['mean'] == pytest.approx(22)
    assert s['p95'] == pytest.approx(np.percentile([1, 2, 3, 4, 100], 95))
    e = metrics.percentiles([])
    assert e['n'] == 0 and math.isnan(e['p50'])
