# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The cloud bridge: two robots answered in full, bad payloads rejected, the decoder fuzzed.

The node tests run the bridge in its own process; the fuzz test calls the function the
bridge decodes hard frames with (``decode_hard_frame``) in-process, without ROS.
"""

import io
import re
import struct
import threading
import zlib

from conftest import wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
from PIL import Image as PILImage
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage
import torch

from laecips_cloud.labellers import Labeller
from laecips_core import codecs
from laecips_core.frame_check import (
    HardFrameError,
    check_hard_frame,
    check_robot_id,
    decode_hard_frame,
)
from laecips_msgs.msg import CloudLabel, CloudStats, HardFrame, SoftTargets

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


def _png_header_only(width: int, height: int) -> bytes:
    """Return a ~70-byte PNG that declares ``width`` x ``height`` RGB pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack('>I', len(body)) + kind + body
                + struct.pack('>I', zlib.crc32(kind + body)))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2,
                                                               0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'\x00' * 64)) + chunk(b'IEND', b''))


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
    # qos_depth: DDS's own reader history must hold the whole burst of 12 (+ probes): with
    # keep-last 10 a loaded machine lost the burst's first frames before the bridge saw them.
    procs.node('bridge', 'laecips_cloud.bridge_node', params={
        'labeller': 'torchscript', 'weights': str(_model(tmp_path)), 'device': 'cpu',
        'max_batch': 4, 'max_wait_ms': 30.0, 'queue_size': 64, 'stats_period': 0.2,
        'torch_threads': 1, 'max_payload_bytes': 100_000, 'qos_depth': 64,
        'soft_targets': True})
    lock = threading.Lock()
    labels, stats, copies = [], [], []

    def keep(bucket):
        def cb(m):
            with lock:
                bucket.append(m)
        return cb

    n = rosnode.node
    pub = n.create_publisher(HardFrame, '/laecips/hard_frames', QOS)
    n.create_subscription(CloudLabel, '/laecips/cloud_labels', keep(labels), QOS)
    n.create_subscription(CloudStats, '/laecips/stats_cloud', keep(stats), QOS)
    copy_sub = n.create_subscription(HardFrame, '/laecips/cloud/frames', keep(copies), QOS)
    rosnode.wait_for_subscribers(pub, timeout=60.0)
    rosnode.wait_for_publishers('/laecips/cloud_labels', timeout=60.0)
    # Discovery matches each direction on its own: until the bridge's label writer has
    # matched our reader, its answers do not reach us. Probe until one does.
    probes = []

    def probe() -> bool:
        with lock:
            if any(m.robot_id == 'probe0' for m in labels):
                return True
        probes.append(_frame('probe0', len(probes)))
        pub.publish(probes[-1])
        return False

    wait_until(probe, 60.0, 'a label for a probe frame', period=0.5)
    rosnode.wait_heard(copy_sub)  # every copy is counted below

    sent = {}
    for seq in range(6):
        for robot in ('robot1', 'robot2'):
            m = _frame(robot, seq)
            if seq == 0:  # an edge's own "soft targets" never reach the trainer
                m.soft = SoftTargets(classes=11, height=1, width=1, data=bytes(11))
            sent[(robot, seq)] = m
            pub.publish(m)

    def robots() -> list:
        with lock:
            return [m for m in labels if m.robot_id != 'probe0']
    wait_until(lambda: len(robots()) >= len(sent), 60.0, 'a label for each of 12 hard frames')
    got = {(m.robot_id, m.seq): m for m in robots()}
    assert len(robots()) == len(got) == len(sent)  # every frame answered exactly once
    for key, lab in got.items():
        src = sent[key]
        assert lab.header.frame_id == src.header.frame_id
        assert (lab.header.stamp.sec, lab.header.stamp.nanosec) == \
            (src.header.stamp.sec, src.header.stamp.nanosec)
        assert lab.labeller == 'torchscript' and lab.label.format == 'png'
        ids = codecs.compressed_to_label(lab.label)
        assert ids.shape == (H, W) and ids.max() < 11
        assert lab.queue_time >= 0.0 and lab.processing_time > 0.0
    # The trainer's copy of each frame carries the labeller's probabilities (soft_targets),
    # never the edge's: 11 classes on a grid 8x coarser, each cell's summing to 1 (255, give
    # or take rounding).
    wait_until(lambda: len({(m.robot_id, m.seq) for m in copies} & set(sent)) == len(sent),
               30.0, "the trainer's copy of each frame")
    for m in copies:
        if (m.robot_id, m.seq) not in sent:
            continue
        st = m.soft
        assert (st.classes, st.height, st.width) == (11, 9, 12), st
        prob = np.frombuffer(bytes(st.data), np.uint8).reshape(11, 9, 12).astype(int)
        assert np.abs(prob.sum(0) - 255).max() <= 6

    # Bad payloads are each counted, skipped and logged on one line; the node lives on.
    jpeg = bytes(_frame('robot1', 0).image.data)
    bad = {100: _frame('robot1', 100, b'\xff\xd8\xff\xe0' + b'not a jpeg' * 50),
           101: _frame('robot2', 101, bytes(200_000)),  # oversized
           102: _frame('robot1', 102, jpeg[:len(jpeg) // 2]),  # truncated JPEG
           103: _frame('robot1', 103),  # garbage edge label
           104: _frame('robot1', 104),  # edge label of another size
           105: _frame('robot 1\nrejected hard frame forged 1', 105),  # not a ROS name
           106: _frame('robot1', 106, b''),  # empty image
           108: _frame('robot1', 108, _png_header_only(8000, 8000))}  # a 64 Mpx "bomb"
    bad[103].edge_label.format, bad[103].edge_label.data = 'png', b'\x89PNG\r\n\x1a\n' * 9
    codecs.encode_compressed(np.zeros((H // 2, W), np.uint8), bad[104].edge_label, 'png')
    for m in bad.values():
        pub.publish(m)
    pub.publish(_frame('robot1', 107))
    wait_until(lambda: any(m.seq == 107 for m in list(labels)), 30.0, 'the label after them')

    def settled():
        with lock:
            s = stats[-1] if stats else None
        n = len(probes)
        return s if s and s.frames_in == 21 + n and s.labels_out == 13 + n \
            and s.rejected == 8 else None

    s = wait_until(settled, 30.0, f'stats: {21 + len(probes)} in, {13 + len(probes)} '
                   'labelled, 8 rejected')
    assert s.dropped_queue == 0 and s.labeller == 'torchscript' and s.device == 'cpu'
    assert s.bytes_out > 0 and s.bytes_in > 200_000
    assert not any(m.seq in bad for m in labels)
    procs.assert_alive()
    lines = [ln for ln in procs.log('bridge').splitlines() if 'rejected hard frame' in ln]
    assert len(lines) == len(bad), lines  # one line each; the forged robot id made none
    why = {int(re.search(r"'#(\d+) ", ln).group(1)): ln for ln in lines}
    for seq, text in {100: 'corrupt compressed image', 101: 'payload of 200000 bytes',
                      102: 'image: corrupt', 103: 'edge label: corrupt',
                      104: 'edge label: size 96x36, expected 96x72', 105: 'bad robot id',
                      106: 'empty image', 108: '8000x8000 is over the limit'}.items():
        assert text in why[seq], (seq, why[seq])


class _Gate(Labeller):
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
    # The deadline is far away: the frames stay fresh however long the gate holds frame 0.
    import rclpy
    from rclpy.parameter import Parameter

    from laecips_cloud.bridge_node import BridgeNode
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    gate = _Gate()
    node = BridgeNode(labeller=gate, context=ctx, parameter_overrides=[
        Parameter('queue_size', value=3), Parameter('max_batch', value=8),
        Parameter('max_wait_ms', value=0.0), Parameter('warmup', value=False),
        Parameter('anchor_root', value='none'), Parameter('deadline', value=600.0)])
    try:
        node._on_frame(_frame('robot1', 0))
        assert gate.started.wait(10.0)  # frame 0 is being labelled, the worker is busy
        for seq in range(1, 6):
            node._on_frame(_frame('robot1', seq))
        queued = [e.payload.seq for e in node.sched.entries()]
        assert queued == [3, 4, 5] and node.sched.counts['dropped'] == 2
        gate.release.set()
        wait_until(lambda: node.counters['labels_out'] == 4, 10.0, '4 labels')
        assert gate.seen == [1, 3]  # the three survivors went as one batch
        assert node.counters['frames_in'] == 6
        assert node.sched.counts['labelled_in_time'] == 4
    finally:
        gate.release.set()
        node.close()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def test_a_bomb_is_refused_on_arrival_from_its_header():
    # Before the queue: a 64 Mpx PNG header takes no queue slot (rejected, not dropped).
    with pytest.raises(HardFrameError, match='8000x8000 is over the limit'):
        check_hard_frame(_frame('robot1', 1, _png_header_only(8000, 8000)), 100_000, 1 << 22)
    check_hard_frame(_frame('robot1', 2), 100_000, 1 << 22)  # a real frame passes
    # Bytes that do not parse are left to the decoder on the worker.
    check_hard_frame(_frame('robot1', 3, b'not an image'), 100_000, 1 << 22)


# --- fuzzing the hard frame decoder (in-process, no ROS) -----------------------------------

def _encoded(shape: tuple, fmt: str) -> bytes:
    rng = np.random.default_rng(shape[0])
    arr = rng.integers(0, 11 if len(shape) == 2 else 256, shape, dtype=np.uint8)
    return bytes(codecs.encode_compressed(arr, CompressedImage, fmt).data)


def _png16() -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(np.zeros((24, 32), np.uint16)).save(buf, format='PNG')
    return buf.getvalue()


# Valid encodings the fuzzer starts from (and damages).
JPEG, PNG_RGB = _encoded((24, 32, 3), 'jpeg'), _encoded((24, 32, 3), 'png')
PNG_LABEL, PNG_LABEL_SMALL = _encoded((24, 32), 'png'), _encoded((12, 32), 'png')
PNG_16BIT = _png16()


@st.composite
def _mutated(draw, seeds: tuple[bytes, ...]) -> bytes:
    """Draw a valid encoding with some damage: cut, bytes overwritten, inserted or deleted."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(('cut', 'set', 'insert', 'delete')))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == 'cut':
            del data[i:]
        elif op == 'set' and data:
            data[i] = draw(st.integers(0, 255))
        elif op == 'insert':
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            del data[i:i + draw(st.integers(1, 64))]
    return bytes(data)


_payload = st.one_of(st.binary(max_size=256), _mutated((JPEG, PNG_RGB, PNG_LABEL)),
                     st.sampled_from((JPEG, PNG_RGB)))
_edge_label = st.one_of(st.just(b''), st.binary(max_size=128),
                        _mutated((PNG_LABEL, PNG_16BIT)),
                        st.sampled_from((PNG_LABEL, PNG_LABEL_SMALL, PNG_16BIT, JPEG)))
_robot_id = st.one_of(st.sampled_from(('robot1', 'fleet/robot_2', '_r')),
                      st.text(max_size=40))


@settings(derandomize=True, deadline=None, database=None, max_examples=200,
          suppress_health_check=[HealthCheck.too_slow])
@given(robot_id=_robot_id, image=_payload, edge=_edge_label,
       fmt=st.sampled_from(('jpeg', 'png', '', 'tiff')),
       limit=st.sampled_from((1 << 20, 500)))
def test_decode_hard_frame_fuzz(robot_id, image, edge, fmt, limit):
    msg = HardFrame(robot_id=robot_id, seq=1)
    msg.image.format, msg.image.data = fmt, image
    msg.edge_label.format, msg.edge_label.data = 'png', edge
    try:
        rgb, label = decode_hard_frame(msg, limit, max_pixels=1 << 16)
    except HardFrameError:
        return  # the module's own error: the bridge counts, logs and skips the frame
    # Only a well-formed frame gets through, and it comes out as the labellers expect.
    assert len(image) + len(edge) <= limit
    check_robot_id(robot_id)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert label is None if not edge else (label.dtype == np.uint8
                                           and label.shape == rgb.shape[:2])


@pytest.mark.parametrize('robot_id', ['robot1', 'fleet/robot_2', '_x9', 'a' * 128])
def test_robot_id_accepted(robot_id):
    check_robot_id(robot_id)


@pytest.mark.parametrize('robot_id', ['', 'robot 1', '1robot', '/robot1', 'robot1/', 'a//b',
                                      'r\n', 'robot-1', 'rob\u00f6t', 'a' * 129, 'r\x00'])
def test_robot_id_refused(robot_id):
    with pytest.raises(HardFrameError, match='bad robot id'):
        check_robot_id(robot_id)
