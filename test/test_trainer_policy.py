# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Policy fitting on constructed feature / disagreement data: the right frames, in budget."""

import numpy as np
import pytest

from laecips_cloud import policy_fit as pf
from laecips_core.policy import Budget, Policy

# No ROS in this module: its result is the same in every distro's venv (see .ci/run).
pytestmark = pytest.mark.ros_free


def _stream(n: int = 2000, seed: int = 0, level: float = 1.0):
    """Frames whose disagreement falls with conf_ratio and margin, rises with entropy."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.3, 1.0, n)
    ent = np.clip(0.8 * (1 - conf) + rng.normal(0, 0.05, n), 0, 1)
    margin = np.clip(0.3 + 0.6 * conf + rng.normal(0, 0.05, n), 0, 1)
    feats = np.stack([conf, ent, margin], 1)
    dis = level * np.clip(0.6 * (1 - conf) + 0.3 * ent + rng.normal(0, 0.02, n), 0, 1)
    return feats, dis


def _uploads(policy: Policy, feats: np.ndarray) -> np.ndarray:
    return np.array([policy.decide(f) for f in feats])


def test_learned_picks_the_most_disagreeing_frames_within_budget():
    feats, dis = _stream()
    fit = pf.fit_learned(feats, dis, target_upload_ratio=0.2, explore=0.0,
                         min_disagreement=0.0)
    p = fit.policy
    assert p.rule == 'learned' and p.weights().size == 3
    up = _uploads(p, feats)
    assert 0.17 <= up.mean() <= 0.2 + 1e-9, up.mean()
    # The chosen frames are (almost all) among the true top 20 % by disagreement.
    top = dis >= np.quantile(dis, 0.8)
    assert (up & top).sum() / up.sum() > 0.85
    assert dis[up].mean() > 2 * dis[~up].mean()
    assert fit.info['corr'] > 0.95
    assert abs(fit.expected_upload_ratio - up.mean()) < 1e-9
    # It round-trips through the message's key/value lists unchanged.
    keys, values = p.to_lists()
    assert Policy.from_lists(p.rule, keys, values).decide(feats[0]) == p.decide(feats[0])


def test_exploration_is_paid_from_the_budget():
    feats, dis = _stream(seed=1)
    fit = pf.fit_learned(feats, dis, target_upload_ratio=0.2, explore=0.05,
                         min_disagreement=0.0)
    assert fit.policy.params['explore'] == 0.05
    rule = _uploads(fit.policy, feats).mean()
    assert rule == pytest.approx((0.2 - 0.05) / 0.95, abs=0.01)
    assert fit.expected_upload_ratio == pytest.approx(0.2, abs=0.01)


def test_a_better_edge_uploads_less_than_the_budget():
    feats, dis = _stream(seed=2)
    drifted = pf.fit_learned(feats, dis, 0.3, explore=0.0, min_disagreement=0.15)
    adapted = pf.fit_learned(feats, dis * 0.3, 0.3, explore=0.0, min_disagreement=0.15)
    r_drift = _uploads(drifted.policy, feats).mean()
    r_adapt = _uploads(adapted.policy, feats).mean()
    assert r_drift == pytest.approx(0.3, abs=0.02)  # budget-bound while disagreement is high
    assert r_adapt < 0.6 * r_drift  # floor-bound once the edge agrees with the cloud
    assert adapted.policy.threshold == pytest.approx(0.15)
    # Perfect agreement: nothing but exploration goes up.
    none = pf.fit_learned(feats, np.zeros(len(dis)), 0.3, explore=0.02, min_disagreement=0.05)
    assert not _uploads(none.policy, feats).any()
    assert none.expected_upload_ratio == pytest.approx(0.02)


def test_inverse_propensity_weights_recover_the_stream_budget():
    # The trainer sees every frame the old rule selected, and 10 % of the others.
    feats, dis = _stream(n=4000, seed=3)
    old = Policy('fixed', {'easy': 0.6, 'explore': 0.1})
    rng = np.random.default_rng(0)
    sel = _uploads(old, feats)
    seen = sel | (rng.random(len(sel)) < 0.1)
    prop = np.array([pf.propensity(old, f) for f in feats[seen]])
    assert set(np.round(prop, 6)) == {1.0, 0.1}
    weighted = pf.fit_learned(feats[seen], dis[seen], 0.2, weights=1 / prop, explore=0.0,
                              min_disagreement=0.0)
    naive = pf.fit_learned(feats[seen], dis[seen], 0.2, explore=0.0, min_disagreement=0.0)
    r_w = _uploads(weighted.policy, feats).mean()
    r_n = _uploads(naive.policy, feats).mean()
    assert r_w == pytest.approx(0.2, abs=0.03)
    # Unweighted, the quantile of hard frames only: far under the budget on the stream.
    assert r_n < r_w - 0.05


def test_conf_ratio_threshold_fit():
    feats, dis = _stream(seed=4)
    fit = pf.fit_conf_ratio(feats[:, 0], dis, 0.25, explore=0.0, min_disagreement=0.0)
    assert fit.policy.rule == 'fixed'
    up = _uploads(fit.policy, feats)
    assert 0.22 <= up.mean() <= 0.25 + 1e-9
    assert feats[up, 0].max() < feats[~up, 0].min()  # the least confident frames
    # The floor: with low disagreement everywhere nothing is selected.
    low = pf.fit_conf_ratio(feats[:, 0], dis * 0.1, 0.25, explore=0.0, min_disagreement=0.2)
    assert not _uploads(low.policy, feats).any()


def test_ties_are_never_split_and_small_inputs_are_refused():
    s = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    t = pf.top_threshold(s, 0.4)
    assert (s > t).sum() == 1  # the three tied 0.5 scores would overshoot
    assert (s > pf.top_threshold(s, 0.0)).sum() == 0
    assert (s > pf.top_threshold(s, 1.0)).sum() == 5
    with pytest.raises(ValueError):
        pf.fit_learned(np.zeros((3, 3)), np.zeros(3), 0.2)


def test_logistic_estimator_and_disagreement():
    feats, dis = _stream(seed=5)
    fit = pf.fit_learned(feats, dis, 0.2, explore=0.0, min_disagreement=0.0, logistic=True)
    assert fit.policy.params['logistic'] == 1.0
    up = _uploads(fit.policy, feats)
    assert 0.17 <= up.mean() <= 0.2 + 1e-9
    top = dis >= np.quantile(dis, 0.8)
    assert (up & top).sum() / up.sum() > 0.85
    a = np.array([[0, 1], [2, 11]], np.uint8)
    b = np.array([[0, 2], [2, 11]], np.uint8)
    assert pf.disagreement(a, b) == pytest.approx(1 / 3)


def test_budget_is_a_rate_over_the_recent_stream():
    # 400 easy day frames, then 60 hard dusk frames: the budget applies to what comes next.
    day_f, day_d = _stream(n=400, seed=6, level=0.3)
    dusk_f, dusk_d = _stream(n=60, seed=7)
    dusk_f[:, 0] *= 0.6  # less confident at dusk
    feats, dis = np.vstack([day_f, dusk_f]), np.concatenate([day_d, dusk_d + 0.2])
    seqs = np.arange(len(dis))
    recent = pf.recent_mask(seqs, 60)
    assert recent.sum() == 60 and recent[-60:].all()
    over_history = pf.fit_learned(feats, dis, 0.3, explore=0.0, min_disagreement=0.0)
    over_recent = pf.fit_learned(feats, dis, 0.3, explore=0.0, min_disagreement=0.0,
                                 recent=recent)
    assert _uploads(over_history.policy, dusk_f).mean() > 0.9  # would send nearly every frame
    assert _uploads(over_recent.policy, dusk_f).mean() == pytest.approx(0.3, abs=0.04)
    assert pf.recent_mask(np.array([5, 1000]), 10, min_frames=2).all()


def test_edge_budget_caps_a_drifting_stream_that_the_threshold_lets_through():
    # The threshold is fitted on day frames; every dusk frame then scores above it. With
    # burst > 0 the policy carries a token bucket that holds the edge to the target anyway.
    day_f, day_d = _stream(n=400, seed=8, level=0.3)
    dusk_f, _ = _stream(n=300, seed=9)
    dusk_f[:, 0] *= 0.5
    free = pf.fit_learned(day_f, day_d, 0.3, explore=0.0, min_disagreement=0.0)
    capped = pf.fit_learned(day_f, day_d, 0.3, explore=0.0, min_disagreement=0.0, burst=10)
    assert 'budget' not in free.policy.params
    assert (capped.policy.params['budget'], capped.policy.params['burst']) == (0.3, 10.0)
    wanted = _uploads(capped.policy, dusk_f)
    assert wanted.mean() > 0.6  # the threshold alone: more than twice the target
    budget = Budget()
    budget.configure(capped.policy)
    sent = np.array([budget.admit(w) for w in wanted])
    assert sent[np.nonzero(wanted)[0][:10]].all()  # the burst goes out at once
    assert sent.sum() <= 10 + 0.3 * len(sent) and sent.mean() == pytest.approx(0.3, abs=0.05)
    fixed = pf.fit_conf_ratio(day_f[:, 0], day_d, 0.3, explore=0.0, burst=5)
    assert fixed.policy.budget() == (0.3, 5.0, 0.0, 5.0)
    assert pf.budget_params(0.0, 10) == {} and pf.budget_params(0.3, 0) == {}
