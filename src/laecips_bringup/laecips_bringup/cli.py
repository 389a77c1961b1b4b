# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The ``laecips`` command: start the system, run the demo, fetch data, evaluate.

``launch_ros`` is not on PyPI, so ``laecips up`` starts the same executables with the same
parameters and remappings as the launch files in launch/ (``laecips_core.nodes``; a test
keeps the two in step).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from laecips_bringup import demo
from laecips_bringup.runner import Runner
from laecips_core import dds, nodes

# Commands that are other packages' console scripts, reachable without install/*/lib on PATH.
PASSTHROUGH = {
    'evaluate': ('laecips_eval.evaluate', 'run the systems of the protocol, write a report'),
    'bag': ('laecips_eval.camvid_to_bag', 'convert CamVid into a rosbag2 (mcap) file'),
    'replay': ('laecips_eval.replay_node', 'replay a rosbag2 bag (node; takes --ros-args)'),
    'camvid-download': ('laecips_tools.camvid_download', 'download CamVid (SegNet version)'),
    'train-factory': ('laecips_tools.train_factory', 'train the factory edge model'),
    'train-teacher': ('laecips_tools.train_teacher', 'train the robust cloud teacher (#20)'),
    'bench-corruptions': ('laecips_tools.bench_corruptions', 'edge, ESPNet-C and the teacher '
                          'under corruptions'),
    'calibrate-edge': ('laecips_tools.calibrate_edge', "store an edge model's confidence "
                       'calibration (anchor set) in its weights file'),
    'bench-edge': ('laecips_tools.bench_edge', 'edge model and node benchmark (JSON)'),
    'bench-cloud': ('laecips_tools.bench_cloud', 'labeller benchmark (JSON)'),
    'bench-fleet': ('laecips_tools.bench_fleet', 'N robots against the bridge on Ray, and '
                    'GPUs for a fleet (JSON, plot)'),
    'sam-download': ('laecips_tools.sam_download', 'download an official SAM checkpoint'),
    'soak': ('laecips_tools.soak', 'many robots for minutes: memory and accounting (JSON)'),
}


def up_env(environ: dict, profile: str | None) -> tuple[dict, str | None]:
    """
    Return the nodes' environment and the Fast DDS profile it names.

    ``profile`` None: the one exported already, else the shared-memory profile sized for
    camera frames (config/fastdds_shm.xml); ``''``: none added.
    """
    env = dict(environ)
    if profile is None:
        if dds.profile_set(env):
            return env, dds.profile_set(env)
        profile = str(nodes.config_dir() / dds.SHM_PROFILE)
    if not profile:
        return env, dds.profile_set(env)
    for name in dds.PROFILE_VARS:
        env.pop(name, None)
    env.update(dds.profile_env(profile, env))
    return env, profile


def up(args: argparse.Namespace) -> int:
    """Start a group of nodes and relay their logs until Ctrl-C or one of them exits."""
    env, profile = up_env(os.environ, args.dds_profile)
    print(f'[laecips] Fast DDS profile: {profile or "none (Fast DDS defaults)"}', flush=True)
    runner = Runner()
    for robot in args.robot_id:
        for spec in nodes.GROUPS[args.group]:
            if not spec.per_robot and robot != args.robot_id[0]:
                continue  # one cloud serves every robot
            label = f'{robot}/{spec.name}' if spec.per_robot else spec.name
            argv = [str(nodes.executable_path(spec))]
            argv += nodes.ros_args(spec, robot_id=robot, params_file=args.params_file,
                                    camera_topic=args.camera_topic.format(robot_id=robot),
                                    use_sim_time=args.use_sim_time,
                                    overrides=_overrides(args.set, spec.name))
            runner.add(label, argv)
    code = runner.run(env=env)
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
            out[key] = nodes.Raw(value)  # the user's text is ROS parameter syntax already
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='laecips', description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    u = sub.add_parser('up', help='start nodes as the launch files do')
    u.add_argument('group', choices=sorted(nodes.GROUPS), help='which nodes')
    u.add_argument('--robot-id', action='append', default=None,
                   help='robot id = namespace of the edge node (repeat for several robots)')
    u.add_argument('--params-file', default=None,
                   help='one params YAML for every node (default: config/<node>.yaml)')
    u.add_argument('--camera-topic', default=nodes.CAMERA_TOPIC,
                   help='camera topic; {robot_id} is replaced, e.g. /{robot_id}/camera/image_raw')
    u.add_argument('--set', action='append', default=[], metavar='NODE.KEY=VALUE',
                   help='override a parameter, e.g. edge.policy_rule=always')
    u.add_argument('--use-sim-time', action='store_true')
    u.add_argument('--dds-profile', default=None, metavar='XML',
                   help='Fast DDS profile of the nodes (default: the one exported in '
                   'FASTDDS_/FASTRTPS_DEFAULT_PROFILES_FILE, else config/fastdds_shm.xml: '
                   "shared memory sized for camera frames; '' for none)")
    u.set_defaults(func=up)
    d = sub.add_parser('demo', help='the whole system on the CamVid drift stream, with report')
    demo.add_arguments(d)
    d.set_defaults(func=demo.run)
    for name, (module, text) in PASSTHROUGH.items():
        c = sub.add_parser(name, help=text, add_help=False)
        c.add_argument('args', nargs=argparse.REMAINDER)
        c.set_defaults(func=lambda a, m=module, n=name: _passthrough(m, n, a.args))
    return p


def _passthrough(module: str, name: str, args: list[str]) -> int:
    sys.argv = [f'laecips {name}', *args]
    return importlib.import_module(module).main() or 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in PASSTHROUGH:  # its own parser sees every option, --help too
        return _passthrough(PASSTHROUGH[argv[0]][0], argv[0], argv[1:])
    args = parser().parse_args(argv)
    if getattr(args, 'robot_id', 1) is None:
        args.robot_id = ['robot1']
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
