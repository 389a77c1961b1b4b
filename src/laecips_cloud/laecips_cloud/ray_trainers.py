# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Trainers as Ray actors (the trainer's ``backend: ray``): one per robot, restartable, persisted.

``RobotTrainer`` wraps the trainer's per-robot ``laecips_cloud.distill.Distiller`` and keeps
what it needs to resume under ``state_dir/<robot_id>/``: the (frame, cloud label) pairs it
was given (``pairs/<n>.npz``, written before ``add`` returns; the newest that refill the
replay buffer and the held-out set), the weights the robot's edge
accepted last (``active.safetensors``) and the version counters (``state.json``). When Ray
restarts the actor (``max_restarts``; its process died or was killed) the constructor finds
that directory, rebuilds the distiller from the initial weights (so the anchor gate still
measures against the factory model) with the accepted weights as its active and student
model, adds the pairs again in their order (the same train/validation split) and never
reuses a version it handed out, so the next candidate it offers continues from where the
robot is. The student's steps since the last accepted push are not kept: a restart trains
them again.

Pushes stay with the caller (the trainer node calls the edge's ``update_weights`` with the
candidate's bytes, then ``commit`` or ``reject``): the actor never talks to a robot.
``trainer_actor`` returns the Ray actor class with its restart options; ``get_or_create``
finds a robot's named actor or starts it.

On the node's side, ``RemoteDistiller`` stands in for the in-process ``Distiller`` (the
calls the trainer node makes: add, forget_recent, commit, reject, ensure_version_above,
on_candidate, start/stop, and ``fit_policy``, which runs in the actor beside the pairs). Its
calls return at once: they are queued, in order, for a worker thread that alone talks to
the actor (the node's executor never waits on Ray), runs the rounds like the in-process
worker does and hands candidates to ``on_candidate``. A call that meets a dead or restarting
actor is sent again once the actor is back (found again by name; created again, resuming
from the state directory, if Ray gave it up), so no pair or verdict is lost to a restart.
``Fleet`` connects to Ray (``ray_backend.connect``) and makes one ``RemoteDistiller`` per robot.
"""

from __future__ import annotations

import collections
from dataclasses import asdict
import json
import os
from pathlib import Path
import shutil
import tempfile
import threading
from typing import Callable

import numpy as np
import torch

from laecips_cloud.distill import Candidate, DistillConfig, Distiller
from laecips_core import anchor, weights

STATE_FILE, ACTIVE_FILE, PAIRS_DIR = 'state.json', 'active.safetensors', 'pairs'

# name: (default, description[, (min, max)]) -- merged into the trainer node's PARAMS table.
PARAMS = {
    'backend': ('local', "where each robot's distillation runs: 'local' (a thread of the "
                         "trainer) or 'ray' (a restartable Ray actor per robot; the ray_* "
                         'parameters)'),
    'ray_address': ('', "Ray cluster: 'auto', 'host:port' or 'ray://host:port'; empty: "
                        'start a local Ray on this machine (loopback only)'),
    'ray_local_cpus': (0, 'CPUs of the local Ray started when ray_address is empty (0: all)',
                       (0, 100000)),
    'ray_state_dir': ('', "folder of the actors' persisted state (<robot_id>/ each; shared "
                          'storage on a multi-node cluster); a trainer started on the same '
                          'folder resumes its robots; empty: a new temporary folder'),
    'ray_num_cpus': (1.0, 'CPUs reserved per trainer actor', (0.0, 1024.0)),
    'ray_num_gpus': (0.0, 'GPUs per trainer actor (a fraction shares one GPU)', (0.0, 64.0)),
    'ray_max_restarts': (-1, 'times Ray restarts a dead trainer actor (-1: always); past '
                             'that the trainer starts it again from its state', (-1, 1 << 30)),
    'ray_max_queued': (256, 'pairs queued for an actor while it trains or restarts (the '
                            'oldest dropped and counted beyond)', (1, 1 << 24)),
}


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + '.')
    with os.fdopen(fd, 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RobotTrainer:
    """One robot's distiller, its state persisted to ``state_dir/<robot_id>``."""

    def __init__(self, robot_id: str, state_dir: str, weights_path: str,
                 config: dict | None = None, anchor_src: tuple | None = None,
                 torch_threads: int = 0):
        if torch_threads > 0:
            torch.set_num_threads(torch_threads)
        anchor_set = rehearsal = None
        if anchor_src is not None:  # (root, frames, rehearsal frames): the trainer's params
            root, frames, more = anchor_src
            anchor_set = anchor.load(root or None, frames)
            rehearsal = anchor.load(root or None, frames, more) if more > 0 else None
        self.robot_id = robot_id
        self.dir = Path(state_dir).expanduser() / robot_id
        (self.dir / PAIRS_DIR).mkdir(parents=True, exist_ok=True)
        state = {}
        if (self.dir / STATE_FILE).is_file():
            state = json.loads((self.dir / STATE_FILE).read_text())
        sd, meta = weights.load(weights_path)
        cfg = DistillConfig(**(config or {}))
        self.d = Distiller(sd, meta, cfg, anchor_set=anchor_set, rehearsal=rehearsal)
        self.pending: dict | None = None
        if (self.dir / ACTIVE_FILE).is_file():  # what the robot's edge runs
            data = (self.dir / ACTIVE_FILE).read_bytes()
            self._adopt(int(weights.from_bytes(data)[1].version), data)
        # Versions handed out before a restart are never reused (an edge may hold one).
        self.d.ensure_version_above(int(state.get('next_version', 1)) - 1)
        self.resumed = 0
        # Enough pairs to refill the replay buffer and the held-out set; older ones go.
        k = round(1 / cfg.val_fraction) if cfg.val_fraction > 0 else 1
        self.keep = cfg.buffer_size + cfg.val_size * k
        for path in sorted((self.dir / PAIRS_DIR).glob('*.npz')):
            # The same train/validation split as before: it follows the pair's index.
            self.d.frames_seen = int(path.stem)
            with np.load(path) as z:
                self.d.add(z['rgb'], z['label'], int(z['seq']),
                           z['features'] if 'features' in z else None,
                           float(z['propensity']) if 'propensity' in z else 1.0,
                           z['confidence'] if 'confidence' in z else None)
            self.resumed += 1

    def add(self, rgb: np.ndarray, label: np.ndarray, seq: int,
            features: np.ndarray | None = None, propensity: float = 1.0,
            confidence: np.ndarray | None = None) -> str:
        """Store one pair (on disk first, then in the distiller); return 'train' or 'val'."""
        n = self.d.frames_seen
        arrays = {'rgb': rgb, 'label': label, 'seq': np.int64(seq),
                  'propensity': np.float64(propensity)}
        if features is not None:
            arrays['features'] = np.asarray(features, np.float64)
        if confidence is not None:
            arrays['confidence'] = np.asarray(confidence, np.float32)
        fd, tmp = tempfile.mkstemp(dir=self.dir / PAIRS_DIR, suffix='.tmp')
        with os.fdopen(fd, 'wb') as f:
            np.savez(f, **arrays)
        os.replace(tmp, self.dir / PAIRS_DIR / f'{n:09d}.npz')
        (self.dir / PAIRS_DIR / f'{n - self.keep:09d}.npz').unlink(missing_ok=True)
        return self.d.add(rgb, label, seq, features, propensity, confidence)

    def forget_recent(self, n: int) -> int:
        """Take back the last ``n`` pairs, on disk too (a restart must not learn them again)."""
        gone = self.d.forget_recent(n)
        for path in sorted((self.dir / PAIRS_DIR).glob('*.npz'))[::-1][:gone]:
            path.unlink(missing_ok=True)
        return gone

    def round(self, steps: int | None = None) -> dict | None:
        """Train one round; a candidate that passed the gate as {version, data, sha256, ...}."""
        if not self.d.ready():
            return None
        cand = self.d.round(steps)
        if cand is None:
            return None
        self.pending = {'cand': cand}
        self._save_state()  # its version is taken, even if this actor dies now
        return {'version': cand.version, 'data': cand.data, 'sha256': cand.sha256,
                'val_before': cand.val_before, 'val_after': cand.val_after,
                'steps': cand.steps, 'frames_seen': cand.frames_seen, 'anchor': cand.anchor}

    def commit(self, version: int, data: bytes | None = None) -> bool:
        """
        Record that the edge accepted candidate ``version``: the state to resume from.

        ``data`` (the candidate's bytes) lets an actor restarted while its candidate was
        being pushed adopt what the edge now runs; without it such a commit returns False.
        """
        if self.pending and self.pending['cand'].version == version:
            data = self.pending['cand'].data
            self.d.commit(self.pending['cand'])
            self.pending = None
        elif data is not None and version > self.d.active_version:
            self._adopt(version, data)
        else:
            return version == self.d.active_version
        _atomic_write(self.dir / ACTIVE_FILE, data)
        self._save_state()
        return True

    def reject(self, version: int) -> None:
        """Forget candidate ``version``: its push failed or was refused."""
        if self.pending and self.pending['cand'].version == version:
            self.d.reject(self.pending['cand'])
            self.pending = None

    def ensure_version_above(self, version: int) -> None:
        """Give later candidates versions above ``version`` (an edge already ahead)."""
        self.d.ensure_version_above(version)
        self._save_state()

    def fit_policy(self, state: dict, recipe: dict):
        """Fit the robot's policy on the kept pairs with the model ``state``; str: why not."""
        from laecips_cloud import policy_fit as pf
        try:
            return pf.fit_policy(self.d, state, pf.Recipe(**recipe))
        except ValueError as e:  # too few frames
            return str(e)

    def status(self) -> dict:
        """Return the versions and counters (and how many pairs came back after a restart)."""
        st = {'robot_id': self.robot_id, 'active_version': self.d.active_version,
              'next_version': self.d._next_version, 'frames_seen': self.d.frames_seen,
              'steps': self.d.steps, 'ready': self.d.ready(),
              'anchor_factory': dict(self.d.anchor_factory), 'resumed_pairs': self.resumed,
              'pid': os.getpid()}
        import ray
        if ray.is_initialized():  # in an actor: which one (a restart by Ray keeps its id)
            st['actor_id'] = ray.get_runtime_context().get_actor_id()
        return st

    def _adopt(self, version: int, data: bytes) -> None:
        # The edge runs these weights: the active model, and where the student goes on from.
        sd, _ = weights.from_bytes(data)
        self.d.model.load_state_dict(sd)  # no worker thread in an actor: nothing races
        self.d.commit(Candidate(version, data, weights.sha256(data), sd, {}, {}, self.d.steps,
                                self.d.frames_seen))
        self.d.ensure_version_above(version)

    def _save_state(self) -> None:
        state = {'robot_id': self.robot_id, 'active_version': self.d.active_version,
                 'next_version': self.d._next_version, 'config': asdict(self.d.cfg)}
        _atomic_write(self.dir / STATE_FILE, json.dumps(state).encode())


def trainer_actor(max_restarts: int = -1, num_cpus: float = 1.0, num_gpus: float = 0.0):
    """Return ``RobotTrainer`` as a Ray actor class, restarted up to ``max_restarts`` times."""
    import ray
    return ray.remote(max_restarts=max_restarts, max_task_retries=0, num_cpus=num_cpus,
                      num_gpus=num_gpus)(RobotTrainer)


def actor_name(robot_id: str) -> str:
    """Return the name of a robot's trainer actor (in the ``laecips`` namespace)."""
    return f'laecips_trainer:{robot_id}'


def get_or_create(robot_id: str, state_dir: str, weights_path: str,
                  config: dict | None = None, *args, **options):
    """Return the robot's named actor, started if absent (``args``: RobotTrainer's others)."""
    import ray
    name = actor_name(robot_id)
    try:
        return ray.get_actor(name)
    except ValueError:
        return trainer_actor(**options).options(name=name, get_if_exists=True).remote(
            robot_id, state_dir, weights_path, config, *args)


class _StoppedError(Exception):
    """The node is stopping: the worker leaves whatever call it waits on."""


class RemoteDistiller:
    """The node's stand-in for a robot's ``Distiller``: the work runs in its Ray actor."""

    def __init__(self, robot_id: str, create: Callable[[], object], cfg: DistillConfig,
                 state: dict, version: int, max_queued: int = 256,
                 log: Callable[[str], None] = print, warn: Callable[[str], None] = print):
        import ray
        self._ray = ray
        self.robot_id, self._create, self.cfg = robot_id, create, cfg
        self._log, self._warn = log, warn
        self.on_candidate: Callable[[Candidate], None] | None = None
        # Mirrors of the actor's counters (WeightPush reports them) and of the active model.
        self.active, self.active_version = state, int(version)
        self.steps = self.frames_seen = 0
        self.anchor_factory: dict = {}
        self.counts = collections.Counter()  # dropped (queue full), retried, restarts, failed
        self._ops: collections.deque = collections.deque()  # (method, args), in call order
        self._max_queued = int(max_queued)
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._train = False
        self._actor = None
        self._pid: int | None = None
        self._actor_id: str | None = None

    # --- the Distiller calls the node makes: queued, they return at once --------------
    def _queue(self, method: str, *args) -> None:
        with self._cv:
            if method == 'add' and sum(op[0] == 'add' for op in self._ops) >= self._max_queued:
                oldest = next(op for op in self._ops if op[0] == 'add')
                self._ops.remove(oldest)
                self.counts['dropped'] += 1
                self._warn(f'{self.robot_id}: trainer actor busy; oldest queued pair dropped '
                           f'({self.counts["dropped"]} so far)')
            self._ops.append((method, args))
            self._cv.notify_all()
        self._run_worker()

    def add(self, rgb: np.ndarray, label: np.ndarray, seq: int = 0,
            features: np.ndarray | None = None, propensity: float = 1.0,
            confidence: np.ndarray | None = None) -> None:
        self._queue('add', rgb, label, int(seq), features, float(propensity), confidence)

    def forget_recent(self, n: int) -> int:
        """Take back the last ``n`` pairs: those still queued here, the rest in the actor."""
        with self._cv:
            gone = 0
            while gone < n and self._ops and self._ops[-1][0] == 'add':
                self._ops.pop()
                gone += 1
        if gone < n:
            self._queue('forget_recent', n - gone)
        return n

    def commit(self, cand: Candidate) -> None:
        self.active, self.active_version = cand.state, cand.version
        self._queue('commit', cand.version, cand.data)

    def reject(self, cand: Candidate) -> None:
        self._queue('reject', cand.version)

    def ensure_version_above(self, version: int) -> None:
        self._queue('ensure_version_above', int(version))

    def fit_policy(self, state: dict, recipe) -> object:
        """Fit the robot's policy in the actor (where its pairs are); ValueError: too few."""
        fit = self._call('fit_policy', state, asdict(recipe))
        if fit is None or isinstance(fit, str):
            raise ValueError(fit or 'the policy fit failed in the trainer actor')
        return fit

    # --- the worker: the only caller of the actor, in call order -----------------------
    def start(self) -> None:
        """Train: rounds while pairs arrive (without it the worker only forwards calls)."""
        self._train = True
        self._run_worker()

    def _run_worker(self) -> None:
        with self._cv:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name=f'ray-{self.robot_id}')
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        with self._cv:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        idle = 0
        try:
            while not self._stop.is_set():
                with self._cv:
                    ops = list(self._ops)
                    self._ops.clear()
                fresh = any(op[0] == 'add' for op in ops)
                for method, args in ops:
                    self._call(method, *args)
                st = self._call('status')
                if st is None:
                    continue
                if self._pid is not None and st['pid'] != self._pid:
                    idle = 0  # what it trained since the last push is to be trained again
                    self.counts['restarts'] += 1
                    how = ('restarted by Ray' if st.get('actor_id') == self._actor_id
                           else 'started again')
                    self._log(f'{self.robot_id}: trainer actor {how} (pid {self._pid} -> '
                              f'{st["pid"]}): active v{st["active_version"]}, '
                              f'{st["resumed_pairs"]} pairs resumed from its state')
                self._pid, self._actor_id = st['pid'], st.get('actor_id')
                self.steps, self.frames_seen = st['steps'], st['frames_seen']
                self.anchor_factory = st['anchor_factory']
                if (not self._train or not st['ready']
                        or (not fresh and idle >= self.cfg.idle_rounds)):
                    with self._cv:
                        if not self._ops and not self._stop.is_set():
                            self._cv.wait(1.0)
                    continue
                idle = 0 if fresh else idle + 1
                res = self._call('round')
                if res is not None:
                    self.steps, self.frames_seen = res['steps'], res['frames_seen']
                    self._offer(res)
        except _StoppedError:
            pass

    def _offer(self, res: dict) -> None:
        state, _ = weights.from_bytes(res['data'], res['sha256'])
        cand = Candidate(res['version'], res['data'], res['sha256'], state, res['val_before'],
                         res['val_after'], res['steps'], res['frames_seen'], res['anchor'])
        try:
            if self.on_candidate is not None:
                self.on_candidate(cand)
        except Exception as e:  # noqa: BLE001 -- the node's handler; the worker goes on
            self._warn(f'{self.robot_id}: candidate v{cand.version} not handled: {e!r}')
            self.reject(cand)

    def _call(self, method: str, *args):
        """Call the actor and wait (stoppable); again after a restart. None: it raised."""
        ray = self._ray
        delay = 0.5
        while not self._stop.is_set():
            try:
                if self._actor is None:
                    self._actor = self._create()
                ref = getattr(self._actor, method).remote(*args)
                while not ray.wait([ref], timeout=0.5)[0]:
                    if self._stop.is_set():
                        raise _StoppedError
                return ray.get(ref)
            except ray.exceptions.RayTaskError as e:  # the method itself raised
                self.counts['failed'] += 1
                self._warn(f'{self.robot_id}: trainer actor {method} failed: {e}'[:500])
                return None
            except _StoppedError:
                raise
            except Exception as e:  # noqa: BLE001 -- the actor restarts or died, Ray is away
                self.counts['retried'] += 1
                gone = isinstance(e, ray.exceptions.ActorDiedError)
                self._warn(f'{self.robot_id}: trainer actor {"gone" if gone else "unavailable"} '
                           f'({type(e).__name__}); {method} sent again in {delay:.1f} s')
                if gone:  # past its restarts: started again, from its state. Only then is
                    # the handle let go: dropping its owner's last handle ends an actor for good.
                    self._actor = None
                self._stop.wait(delay)
                delay = min(2 * delay, 10.0)
        raise _StoppedError


class Fleet:
    """The trainer's ``backend: ray``: the Ray connection and one actor per robot."""

    def __init__(self, p: dict, weights_path: str, log: Callable[[str], None] = print,
                 warn: Callable[[str], None] = print):
        from laecips_cloud import ray_backend
        self.p, self._log, self._warn = p, log, warn
        self.started = ray_backend.connect(p['ray_address'], int(p['ray_local_cpus']))
        self._temp = not p['ray_state_dir']  # nobody could resume from it: removed at close
        self.state_dir = p['ray_state_dir'] or tempfile.mkdtemp(prefix='laecips_trainers_')
        # Paths, not data: Ray cannot restart an actor whose constructor arguments sit in
        # its object store (ray-project/ray#53727), so each actor reads the weights and the
        # anchor set itself (on a cluster: at the same paths on every node).
        self.weights_path = str(Path(weights_path).resolve())
        self.anchor_src = None
        if p['anchor_root'] != 'none':
            self.anchor_src = (p['anchor_root'], int(p['anchor_frames']),
                               int(p['rehearsal_frames']))
        self._options = dict(max_restarts=int(p['ray_max_restarts']),
                             num_cpus=float(p['ray_num_cpus']),
                             num_gpus=float(p['ray_num_gpus']))
        log(f'ray: trainer actors ({self._options}), state in {self.state_dir}')

    def distiller(self, robot_id: str, cfg: DistillConfig, state: dict,
                  version: int) -> RemoteDistiller:
        """Return the stand-in for ``robot_id``'s distiller; its actor starts with it."""
        # num_threads 0 ('one per core'): the cores the actor reserved, not the machine's.
        threads = int(self.p['num_threads']) or max(1, round(float(self.p['ray_num_cpus'])))

        def create():
            return get_or_create(robot_id, self.state_dir, self.weights_path, asdict(cfg),
                                 self.anchor_src, threads, **self._options)
        return RemoteDistiller(robot_id, create, cfg, state, version,
                               int(self.p['ray_max_queued']), self._log, self._warn)

    def close(self) -> None:
        """Disconnect from Ray (its actors end; the local Ray this trainer started too)."""
        import ray
        if ray.is_initialized():
            ray.shutdown()
        if self._temp:
            shutil.rmtree(self.state_dir, ignore_errors=True)
