# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Measure a DDS path: an ``echo`` node answers every ``/probe/ping`` on ``/probe/pong``.

``python -m laecips_eval.link_probe echo`` runs until stopped; ``... ping --count N --size
BYTES`` waits for the echo, sends N messages one after another (each after the previous
answer), prints one JSON line with the round-trip times in ms, and exits 0 when every
answer came back. Messages are sensor_msgs/CompressedImage (stamp + payload), reliable QoS.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import rclpy
from rclpy.executors import ExternalShutdownException, ShutdownException, SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage

from laecips_ros.node import interrupted

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def echo() -> int:
    node = rclpy.create_node('link_probe_echo')
    pub = node.create_publisher(CompressedImage, '/probe/pong', QOS)
    node.create_subscription(CompressedImage, '/probe/ping', pub.publish, QOS)
    try:
        rclpy.spin(node)
    finally:
        node.destroy_node()
    return 0


def ping(count: int, size: int, timeout: float) -> int:
    node = rclpy.create_node('link_probe_ping')
    got = threading.Event()
    answers: list = []

    def on_pong(msg: CompressedImage) -> None:
        answers.append((time.monotonic(), msg))
        got.set()

    pub = node.create_publisher(CompressedImage, '/probe/ping', QOS)
    node.create_subscription(CompressedImage, '/probe/pong', on_pong, QOS)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spin = threading.Thread(target=_spin, args=(executor,), daemon=True)
    spin.start()
    result = {'count': count, 'size': size, 'rtt_ms': [], 'lost': 0}
    try:
        deadline = time.monotonic() + timeout
        while pub.get_subscription_count() < 1 or node.count_publishers('/probe/pong') < 1:
            if time.monotonic() > deadline:
                result['error'] = 'no echo found'
                print(json.dumps(result), flush=True)
                return 1
            time.sleep(0.05)
        # Matching both ways (the echo's pong writer to our reader) can lag behind discovery.
        time.sleep(0.5)
        payload = bytes(size)
        for i in range(count):
            got.clear()
            answers.clear()
            msg = CompressedImage(format=f'probe {i}', data=payload)
            t0 = time.monotonic()
            pub.publish(msg)
            if not got.wait(timeout) or answers[-1][1].format != f'probe {i}':
                result['lost'] += 1
                continue
            result['rtt_ms'].append(round((answers[-1][0] - t0) * 1e3, 2))
    finally:
        executor.shutdown(timeout_sec=2.0)
        spin.join(5.0)
        node.destroy_node()
    print(json.dumps(result), flush=True)
    return 0 if result['lost'] == 0 else 1


def _spin(executor: SingleThreadedExecutor) -> None:
    try:
        executor.spin()
    except (ExternalShutdownException, ShutdownException):
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog='link_probe', description=__doc__.split('\n')[1])
    p.add_argument('mode', choices=['echo', 'ping'])
    p.add_argument('--count', type=int, default=5)
    p.add_argument('--size', type=int, default=1000, help='payload bytes per message')
    p.add_argument('--timeout', type=float, default=30.0)
    args, ros = p.parse_known_args(argv)
    rclpy.init(args=ros)
    try:
        return echo() if args.mode == 'echo' else ping(args.count, args.size, args.timeout)
    except BaseException as e:  # Ctrl-C, SIGTERM
        if not interrupted(e):
            raise
        return 0
    finally:
        rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main())
