# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Trainers as Ray actors: one per robot, restartable, resuming from a state directory.

``RobotTrainer`` wraps the trainer's per-robot ``laecips_cloud.distill.Distiller`` and keeps
what it needs to resume under ``state_dir/<robot_id>/``: the (frame, cloud label) pairs it
was given (``pairs/<n>.npz``, written before ``add`` returns; the newest that refill the
replay buffer and the held-out set), the weights the robot's edge
accepted last (``active.safetensors``) and the version counters (``state.json``). When Ray
restarts the actor (``max_restarts``; its process died or was killed) the constructor finds
that directory, rebuilds the distiller from the accepted weights, adds the pairs again in
their order (the same train/validation split) and never reuses a version it handed out, so
the next candidate it offers continues from where the robot is. The student's steps since the
last accepted push are not kept: a restart trains them again.

Pushes stay with the caller (the trainer node calls the edge's ``update_weights`` with the
candidate's bytes, then ``commit`` or ``reject``): the actor never talks to a robot.
``trainer_actor`` returns the Ray actor class with its restart options; ``get_or_create``
finds a robot's named actor or starts it.
"""

from __future__ import annotations

from dataclasses import asdict
import json
import os
from pathlib import Path
import tempfile

import numpy as np

from laecips_cloud.distill import DistillConfig, Distiller
from laecips_core import weights

STATE_FILE, ACTIVE_FILE, PAIRS_DIR = 'state.json', 'active.safetensors', 'pairs'


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
                 config: dict | None = None):
        self.robot_id = robot_id
        self.dir = Path(state_dir) / robot_id
        (self.dir / PAIRS_DIR).mkdir(parents=True, exist_ok=True)
        state = {}
        if (self.dir / STATE_FILE).is_file():
            state = json.loads((self.dir / STATE_FILE).read_text())
        start = self.dir / ACTIVE_FILE if (self.dir / ACTIVE_FILE).is_file() else weights_path
        sd, meta = weights.load(start)
        cfg = DistillConfig(**(config or {}))
        self.d = Distiller(sd, meta, cfg)
        # Versions handed out before a restart are never reused (an edge may hold one).
        self.d.ensure_version_above(int(state.get('next_version', 1)) - 1)
        self.pending: dict | None = None
        self.resumed = 0
        # Enough pairs to refill the replay buffer and the held-out set; older ones go.
        k = round(1 / cfg.val_fraction) if cfg.val_fraction > 0 else 1
        self.keep = cfg.buffer_size + cfg.val_size * k
        files = sorted((self.dir / PAIRS_DIR).glob('*.npz'))
        if files:  # the same train/validation split as before: it follows the pair's index
            self.d.frames_seen = int(files[0].stem)
        for path in files:
            with np.load(path) as z:
                conf = z['confidence'] if 'confidence' in z else None
                self.d.add(z['rgb'], z['label'], int(z['seq']), confidence=conf)
            self.resumed += 1

    def add(self, rgb: np.ndarray, label: np.ndarray, seq: int,
            confidence: np.ndarray | None = None) -> str:
        """Store one pair (on disk first, then in the distiller); return 'train' or 'val'."""
        n = self.d.frames_seen
        arrays = {'rgb': rgb, 'label': label, 'seq': np.int64(seq)}
        if confidence is not None:
            arrays['confidence'] = np.asarray(confidence, np.float32)
        fd, tmp = tempfile.mkstemp(dir=self.dir / PAIRS_DIR, suffix='.tmp')
        with os.fdopen(fd, 'wb') as f:
            np.savez(f, **arrays)
        os.replace(tmp, self.dir / PAIRS_DIR / f'{n:09d}.npz')
        (self.dir / PAIRS_DIR / f'{n - self.keep:09d}.npz').unlink(missing_ok=True)
        return self.d.add(rgb, label, seq, confidence=confidence)

    def round(self, steps: int | None = None) -> dict | None:
        """Train one round; a candidate that passed the gate as {version, data, sha256}."""
        if not self.d.ready():
            return None
        cand = self.d.round(steps)
        if cand is None:
            return None
        self.pending = {'cand': cand}
        self._save_state()  # its version is taken, even if this actor dies now
        return {'version': cand.version, 'data': cand.data, 'sha256': cand.sha256,
                'val_before': cand.val_before, 'val_after': cand.val_after}

    def commit(self, version: int) -> bool:
        """Record that the edge accepted candidate ``version``: the state to resume from."""
        if not self.pending or self.pending['cand'].version != version:
            return False
        cand = self.pending['cand']
        self.d.commit(cand)
        _atomic_write(self.dir / ACTIVE_FILE, cand.data)
        self.pending = None
        self._save_state()
        return True

    def reject(self, version: int) -> None:
        """Forget candidate ``version``: its push failed or was refused."""
        if self.pending and self.pending['cand'].version == version:
            self.d.reject(self.pending['cand'])
            self.pending = None

    def status(self) -> dict:
        """Return the versions and counters (and how many pairs came back after a restart)."""
        return {'robot_id': self.robot_id, 'active_version': self.d.active_version,
                'next_version': self.d._next_version, 'frames_seen': self.d.frames_seen,
                'steps': self.d.steps, 'resumed_pairs': self.resumed, 'pid': os.getpid()}

    def _save_state(self) -> None:
        state = {'robot_id': self.robot_id, 'active_version': self.d.active_version,
                 'next_version': self.d._next_version, 'config': asdict(self.d.cfg)}
        _atomic_write(self.dir / STATE_FILE, json.dumps(state).encode())


def trainer_actor(max_restarts: int = -1, num_cpus: float = 1.0, num_gpus: float = 0.0):
    """Return ``RobotTrainer`` as a Ray actor class, restarted up to ``max_restarts`` times."""
    import ray
    return ray.remote(max_restarts=max_restarts, max_task_retries=0, num_cpus=num_cpus,
                      num_gpus=num_gpus)(RobotTrainer)


def get_or_create(robot_id: str, state_dir: str, weights_path: str,
                  config: dict | None = None, **options):
    """Return the robot's named actor (``laecips_trainer:<robot_id>``), started if absent."""
    import ray
    name = f'laecips_trainer:{robot_id}'
    try:
        return ray.get_actor(name)
    except ValueError:
        return trainer_actor(**options).options(name=name, get_if_exists=True).remote(
            robot_id, state_dir, weights_path, config)
