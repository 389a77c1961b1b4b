# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Launch files, parameters, RViz config and the laecips runner for the LAECIPS system."""
