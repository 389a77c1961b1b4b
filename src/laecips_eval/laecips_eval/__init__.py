# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Evaluation of LAECIPS: CamVid to rosbag2, bag replay, metrics, the experiment runner and an emulated network link."""
