# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Soak benchmark: many robots into one cloud bridge and trainer for minutes; prints JSON.

Starts ``laecips up all`` for ``--robots`` robots (one process per node, real DDS on this
machine only), publishes CamVid frames (noise without CamVid) on every robot's camera topic
at ``--rate`` Hz from this process, and samples every node's resident memory from /proc.
At the end it stops the cameras, waits until the edges' counters settle, and reports:

- per process: RSS over time and its growth after warm-up (median of the first minute
  after warm-up against the median of the last minute; goal < 5 %). Warm-up lasts
  ``--warmup`` minutes and at least until the cloud has labelled enough frames to fill the
  trainer's bounded stores (``trainer_full_s``: each robot's replay buffer and validation
  set, counted from the bridge's ``labels_out`` shared evenly among the robots): before
  that the trainer's memory grows by design, up to the bound its parameters set;
- per robot: frames published against frames_in = masks_out + skipped + rejected, with the
  uploads, ``no_cloud`` and labels; the bridge's drops; the trainer's weight pushes.

Frames DDS drops before they reach an edge (overwritten in its KEEP_LAST history while it
was starved of CPU, or given up by the camera's writer) are counted by the edge as
``camera_lost`` (sequence gaps, laecips_core.camera_loss): published = frames_in +
camera_lost, counted from a baseline taken once each edge has received a frame (frames
before an edge's first one cannot be told from frames sent before it matched).

``--hostile`` adds #17's attacker: a peer in its own process without the key
(laecips_tools.hostile_peer: PNG bombs, malformed, forged and replayed labels, unsigned
pushes) while the nodes share an HMAC key, plus camera bursts (``--burst`` frames back to
back on one robot every ``--burst-period`` s, from the robots' own camera publisher). The
report then says, per attack, how many were sent and where they were counted
(``attacks``); ``every_attack_counted`` is the check, with nothing crashed and every frame
accounted.

Example: ``./laecips soak --robots 4 --rate 10 --minutes 10 --out reports/soak.json``;
``./laecips soak --robots 4 --minutes 10 --hostile --out docs/bench/soak_hostile.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np


def rss_kb(pid: int) -> int | None:
    """Return the resident set size of ``pid`` in kB, None once it is gone."""
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def children(pid: int) -> dict[int, str]:
    """Return the direct children of ``pid`` with their command lines."""
    out = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open(f'/proc/{d}/stat') as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            if ppid == pid:
                with open(f'/proc/{d}/cmdline', 'rb') as f:
                    out[int(d)] = f.read().replace(b'\0', b' ').decode(errors='replace')
        except (OSError, IndexError, ValueError):
            continue
    return out


def label(cmdline: str) -> str:
    """Name a node process by its executable and namespace."""
    exe = Path(cmdline.split()[1] if cmdline.startswith(sys.executable) else
               cmdline.split()[0]).name
    ns = next((a.split(':=', 1)[1] for a in cmdline.split() if a.startswith('__ns:=')), '')
    return f'{ns.strip("/")}/{exe}' if ns else exe


def growth(series: list[tuple[float, int]], warmup_s: float, window_s: float = 60.0) -> dict:
    """Return RSS (MB) at the start and end of the run after warm-up, and the growth in %."""
    after = [(t, kb) for t, kb in series if t >= warmup_s]
    if len(after) < 2:
        return {'start_mb': None, 'end_mb': None, 'growth_pct': None}
    t0, t1 = after[0][0], after[-1][0]
    first = [kb for t, kb in after if t <= t0 + window_s]
    last = [kb for t, kb in after if t >= t1 - window_s]
    a, b = statistics.median(first) / 1024, statistics.median(last) / 1024
    return {'start_mb': round(a, 1), 'end_mb': round(b, 1),
            'growth_pct': round(100 * (b - a) / a, 2)}


def trainer_fill_labels(sets: list[str]) -> int:
    """Return the cloud labels per robot that fill the trainer's replay buffer and val set."""
    from laecips_cloud.trainer_node import TrainerNode
    p = {k: TrainerNode.PARAMS[k][0] for k in ('buffer_size', 'val_size', 'val_fraction')}
    for s in sets:  # the soak's own --set overrides, e.g. trainer.buffer_size=64
        key, _, value = s.partition('=')
        node, _, name = key.partition('.')
        if node == 'trainer' and name in p:
            p[name] = type(p[name])(value)
    vf = p['val_fraction']  # every 1/vf-th pair is held out for validation
    train = p['buffer_size'] / (1 - vf) if vf < 1 else math.inf
    val = p['val_size'] / vf if vf > 0 else 0
    return math.ceil(max(train, val))


def full_at(labels: list[tuple[float, int]], need: int) -> float | None:
    """Return the first time ``labels`` (time, labels_out) reached ``need``, None if never."""
    return next((t for t, n in labels if n >= need), None)


def frames(camvid: str | None, n: int = 24) -> list[np.ndarray]:
    """Return a few camera frames: CamVid dusk + day when found, else seeded noise."""
    from laecips_core import camvid as cv
    root = cv.find_root(camvid)
    if root is None:
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (360, 480, 3), dtype=np.uint8) for _ in range(n)]
    got = cv.frames(root, 'test', (cv.DAY_TEST, cv.DUSK))
    step = max(1, len(got) // n)
    return [f.rgb() for f in got[::step][:n]]


def accounted(published: int, m, base: int = 0) -> bool:
    """Every published frame: received and handled, or counted lost in DDS (EdgeStats)."""
    return (published == m.frames_in + m.camera_lost - base
            and m.frames_in == m.masks_out + m.skipped + m.rejected)


class Cameras:
    """Publish frames on every robot's camera topic and record what the system reports."""

    def __init__(self, robots: list[str], images: list[np.ndarray]):
        import rclpy
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from laecips_core import codecs
        from laecips_msgs.msg import CloudStats, EdgeStats, WeightPush
        rclpy.init()
        self.node = rclpy.create_node('soak_cameras')
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {r: self.node.create_publisher(Image, f'/{r}/camera/image_raw', qos)
                     for r in robots}
        self.msgs = [codecs.array_to_image(im, Image, 'rgb8') for im in images]
        self.sent = dict.fromkeys(robots, 0)
        # Per robot: frames_in + camera_lost when counting started (handshake), and the frames
        # published before it, which the accounting leaves out.
        self.base = dict.fromkeys(robots, 0)
        self.edge: dict[str, object] = {}
        self.edge_reports = dict.fromkeys(robots, 0)
        self.cloud = None
        self.pushes: list[tuple[str, int, bool]] = []
        self.lock = threading.Lock()
        sub = self.node.create_subscription
        sub(EdgeStats, '/laecips/stats', self._on_edge, qos)
        sub(CloudStats, '/laecips/stats_cloud', lambda m: setattr(self, 'cloud', m), qos)
        sub(WeightPush, '/laecips/weight_pushes', lambda m: self.pushes.append(
            (m.robot_id, m.version, m.accepted)), qos)
        self.executor = rclpy.executors.SingleThreadedExecutor()
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def _on_edge(self, m) -> None:
        with self.lock:
            self.edge[m.robot_id] = m
            if m.robot_id in self.edge_reports:
                self.edge_reports[m.robot_id] += 1

    def handshake(self, timeout: float = 120.0, retry: float = 15.0) -> None:
        """
        Send one frame at a time until every edge has taken one, then take each baseline.

        One frame in flight per robot: a frame that sat in DDS or the edge's queue past the
        baseline would be counted as received but not as published. A frame is sent again
        only after ``retry`` seconds without it arriving (lost before the subscription
        matched, or on best effort), so a late handshake frame needs a delay that long.
        """
        deadline = time.monotonic() + timeout
        while not self.ready():  # frames before the edges' subscriptions match go nowhere
            if time.monotonic() > deadline:
                raise RuntimeError('an edge did not subscribe to its camera')
            time.sleep(0.1)

        def got(r: str) -> bool:
            with self.lock:
                return r in self.edge and self.edge[r].frames_in > 0
        sent_at: dict[str, float] = {}
        i = 0
        while not all(got(r) for r in self.sent):
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError('an edge received no camera frame')
            for r in self.sent:
                if not got(r) and now - sent_at.get(r, -retry) >= retry:
                    self.publish(i, only=r)
                    sent_at[r] = now
            i += 1
            time.sleep(0.1)
        with self.lock:
            seen = dict(self.edge_reports)

        def idle() -> bool:  # two reports after the first frame, nothing in flight
            with self.lock:
                return all(self.edge_reports[r] >= seen[r] + 2 and self.edge[r].frames_in
                           == self.edge[r].masks_out + self.edge[r].skipped
                           + self.edge[r].rejected for r in self.sent)
        while not idle():
            if time.monotonic() > deadline:
                raise RuntimeError('the edges did not settle after the first frames')
            time.sleep(0.1)
        with self.lock:
            for r in self.sent:
                self.base[r] = int(self.edge[r].frames_in + self.edge[r].camera_lost)
                self.sent[r] = 0

    def burst(self, robot: str, n: int) -> None:
        """Publish ``n`` frames back to back on ``robot``'s camera (a camera burst)."""
        pub, msg = self.pubs[robot], self.msgs[0]
        msg.header.frame_id = f'{robot}_camera'
        for _ in range(n):
            msg.header.stamp = self.node.get_clock().now().to_msg()
            pub.publish(msg)
            self.sent[robot] += 1

    def ready(self) -> bool:
        return all(p.get_subscription_count() > 0 for p in self.pubs.values())

    def publish(self, i: int, only: str | None = None) -> None:
        msg = self.msgs[i % len(self.msgs)]
        for r, pub in self.pubs.items():
            if only is not None and r != only:
                continue
            msg.header.stamp = self.node.get_clock().now().to_msg()
            msg.header.frame_id = f'{r}_camera'
            pub.publish(msg)
            self.sent[r] += 1

    def settled(self) -> bool:
        with self.lock:
            return all(r in self.edge and accounted(n, self.edge[r], self.base[r])
                       for r, n in self.sent.items())

    def close(self) -> None:
        import rclpy
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown()


def run(args: argparse.Namespace) -> dict:
    robots = [f'robot{i + 1}' for i in range(args.robots)]
    argv = [sys.executable, '-m', 'laecips_bringup.cli', 'up', 'all',
            '--camera-topic', '/{robot_id}/camera/image_raw',
            '--set', 'edge.image_qos=reliable', '--set', 'edge.stats_period=1.0']
    for r in robots:
        argv += ['--robot-id', r]
    keydir = tempfile.TemporaryDirectory(prefix='laecips_soak_')
    if args.hostile:  # the nodes share a key the attacker does not have
        key = Path(keydir.name) / 'push.key'
        key.write_bytes(os.urandom(32))
        key.chmod(0o600)
        for node in ('edge', 'cloud_bridge', 'trainer'):
            argv += ['--set', f'{node}.hmac_key_file={key}']
    for s in args.set:
        argv += ['--set', s]
    log = open(args.log, 'w') if args.log else subprocess.DEVNULL
    up = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                          stdin=subprocess.DEVNULL)
    cams = Cameras(robots, frames(args.camvid))
    series: dict[str, list[tuple[float, int]]] = {}
    labels: list[tuple[float, int]] = []  # (t, the bridge's labels_out)
    out: dict = {'robots': args.robots, 'rate_hz': args.rate, 'minutes': args.minutes,
                 'warmup_minutes': args.warmup, 'hostile': args.hostile,
                 'loadavg_start': os.getloadavg()}
    hostile = None
    hostile_out = Path(keydir.name) / 'hostile.json'
    bursts = {'bursts': 0, 'frames': 0}
    try:
        t_wait = time.monotonic() + 300
        while not cams.ready():
            if up.poll() is not None or time.monotonic() > t_wait:
                raise RuntimeError('the system did not come up (see --log)')
            time.sleep(0.2)
        pids = {label(c): p for p, c in children(up.pid).items()}
        pids['soak_cameras'] = os.getpid()
        cams.handshake()
        if args.hostile:
            hostile = subprocess.Popen(
                [sys.executable, '-m', 'laecips_tools.hostile_peer', '--robots',
                 ','.join(robots), '--seconds', str(max(1.0, args.minutes * 60 - 10)),
                 '--period', str(args.hostile_period), '--out', str(hostile_out)],
                stdout=subprocess.DEVNULL, start_new_session=True, stdin=subprocess.DEVNULL)
            pids['hostile_peer'] = hostile.pid
        t0 = time.monotonic()
        next_sample, i = t0, 0
        next_burst = t0 + args.burst_period
        while (now := time.monotonic()) < t0 + args.minutes * 60:
            if up.poll() is not None:
                raise RuntimeError(f'laecips up exited with {up.returncode} (see --log)')
            cams.publish(i)
            i += 1
            if args.hostile and args.burst and now >= next_burst:
                cams.burst(robots[bursts['bursts'] % len(robots)], args.burst)
                bursts['bursts'] += 1
                bursts['frames'] += args.burst
                next_burst += args.burst_period
            if now >= next_sample:
                for name, pid in pids.items():
                    kb = rss_kb(pid)
                    if kb is not None:
                        series.setdefault(name, []).append((round(now - t0, 1), kb))
                c = cams.cloud
                labels.append((round(now - t0, 1), int(c.labels_out) if c else 0))
                next_sample += args.sample
            time.sleep(max(0.0, t0 + i / args.rate - time.monotonic()))
        out['published_per_robot'] = i
        if hostile is not None:
            try:
                hostile.wait(120)
            except subprocess.TimeoutExpired:
                hostile.kill()
        t_end = time.monotonic() + 120
        while not cams.settled() and time.monotonic() < t_end:
            time.sleep(0.5)
        out['settled'] = cams.settled()
        out['crashed'] = up.poll() is not None  # a node exiting stops laecips up
        time.sleep(2.5)  # the bridge's next stats message (stats_period 1 s)
    finally:
        if hostile is not None and hostile.poll() is None:
            hostile.kill()
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGINT)
            try:
                up.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
        cams.close()
    need = trainer_fill_labels(args.set) * args.robots
    full = full_at(labels, need)
    warm = max(args.warmup * 60, full if full is not None else 0.0)
    out['trainer_fill_labels'] = need
    out['trainer_full_s'] = full  # None: the trainer's stores were still filling at the end
    out['growth_from_s'] = warm
    out['labels_out'] = labels
    out['processes'] = {n: {**growth(s, warm), 'rss_mb': [(t, round(kb / 1024, 1))
                                                           for t, kb in s]}
                        for n, s in series.items()}
    out['max_growth_pct'] = max((p['growth_pct'] for p in out['processes'].values()
                                 if p['growth_pct'] is not None), default=None)
    keys = ('frames_in', 'masks_out', 'skipped', 'rejected', 'camera_lost', 'uploaded',
            'no_cloud', 'held_back', 'labels_in', 'labels_rejected', 'updates_accepted',
            'updates_rejected', 'model_version')
    # uncounted: published, yet neither received nor reported lost by DDS; 0 when accounted.
    # published: frames after the edge's first ones (handshake), from baseline on.
    out['edges'] = {r: {'published': cams.sent[r], 'baseline': cams.base[r],
                        **{k: int(getattr(m, k)) for k in keys},
                        'uncounted': cams.sent[r] + cams.base[r] - int(m.frames_in)
                        - int(m.camera_lost),
                        'accounted': accounted(cams.sent[r], m, cams.base[r])}
                    for r, m in sorted(cams.edge.items())}
    c = cams.cloud
    out['cloud'] = {k: int(getattr(c, k)) for k in ('frames_in', 'labels_out', 'dropped_queue',
                                                   'rejected', 'queue_len')} if c else {}
    if c:  # what the bridge got and has not labelled, dropped or queued: its current batch
        out['cloud']['in_batch'] = int(c.frames_in - c.labels_out - c.dropped_queue
                                       - c.rejected - c.queue_len)
    out['weight_pushes'] = {r: sum(1 for rr, _, ok in cams.pushes if rr == r and ok)
                            for r in robots}
    if args.hostile:
        out['attacks'] = attack_accounting(
            json.loads(hostile_out.read_text()) if hostile_out.is_file() else None,
            out['edges'], out['cloud'], bursts)
    keydir.cleanup()
    return out


LABEL_ATTACKS = ('malformed_label', 'forged_label', 'replayed_label')
PUSH_ATTACKS = ('bad_push', 'policy_push')


def attack_accounting(peer: dict | None, edges: dict, cloud: dict, bursts: dict) -> dict:
    """Set what the attacker sent against where the system counted it."""
    if peer is None:
        return {'every_attack_counted': False, 'why': 'the hostile peer wrote no report'}
    per = peer['sent_per_robot']
    checks = {
        # Bridge: a PNG bomb is refused from its header on arrival, before it takes a queue
        # slot (frame_check.check_hard_frame), and counted in CloudStats.rejected.
        'png_bomb': {'sent': peer['sent']['png_bomb'], 'counted': cloud.get('rejected', 0)},
    }
    for r, e in edges.items():
        sent = per.get(r, {})
        checks[f'{r}/labels'] = {'sent': sum(sent.get(k, 0) for k in LABEL_ATTACKS),
                                 'counted': e['labels_rejected']}
        checks[f'{r}/pushes'] = {'sent': sum(sent.get(k, 0) for k in PUSH_ATTACKS),
                                 'counted': e['updates_rejected']}
    for c in checks.values():  # counters also count other bad input: at least as many
        c['ok'] = c['counted'] >= c['sent']
    answers = peer['push_answers']
    ok = (all(c['ok'] for c in checks.values()) and answers['accepted'] == 0
          and answers['no_answer'] == 0 and all(e['accounted'] for e in edges.values()))
    return {'sent': peer['sent'], 'checks': checks, 'push_answers': answers,
            'accepted_pushes': peer['accepted_pushes'], 'camera_bursts': bursts,
            'bursts_accounted': all(e['accounted'] for e in edges.values()),
            'every_attack_counted': ok}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog='laecips soak', description=__doc__.split('\n')[1])
    p.add_argument('--robots', type=int, default=4)
    p.add_argument('--rate', type=float, default=10.0, help='camera Hz per robot')
    p.add_argument('--minutes', type=float, default=10.0)
    p.add_argument('--warmup', type=float, default=2.0, help='minutes before growth counts')
    p.add_argument('--sample', type=float, default=5.0, help='seconds between RSS samples')
    p.add_argument('--camvid', default=None, help='CamVid folder (default: found like demo)')
    p.add_argument('--set', action='append', default=[], metavar='NODE.KEY=VALUE',
                   help='parameter override passed to laecips up')
    p.add_argument('--log', default=None, help="file for the nodes' logs")
    p.add_argument('--out', default=None, help='also write the JSON here')
    p.add_argument('--hostile', action='store_true',
                   help='a hostile peer attacks meanwhile, the nodes share an HMAC key')
    p.add_argument('--hostile-period', type=float, default=0.5,
                   help='seconds between two attacks of the hostile peer')
    p.add_argument('--burst', type=int, default=300,
                   help='frames of one camera burst (--hostile; 0: none)')
    p.add_argument('--burst-period', type=float, default=30.0,
                   help='seconds between camera bursts (one robot each, in turn)')
    args = p.parse_args(argv)
    # A benchmark of this machine: keep its DDS traffic here unless told otherwise.
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    out = run(args)
    text = json.dumps(out)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    summary = {k: v for k, v in out.items() if k not in ('processes', 'labels_out')}
    summary['growth_pct'] = {n: p['growth_pct'] for n, p in out['processes'].items()}
    print(json.dumps(summary, indent=1))
    ok = out.get('settled') and all(e['accounted'] for e in out['edges'].values())
    if args.hostile:
        ok = ok and out['attacks']['every_attack_counted'] and not out.get('crashed')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
