# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The one description of the system's nodes: package, executable, module, name, params, remaps.

``laecips up`` (laecips_bringup), ``evaluate`` (laecips_eval.orchestrate) and the test
fixtures start nodes from it, and a test reads the launch files in launch/ as syntax trees
and checks they say the same. Every start passes the node's shipped params file
(config/<node>.yaml) and then its overrides (``-p name:=value``, see :func:`param_value`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import os
from pathlib import Path
import sys

from laecips_core.interface import CAMERA

CAMERA_TOPIC = CAMERA


@dataclass(frozen=True)
class NodeSpec:
    """One node as started on a robot or in the cloud."""

    key: str  # short name: evaluate's --<key>-param, --node-module <key>=...
    package: str
    executable: str  # the console script (ros2 run / launch)
    module: str  # the same node as ``python -m <module>``
    name: str
    params_file: str  # a file in config/
    per_robot: bool = False  # runs in the robot's namespace (robot id = namespace)
    remap_camera: bool = False  # subscribes the camera topic (remappable)
    extra_remaps: tuple[tuple[str, str], ...] = field(default=())


EDGE = NodeSpec('edge', 'laecips_edge', 'edge_node', 'laecips_edge.edge_node', 'edge',
                'edge.yaml', per_robot=True, remap_camera=True)
BRIDGE = NodeSpec('bridge', 'laecips_cloud', 'cloud_bridge', 'laecips_cloud.bridge_node',
                  'cloud_bridge', 'cloud_bridge.yaml')
TRAINER = NodeSpec('trainer', 'laecips_cloud', 'trainer', 'laecips_cloud.trainer_node',
                   'trainer', 'trainer.yaml')
ALL = (EDGE, BRIDGE, TRAINER)
BY_KEY = {s.key: s for s in ALL}

GROUPS: dict[str, tuple[NodeSpec, ...]] = {
    'edge': (EDGE,),
    'cloud': (BRIDGE, TRAINER),
    'all': ALL,
}


class Raw(str):
    """A parameter value already in ROS's ``-p`` syntax (YAML), passed as it is."""


def param_value(v: object) -> str:
    """Return ``v`` as the value of ``-p name:=value`` (YAML), strings kept strings."""
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, (list, tuple)):
        return '[' + ','.join(param_value(x) for x in (v or [''])) + ']'  # [] has no type
    if isinstance(v, str) and (v == '' or any(c in v for c in ':{}[]#,')):
        return "'" + v.replace("'", "''") + "'"
    return str(v)


def param_args(params: dict) -> list[str]:
    """Return ``-p name:=value`` arguments for ``params``."""
    return [a for k, v in params.items() for a in ('-p', f'{k}:={param_value(v)}')]


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
    args += param_args({'use_sim_time': use_sim_time, **(overrides or {})})
    if spec.remap_camera and camera_topic != CAMERA_TOPIC:
        args += ['-r', f'{CAMERA_TOPIC}:={camera_topic}']
    for a, b in spec.extra_remaps:
        args += ['-r', f'{a}:={b}']
    return args


def module_argv(spec: NodeSpec, module: str | None = None, **kw: object) -> list[str]:
    """Return ``python -m <module> --ros-args ...`` for ``spec`` (see :func:`ros_args`)."""
    return [sys.executable, '-m', module or spec.module, *ros_args(spec, **kw)]
