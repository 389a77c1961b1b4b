# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The cloud bridge in its own process: two robots answered in full, bad payloads skipped."""

import threading

from conftest import wait_until
import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
import torch

from laecips_edge import codecs
from laecips_msgs.msg import CloudLabel, CloudStats, HardFrame

QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
H, W = 72, 96


class _TinySeg(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 12, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def _model(tmp_path):
    # A tiny TorchScript labeller keeps the node quick and independent of ../shared.
    torch.manual_seed(0)
    path = tmp_path / 'seg.ts'
    torch.jit.trace(_TinySeg().eval(), torch.zeros(1, 3, 8, 8)).save(str(path))
    return path


def _frame(robot: str, seq: int, data: bytes | None = None) -> HardFrame:
    msg = HardFrame(robot_id=robot, seq=seq, hardness=0.5, model_version=1)
    msg.header.frame_id = f'{robot}/camera'
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + seq, 1 + int(robot[-1])
    if data is None:
        rgb = np.random.default_rng(seq).integers(0, 256, (H, W, 3), dtype=np.uint8)
        codecs.encode_compressed(rgb, msg.image, 'jpeg', 90)
    else:
        msg.image.format = 'jpeg'
        msg.image.data = data
    return msg


def test_bridge_two_robots_and_bad_payloads(procs, rosnode, tmp_path):
    procs.node('bridge', 'laecips_cloud.bridge_node', params={
        'labeller': 'torchscript', 'weights': str(_model(tmp_path)), 'device': 'cpu',
        'max_batch': 4, 'max_wait_ms': 30.0, 'queue_size': 64, 'stats_period': 0.2,
        'torch_threads': 1, 'max_payload_bytes': 100_000})
    lock = threading.Lock()
    labels, stats = [], []

    def keep(bucket):
        def cb(m):
            with lock:
                bucket.append(m)
        return cb

    n = rosnode.node
    pub = n.create_publisher(HardFrame, '/laecips/hard_frames', QOS)
    n.create_subscription(CloudLabel, '/laecips/cloud_labels', keep(labels), QOS)
    n.create_subscription(CloudStats, '/laecips/stats_cloud', keep(stats), QOS)
    rosnode.wait_for_subscribers(pub, timeout=60.0)
    rosnode.wait_for_publishers('/laecips/cloud_labels', timeout=60.0)

    sent = {}
    for seq in range(6):
        for robot in ('robot1', 'robot2'):
            m = _frame(robot, seq)
            sent[(robot, seq)] = m
            pub.publish(m)
    wait_until(lambda: len(labels) >= len(sent), 60.0, 'a label for each of 12 hard frames')
    with lock:
        got = {(m.robot_id, m.seq): m for m in labels}
    assert len(labels) == len(got) == len(sent)  # every frame answered exactly once
    for key, lab in got.items():
        src = sent[key]
        assert lab.header.frame_id == src.header.frame_id
        assert (lab.header.stamp.sec, lab.header.stamp.nanosec) == \
            (src.header.stamp.sec, src.header.stamp.nanosec)
        assert lab.labeller == 'torchscript' and lab.label.format == 'png'
        ids = codecs.compressed_to_label(lab.label)
        assert ids.shape == (H, W) and ids.max() < 11
        assert lab.queue_time >= 0.0 and lab.processing_time > 0.0

    # A corrupt JPEG and an oversized payload are counted and skipped; the node lives on.
    pub.publish(_frame('robot1', 100, b'\xff\xd8\xff\xe0' + b'not a jpeg' * 50))
    pub.publish(_frame('robot2', 101, bytes(200_000)))
    pub.publish(_frame('robot1', 102))
    wait_until(lambda: any(m.seq == 102 for m in list(labels)), 30.0, 'the label after them')

    def settled():
        with lock:
            s = stats[-1] if stats else None
        return s if s and s.frames_in == 15 and s.labels_out == 13 and s.rejected == 2 else None

    s = wait_until(settled, 30.0, 'stats: 15 in, 13 labelled, 2 rejected')
    assert s.dropped_queue == 0 and s.labeller == 'torchscript' and s.device == 'cpu'
    assert s.bytes_out > 0 and s.bytes_in > 200_000
    assert not any(m.seq in (100, 101) for m in labels)
    procs.assert_alive()
    assert 'corrupt compressed image' in procs.log('bridge')


class _Gate:
    """A labeller that blocks until released, recording what it was given."""

    name, device = 'gate', 'cpu'

    def __init__(self):
        self.started, self.release, self.seen = threading.Event(), threading.Event(), []

    def label(self, images, edge_labels=None):
        self.seen.append(len(images))
        self.started.set()
        self.release.wait(30.0)
        return [np.zeros(im.shape[:2], np.uint8) for im in images]


def test_bridge_queue_drops_oldest():
    # In-process and without DDS traffic: frames go straight into the subscription callback.
    import rclpy
    from rclpy.parameter import Parameter

    from laecips_cloud.bridge_node import BridgeNode
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    gate = _Gate()
    node = BridgeNode(labeller=gate, context=ctx, parameter_overrides=[
        Parameter('queue_size', value=3), Parameter('max_batch', value=8),
        Parameter('max_wait_ms', value=0.0), Parameter('warmup', value=False)])
    try:
        node._on_frame(_frame('robot1', 0))
        assert gate.started.wait(10.0)  # frame 0 is being labelled, the worker is busy
        for seq in range(1, 6):
            node._on_frame(_frame('robot1', seq))
        with node._lock:
            queued = [it.msg.seq for it in node._queue]
        assert queued == [3, 4, 5] and node.counters['dropped_queue'] == 2
        gate.release.set()
        wait_until(lambda: node.counters['labels_out'] == 4, 10.0, '4 labels')
        assert gate.seen == [1, 3]  # the three survivors went as one batch
        assert node.counters['frames_in'] == 6
    finally:
        gate.release.set()
        node.close()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
