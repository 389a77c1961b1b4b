# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Compact and replay-proof pushes over DDS: an edge process and a peer calling update_weights.

Deltas over the base the edge holds are applied and its digest answered; a delta over
another base is refused and the full push then succeeds; a corrupt delta changes nothing;
a captured policy-only push cannot be replayed, neither at once nor after the edge restarts
(the last policy version is kept in its state_dir); a signed policy with an infinite or
out-of-range value is refused and the active one kept.
"""

import math
import time

from conftest import wait_until
from test_edge_node import KEY, Peer, _start
import torch

from laecips_core import delta, signing, weights
from laecips_edge.factory import factory_weights
from laecips_msgs.msg import Policy as PolicyMsg
from laecips_msgs.srv import UpdateWeights


def _signed(req: UpdateWeights.Request) -> UpdateWeights.Request:
    req.signature = signing.sign_request(KEY, req, 'robot1')
    return req


def _delta_req(version: int, blob: bytes, digest: str, base_version: int,
               base_sha: str) -> UpdateWeights.Request:
    return _signed(UpdateWeights.Request(
        version=version, format=delta.FORMAT, weights=blob, sha256=digest,
        base_version=base_version, base_sha256=base_sha))


def _full_req(version: int, data: bytes) -> UpdateWeights.Request:
    return _signed(UpdateWeights.Request(version=version, format='safetensors', weights=data,
                                         sha256=weights.sha256(data)))


def _policy_req(version: int, policy_version: int, easy: float) -> UpdateWeights.Request:
    return _signed(UpdateWeights.Request(
        version=version, policy=PolicyMsg(rule='fixed', keys=['easy', 'p'], values=[easy, 0.9]),
        policy_version=policy_version))


def test_delta_pushes_and_policy_replays_over_dds(procs, rosnode, tmp_path):
    state = tmp_path / 'state'
    _start(procs, state, rule='never')
    peer = Peer(rosnode)

    def call(req):
        return rosnode.call(peer.update, req, timeout=90.0)

    sd, meta = weights.load(factory_weights())
    res = call(_policy_req(1, 0, 0.5))  # an unversioned policy push: not accepted
    assert not res.accepted and 'policy version' in res.reason, res.reason
    factory_digest = res.active_sha256
    assert factory_digest == delta.state_sha256(sd) and res.active_policy_version == 0

    # A delta over the factory state the edge holds: applied, the rebuilt digest answered.
    torch.manual_seed(1)
    v2 = {k: (v + 1e-3 * torch.randn_like(v) if v.is_floating_point() else v)
          for k, v in sd.items()}
    blob = delta.encode(v2, sd, 'delta_int8')
    held2 = delta.apply(sd, blob)
    d2 = delta.state_sha256(held2)
    res = call(_delta_req(2, blob, d2, 1, factory_digest))
    assert res.accepted and res.active_version == 2 and res.active_sha256 == d2, res.reason
    assert len(blob) < len(weights.to_bytes(v2, meta)) / 3

    # A corrupt delta and one over a base the edge no longer holds change nothing ...
    res = call(_delta_req(3, blob[:-40], d2, 2, d2))
    assert not res.accepted and 'delta' in res.reason and res.active_sha256 == d2
    v3 = {k: v + 1e-3 if v.is_floating_point() else v for k, v in v2.items()}
    stale = delta.encode(v3, sd, 'delta_int8')
    res = call(_delta_req(3, stale, delta.state_sha256(delta.apply(sd, stale)), 1,
                          factory_digest))
    assert not res.accepted and 'full push' in res.reason, res.reason
    assert res.active_version == 2 and res.active_sha256 == d2
    # ... and the full push then succeeds.
    res = call(_full_req(3, weights.to_bytes(v3, meta)))
    assert res.accepted and res.active_sha256 == delta.state_sha256(v3), res.reason

    # A signed policy-only push is accepted once; the captured request replayed is refused.
    pv = time.time_ns() // 1000
    captured = _policy_req(3, pv, 0.6)
    res = call(captured)
    assert res.accepted and res.active_policy_version == pv, res.reason
    res = call(captured)
    assert not res.accepted and 'replayed' in res.reason and res.active_policy_version == pv
    # Signed and newer, but with a value out of its range (#17 defect 4: threshold=inf
    # stopped uploads, explore=inf uploaded every frame): refused, the policy kept.
    for keys, values in ((['easy', 'p'], [math.inf, 0.9]),
                         (['easy', 'p', 'explore'], [0.6, 0.9, math.inf])):
        res = call(_signed(UpdateWeights.Request(
            version=3, policy=PolicyMsg(rule='fixed', keys=keys, values=values),
            policy_version=pv + 1)))
        assert not res.accepted and 'outside' in res.reason, res.reason
        assert res.active_policy_version == pv
    wait_until(lambda: peer.stats and peer.stats[-1].updates_accepted == 3
               and peer.stats[-1].updates_rejected == 6, 30.0, 'updates counted')
    assert list(peer.stats[-1].policy.values) == [0.6, 0.9]

    # Restarted (same state_dir): the replay is still refused, the pushed base is still held.
    procs.assert_alive()
    procs.stop('edge')
    # A request sent while the dead server still looks matched would be lost.
    wait_until(lambda: not peer.update.service_is_ready(), 30.0, 'the old service to go')
    edge = _start(procs, state, rule='never')
    res = call(captured)
    assert not res.accepted and 'replayed' in res.reason, res.reason
    assert res.active_version == 3 and res.active_sha256 == delta.state_sha256(v3)
    v4 = {k: v - 2e-3 if v.is_floating_point() else v for k, v in v3.items()}
    blob = delta.encode(v4, v3, 'delta_fp16')
    d4 = delta.state_sha256(delta.apply(v3, blob))
    res = call(_delta_req(4, blob, d4, 3, res.active_sha256))
    assert res.accepted and res.active_sha256 == d4, res.reason
    res = call(_policy_req(4, pv + 1, 0.7))  # a newer policy version is welcome
    assert res.accepted and res.active_policy_version == pv + 1, res.reason
    assert edge.poll() is None
