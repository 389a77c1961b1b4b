# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Test peer: an UpdateWeights server that checks the sha256 of what it receives."""

import hashlib

import rclpy
from rclpy.executors import ExternalShutdownException

from laecips_msgs.srv import UpdateWeights


def main() -> None:
    rclpy.init()
    node = rclpy.create_node('weights_server')

    def handle(req: UpdateWeights.Request, res: UpdateWeights.Response):
        data = bytes(req.weights)
        seen = hashlib.sha256(data).hexdigest()
        res.accepted = seen == req.sha256
        res.reason = f'ok {len(data)} bytes' if res.accepted else f'sha256 {seen}'
        res.active_version = req.version if res.accepted else 0
        return res

    node.create_service(UpdateWeights, '/test/update_weights', handle)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
