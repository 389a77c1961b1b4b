# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The edge's drift detector on its own entropy (laecips_core.drift), with the budget it drives."""

import numpy as np
import pytest

from laecips_core.drift import WARMUP, DriftDetector
from laecips_core.policy import Budget

pytestmark = pytest.mark.ros_free


def _steady(rng, n, mean=0.22, sd=0.026):
    return mean + sd * rng.standard_normal(n)


def test_a_rise_in_entropy_is_a_drift_within_frames_and_steady_noise_is_not():
    rng = np.random.default_rng(0)
    d = DriftDetector()
    assert not any(d.update(x) for x in _steady(rng, 400))  # 0.22 +- 0.026: CamVid by day
    onset = [d.update(x) for x in _steady(rng, 40, mean=0.35)]  # dusk: 0.33-0.41
    assert any(onset[:5]) and all(onset[5:]) and d.drifts == 1
    # Pushed weights bring the entropy back down: the drift ends, the reference kept.
    back = [d.update(x) for x in _steady(rng, 40)]
    assert not any(back[10:]) and d.mean == pytest.approx(0.22, abs=0.01)


def test_a_change_no_push_undoes_becomes_the_new_steady_state():
    rng = np.random.default_rng(1)
    d = DriftDetector(max_frames=100)
    for x in _steady(rng, 200):
        d.update(x)
    level = [d.update(x) for x in _steady(rng, 100 + WARMUP + 200, mean=0.40)]
    assert all(level[5:100]) and not any(level[101:])
    assert d.mean == pytest.approx(0.40, abs=0.01)
    assert not d.update(float('nan'))  # a frame with no statistic changes nothing
    with pytest.raises(ValueError):
        DriftDetector(sigmas=0)


def test_savings_go_out_at_the_drift_the_detector_finds():
    rng = np.random.default_rng(2)
    stream = np.r_[_steady(rng, 300), _steady(rng, 60, mean=0.36), _steady(rng, 240)]
    d, b = DriftDetector(), Budget(rate=0.2, burst=5, save=0.5, reserve=40)
    sent = np.array([b.admit(True, drifting=d.update(x)) for x in stream])
    assert sent[:300].mean() < 0.13  # steady: about (1 - save) of the budget
    assert sent[300:340].mean() > 0.8  # the drift: the savings at once
    assert sent.mean() <= 0.2 + (5 + 40) / len(stream)  # the budget holds overall
