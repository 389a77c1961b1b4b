# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The emulated link: the forwarder's pipe algorithm, and DDS across two network namespaces.

The namespace test needs root; it FAILS (never skips) when the link cannot be set up, since
CI runs as root and the latency benchmark depends on it.
"""

import json
import subprocess
import sys

import pytest

from laecips_eval import netlink
from laecips_eval.forwarder import Pipe


def test_parse_spec():
    s = netlink.parse_spec('20mbit,50ms,0.01')
    assert (s.rate_bps, s.rtt_s, s.loss) == (20e6, pytest.approx(0.05), 0.01)
    assert netlink.parse_spec('0').rate_bps == 0 and netlink.parse_spec('1.5gbit,1s').rtt_s == 1
    assert str(s) == '20 Mbit/s, 50 ms RTT, 1 % loss'
    for bad in ('fast', '20mbit,50parsecs', '20mbit,5ms,2', '1,2,3,4'):
        with pytest.raises(ValueError):
            netlink.parse_spec(bad)


def test_pipe_rate_delay_and_order():
    p = Pipe(rate_bps=8000, delay_s=0.5)  # 1000 bytes/s
    assert p.offer(b'a' * 100, 0.0) and p.offer(b'b' * 100, 0.0)
    # a: on the wire 0.1 s, out at 0.6; b: queued behind it, out at 0.7.
    assert p.next_due() == pytest.approx(0.6)
    assert p.due(0.59) == [] and p.due(0.6) == [b'a' * 100]
    assert p.due(0.69) == [] and p.due(0.7) == [b'b' * 100]
    assert p.offer(b'c', 10.0) and p.next_due() == pytest.approx(10.501)
    assert p.counters['frames_out'] == 2 and p.counters['bytes_in'] == 201


def test_pipe_unlimited_loss_and_queue():
    p = Pipe(delay_s=0.0)
    assert p.offer(b'x', 1.0) and p.due(1.0) == [b'x']
    lossy = Pipe(loss=0.3, seed=1)
    kept = sum(lossy.offer(b'y', 0.0) for _ in range(2000))
    assert 1200 < kept < 1600 and lossy.counters['dropped_loss'] == 2000 - kept
    q = Pipe(rate_bps=8000, queue_bytes=250)
    assert [q.offer(b'z' * 100, 0.0) for _ in range(4)] == [True, True, False, False]
    assert q.counters['dropped_queue'] == 2
    with pytest.raises(ValueError):
        Pipe(loss=1.5)


def _namespaces() -> set:
    out = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_dds_crosses_the_namespace_link():
    why = netlink.check_allowed()
    if why:
        pytest.fail(f'the namespace link test must run (as root): {why}')
    size, count = 20000, 4
    link = netlink.Link('20mbit,50ms,0.0')
    with link:
        echo = link.popen('cloud', [sys.executable, '-m', 'laecips_eval.link_probe', 'echo'],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = subprocess.run(link.argv('edge', [sys.executable, '-m', 'laecips_eval.link_probe',
                                              'ping', '--count', str(count), '--size',
                                              str(size)]),
                           env=link.env('edge'), capture_output=True, text=True, timeout=90)
        assert echo.poll() is None
        stats = link.wait_stats()
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(result['rtt_ms']) == count
    # Round trip: 50 ms of emulated delay plus 2 x 20 kB at 20 Mbit/s (16 ms) at least.
    assert min(result['rtt_ms']) >= 50 + 2 * size * 8 / 20e6 * 1e3 * 0.9
    # The payloads crossed the wire both ways (shared memory is off, namespaces are apart).
    for direction in ('edge_to_cloud', 'cloud_to_edge'):
        assert stats[direction]['bytes_out'] >= count * size, stats
        assert stats[direction]['dropped_loss'] == 0
    assert not {link.ns['edge'], link.ns['cloud']} & _namespaces()  # torn down
