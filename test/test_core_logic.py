# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The logic the nodes wire, without ROS: pairing, seq continuation, backoff, update gate."""

from types import SimpleNamespace as Ns

import pytest

from laecips_core import interface, nodes, signing, weights
from laecips_core.pairing import Joiner, SeqContinuation, backoff_delay, join_key
from laecips_core.policy import PolicyError
from laecips_core.update_gate import check_update, request_size

# No ROS in this module: its result is the same in every distro's venv (see .ci/run).
pytestmark = pytest.mark.ros_free


def _msg(robot: str, seq: int, sec: int) -> Ns:
    return Ns(robot_id=robot, seq=seq, header=Ns(stamp=Ns(sec=sec, nanosec=5)))


def test_joiner_pairs_either_order_by_robot_seq_and_stamp():
    j = Joiner(max_items=10, timeout=60.0)
    f, lab = _msg('r1', 3, 7), _msg('r1', 3, 7)
    assert j.add_frame(f) is None
    assert j.add_label(_msg('r1', 3, 8)) is None  # another stamp: another frame
    assert j.add_label(lab) is f
    assert j.add_label(_msg('r2', 4, 1)) is None
    assert j.add_frame(_msg('r2', 4, 1)).robot_id == 'r2'
    assert join_key(f) == ('r1', 3, 7 * 10**9 + 5)


def test_joiner_drops_the_oldest_beyond_its_bounds():
    now = [0.0]
    j = Joiner(max_items=2, timeout=10.0, clock=lambda: now[0])
    for seq in range(3):
        j.add_frame(_msg('r', seq, seq))
    assert j.unmatched == 1 and len(j.frames) == 2
    now[0] = 11.0
    j.add_frame(_msg('r', 99, 99))  # the two before it waited too long
    assert j.unmatched == 3 and list(j.frames) == [('r', 99, 99 * 10**9 + 5)]


def test_seq_continues_across_an_edge_restart_but_not_a_reorder():
    s = SeqContinuation(reorder=8)
    assert [s(q)[0] for q in range(10, 20)] == list(range(10, 20))
    assert s(13) == (13, False)  # out of order, within the reorder window
    assert s(0) == (20, True)  # restarted: continues after the largest
    assert s(1) == (21, False)


def test_a_late_frame_is_not_taken_for_an_edge_restart():
    s = SeqContinuation(reorder=8)
    assert [s(q, 100.0 + q)[0] for q in range(30)] == list(range(30))
    assert s(3, 103.0) == (3, False)  # labelled late: old seq, old stamp
    assert s(30, 130.0) == (30, False)
    assert s(0, 200.0) == (31, True)  # restarted: seq from 0, time went on
    assert not s(10, 110.0)[1]  # a late frame of before the restart: no new restart


def test_backoff_doubles_up_to_the_maximum_and_waits_at_least():
    assert [backoff_delay(n, 1.0, 5.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert backoff_delay(1, 1.0, 5.0, at_least=30.0) == 30.0


def _request(data: bytes = b'', version: int = 2, rule: str = '', fmt: str = 'safetensors'
             ) -> Ns:
    return Ns(version=version, format=fmt if data else '',
              sha256=weights.sha256(data) if data else '', weights=data,
              signature=b'', policy_version=1,
              policy=Ns(rule=rule, keys=['threshold'] if rule else [],
                        values=[0.5] if rule else []))


def test_update_gate_checks_before_anything_changes(tmp_path):
    from laecips_core import models
    model = models.create('fastscnn', 11)
    data = weights.to_bytes(model.state_dict(), weights.WeightsMeta(arch='fastscnn'))
    with pytest.raises(ValueError, match='empty request'):
        check_update(_request(), 1, 1 << 20, None, 'r')
    with pytest.raises(ValueError, match='too large'):
        check_update(_request(data), 1, 10, None, 'r')
    with pytest.raises(ValueError, match='not newer'):
        check_update(_request(data, version=1), 1, 1 << 30, None, 'r')
    with pytest.raises(ValueError, match='format'):
        check_update(_request(data, fmt='pickle'), 1, 1 << 30, None, 'r')
    with pytest.raises(PolicyError):
        check_update(_request(rule='nonsense'), 1, 1 << 20, None, 'r')
    with pytest.raises(ValueError):  # a key is configured: unsigned is refused
        check_update(_request(rule='fixed'), 1, 1 << 20, b'k' * 32, 'r')
    up = check_update(_request(data, rule='fixed'), 1, 1 << 30, None, 'r')
    assert up.policy.rule == 'fixed' and up.state and up.data == data
    assert request_size(_request(data)) == len(data) + len('safetensors') + 64
    assert signing  # the signed path is covered by test_edge_signing


def test_interface_and_node_descriptions_are_plain_data():
    assert interface.edge_topic('robot1', interface.EDGE_MASK) == '/robot1/edge/mask'
    assert interface.camera_qos(3, 'sensor_data').reliability == 'best_effort'
    assert {n.key for n in nodes.ALL} == {'edge', 'bridge', 'trainer'}
    assert nodes.EDGE.module == 'laecips_edge.edge_node' and nodes.EDGE.per_robot
