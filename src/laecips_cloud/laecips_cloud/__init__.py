# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Cloud side of LAECIPS: labellers (SAM+SSA, ESPNet-C, TorchScript), the cloud bridge node, online distillation and the trainer node."""
