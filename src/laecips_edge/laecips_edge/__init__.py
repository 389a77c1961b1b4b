# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Edge side of LAECIPS: segmentation models, hardness, upload policy, the edge node."""
