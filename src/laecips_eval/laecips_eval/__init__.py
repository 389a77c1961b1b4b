# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Evaluation of LAECIPS: CamVid bags, replay, metrics, experiments, emulated links."""
