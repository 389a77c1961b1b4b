# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Tools beside the runtime: benchmarks, downloads, factory training, the soak."""
