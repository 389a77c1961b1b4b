# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Edge side of LAECIPS: the inference engine, the factory weights, the edge node."""
