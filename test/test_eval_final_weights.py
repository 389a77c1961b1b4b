# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The evaluation's after-run figures: final weights scored per phase, time to the first push."""

import math

import numpy as np
import pytest
from test_eval_bags import _FakeFrame, write_phased_bag

from laecips_core import metrics, weights
from laecips_edge import engine
from laecips_edge.factory import factory_weights
from laecips_eval import final_weights
from laecips_eval.report import first_push_after_drift


def test_final_weights_are_scored_per_phase_of_the_bag(tmp_path):
    phases = ['sun', 'sun', 'rain']
    write_phased_bag(tmp_path / 'bag', phases, rate=4.0)
    assert final_weights.score(tmp_path / 'none', tmp_path / 'bag') == {}
    sd, meta = weights.load(factory_weights())
    weights.save_state(tmp_path / 'state', sd, meta)
    got = final_weights.score(tmp_path / 'state', tmp_path / 'bag')
    # The same weights run directly on the same frames give the same confusion matrices.
    seg = engine.Segmenter(meta, sd, engine.Options(jit=False))
    want = {}
    for i, ph in enumerate(phases):
        f = _FakeFrame(i)
        c = metrics.confusion(seg.infer(f.rgb()).mask, f.gt())
        want[ph] = want[ph] + c if ph in want else c
    assert set(got) == {'sun', 'rain'}
    for ph, c in want.items():
        assert got[ph] == pytest.approx(metrics.miou(c) * 100)


def test_first_push_after_drift_counts_only_weight_pushes_after_the_clean_phase():
    s = 10**9
    frames = [{'phase': p, 'stamp_ns': i * s} for i, p in enumerate(['day', 'day', 'dusk',
                                                                    'dusk'])]
    pushes = [{'t_ns': int(1.5 * s), 'accepted': True, 'encoding': 'full'},  # before drift
              {'t_ns': 5 * s, 'accepted': True, 'encoding': ''},  # policy only
              {'t_ns': 6 * s, 'accepted': False, 'encoding': 'delta_int8'},  # refused
              {'t_ns': 9 * s, 'accepted': True, 'encoding': 'delta_int8'}]
    assert first_push_after_drift(frames, pushes) == pytest.approx(7.0)
    assert math.isnan(first_push_after_drift(frames, pushes[:3]))
    assert math.isnan(first_push_after_drift(frames[:2], pushes))
    assert np.isfinite(first_push_after_drift(frames, pushes[-1:]))
