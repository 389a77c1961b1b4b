# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
One edge node process over DDS, fed every kind of bad input in turn.

Raw camera frames (wrong step, unknown encoding, zero size, over ``max_pixels``), cloud
labels (unknown frame, wrong size, class ids out of range, garbage and truncated PNG) and
update_weights requests (pickle, zip/deflate, lying safetensors headers, NaN/Inf tensors,
missing/extra tensors, a changed model contract, over ``max_update_bytes``, unsigned, wrongly
signed, policy altered after signing, signed for another robot). Each is counted in
/laecips/stats and logged in one line, the node keeps running, and good frames, a good
label and a good signed update still work afterwards. Compressed camera frames need a node
subscribed to them: test_edge_node.py's compressed case covers garbage and truncated JPEG.
"""

import io
import json
import math
import pickle
import struct
import zlib

from conftest import wait_until
import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from test_edge_node import KEY, NS, Peer, _start
import torch

from laecips_core import codecs, signing, weights
from laecips_edge.factory import factory_weights
from laecips_msgs.msg import CloudLabel, HardFrame
from laecips_msgs.msg import Policy as PolicyMsg
from laecips_msgs.srv import UpdateWeights

QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
H, W = 72, 96  # Peer.send's frames


def _lines(procs, text: str) -> list[str]:
    return [ln for ln in procs.log('edge').splitlines() if text in ln]


def _label(frame, arr: np.ndarray | None = None, data: bytes | None = None,
           key: bytes | None = KEY, purpose: int = CloudLabel.PURPOSE_INFERENCE) -> CloudLabel:
    """Return a cloud label for ``frame``, signed with ``key`` (the edge's) unless None."""
    msg = CloudLabel(header=frame.header, robot_id='robot1', seq=frame.seq, labeller='test',
                     purpose=purpose)
    if data is None:
        codecs.encode_compressed(arr, msg.label, 'png')
    else:
        msg.label.format, msg.label.data = 'png', data
    if key:
        msg.signature = signing.sign_label(key, msg)
    return msg


def _flip(msg: CloudLabel) -> CloudLabel:
    msg.purpose = CloudLabel.PURPOSE_INFERENCE  # after signing, as a peer on the path would
    return msg


def _lying_header(data: bytes) -> bytes:
    # The factory file with its first tensor claiming 2^40 floats in the same bytes.
    n = struct.unpack('<Q', data[:8])[0]
    header = json.loads(data[8:8 + n])
    name = next(k for k in header if k != '__metadata__')
    header[name]['shape'] = [1 << 20, 1 << 20]
    text = json.dumps(header).encode()
    return struct.pack('<Q', len(text)) + text + data[8 + n:]


def test_edge_node_rejects_bad_input_and_keeps_working(procs, rosnode, tmp_path):
    # policy always: every good frame is uploaded, so labels can come back for it.
    # refine=replace: the refined mask is the label as sent (fusion: test_system_trust).
    _start(procs, tmp_path / 'state', rule='always', send_edge_label=False,
           max_pixels=100 * 100, max_update_bytes=4 << 20, refine='replace')
    peer = Peer(rosnode)
    refined = []
    rosnode.node.create_subscription(Image, f'{NS}/edge/mask_refined', refined.append, QOS)
    pub_label = rosnode.node.create_publisher(CloudLabel, '/laecips/cloud_labels', QOS)
    peer.wait_matched()
    rosnode.wait_for_subscribers(pub_label)
    peer.send(6, 1000)
    wait_until(peer.accounted, 60.0, 'the first 6 frames accounted for')
    wait_until(lambda: len(peer.hard) == peer.stats[-1].masks_out >= 5, 30.0, 'uploads')
    hard = sorted(peer.hard, key=lambda m: m.seq)

    def stat(name):
        with peer.lock:
            return getattr(peer.stats[-1], name) if peer.stats else -1

    # --- camera frames: each one rejected, counted, one log line -------------------------
    good = codecs.array_to_image(np.zeros((H, W, 3), np.uint8), Image, 'rgb8')
    frames = {
        'step 287 < width 96': dict(step=W * 3 - 1),
        'data bytes': dict(step=W * 3 + 4),  # rows claimed longer than the data holds
        "unsupported encoding '32FC1'": dict(encoding='32FC1'),
        'bad image size 0x0': dict(height=0, width=0, step=0, data=b''),
        'over the limit of 10000 pixels': dict(height=120, width=120, step=360,
                                               data=bytes(120 * 360)),
    }
    for i, (why, fields) in enumerate(frames.items(), 1):
        msg = Image(header=good.header, height=good.height, width=good.width,
                    encoding=good.encoding, step=good.step, data=good.data)
        for k, v in fields.items():
            setattr(msg, k, v)
        msg.header.stamp.sec = 2000 + i
        peer.cam.publish(msg)
        peer.sent += 1
        wait_until(lambda: stat('rejected') == i, 30.0, f'frame rejected: {why}')
        wait_until(lambda: _lines(procs, why), 10.0, f'a log line: {why}')
    assert len(_lines(procs, 'rejected camera frame')) == len(frames)

    # --- cloud labels: only for frames uploaded, at their size, with known class ids -----
    noise = np.random.default_rng(2).integers(0, 11, (H, W), dtype=np.uint8)
    png = bytes(codecs.encode_compressed(noise, CompressedImage, 'png').data)
    out_of_range = np.zeros((H, W), np.uint8)
    out_of_range[5, 7] = 12  # 11 classes + void 11: 12 is no class
    labels = {
        'no such upload': _label(HardFrame(header=hard[0].header, seq=999),
                                 np.zeros((H, W), np.uint8)),
        'expected 96x72': _label(hard[0], np.zeros((H // 2, W // 2), np.uint8)),
        'class ids out of range': _label(hard[1], out_of_range),
        'corrupt compressed image': _label(hard[2], data=b'\x89PNG\r\n\x1a\n garbage'),
        'truncated': _label(hard[3], data=png[:len(png) // 2]),
    }
    for i, (why, msg) in enumerate(labels.items(), 1):
        pub_label.publish(msg)
        wait_until(lambda: stat('labels_rejected') == i, 30.0, f'label rejected: {why}')
        wait_until(lambda: _lines(procs, why), 10.0, f'a log line: {why}')
    assert len(_lines(procs, 'rejected cloud label')) == len(labels)
    ok = np.full((H, W), 11, np.uint8)  # void is a valid label value
    ok[:10] = 3
    pub_label.publish(_label(hard[4], ok))
    wait_until(lambda: refined and stat('labels_in') == 1, 30.0, 'a refined mask')
    assert (codecs.image_to_array(refined[0]) == ok).all()
    pub_label.publish(_label(hard[4], ok))  # the same label again: a replay
    wait_until(lambda: stat('labels_rejected') == len(labels) + 1, 30.0, 'replay rejected')
    assert len(refined) == 1

    # --- weight updates -----------------------------------------------------------------
    sd, meta = weights.load(factory_weights())
    data = weights.to_bytes(sd, meta)
    torch_zip = io.BytesIO()
    torch.save(sd, torch_zip)

    def with_tensor(name, value):
        t = {k: v.clone() for k, v in sd.items()}
        t[name].view(-1)[0] = value
        return weights.to_bytes(t, meta)

    missing = {k: v for k, v in sd.items() if k != 'classifier.3.bias'}
    extra = dict(sd, **{'backdoor.weight': torch.zeros(3)})
    bigger = weights.WeightsMeta(**{**meta.__dict__, 'input_size': (40000, 40000)})
    updates = [  # (why, weights bytes, call options)
        ('pickle', torch_zip.getvalue(), {}),
        ('pickle', pickle.dumps({k: v.numpy() for k, v in sd.items()}, protocol=4), {}),
        ('zlib/deflate', zlib.compress(data, 1), {}),
        ('header length', struct.pack('<Q', 1 << 40) + data[8:], {}),
        ('claims', _lying_header(data), {}),
        ('non-finite', with_tensor('classifier.3.bias', math.nan), {}),
        ('non-finite', with_tensor('classifier.3.weight', math.inf), {}),
        ('missing tensors classifier.3.bias', weights.to_bytes(missing, meta), {}),
        ('unexpected tensors backdoor.weight', weights.to_bytes(extra, meta), {}),
        ('model contract', weights.to_bytes(sd, bigger), {}),
        # Checked before anything else: this one is not even signed.
        ('too large', bytes(5 << 20), {'key': None}),
        ('unsigned', data, {'key': None}),
        ('bad signature', data, {'key': b'another key'}),
        ('bad signature', data, {'robot': 'robot2'}),
    ]
    for i, (why, payload, opts) in enumerate(updates, 1):
        res = peer.call(2, payload, **opts)
        assert not res.accepted and why in res.reason, (why, res.reason)
        assert res.active_version == 1
        wait_until(lambda: len(_lines(procs, ') rejected: ')) == i, 10.0, f'a log line: {why}')
    # Policy parameters altered after signing: the request is re-signed by nobody.
    req = UpdateWeights.Request(version=2, format='safetensors', weights=data,
                                sha256=weights.sha256(data),
                                policy=PolicyMsg(rule='fixed', keys=['easy', 'p'],
                                                 values=[0.5, 0.9]))
    req.signature = signing.sign_request(KEY, req, 'robot1')
    req.policy.values = [0.99, 0.9]
    res = rosnode.call(peer.update, req, timeout=60.0)
    assert not res.accepted and 'bad signature' in res.reason and res.active_version == 1
    n_rejected = len(updates) + 1
    wait_until(lambda: stat('updates_rejected') == n_rejected, 10.0, 'updates counted')
    procs.assert_alive()

    # --- and everything good still works --------------------------------------------------
    good_sd = {k: v.clone() for k, v in sd.items()}
    good_sd['classifier.3.bias'] = torch.arange(11.0) * 100  # class 10 everywhere
    res = peer.call(2, weights.to_bytes(good_sd, meta), rule='never')
    assert res.accepted and res.active_version == 2, res.reason
    peer.send(3, 3000)
    stats = wait_until(peer.accounted, 60.0, 'the good frames after the bad ones')
    after = [m for m in peer.masks if m.header.stamp.sec >= 3000]
    assert after and all((codecs.image_to_array(m) == 10).all() for m in after)
    assert stats.rejected == len(frames) and stats.labels_rejected == len(labels) + 1
    assert stats.labels_in == 1 and stats.updates_rejected == n_rejected
    assert stats.updates_accepted == 1 and stats.model_version == 2
    procs.assert_alive()


def test_forged_labels_neither_cancel_nor_replace_the_real_one(procs, rosnode, tmp_path):
    # The edge holds the key: a label must be signed by the bridge, and one that fails any
    # check must leave the pending upload for the real answer.
    _start(procs, tmp_path / 'state', rule='always', send_edge_label=False,
           refine='replace')
    peer = Peer(rosnode)
    refined = []
    rosnode.node.create_subscription(Image, f'{NS}/edge/mask_refined', refined.append, QOS)
    pub_label = rosnode.node.create_publisher(CloudLabel, '/laecips/cloud_labels', QOS)
    peer.wait_matched()
    rosnode.wait_for_subscribers(pub_label)
    peer.send(3, 3000)
    wait_until(lambda: len(peer.hard) >= 2, 30.0, 'uploads')
    frame = sorted(peer.hard, key=lambda m: m.seq)[0]

    def stat(name):
        with peer.lock:
            return getattr(peer.stats[-1], name) if peer.stats else -1
    real = np.zeros((H, W), np.uint8)
    real[:20] = 4
    forged = np.full((H, W), 8, np.uint8)  # well-formed, plausible, wrong
    attacks = [
        ('corrupt compressed image', _label(frame, data=b'\x89PNG\r\n\x1a\n junk')),
        ('unsigned label', _label(frame, forged, key=None)),
        ('bad label signature', _label(frame, forged, key=b'not-the-edge-key')),
        # A real training-lane label (the edge keeps its own mask) turned into an answer.
        ('bad label signature', _flip(_label(frame, forged,
                                             purpose=CloudLabel.PURPOSE_TRAINING))),
    ]
    for i, (why, msg) in enumerate(attacks, 1):
        pub_label.publish(msg)
        wait_until(lambda: stat('labels_rejected') == i, 30.0, f'forged label refused: {why}')
        wait_until(lambda: _lines(procs, why), 10.0, f'a log line: {why}')
    assert not refined, 'no forged label may be published as the refined mask'
    pub_label.publish(_label(frame, real))  # the bridge's answer still lands
    wait_until(lambda: refined and stat('labels_in') == 1, 30.0, 'the real refined mask')
    assert (codecs.image_to_array(refined[0]) == real).all()
