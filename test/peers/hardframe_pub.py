# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Test peer: publish one HardFrame with a 640x480 JPEG until the test acknowledges it."""

import hashlib
import io
import sys

import numpy as np
from PIL import Image
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from laecips_msgs.msg import HardFrame


def main() -> None:
    rclpy.init()
    node = rclpy.create_node('hardframe_pub')
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format='JPEG', quality=90)
    msg = HardFrame()
    msg.header.frame_id = 'camera'
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1234, 5678
    msg.robot_id, msg.seq, msg.hardness = 'robot1', 42, 0.25
    msg.features = [0.1, 0.2, 0.3]
    msg.model_version = 3
    msg.image.format = 'jpeg'
    msg.image.data = buf.getvalue()
    print('sha256', hashlib.sha256(buf.getvalue()).hexdigest(), flush=True)
    pub = node.create_publisher(HardFrame, '/laecips/hard_frames',
                                QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    done = []
    node.create_subscription(String, '/test/ack', lambda m: done.append(m), 10)
    node.create_timer(0.2, lambda: pub.publish(msg))
    try:
        while rclpy.ok() and not done:
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    sys.exit(0)


if __name__ == '__main__':
    main()
