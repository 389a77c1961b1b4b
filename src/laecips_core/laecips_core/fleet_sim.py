# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
How many labeller GPUs a fleet needs: a discrete-event simulation of the cloud's labelling.

Robots run their cameras at ``rate`` Hz, each from its own random phase, and upload each
frame with probability ``upload`` (the edge's policy, thinned independently per frame). The
uploads join one queue in front of ``servers`` identical labeller replicas (GPUs). A free
replica takes up to ``max_batch`` waiting frames at once (no waiting for a batch to fill:
under load batches fill by themselves) and is busy for ``service(b)`` seconds. The queue is
served freshest first (the bridge's scheduler, ``laecips_core.schedule``) or first in first
out; a frame that could no longer be answered within ``deadline`` even if started now is
dropped for inference. A frame's label latency is its wait + service + ``rtt`` (the label's
way back and the frame's way up); a dropped frame counts as never answered (infinite
latency), so "p95 under the deadline" means at least 95 % of uploads labelled in time.

``gpus_needed`` searches the fewest servers for which the p95 label latency is under the
deadline (fewer replicas than the mean load needs may pass by dropping up to 5 % of the
uploads: the figure is the bare minimum, not a comfortable margin). Service times are a
``ServiceModel``: seconds per batch of b frames, measured at a few batch sizes and
interpolated linearly between them, extrapolated at the last per-frame cost. Pure Python +
numpy, no ROS: the numbers behind docs/bench/fleet_gpus.png.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
import heapq
import math

import numpy as np


@dataclass(frozen=True)
class ServiceModel:
    """Seconds one replica takes for a batch of b frames, from measured points."""

    name: str
    #: batch size -> seconds for the whole batch (measured); at least batch 1.
    batch_seconds: dict[int, float]
    note: str = ''

    def __call__(self, b: int) -> float:
        """Return the seconds a batch of ``b`` frames takes."""
        pts = sorted(self.batch_seconds.items())
        if b <= pts[0][0]:
            return pts[0][1] * b / pts[0][0]
        for (b0, s0), (b1, s1) in zip(pts, pts[1:]):
            if b <= b1:
                return s0 + (s1 - s0) * (b - b0) / (b1 - b0)
        bl, sl = pts[-1]
        return sl * b / bl  # beyond the last measurement: its per-frame cost

    def frames_per_s(self, b: int = 1) -> float:
        """Return one replica's throughput at batch ``b``."""
        return b / self(b)


@dataclass
class Fleet:
    """The load: ``robots`` cameras at ``rate`` Hz uploading a share ``upload`` of frames."""

    robots: int
    rate: float = 10.0
    upload: float = 0.3

    @property
    def frames_per_s(self) -> float:
        """Return the mean upload rate of the whole fleet."""
        return self.robots * self.rate * self.upload

    def arrivals(self, seconds: float, rng: np.random.Generator) -> np.ndarray:
        """Return the sorted upload times over ``seconds``: periodic cameras, thinned."""
        per = max(1, int(math.ceil(seconds * self.rate)))
        # Drawn robot by robot in chunks so 10,000 robots x 10 Hz stays within memory.
        out = []
        for lo in range(0, self.robots, 2048):
            n = min(2048, self.robots - lo)
            phase = rng.uniform(0.0, 1.0 / self.rate, n)
            t = phase[:, None] + np.arange(per)[None, :] / self.rate
            keep = rng.random(t.shape) < self.upload
            out.append(t[keep & (t < seconds)])
        return np.sort(np.concatenate(out)) if out else np.zeros(0)


@dataclass
class Result:
    """What one simulation run measured."""

    servers: int
    frames: int
    latencies: np.ndarray  # seconds, of the frames labelled (any time)
    dropped: int
    batches: int
    busy_s: float
    seconds: float
    extra: dict = field(default_factory=dict)

    def p(self, q: float) -> float:
        """Return the q-quantile of label latency over every frame, dropped ones = inf."""
        if not self.frames:
            return 0.0
        lat = np.concatenate([self.latencies, np.full(self.dropped, np.inf)])
        return float(np.quantile(lat, q, method='higher'))

    def summary(self, deadline: float) -> dict:
        """Return JSON-ready figures of this run."""
        n = max(1, self.frames)
        return {'servers': self.servers, 'frames': self.frames,
                'p50_s': _finite(self.p(0.5)), 'p95_s': _finite(self.p(0.95)),
                'in_deadline_ratio': round(float(np.sum(self.latencies <= deadline)) / n, 4),
                'dropped': self.dropped,
                'mean_batch': round(self.frames_labelled / max(1, self.batches), 2),
                'utilisation': round(self.busy_s / max(1e-9, self.servers * self.seconds), 4)}

    @property
    def frames_labelled(self) -> int:
        """Return how many frames got a label."""
        return int(len(self.latencies))


def _finite(x: float) -> float | None:
    return round(x, 4) if math.isfinite(x) else None


def simulate(arrivals: np.ndarray, servers: int, service: ServiceModel, *,
             max_batch: int = 1, deadline: float = 1.0, rtt: float = 0.05,
             order: str = 'freshest') -> Result:
    """Run the queue of ``arrivals`` (sorted seconds) through ``servers`` replicas."""
    if order not in ('freshest', 'fifo'):
        raise ValueError(f"order must be 'freshest' or 'fifo', not {order!r}")
    svc = [service(b) for b in range(max_batch + 1)]
    queue: collections.deque[float] = collections.deque()
    busy: list[float] = []  # heap of the times busy replicas come free
    free, lat, dropped, batches, busy_s = servers, [], 0, 0, 0.0
    i, n, t = 0, len(arrivals), 0.0
    take = queue.pop if order == 'freshest' else queue.popleft
    while i < n or busy:
        if i < n and (not busy or arrivals[i] <= busy[0]):
            t = float(arrivals[i])
            queue.append(t)
            i += 1
        else:
            t = heapq.heappop(busy)
            free += 1
        while free and queue:
            batch: list[float] = []
            while queue and len(batch) < max_batch:
                a = take()
                # Too late even if labelled alone now: not labelled for inference.
                if t - a + svc[1] + rtt > deadline:
                    dropped += 1
                    continue
                batch.append(a)
            if not batch:
                break
            done = t + svc[len(batch)]
            lat.extend(done - a + rtt for a in batch)
            heapq.heappush(busy, done)
            free -= 1
            batches += 1
            busy_s += svc[len(batch)]
    seconds = float(arrivals[-1]) if n else 0.0
    return Result(servers, n, np.asarray(lat), dropped, batches, busy_s, seconds)


def meets(result: Result, deadline: float, quantile: float = 0.95) -> bool:
    """Return whether the ``quantile`` label latency of ``result`` is within ``deadline``."""
    return result.p(quantile) <= deadline


def gpus_needed(fleet: Fleet, service: ServiceModel, *, deadline: float = 1.0,
                rtt: float = 0.05, max_batch: int = 1, order: str = 'freshest',
                target_frames: int = 40_000, min_seconds: float = 20.0,
                quantile: float = 0.95, seed: int = 0) -> dict:
    """
    Return the fewest replicas whose ``quantile`` label latency is within ``deadline``.

    The fleet is simulated for long enough to see ``target_frames`` uploads (at least
    ``min_seconds``); the search starts at the replicas that keep up with ``quantile`` of the
    mean load, grows by a quarter until the goal is met, then bisects. None when even one
    frame alone misses the deadline.
    """
    if service(1) + rtt > deadline:
        return {'gpus': None, 'why': 'one frame alone takes longer than the deadline'}
    lam = fleet.frames_per_s
    seconds = max(min_seconds, target_frames / max(lam, 1e-9))
    arr = fleet.arrivals(seconds, np.random.default_rng(seed))

    def run(g: int) -> Result:
        return simulate(arr, g, service, max_batch=max_batch, deadline=deadline, rtt=rtt,
                        order=order)

    # At least 95 % of uploads must be labelled (dropped ones count as too late), so the
    # replicas must keep up with that share of the mean load even at their best batch.
    lo = max(1, int(math.ceil(quantile * lam / service.frames_per_s(max_batch))))
    cache: dict[int, Result] = {}

    def ok(g: int) -> bool:
        if g not in cache:
            cache[g] = run(g)
        return meets(cache[g], deadline, quantile)

    hi = lo
    while not ok(hi):
        lo, hi = hi + 1, max(hi + 1, int(hi * 1.25) + 1)
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    best = cache[hi]
    return {'gpus': hi, 'robots': fleet.robots, 'rate_hz': fleet.rate, 'upload': fleet.upload,
            'uploads_per_s': round(lam, 2), 'simulated_s': round(seconds, 1),
            'gpus_per_robot': round(hi / fleet.robots, 4), **best.summary(deadline)}
