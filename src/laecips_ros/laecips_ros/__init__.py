# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""rclpy helpers the LAECIPS nodes share (the algorithms stay in laecips_core, without ROS)."""
