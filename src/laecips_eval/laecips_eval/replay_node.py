# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Play any rosbag2 bag (mcap or sqlite3) into ROS 2 at its recorded or a scaled rate.

The bag is read with ``rosbags``; each connection's type name (e.g. ``sensor_msgs/msg/Image``)
gives the rclpy message class by import, and the recorded CDR bytes are published as they
are, without deserialization. With ``restamp`` the leading ``header.stamp`` (or leading
``builtin_interfaces/Time``) of each message is rewritten in place to the publish time on
this machine's clock; messages that shared a stamp in the bag (a frame and its ground truth)
share the new one. Exits when the bag has been played (after reliable subscribers have
acknowledged everything, or ``ack_timeout``).

Parameters: ``bag`` (path), ``rate`` (1.0 = recorded; 0 = as fast as possible), ``restamp``,
``topics`` / ``exclude_topics`` (empty = all), ``reliability`` (``reliable`` default or
``best_effort``), ``depth``, ``wait_for_subscribers`` (start once every topic has that
many subscribers), ``wait_timeout``, ``start_delay``, ``progress``, ``clock``.

``clock`` (Hz, 0 = off; ``--clock [HZ]`` on the command line, 40 Hz when no number is given,
as ``ros2 bag play --clock``): publish ``/clock`` (rosgraph_msgs/Clock, keep last 1, best
effort: what rclpy and rclcpp subscribe with) carrying the bag's time as it plays, so that
nodes started with ``use_sim_time:=true`` run on it. The clock starts at the first message's
time, advances with the playback (scaled by ``rate``; with ``rate`` 0, message by message)
and never goes back; restamped messages then carry that clock's time.
"""

from __future__ import annotations

from collections import OrderedDict
import importlib
from pathlib import Path
import sys
import time

from rcl_interfaces.msg import ParameterDescriptor
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from laecips_eval import bags
from laecips_ros.node import interrupted, ros_session


def message_class(msgtype: str):
    """Import the rclpy class of ``pkg/msg/Name`` (or ``pkg/Name``)."""
    parts = msgtype.split('/')
    pkg, name = parts[0], parts[-1]
    sub = parts[1] if len(parts) == 3 else 'msg'
    return getattr(importlib.import_module(f'{pkg}.{sub}'), name)


class Restamper:
    """Map recorded stamps to publish-time stamps; equal recorded stamps get equal new ones."""

    def __init__(self, now_ns, keep: int = 256):
        self.now_ns = now_ns
        self.keep = keep
        self.map: OrderedDict[int, int] = OrderedDict()

    def __call__(self, old_ns: int) -> int:
        new = self.map.get(old_ns)
        if new is None:
            new = self.now_ns()
            self.map[old_ns] = new
            while len(self.map) > self.keep:
                self.map.popitem(last=False)
        return new


class ReplayNode(Node):

    def __init__(self) -> None:
        super().__init__('replay')
        d = self._declare
        self.bag = d('bag', '', 'rosbag2 folder (or its .mcap/.db3 file) to play')
        self.rate = d('rate', 1.0, 'playback speed factor: 1.0 recorded, 2.0 twice as fast, '
                      '0 as fast as possible')
        self.restamp = d('restamp', False, 'rewrite leading header stamps to publish time')
        self.topics = d('topics', [''], 'topics to play (empty: all)')
        self.exclude = d('exclude_topics', [''], 'topics not to play')
        self.reliability = d('reliability', 'reliable', 'reliable or best_effort')
        self.depth = d('depth', 10, 'publisher history depth')
        self.wait_subs = d('wait_for_subscribers', 0,
                           'start once every played topic has this many subscribers')
        self.wait_timeout = d('wait_timeout', 30.0, 'seconds to wait for subscribers')
        self.start_delay = d('start_delay', 0.0, 'seconds to wait before the first message')
        self.ack_timeout = d('ack_timeout', 10.0, 'seconds to wait for reliable acks at end')
        self.progress = d('progress', True, 'show a progress bar on stderr')
        self.clock_hz = float(self.declare_parameter(
            'clock', 0.0, ParameterDescriptor(
                description='publish /clock with the bag time at this rate in Hz (0: off), '
                'for nodes with use_sim_time', dynamic_typing=True)).value or 0.0)
        self.published = 0
        self.clock_pub = None
        self.clock_ns = 0  # the last /clock published (bag time)
        self.clock_ticks = 0
        if self.clock_hz < 0:
            raise ValueError(f'clock must be >= 0 Hz, not {self.clock_hz:g}')
        if self.clock_hz > 0:
            self.clock_pub = self.create_publisher(
                Clock, '/clock', QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                                            durability=DurabilityPolicy.VOLATILE))

    def _declare(self, name: str, default, description: str):
        return self.declare_parameter(
            name, default, ParameterDescriptor(description=description)).value

    def qos(self) -> QoSProfile:
        rel = {'reliable': ReliabilityPolicy.RELIABLE,
               'best_effort': ReliabilityPolicy.BEST_EFFORT}.get(self.reliability)
        if rel is None:
            raise ValueError(f'reliability must be reliable or best_effort, '
                             f'not {self.reliability!r}')
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, self.depth),
                          reliability=rel, durability=DurabilityPolicy.VOLATILE)

    def play(self) -> int:
        """Play the bag once; return the number of messages published."""
        from rosbags.rosbag2 import Reader
        from tqdm import tqdm
        if not self.bag:
            raise ValueError('parameter bag is required')
        path = Path(self.bag)
        if path.is_file():
            path = path.parent
        wanted = {t for t in self.topics if t}
        excluded = {t for t in self.exclude if t}
        store = bags.typestore()
        qos = self.qos()
        with Reader(path) as reader:
            conns, pubs, offsets = [], {}, {}
            for c in reader.connections:
                if (wanted and c.topic not in wanted) or c.topic in excluded:
                    continue
                try:
                    cls = message_class(c.msgtype)
                except (ImportError, AttributeError) as e:
                    self.get_logger().warning(f'skipping {c.topic}: no rclpy type '
                                              f'{c.msgtype} ({e})')
                    continue
                if c.topic not in pubs:
                    pubs[c.topic] = self.create_publisher(cls, c.topic, qos)
                conns.append(c)
                offsets[c.id] = _stamp_offset(c, store) if self.restamp else None
            if not conns:
                self.get_logger().warning('nothing to play')
                return 0
            self._wait_for_subscribers(pubs)
            if self.start_delay > 0:
                time.sleep(self.start_delay)
            total = sum(c.msgcount for c in conns)
            self.get_logger().info(f'playing {total} messages on {len(pubs)} topics from '
                                   f'{path} at rate {self.rate:g}')
            clock = self.get_clock()
            if self.clock_pub is not None:  # stamps on the clock the replay publishes
                restamper = Restamper(lambda: self.clock_ns)
            else:
                restamper = Restamper(lambda: clock.now().nanoseconds)
            t0_wall = t0_bag = None
            bar = tqdm(total=total, unit='msg', desc='replay', disable=not self.progress,
                       file=sys.stderr)
            try:
                for conn, t_bag, raw in reader.messages(connections=conns):
                    if not rclpy.ok(context=self.context):
                        break
                    if t0_wall is None:
                        t0_wall, t0_bag = time.monotonic(), t_bag
                    if self.rate > 0:
                        due = t0_wall + (t_bag - t0_bag) / 1e9 / self.rate
                        self._wait(due, t0_wall, t0_bag)
                    self._tick(t_bag)
                    off = offsets[conn.id]
                    data = bytes(raw)
                    if off is not None:
                        data = bags.restamp_cdr(data, off, restamper(bags.cdr_stamp(data, off)))
                    pubs[conn.topic].publish(data)
                    self.published += 1
                    bar.update(1)
            finally:
                bar.close()
            if qos.reliability == ReliabilityPolicy.RELIABLE:
                for pub in pubs.values():
                    pub.wait_for_all_acked(rclpy.duration.Duration(seconds=self.ack_timeout))
        self.get_logger().info(f'done: {self.published} messages published')
        return self.published

    def _wait(self, due: float, t0_wall: float, t0_bag: int) -> None:
        """Sleep until monotonic time ``due``, publishing /clock at its rate meanwhile."""
        while True:
            now = time.monotonic()
            if now >= due:
                return
            if self.clock_pub is None:
                time.sleep(due - now)
                return
            self._tick(t0_bag + round((now - t0_wall) * self.rate * 1e9))
            time.sleep(min(due - now, 1.0 / self.clock_hz))

    def _tick(self, bag_ns: int) -> None:
        """Publish /clock = ``bag_ns`` (never earlier than the last one), when it is on."""
        if self.clock_pub is None:
            return
        self.clock_ns = max(self.clock_ns, int(bag_ns))
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(self.clock_ns, 10**9)
        self.clock_pub.publish(msg)
        self.clock_ticks += 1

    def _wait_for_subscribers(self, pubs: dict) -> None:
        if self.wait_subs <= 0:
            return
        deadline = time.monotonic() + self.wait_timeout
        while any(p.get_subscription_count() < self.wait_subs for p in pubs.values()):
            if time.monotonic() > deadline:
                missing = [t for t, p in pubs.items()
                           if p.get_subscription_count() < self.wait_subs]
                self.get_logger().warning(f'starting without subscribers on {missing}')
                return
            time.sleep(0.05)


def _stamp_offset(conn, store) -> int | None:
    try:
        return bags.header_stamp_offset(conn.msgtype, store)
    except KeyError:
        # Not in our typestore: use the definition stored in the bag.
        from rosbags.typesys import get_types_from_msg
        store.register(get_types_from_msg(conn.msgdef.data, conn.msgtype))
        return bags.header_stamp_offset(conn.msgtype, store)


CLOCK_HZ = 40.0  # --clock without a number, as ros2 bag play


def cli_args(argv: list[str]) -> list[str]:
    """Turn ``--clock [HZ]`` before ``--ros-args`` into ``-p clock:=HZ`` (ROS arguments)."""
    ros_at = argv.index('--ros-args') if '--ros-args' in argv else len(argv)
    head, ros = argv[:ros_at], argv[ros_at:]
    out, hz = [], None
    i = 0
    while i < len(head):
        a = head[i]
        if a == '--clock' or a.startswith('--clock='):
            value = a.partition('=')[2]
            if not value and i + 1 < len(head) and _number(head[i + 1]):
                value = head[i + 1]
                i += 1
            hz = float(value) if value else CLOCK_HZ
        else:
            out.append(a)
        i += 1
    if hz is None:
        return argv
    return out + (ros or ['--ros-args']) + ['-p', f'clock:={hz!r}']


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def main(args: list[str] | None = None) -> int:
    code = 0
    args = cli_args(list(sys.argv if args is None else args))
    with ros_session(args) as made:
        try:
            made.append(ReplayNode())
            made[0].play()
        except (ValueError, FileNotFoundError, OSError) as e:
            print(f'replay: {e}', file=sys.stderr)
            code = 1
        except BaseException as e:
            if not interrupted(e):
                raise
            code = 130
    return code


if __name__ == '__main__':
    sys.exit(main())
