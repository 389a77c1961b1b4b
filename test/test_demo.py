# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The demo, the README's first command: it exits 0 without an abort, and its status is sane.

``./laecips demo`` printed 'terminate called without an active exception' and exited 134
after writing its report (its status thread was still inside rclpy when Python exited); in a
log its progress bar wrote a line per frame and kept showing the initial rule after the
trainer pushed fitted policies.
"""

import io
import os
from pathlib import Path
import subprocess

from conftest import ROOT, wait_until
from rclpy.qos import QoSProfile

from laecips_bringup.demo import Monitor
from laecips_msgs.msg import EdgeStats


class _Log(io.StringIO):
    def isatty(self) -> bool:
        return False


def _stats(frames_in: int, rule: str, version: int = 1) -> EdgeStats:
    m = EdgeStats(robot_id='robot1', frames_in=frames_in, fps=2.0, model_version=version)
    m.policy.rule = rule
    return m


def _feed(rosnode, monitor, msgs):
    pub = rosnode.node.create_publisher(EdgeStats, '/laecips/stats', QoSProfile(depth=10))
    wait_until(lambda: pub.get_subscription_count() >= 1, 20, 'the monitor to subscribe')
    for m in msgs:
        pub.publish(m)
        wait_until(lambda m=m: monitor.last is not None and monitor.last.frames_in == m.frames_in
                   and monitor.last.policy.rule == m.policy.rule, 10, 'the monitor to see it')


def test_monitor_in_a_log_prints_lines_not_one_per_frame_with_the_current_rule(rosnode):
    out = _Log()
    monitor = Monitor(40, log_period=1000.0, out=out)
    assert not monitor.interactive
    try:
        # System 1: 30 stats messages, the trainer pushes a fitted policy halfway.
        msgs = [_stats(i, 'random' if i <= 15 else 'learned', 1 if i <= 15 else 2)
                for i in range(1, 31)]
        msgs += [_stats(i, 'never') for i in range(1, 6)]  # system 2: a new edge node
        _feed(rosnode, monitor, msgs)
    finally:
        monitor.close()
    assert not monitor.thread.is_alive()  # joined before the node and context went
    lines = out.getvalue().splitlines()
    assert '\r' not in out.getvalue() and len(lines) == 4, lines  # start, end (x2 systems)
    assert lines[0].startswith('[demo] robot1 random: 1/40 frames')
    assert lines[1].startswith('[demo] robot1 learned: 30/40 frames') and 'model v2' in lines[1]
    assert lines[2].startswith('[demo] robot1 never: 1/40') and '5/40' in lines[3]


def test_monitor_bar_shows_the_current_rule(rosnode):
    out = _Log()
    monitor = Monitor(10, interactive=True, out=out)
    try:
        _feed(rosnode, monitor, [_stats(1, 'random'), _stats(2, 'learned')])
    finally:
        monitor.close()
    assert not monitor.thread.is_alive()
    assert 'robot1 learned' in out.getvalue().rsplit('\r', 1)[-1]


def test_demo_exits_0_without_an_abort(camvid, shared_models, tmp_path):
    # The README's first command, on 3 frames per phase: the LAECIPS system, every node.
    env = dict(os.environ, LAECIPS_SHARED=str(shared_models.parent),
               LAECIPS_CAMVID=str(camvid))
    r = subprocess.run([str(ROOT / 'laecips'), 'demo', '--per-phase', '3', '--systems',
                        'laecips', '--out', str(tmp_path / 'demo')], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert 'terminate called' not in r.stderr and 'Aborted' not in r.stderr, r.stderr[-3000:]
    assert (Path(tmp_path / 'demo') / 'table.md').is_file()
    # Not a line per frame in a log: a few status lines per system.
    status = [ln for ln in r.stderr.splitlines() if ln.startswith('[demo] robot1')]
    assert 2 <= len(status) <= 12, status
