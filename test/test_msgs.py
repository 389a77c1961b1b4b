# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""laecips_msgs: serialization, transport between processes, and rosbag2 round trips."""

import hashlib
import os
import sys

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message

from laecips_msgs.msg import CloudLabel, CloudStats, EdgeStats, HardFrame, Policy, WeightPush
from laecips_msgs.srv import UpdateWeights

MSGS = [Policy, HardFrame, CloudLabel, EdgeStats, CloudStats, WeightPush,
        UpdateWeights.Request, UpdateWeights.Response]


def _fill(msg, rng):
    """Set every field of ``msg`` to a non-default value, recursively."""
    for name, kind in msg.get_fields_and_field_types().items():
        cur = getattr(msg, name)
        if hasattr(cur, 'get_fields_and_field_types'):
            _fill(cur, rng)
        elif kind == 'string' or kind.startswith('string<'):  # bounded: at most 32 here
            setattr(msg, name, f'{name}-{rng.integers(1000)}-é')
        elif kind.startswith('sequence<string'):
            setattr(msg, name, ['a', 'bb', name])
        elif kind == 'boolean':
            setattr(msg, name, True)
        elif kind.startswith('sequence<uint8') or kind == 'sequence<octet>':
            setattr(msg, name, rng.integers(0, 256, 257, dtype=np.uint8).tobytes())
        elif kind.startswith(('sequence<float', 'sequence<double')):
            setattr(msg, name, [float(x) for x in rng.random(5)])
        elif kind.startswith(('float', 'double')):
            setattr(msg, name, float(np.float32(rng.random() + 1)))
        elif kind.startswith(('uint', 'int')):
            setattr(msg, name, int(rng.integers(1, 100)))
        else:
            raise AssertionError(f'unhandled field type {kind} of {type(msg).__name__}.{name}')
    return msg


@pytest.mark.parametrize('cls', MSGS, ids=lambda c: c.__name__)
def test_serialization_round_trip(cls):
    msg = _fill(cls(), np.random.default_rng(1))
    data = serialize_message(msg)
    back = deserialize_message(data, cls)
    assert back == msg
    assert back != cls()
    # Not byte-equal: CDR alignment padding (before a uint64 after a string) is not zeroed.
    again = serialize_message(back)
    assert len(again) == len(data) and deserialize_message(again, cls) == msg


def _unbounded(cls, path: str = '') -> list[str]:
    """Return the fields of ``cls`` (nested ones dotted) without a maximum size."""
    import importlib

    from rosidl_parser import definition as d
    out = []
    for slot, kind in zip(cls.__slots__, cls.SLOT_TYPES):
        name = path + slot.removeprefix('_')
        base = kind.value_type if isinstance(kind, d.AbstractNestedType) else kind
        if isinstance(kind, d.UnboundedSequence) or isinstance(
                base, (d.UnboundedString, d.UnboundedWString)):
            out.append(name)
        if isinstance(base, d.NamespacedType):
            nested = getattr(importlib.import_module('.'.join(base.namespaces)), base.name)
            out += _unbounded(nested, name + '.')
    return out


@pytest.mark.parametrize('cls', [HardFrame, CloudLabel, CloudStats, UpdateWeights.Request],
                         ids=lambda c: c.__name__)
def test_capped_types_are_bounded(cls):
    # The types whose readers are capped at the transport (laecips_core.dds): a PREALLOCATED
    # history's payload is the type's maximum serialized size, so every field needs a bound.
    assert _unbounded(cls) == []
    assert _unbounded(EdgeStats), 'the check finds unbounded fields'


def test_hard_frame_jpeg_crosses_processes(procs, rosnode):
    from conftest import wait_until
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String
    got = []
    rosnode.node.create_subscription(
        HardFrame, '/laecips/hard_frames', got.append,
        QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    ack = rosnode.node.create_publisher(String, '/test/ack', 10)
    procs.start('pub', [sys.executable, os.path.join(os.path.dirname(__file__), 'peers',
                                                     'hardframe_pub.py')])
    wait_until(lambda: got, 60, 'a HardFrame from the publisher process')
    ack.publish(String(data='ok'))
    msg = got[0]
    sent = wait_until(lambda: [ln.split()[1] for ln in procs.log('pub').splitlines()
                               if ln.startswith('sha256')], 10, 'the sent hash')[0]
    data = bytes(msg.image.data)
    assert hashlib.sha256(data).hexdigest() == sent
    assert msg.image.format == 'jpeg' and (msg.robot_id, msg.seq, msg.model_version) == (
        'robot1', 42, 3)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1234, 5678)
    import io

    from PIL import Image
    assert Image.open(io.BytesIO(data)).size == (640, 480)


def test_update_weights_5mb_between_processes(procs, rosnode):
    procs.start('server', [sys.executable, os.path.join(os.path.dirname(__file__), 'peers',
                                                        'weights_server.py')])
    client = rosnode.node.create_client(UpdateWeights, '/test/update_weights')
    payload = np.random.default_rng(3).integers(0, 256, 6 * 1024 * 1024,
                                                dtype=np.uint8).tobytes()
    req = UpdateWeights.Request(version=7, format='safetensors', weights=payload,
                                sha256=hashlib.sha256(payload).hexdigest())
    res = rosnode.call(client, req, timeout=60)
    assert res.accepted, res.reason
    assert res.active_version == 7 and res.reason == f'ok {len(payload)} bytes'
    req.sha256 = '0' * 64
    assert not rosnode.call(client, req, timeout=60).accepted


def test_rosbags_mcap_round_trip(tmp_path):
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from laecips_eval.bags import typestore
    store = typestore()
    rng = np.random.default_rng(5)
    sent = {}
    with Writer(tmp_path / 'bag', version=9, storage_plugin=StoragePlugin.MCAP) as w:
        for i, cls in enumerate([HardFrame, CloudLabel, EdgeStats, CloudStats, WeightPush,
                                 Policy]):
            name = f'laecips_msgs/msg/{cls.__name__}'
            msg = _fill(cls(), rng)
            raw = serialize_message(msg)
            # rosbags must parse what rclpy wrote, and rclpy what rosbags writes, field for
            # field (alignment padding bytes are unspecified in CDR, so whole buffers may differ).
            again = bytes(store.serialize_cdr(store.deserialize_cdr(raw, name), name))
            assert len(again) == len(raw)
            assert deserialize_message(again, cls) == msg
            conn = w.add_connection(f'/t/{cls.__name__}', name, typestore=store)
            w.write(conn, 1000 + i, raw)
            sent[f'/t/{cls.__name__}'] = (cls, msg, raw)
    assert any(p.suffix == '.mcap' for p in (tmp_path / 'bag').iterdir())
    seen = 0
    with Reader(tmp_path / 'bag') as r:
        for conn, _, raw in r.messages():
            cls, msg, sent_raw = sent[conn.topic]
            assert bytes(raw) == sent_raw
            assert deserialize_message(bytes(raw), cls) == msg
            seen += 1
    assert seen == len(sent)


def test_class_map_message_round_trip(tmp_path):
    # Class names on the wire: ids -> names and colours for a consumer of ~/mask.
    from laecips_core.classes import CAMVID, ClassMap
    from laecips_eval.bags import typestore
    from laecips_msgs.msg import ClassMap as ClassMapMsg
    from laecips_ros import class_map
    msg = class_map.to_msg(CAMVID, frame_id='camera')
    assert list(msg.names) == list(CAMVID.names) and msg.void_id == 11
    assert msg.colors[3].r == pytest.approx(128 / 255) and msg.colors[3].a == 1.0
    back = deserialize_message(serialize_message(msg), ClassMapMsg)
    assert class_map.from_msg(back) == CAMVID and back.header.frame_id == 'camera'  # float32
    other = ClassMap(('a', 'b'), ((255, 0, 0), (0, 0, 255)), 255)
    assert class_map.from_msg(class_map.to_msg(other)) == other
    store = typestore()  # rosbags reads what rclpy wrote (recording ~/class_map)
    name = 'laecips_msgs/msg/ClassMap'
    raw = serialize_message(msg)
    assert list(store.deserialize_cdr(raw, name).names) == list(CAMVID.names)
