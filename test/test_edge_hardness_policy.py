# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Hardness scores on constructed logits with known answers, and the upload policy rules."""

import math

import numpy as np
import pytest
import torch

from laecips_core import hardness
from laecips_core.policy import Budget, Policy, PolicyError

# No ROS in this module: its result is the same in every distro's venv (see .ci/run).
pytestmark = pytest.mark.ros_free


def _logits_with_top_prob(p: float, c: int = 11) -> float:
    """Return the logit gap g so that softmax([g, 0, ..., 0])[0] == p."""
    return math.log(p * (c - 1) / (1 - p))


def test_conf_ratio_counts_pixels_above_p():
    c, h, w = 11, 4, 5
    x = torch.zeros(2, c, h, w)
    # Image 0: 7 of 20 pixels confident (top prob 0.95), the rest 0.5.
    g_hi, g_lo = _logits_with_top_prob(0.95), _logits_with_top_prob(0.5)
    x[0, 3] = g_lo
    x[0, 3].view(-1)[:7] = g_hi
    # Image 1: uniform logits everywhere: top prob 1/11.
    r = hardness.conf_ratio(x, p=0.9)
    assert r.shape == (2,) and r.dtype == np.float64
    assert r[0] == pytest.approx(7 / 20) and r[1] == 0.0
    assert hardness.conf_ratio(x.numpy(), p=0.4)[0] == pytest.approx(1.0)


def test_entropy_and_margin_known_values():
    c = 11
    x = torch.zeros(3, c, 2, 2)
    x[1, 0] = 1000.0  # one-hot: entropy 0, margin 1
    x[2, :2] = 50.0  # two-way tie: entropy log 2 / log 11, margin 0
    e, m = hardness.entropy(x), hardness.margin(x)
    assert e[0] == pytest.approx(1.0) and m[0] == pytest.approx(0.0)
    assert e[1] == pytest.approx(0.0, abs=1e-6) and m[1] == pytest.approx(1.0)
    assert e[2] == pytest.approx(math.log(2) / math.log(c), abs=1e-5)
    assert m[2] == pytest.approx(0.0, abs=1e-6)
    f = hardness.features(x)
    assert f.shape == (3, 3)
    np.testing.assert_allclose(f[:, 0], hardness.conf_ratio(x))
    np.testing.assert_allclose(f[:, 1], e, atol=1e-7)
    np.testing.assert_allclose(f[:, 2], m, atol=1e-7)


def test_hardness_rejects_wrong_rank():
    with pytest.raises(ValueError):
        hardness.entropy(torch.zeros(11, 4, 4))


def test_policy_rules():
    easy = np.array([0.99, 0.05, 0.9])  # conf_ratio, entropy, margin
    hard = np.array([0.50, 0.60, 0.2])
    rng = np.random.default_rng(0)
    assert not Policy('never').decide(hard, rng)
    assert Policy('always').decide(easy, rng)
    fixed = Policy('fixed')
    assert fixed.params == {'p': 0.9, 'easy': 0.95} and fixed.threshold == 0.95
    assert fixed.decide(hard) and not fixed.decide(easy)
    assert fixed.decide(np.array([0.95, 0, 0]))  # at the boundary: not easy, upload
    ent = Policy('entropy', {'threshold': 0.3})
    assert ent.decide(hard) and not ent.decide(easy)
    learned = Policy('learned', {'w0': -1.0, 'w1': 2.0, 'b': 0.5, 'threshold': 0.0})
    assert learned.score(hard) == pytest.approx(-0.5 + 1.2 + 0.5)
    assert learned.decide(hard) and not learned.decide(easy)
    logistic = Policy('learned', {'w0': -10.0, 'b': 6.0, 'threshold': 0.5, 'logistic': 1})
    assert logistic.decide(hard) and not logistic.decide(easy)
    rate = Policy('random', {'rate': 0.3})
    ups = sum(rate.decide(easy, rng) for _ in range(4000))
    assert 0.26 < ups / 4000 < 0.34
    assert math.isnan(rate.threshold) and math.isnan(Policy('never').threshold)
    # Exploration: easy frames go up at the explore rate, only when the edge passes an rng.
    explore = Policy('fixed', {'explore': 0.25})
    assert not explore.decide(easy) and explore.decide(hard, rng)
    ups = sum(explore.decide(easy, rng) for _ in range(4000))
    assert 0.21 < ups / 4000 < 0.29


def test_policy_serialisation(tmp_path):
    p = Policy('learned', {'w0': 0.5, 'w2': -1.0, 'threshold': 0.2})
    keys, values = p.to_lists()
    assert Policy.from_lists('learned', keys, values) == p
    assert Policy.from_dict(p.to_dict()) == p
    assert Policy.from_json(p.to_json()) == p
    p.save(tmp_path / 'policy.json')
    assert Policy.load(tmp_path / 'policy.json') == p
    np.testing.assert_array_equal(p.weights(), [0.5, 0.0, -1.0])
    with pytest.raises(PolicyError):
        Policy('sometimes')
    with pytest.raises(PolicyError):
        Policy.from_lists('fixed', ['p'], [])
    with pytest.raises(PolicyError):
        Policy('fixed', {'p': 'high'})
    # Pushed policies: NaN never compares, duplicate keys are ambiguous, and a huge
    # feature index would make weights() allocate that much on every frame.
    with pytest.raises(PolicyError, match='NaN'):
        Policy.from_lists('fixed', ['easy'], [math.nan])
    with pytest.raises(PolicyError, match='duplicate'):
        Policy.from_lists('fixed', ['easy', 'easy'], [0.5, 0.6])
    with pytest.raises(PolicyError, match='w64'):
        Policy.from_lists('learned', ['w64'], [1.0])
    assert Policy('learned', {'w01': 2.0, 'w²': 1.0}).weights().tolist() == [0.0, 2.0]


def test_node_helpers_parse_params():
    from laecips_core.policy import parse_params
    assert parse_params('') == {}
    assert parse_params('rate=0.3, easy=0.9') == {'rate': 0.3, 'easy': 0.9}
    assert parse_params('{"threshold": 0.25}') == {'threshold': 0.25}


def _run(budget: Budget, n: int) -> str:
    """Offer n wanted frames: s = sent, x = held back."""
    return ''.join('s' if budget.admit(True) else 'x' for _ in range(n))


def test_budget_token_bucket():
    # No budget: every wanted frame goes.
    free = Budget()
    free.configure(Policy('always'))
    assert all(free.admit(True) for _ in range(50)) and not free.admit(False)
    # 0.25 a frame, 3 deep, starting full: a burst of 3 (+ what it gains meanwhile), then
    # every 4th frame; frames not wanted save tokens, up to 3.
    b = Budget()
    b.configure(Policy('always', {'budget': 0.25, 'burst': 3}))
    assert _run(b, 11) == 'sssxsxxxsxx'
    assert [b.admit(False) for _ in range(8)] == [False] * 8  # 0.5 + 8 * 0.25 = 2.5 saved
    assert _run(b, 4) == 'sssx'
    # A new budget keeps the tokens left (0.5): a push must not refill the bucket.
    b.configure(Policy('always', {'budget': 0.5, 'burst': 1}))
    assert _run(b, 4) == 'sxsx'
    assert Policy('fixed').budget() == (1.0, 1.0, 0.0, 1.0)
    for bad in ({'budget': 0.0}, {'budget': 1.5}, {'budget': 0.3, 'burst': 0.5},
                {'budget': 0.3, 'burst': 1e9}):
        with pytest.raises(PolicyError, match='budget'):
            Policy('always', bad)
    keys, values = Policy('learned', {'budget': 0.3, 'burst': 10}).to_lists()
    assert Policy.from_lists('learned', keys, values).budget() == (0.3, 10.0, 0.0, 10.0)


@pytest.mark.parametrize('rule,params', [
    ('learned', {'threshold': math.inf}), ('random', {'rate': 1.5}),
    ('fixed', {'explore': math.inf}), ('random', {'rate': -math.inf}),
    ('learned', {'w63': 1e308}), ('learned', {'b': -1e9}), ('fixed', {'easy': 2.0}),
])
def test_policy_out_of_range_or_infinite_values_raise_on_construction(rule, params):
    with pytest.raises(PolicyError, match='outside'):
        Policy(rule, params)
    with pytest.raises(PolicyError):
        Policy.from_lists(rule, list(params), list(params.values()))
