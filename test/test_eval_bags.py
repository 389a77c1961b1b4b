# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""CamVid -> rosbag2 conversion and the replay node, played into another process over DDS."""

import time

from conftest import wait_until
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy

from laecips_eval import bags, camvid_to_bag


def _reliable(depth=100):
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def test_stamp_offsets_and_restamp():
    assert bags.header_stamp_offset('sensor_msgs/msg/Image') == 4
    assert bags.header_stamp_offset('laecips_msgs/msg/HardFrame') == 4
    assert bags.header_stamp_offset('laecips_msgs/msg/EdgeStats') == 4  # leading Time
    assert bags.header_stamp_offset('std_msgs/msg/String') is None
    a = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    raw = bags.image_cdr(a, 'rgb8', 5 * 10**9 + 7, 'cam')
    assert bags.cdr_stamp(raw, 4) == 5 * 10**9 + 7
    again = bags.restamp_cdr(raw, 4, 9 * 10**9 + 1)
    assert bags.cdr_stamp(again, 4) == 9 * 10**9 + 1 and len(again) == len(raw)
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image
    msg = deserialize_message(again, Image)
    assert msg.header.frame_id == 'cam' and np.array_equal(bags.image_array(msg), a)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_camvid_bag_replayed_once_in_order(storage, camvid, tmp_path, procs, rosnode):
    from sensor_msgs.msg import Image
    items = camvid_to_bag.select(camvid, 'drift', per_phase=2)
    assert [p for p, _ in items] == ['day', 'day', 'dusk_adapt', 'dusk_adapt', 'dusk', 'dusk']
    bag = tmp_path / 'bag'
    assert camvid_to_bag.main([str(bag), '--root', str(camvid), '--stream', 'drift',
                               '--per-phase', '2', '--rate', '10', '--storage', storage]) == 0
    images, gts = [], []
    rosnode.node.create_subscription(Image, '/camera/image_raw', images.append, _reliable())
    rosnode.node.create_subscription(Image, '/camera/ground_truth', gts.append, _reliable())
    p = procs.node('replay', 'laecips_eval.replay_node',
                   params={'bag': str(bag), 'rate': 4.0, 'restamp': True,
                           'wait_for_subscribers': 1, 'progress': False})
    wait_until(lambda: p.poll() is not None, 60, 'the replay node to finish')
    assert p.returncode == 0, procs.log('replay')
    # Acked before the replay exited: in this node's DDS queue, maybe not yet taken by its
    # executor (under load); then nothing more may come.
    wait_until(lambda: len(images) >= 6 and len(gts) >= 6, 10, 'all 12 messages')
    time.sleep(0.5)
    assert len(images) == 6 and len(gts) == 6
    assert [camvid_to_bag.parse_gt_frame_id(g.header.frame_id) for g in gts] == [
        (ph, f.name) for ph, f in items]
    for (_, f), img, gt in zip(items, images, gts):
        assert img.header.stamp == gt.header.stamp and img.header.frame_id == 'camera'
        assert img.encoding == 'rgb8' and gt.encoding == 'mono8'
        assert np.array_equal(bags.image_array(img), f.rgb())
        assert np.array_equal(bags.image_array(gt), f.gt())
    # Restamped on this machine's clock: recent and increasing, not the bag's 2026 stamps.
    ns = [s.header.stamp.sec * 10**9 + s.header.stamp.nanosec for s in images]
    assert all(b > a for a, b in zip(ns, ns[1:]))
    assert ns[0] != camvid_to_bag.START_NS
    assert ns[-1] - ns[0] >= 0.5 * 5 / (10 * 4.0) * 1e9  # paced, at roughly 10 Hz x 4


def test_replay_plays_a_bag_written_by_rosbags(tmp_path, procs, rosnode):
    from geometry_msgs.msg import PointStamped
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import String
    store = get_typestore(Stores.ROS2_JAZZY)
    T = store.types  # noqa: N806
    stamp = T['builtin_interfaces/msg/Time']
    header = T['std_msgs/msg/Header']
    bag = tmp_path / 'foreign'
    n = 20
    with Writer(bag, version=8, storage_plugin=StoragePlugin.SQLITE3) as w:
        cs = w.add_connection('/chatter', 'std_msgs/msg/String', typestore=store)
        cp = w.add_connection('/point', 'geometry_msgs/msg/PointStamped', typestore=store)
        ci = w.add_connection('/jpeg', 'sensor_msgs/msg/CompressedImage', typestore=store)
        cx = w.add_connection('/skipped', 'std_msgs/msg/String', typestore=store)
        for i in range(n):
            t = 10**9 + i * 10**7
            h = header(stamp=stamp(sec=t // 10**9, nanosec=t % 10**9), frame_id=f'f{i}')
            w.write(cs, t, store.serialize_cdr(T['std_msgs/msg/String'](data=f'hello {i}'),
                                                'std_msgs/msg/String'))
            pt = T['geometry_msgs/msg/PointStamped'](
                header=h, point=T['geometry_msgs/msg/Point'](x=float(i), y=0.5, z=-1.0))
            w.write(cp, t + 1, store.serialize_cdr(pt, 'geometry_msgs/msg/PointStamped'))
            img = T['sensor_msgs/msg/CompressedImage'](
                header=h, format='jpeg', data=np.full(1000 + i, i, np.uint8))
            w.write(ci, t + 2, store.serialize_cdr(img, 'sensor_msgs/msg/CompressedImage'))
            w.write(cx, t + 3, store.serialize_cdr(T['std_msgs/msg/String'](data='x'),
                                                    'std_msgs/msg/String'))
    got = {'/chatter': [], '/point': [], '/jpeg': [], '/skipped': []}
    for topic, cls in (('/chatter', String), ('/point', PointStamped),
                       ('/jpeg', CompressedImage), ('/skipped', String)):
        rosnode.node.create_subscription(cls, topic, got[topic].append, _reliable())
    p = procs.node('replay', 'laecips_eval.replay_node',
                   params={'bag': str(bag), 'rate': 0.0, 'exclude_topics': ['/skipped'],
                           'wait_for_subscribers': 1, 'progress': False, 'depth': 100})
    wait_until(lambda: p.poll() is not None, 60, 'the replay node to finish')
    assert p.returncode == 0, procs.log('replay')
    wait_until(lambda: all(len(got[t]) >= n for t in ('/chatter', '/point', '/jpeg')), 10,
               'every message taken')
    time.sleep(0.5)
    assert [m.data for m in got['/chatter']] == [f'hello {i}' for i in range(n)]
    assert [m.point.x for m in got['/point']] == [float(i) for i in range(n)]
    assert [m.header.frame_id for m in got['/point']] == [f'f{i}' for i in range(n)]
    # Not restamped: the recorded stamps come through.
    assert got['/point'][3].header.stamp.sec == 1 and got['/point'][3].header.stamp.nanosec \
        == 3 * 10**7
    assert [len(m.data) for m in got['/jpeg']] == [1000 + i for i in range(n)]
    assert all(bytes(m.data) == bytes([i]) * (1000 + i) for i, m in enumerate(got['/jpeg']))
    assert got['/skipped'] == []
    assert 'done: 60 messages published' in procs.log('replay')


def test_replay_reports_a_missing_bag(procs, tmp_path):
    p = procs.node('replay', 'laecips_eval.replay_node',
                   params={'bag': str(tmp_path / 'nope'), 'progress': False})
    wait_until(lambda: p.poll() is not None, 30, 'the replay node to exit')
    assert p.returncode == 1 and 'replay:' in procs.log('replay')


def test_replay_publishes_the_bag_time_on_clock(tmp_path, procs, rosnode):
    # --clock: /clock carries the bag's time as it plays (for use_sim_time), restamped
    # messages carry that clock's time, and it never goes back.
    from geometry_msgs.msg import PointStamped
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from rosgraph_msgs.msg import Clock
    store = get_typestore(Stores.ROS2_JAZZY)
    T = store.types  # noqa: N806
    bag, n, step, t0 = tmp_path / 'clocked', 10, 10**8, 5 * 10**9  # 10 Hz for 0.9 s
    with Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        c = w.add_connection('/point', 'geometry_msgs/msg/PointStamped', typestore=store)
        for i in range(n):
            t = t0 + i * step
            h = T['std_msgs/msg/Header'](stamp=T['builtin_interfaces/msg/Time'](
                sec=t // 10**9, nanosec=t % 10**9), frame_id=f'f{i}')
            pt = T['geometry_msgs/msg/PointStamped'](
                header=h, point=T['geometry_msgs/msg/Point'](x=float(i), y=0.0, z=0.0))
            w.write(c, t, store.serialize_cdr(pt, 'geometry_msgs/msg/PointStamped'))
    ticks, points = [], []
    rosnode.node.create_subscription(
        Clock, '/clock', lambda m: ticks.append(m.clock.sec * 10**9 + m.clock.nanosec),
        QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT))
    rosnode.node.create_subscription(PointStamped, '/point', points.append, _reliable())
    p = procs.node('replay', 'laecips_eval.replay_node', '--clock', '50',
                   params={'bag': str(bag), 'rate': 1.0, 'restamp': True,
                           'wait_for_subscribers': 1, 'progress': False})
    wait_until(lambda: p.poll() is not None, 60, 'the replay node to finish')
    assert p.returncode == 0, procs.log('replay')
    wait_until(lambda: len(points) >= n, 10, 'every message taken')
    assert ticks, 'no /clock received'
    assert ticks == sorted(ticks) and t0 <= ticks[0] and ticks[-1] <= t0 + (n - 1) * step
    # Ticks between the messages too (50 Hz over 0.9 s of bag time), not only at each one.
    assert len(set(ticks)) > 2 * n and ticks[-1] - ticks[0] >= 0.8 * (n - 1) * step
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in points]
    assert stamps == sorted(stamps) and t0 <= stamps[0] and stamps[-1] <= t0 + (n - 1) * step
    assert [m.point.x for m in points] == [float(i) for i in range(n)]


def test_replay_clock_option():
    from laecips_eval.replay_node import cli_args
    assert cli_args(['r', '--clock', '--ros-args', '-p', 'bag:=b']) == [
        'r', '--ros-args', '-p', 'bag:=b', '-p', 'clock:=40.0']  # ros2 bag play's default
    assert cli_args(['r', '--clock', '10']) == ['r', '--ros-args', '-p', 'clock:=10.0']
    assert cli_args(['r', '--clock=5']) == ['r', '--ros-args', '-p', 'clock:=5.0']
    assert cli_args(['r', '--ros-args', '-p', 'bag:=b']) == ['r', '--ros-args', '-p', 'bag:=b']


class _FakeFrame:
    def __init__(self, i: int):
        self.name = f'frame{i:03d}'
        self.i = i

    def rgb(self):
        return np.full((24, 32, 3), self.i, np.uint8)

    def gt(self):
        return np.full((24, 32), self.i % 11, np.uint8)


def write_phased_bag(path, phases, rate):
    """Write a small camera + ground truth bag with these phases (one frame each)."""
    items = [(ph, _FakeFrame(i)) for i, ph in enumerate(phases)]
    return camvid_to_bag.write(items, path, rate=rate)


def test_read_stream_gives_phases_names_and_rate(tmp_path):
    phases = ['sun', 'sun', 'rain_adapt', 'rain', 'rain']
    write_phased_bag(tmp_path / 'b', phases, rate=5.0)
    got, names, rate = camvid_to_bag.read_stream(tmp_path / 'b')
    assert got == phases and names == [f'frame{i:03d}' for i in range(5)]
    assert rate == pytest.approx(5.0)
    write_phased_bag(tmp_path / 'one', ['x'], rate=3.0)
    assert camvid_to_bag.read_stream(tmp_path / 'one') == (['x'], ['frame000'], 1.0)
