# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The factory weights the edge ships with (``weights/factory.safetensors``), found installed."""

from __future__ import annotations

from pathlib import Path


def factory_weights() -> str:
    """Return the installed factory weights (share/laecips_edge/weights), else the source."""
    try:
        from ament_index_python.packages import get_package_share_directory
        p = Path(get_package_share_directory('laecips_edge')) / 'weights' / 'factory.safetensors'
        if p.is_file():
            return str(p)
    except (ImportError, LookupError, ValueError):
        pass
    return str(Path(__file__).resolve().parents[1] / 'weights' / 'factory.safetensors')
