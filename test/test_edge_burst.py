# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
A camera burst over DDS: every frame published is received or counted lost (#17 defect 5).

The camera publishes from its own process (test/peers/camera_burst.py) far faster than the
edge takes frames, so its depth-10 KEEP_LAST history overwrites most of them with no DDS
event; the edge counts them from the publication sequence numbers (laecips_core.camera_loss).
"""

import json
from pathlib import Path
import sys
import threading
import time

from conftest import wait_until
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy

from laecips_core.camera_loss import CameraLoss
from laecips_msgs.msg import EdgeStats

PEER = Path(__file__).resolve().parent / 'peers' / 'camera_burst.py'
BURST, TRICKLE = 2000, 5


def _json_lines(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        if line.startswith('{'):
            out.update(json.loads(line))
    return out


@pytest.mark.parametrize('qos', ['sensor_data', 'reliable'])
def test_burst_frames_are_received_or_counted_lost(procs, rosnode, qos):
    procs.node('edge', 'laecips_edge.edge_node', params={
        'num_threads': 1, 'stats_period': 0.2, 'policy_rule': 'never', 'image_qos': qos},
        ros_args=['-r', '__ns:=/robot1'])
    lock, stats = threading.Lock(), []

    def on_stats(m):
        with lock:
            stats.append(m)
    rosnode.node.create_subscription(EdgeStats, '/laecips/stats', on_stats,
                                     QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    procs.start('camera', [sys.executable, str(PEER), str(BURST), str(TRICKLE),
                           'reliable' if qos == 'reliable' else 'best_effort'])
    seen = wait_until(lambda: 'after' in _json_lines(procs.log('camera')) and
                      _json_lines(procs.log('camera')), 120, 'the camera burst')
    published = seen['after'] - seen['before']
    before = seen['frames_in'] + seen['camera_lost']

    def settled():
        with lock:
            s = stats[-1] if stats else None
        # Every frame taken is handled (nothing in flight) and the counters cover the burst.
        return s is not None and s.frames_in == s.masks_out + s.skipped + s.rejected and \
            s.frames_in + s.camera_lost - before >= published
    deadline = time.monotonic() + 60  # then compare whatever the counters say
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.1)
    with lock:
        s = stats[-1]
    received = s.frames_in - seen['frames_in']
    lost = s.camera_lost - seen['camera_lost']
    # The burst overflowed the edge's history (else this test shows nothing) ...
    assert received < published, (received, published)
    # ... and every frame published is either received or counted lost, exactly.
    assert received + lost == published, (received, lost, published)
    procs.assert_alive()


def test_camera_loss_counts_gaps_per_writer_once():
    loss = CameraLoss()
    assert [loss.frame(s, True) for s in (5, 6, 9, 10)] == [0, 0, 2, 0]
    loss.report(1)  # DDS reported one of the two: not counted again
    assert loss.lost == 2
    assert loss.frame(1, True) == 0  # a new writer (restarted camera) starts again at 1
    assert loss.frame(4, True) == 2 and loss.lost == 4
    assert loss.frame(8, False) == 0  # unnamed writers, several matched: no gap can be told
    # Named writers (Kilted's publisher GID): each has its own numbers.
    assert [loss.frame(s, False, w) for s, w in ((1, b'a'), (50, b'b'), (3, b'a'),
                                                 (51, b'b'))] == [0, 0, 1, 0]
    assert loss.lost == 5
    loss.report(10)  # losses DDS reports where no gap can be seen still count
    assert loss.lost == 11
    assert loss.frame(0, True) == 0 and loss.frame(None, True) == 0  # no numbers: nothing
