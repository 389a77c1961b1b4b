# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Edge speed benchmark at 360x480, as JSON: raw model variants side by side, then the node.

1. ``raw``: model forward fps for each variant (threads, no_grad vs inference_mode,
   channels_last, BatchNorm folding, TorchScript trace, input resolution), all built from a
   state_dict (the path weight updates take), plus ``Segmenter.infer`` fps (resize,
   normalise, forward, hardness, 360x480 mask) for the node's configuration.
2. ``node``: the edge node in its own process, this process as the camera (360x480 rgb8,
   reliable QoS): closed loop (next frame when the mask arrives) for the node's throughput,
   and an open-loop 30 Hz camera for fps, skipped frames and camera stamp -> mask latency.
3. ``shipped_camera``: a RealSense-like camera in its own process (640x480 ``bgr8`` at 30 Hz,
   sensor-data QoS, on /camera/color/image_raw) into the edge node started as ``laecips up``
   starts it (config/edge.yaml, the camera remap, the shared-memory Fast DDS profile unless
   one is exported): the fraction of frames masked (goal >= 99 %), from the edge's counters.

    bench_edge [--weights W] [--seconds 3] [--node-threads 1 2] [--out bench.json]
    bench_edge --only-shipped-camera [--camera-seconds 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path
import subprocess
import sys
import threading
import time

import numpy as np
import torch

from laecips_core import camvid as cv
from laecips_core import dds, weights
from laecips_edge import engine

H, W = 360, 480
# The shipped-settings row: a RealSense-like colour stream.
CAM_TOPIC, CAM_H, CAM_W, CAM_HZ = '/camera/color/image_raw', 480, 640, 30.0


def _frames(n: int = 16) -> list[np.ndarray]:
    root = cv.find_root()
    if root is not None:
        return [f.rgb() for f in cv.frames(root, 'test', (cv.DAY_TEST,))[:n]]
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)]


def _rate(fn, seconds: float) -> tuple[float, float]:
    """Run ``fn`` repeatedly for ``seconds``; return (calls per second, median ms)."""
    fn()
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1.0 / np.mean(times), 1e3 * float(np.median(times))


RAW_VARIANTS = [  # name, Options kwargs, grad mode
    ('eager no_grad', dict(fuse_bn=False, channels_last=False, jit=False), 'no_grad'),
    ('+inference_mode', dict(fuse_bn=False, channels_last=False, jit=False), 'inference'),
    ('+channels_last', dict(fuse_bn=False, channels_last=True, jit=False), 'inference'),
    ('+fuse_bn', dict(fuse_bn=True, channels_last=True, jit=False), 'inference'),
    ('+jit trace (default)', dict(), 'inference'),
    ('default, contiguous', dict(channels_last=False), 'inference'),
]
DEFAULT_VARIANT = 4


def bench_raw(sd, meta, frames, seconds: float, threads: list[int]) -> list[dict]:
    out = []
    sizes = [tuple(meta.input_size), (H, W), (144, 192)]
    for t in threads:
        torch.set_num_threads(t)
        for size in sizes:
            variants = (RAW_VARIANTS if size == tuple(meta.input_size)
                        else RAW_VARIANTS[DEFAULT_VARIANT:DEFAULT_VARIANT + 1])
            for name, kw, mode in variants:
                seg = engine.Segmenter(meta, sd, engine.Options(input_size=size, **kw))
                x = seg.preprocess(frames[0])
                model = seg._active.model
                ctx = torch.inference_mode if mode == 'inference' else torch.no_grad

                def fwd():
                    with ctx():
                        model(x)
                fps, ms = _rate(fwd, seconds)
                row = {'threads': t, 'input': list(size), 'variant': name,
                       'forward_fps': round(fps, 1), 'forward_ms_p50': round(ms, 2)}
                if 'default' in name:
                    i = iter(range(10**9))
                    fps, ms = _rate(lambda: seg.infer(frames[next(i) % len(frames)]), seconds)
                    row.update(infer_fps=round(fps, 1), infer_ms_p50=round(ms, 2))
                out.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return out


def bench_node(weights_path: str, frames, seconds: float, threads: int,
               extra: dict | None = None) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from laecips_core import codecs
    from laecips_msgs.msg import EdgeStats

    # The same work without ROS, measured just before, so both see the same machine load.
    torch.set_num_threads(threads)
    sd, meta = weights.load(weights_path)
    seg = engine.Segmenter(meta, sd)
    i = iter(range(10**9))
    infer_fps, infer_ms = _rate(lambda: seg.infer(frames[next(i) % len(frames)]), seconds / 2)
    seg = None  # free it before the node starts
    params = {'weights': weights_path, 'image_qos': 'reliable', 'num_threads': threads,
              'policy_rule': 'never', 'stats_period': 0.5, **(extra or {})}
    argv = [sys.executable, '-m', 'laecips_edge.edge_node', '--ros-args', '-r', '__ns:=/bench']
    for k, v in params.items():
        argv += ['-p', f'{k}:={v}']
    node_proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 start_new_session=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node('bench_camera', context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
    got: dict[int, float] = {}
    stats: list = []
    cond = threading.Condition()

    def on_mask(m):
        with cond:
            got[m.header.stamp.sec * 10**9 + m.header.stamp.nanosec] = time.time_ns()
            cond.notify_all()
    node.create_subscription(Image, '/bench/edge/mask', on_mask, qos)
    node.create_subscription(EdgeStats, '/laecips/stats', stats.append, 10)
    pub = node.create_publisher(Image, '/camera/image_raw', qos)
    msgs = [codecs.array_to_image(f, Image, 'rgb8') for f in frames]

    def send(i: int) -> int:
        m = msgs[i % len(msgs)]
        t = time.time_ns()
        m.header.stamp.sec, m.header.stamp.nanosec = divmod(t, 10**9)
        pub.publish(m)
        return t
    try:
        deadline = time.monotonic() + 120
        # Both directions matched (discovery matches each on its own: a mask published
        # before its subscription matched is lost, and the loop below would wait it out).
        while (pub.get_subscription_count() == 0 or not stats
               or node.count_publishers('/bench/edge/mask') == 0):
            if node_proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError('edge node did not start: '
                                   + node_proc.stderr.read().decode()[-2000:])
            time.sleep(0.05)
        for n in range(5):  # warm-up: the node's first frames, not part of the measure
            t = send(n)
            with cond:
                cond.wait_for(lambda: t in got, 5.0)
        # Closed loop: the next frame goes out when the previous mask is back.
        lat, n, t0 = [], 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            t = send(n)
            with cond:
                cond.wait_for(lambda: t in got, 5.0)
            if t in got:
                lat.append((got[t] - t) / 1e6)
            n += 1
        closed = {'fps': round(len(lat) / (time.monotonic() - t0), 1),
                  'no_mask_in_5s': n - len(lat),
                  'latency_ms_p50': round(float(np.percentile(lat, 50)), 2),
                  'latency_ms_p95': round(float(np.percentile(lat, 95)), 2)}
        # Open loop: a 30 Hz camera.
        base = stats[-1]
        sent = []
        t0 = time.monotonic()
        while (now := time.monotonic()) - t0 < seconds:
            sent.append(send(len(sent)))
            time.sleep(max(0.0, t0 + len(sent) / 30.0 - time.monotonic()))
        time.sleep(0.5)  # let the last masks and a stats message arrive
        lat = [(got[t] - t) / 1e6 for t in sent if t in got]
        last = stats[-1]
        opened = {'camera_hz': 30, 'sent': len(sent), 'masks': len(lat),
                  'fps': round(len(lat) / (now - t0), 1),
                  'frames_in': last.frames_in - base.frames_in,
                  'skipped': last.skipped - base.skipped,
                  'camera_lost': last.camera_lost - base.camera_lost,
                  'latency_ms_p50': round(float(np.percentile(lat, 50)), 2),
                  'latency_ms_p95': round(float(np.percentile(lat, 95)), 2),
                  'node_reported_p50_ms': round(last.latency_p50_ms, 2)}
        return {'threads': threads, 'params': params, 'closed_loop': closed,
                'camera_30hz': opened,
                'without_ros': {'infer_fps': round(infer_fps, 1),
                                'infer_ms_p50': round(infer_ms, 2)},
                # Throughput lost to ROS (decode, publish, DDS both ways, executor) and the
                # median latency added on top of Segmenter.infer.
                'ros_overhead_fps': round(1 - closed['fps'] / infer_fps, 3),
                'ros_overhead_latency': round(1 - infer_ms / closed['latency_ms_p50'], 3)}
    finally:
        node_proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            node_proc.wait(10)
        if node_proc.poll() is None:
            node_proc.kill()
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def camera_process(topic: str, seconds: float, hz: float = CAM_HZ) -> int:
    """Be the camera (its own process): 640x480 bgr8 frames at ``hz``, sensor-data QoS."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from laecips_core import codecs
    rclpy.init()
    node = rclpy.create_node('bench_realsense')
    pub = node.create_publisher(Image, topic, qos_profile_sensor_data)
    rgbs = [np.asarray(_resize(f, CAM_H, CAM_W)) for f in _frames(8)]
    msgs = [codecs.array_to_image(np.ascontiguousarray(f[..., ::-1]), Image, 'bgr8')
            for f in rgbs]
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() == 0:  # the edge's camera subscription
        if time.monotonic() > deadline:
            sys.exit('no subscriber on ' + topic)
        time.sleep(0.05)
    # The edge matched this writer; give its reader a moment to match back (discovery runs
    # each direction on its own), else the first frames go nowhere.
    time.sleep(1.0)
    n, t0 = int(round(seconds * hz)), time.monotonic()
    for i in range(n):
        m = msgs[i % len(msgs)]
        m.header.stamp.sec, m.header.stamp.nanosec = divmod(time.time_ns(), 10**9)
        m.header.frame_id = 'camera_color_optical_frame'
        pub.publish(m)
        time.sleep(max(0.0, t0 + (i + 1) / hz - time.monotonic()))
    print(json.dumps({'sent': n, 'seconds': round(time.monotonic() - t0, 2)}), flush=True)
    time.sleep(0.5)  # the last frames leave before the participant goes
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def _resize(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image as PILImage
    return np.asarray(PILImage.fromarray(rgb).resize((w, h), PILImage.BILINEAR))


def bench_shipped_camera(seconds: float, overrides: dict | None = None) -> dict:
    """Measure the camera row (module docstring, 3.): frames masked with shipped settings."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from laecips_core import nodes
    from laecips_msgs.msg import EdgeStats

    # As `laecips up` does (laecips_bringup.cli.up_env): an exported profile is kept, else
    # the shipped shared-memory one under both variable names.
    env = dict(os.environ)
    profile = dds.profile_set(env)
    if not profile:
        profile = str(nodes.config_dir() / dds.SHM_PROFILE)
        env.update(dds.profile_env(profile, env))
    argv = nodes.module_argv(nodes.EDGE, robot_id='bench', camera_topic=CAM_TOPIC,
                             overrides={k: nodes.Raw(v) for k, v in (overrides or {}).items()})
    procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=env, start_new_session=True)]
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node('bench_shipped', context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    stats: list = []
    lat: list[float] = []

    def on_mask(m):
        lat.append((time.time_ns() - (m.header.stamp.sec * 10**9 + m.header.stamp.nanosec))
                   / 1e6)
    node.create_subscription(EdgeStats, '/laecips/stats', stats.append,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    node.create_subscription(Image, '/bench/edge/mask', on_mask,
                             QoSProfile(depth=30, reliability=ReliabilityPolicy.RELIABLE))
    try:
        deadline = time.monotonic() + 120
        while not stats:  # the edge is up (model loaded, traced) once it reports
            if procs[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError('edge node did not start: '
                                   + procs[0].stderr.read().decode()[-2000:])
            time.sleep(0.05)
        load = os.getloadavg()
        cam = subprocess.Popen([sys.executable, '-m', 'laecips_tools.bench_edge',
                                '--camera-process', CAM_TOPIC, '--camera-seconds', str(seconds)],
                               stdout=subprocess.PIPE, env=env, start_new_session=True)
        procs.append(cam)
        out, _ = cam.communicate(timeout=seconds + 120)
        if cam.returncode:
            raise RuntimeError(f'camera process exited with {cam.returncode}')
        sent = json.loads(out.decode().strip().splitlines()[-1])['sent']
        # Settled: a stats message after every frame taken was handled, two periods later.
        n, deadline = len(stats), time.monotonic() + 60
        while len(stats) < n + 2 or stats[-1].frames_in != (
                stats[-1].masks_out + stats[-1].skipped + stats[-1].rejected):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        s = stats[-1]
        return {'camera': f'{CAM_W}x{CAM_H} bgr8 at {CAM_HZ:g} Hz, sensor-data QoS, own '
                          'process', 'topic': CAM_TOPIC,
                'edge': ' '.join(argv[1:]), 'dds_profile': profile, 'sent': sent,
                'frames_in': s.frames_in, 'masks_out': s.masks_out, 'skipped': s.skipped,
                'rejected': s.rejected, 'camera_lost': s.camera_lost,
                'masked_fraction': round(s.masks_out / sent, 4) if sent else 0.0,
                'goal_masked_fraction': 0.99,
                'latency_ms_p50': round(float(np.percentile(lat, 50)), 2) if lat else None,
                'latency_ms_p95': round(float(np.percentile(lat, 95)), 2) if lat else None,
                'loadavg_at_start': [round(v, 2) for v in load]}
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(10)
            if p.poll() is None:
                p.kill()
        ex.shutdown()
        spin.join(5.0)  # a thread still in the executor at exit aborts the interpreter
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def _dumps(report: dict) -> str:
    """JSON with one line per key and per row, so variants read side by side."""
    lines = []
    for k, v in report.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            rows = ',\n  '.join(json.dumps(r) for r in v)
            lines.append(f'{json.dumps(k)}: [\n  {rows}]')
        else:
            lines.append(f'{json.dumps(k)}: {json.dumps(v)}')
    return '{\n ' + ',\n '.join(lines) + '\n}'


def main(argv: list[str] | None = None) -> int:
    from laecips_edge.factory import factory_weights
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    ap.add_argument('--weights', default=None, help='weights file (default: factory)')
    ap.add_argument('--seconds', type=float, default=3.0, help='per measurement')
    ap.add_argument('--threads', type=int, nargs='+', default=[1, 2], help='raw variants')
    ap.add_argument('--node-threads', type=int, nargs='+', default=[1, 2])
    ap.add_argument('--skip-node', action='store_true')
    ap.add_argument('--camera-seconds', type=float, default=10.0,
                    help='length of the shipped-settings camera row')
    ap.add_argument('--only-shipped-camera', action='store_true',
                    help='run the shipped-settings camera row alone')
    ap.add_argument('--camera-set', action='append', default=[], metavar='KEY=VALUE',
                    help='edge parameter over config/edge.yaml in the camera row (diagnosis)')
    ap.add_argument('--camera-process', metavar='TOPIC', help=argparse.SUPPRESS)
    ap.add_argument('--out', help='also write the JSON here')
    args = ap.parse_args(argv)
    if args.camera_process:  # the camera of the shipped-settings row, in its own process
        return camera_process(args.camera_process, args.camera_seconds)
    overrides = dict(kv.split('=', 1) for kv in args.camera_set)
    if args.only_shipped_camera:
        report = {'cpu_count': os.cpu_count(), 'loadavg_before': os.getloadavg(),
                  'shipped_camera': bench_shipped_camera(args.camera_seconds, overrides),
                  'loadavg_after': os.getloadavg()}
        text = _dumps(report)
        print(text)
        if args.out:
            Path(args.out).write_text(text + '\n')
        return 0
    path = args.weights or factory_weights()
    sd, meta = weights.load(path)
    frames = _frames()
    # Large frames between processes: the shared-memory profile, unless one is set already.
    shm = Path(os.environ.get('LAECIPS_ROOT', Path.cwd())) / 'config' / 'fastdds_shm.xml'
    shipped_env = dict(os.environ)  # the camera row sets its profile as laecips up does
    if shm.is_file() and not dds.profile_set():
        os.environ.update(dds.profile_env(shm))
    report = {'camera': [H, W], 'weights': str(path), 'model_input': list(meta.input_size),
              'cpu_count': os.cpu_count(), 'torch': torch.__version__,
              'loadavg_before': os.getloadavg(),
              'raw': bench_raw(sd, meta, frames, args.seconds, args.threads)}
    if not args.skip_node:
        report['node'] = [bench_node(path, frames, args.seconds * 2, t)
                          for t in args.node_threads]
        os.environ.clear()
        os.environ.update(shipped_env)
        report['shipped_camera'] = bench_shipped_camera(args.camera_seconds, overrides)
    report['loadavg_after'] = os.getloadavg()
    text = _dumps(report)
    print(text)
    if args.out:
        Path(args.out).write_text(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
