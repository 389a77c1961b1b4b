# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The bridge under overload, over DDS: fresh frames first, every frame counted, back-pressure.

The bridge runs in its own process with a TorchScript labeller slow enough (a few convolutions
at the frame's size) that a burst overloads it; the test publishes the hard frames (and, for
back-pressure, the camera of a real edge process).
"""

import threading

from conftest import wait_until
import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
import torch

from laecips_core import codecs
from laecips_msgs.msg import CloudLabel, CloudStats, EdgeStats, HardFrame

QOS = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
OUTCOMES = ('labelled_in_time', 'labelled_late', 'labelled_for_training', 'dropped_queue')


class _SlowSeg(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 32, 3, padding=1)
        self.b = torch.nn.Conv2d(32, 32, 3, padding=1)
        self.c = torch.nn.Conv2d(32, 12, 3, padding=1)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def _bridge(procs, tmp_path, **extra):
    torch.manual_seed(0)
    path = tmp_path / 'slow.ts'
    torch.jit.trace(_SlowSeg().eval(), torch.zeros(1, 3, 8, 8)).save(str(path))
    procs.node('bridge', 'laecips_cloud.bridge_node', params={
        'labeller': 'torchscript', 'weights': str(path), 'device': 'cpu', 'torch_threads': 1,
        'warmup': False, 'anchor_root': 'none', 'stats_period': 0.3, **extra})


def _frame(robot: str, seq: int, deadline: float) -> HardFrame:
    msg = HardFrame(robot_id=robot, seq=seq, hardness=0.5, model_version=1, deadline=deadline)
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + seq, int(robot[-1])
    rgb = np.random.default_rng(seq).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    codecs.encode_compressed(rgb, msg.image, 'jpeg', 90)
    return msg


def _collector(rosnode, kinds: dict):
    lock, got = threading.Lock(), {k: [] for k in kinds}

    def keep(k):
        def cb(m):
            with lock:
                got[k].append(m)
        return cb
    for k, (cls, topic) in kinds.items():
        rosnode.node.create_subscription(cls, topic, keep(k), QOS)

    def read(k):
        with lock:
            return list(got[k])
    return read


def test_burst_from_two_robots_fresh_first_and_counted(procs, rosnode, tmp_path):
    # DDS's own history holds the whole burst (qos_depth): the bridge's queue is what bounds.
    _bridge(procs, tmp_path, queue_size=6, max_batch=2, max_wait_ms=0.0, qos_depth=200)
    read = _collector(rosnode, {'labels': (CloudLabel, '/laecips/cloud_labels'),
                                'stats': (CloudStats, '/laecips/stats_cloud')})
    pub = rosnode.node.create_publisher(HardFrame, '/laecips/hard_frames', QOS)
    rosnode.wait_for_subscribers(pub, timeout=60.0)
    rosnode.wait_for_publishers('/laecips/cloud_labels', timeout=60.0)
    probes = []

    def probe() -> bool:  # until the bridge's label writer has matched our reader
        if any(m.robot_id == 'probe0' for m in read('labels')):
            return True
        probes.append(_frame('probe0', len(probes), 30.0))
        pub.publish(probes[-1])
        return False
    wait_until(probe, 60.0, 'a label for a probe frame', period=0.5)

    # A burst: 25 frames from each robot at once, a 3 s deadline stated by the "edge".
    n = 25
    for seq in range(n):
        for robot in ('robot1', 'robot2'):
            pub.publish(_frame(robot, seq, 3.0))
    total = len(probes) + 2 * n

    def settled():
        s = read('stats')
        return s and s[-1].frames_in == total and s[-1].queue_len == 0 and (
            sum(getattr(s[-1], k) for k in OUTCOMES) + s[-1].rejected == total)
    wait_until(settled, 120.0, 'the bridge to account for every frame')
    s = read('stats')[-1]
    procs.assert_alive()
    assert s.dropped_queue > 0  # 50 frames into a queue of 6, faster than it labels
    assert s.rejected == 0
    assert s.labels_out == s.labelled_in_time + s.labelled_late + s.labelled_for_training
    # Every probe was labelled (one at a time into an idle bridge), but the labels of those
    # sent before the writer matched are lost: count the burst's labels, all sent after.
    def burst() -> list:
        return [m for m in read('labels') if m.robot_id != 'probe0']
    wait_until(lambda: len(burst()) >= s.labels_out - len(probes), 30.0,
               "every burst frame's label published")
    labels = burst()
    assert len(labels) == s.labels_out - len(probes)
    assert sum(m.purpose == CloudLabel.PURPOSE_TRAINING for m in labels) == (
        s.labelled_for_training)
    # The freshest frame of each robot got the cloud's answer in time for inference.
    for robot in ('robot1', 'robot2'):
        last = [m for m in labels if m.robot_id == robot and m.seq == n - 1]
        assert last and last[0].purpose == CloudLabel.PURPOSE_INFERENCE, robot
    # Both robots were served, and no inference label started after its deadline.
    assert {m.robot_id for m in labels} == {'robot1', 'robot2'}
    for m in labels:
        if m.purpose == CloudLabel.PURPOSE_INFERENCE:
            assert m.queue_time < 3.0, (m.robot_id, m.seq, m.queue_time)


def test_back_pressure_thins_the_edges_uploads(procs, rosnode, tmp_path):
    # A labeller that cannot keep up with an edge uploading every frame: the bridge reports
    # overload and the edge (policy 'always') uploads only part of its frames.
    _bridge(procs, tmp_path, overload_load=0.5)
    procs.node('edge', 'laecips_edge.edge_node', params={
        'policy_rule': 'always', 'image_qos': 'reliable', 'num_threads': 1,
        'stats_period': 0.3, 'input_height': 60, 'input_width': 80},
        ros_args=['-r', '__ns:=/robot1'])
    read = _collector(rosnode, {'cloud': (CloudStats, '/laecips/stats_cloud'),
                                'edge': (EdgeStats, '/laecips/stats')})
    cam = rosnode.node.create_publisher(Image, '/camera/image_raw', QOS)
    rosnode.wait_for_subscribers(cam, timeout=120.0)
    wait_until(lambda: rosnode.node.count_subscribers('/laecips/hard_frames') >= 1, 120.0,
               'the bridge')
    rgb = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    stop = threading.Event()

    def camera():
        i = 0
        while not stop.is_set():
            img = codecs.array_to_image(rgb, Image, 'rgb8')
            img.header.stamp.sec, img.header.stamp.nanosec = 100 + i // 20, (i % 20) * 50_000_000
            cam.publish(img)
            i += 1
            stop.wait(0.05)  # 20 Hz
    t = threading.Thread(target=camera, daemon=True)
    t.start()
    try:
        # Both needed before counting: the overload report can come before the edge's first
        # stats (seen on Kilted), and a missing start would never count 30 more masks.
        wait_until(lambda: any(m.overloaded for m in read('cloud')) and read('edge'), 120.0,
                   'the bridge to report overload and the edge its stats')
        start = read('edge')[-1]
        wait_until(lambda: read('edge')[-1].masks_out - start.masks_out >= 30, 120.0,
                   '30 more masks from the edge')
        end = read('edge')[-1]
    finally:
        stop.set()
        t.join(5.0)
    procs.assert_alive()
    share = (end.uploaded - start.uploaded) / (end.masks_out - start.masks_out)
    # Without back-pressure rule 'always' uploads every frame (share 1.0).
    assert share < 0.8, (share, end.held_back)
    assert end.held_back > 0  # the frames held back are counted, not lost
    assert 'cloud overloaded' in procs.log('edge')
