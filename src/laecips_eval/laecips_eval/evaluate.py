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
import json
import math
import os
from pathlib import Path
import shlex
import signal
import subprocess
import sys
import time

from laecips_eval import camvid_to_bag, report, systems
from laecips_eval.netlink import Link, parse_spec

MODULES = {'edge': 'laecips_edge.edge_node', 'bridge': 'laecips_cloud.bridge_node',
           'trainer': 'laecips_cloud.trainer_node'}
NODE_NAMES = {'edge': 'edge', 'bridge': 'cloud_bridge', 'trainer': 'trainer'}
# Test preset: small input, a 1-thread edge, the labeller on few pixels, a short training.
REUSABLE = ('edge_only', 'cloud_only', 'fixed', 'entropy_sedna')
TINY = {'edge': {'input_height': 90, 'input_width': 120},
        'bridge': {},
        'trainer': {}}


class Runner:
    """Start processes (in a namespace when a link is up), log them, stop them."""

    def __init__(self, log_dir: Path, env: dict, link: Link | None):
        self.log_dir = log_dir
        self.env = env
        self.link = link
        self.procs: dict[str, tuple[subprocess.Popen, Path]] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, label: str, role: str, argv: list[str]) -> subprocess.Popen:
        path = self.log_dir / f'{label}.log'
        with open(path, 'wb') as log:
            kw = dict(stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                      start_new_session=True)
            if self.link is not None:
                p = self.link.popen(role, argv, env=self.env, **kw)
            else:
                p = subprocess.Popen(argv, env=self.env, **kw)
        (self.log_dir / f'{label}.cmd').write_text(shlex.join(argv) + '\n')
        self.procs[label] = (p, path)
        return p

    def log(self, label: str) -> str:
        return self.procs[label][1].read_text(errors='replace')

    def alive(self, label: str) -> bool:
        return label in self.procs and self.procs[label][0].poll() is None

    def check(self, labels: list[str]) -> None:
        for label in labels:
            p, path = self.procs[label]
            if p.poll() is not None:
                tail = path.read_text(errors='replace')[-3000:]
                raise RuntimeError(f'{label} exited with {p.returncode}:\n{tail}')

    def stop(self, label: str, timeout: float = 15.0) -> int | None:
        if label not in self.procs:
            return None
        p, _ = self.procs.pop(label)
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGINT)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        return p.returncode

    def stop_all(self) -> None:
        for label in list(self.procs):
            self.stop(label, 5.0)


def _param(v: object) -> str:
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, (list, tuple)):
        return '[' + ','.join(_param(x) for x in (v or [''])) + ']'  # [] has no type
    if isinstance(v, str) and (v == '' or any(c in v for c in ':{}[]#,')):
        return "'" + v.replace("'", "''") + "'"
    return str(v)


def node_argv(kind: str, params: dict, robot: str = 'robot1') -> list[str]:
    """Return the command of one system node with parameter overrides."""
    argv = [sys.executable, '-m', MODULES[kind], '--ros-args', '-r',
            f'__node:={NODE_NAMES[kind]}']
    if kind == 'edge':
        argv += ['-r', f'__ns:=/{robot}']
    for k, v in params.items():
        argv += ['-p', f'{k}:={_param(v)}']
    return argv


def _kv(items: list[str]) -> dict:
    out = {}
    for item in items:
        k, sep, v = item.partition('=')
        if not sep:
            raise SystemExit(f'expected NAME=VALUE, got {item!r}')
        out[k] = _scalar(v)
    return out


def _scalar(v: str) -> object:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {'true': True, 'false': False}.get(v.lower(), v)


def _wait(cond, timeout: float, what: str, runner: Runner, labels: list[str]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        runner.check(labels)
        if time.monotonic() > deadline:
            raise RuntimeError(f'timed out after {timeout:.0f} s waiting for {what}')
        time.sleep(0.1)


def run_system(sys_: systems.System, args, runner: Runner, bag: Path, n_frames: int,
               out_dir: Path, keep: list[int]) -> dict:
    """Run one system over the bag and return the recorder's output."""
    tag = sys_.name + (f'_s{sys_.seed}' if sys_.name == 'random' else '')
    robot = args.robot_id
    edge_params = {'policy_rule': sys_.rule, 'policy_params': sys_.policy_params(),
                   'seed': sys_.seed, 'image_qos': 'reliable', 'num_threads': 1,
                   **args.edge_params}
    runner.start(f'{tag}.edge', 'edge', node_argv('edge', edge_params, robot))
    live = [f'{tag}.edge'] + (['bridge'] if runner.alive('bridge') else [])
    if sys_.trainer:
        # The trainer must know the policy the edge starts with (upload propensities).
        tparams = {'initial_policy_rule': sys_.rule,
                   'initial_policy_params': sys_.policy_params(), **args.trainer_params}
        runner.start(f'{tag}.trainer', 'cloud', ['nice', '-n', str(args.trainer_nice)]
                     + node_argv('trainer', tparams))
        live.append(f'{tag}.trainer')
    result = out_dir / 'runs' / f'{tag}.json'
    uploads = sys_.rule != 'never' or sys_.trainer
    require_subs = ['/camera/image_raw'] + (['/laecips/hard_frames'] if uploads else [])
    require_nodes = ([NODE_NAMES['bridge']] if uploads else []) + (
        [NODE_NAMES['trainer']] if sys_.trainer else [])
    rec_params = {'output': str(result), 'expect_frames': n_frames, 'deadline': args.deadline,
                  'keep_frames': keep or [-1], 'idle_timeout': args.idle_timeout,
                  'max_time': args.system_timeout,
                  'mask_topic': f'/{robot}/edge/mask',
                  'refined_topic': f'/{robot}/edge/mask_refined',
                  'require_publishers': [f'/{robot}/edge/mask', f'/{robot}/edge/mask_refined']
                  + (['/laecips/hard_frames', '/laecips/cloud_labels'] if uploads else [])
                  + (['/laecips/weight_pushes'] if sys_.trainer else []),
                  'require_subscribers': require_subs, 'require_nodes': require_nodes}
    rec = runner.start(f'{tag}.recorder', 'edge',
                       [sys.executable, '-m', 'laecips_eval.recorder_node', '--ros-args']
                       + [a for k, v in rec_params.items() for a in ('-p', f'{k}:={_param(v)}')])
    live.append(f'{tag}.recorder')
    t0 = time.monotonic()
    try:
        _wait(lambda: 'ready' in runner.log(f'{tag}.recorder').split(), args.start_timeout,
              f'{sys_.label}: nodes to come up', runner, live)
        replay = runner.start(f'{tag}.replay', 'edge', [
            sys.executable, '-m', 'laecips_eval.replay_node', '--ros-args',
            '-p', f'bag:={bag}', '-p', 'rate:=1.0', '-p', 'restamp:=true',
            '-p', 'wait_for_subscribers:=1', '-p', 'progress:=false',
            '-p', f'start_delay:={args.start_delay}', '-p', 'depth:=20'])
        print(f'[evaluate] {sys_.label}: replaying {n_frames} frames', flush=True)
        _wait(lambda: replay.poll() is not None, args.system_timeout,
              f'{sys_.label}: the replay', runner, live[:-1])  # the recorder may finish first
        if replay.returncode != 0:
            raise RuntimeError(f'replay failed:\n{runner.log(f"{tag}.replay")[-3000:]}')
        _wait(lambda: rec.poll() is not None, args.system_timeout,
              f'{sys_.label}: the recorder', runner, live[:-1])
        if rec.returncode != 0 or not result.is_file():
            raise RuntimeError(f'recorder failed:\n{runner.log(f"{tag}.recorder")[-3000:]}')
    finally:
        for label in (f'{tag}.replay', f'{tag}.recorder', f'{tag}.trainer', f'{tag}.edge'):
            runner.stop(label)
    run = json.loads(result.read_text())
    run['system'] = {'name': sys_.name, 'label': sys_.label, 'rule': sys_.rule,
                     'params': sys_.params, 'trainer': sys_.trainer, 'seed': sys_.seed}
    run['wall_s'] = time.monotonic() - t0
    result.write_text(json.dumps(run))
    s = report.summarize(run)
    print(f'[evaluate] {sys_.label}: mIoU {s["miou_all"]:.1f} (dusk {s["miou_dusk"]:.1f}), '
          f'upload {s["upload_ratio"]:.0%}, latency p50 {s["latency_p50_ms"]:.0f} ms '
          f'({run["wall_s"]:.0f} s)', flush=True)
    return run


def _features(run: dict) -> list[list[float]]:
    return [f['features'] for f in run['frames'] if len(f['features']) >= 2]


def goals(rows: dict[str, dict], labels: dict[str, str], link: bool) -> list[str]:
    """Return the issue's goals, each with what this run got."""
    def row(name):
        return rows.get(labels.get(name, ''), None)
    e, c, lae = row('edge_only'), row('cloud_only'), row('laecips')
    out = []
    if e and lae:
        d = lae['miou_dusk'] - e['miou_dusk']
        out.append(f'- LAECIPS - edge-only on dusk (scoring) frames: {d:+.1f} mIoU '
                   f'(goal >= +15): {"met" if d >= 15 else "not met"}')
    if e and c and lae:
        gap = c['miou_all'] - e['miou_all']
        rec = (lae['miou_all'] - e['miou_all']) / gap if gap > 0 else math.nan
        up = lae['bytes_up_per_frame'] / c['bytes_up_per_frame'] \
            if c['bytes_up_per_frame'] else math.nan
        out.append(f'- overall gap recovered: {rec:.0%} of cloud-only - edge-only '
                   f"({gap:.1f} mIoU) with {up:.0%} of cloud-only's upload bytes (goal >= 70 % "
                   f'with <= 30 %): {"met" if rec >= 0.7 and up <= 0.3 else "not met"}')
        if link:
            ratio = lae['latency_mean_ms'] / c['latency_mean_ms']
            out.append(f'- mean latency over the link: {ratio:.2f} x cloud-only '
                       f'(goal <= 0.5): {"met" if ratio <= 0.5 else "not met"}')
    for name in ('random', 'fixed_matched', 'entropy'):
        b = row(name)
        if lae and b:
            ok = lae['miou_all'] > b['miou_all'] and lae['miou_dusk'] > b['miou_dusk']
            out.append(f'- vs {labels[name]}: mIoU {lae["miou_all"] - b["miou_all"]:+.1f} '
                       f'overall, {lae["miou_dusk"] - b["miou_dusk"]:+.1f} dusk '
                       f'({"beats" if ok else "does not beat"} it)')
    return out


def keep_indices(phases: list[str], n: int) -> list[int]:
    """Pick ``n`` frames for overlays: the middle and the end of each phase, in order."""
    spans: dict[str, list[int]] = {}
    for i, p in enumerate(phases):
        spans.setdefault(p, []).append(i)
    picks = []
    for idx in spans.values():
        picks += [idx[len(idx) // 2], idx[-1]]
    return sorted(set(picks))[:n] if n > 0 else []


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='evaluate', description=__doc__.split('\n')[1])
    p.add_argument('--out', default='eval_out', help='output folder')
    p.add_argument('--root', default=None, help='CamVid folder (default: LAECIPS_CAMVID, '
                   '../shared/data/camvid)')
    p.add_argument('--bag', default=None, help='use this bag (camera + ground truth topics) '
                   'instead of building the drift stream')
    p.add_argument('--frames', type=int, default=None, help='first N frames of the stream')
    p.add_argument('--per-phase', type=int, default=None, help='first N frames of each phase')
    p.add_argument('--rate', type=float, default=2.0, help='camera frames per second')
    p.add_argument('--scale', type=float, default=1.0, help='resize frames (GT: nearest)')
    p.add_argument('--systems', default=','.join(systems.DEFAULT),
                   help=f'comma-separated, from: {", ".join(systems.ORDER)}')
    p.add_argument('--seeds', type=int, default=3, help='runs of the random baseline')
    p.add_argument('--deadline', type=float, default=1.0,
                   help='seconds after the edge mask within which the cloud mask counts')
    p.add_argument('--link', default=None, help="emulated link 'RATE,RTT,LOSS', e.g. "
                   "'20mbit,50ms,0.0' (needs root)")
    p.add_argument('--tiny', action='store_true', help='small models and inputs (tests)')
    p.add_argument('--laecips-policy', default='random:rate=0.3',
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
    p.add_argument('--rebuild', action='store_true',
                   help='only re-render the report of --out from its runs/*.json')
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
    for kind, module in _kv(args.node_module).items():
        if kind not in MODULES:
            print(f'evaluate: --node-module: unknown node {kind!r}', file=sys.stderr)
            return 2
        MODULES[kind] = module
    args.edge_params = {**(TINY['edge'] if args.tiny else {}), **_kv(args.edge_param)}
    args.bridge_params = {'torch_threads': 1, 'device': 'cpu',
                          **(TINY['bridge'] if args.tiny else {}), **_kv(args.bridge_param)}
    args.trainer_params = {'num_threads': 1, **(TINY['trainer'] if args.tiny else {}),
                           **_kv(args.trainer_param)}
    rule, _, kv = args.laecips_policy.partition(':')
    laecips_policy = (rule, _kv([x for x in kv.split(',') if x]))

    # The stream.
    from laecips_core import camvid
    root = camvid.find_root(args.root)
    if args.bag:
        bag, frames_by_name = Path(args.bag), {}
        from rosbags.rosbag2 import Reader
        with Reader(bag) as r:
            gt = [c for c in r.connections if c.topic == camvid_to_bag.GT_TOPIC]
            n_frames = sum(c.msgcount for c in gt)
        phases = []
    else:
        if root is None:
            print('evaluate: CamVid not found (--root or LAECIPS_CAMVID)', file=sys.stderr)
            return 1
        items = camvid_to_bag.select(root, 'drift', per_phase=args.per_phase,
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
            runner.start('bridge', 'cloud', node_argv('bridge', args.bridge_params))
        ratio, features = None, None
        for name in names:
            for sys_ in systems.build(name, ratio, features, args.seeds, laecips_policy):
                before = link.wait_stats() if link else None
                run = _reused(args.reuse, sys_, n_frames, out)
                if run is None:
                    run = run_system(sys_, args, runner, bag, n_frames, out, keep)
                runs.setdefault(sys_.label, []).append(run)
                if link:
                    link_counters[sys_.label + f'#{sys_.seed}'] = _delta(before,
                                                                         link.wait_stats())
                if name == 'laecips':
                    ratio = report.summarize(run)['upload_ratio']
                if name == 'cloud_only':
                    features = _features(run)
    cmd = 'evaluate ' + shlex.join(argv if argv is not None else sys.argv[1:])
    meta = {'command': cmd, 'frames': n_frames, 'rate': args.rate, 'deadline': args.deadline,
            'link': args.link, 'link_counters': link_counters,
            'wall_s': time.time() - started}
    md = write_report(out, runs, names, meta)
    _overlays(runs, out, frames_by_name)
    print(md)
    return 0


def write_report(out: Path, runs: dict[str, list[dict]], names: list[str], meta: dict) -> str:
    """Write table.md, results.json and the plots of recorded runs; return the markdown."""
    labels = {name: next((r[0]['system']['label'] for r in runs.values()
                          if r[0]['system']['name'] == name), '') for name in names}
    rows = {label: report.average([report.summarize(r) for r in rs])
            for label, rs in runs.items()}
    spec = parse_spec(meta['link']) if meta.get('link') else None
    md = [f'Command: `{meta["command"]}`', '',
          f'{meta["frames"]} frames at {meta["rate"]:g} Hz, deadline {meta["deadline"]:g} s'
          + (f', link {spec}' if spec else ', loopback DDS') + '.', '',
          report.table(rows), '', 'Goals:'] + goals(rows, labels, spec is not None)
    (out / 'table.md').write_text('\n'.join(md) + '\n')
    report.write_json(out / 'results.json', {
        **meta, 'rows': rows,
        'runs': {label: [{'system': r['system'], 'summary': report.summarize(r),
                          'totals': r['totals'], 'pushes': r['pushes'],
                          'edge_stats': r.get('edge_stats', {})} for r in rs]
                 for label, rs in runs.items()}})
    report.plots({label: rs[0] for label, rs in runs.items()}, out)
    return '\n'.join(md)


def rebuild(out: Path) -> str:
    """Re-render the report of an earlier ``--out`` folder from its runs/*.json."""
    meta = json.loads((out / 'results.json').read_text())
    meta = {k: meta.get(k) for k in ('command', 'frames', 'rate', 'deadline', 'link',
                                     'link_counters', 'wall_s')}
    found = [json.loads(p.read_text()) for p in sorted((out / 'runs').glob('*.json'))]
    found.sort(key=lambda r: (systems.ORDER.index(r['system']['name']), r['system']['seed']))
    runs: dict[str, list[dict]] = {}
    for r in found:
        runs.setdefault(r['system']['label'], []).append(r)
    names = list(dict.fromkeys(r['system']['name'] for r in found))
    return write_report(out, runs, names, meta)


def _reused(reuse: str | None, sys_: systems.System, n_frames: int, out: Path) -> dict | None:
    """Return an earlier run of an independent system (copied into ``out``), else None."""
    if not reuse or sys_.name not in REUSABLE:
        return None
    src = Path(reuse) / 'runs' / f'{sys_.name}.json'
    if not src.is_file():
        return None
    run = json.loads(src.read_text())
    if len(run['frames']) != n_frames or run['system']['params'] != sys_.params:
        return None
    run['reused_from'] = str(src)
    dst = out / 'runs' / src.name
    if dst.resolve() != src.resolve():
        dst.write_text(json.dumps(run))
        if src.with_suffix('.npz').is_file():
            dst.with_suffix('.npz').write_bytes(src.with_suffix('.npz').read_bytes())
    print(f'[evaluate] {sys_.label}: reused {src}', flush=True)
    return run


def _delta(before: dict, after: dict) -> dict:
    return {d: {k: after[d].get(k, 0) - before[d].get(k, 0) for k in after[d]}
            for d in after}


def _overlays(runs: dict[str, list[dict]], out: Path, frames_by_name: dict) -> None:
    import numpy as np

    from laecips_eval.recorder import fit_mask
    d = out / 'overlays'
    d.mkdir(exist_ok=True)
    for label, rs in runs.items():
        run = rs[0]
        name = run['system']['name']
        npz = out / 'runs' / (f'{name}_s0.npz' if name == 'random' else f'{name}.npz')
        if not npz.is_file() or not frames_by_name:
            continue
        masks = np.load(npz)
        for f in run['frames']:
            key = f'final_{f["index"]}'
            frame = frames_by_name.get(f['name'])
            if key not in masks.files or frame is None:
                continue
            edge = masks[f'edge_{f["index"]}'] if f'edge_{f["index"]}' in masks.files else None
            final = masks[key]
            gt = fit_mask(frame.gt(), final.shape)
            report.overlay(frame.rgb(), edge, final, gt,
                           d / f'{name}_{f["index"]:03d}_{f["name"]}.png',
                           f'{f["phase"]} {f["name"]} ({label}, final: {f["source"]})')


if __name__ == '__main__':
    sys.exit(main())
