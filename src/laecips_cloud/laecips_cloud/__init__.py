# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Cloud side of LAECIPS: labellers, the cloud bridge, distillation and the trainer."""
