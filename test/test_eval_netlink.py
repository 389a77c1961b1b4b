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

from laecips_core import dds
from laecips_eval import netlink
from laecips_eval.forwarder import Pipe


def test_parse_spec():
    s = netlink.parse_spec('20mbit,50ms,0.01')
    assert (s.rate_bps, s.rtt_s, s.loss) == (20e6, pytest.approx(0.05), 0.01)
    assert netlink.parse_spec('0').rate_bps == 0 and netlink.parse_spec('1.5gbit,1s').rtt_s == 1
    assert str(s) == '20 Mbit/s, 50 ms RTT, 1 % loss'
    for bad in ('fast', '20mbit,50parsecs', '20mbit,5ms,2', '1,2,3,4', '1,2ms,0,wobble=3ms',
                '1,2ms,0,jitter=fast', '1,2ms,0,jitter=-1ms', '20mbit,5ms,200%'):
        with pytest.raises(ValueError):
            netlink.parse_spec(bad)


def test_parse_spec_jitter_and_percent():
    s = netlink.parse_spec('20mbit,100ms,5%,jitter=200ms')
    assert (s.rate_bps, s.rtt_s, s.loss, s.jitter_s) == (
        20e6, pytest.approx(0.1), pytest.approx(0.05), pytest.approx(0.2))
    assert str(s) == '20 Mbit/s, 100 ms RTT, 5 % loss, 200 ms jitter'
    assert netlink.parse_spec('0,jitter=1s').jitter_s == 1.0  # options anywhere after RATE
    assert netlink.parse_spec('1mbit').jitter_s == 0.0


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
    with pytest.raises(ValueError):
        Pipe(jitter_s=-0.1)


def test_pipe_jitter_delays_uniformly_and_may_reorder():
    n, delay, jitter = 4000, 0.1, 0.2
    p = Pipe(delay_s=delay, jitter_s=jitter, seed=3)
    for i in range(n):  # one frame every ms, no rate limit
        assert p.offer(i.to_bytes(2, 'big'), i * 1e-3)
    extra = sorted(t - delay - int.from_bytes(f, 'big') * 1e-3 for t, _, f in p.queue)
    assert 0.0 <= extra[0] < 0.001 and 0.199 < extra[-1] < jitter  # uniform in [0, jitter)
    assert abs(extra[n // 2] - jitter / 2) < 0.01
    assert p.held['frames'] == n and p.held['peak_bytes'] == 2 * n
    out = []
    t = 0.0
    while p.next_due() is not None:
        t = p.next_due()
        out += [int.from_bytes(f, 'big') for f in p.due(t)]
    # Everything comes out, each frame once, in due-time order: not in arrival order.
    assert sorted(out) == list(range(n)) and out != sorted(out)
    assert t < (n - 1) * 1e-3 + delay + jitter
    assert p.held['frames'] == p.held['bytes'] == 0 and p.counters['frames_out'] == n


def test_pipe_without_jitter_keeps_order_and_holds_a_bounded_backlog():
    # 8 kbit/s = 1000 B/s, 300 B queue, 0.5 s delay: the delay line holds <= 500 B more.
    p = Pipe(rate_bps=8000, delay_s=0.5, queue_bytes=300, seed=1)
    out = []
    for i in range(200):  # 100 B every 50 ms: twice the rate, so the queue overflows
        now = i * 0.05
        p.offer(bytes([i]) * 100, now)
        out += [f[0] for f in p.due(now)]
        assert p.held['bytes'] <= 300 + 100 + 1000 * 0.5
    assert out == sorted(out) and p.counters['dropped_queue'] > 50
    assert p.held['peak_bytes'] <= 300 + 100 + 500
    jittery = Pipe(rate_bps=8000, delay_s=0.5, jitter_s=0.2, queue_bytes=300, seed=1)
    for i in range(200):
        jittery.offer(bytes([i]) * 100, i * 0.05)
        jittery.due(i * 0.05)
        assert jittery.held['bytes'] <= 300 + 100 + 1000 * (0.5 + 0.2)


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


def test_profile_paces_writers_below_the_link_rate():
    xml = netlink.profile(20e6)
    assert '<max_bytes_per_period>200000</max_bytes_per_period>' in xml  # 80 % of 20 Mbit/s
    assert '<flow_controller_name>link_pacing</flow_controller_name>' in xml
    assert 'flow_controller' not in netlink.profile(0.0)  # unlimited: no pacing


def test_profile_names_no_interface():
    # Fast DDS 3 (Kilted) never discovered the other namespace with the TAP whitelisted.
    for rate in (0.0, 20e6):
        xml = netlink.profile(rate)
        assert '<useBuiltinTransports>false</useBuiltinTransports>' in xml  # no SHM
        assert 'interfaceWhiteList' not in xml and 'allowlist' not in xml


def test_link_env_names_the_profile_for_the_installed_fast_dds(tmp_path):
    link = netlink.Link('0')
    link.dir = tmp_path
    for distro, names in (('jazzy', dds.PROFILE_VARS), ('kilted', (dds.NEW_VAR,))):
        env = link.env('edge', {'ROS_DISTRO': distro, dds.OLD_VAR: 'stale.xml'})
        assert {k for k in env if k in dds.PROFILE_VARS} == set(names)
        assert all(env[k] == str(tmp_path / 'fastdds_edge.xml') for k in names)
        assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'SUBNET'


def test_a_large_message_crosses_the_paced_link_without_drops():
    # Unpaced, a 3.3 MB weight push never arrived over 20 Mbit/s: its fragments overflowed
    # the link's queue and the repairs flooded it. Paced, 3 MB crosses in about 1.5 s.
    why = netlink.check_allowed()
    if why:
        pytest.fail(f'the namespace link test must run (as root): {why}')
    size = 3_000_000  # more than the link's queue (20 Mbit/s / 16 = 1.25 MB)
    link = netlink.Link('20mbit,50ms,0.0', paced=('edge', 'cloud'))  # the echo sends too
    with link:
        echo = link.popen('cloud', [sys.executable, '-m', 'laecips_eval.link_probe', 'echo'],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = subprocess.run(link.argv('edge', [sys.executable, '-m', 'laecips_eval.link_probe',
                                              'ping', '--count', '2', '--size', str(size),
                                              '--timeout', '30']),
                           env=link.env('edge'), capture_output=True, text=True, timeout=120)
        assert echo.poll() is None
        stats = link.wait_stats()
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    for direction in ('edge_to_cloud', 'cloud_to_edge'):
        assert stats[direction]['dropped_queue'] == 0, stats
        # Paced: little beyond the payloads themselves went out (no repair storm).
        assert stats[direction]['bytes_out'] < 4 * 2 * size, stats
