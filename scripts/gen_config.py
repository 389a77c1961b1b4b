# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Write config/<node>.yaml from each node's declared parameters, every one commented.

The nodes' PARAMS tables (default, description[, (min, max)]) are the one source; this
script lays them out as ROS 2 params files, with the deployment values below where they
differ from the defaults. test/test_config.py checks that the files and the tables stay in step.
"""

from pathlib import Path

from laecips_cloud.bridge_node import PARAMS as BRIDGE
from laecips_cloud.trainer_node import TrainerNode
from laecips_edge.edge_node import EdgeNode

ROOT = Path(__file__).resolve().parents[1]
FILES = {
    'edge.yaml': ("The edge node (laecips_edge/edge_node), one per robot, in the robot's "
                  'namespace.', EdgeNode.PARAMS, {}),
    'cloud_bridge.yaml': ('The cloud bridge (laecips_cloud/cloud_bridge): labels hard frames '
                          'of every robot.', BRIDGE, {}),
    'trainer.yaml': ('The trainer (laecips_cloud/trainer): distils cloud labels into each '
                     "robot's edge model, pushes weights and policy.", TrainerNode.PARAMS, {}),
}


def _yaml(v: object) -> str:
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, str):
        return "''" if v == '' else ("'" + v.replace("'", "''") + "'")
    return repr(v)


def render(title: str, params: dict, values: dict) -> str:
    lines = [f'# {title}', '# Every parameter, its meaning and its value; defaults are the '
             "node's own unless marked.", '/**:', '  ros__parameters:']
    for name, (default, text, *limits) in params.items():
        value = values.get(name, default)
        if limits:
            text += f' [{limits[0][0]}, {limits[0][1]}]'
        lines.append(f'    # {text}' + ('' if value == default else f' (default {default!r})'))
        lines.append(f'    {name}: {_yaml(value)}')
    return '\n'.join(lines) + '\n'


def main() -> None:
    for name, (title, params, values) in FILES.items():
        (ROOT / 'config' / name).write_text(render(title, params, values))
        print('wrote', ROOT / 'config' / name)


if __name__ == '__main__':
    main()
