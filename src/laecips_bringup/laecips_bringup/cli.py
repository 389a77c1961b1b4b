# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The ``laecips`` command: start the system, run the demo, fetch data, evaluate.

``launch_ros`` is not on PyPI, so ``laecips up`` starts the same executables with the same
parameters and remappings as the launch files in launch/ (a test keeps the two in step).
"""

from __future__ import annotations

import argparse
import sys

from laecips_bringup import system
from laecips_bringup.runner import Runner


def up(args: argparse.Namespace) -> int:
    """Start a group of nodes and relay their logs until Ctrl-C or one of them exits."""
    runner = Runner()
    for robot in args.robot_id:
        for spec in system.GROUPS[args.group]:
            if not spec.per_robot and robot != args.robot_id[0]:
                continue  # one cloud serves every robot
            label = f'{robot}/{spec.name}' if spec.per_robot else spec.name
            argv = [str(system.executable_path(spec))]
            argv += system.ros_args(spec, robot_id=robot, params_file=args.params_file,
                                    camera_topic=args.camera_topic.format(robot_id=robot),
                                    use_sim_time=args.use_sim_time,
                                    overrides=_overrides(args.set, spec.name))
            runner.add(label, argv)
    code = runner.run()
    print(f'[laecips] stopped ({runner.reason or "shutdown requested"}), exit code {code}',
          flush=True)
    return code


def _overrides(items: list[str], node: str) -> dict:
    """Pick the ``NODE.KEY=VALUE`` items meant for ``node``."""
    out = {}
    for item in items:
        target, sep, value = item.partition('=')
        name, dot, key = target.partition('.')
        if not (sep and dot):
            raise SystemExit(f'--set expects NODE.KEY=VALUE, got {item!r}')
        if name == node:
            out[key] = value
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='laecips', description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    u = sub.add_parser('up', help='start nodes as the launch files do')
    u.add_argument('group', choices=sorted(system.GROUPS), help='which nodes')
    u.add_argument('--robot-id', action='append', default=None,
                   help='robot id = namespace of the edge node (repeat for several robots)')
    u.add_argument('--params-file', default=None,
                   help='one params YAML for every node (default: config/<node>.yaml)')
    u.add_argument('--camera-topic', default=system.CAMERA_TOPIC,
                   help='camera topic; {robot_id} is replaced, e.g. /{robot_id}/camera/image_raw')
    u.add_argument('--set', action='append', default=[], metavar='NODE.KEY=VALUE',
                   help='override a parameter, e.g. edge.policy_rule=always')
    u.add_argument('--use-sim-time', action='store_true')
    u.set_defaults(func=up)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, 'robot_id', 1) is None:
        args.robot_id = ['robot1']
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
