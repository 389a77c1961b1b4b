# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Over DDS: the labeller is swapped for a wrong one mid-stream, and the robot does not follow it.

Edge and bridge are separate processes. While the labeller is right, the edge fuses its
labels (the refined mask differs from the edge's own); once it goes wrong, the bridge's
teacher-health monitor marks its labels unhealthy within a few frames, and from then on
the edge's final mask for every frame is exactly its own mask; when the labeller is right
again, fusion resumes.
"""

import os
from pathlib import Path
import sys
import threading

from conftest import wait_until, wait_until_or_none
import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from laecips_core import camvid as cv
from laecips_core import codecs
from laecips_msgs.msg import CloudLabel, CloudStats, EdgeStats

QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
PEER = Path(__file__).resolve().parent / 'peers' / 'switch_bridge.py'


def test_wrong_labeller_mid_stream_edge_keeps_its_own_quality(procs, rosnode, camvid,
                                                              shared_models, tmpdir_path):
    switch = tmpdir_path / 'wrong'
    env = {'LAECIPS_TEST_SWITCH': str(switch), 'PYTHONPATH': os.pathsep.join(
        [str(PEER.parent), os.environ.get('PYTHONPATH', '')])}
    procs.start('bridge', [sys.executable, str(PEER), '--ros-args',
                           '-p', 'labeller:=switching', '-p', 'torch_threads:=1',
                           '-p', f'weights:={shared_models / "espnet_c_camvid.pth"}',
                           '-p', 'warmup:=false', '-p', 'anchor_frames:=8',
                           '-p', 'health_window:=4', '-p', 'stats_period:=0.5'], env=env)
    procs.node('edge', 'laecips_edge.edge_node', params={
        'policy_rule': 'always', 'image_qos': 'reliable', 'num_threads': 1,
        'stats_period': 0.5, 'probe_rate': 1.0,
        # A label past its deadline goes to the trainer only: no refined mask would come.
        # This test is about trust, not latency, and CI's first forward pass can take seconds.
        'label_deadline': 120.0})
    n = rosnode.node
    lock = threading.Lock()
    own, refined, labels, stats, cloud = {}, {}, [], [], []

    def stamp(msg) -> int:
        return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec

    def keep(table, msg):
        with lock:
            table[stamp(msg)] = codecs.image_to_array(msg)

    def keep_list(bucket, msg):
        with lock:
            bucket.append(msg)

    cam = n.create_publisher(Image, '/camera/image_raw', QOS)
    n.create_subscription(Image, '/edge/mask', lambda m: keep(own, m), QOS)
    n.create_subscription(Image, '/edge/mask_refined', lambda m: keep(refined, m), QOS)
    n.create_subscription(CloudLabel, '/laecips/cloud_labels', lambda m: keep_list(labels, m),
                          QOS)
    n.create_subscription(EdgeStats, '/laecips/stats', lambda m: keep_list(stats, m), QOS)
    n.create_subscription(CloudStats, '/laecips/stats_cloud', lambda m: keep_list(cloud, m),
                          QOS)
    rosnode.wait_for_subscribers(cam, timeout=120)
    wait_until(lambda: n.count_subscribers('/laecips/hard_frames') >= 1, 120, 'the bridge')
    wait_until(lambda: n.count_publishers('/edge/mask_refined') >= 1, 60, 'the edge')
    wait_until(lambda: n.count_publishers('/laecips/cloud_labels') >= 1, 60, 'the label path')

    frames = cv.frames(camvid, 'test', (cv.DAY_TEST,))[::6]

    def send(f, sec: int) -> int:
        msg = codecs.array_to_image(f.rgb(), Image, 'rgb8')
        msg.header.stamp.sec, msg.header.frame_id = sec, 'camera'
        cam.publish(msg)
        return stamp(msg)

    # The graph lists the edge's writer before it has matched the bridge's reader: a frame
    # sent then is lost for good (volatile). Prime the whole loop until one answer comes back.
    primed = []

    def labelled(s: int) -> bool:  # the test heard the bridge's label for frame s
        with lock:
            return any(stamp(m) == s for m in labels)
    for k in range(24):  # until an answer reaches the edge and its label reaches the test
        primed.append(send(frames[0], 10 + k))
        if wait_until_or_none(lambda: any(s in refined and labelled(s) for s in primed), 5):
            break
    else:
        raise AssertionError('no refined mask came back in 2 minutes of priming')

    phases = ['good'] * 6 + ['wrong'] * 10 + ['good'] * 8
    sent = []
    for i, phase in enumerate(phases):
        if phase == 'wrong':
            switch.touch()
        elif switch.exists():
            switch.unlink()
        f = frames[i % len(frames)]
        s = send(f, 100 + i)
        sent.append((s, phase, f))
        # One frame at a time: each answer comes back before the labeller may switch.
        wait_until(lambda: s in refined and s in own and labelled(s), 60,
                   f'the refined mask and the label of frame {i}')

    with lock:
        states = {stamp(m): m.teacher_state for m in labels}
    by_phase = {}
    for s, phase, _ in sent:
        by_phase.setdefault(phase, []).append(s)
    good_first, wrong = by_phase['good'][:6], by_phase['wrong']
    # Confidence travels with every label (a coarse grid) while the labeller is ESPNet-C.
    assert all(len(m.confidence.data) > 0 and 0 < m.confidence_mean <= 1 for m in labels)
    # Right labeller: healthy, and fusion takes cloud pixels.
    assert all(states[s] == CloudLabel.TEACHER_HEALTHY for s in good_first)
    assert any((refined[s] != own[s]).any() for s in good_first)
    # Wrong labeller: judged unhealthy within a few labels, then never trusted.
    first_bad = next(k for k, s in enumerate(wrong) if states[s] == CloudLabel.TEACHER_UNHEALTHY)
    assert first_bad <= 4, f'health tripped only after {first_bad + 1} wrong labels'
    for s in wrong[first_bad:]:
        assert states[s] == CloudLabel.TEACHER_UNHEALTHY
        assert np.array_equal(refined[s], own[s]), "the final mask must be the edge's own"
    # ... so the robot's final masks stay at its own quality while the cloud is wrong.
    gts = {s: f.gt() for s, _, f in sent}

    def miou_of(masks):
        from laecips_core import metrics
        conf = sum(metrics.confusion(masks[s], gts[s]) for s in wrong[first_bad:])
        return metrics.miou(conf)
    assert miou_of(refined) == miou_of(own)
    # Right again: healthy after a few labels, fusion resumes.
    back = by_phase['good'][6:]
    assert states[back[-1]] == CloudLabel.TEACHER_HEALTHY
    assert any((refined[s] != own[s]).any() for s in back if
               states[s] == CloudLabel.TEACHER_HEALTHY)
    wait_until(lambda: stats and stats[-1].labels_untrusted >= len(wrong) - first_bad, 10,
               'the edge to count the untrusted labels')
    wait_until(lambda: cloud and cloud[-1].labels_unhealthy >= len(wrong) - first_bad, 10,
               'the bridge to count the unhealthy labels')
    assert stats[-1].cloud_trusted
