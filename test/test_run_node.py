# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""laecips_ros.node.run_node: Ctrl-C is a clean stop even when a binding wraps it; bugs are not."""

import subprocess
import sys

import pytest

# A node whose first timer callback raises ``error``: as a callback hit by SIGINT while rclpy's
# C code builds a message does (the binding raises its own error from the KeyboardInterrupt),
# or one whose context SIGINT shut down, or a bug.
NODE = """
import sys
import rclpy
from rclpy.node import Node
from std_msgs.msg import String
from laecips_ros.node import run_node

class Raiser(Node):
    def __init__(self):
        super().__init__('raiser')
        self.pub = self.create_publisher(String, 'chatter', 1)
        self.create_timer(0.05, self.fire)

    def fire(self):
        {error}

run_node(Raiser, sys.argv)
"""


@pytest.mark.parametrize('error, code', [
    ('raise KeyboardInterrupt', 0),
    ('raise RuntimeError("taking a request failed") from KeyboardInterrupt()', 0),
    # SIGINT shut the context down under a running callback: its publish fails.
    ('rclpy.try_shutdown(); self.pub.publish(String())', 0),
    ('raise RuntimeError("a real bug")', 1),
])
def test_run_node_stops_clean_on_interrupt_only(error, code):
    r = subprocess.run([sys.executable, '-c', NODE.format(error=error)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == code, r.stderr
    assert ('a real bug' in r.stderr) == (code != 0)
