# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Fleet benchmark (JSON + plot): the bridge on Ray against N robots, and GPUs for a fleet.

    bench_fleet [--out docs/bench/fleet.json] [--plot docs/bench/fleet_gpus.png]
                [--robots 1 2 4 8 16] [--replicas 1 2] [--rate 10] [--upload 0.5]
                [--seconds 10] [--sim-only]

* ``overhead``: Ray's own cost on this machine's CPU: one frame through a Serve handle
  (``laecips_cloud.ray_backend.RayLabeller``, one replica) against the same labeller called
  in-process, batch 1, median and p95 of the round trip.
* ``live``: for each replica count, the bridge runs with ``backend: ray`` (a local Ray it
  starts itself, as a user would) and N simulated robots publish hard frames over DDS from
  this process: each robot's camera runs at ``rate`` Hz from a random phase and uploads each
  frame with probability ``upload``. Per N: frames sent, labels back, throughput, and label
  latency (publish to label received, one clock) p50/p95, the share answered within the
  bridge's deadline, and the bridge's own counters. The labeller is a tiny TorchScript
  network (a few ms per frame) so that two replicas, the bridge and the robots fit two cores.
* ``simulation``: ``laecips_core.fleet_sim`` answers "how many GPUs for N robots at rate r
  and upload ratio u with the p95 label latency under the deadline" up to 10,000 robots, with
  the service times of SAM ViT-H on one H100 (bf16, batch 1, random weights: encoder 61 ms,
  automatic-mask point-grid decoding 337 ms naive -- measured for issue #16; no GPU here),
  the encoder alone as the bound if decoding cost nothing, and the labellers measured here.
  ``sim_vs_live`` replays the live load through the simulation with the service time
  measured here, to show how far the model is from the machine.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from laecips_core import fleet_sim as fs
from laecips_core.nodes import param_args

H, W = 180, 240
PURPOSE_INFERENCE = 0  # CloudLabel.PURPOSE_INFERENCE
SAM_H100 = {'encoder_s': 0.061, 'decode_s': 0.337, 'source': 'issue #16: SAM ViT-H, one '
            'H100, bf16, batch 1, random weights, automatic-mask point grid decoded naively'}


def tiny_model(path: Path) -> Path:
    """Write the benchmark's labeller: a small TorchScript conv net, 11 classes."""
    import torch
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 11, 3, padding=1)).eval()
    torch.jit.trace(net, torch.zeros(1, 3, 8, 8)).save(str(path))
    return path


def _frames(n: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    # Smooth random images: JPEG sizes like a camera's, not like noise.
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (H // 12, W // 12, 3), dtype=np.uint8)
        out.append(np.kron(small, np.ones((12, 12, 1), np.uint8)))
    return out


def _pct(x: list[float], q: float) -> float | None:
    return round(float(np.percentile(x, q)), 4) if x else None


def _time_calls(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def overhead(model: Path, calls: int = 100) -> dict:
    """Time one frame in-process and through a Serve handle (one replica, local Ray)."""
    import torch

    from laecips_cloud import ray_backend
    from laecips_cloud.labellers import create
    torch.set_num_threads(1)
    img = _frames(1)[0]
    local = create('torchscript', weights=str(model), device='cpu')
    local.warmup(H, W)
    batch4 = _time_calls(lambda: local.label_with_confidence([img] * 4), max(10, calls // 4))
    p = {k: v[0] for k, v in ray_backend.PARAMS.items()}
    p.update(backend='ray', ray_app='laecips_bench_overhead', ray_replicas=1, ray_num_cpus=1.0,
             ray_local_cpus=2, ray_batch_wait_s=0.0, device='cpu', torch_threads=1)
    tmp = tempfile.mkdtemp(prefix='lray', dir='/tmp')  # this run's Ray, nobody else's
    os.environ['RAY_TMPDIR'] = tmp
    t0 = time.perf_counter()
    remote = ray_backend.factory(p, create, lambda s: None)('torchscript', weights=str(model),
                                                               class_map='')
    start_s = time.perf_counter() - t0
    try:
        remote.label_with_confidence([img])
        # Interleaved, so both see the same load from the machine's other work.
        loc, ray_t = [], []
        for _ in range(calls):
            loc += _time_calls(lambda: local.label_with_confidence([img]), 1)
            ray_t += _time_calls(lambda: remote.label_with_confidence([img]), 1)
    finally:
        remote.close()
        del os.environ['RAY_TMPDIR']
        shutil.rmtree(tmp, ignore_errors=True)
    return {'frame': [H, W], 'calls': calls, 'torch_threads': 1,
            'local_ms_p50': round(1000 * float(np.median(loc)), 2),
            'local_ms_p95': round(1000 * float(np.percentile(loc, 95)), 2),
            'local_batch4_ms_p50': round(1000 * float(np.median(batch4)), 2),
            'ray_ms_p50': round(1000 * float(np.median(ray_t)), 2),
            'ray_ms_p95': round(1000 * float(np.percentile(ray_t, 95)), 2),
            'ray_overhead_ms_p50': round(1000 * float(np.median(np.subtract(ray_t, loc))), 2),
            'ray_start_and_deploy_s': round(start_s, 1),
            'note': 'Serve handle round trip: bridge thread -> router -> replica actor '
                    '(@serve.batch, wait 0) -> labeller -> back, on one machine (no network); '
                    'overhead = median of (ray - local) over interleaved pairs'}


def espnet_c_seconds() -> dict | None:
    """ESPNet-C at 360x480 on one CPU thread, batch 1 and 4 (None without its weights)."""
    import torch

    from laecips_cloud.labellers import create
    try:
        lab = create('espnet_c', weights='', device='cpu')
    except Exception:  # noqa: BLE001 -- weights not downloaded
        return None
    torch.set_num_threads(1)
    img = np.zeros((360, 480, 3), np.uint8)
    lab.warmup()
    b1 = float(np.median(_time_calls(lambda: lab.label_with_confidence([img]), 6)))
    b4 = float(np.median(_time_calls(lambda: lab.label_with_confidence([img] * 4), 3)))
    return {1: round(b1, 4), 4: round(b4, 4)}


def _ray_pids(tmp: str) -> list[int]:
    out = []
    for d in os.listdir('/proc'):
        if d.isdigit() and int(d) != os.getpid():
            try:
                env = Path(f'/proc/{d}/environ').read_bytes()
            except OSError:
                continue
            if f'RAY_TMPDIR={tmp}'.encode() in env:
                out.append(int(d))
    return out


class Robots:
    """N simulated robots in this process: HardFrames out, CloudLabels and CloudStats in."""

    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from laecips_core import codecs
        from laecips_msgs.msg import CloudLabel, CloudStats, HardFrame
        self.HardFrame = HardFrame
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node('bench_fleet', context=self.ctx)
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(HardFrame, '/laecips/hard_frames', qos)
        self.lock = threading.Lock()
        self.got: dict[tuple[str, int], tuple[float, int]] = {}
        self.stats: list = []
        self.node.create_subscription(CloudLabel, '/laecips/cloud_labels', self._on_label, qos)
        self.node.create_subscription(CloudStats, '/laecips/stats_cloud', self._on_stats, qos)
        self.jpegs = []
        for rgb in _frames():
            m = HardFrame()
            codecs.encode_compressed(rgb, m.image, 'jpeg', 90)
            self.jpegs.append(m.image)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        threading.Thread(target=self.ex.spin, daemon=True).start()

    def _on_label(self, m) -> None:
        with self.lock:
            self.got[(m.robot_id, m.seq)] = (time.monotonic(), int(m.purpose))

    def _on_stats(self, m) -> None:
        with self.lock:
            self.stats.append(m)

    def send(self, robot: str, seq: int) -> float:
        m = self.HardFrame(robot_id=robot, seq=seq, hardness=0.5, model_version=1)
        m.header.frame_id = f'{robot}/camera'
        m.image = self.jpegs[seq % len(self.jpegs)]
        t = time.monotonic()
        self.pub.publish(m)
        return t

    def wait_ready(self, bridge: subprocess.Popen, timeout: float = 300.0) -> None:
        """Probe until the bridge answers (both discovery directions matched, Ray up)."""
        t0, seq = time.monotonic(), 0
        while ('probe', seq - 1) not in self.got:
            if bridge.poll() is not None or time.monotonic() - t0 > timeout:
                raise RuntimeError('the bridge did not answer a probe frame')
            if self.pub.get_subscription_count():
                self.send('probe', seq)
                seq += 1
            time.sleep(1.0)

    def run(self, robots: int, rate: float, upload: float, seconds: float, deadline: float,
            seed: int) -> dict:
        """Stream ``seconds`` of uploads from ``robots`` robots; figures of what came back."""
        rng = np.random.default_rng(seed)
        events = []
        for k in range(robots):
            t = rng.uniform(0, 1 / rate) + np.arange(int(seconds * rate)) / rate
            events += [(float(x), f'r{robots}_{k}') for x in t[rng.random(len(t)) < upload]]
        events.sort()
        with self.lock:
            base = self.stats[-1] if self.stats else None
        sent, seqs = {}, collections.Counter()
        t0 = time.monotonic()
        for at, robot in events:
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            seqs[robot] += 1
            sent[(robot, seqs[robot])] = self.send(robot, seqs[robot])
        # Drain: until every frame is answered or nothing came back for 3 s.
        last, n_last = time.monotonic(), -1
        while time.monotonic() - last < 3.0:
            with self.lock:
                n = sum(k in self.got for k in sent)
            if n == len(sent):
                break
            if n != n_last:
                last, n_last = time.monotonic(), n
            time.sleep(0.1)
        time.sleep(2.5)  # a stats period or two after the last label
        with self.lock:
            got = {k: self.got[k] for k in sent if k in self.got}
            end = self.stats[-1] if self.stats else None
        lat = [got[k][0] - sent[k] for k in got]
        t_last = max((v[0] for v in got.values()), default=t0)
        row = {'robots': robots, 'uploads_per_s': round(robots * rate * upload, 1),
               'sent': len(sent), 'labelled': len(got),
               'labelled_for_inference': sum(v[1] == PURPOSE_INFERENCE for v in got.values()),
               'throughput_per_s': round(len(got) / max(1e-9, t_last - t0), 2),
               'latency_p50_s': _pct(lat, 50), 'latency_p95_s': _pct(lat, 95),
               'in_deadline_ratio': round(sum(x <= deadline for x in lat) / max(1, len(sent)),
                                          4)}
        if base is not None and end is not None:
            for k in ('labelled_in_time', 'labelled_late', 'labelled_for_training',
                      'dropped_queue', 'rejected'):
                row[f'bridge_{k}'] = getattr(end, k) - getattr(base, k)
        return row

    def close(self) -> None:
        import rclpy
        self.ex.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


def live(model: Path, replicas: list[str], robots: list[int], rate: float, upload: float,
         seconds: float, deadline: float) -> list[dict]:
    """Run the bridge with each replica count (or 'local') against each fleet size."""
    out = []
    bot = Robots()
    try:
        for rep in replicas:
            tmp = tempfile.mkdtemp(prefix='lray', dir='/tmp')
            params = {
                'labeller': 'torchscript', 'weights': str(model), 'device': 'cpu',
                'torch_threads': 1, 'anchor_root': 'none', 'deadline': deadline,
                'max_batch': 8, 'max_wait_ms': 5.0, 'queue_size': 64, 'qos_depth': 1000,
                'stats_period': 1.0}
            if rep != 'local':
                params.update(backend='ray', ray_replicas=int(rep), ray_num_cpus=1.0,
                              ray_local_cpus=2, ray_max_batch_size=4, ray_batch_wait_s=0.005,
                              ray_max_in_flight=8, ray_app='laecips_bench_fleet')
            argv = [sys.executable, '-m', 'laecips_cloud.bridge_node', '--ros-args',
                    *param_args(params)]
            log = open(Path(tmp).parent / f'{Path(tmp).name}.bridge.log', 'wb')
            bridge = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                      env=dict(os.environ, RAY_TMPDIR=tmp),
                                      start_new_session=True)
            t0 = time.monotonic()
            try:
                bot.wait_ready(bridge)
                ready_s = round(time.monotonic() - t0, 1)
                for i, n in enumerate(robots):
                    row = {'backend': 'local' if rep == 'local' else 'ray',
                           'replicas': 1 if rep == 'local' else int(rep), 'bridge_ready_s':
                           ready_s, **bot.run(n, rate, upload, seconds, deadline, seed=i)}
                    print(json.dumps(row), file=sys.stderr, flush=True)
                    out.append(row)
            finally:
                bridge.send_signal(signal.SIGINT)
                try:
                    bridge.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(bridge.pid, signal.SIGKILL)
                    bridge.wait()
                for pid in _ray_pids(tmp):  # only this run's Ray (its own temp dir)
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                log.close()
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        bot.close()
    return out


def models(measured: dict) -> list[fs.ServiceModel]:
    """Return the service models of the simulation: SAM on an H100 and what was measured."""
    out = [fs.ServiceModel('sam_vit_h_h100_naive',
                           {1: SAM_H100['encoder_s'] + SAM_H100['decode_s']},
                           SAM_H100['source'] + '; batches cost b x batch 1 (not measured)'),
           fs.ServiceModel('sam_vit_h_h100_encoder_only', {1: SAM_H100['encoder_s']},
                           'the bound if mask decoding cost nothing (same measurement)')]
    if measured.get('espnet_c_cpu'):
        out.append(fs.ServiceModel('espnet_c_cpu_1thread', measured['espnet_c_cpu'],
                                   'measured here, 360x480, one CPU thread per replica'))
    return out


def simulation(measured: dict, robots: list[int], rate: float, uploads: list[float],
               deadline: float, rtt: float) -> list[dict]:
    """Find the GPUs (replicas) each fleet size needs, per service model and upload ratio."""
    rows = []
    for m in models(measured):
        for u in uploads:
            for n in robots:
                t = time.perf_counter()
                r = fs.gpus_needed(fs.Fleet(n, rate, u), m, deadline=deadline, rtt=rtt,
                                   max_batch=max(m.batch_seconds))
                r = {'model': m.name, 'robots': n, **r,
                     'sim_s': round(time.perf_counter() - t, 1)}
                print(json.dumps(r), file=sys.stderr, flush=True)
                rows.append(r)
    return rows


def sim_vs_live(rows: list[dict], service_s: float, rate: float, upload: float,
                seconds: float, deadline: float) -> list[dict]:
    """Run the live fleets through the simulation, with the replica time measured here."""
    out = []
    m = fs.ServiceModel('tiny_measured', {1: service_s})
    for row in rows:
        if row['backend'] != 'ray':
            continue
        arr = fs.Fleet(row['robots'], rate, upload).arrivals(seconds,
                                                             np.random.default_rng(0))
        res = fs.simulate(arr, row['replicas'], m, deadline=deadline, rtt=0.0)
        s = res.summary(deadline)
        out.append({'replicas': row['replicas'], 'robots': row['robots'],
                    'sim_p50_s': s['p50_s'], 'sim_p95_s': s['p95_s'],
                    'live_p50_s': row['latency_p50_s'], 'live_p95_s': row['latency_p95_s'],
                    'sim_in_deadline': s['in_deadline_ratio'],
                    'live_in_deadline': row['in_deadline_ratio']})
    return out


def plot(rows: list[dict], path: Path, rate: float, deadline: float) -> None:
    """Plot the GPUs needed against robots, log-log, one line per model and upload ratio."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 5))
    by = collections.defaultdict(list)
    for r in rows:
        if r.get('gpus'):
            by[(r['model'], r['upload'])].append((r['robots'], r['gpus']))
    colours = {m: f'C{i}' for i, m in enumerate(dict.fromkeys(k[0] for k in by))}
    styles = {u: s for u, s in zip(sorted({k[1] for k in by}, reverse=True),
                                   ('-', '--', ':', '-.'))}
    for (name, u), pts in by.items():
        x, y = zip(*sorted(pts))
        ax.plot(x, y, marker='o', ms=3, color=colours[name], ls=styles.get(u, '-'),
                label=f'{name}, {u:.0%} up: {y[-1] / x[-1]:.3g}/robot at {x[-1]}')
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('robots')
    ax.set_ylabel('labeller replicas (GPUs; CPU threads for the CPU model)')
    ax.set_title(f'Replicas for p95 label latency <= {deadline:g} s\n'
                 f'{rate:g} Hz cameras; discrete-event simulation (laecips_core.fleet_sim)')
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    ap.add_argument('--out', help='also write the JSON here')
    ap.add_argument('--plot', help='write the GPUs-per-fleet plot here (PNG)')
    ap.add_argument('--robots', type=int, nargs='+', default=[1, 2, 4, 8, 16])
    ap.add_argument('--replicas', nargs='+', default=['1', '2'],
                    help="replica counts of the live runs ('local': the in-process backend)")
    ap.add_argument('--rate', type=float, default=10.0, help='camera Hz of the live robots')
    ap.add_argument('--upload', type=float, default=0.5, help='upload ratio of the live robots')
    ap.add_argument('--seconds', type=float, default=10.0, help='stream length per point')
    ap.add_argument('--deadline', type=float, default=1.0)
    ap.add_argument('--sim-robots', type=int, nargs='+',
                    default=[1, 3, 10, 30, 100, 300, 1000, 3000, 10000])
    ap.add_argument('--sim-rate', type=float, default=10.0)
    ap.add_argument('--sim-upload', type=float, nargs='+', default=[0.3, 0.16],
                    help='upload ratios (0.16: the share LAECIPS uploaded at dusk, CamVid)')
    ap.add_argument('--rtt', type=float, default=0.05, help='simulated network round trip')
    ap.add_argument('--sim-only', action='store_true', help='no live runs, no Ray')
    args = ap.parse_args(argv)
    report: dict = {'cpu_count': os.cpu_count(), 'loadavg_before': os.getloadavg(),
                    'sam_h100': SAM_H100}
    measured: dict = {}
    if not args.sim_only:
        import ray
        report['ray'] = ray.__version__
        work = Path(tempfile.mkdtemp(prefix='laecips_fleet_'))
        try:
            model = tiny_model(work / 'tiny.ts')
            report['overhead'] = overhead(model)
            print(json.dumps(report['overhead']), file=sys.stderr, flush=True)
            measured['espnet_c_cpu'] = espnet_c_seconds()
            report['espnet_c_cpu_batch_s'] = measured['espnet_c_cpu']
            report['live_params'] = {'rate_hz': args.rate, 'upload': args.upload,
                                     'seconds': args.seconds, 'deadline_s': args.deadline,
                                     'frame': [H, W], 'labeller': 'tiny torchscript',
                                     'replica_cpus': 1.0, 'ray_max_batch_size': 4}
            report['live'] = live(model, args.replicas, args.robots, args.rate, args.upload,
                                  args.seconds, args.deadline)
            report['sim_vs_live'] = sim_vs_live(
                report['live'], report['overhead']['local_ms_p50'] / 1000, args.rate,
                args.upload, args.seconds, args.deadline)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    report['sim_params'] = {'rate_hz': args.sim_rate, 'upload': args.sim_upload,
                            'deadline_s': args.deadline, 'rtt_s': args.rtt,
                            'order': 'freshest', 'goal': 'p95 label latency <= deadline, '
                            'dropped uploads counted as never answered'}
    report['simulation'] = simulation(measured, args.sim_robots, args.sim_rate,
                                      args.sim_upload, args.deadline, args.rtt)
    report['loadavg_after'] = os.getloadavg()
    from laecips_tools.bench_edge import _dumps
    text = _dumps(report)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + '\n')
    if args.plot:
        plot(report['simulation'], Path(args.plot), args.sim_rate, args.deadline)
    return 0


if __name__ == '__main__':
    sys.exit(main())
