# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Run the evaluation's systems: node processes, one system after another, over one bag.

Nodes start from the one description of the nodes (``laecips_core.nodes``): their shipped
params file in config/ plus the system's overrides. :func:`run_system` starts the edge (and
the trainer for LAECIPS), the recorder and the replay, waits until the recorder has every
answer and stops them; the bridge runs for the whole command (started by the caller).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path
import shlex
import shutil
import signal
import subprocess
import sys
import time

from laecips_core import interface as ifc
from laecips_core import nodes
from laecips_eval import final_weights, report, systems
from laecips_eval.netlink import Link

# Systems whose runs do not depend on LAECIPS's run (--reuse).
REUSABLE = ('edge_only', 'cloud_only', 'fixed', 'entropy_sedna')


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


def node_argv(kind: str, params: dict, robot: str = 'robot1',
              modules: dict[str, str] | None = None) -> list[str]:
    """
    Return the command of one system node: its shipped params file, then ``params``.

    ``modules`` may run another module for a node kind (evaluate's --node-module).
    """
    spec = nodes.BY_KEY[kind]
    return nodes.module_argv(spec, (modules or {}).get(kind), robot_id=robot,
                             overrides=params)


def kv(items: list[str]) -> dict:
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


def run_system(sys_: systems.System, args: argparse.Namespace, runner: Runner, bag: Path,
               n_frames: int, out_dir: Path, keep: list[int]) -> dict:
    """Run one system over the bag and return the recorder's output."""
    tag = run_tag(sys_)
    robot = args.robot_id
    edge_params = {'policy_rule': sys_.rule, 'policy_params': sys_.policy_params(),
                   'seed': sys_.seed, 'image_qos': 'reliable', 'num_threads': 1,
                   **sys_.edge, **args.edge_params}
    state_dir = out_dir / 'runs' / f'{tag}_state'
    if sys_.trainer:  # the edge keeps its accepted pushes: scored alone after the run
        shutil.rmtree(state_dir, ignore_errors=True)
        edge_params['state_dir'] = str(state_dir)
    runner.start(f'{tag}.edge', 'edge', node_argv('edge', edge_params, robot, args.modules))
    live = [f'{tag}.edge'] + (['bridge'] if runner.alive('bridge') else [])
    if sys_.trainer:
        # The trainer must know the policy the edge starts with (upload propensities).
        tparams = {'initial_policy_rule': sys_.rule,
                   'initial_policy_params': sys_.policy_params(), **args.trainer_params,
                   **sys_.trainer_params}
        runner.start(f'{tag}.trainer', 'cloud', ['nice', '-n', str(args.trainer_nice)]
                     + node_argv('trainer', tparams, modules=args.modules))
        live.append(f'{tag}.trainer')
    result = out_dir / 'runs' / f'{tag}.json'
    uploads = sys_.rule != 'never' or sys_.trainer
    require_subs = [ifc.CAMERA] + ([ifc.HARD_FRAMES] if uploads else [])
    require_nodes = ([nodes.BRIDGE.name] if uploads else []) + (
        [nodes.TRAINER.name] if sys_.trainer else [])
    mask = ifc.edge_topic(robot, ifc.EDGE_MASK)
    refined = ifc.edge_topic(robot, ifc.EDGE_MASK_REFINED)
    rec_params = {'output': str(result), 'expect_frames': n_frames, 'deadline': args.deadline,
                  'keep_frames': keep or [-1], 'idle_timeout': args.idle_timeout,
                  'max_time': args.system_timeout,
                  'mask_topic': mask, 'refined_topic': refined,
                  'require_publishers': [mask, refined]
                  + ([ifc.HARD_FRAMES, ifc.CLOUD_LABELS] if uploads else [])
                  + ([ifc.WEIGHT_PUSHES] if sys_.trainer else []),
                  'require_subscribers': require_subs, 'require_nodes': require_nodes}
    rec = runner.start(f'{tag}.recorder', 'edge',
                       [sys.executable, '-m', 'laecips_eval.recorder_node', '--ros-args']
                       + nodes.param_args(rec_params))
    live.append(f'{tag}.recorder')
    t0 = time.monotonic()
    try:
        _wait(lambda: 'ready' in runner.log(f'{tag}.recorder').split(), args.start_timeout,
              f'{sys_.label}: nodes to come up', runner, live)
        replay = runner.start(f'{tag}.replay', 'edge', [
            sys.executable, '-m', 'laecips_eval.replay_node', '--ros-args',
            '-p', f'bag:={bag}', '-p', f'rate:={float(getattr(args, "replay_rate", 1.0))!r}',
            '-p', 'restamp:=true',
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
    if sys_.trainer:
        run['edge_final'] = final_weights.score(state_dir, bag)
    result.write_text(json.dumps(run))
    s = report.summarize(run)
    scoring = report.role_names(s)['scoring']
    print(f'[evaluate] {sys_.label}: mIoU {s["miou_all"]:.1f} ({scoring} '
          f'{s["miou_scoring"]:.1f}), '
          f'upload {s["upload_ratio"]:.0%}, latency p50 {s["latency_p50_ms"]:.0f} ms '
          f'({run["wall_s"]:.0f} s)', flush=True)
    return run


def features_of(run: dict) -> list[list[float]]:
    return [f['features'] for f in run['frames'] if len(f['features']) >= 2]


def keep_indices(phases: list[str], n: int) -> list[int]:
    """Pick ``n`` frames for overlays: the middle and the end of each phase, in order."""
    spans: dict[str, list[int]] = {}
    for i, p in enumerate(phases):
        spans.setdefault(p, []).append(i)
    picks = []
    for idx in spans.values():
        picks += [idx[len(idx) // 2], idx[-1]]
    return sorted(set(picks))[:n] if n > 0 else []


def run_tag(sys_: systems.System) -> str:
    """Return the file name (no suffix) of a system's run: one per random seed."""
    return sys_.name + (f'_s{sys_.seed}' if sys_.name.startswith('random') else '')


def reused(reuse: str | None, sys_: systems.System, n_frames: int, out: Path,
           resume: bool = False) -> dict | None:
    """
    Return an earlier run (copied into ``out``), else None.

    Without ``resume`` only systems that do not depend on LAECIPS's run (``REUSABLE``);
    with it any system, when its parameters and seed are the same (an interrupted
    evaluation, or one whose run came back incomplete, goes on where it stopped).
    """
    if not reuse or (sys_.name not in REUSABLE and not resume):
        return None
    src = Path(reuse) / 'runs' / f'{run_tag(sys_) if resume else sys_.name}.json'
    if not src.is_file():
        return None
    run = json.loads(src.read_text())
    same = run['system']['params'] == sys_.params and (
        not resume or (run['system']['seed'] == sys_.seed
                       and run['system']['trainer'] == sys_.trainer))
    if len(run['frames']) != n_frames or not same:
        return None
    run['reused_from'] = str(src)
    dst = out / 'runs' / src.name
    if dst.resolve() != src.resolve():
        dst.write_text(json.dumps(run))
        if src.with_suffix('.npz').is_file():
            dst.with_suffix('.npz').write_bytes(src.with_suffix('.npz').read_bytes())
    print(f'[evaluate] {sys_.label}: reused {src}', flush=True)
    return run


def delta(before: dict, after: dict) -> dict:
    return {d: {k: after[d].get(k, 0) - before[d].get(k, 0) for k in after[d]}
            for d in after}
