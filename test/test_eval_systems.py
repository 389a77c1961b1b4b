# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The evaluated systems: run order, and baselines tuned to LAECIPS's upload ratio."""

import numpy as np
import pytest

from laecips_core.policy import Budget, Policy
from laecips_eval import orchestrate, systems


def test_resolve_adds_dependencies_in_order():
    assert systems.resolve(['random']) == ['laecips', 'random']
    assert systems.resolve(['entropy', 'edge_only']) == ['edge_only', 'cloud_only', 'laecips',
                                                         'entropy']
    with pytest.raises(ValueError):
        systems.resolve(['magic'])


@pytest.mark.parametrize('ratio', [0.0, 0.1, 0.27, 0.5, 1.0])
def test_tuned_thresholds_hit_the_ratio(ratio):
    f = np.random.default_rng(0).random((200, 3))
    fixed = systems.build('fixed_matched', ratio, f)[0]
    assert fixed.rule == 'fixed' and fixed.params['p'] == 0.9
    assert np.mean(f[:, 0] <= fixed.params['easy']) == pytest.approx(ratio, abs=0.006)
    ent = systems.build('entropy', ratio, f)[0]
    assert np.mean(f[:, 1] > ent.params['threshold']) == pytest.approx(ratio, abs=0.006)


@pytest.mark.parametrize('name', ['fixed_online', 'entropy_online', 'entropy_distil'])
def test_online_rules_keep_to_their_budget_under_drift(name):
    # 300 steady frames, then 200 that all score harder than any before (day -> dusk): a
    # running quantile alone lets nearly every drifted frame through.
    rng = np.random.default_rng(1)
    steady = np.c_[0.6 + 0.4 * rng.random(300), 0.4 * rng.random(300), rng.random(300)]
    drift = np.c_[0.5 * rng.random(200), 0.5 + 0.5 * rng.random(200), rng.random(200)]
    sys_ = systems.build(name, 0.25, bytes_ratio=0.25)[0]
    pol = Policy(sys_.rule, sys_.params)
    bucket = Budget.of(pol)
    sent = [bucket.admit(pol.decide(f, rng)) for f in np.r_[steady, drift]]
    assert np.mean(sent) <= 0.25 + bucket.burst / len(sent)
    assert np.mean(sent[:300]) == pytest.approx(0.25, abs=0.06)  # the quantile's own rate
    unbounded = Policy(sys_.rule, {k: v for k, v in sys_.params.items()
                                   if k not in ('budget', 'burst')})
    assert np.mean([unbounded.decide(f, rng) for f in np.r_[steady, drift]]) > 0.35


def test_build_systems():
    runs = systems.build('random', 0.25, seeds=3)
    assert [r.seed for r in runs] == [0, 1, 2] and runs[0].policy_params() == 'rate=0.25'
    assert systems.build('fixed', None)[0].policy_params() == 'easy=0.95,p=0.9'
    assert systems.build('laecips', None, laecips_policy=('learned', {'threshold': 0.3}))[0] \
        .trainer
    with pytest.raises(ValueError):
        systems.build('random', None)
    with pytest.raises(ValueError):
        systems.build('entropy', 0.3, features=[])


def test_node_argv_and_overlay_picks():
    argv = orchestrate.node_argv('edge', {'policy_params': '', 'a': [1, 2], 'b': True,
                                       'c': 'x=1,y=2'})
    assert argv[-8:] == ['-p', "policy_params:=''", '-p', 'a:=[1,2]', '-p', 'b:=true',
                         '-p', "c:='x=1,y=2'"]
    assert '__ns:=/robot1' in argv
    assert orchestrate.keep_indices(['day'] * 4 + ['dusk'] * 3, 10) == [2, 3, 5, 6]


def test_reuse_only_independent_systems_with_the_same_stream(tmp_path):
    import json
    old = tmp_path / 'old'
    (old / 'runs').mkdir(parents=True)
    out = tmp_path / 'new'
    (out / 'runs').mkdir(parents=True)
    edge = systems.build('edge_only')[0]
    run = {'frames': [{}] * 5, 'system': {'name': 'edge_only', 'params': {}}}
    (old / 'runs' / 'edge_only.json').write_text(json.dumps(run))
    assert orchestrate.reused(str(old), edge, 5, out)['reused_from'].endswith('edge_only.json')
    assert (out / 'runs' / 'edge_only.json').is_file()
    assert orchestrate.reused(str(old), edge, 6, out) is None  # another stream
    assert orchestrate.reused(None, edge, 5, out) is None
    lae = systems.build('laecips')[0]
    (old / 'runs' / 'laecips.json').write_text(json.dumps(run))
    assert orchestrate.reused(str(old), lae, 5, out) is None  # never reused


def test_resume_takes_any_complete_run_of_the_same_system_and_seed(tmp_path):
    import json
    old, out = tmp_path / 'old', tmp_path / 'new'
    (old / 'runs').mkdir(parents=True)
    (out / 'runs').mkdir(parents=True)
    seeds = systems.build('random', 0.25, seeds=2)
    for s, frames in ((0, 5), (1, 2)):  # seed 1 stopped early: it runs again
        run = {'frames': [{}] * frames, 'system': {
            'name': 'random', 'params': {'rate': 0.25}, 'seed': s, 'trainer': False}}
        (old / 'runs' / f'random_s{s}.json').write_text(json.dumps(run))
    assert orchestrate.reused(str(old), seeds[0], 5, out, resume=True)['reused_from'] \
        .endswith('random_s0.json')
    assert orchestrate.reused(str(old), seeds[1], 5, out, resume=True) is None
    assert orchestrate.reused(str(old), seeds[0], 5, out) is None  # --reuse: never random
    other = systems.build('random', 0.3, seeds=1)[0]  # another rate: another system
    assert orchestrate.reused(str(old), other, 5, out, resume=True) is None
