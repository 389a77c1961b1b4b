# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
LAECIPS-ROS core: the ROS-free code the edge and the cloud share (no rclpy import).

Class maps, CamVid, codecs, weights files, signing, upload policy, hardness, metrics, the
edge architectures, the ROS interface (topic and service names, QoS as plain data), the one
description of the nodes, and the logic the nodes wire to topics.
"""
