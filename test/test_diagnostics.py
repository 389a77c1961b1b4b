# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""/diagnostics: levels that mean something for the edge, the bridge and the trainer."""

from conftest import wait_until
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.qos import QoSProfile

from laecips_core import diagnostics as dg
from laecips_msgs.msg import CloudStats, EdgeStats
from laecips_ros.diagnostics import Diagnostics, to_msg


def _edge(**kw) -> EdgeStats:
    m = EdgeStats(robot_id='robot1', cloud_trusted=True)
    for k, v in kw.items():
        setattr(m, k, v)
    m.policy.rule = 'learned'
    return m


def test_edge_levels():
    before = _edge(frames_in=100, masks_out=100)
    ok = dg.edge_status(_edge(frames_in=200, masks_out=200, fps=10.0), before)
    assert ok.level == dg.OK and ok.message == 'ok' and ok.hardware_id == 'robot1'
    assert ok.values['frames_in'] == '200' and ok.values['policy'] == 'learned'
    assert dg.edge_status(_edge(frames_in=1), None).level == dg.OK  # first report
    # Skipping frames: 30 of 100 skipped.
    s = dg.edge_status(_edge(frames_in=200, masks_out=170, skipped=30), before)
    assert s.level == dg.WARN and 'skipping frames' in s.message and '30 skipped' in s.message
    assert dg.edge_status(_edge(frames_in=200, masks_out=195, skipped=5), before).level == dg.OK
    # No cloud, updates refused, teacher unhealthy: each named.
    s = dg.edge_status(_edge(frames_in=200, masks_out=200, no_cloud=7, updates_rejected=2,
                             cloud_trusted=False), before)
    assert s.level == dg.WARN
    for text in ('no cloud: 7 uploads', '2 weight updates refused', 'teacher unhealthy'):
        assert text in s.message, s.message
    assert dg.edge_status(_edge(frames_in=100, masks_out=100), before).message == \
        'no camera frames'
    # Every frame refused (an encoding the edge cannot read): an error.
    s = dg.edge_status(_edge(frames_in=150, masks_out=100, rejected=50), before)
    assert s.level == dg.ERROR and 'every camera frame refused' in s.message


def test_bridge_levels():
    before = CloudStats(frames_in=10, labels_out=10)
    assert dg.bridge_status(CloudStats(frames_in=20, labels_out=20), before).level == dg.OK
    s = dg.bridge_status(CloudStats(frames_in=20, labels_out=18, robots_unhealthy=1,
                                    dropped_queue=2), before)
    assert s.level == dg.WARN and 'teacher unhealthy for 1 robot' in s.message
    assert 'queue full: 2' in s.message
    stuck = dg.bridge_status(CloudStats(frames_in=20, labels_out=10, queue_len=4), before)
    assert stuck.level == dg.ERROR


def test_trainer_levels():
    before = {'counts': {'bad': 0}, 'robots': {'robot1': {
        'teacher_ok': True, 'pushes': {'accepted': 1, 'rejected': 0, 'failed': 0}}}}
    now = {'counts': {'bad': 0, 'pairs': 9}, 'robots': {'robot1': {
        'teacher_ok': True, 'pairs': 9, 'pushes': {'accepted': 2, 'rejected': 0,
                                                   'failed': 0}}}}
    assert dg.trainer_status(now, before).level == dg.OK
    now['robots']['robot1'].update(teacher_ok=False, pushes={'accepted': 2, 'rejected': 1,
                                                             'failed': 0})
    s = dg.trainer_status(now, before)
    assert s.level == dg.WARN and 'robot1: cloud teacher unhealthy' in s.message
    assert 'robot1: 1 updates refused' in s.message and s.values['robot1.teacher_ok'] == 'False'


def test_published_on_diagnostics(rosnode):
    got = []
    rosnode.node.create_subscription(DiagnosticArray, '/diagnostics', got.append,
                                     QoSProfile(depth=10))
    import rclpy
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node('diag_probe', namespace='/robot1', context=context)
        diag = Diagnostics(node, lambda now, before: dg.edge_status(now, before))
        wait_until(lambda: diag.pub.get_subscription_count() >= 1, 20, 'a subscriber')
        diag.update(_edge(frames_in=10, masks_out=10))
        diag.update(_edge(frames_in=20, masks_out=10, skipped=10))
        wait_until(lambda: len(got) >= 2, 10, 'two DiagnosticArrays')
        first, second = got[0].status[0], got[1].status[0]
        assert first.name == '/robot1/diag_probe: laecips edge' and first.level == \
            DiagnosticStatus.OK
        assert second.level == DiagnosticStatus.WARN and 'skipping' in second.message
        assert {kv.key for kv in second.values} >= {'frames_in', 'skipped', 'fps'}
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    arr = to_msg([dg.Status('x', level=dg.ERROR, problems=['bad'])])
    assert arr.status[0].level == DiagnosticStatus.ERROR and arr.status[0].message == 'bad'
