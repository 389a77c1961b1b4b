# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The edge node in its own process: frame accounting, hard frames, weight updates, resume."""

import io
import threading
import time

from conftest import wait_until
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage, Image
import torch

from laecips_core import codecs, signing, weights
from laecips_edge.factory import factory_weights
from laecips_msgs.msg import EdgeStats, HardFrame
from laecips_msgs.msg import Policy as PolicyMsg
from laecips_msgs.srv import UpdateWeights

NS = '/robot1'
KEY = b'test-key-0123456789abcdef'
QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)


class Peer:
    """Camera publisher plus recorders of the node's outputs, in the test process."""

    def __init__(self, rosnode, jpeg: bool = False):
        n = rosnode.node
        self.ros = rosnode
        self.jpeg = jpeg
        self.lock = threading.Lock()
        self.masks, self.hard, self.stats = [], [], []
        self.cam = (n.create_publisher(CompressedImage, '/camera/image_raw/compressed', QOS)
                    if jpeg else n.create_publisher(Image, '/camera/image_raw', QOS))
        self.subs = [
            n.create_subscription(Image, f'{NS}/edge/mask', lambda m: self._add(self.masks, m),
                                  QOS),
            n.create_subscription(HardFrame, '/laecips/hard_frames',
                                  lambda m: self._add(self.hard, m), QOS),
            n.create_subscription(EdgeStats, '/laecips/stats',
                                  lambda m: self._add(self.stats, m), QOS)]
        self.update = n.create_client(UpdateWeights, f'{NS}/edge/update_weights')
        self.sent = 0

    def wait_matched(self, timeout: float = 90.0) -> None:
        """Wait until the edge hears the camera and these recorders hear the edge."""
        # The graph lists a writer before it has matched a reader, and what it sends in
        # between is lost (volatile): both directions must be matched before frames go.
        self.ros.wait_for_subscribers(self.cam, timeout=timeout)  # the model is loaded by then
        self.ros.wait_heard(*self.subs)

    def _add(self, bucket, msg):
        with self.lock:
            bucket.append(msg)

    def send(self, n: int, start_stamp: int) -> list[int]:
        """Publish ``n`` 72x96 frames, one every 0.1 s, stamped sec = start_stamp + i."""
        rng = np.random.default_rng(start_stamp)
        stamps = []
        for i in range(n):
            rgb = rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)
            msg = (codecs.encode_compressed(rgb, CompressedImage, 'jpeg') if self.jpeg
                   else codecs.array_to_image(rgb, Image, 'rgb8'))
            msg.header.stamp.sec = start_stamp + i
            msg.header.frame_id = 'camera'
            self.cam.publish(msg)
            stamps.append(start_stamp + i)
            threading.Event().wait(0.1)  # pacing the camera, not synchronising
        self.sent += n
        return stamps

    def accounted(self) -> EdgeStats | None:
        """Return the latest stats once every sent frame is a mask or skipped/rejected."""
        with self.lock:
            s = self.stats[-1] if self.stats else None
        if s and s.frames_in == self.sent and s.masks_out + s.skipped + s.rejected == self.sent \
                and len(self.masks) == s.masks_out:
            return s
        return None

    def call(self, version: int, data: bytes, sha: str | None = None, rule: str = '',
             keys=(), values=(), key: bytes | None = KEY, robot: str = 'robot1'):
        """Call update_weights, signed with ``key`` for ``robot`` (None: unsigned)."""
        req = UpdateWeights.Request(version=version, format='safetensors', weights=data,
                                    sha256=weights.sha256(data) if sha is None else sha)
        req.policy = PolicyMsg(rule=rule, keys=list(keys), values=list(values))
        if rule:  # each policy push a newer policy version, as the trainer sends them
            req.policy_version = time.time_ns() // 1000
        if key:
            req.signature = signing.sign_request(key, req, robot)
        return self.ros.call(self.update, req, timeout=60.0)


def key_file(folder) -> str:
    """Write KEY to a key file in ``folder`` and return its path."""
    path = folder / 'hmac.key'
    path.write_bytes(KEY + b'\n')
    return str(path)


def _start(procs, state_dir, rule='always', **extra):
    return procs.node('edge', 'laecips_edge.edge_node', params={
        'image_qos': 'reliable', 'policy_rule': rule, 'num_threads': 1, 'stats_period': 0.2,
        'state_dir': str(state_dir), 'send_edge_label': True,
        'hmac_key_file': key_file(state_dir.parent), **extra},
        ros_args=['-r', f'__ns:={NS}'])


def test_edge_node_accounting_policy_and_updates(procs, rosnode, tmp_path):
    state = tmp_path / 'state'
    _start(procs, state, rule='always')
    peer = Peer(rosnode)
    peer.wait_matched()

    # 30 frames at 10 Hz: each stamp is a mask or counted as skipped; always -> all uploaded.
    stamps = peer.send(30, 1000)
    stats = wait_until(peer.accounted, 60.0, 'all 30 frames accounted for in /laecips/stats')
    got = [m.header.stamp.sec for m in peer.masks]
    assert len(set(got)) == len(got) and set(got) <= set(stamps)
    assert stats.rejected == 0 and stats.masks_out >= 10  # most: 10 Hz is sustainable here
    for m in peer.masks[:5]:
        mask = codecs.image_to_array(m)
        assert m.encoding == 'mono8' and mask.shape == (72, 96) and mask.max() < 11
    wait_until(lambda: len(peer.hard) == stats.masks_out, 30.0, 'a hard frame per mask')
    hf = peer.hard[0]
    assert hf.robot_id == 'robot1' and hf.model_version == 1 and len(hf.features) == 3
    assert codecs.compressed_to_rgb(hf.image).shape == (72, 96, 3)
    assert codecs.compressed_to_label(hf.edge_label).max() < 11
    assert sorted(h.header.stamp.sec for h in peer.hard) == sorted(got)

    # Rejected updates: pickle, sha mismatch, wrong shape, unsigned. Version 1 stays.
    sd, meta = weights.load(factory_weights())
    buf = io.BytesIO()
    torch.save(sd, buf)
    res = peer.call(2, buf.getvalue())
    assert not res.accepted and 'pickle' in res.reason and res.active_version == 1, res.reason
    good = {k: v.clone() for k, v in sd.items()}
    good['classifier.3.bias'] = torch.arange(11.0) * 100  # class 10 everywhere
    data = weights.to_bytes(good, meta)
    res = peer.call(2, data, sha='0' * 64)
    assert not res.accepted and 'sha256' in res.reason and res.active_version == 1
    bad = dict(good, **{'classifier.3.weight': torch.zeros(12, 128, 1, 1)})
    res = peer.call(2, weights.to_bytes(bad, meta))
    assert not res.accepted and 'shape' in res.reason and res.active_version == 1
    res = peer.call(2, data, key=None)
    assert not res.accepted and 'signature' in res.reason and res.active_version == 1
    procs.assert_alive()

    # A good update, with a policy change to never: masks of class 10, no more uploads.
    res = peer.call(2, data, rule='never')
    assert res.accepted and res.active_version == 2, res.reason
    n_hard = len(peer.hard)
    stamps = peer.send(10, 2000)
    stats = wait_until(peer.accounted, 60.0, 'all frames accounted for after the update')
    after = [m for m in peer.masks if m.header.stamp.sec >= 2000]
    assert after and all((codecs.image_to_array(m) == 10).all() for m in after)
    assert stats.model_version == 2 and stats.policy.rule == 'never'
    assert stats.updates_accepted == 1 and stats.updates_rejected == 4
    assert len(peer.hard) == n_hard  # never: no hard frames

    # A restart resumes version 2 and the never policy from state_dir.
    procs.stop('edge')
    peer.stats.clear()
    _start(procs, state, rule='always')
    wait_until(lambda: peer.stats and peer.stats[-1].model_version == 2, 90.0,
               'the restarted node to report version 2')
    assert peer.stats[-1].policy.rule == 'never'

    # A policy-only push with an upload budget: always, but at most every other frame (a
    # token bucket of depth 1 gaining 0.5 a frame); the rest are counted as held back.
    res = peer.call(2, b'', rule='always', keys=['budget', 'burst'], values=[0.5, 1.0])
    assert res.accepted and res.active_version == 2, res.reason
    with peer.lock:  # the restarted node counts from zero
        peer.sent = 0
        peer.masks.clear()
        peer.hard.clear()
    peer.send(12, 4000)
    stats = wait_until(peer.accounted, 60.0, 'frames accounted for under the budget')
    n = stats.masks_out
    assert stats.policy.rule == 'always' and n >= 4
    assert stats.uploaded == (n + 1) // 2 and stats.held_back == n // 2, (n, stats)
    wait_until(lambda: len(peer.hard) == stats.uploaded, 30.0, 'the budgeted hard frames')


def test_edge_node_holds_uploads_to_a_link_budget_in_bytes(procs, rosnode, tmp_path):
    # Rule 'always', but a 20 kB/s uplink, 1 s of it saved up: noise frames are ~15 kB as
    # JPEG, so most are held back, and the bytes sent stay within rate x time + depth.
    rate = 20_000
    _start(procs, tmp_path / 'state', rule='always', upload_bytes_per_s=float(rate),
           upload_burst_s=1.0, send_edge_label=False)
    peer = Peer(rosnode)
    peer.wait_matched()
    t0 = time.monotonic()
    peer.send(30, 5000)
    stats = wait_until(peer.accounted, 60.0, 'frames accounted for under the link budget')
    elapsed = time.monotonic() - t0
    wait_until(lambda: len(peer.hard) == stats.uploaded, 30.0, 'the hard frames sent')
    sizes = [len(serialize_message(h)) for h in peer.hard]
    assert stats.held_back > 0 and stats.uploaded >= 2, stats
    assert stats.uploaded + stats.held_back == stats.masks_out, stats
    assert sum(sizes) <= rate * elapsed + rate + max(sizes), (sum(sizes), elapsed)
    assert stats.bytes_up == sum(sizes)


@pytest.mark.parametrize('jpeg', [False, True], ids=['raw', 'compressed'])
def test_edge_node_never_uploads_and_survives_bad_frames(procs, rosnode, tmp_path, jpeg):
    _start(procs, tmp_path / 'state', rule='never',
           input_type='compressed' if jpeg else 'image', max_pixels=100 * 100)
    peer = Peer(rosnode, jpeg=jpeg)
    peer.wait_matched()
    big = np.zeros((120, 120, 3), np.uint8)  # over max_pixels
    if jpeg:  # garbage, a real JPEG cut short, one too large (from its header)
        rgb = np.random.default_rng(1).integers(0, 256, (72, 96, 3), dtype=np.uint8)
        real = bytes(codecs.encode_compressed(rgb, CompressedImage, 'jpeg').data)
        bad = [(CompressedImage(format='jpeg', data=b'\xff\xd8\xff\xe0 not really a jpeg'),
                'corrupt compressed image'),
               (CompressedImage(format='jpeg', data=real[:len(real) // 2]), 'truncated'),
               (codecs.encode_compressed(big, CompressedImage, 'png'), 'too large')]
    else:  # an encoding the node does not take, an image too large
        enc = codecs.array_to_image(np.zeros((4, 4, 3), np.uint8), Image, 'rgb8')
        enc.encoding = '32FC1'
        bad = [(enc, 'unsupported encoding'), (codecs.array_to_image(big, Image), 'too large')]
    for i, (msg, why) in enumerate(bad, 1):  # each rejected, counted, logged once
        peer.cam.publish(msg)
        peer.sent += 1
        wait_until(lambda: peer.stats and peer.stats[-1].rejected == i, 30.0, why)
        wait_until(lambda: why in procs.log('edge'), 10.0, f'a log line: {why}')
    lines = [ln for ln in procs.log('edge').splitlines() if 'rejected camera frame' in ln]
    assert len(lines) == len(bad), lines
    peer.send(5, 3000)
    stats = wait_until(peer.accounted, 60.0, 'frames accounted for')
    assert stats.rejected == len(bad) and stats.uploaded == 0 and not peer.hard
    assert codecs.image_to_array(peer.masks[-1]).shape == (72, 96)
    procs.assert_alive()
