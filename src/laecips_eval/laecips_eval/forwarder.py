# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
A userspace Ethernet wire between two TAP devices that adds rate limit, delay, jitter, loss.

This kernel has ``tbf`` but no ``netem``, so the emulated link is a forwarder: every frame
read from one TAP is (maybe) dropped with probability ``loss``, serialised at ``rate``
(frames queue behind each other; a full queue drops the newest, like a drop-tail qdisc),
delayed by ``delay`` (one way) plus ``jitter`` (a uniform random extra delay in
[0, jitter), drawn per frame) and written to the other TAP. With jitter, frames may leave in
another order than they came, like netem's jitter: a frame drawn a small extra delay
overtakes one drawn a large one (IP reassembles fragments and DDS orders samples by
sequence number; best-effort readers drop samples that arrive after a newer one). Without
jitter the order is kept. Being an L2 wire, ARP and multicast (DDS discovery) cross it like
any other frame. Counters of frames and bytes per direction, and the frames and bytes held
in each direction (now and at most), are written as JSON to a stats file.

``Pipe`` (one direction, no I/O) is the algorithm; ``run`` the I/O loop;
``python -m laecips_eval.forwarder`` the process :mod:`laecips_eval.netlink` starts.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
from pathlib import Path
import random
import select
import signal
import sys
import time


class Pipe:
    """
    One direction of the link: loss, a rate-limited FIFO, then a delay (fixed + jitter).

    Bytes held at once (``held``): at most ``queue_bytes`` waiting for the transmitter plus
    what the delay line holds, ``rate`` x (``delay`` + ``jitter``); unbounded without a rate.
    """

    def __init__(self, rate_bps: float = 0.0, delay_s: float = 0.0, loss: float = 0.0,
                 queue_bytes: int = 1 << 20, seed: int | None = None, jitter_s: float = 0.0):
        if rate_bps < 0 or delay_s < 0 or jitter_s < 0 or not 0.0 <= loss <= 1.0:
            raise ValueError('rate, delay and jitter must be >= 0 and loss in [0, 1]')
        self.rate_bps = float(rate_bps)
        self.delay_s = float(delay_s)
        self.jitter_s = float(jitter_s)
        self.loss = float(loss)
        self.queue_bytes = int(queue_bytes)
        self.rng = random.Random(seed)
        self.free_at = 0.0  # when the transmitter finishes the last queued frame
        # (due time, arrival number, frame): a heap, since jitter may reorder frames; the
        # arrival number keeps frames due at the same time in arrival order.
        self.queue: list[tuple[float, int, bytes]] = []
        self.arrivals = 0
        self.counters = {'frames_in': 0, 'bytes_in': 0, 'frames_out': 0, 'bytes_out': 0,
                         'dropped_loss': 0, 'dropped_queue': 0}
        self.held = {'frames': 0, 'bytes': 0, 'peak_frames': 0, 'peak_bytes': 0}

    def offer(self, frame: bytes, now: float) -> bool:
        """Take a frame read at ``now``; return False when it is dropped."""
        c = self.counters
        c['frames_in'] += 1
        c['bytes_in'] += len(frame)
        if self.loss and self.rng.random() < self.loss:
            c['dropped_loss'] += 1
            return False
        start = max(now, self.free_at)
        if self.rate_bps > 0:
            backlog_bytes = (start - now) * self.rate_bps / 8
            if backlog_bytes + len(frame) > self.queue_bytes:
                c['dropped_queue'] += 1
                return False
            self.free_at = start + len(frame) * 8 / self.rate_bps
        else:
            self.free_at = start
        due = self.free_at + self.delay_s
        if self.jitter_s:
            due += self.rng.random() * self.jitter_s
        heapq.heappush(self.queue, (due, self.arrivals, frame))
        self.arrivals += 1
        h = self.held
        h['frames'] += 1
        h['bytes'] += len(frame)
        h['peak_frames'] = max(h['peak_frames'], h['frames'])
        h['peak_bytes'] = max(h['peak_bytes'], h['bytes'])
        return True

    def next_due(self) -> float | None:
        """Return when the next frame is due out, or None when nothing is queued."""
        return self.queue[0][0] if self.queue else None

    def due(self, now: float) -> list[bytes]:
        """Pop and return the frames due out at ``now`` (in due-time order)."""
        out = []
        while self.queue and self.queue[0][0] <= now:
            frame = heapq.heappop(self.queue)[2]
            self.counters['frames_out'] += 1
            self.counters['bytes_out'] += len(frame)
            self.held['frames'] -= 1
            self.held['bytes'] -= len(frame)
            out.append(frame)
        return out


def _write_stats(path: Path | None, stats: dict) -> None:
    if path is None:
        return
    tmp = path.with_suffix('.tmp')
    tmp.write_text(json.dumps(stats))
    os.replace(tmp, path)


def run(tap_a, tap_b, a_to_b: Pipe, b_to_a: Pipe, stats_path: Path | None = None,
        stop: list | None = None, period: float = 0.2) -> dict:
    """Forward frames between two open TAP devices until ``stop[0]`` is true."""
    stop = stop if stop is not None else [False]
    fds = {tap_a.fileno(): (tap_a, a_to_b, tap_b), tap_b.fileno(): (tap_b, b_to_a, tap_a)}
    pipes = ((a_to_b, tap_b), (b_to_a, tap_a))
    last_stats = 0.0

    def stats() -> dict:
        return {'a_to_b': dict(a_to_b.counters), 'b_to_a': dict(b_to_a.counters),
                'held': {'a_to_b': dict(a_to_b.held), 'b_to_a': dict(b_to_a.held)},
                'time': time.time()}

    while not stop[0]:
        now = time.monotonic()
        dues = [t for t in (a_to_b.next_due(), b_to_a.next_due()) if t is not None]
        timeout = min([period] + [max(0.0, t - now) for t in dues])
        try:
            ready, _, _ = select.select(list(fds), [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd in ready:
            src, pipe, _ = fds[fd]
            try:
                frame = src.read(65536)
            except OSError:
                continue
            pipe.offer(frame, now)
        for pipe, dst in pipes:
            for frame in pipe.due(now):
                try:
                    dst.write(frame)
                except OSError:
                    pass  # the far side is down (e.g. during teardown)
        if now - last_stats >= period:
            _write_stats(stats_path, stats())
            last_stats = now
    final = stats()
    _write_stats(stats_path, final)
    return final


def main(argv: list[str] | None = None) -> int:
    import pytun
    p = argparse.ArgumentParser(prog='forwarder', description=__doc__.split('\n')[1])
    p.add_argument('--tap-a', required=True, help='name of the first TAP device to create')
    p.add_argument('--tap-b', required=True, help='name of the second TAP device to create')
    p.add_argument('--rate', type=float, default=0.0, help='bits per second (0: unlimited)')
    p.add_argument('--delay', type=float, default=0.0, help='one-way delay, seconds')
    p.add_argument('--jitter', type=float, default=0.0,
                   help='extra one-way delay, uniform in [0, JITTER) seconds per frame')
    p.add_argument('--loss', type=float, default=0.0, help='drop probability per frame')
    p.add_argument('--queue-bytes', type=int, default=1 << 20, help='drop-tail queue size')
    p.add_argument('--mtu', type=int, default=1500)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--stats', default=None, help='JSON counters file, rewritten as it runs')
    args = p.parse_args(argv)
    stop = [False]

    def on_signal(*_):
        stop[0] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    flags = pytun.IFF_TAP | pytun.IFF_NO_PI
    tap_a = pytun.TunTapDevice(name=args.tap_a, flags=flags)
    tap_b = pytun.TunTapDevice(name=args.tap_b, flags=flags)
    try:
        for t in (tap_a, tap_b):
            t.mtu = args.mtu
        pipes = [Pipe(args.rate, args.delay, args.loss, args.queue_bytes, args.seed + i,
                      args.jitter) for i in range(2)]
        print('ready', flush=True)
        run(tap_a, tap_b, pipes[0], pipes[1],
            Path(args.stats) if args.stats else None, stop)
    finally:
        tap_a.close()
        tap_b.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
