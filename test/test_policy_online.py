# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Online upload rules and the drift-saving budget (laecips_core.policy), no ROS."""

import math

import numpy as np
import pytest

from laecips_core.policy import QUANTILE_WARMUP, Budget, ByteBudget, Policy, PolicyError

# No ROS in this module: its result is the same in every distro's venv (see .ci/run).
pytestmark = pytest.mark.ros_free


def _feats(x: float) -> np.ndarray:
    return np.array([1.0 - x, x, 0.1])  # conf_ratio, entropy, margin


@pytest.mark.parametrize('feature', [0.0, 1.0])
def test_quantile_rule_tracks_its_rate_online(feature):
    rng = np.random.default_rng(3)
    p = Policy('quantile', {'rate': 0.25, 'feature': feature, 'window': 200})
    xs = rng.random(3000)
    got = np.array([p.decide(_feats(x), rng) for x in xs])
    assert abs(got.mean() - 0.25) < 0.03 and len(p.seen) == 200
    # It picks the hard frames (high entropy / low conf_ratio), not random ones.
    assert xs[got].mean() > xs[~got].mean() + 0.3


def test_quantile_rule_follows_a_shift_without_look_ahead():
    rng = np.random.default_rng(4)
    p = Policy('quantile', {'rate': 0.2, 'feature': 1, 'window': 100})
    day = [p.decide(_feats(x), rng) for x in rng.random(300) * 0.3]
    # Harder frames arrive: at first nearly all are above the day quantile...
    dusk = [p.decide(_feats(x), rng) for x in 0.5 + rng.random(300) * 0.3]
    assert np.mean(dusk[:20]) > 0.9
    # ...then the threshold has moved with them, back to about the rate.
    assert abs(np.mean(dusk[150:]) - 0.2) < 0.08 and abs(np.mean(day[50:]) - 0.2) < 0.08


def test_quantile_rule_checks_its_parameters():
    with pytest.raises(PolicyError):
        Policy('quantile', {'feature': 2})
    with pytest.raises(PolicyError):
        Policy('quantile', {'window': QUANTILE_WARMUP - 1})
    p = Policy('quantile', {'rate': 0.5})
    p.decide(_feats(0.4))
    assert p == Policy('quantile', {'rate': 0.5})  # what it has seen is not its identity
    assert Policy.from_json(p.to_json()) == p


def test_budget_saves_in_steady_state_and_spends_on_drift():
    b = Budget(rate=0.3, burst=20, save=0.5)
    steady = sum(b.admit(True) for _ in range(400))
    assert steady == pytest.approx(20 + 0.15 * 400, abs=2)  # (1 - save) of the budget
    assert b.saved == pytest.approx(20)
    drift = [b.admit(True, drifting=True) for _ in range(40)]
    # The savings go out at once when the stream drifts, then the plain rate.
    assert all(drift[:20]) and sum(drift) == pytest.approx(20 + 0.3 * 40, abs=2)
    # Never above the budget in the long run (plus the two buckets' depth).
    b2 = Budget(rate=0.3, burst=20, save=0.5)
    n = sum(b2.admit(True, drifting=bool(i % 2)) for i in range(1000))
    assert n <= 0.3 * 1000 + 40
    assert Budget.of(Policy('fixed', {'budget': 0.3, 'burst': 20, 'save': 0.5})).save == 0.5
    with pytest.raises(PolicyError):
        Policy('fixed', {'budget': 0.3, 'save': 1.5})


def test_budget_reserve_holds_a_long_steady_state_for_the_drift():
    pol = Policy('learned', {'budget': 0.2, 'burst': 5, 'save': 0.5, 'reserve': 40})
    b = Budget.of(pol)
    assert (b.burst, b.reserve) == (5, 40)
    steady = sum(b.admit(True) for _ in range(1000))
    assert steady == pytest.approx(5 + 0.1 * 1000, abs=2)
    assert b.saved == pytest.approx(40)  # full: later savings are lost, not added
    drift = [b.admit(True, drifting=True) for _ in range(100)]
    assert all(drift[:40]) and sum(drift) == pytest.approx(40 + 0.2 * 100, abs=2)
    # The long-run ratio still holds: at most both depths above the rate.
    b2 = Budget.of(pol)
    n = sum(b2.admit(True, drifting=i % 300 > 250) for i in range(3000))
    assert n <= 0.2 * 3000 + 45
    assert Policy('fixed', {'budget': 0.3, 'burst': 7}).budget() == (0.3, 7, 0.0, 7)
    with pytest.raises(PolicyError):
        Policy('fixed', {'budget': 0.3, 'reserve': 0.5})


def test_byte_budget_holds_a_link_rate_with_frames_of_any_size():
    bb = ByteBudget(rate=50_000, burst_s=2.0)  # 50 kB/s, 100 kB deep
    rng = np.random.default_rng(0)
    sent = 0
    for i in range(3000):  # 30 Hz for 100 s, frames of 20-80 kB
        if bb.admit(i / 30):
            n = int(rng.integers(20_000, 80_000))
            bb.charge(n)
            sent += n
    assert sent <= 50_000 * 100 + 100_000 + 80_000  # rate x time + depth + one frame
    assert sent >= 0.95 * 50_000 * 100  # and it spends what it has
    with pytest.raises(ValueError):
        ByteBudget(rate=0)
    with pytest.raises(ValueError):
        ByteBudget(rate=math.inf)
