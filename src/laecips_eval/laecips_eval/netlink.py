# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
An emulated network link: two network namespaces (edge, cloud) joined by a userspace wire.

``Link`` (a context manager, needs root) creates namespaces ``<prefix>e`` and ``<prefix>c``,
starts :mod:`laecips_eval.forwarder` (two TAP devices, one moved into each namespace,
addresses 10.<net>.0.1 and .2/24, a multicast route), and tears it all down in ``finally``.
Processes started with :meth:`Link.popen` run inside a namespace with a DDS setup that
crosses the link: ``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET`` and a Fast DDS profile with the
UDPv4 transport only (shared memory would bypass the wire). The profile names no interface:
a namespace has only its loopback and its TAP, and Fast DDS 3 (Kilted) with an interface
whitelist (or allowlist) never discovers the other side (its multicast announcements cross
the wire and go unanswered), while 2.x (Jazzy) works either way.

Link spec (``parse_spec``): ``'RATE,RTT,LOSS[,jitter=J]'``, e.g. ``'20mbit,50ms,0.0'`` or
``'20mbit,100ms,5%,jitter=200ms'``: rate in bit/s with k/m/g suffixes (``0`` = unlimited),
RTT (each direction adds half) in s or ms, loss probability (or percent) per Ethernet frame
and direction; ``jitter``: each direction adds a uniform random delay in [0, J) per frame,
so frames may be reordered (:mod:`laecips_eval.forwarder`).
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from laecips_core import dds

PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>udp_link</transport_id>
        <type>UDPv4</type>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="laecips_link" is_default_profile="true">
      <rtps>
        <userTransports><transport_id>udp_link</transport_id></userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>{flow_controllers}
      </rtps>
    </participant>{writer}
  </profiles>
</dds>
"""
# A rate-limited link needs the writers paced below its rate: unpaced, Fast DDS sends all
# fragments of a large message (a 3.3 MB weight push) at once, the link's queue drops most,
# and the NACK-driven repairs flood it (a 3.3 MB probe: 27 MB on the wire, 84,570 frames
# dropped, never delivered in 40 s; paced at 80 % of 20 Mbit/s: delivered in 1.65 s, 0
# drops). The writer profile applies only with RMW_FASTRTPS_PUBLICATION_MODE=AUTO. Fast DDS
# paces all of a participant's writers, local readers or not, so only the cloud side is
# paced by default: it sends the pushes, while the edge side's large traffic (camera ->
# edge, 518 kB frames) stays on the robot; paced too, it added ~150 ms to every frame.
FLOW_CONTROLLER = """
        <flow_controller_descriptor_list>
          <flow_controller_descriptor>
            <name>link_pacing</name>
            <scheduler>FIFO</scheduler>
            <max_bytes_per_period>{bytes_per_period}</max_bytes_per_period>
            <period_ms>{period_ms}</period_ms>
          </flow_controller_descriptor>
        </flow_controller_descriptor_list>"""
PACED_WRITER = """
    <data_writer profile_name="laecips_link_writer" is_default_profile="true">
      <qos>
        <publishMode>
          <kind>ASYNCHRONOUS</kind>
          <flow_controller_name>link_pacing</flow_controller_name>
        </publishMode>
      </qos>
    </data_writer>"""
PACING_SHARE = 0.8  # of the link rate: room for the other direction's ACKs and discovery
PACING_PERIOD_MS = 100


def profile(rate_bps: float, pacing: bool = True) -> str:
    """Return the Fast DDS XML profile for one side of a link (paced when rate-limited)."""
    if not (pacing and rate_bps > 0):
        return PROFILE.format(flow_controllers='', writer='')
    per = max(1500, int(rate_bps / 8 * PACING_SHARE * PACING_PERIOD_MS / 1000))
    return PROFILE.format(writer=PACED_WRITER,
                          flow_controllers=FLOW_CONTROLLER.format(
                              bytes_per_period=per, period_ms=PACING_PERIOD_MS))


@dataclass(frozen=True)
class LinkSpec:
    """
    Rate (bit/s, 0 = unlimited), round-trip delay (s), per-frame loss probability, jitter.

    ``jitter_s``: the largest extra one-way delay, drawn uniformly per frame and direction.
    """

    rate_bps: float = 0.0
    rtt_s: float = 0.0
    loss: float = 0.0
    jitter_s: float = 0.0

    def __str__(self) -> str:
        rate = f'{self.rate_bps / 1e6:g} Mbit/s' if self.rate_bps else 'unlimited'
        jitter = f', {self.jitter_s * 1e3:g} ms jitter' if self.jitter_s else ''
        return f'{rate}, {self.rtt_s * 1e3:g} ms RTT, {self.loss * 100:g} % loss{jitter}'


def _number(text: str, units: dict[str, float], what: str) -> float:
    m = re.fullmatch(r'\s*([0-9.]+(?:e-?[0-9]+)?)\s*([a-z/%]*)\s*', text.lower())
    if not m or m.group(2) not in units:
        raise ValueError(f'cannot read {what} {text!r} (units: {", ".join(units)})')
    return float(m.group(1)) * units[m.group(2)]


TIME_UNITS = {'': 1, 's': 1, 'ms': 1e-3, 'us': 1e-6}


def parse_spec(spec: str) -> LinkSpec:
    """Parse ``'20mbit,50ms,0.01'`` (rate, RTT, loss; trailing parts optional) ``,jitter=J``."""
    parts = [p for p in spec.split(',')]
    options = dict(p.split('=', 1) for p in parts if '=' in p)
    parts = [p for p in parts if '=' not in p]
    usage = f'link spec {spec!r}: expected RATE[,RTT[,LOSS]][,jitter=J]'
    if not 1 <= len(parts) <= 3 or set(options) - {'jitter'}:
        raise ValueError(usage)
    rate = _number(parts[0], {'': 1, 'bit': 1, 'kbit': 1e3, 'mbit': 1e6, 'gbit': 1e9,
                              'k': 1e3, 'm': 1e6, 'g': 1e9, 'bps': 1, 'kbps': 1e3,
                              'mbps': 1e6}, 'rate')
    rtt = _number(parts[1], TIME_UNITS, 'RTT') if len(parts) > 1 else 0.0
    loss = _number(parts[2], {'': 1, '%': 0.01}, 'loss') if len(parts) > 2 else 0.0
    if not 0.0 <= loss <= 1.0:
        raise ValueError(f'loss must be in [0, 1], not {loss}')
    jitter = _number(options['jitter'], TIME_UNITS, 'jitter') if 'jitter' in options else 0.0
    return LinkSpec(rate, rtt, loss, jitter)


def _ip(*args: str) -> None:
    r = subprocess.run(['ip', *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f'ip {" ".join(args)}: {r.stderr.strip() or r.returncode}')


def check_allowed() -> str | None:
    """Return why a link cannot be set up here (not root, no ip, no /dev/net/tun), or None."""
    if os.geteuid() != 0:
        return 'network namespaces need root'
    if shutil.which('ip') is None:
        return "the 'ip' command (iproute2) is missing"
    if not os.path.exists('/dev/net/tun'):
        return '/dev/net/tun is missing'
    try:
        import pytun  # noqa: F401
    except ImportError:
        return 'python-pytun is not installed'
    return None


class Link:
    """Two namespaces joined by the forwarder; use as ``with Link(spec) as link: ...``."""

    ROLES = ('edge', 'cloud')

    def __init__(self, spec: LinkSpec | str = LinkSpec(), prefix: str | None = None,
                 net: int | None = None, queue_bytes: int | None = None, mtu: int = 1500,
                 paced: tuple[str, ...] = ('cloud',)):
        self.spec = parse_spec(spec) if isinstance(spec, str) else spec
        self.paced = paced  # roles whose DDS writers are paced below the link rate
        pid = os.getpid() % 100000
        self.prefix = prefix or f'lae{pid}'
        self.net = net if net is not None else 100 + pid % 100
        self.ns = {'edge': f'{self.prefix}e', 'cloud': f'{self.prefix}c'}
        self.tap = {'edge': f'{self.prefix}te', 'cloud': f'{self.prefix}tc'}
        self.addr = {'edge': f'10.{self.net}.0.1', 'cloud': f'10.{self.net}.0.2'}
        # Default queue: half a second at the link rate (at least 256 kB).
        self.queue_bytes = queue_bytes or max(256 * 1024, int(self.spec.rate_bps / 16))
        self.mtu = mtu
        self.dir: Path | None = None
        self.forwarder: subprocess.Popen | None = None
        self.procs: list[subprocess.Popen] = []

    # ---- set up / tear down -------------------------------------------------------------
    def __enter__(self) -> 'Link':
        why = check_allowed()
        if why:
            raise RuntimeError(f'cannot set up the emulated link: {why}')
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _setup(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix='laecips-link-'))
        for role in self.ROLES:
            _ip('netns', 'add', self.ns[role])
        log = open(self.dir / 'forwarder.log', 'wb')
        self.forwarder = subprocess.Popen(
            [sys.executable, '-m', 'laecips_eval.forwarder', '--tap-a', self.tap['edge'],
             '--tap-b', self.tap['cloud'], '--rate', str(self.spec.rate_bps),
             '--delay', str(self.spec.rtt_s / 2), '--jitter', str(self.spec.jitter_s),
             '--loss', str(self.spec.loss),
             '--queue-bytes', str(self.queue_bytes), '--mtu', str(self.mtu),
             '--stats', str(self.dir / 'stats.json')],
            stdout=subprocess.PIPE, stderr=log, start_new_session=True,
            stdin=subprocess.DEVNULL)
        log.close()
        line = self.forwarder.stdout.readline().decode().strip()
        if line != 'ready':
            err = (self.dir / 'forwarder.log').read_text(errors='replace')[-2000:]
            raise RuntimeError(f'forwarder did not start: {line!r} {err}')
        for role in self.ROLES:
            ns, tap = self.ns[role], self.tap[role]
            _ip('link', 'set', tap, 'netns', ns)
            _ip('-n', ns, 'link', 'set', 'lo', 'up')
            _ip('-n', ns, 'addr', 'add', f'{self.addr[role]}/24', 'dev', tap)
            _ip('-n', ns, 'link', 'set', tap, 'up', 'multicast', 'on')
            _ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', tap)
            (self.dir / f'fastdds_{role}.xml').write_text(
                profile(self.spec.rate_bps, role in self.paced))

    def close(self) -> None:
        """Stop processes in the namespaces and the forwarder, delete the namespaces."""
        for p in self.procs:
            _kill_group(p)
        for role in self.ROLES:
            r = subprocess.run(['ip', 'netns', 'pids', self.ns[role]], capture_output=True,
                               text=True)
            for pid in r.stdout.split():  # only processes we started can live there
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        if self.forwarder is not None and self.forwarder.poll() is None:
            self.forwarder.send_signal(signal.SIGTERM)
            try:
                self.forwarder.wait(5)
            except subprocess.TimeoutExpired:
                self.forwarder.kill()
                self.forwarder.wait()
        for role in self.ROLES:
            subprocess.run(['ip', 'netns', 'del', self.ns[role]], capture_output=True)

    # ---- use ----------------------------------------------------------------------------
    def env(self, role: str, base: dict | None = None) -> dict:
        """Return the environment for a DDS process in ``role``'s namespace."""
        env = dict(os.environ if base is None else base)
        env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'SUBNET'
        env.pop('ROS_LOCALHOST_ONLY', None)
        env.pop('ROS_STATIC_PEERS', None)
        # Under the name(s) the installed Fast DDS reads, or the UDP-only profile is unused.
        for var in dds.PROFILE_VARS:
            env.pop(var, None)
        env.update(dds.profile_env(self.dir / f'fastdds_{role}.xml', env))
        env['RMW_IMPLEMENTATION'] = env.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
        env['RMW_FASTRTPS_PUBLICATION_MODE'] = 'AUTO'  # the profile's publishMode applies
        return env

    def argv(self, role: str, argv: list[str]) -> list[str]:
        """Return ``argv`` wrapped to run in ``role``'s namespace."""
        return ['ip', 'netns', 'exec', self.ns[role], *argv]

    def popen(self, role: str, argv: list[str], env: dict | None = None,
              **kwargs) -> subprocess.Popen:
        """Start a process in ``role``'s namespace (stopped by :meth:`close`)."""
        kwargs.setdefault('start_new_session', True)
        kwargs.setdefault('stdin', subprocess.DEVNULL)
        p = subprocess.Popen(self.argv(role, argv), env=self.env(role, env), **kwargs)
        self.procs.append(p)
        return p

    def stats(self) -> dict:
        """Return the forwarder's counters: ``{'edge_to_cloud': {...}, 'cloud_to_edge': ...}``."""
        try:
            raw = json.loads((self.dir / 'stats.json').read_text())
        except (OSError, ValueError, TypeError):
            return {'edge_to_cloud': {}, 'cloud_to_edge': {}}
        return {'edge_to_cloud': raw['a_to_b'], 'cloud_to_edge': raw['b_to_a']}

    def held(self) -> dict:
        """
        Return the frames and bytes each direction holds, now and at most.

        ``{'edge_to_cloud': {'frames', 'bytes', 'peak_frames', 'peak_bytes'},
        'cloud_to_edge': {...}}``, empty dicts before the forwarder's first write.
        """
        try:
            raw = json.loads((self.dir / 'stats.json').read_text())['held']
        except (OSError, ValueError, TypeError, KeyError):
            return {'edge_to_cloud': {}, 'cloud_to_edge': {}}
        return {'edge_to_cloud': raw['a_to_b'], 'cloud_to_edge': raw['b_to_a']}

    def wait_stats(self, timeout: float = 1.0) -> dict:
        """Return counters written after now (the forwarder rewrites them every 0.2 s)."""
        t0 = time.time()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if json.loads((self.dir / 'stats.json').read_text())['time'] >= t0:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        return self.stats()


def _kill_group(p: subprocess.Popen) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGINT)
            p.wait(5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
