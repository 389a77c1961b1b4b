# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Compact pushes without ROS: delta round trip, the edge's gate on deltas, policy versions."""

from types import SimpleNamespace as Ns
import zlib

import pytest
from safetensors.torch import save as st_save
import torch

from laecips_core import delta, models, push_cost, weights
from laecips_core.update_gate import BaseMismatchError, PolicyVersions, PushBase, check_update


@pytest.fixture(scope='module')
def states():
    torch.manual_seed(0)
    model = models.create('fastscnn', 11)
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    # A training round's footprint: every float tensor moves a little (AdamW), BN counters
    # step, and one tensor is left alone.
    new = {}
    for k, v in base.items():
        if not v.is_floating_point():
            new[k] = v + 40
        elif k == 'classifier.3.bias':
            new[k] = v.clone()
        else:
            new[k] = v + 1e-3 * torch.randn_like(v)
    return base, new


def _req(data: bytes, version: int, fmt: str = delta.FORMAT, sha: str = '',
         base: PushBase | None = None, rule: str = '', policy_version: int = 0) -> Ns:
    return Ns(version=version, format=fmt if data else '', weights=data, sha256=sha,
              base_version=base.version if base else 0,
              base_sha256=base.sha256 if base else '', signature='',
              policy_version=policy_version,
              policy=Ns(rule=rule, keys=['threshold'] if rule else [],
                        values=[0.5] if rule else []))


@pytest.mark.parametrize('encoding', delta.ENCODINGS)
def test_delta_round_trip_rebuilds_the_digest_the_trainer_computed(states, encoding):
    base, new = states
    blob = delta.encode(new, base, encoding)
    trainer_side = delta.apply(base, blob)
    edge_side = delta.apply({k: v.clone() for k, v in base.items()}, blob)
    assert delta.state_sha256(edge_side) == delta.state_sha256(trainer_side)
    assert delta.state_sha256(edge_side) != delta.state_sha256(base)
    for k, v in new.items():
        got = edge_side[k]
        assert got.dtype == v.dtype and got.shape == v.shape
        if not v.is_floating_point():
            assert torch.equal(got, v)  # sent whole
        else:
            step = (v - base[k]).abs().max()
            # delta_sparse leaves the smaller changes for the next push: off by < step.
            tol = {'delta_int8': step / 254, 'delta_int4': step / 14,
                   'delta_fp16': step * 2 ** -10}.get(encoding, step)
            assert float((got - v).abs().max()) <= float(tol) + 1e-6, k  # + fp32 rounding
    assert torch.equal(edge_side['classifier.3.bias'], base['classifier.3.bias'])
    # Far smaller than the full fp32 weights file.
    assert len(blob) < 0.5 * len(weights.to_bytes(new))
    # A state that did not change costs (almost) nothing.
    assert len(delta.encode(base, base, encoding)) < 200


def test_state_digest_covers_names_values_dtypes_and_shapes(states):
    base, _ = states
    d = delta.state_sha256(base)
    k = 'classifier.3.bias'
    for change in ({k: base[k] + 1e-7}, {k: base[k].double()}, {k: base[k].reshape(1, -1)},
                   {k + 'x': base[k]}):
        other = {kk: v for kk, v in base.items() if kk != k} | change
        assert delta.state_sha256(other) != d


def test_gate_applies_a_delta_over_the_held_base_and_refuses_another_base(states):
    base, new = states
    held = PushBase.of(base, 3)
    blob = delta.encode(new, base, 'delta_fp16')
    digest = delta.state_sha256(delta.apply(base, blob))
    up = check_update(_req(blob, 4, sha=digest, base=held), 3, 1 << 30, None, 'r', held)
    assert up.meta is None and up.base.version == 4 and up.base.sha256 == digest
    assert delta.state_sha256(up.state) == digest
    # The base is a private copy: changing the live state in place leaves it alone.
    up.state['classifier.3.bias'].add_(1.0)
    assert up.base.sha256 == delta.state_sha256(up.base.state)
    # A delta over a base the edge does not hold (named by version or by digest).
    other = PushBase.of(new, 3)
    for named in (other, PushBase(2, held.sha256, base)):
        with pytest.raises(BaseMismatchError, match='full push'):
            check_update(_req(blob, 4, sha=digest, base=named), 3, 1 << 30, None, 'r', held)
    # ... and then the full push succeeds.
    full = weights.to_bytes(new, weights.WeightsMeta(arch='fastscnn'))
    up = check_update(_req(full, 4, fmt='safetensors', sha=weights.sha256(full)), 3,
                      1 << 30, None, 'r', held)
    assert up.base.sha256 == delta.state_sha256(new) and up.meta.arch == 'fastscnn'
    # A wrong result digest is refused; so is an old version.
    with pytest.raises(delta.DeltaError, match='digest'):
        check_update(_req(blob, 4, sha='0' * 64, base=held), 3, 1 << 30, None, 'r', held)
    with pytest.raises(ValueError, match='not newer'):
        check_update(_req(blob, 3, sha=digest, base=held), 3, 1 << 30, None, 'r', held)


def _blob(tensors: dict, encoding: str = 'delta_fp16', **meta) -> bytes:
    md = {'laecips': delta.FORMAT, 'encoding': encoding, **meta}
    return zlib.compress(st_save(tensors, metadata=md))


def test_bad_deltas_are_refused(states):
    base, new = states
    held = PushBase.of(base, 3)
    good = delta.encode(new, base, 'delta_fp16')
    k = 'classifier.3.bias'
    n = base[k].numel()
    bomb = zlib.compress(bytes(delta.max_inflated(base) + 1024), 9)
    bad = [
        ('not zlib', good[:2] + bytes(100)),
        ('truncated', good[:len(good) // 2]),
        ('inflates past', bomb),
        ('non-finite', _blob({k: torch.full((n,), float('nan'), dtype=torch.float16)})),
        ('non-finite', _blob({k + delta.FULL_SUFFIX: torch.full((n,), float('inf'))})),
        ('delta shape', _blob({k: torch.zeros(n + 1, dtype=torch.float16)})),
        ('lacks', _blob({'no.such.tensor': torch.zeros(3, dtype=torch.float16)})),
        ('scale', _blob({k: torch.zeros(n, dtype=torch.int8)}, 'delta_int8')),
        ('F16 or I8', _blob({k: torch.zeros(n, dtype=torch.float32)})),
        ('not a laecips-delta', _blob({k: torch.zeros(n, dtype=torch.float16)}, 'gzip')),
        ('not a safetensors', zlib.compress(b'\x80\x04junk' * 20)),
    ]
    for why, data in bad:
        with pytest.raises(delta.DeltaError, match=why):
            check_update(_req(data, 4, sha='0' * 64, base=held), 3, 1 << 30, None, 'r', held)
    with pytest.raises(ValueError, match='too large'):  # before anything is inflated
        check_update(_req(bomb, 4, base=held), 3, len(bomb) - 1, None, 'r', held)


def test_policy_versions_must_grow_and_survive_a_restart(tmp_path):
    path = tmp_path / 'sub' / 'policy_version.json'
    pv = PolicyVersions(path)
    assert pv.last == 0
    with pytest.raises(ValueError, match='not newer'):  # an unversioned policy push
        check_update(_req(b'', 1, rule='fixed'), 1, 1 << 20, None, 'r', None, pv.last)
    up = check_update(_req(b'', 1, rule='fixed', policy_version=5), 1, 1 << 20, None, 'r',
                      None, pv.last)
    pv.accept(up.policy_version)
    again = PolicyVersions(path)  # the edge restarted
    assert again.last == 5
    with pytest.raises(ValueError, match='replayed'):
        check_update(_req(b'', 1, rule='fixed', policy_version=5), 1, 1 << 20, None, 'r',
                     None, again.last)
    # Weights without a policy need no policy version.
    path.write_text('not json')
    with pytest.raises(ValueError, match='unreadable'):
        PolicyVersions(path)
    assert PolicyVersions(None).last == 0


def test_push_pays_only_when_the_gain_covers_its_bytes():
    assert push_cost.pays(0.01, 1_000_000, 2e6).push  # 1 point vs 0.5 needed
    v = push_cost.pays(0.004, 1_000_000, 2e6)
    assert not v.push and '0.40 points < 0.50' in v.reason
    assert not push_cost.pays(float('nan'), 10, 2e6).push
    assert push_cost.pays(0.0, 3_000_000, 0).push  # off


def test_report_counts_every_push_and_the_mean_of_those_carrying_weights():
    from laecips_eval import report
    frame = {'phase': 'day', 'conf': [[0] * 11] * 11, 'source': 'edge', 'uploaded': True,
             'bytes_up': 1000, 'bytes_down': 100, 'latency_s': 0.01, 'labelled': True}
    pushes = [
        {'accepted': True, 'bytes': 150_000, 'encoding': 'delta_int8', 'bytes_full': 3_300_000},
        {'accepted': False, 'bytes': 140_000, 'encoding': 'delta_int8', 'bytes_full': 3_300_000},
        {'accepted': True, 'bytes': 3_300_000, 'encoding': 'full', 'bytes_full': 3_300_000},
        {'accepted': True, 'bytes': 400, 'encoding': '', 'bytes_full': 0},  # policy only
    ]
    s = report.summarize({'frames': [frame] * 10, 'pushes': pushes})
    # Every push that crossed the link counts in the total, refused ones too.
    assert s['weight_bytes'] == 150_000 + 140_000 + 3_300_000 + 400
    assert s['total_bytes_per_frame'] == 1000 + 100 + s['weight_bytes'] / 10
    assert s['push_bytes_mean'] == (150_000 + 3_300_000) / 2
    assert s['push_bytes_full'] == 3_300_000
    # Runs recorded before WeightPush.encoding: every accepted push, each its own full size.
    old = report.summarize({'frames': [frame], 'pushes': [{'accepted': True, 'bytes': 7}]})
    assert old['push_bytes_mean'] == old['push_bytes_full'] == 7


def test_the_full_push_ablation_is_laecips_with_full_pushes():
    from laecips_eval import systems
    (lae,), (full,) = systems.build('laecips'), systems.build('laecips_full')
    assert full.label == 'LAECIPS full pushes' and full.trainer
    assert (full.rule, full.params) == (lae.rule, lae.params) and not lae.trainer_params
    # The ablation trains every parameter too: what compact pushes (a trained subset, int8
    # deltas) are measured against.
    assert full.trainer_params == {'push_encoding': 'full', 'push_bytes_per_point': 0.0,
                                   'train_params': 'all'}
    assert systems.resolve(['laecips_full', 'laecips']) == ['laecips', 'laecips_full']
