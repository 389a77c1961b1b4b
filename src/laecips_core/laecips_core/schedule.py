# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Deadline-aware scheduling of hard frames in the cloud bridge (no rclpy).

A label helps the edge only while its deadline holds; past it the edge has answered with its
own mask and the label can only teach the trainer. First-in first-out under overload spends
the labeller on frames already too late while fresh ones wait behind them, so
:class:`Scheduler`:

* takes frames for **inference** only while they can still finish in time: started now, a
  batch of ``n`` frames ends ``n * service`` seconds later (``service``: the running mean of
  the labeller's seconds per frame plus twice its mean deviation, so a slow spell on a shared
  machine does not turn predicted-in-time frames late), and every frame in it must still be
  within its deadline then; freshest first, fair across robots (round robin, the robot
  served longest ago first, each giving its newest waiting frame per round);
* when no frame can make its deadline, the newest one whose deadline has not passed yet
  still goes for inference, alone (a labeller slower than the deadline still answers, late
  and counted so);
* labels a frame past its deadline in the **training** lane only when nothing else waits, one
  at a time (a fresh frame arriving meanwhile waits at most one frame);
* bounds the waiting frames in number and bytes: beyond either bound the stalest frame goes,
  a late one first, else the oldest of the robot with the most frames waiting (one robot's
  burst evicts its own frames, not the others');
* counts every frame it accepted exactly once, in ``counts``: ``labelled_in_time``,
  ``labelled_late`` (taken for inference, finished after its deadline), ``labelled_for_training``
  or ``dropped``; until then it is ``waiting()`` or ``in_flight``.

Time is whatever monotonic clock the caller passes (the bridge: ``time.monotonic()`` at
receipt), and deadlines are relative to receipt, so robot and cloud clocks never meet.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
import itertools
import threading
from typing import Any

INFERENCE, TRAINING = 'inference', 'training'
OUTCOMES = ('labelled_in_time', 'labelled_late', 'labelled_for_training', 'dropped')


@dataclass
class Entry:
    """One waiting frame: whose, when it arrived, when its label stops being useful."""

    robot: str
    t_in: float  # receipt, on the scheduler's clock
    deadline: float  # absolute, same clock
    nbytes: int
    payload: Any = None
    order: int = field(default=0, compare=False)  # arrival order, ties broken by it


class Scheduler:
    """Bounded per-robot queues; batches for inference (fresh) or training (late)."""

    def __init__(self, max_frames: int, max_bytes: int, service_s: float = 0.0,
                 smoothing: float = 0.2) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError(f'bounds must be positive, not {max_frames} frames, {max_bytes} B')
        self.max_frames, self.max_bytes = int(max_frames), int(max_bytes)
        self.mean = float(service_s)  # seconds per frame, running mean
        self.dev = 0.0  # its running mean absolute deviation
        self.smoothing = float(smoothing)
        self.counts: Counter[str] = Counter({k: 0 for k in OUTCOMES})
        self.in_flight = 0
        self.bytes = 0
        self._robots: dict[str, list[Entry]] = {}  # robot -> entries, oldest first
        self._served: dict[str, int] = {}  # robot -> round of its last service
        self._rounds = itertools.count(1)
        self._order = itertools.count()
        self._lock = threading.Lock()

    # -- in --------------------------------------------------------------------------------

    def push(self, entry: Entry) -> list[Entry]:
        """Queue ``entry``; return the entries dropped to keep within the bounds (counted)."""
        with self._lock:
            entry.order = next(self._order)
            self._robots.setdefault(entry.robot, []).append(entry)
            self.bytes += entry.nbytes
            dropped = []
            while self._waiting() > self.max_frames or self.bytes > self.max_bytes:
                dropped.append(self._evict(entry.t_in))
            self.counts['dropped'] += len(dropped)
            return dropped

    def waiting(self) -> int:
        """Return the number of frames waiting."""
        with self._lock:
            return self._waiting()

    def entries(self) -> list[Entry]:
        """Return the waiting entries in arrival order (a copy)."""
        with self._lock:
            return sorted((e for q in self._robots.values() for e in q), key=lambda e: e.order)

    def _waiting(self) -> int:
        return sum(len(q) for q in self._robots.values())

    def _evict(self, now: float) -> Entry:
        late = [q[0] for q in self._robots.values() if q and self._late(q[0], now)]
        if late:  # each queue is oldest first, so its head is its stalest
            victim = min(late, key=lambda e: e.order)
        else:
            longest = max((q for q in self._robots.values() if q),
                          key=lambda q: (len(q), -q[0].order))
            victim = longest[0]
        self._remove(victim)
        return victim

    def _remove(self, e: Entry) -> None:
        q = self._robots[e.robot]
        q.remove(e)
        self.bytes -= e.nbytes
        if not q:
            del self._robots[e.robot]

    @property
    def service(self) -> float:
        """Return the seconds per frame deadlines are planned with (mean + 2 deviations)."""
        return self.mean + 2.0 * self.dev

    def _late(self, e: Entry, now: float, ahead: int = 1) -> bool:
        return now + ahead * self.service > e.deadline

    # -- out -------------------------------------------------------------------------------

    def take(self, now: float, max_batch: int) -> tuple[str, list[Entry]]:
        """
        Return ``(lane, entries)`` to label now; ``(INFERENCE, [])`` when nothing waits.

        The entries leave the queue and count as in flight until :meth:`finish`.
        """
        with self._lock:
            batch = self._fresh_batch(now, max(1, int(max_batch)))
            lane = INFERENCE
            if not batch:
                batch = self._newest_one(now, lambda e: now < e.deadline)
            if not batch:
                batch, lane = self._newest_one(now, lambda e: True), TRAINING
            for e in batch:
                self._remove(e)
            self.in_flight += len(batch)
            return lane, batch

    def _fresh_batch(self, now: float, max_batch: int) -> list[Entry]:
        # Per robot, its frames that could still finish in time if labelled alone, newest first.
        fresh = {r: [e for e in reversed(q) if not self._late(e, now)]
                 for r, q in self._robots.items()}
        order = sorted((r for r in fresh if fresh[r]), key=lambda r: (self._served.get(r, 0), r))
        batch: list[Entry] = []
        for depth in itertools.count():
            added = False
            for r in order:
                if depth >= len(fresh[r]) or len(batch) >= max_batch:
                    continue
                cand = fresh[r][depth]
                # Growing the batch delays every frame in it: all must still make it.
                if all(not self._late(e, now, len(batch) + 1) for e in batch + [cand]):
                    batch.append(cand)
                    added = True
            if not added or len(batch) >= max_batch:
                break
        if batch:
            rnd = next(self._rounds)
            for r in {e.robot for e in batch}:
                self._served[r] = rnd
        return batch

    def _newest_one(self, now: float, ok) -> list[Entry]:
        # The newest frame passing ``ok``, round robin over robots: closest to what the robot
        # sees now.
        heads = [(self._served.get(r, 0), r, next((e for e in reversed(q) if ok(e)), None))
                 for r, q in self._robots.items()]
        heads = [h for h in heads if h[2] is not None]
        if not heads:
            return []
        _, r, e = min(heads, key=lambda h: (h[0], h[1]))
        self._served[r] = next(self._rounds)
        return [e]

    def finish(self, lane: str, labelled: list[Entry], now: float,
               seconds: float | None = None, failed: list[Entry] | tuple = ()) -> None:
        """
        Count taken entries done at ``now``: ``labelled`` got a label, ``failed`` none.

        ``seconds``: what the whole batch took (it updates the service estimate). Failed
        entries (the labeller raised, or a replica gave up) count as dropped.
        """
        with self._lock:
            n = len(labelled) + len(failed)
            self.in_flight -= n
            if seconds is not None and n:
                per, a = seconds / n, self.smoothing
                if self.mean <= 0:
                    self.mean = per
                else:
                    self.dev = (1 - a) * self.dev + a * abs(per - self.mean)
                    self.mean = (1 - a) * self.mean + a * per
            self.counts['dropped'] += len(failed)
            for e in labelled:
                self.counts[self.outcome(lane, e, now)] += 1

    def forget(self, n: int) -> None:
        """Release ``n`` taken entries the caller found invalid (it counts them as rejected)."""
        with self._lock:
            self.in_flight -= n

    @staticmethod
    def outcome(lane: str, e: Entry, now: float) -> str:
        """Return the counter a frame labelled in ``lane`` and done at ``now`` goes to."""
        if lane == TRAINING:
            return 'labelled_for_training'
        return 'labelled_in_time' if now <= e.deadline else 'labelled_late'

    def drop_all(self) -> int:
        """Drop (and count) every waiting frame; return how many (the bridge shuts down)."""
        with self._lock:
            n = self._waiting()
            self._robots.clear()
            self.bytes = 0
            self.counts['dropped'] += n
            return n


class LoadMeter:
    """
    Offered load of one stats period: frames arrived x seconds per frame / period length.

    Above 1 the labeller cannot keep up with what arrives; the bridge reports it (with
    frames dropped or late in the period) as back-pressure to the edges.
    """

    def __init__(self, now: float) -> None:
        self.t0, self.arrived = now, 0

    def arrive(self, n: int = 1) -> None:
        self.arrived += n

    def read(self, now: float, service_s: float) -> float:
        """Return the load since the last read and start a new period."""
        dt = max(now - self.t0, 1e-6)
        load = self.arrived * service_s / dt
        self.t0, self.arrived = now, 0
        return load
