# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Test peer: a camera that bursts, in its own process; prints what it published as JSON.

Usage: ``camera_burst.py BURST TRICKLE [reliable]``. It publishes 64x48 rgb8 frames on
/camera/image_raw: slowly until the edge's /laecips/stats counts one, then waits for a stats
message showing the edge idle (every frame taken handled) and prints ``{"before": P0}``
(frames published so far) with that message's counters, then BURST frames as fast as it can,
then TRICKLE frames 0.1 s apart (so the burst's last frames, if dropped, show as a gap), then
``{"after": P1}``. The frames before the edge's first one cannot be accounted (they may
predate the match), which is why the test compares counters across the burst only.
"""

import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from laecips_msgs.msg import EdgeStats


def main() -> None:
    burst, trickle = int(sys.argv[1]), int(sys.argv[2])
    reliable = len(sys.argv) > 3 and sys.argv[3] == 'reliable'
    rclpy.init()
    node = rclpy.create_node('camera_burst')
    rel = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
    pub = node.create_publisher(Image, '/camera/image_raw', QoSProfile(depth=10, reliability=rel))
    stats: list[EdgeStats] = []
    node.create_subscription(EdgeStats, '/laecips/stats', stats.append,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    msg = Image(height=48, width=64, encoding='rgb8', step=64 * 3)
    msg.data = np.random.default_rng(0).integers(0, 256, 48 * 64 * 3, dtype=np.uint8).tobytes()
    msg.header.frame_id = 'camera'
    sent = 0

    def publish() -> None:
        nonlocal sent
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 10**9)
        pub.publish(msg)
        sent += 1

    def spin_until(cond, timeout: float, every: float | None = None) -> None:
        deadline, last = time.monotonic() + timeout, 0.0
        while not cond():
            if time.monotonic() > deadline:
                sys.exit(f'timed out ({sent} published, stats {stats[-1:]})')
            if every is not None and time.monotonic() - last >= every:
                publish()
                last = time.monotonic()
            rclpy.spin_once(node, timeout_sec=0.02)

    def idle_after(n_seen: int) -> bool:
        # A stats message sent after the last publish that shows no frame in flight.
        return len(stats) > n_seen and (
            stats[-1].frames_in == stats[-1].masks_out + stats[-1].skipped + stats[-1].rejected)

    try:
        spin_until(lambda: pub.get_subscription_count() >= 1, 60)
        spin_until(lambda: stats and stats[-1].frames_in >= 1, 60, every=0.2)
        n = len(stats)
        spin_until(lambda: idle_after(n + 1), 60)  # one full stats period after the last frame
        s0 = stats[-1]
        print(json.dumps({'before': sent, 'frames_in': s0.frames_in,
                          'camera_lost': s0.camera_lost}), flush=True)
        for _ in range(burst):
            publish()
        for _ in range(trickle):
            time.sleep(0.1)  # pacing the camera, not synchronising
            publish()
        print(json.dumps({'after': sent}), flush=True)
        # Stay up until the test has read the edge's counters (it stops this process).
        while rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
