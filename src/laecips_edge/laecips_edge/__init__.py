# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Edge side of LAECIPS: lightweight segmentation models, hardness scores, upload policy and the edge node."""
