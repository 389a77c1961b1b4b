# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Run the paper's experiment: replay the CamVid drift stream into the running system, per system.

For every system (:mod:`laecips_eval.systems`) one after another: start the edge node (and
the trainer for LAECIPS) as separate processes, the recorder, then the replay of the bag
(frames restamped at publish time); wait until the recorder has every answer; stop them.
The cloud bridge runs for the whole command. With ``--link RATE,RTT,LOSS`` the edge, the
recorder and the replay run in one network namespace and the bridge and trainer in
another, DDS crossing an emulated link (:mod:`laecips_eval.netlink`).

Writes to ``--out``: ``table.md`` (the command, the table, the goals), ``results.json``
(rows, per-run summaries, systems, link counters), ``runs/*.json`` (per frame), plots and
``overlays/*.png``, ``logs/``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
import shlex
import signal
import sys
import time

from laecips_core import nodes
from laecips_core.camvid import STREAMS
from laecips_eval import camvid_to_bag, report, systems
from laecips_eval.netlink import Link, parse_spec
from laecips_eval.orchestrate import (
    REUSABLE,
    Runner,
    delta,
    features_of,
    keep_indices,
    kv,
    node_argv,
    reused,
    run_system,
)
from laecips_eval.results import overlays, rebuild, write_report

# Test preset: small input, a 1-thread edge, the labeller on few pixels, a short training.
TINY = {'edge': {'input_height': 90, 'input_width': 120},
        'bridge': {},
        'trainer': {}}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='evaluate', description=__doc__.split('\n')[1])
    p.add_argument('--out', default='eval_out', help='output folder')
    p.add_argument('--root', default=None, help='CamVid folder (default: LAECIPS_CAMVID, '
                   '../shared/data/camvid)')
    p.add_argument('--bag', default=None, help='use this bag (camera + ground truth topics) '
                   'instead of building the drift stream')
    p.add_argument('--stream', default='drift', choices=sorted(STREAMS),
                   help='named CamVid stream: drift (day -> dusk) or dusk_noise (the same '
                   'with sensor noise on the dusk phases: a stream the cloud labeller fails)')
    p.add_argument('--frames', type=int, default=None, help='first N frames of the stream')
    p.add_argument('--per-phase', type=int, default=None, help='first N frames of each phase')
    p.add_argument('--rate', type=float, default=None, help='camera frames per second '
                   "(default 2; with --bag the bag's own rate, which --rate rescales)")
    p.add_argument('--scale', type=float, default=1.0, help='resize frames (GT: nearest)')
    p.add_argument('--systems', default=','.join(systems.DEFAULT),
                   help=f'comma-separated, from: {", ".join(systems.ORDER)}')
    p.add_argument('--seeds', type=int, default=3, help='runs of the random baseline')
    p.add_argument('--deadline', type=float, default=1.0,
                   help='seconds after the edge mask within which the cloud mask counts')
    p.add_argument('--link', default=None, help="emulated link 'RATE,RTT,LOSS', e.g. "
                   "'20mbit,50ms,0.0' (needs root)")
    p.add_argument('--tiny', action='store_true', help='small models and inputs (tests)')
    p.add_argument('--laecips-policy', default='random:rate=0.25',
                   help="LAECIPS's initial policy, until the trainer pushes a fitted one: "
                   'RULE or RULE:k=v,k=v (default: uploads at the budget, unbiased samples)')
    p.add_argument('--edge-param', action='append', default=[], metavar='K=V')
    p.add_argument('--bridge-param', action='append', default=[], metavar='K=V')
    p.add_argument('--trainer-param', action='append', default=[], metavar='K=V')
    p.add_argument('--node-module', action='append', default=[], metavar='KIND=MODULE',
                   help='run another module for a node: edge, bridge or trainer')
    p.add_argument('--trainer-nice', type=int, default=0,
                   help='niceness of the trainer: background work that must not starve the '
                   'edge and bridge on a small machine (0: none)')
    p.add_argument('--robot-id', default='robot1')
    p.add_argument('--overlays', type=int, default=6, help='overlay images per system')
    p.add_argument('--domain-id', type=int, default=None, help='ROS_DOMAIN_ID (default: '
                   'the environment, else derived from the process id)')
    p.add_argument('--start-timeout', type=float, default=180.0)
    p.add_argument('--start-delay', type=float, default=1.0,
                   help='seconds between nodes ready and the first frame')
    p.add_argument('--idle-timeout', type=float, default=None,
                   help='recorder: seconds without news before it gives up waiting')
    p.add_argument('--system-timeout', type=float, default=None)
    p.add_argument('--overload-out', default=None, metavar='JSON',
                   help='with cloud_only: write the overload figure there (laecips_eval.overload:'
                   " labels in time, the labeller alone, the bridge's counts)")
    p.add_argument('--rebuild', action='store_true',
                   help='only re-render the report of --out from its runs/*.json')
    p.add_argument('--resume', default=None, metavar='DIR',
                   help='take every complete run of a system with the same parameters and '
                   'seed from an earlier --out DIR (an interrupted evaluation, or one with an '
                   'incomplete run), and run the rest')
    p.add_argument('--reuse', default=None, metavar='DIR',
                   help="take the runs of systems that do not depend on LAECIPS's run "
                   f'({", ".join(REUSABLE)}) from an earlier --out DIR with the same stream')
    return p


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.rebuild:
        print(rebuild(Path(args.out)))
        return 0
    # Stop cleanly (nodes, namespaces) on SIGTERM, and on SIGINT even when started in the
    # background of a non-interactive shell (which ignores SIGINT).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    out = Path(args.out)
    (out / 'runs').mkdir(parents=True, exist_ok=True)
    try:
        names = systems.resolve([s for s in args.systems.split(',') if s])
        spec = parse_spec(args.link) if args.link else None
    except ValueError as e:
        print(f'evaluate: {e}', file=sys.stderr)
        return 2
    args.modules = kv(args.node_module)
    for kind in args.modules:
        if kind not in nodes.BY_KEY:
            print(f'evaluate: --node-module: unknown node {kind!r}', file=sys.stderr)
            return 2
    # The edge states the evaluation's deadline to the bridge, which schedules by it.
    args.edge_params = {'label_deadline': args.deadline, **(TINY['edge'] if args.tiny else {}),
                        **kv(args.edge_param)}
    args.bridge_params = {'torch_threads': 1, 'device': 'cpu',
                          **(TINY['bridge'] if args.tiny else {}), **kv(args.bridge_param)}
    args.trainer_params = {'num_threads': 1, **(TINY['trainer'] if args.tiny else {}),
                           **kv(args.trainer_param)}
    rule, _, rest = args.laecips_policy.partition(':')
    laecips_policy = (rule, kv([x for x in rest.split(',') if x]))

    # The stream.
    from laecips_core import camvid
    root = camvid.find_root(args.root)
    if args.bag:
        # Phases (ground truth frame_ids) and the frame rate come from the bag; a replay at
        # rate 1.0 plays it at its own rate, --rate asks for another.
        bag, frames_by_name = Path(args.bag), {}
        phases, _, bag_rate = camvid_to_bag.read_stream(bag)
        n_frames = len(phases)
        args.replay_rate = args.rate / bag_rate if args.rate else 1.0
        args.rate = args.rate or bag_rate
    else:
        args.rate = args.rate or 2.0
        if root is None:
            print('evaluate: CamVid not found (--root or LAECIPS_CAMVID)', file=sys.stderr)
            return 1
        items = camvid_to_bag.select(root, args.stream, per_phase=args.per_phase,
                                     limit=args.frames)
        bag = out / 'stream_bag'
        camvid_to_bag.write(items, bag, rate=args.rate, scale=args.scale, overwrite=True)
        n_frames = len(items)
        phases = [p for p, _ in items]
        frames_by_name = {f.name: f for _, f in items}
    args.idle_timeout = args.idle_timeout or max(10.0, 3 * args.deadline + 5)
    args.system_timeout = args.system_timeout or n_frames / args.rate * 4 + 300
    keep = keep_indices(phases, args.overlays)

    env = dict(os.environ)
    env.setdefault('ROS_DOMAIN_ID', str(args.domain_id if args.domain_id is not None
                                        else 1 + os.getpid() % 200))
    if args.domain_id is not None:
        env['ROS_DOMAIN_ID'] = str(args.domain_id)
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    env.update(OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1', RCUTILS_COLORIZED_OUTPUT='0')

    started = time.time()
    runs: dict[str, list[dict]] = {}
    link_counters: dict[str, dict] = {}
    with contextlib.ExitStack() as stack:
        link = stack.enter_context(Link(spec)) if spec else None
        runner = Runner(out / 'logs', env, link)
        stack.callback(runner.stop_all)
        cloud = any(n != 'edge_only' for n in names)
        if cloud:
            runner.start('bridge', 'cloud', node_argv('bridge', args.bridge_params,
                                                     modules=args.modules))
        ratio, features, bytes_ratio, cloud_bytes = None, None, None, None
        for name in names:
            for sys_ in systems.build(name, ratio, features, args.seeds, laecips_policy,
                                      bytes_ratio):
                before = link.wait_stats() if link else None
                run = (reused(args.reuse, sys_, n_frames, out)
                       or reused(args.resume, sys_, n_frames, out, resume=True))
                for attempt in range(2 if run is None else 0):
                    run = run_system(sys_, args, runner, bag, n_frames, out, keep)
                    if len(run['frames']) == n_frames:
                        break
                    # A stall (a paused machine, a stuck replay) ends the recorder early:
                    # a run of part of the stream is not a measurement of the system.
                    print(f'[evaluate] {sys_.label}: only {len(run["frames"])} of {n_frames} '
                          f'frames recorded' + ('; running it again' if not attempt else ''),
                          flush=True)
                else:
                    if run is not None and len(run['frames']) != n_frames:
                        raise RuntimeError(f'{sys_.label}: incomplete twice')
                runs.setdefault(sys_.label, []).append(run)
                if link:
                    link_counters[sys_.label + f'#{sys_.seed}'] = delta(before,
                                                                         link.wait_stats())
                if name == 'laecips':
                    s = report.summarize(run)
                    ratio = s['upload_ratio']
                    if cloud_bytes:  # the online rules upload LAECIPS's total bytes
                        bytes_ratio = s['total_bytes_per_frame'] / cloud_bytes
                if name == 'cloud_only':
                    features = features_of(run)
                    cloud_bytes = report.summarize(run)['total_bytes_per_frame']
    cmd = 'evaluate ' + shlex.join(argv if argv is not None else sys.argv[1:])
    meta = {'command': cmd, 'frames': n_frames, 'rate': args.rate, 'deadline': args.deadline,
            'link': args.link, 'link_counters': link_counters,
            'wall_s': time.time() - started}
    md = write_report(out, runs, names, meta)
    overlays(runs, out, frames_by_name)
    print(md)
    if args.overload_out and 'cloud-only' in runs:
        _write_overload(Path(args.overload_out), runs['cloud-only'][0], n_frames, args, cmd)
    return 0


def _write_overload(path: Path, run: dict, n_frames: int, args: argparse.Namespace,
                    cmd: str) -> None:
    import json

    from laecips_eval import overload
    fig = {'command': 'laecips ' + cmd, 'frames': n_frames, 'rate': args.rate,
           'deadline_s': args.deadline, **overload.figure(run, n_frames, args.rate,
                                                           args.deadline)}
    # Measured now, the nodes stopped: the same machine in the same run.
    fig['standalone'] = overload.labeller_fps(args.bridge_params)
    fig['labeller_fps_standalone'] = fig['standalone']['frames_per_s']
    fig['refined_in_time_over_standalone'] = (fig['refined_in_time_per_s']
                                              / fig['labeller_fps_standalone'])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fig, indent=1) + '\n')
    print(json.dumps({k: v for k, v in fig.items() if k != 'standalone'}, indent=1))


if __name__ == '__main__':
    sys.exit(main())
