# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
What the system is made of: each node's package, executable, name, params file, remaps.

The launch files in launch/ and the ``laecips up`` runner both describe these nodes; a test
reads the launch files' syntax trees and checks they say the same as this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import os
from pathlib import Path

CAMERA_TOPIC = '/camera/image_raw'


@dataclass(frozen=True)
class NodeSpec:
    """One node as started on a robot or in the cloud."""

    package: str
    executable: str
    name: str
    params_file: str  # a file in config/
    per_robot: bool = False  # runs in the robot's namespace (robot id = namespace)
    remap_camera: bool = False  # subscribes the camera topic (remappable)
    extra_remaps: tuple[tuple[str, str], ...] = field(default=())


EDGE = NodeSpec('laecips_edge', 'edge_node', 'edge', 'edge.yaml', per_robot=True,
                remap_camera=True)
BRIDGE = NodeSpec('laecips_cloud', 'cloud_bridge', 'cloud_bridge', 'cloud_bridge.yaml')
TRAINER = NodeSpec('laecips_cloud', 'trainer', 'trainer', 'trainer.yaml')

GROUPS: dict[str, tuple[NodeSpec, ...]] = {
    'edge': (EDGE,),
    'cloud': (BRIDGE, TRAINER),
    'all': (EDGE, BRIDGE, TRAINER),
}


def config_dir() -> Path:
    """Return the installed config/ folder (share/laecips_bringup), else the source one."""
    try:
        from ament_index_python.packages import get_package_share_directory
        d = Path(get_package_share_directory('laecips_bringup')) / 'config'
        if d.is_dir():
            return d
    except (ImportError, LookupError, ValueError):
        pass
    return Path(os.environ.get('LAECIPS_ROOT', Path(__file__).resolve().parents[3])) / 'config'


def executable_path(spec: NodeSpec) -> Path:
    """Return the installed console script, as ``ros2 run`` would find it."""
    from ament_index_python.packages import get_package_prefix
    return Path(get_package_prefix(spec.package)) / 'lib' / spec.package / spec.executable


def ros_args(spec: NodeSpec, robot_id: str = 'robot1', params_file: str | None = None,
             camera_topic: str = CAMERA_TOPIC, use_sim_time: bool = False,
             overrides: dict | None = None) -> list[str]:
    """Return the --ros-args a launch file's Node(...) would pass for this spec."""
    args = ['--ros-args', '-r', f'__node:={spec.name}']
    if spec.per_robot:
        args += ['-r', f'__ns:=/{robot_id}']
    args += ['--params-file', str(params_file or config_dir() / spec.params_file)]
    args += ['-p', f'use_sim_time:={str(use_sim_time).lower()}']
    for k, v in (overrides or {}).items():
        args += ['-p', f'{k}:={v}']
    if spec.remap_camera and camera_topic != CAMERA_TOPIC:
        args += ['-r', f'{CAMERA_TOPIC}:={camera_topic}']
    for a, b in spec.extra_remaps:
        args += ['-r', f'{a}:={b}']
    return args
