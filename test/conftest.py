# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Shared fixtures: nodes as separate OS processes over real DDS, confined to this machine.

Each pytest run gets its own ROS_DOMAIN_ID and LOCALHOST discovery, every process started
through ``procs`` is killed with its process group at teardown (pass or fail), and a
failing test prints the tail of each process's log.
"""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable

import pytest

from laecips_core.nodes import param_args

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _domain_id() -> int:
    # Fast DDS allows 0..232; keep clear of the default 0 and of other runs on this machine.
    if 'LAECIPS_TEST_DOMAIN' in os.environ:
        return int(os.environ['LAECIPS_TEST_DOMAIN'])
    return 1 + (os.getpid() % 200)


# Set before any rclpy import in this process, and inherited by every child process.
os.environ['ROS_DOMAIN_ID'] = str(_domain_id())
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.pop('ROS_STATIC_PEERS', None)
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('PYTHONUNBUFFERED', '1')
os.environ.setdefault('RCUTILS_COLORIZED_OUTPUT', '0')


def wait_until(cond: Callable[[], object], timeout: float, what: str,
               period: float = 0.02) -> object:
    """Poll ``cond`` until it returns a truthy value; fail the test with ``what`` on timeout."""
    value = wait_until_or_none(cond, timeout, period)
    if not value:
        pytest.fail(f'timed out after {timeout:.0f} s waiting for {what}')
    return value


def wait_until_or_none(cond: Callable[[], object], timeout: float,
                       period: float = 0.02) -> object:
    """Poll ``cond`` for up to ``timeout`` s; return its truthy value, or None (no failure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() <= deadline:
        value = cond()
        if value:
            return value
        time.sleep(period)
    return None


class Procs:
    """Start node processes for one test and always stop them."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.items: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        """Start ``argv`` (e.g. ``[sys.executable, '-m', 'laecips_edge.edge_node', ...]``)."""
        log = self.logdir / f'{name}.log'
        full_env = dict(os.environ, **(env or {}))
        with open(log, 'wb') as out:
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                 start_new_session=True, stdin=subprocess.DEVNULL)
        self.items.append((name, p, log))
        return p

    def node(self, name: str, module: str, *args: str, params: dict | None = None,
             ros_args: list[str] | None = None, env: dict | None = None) -> subprocess.Popen:
        """Start a node module with ``-p name:=value`` parameters and extra ROS arguments."""
        argv = [sys.executable, '-m', module, *args, '--ros-args']
        argv += param_args(params or {})
        argv += ros_args or []
        return self.start(name, argv, env)

    def log(self, name: str) -> str:
        """Return what a process has printed so far."""
        for n, _, path in self.items:
            if n == name:
                return path.read_text(errors='replace')
        raise KeyError(name)

    def assert_alive(self) -> None:
        """Fail if any started process has exited."""
        for name, p, log in self.items:
            if p.poll() is not None:
                pytest.fail(f'{name} exited with {p.returncode}:\n{_tail(log)}')

    def stop(self, name: str, timeout: float = 10.0) -> int:
        """Stop one process with SIGINT (then SIGKILL) and return its exit code."""
        for n, p, _ in self.items:
            if n == name:
                return _stop(p, timeout)
        raise KeyError(name)

    def close(self, failed: bool) -> None:
        for name, p, log in self.items:
            _stop(p, 5.0)
            if failed:
                sys.stderr.write(f'\n----- {name} (exit {p.returncode}) -----\n{_tail(log)}\n')


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors='replace')[-n:]
    except OSError:
        return '(no log)'


def _stop(p: subprocess.Popen, timeout: float) -> int:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGINT)
            p.wait(timeout)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
    else:
        try:  # children left in the group (e.g. a node's helpers)
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return p.returncode


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, 'rep_' + rep.when, rep)


@pytest.fixture
def procs(request, tmp_path):
    """Start node processes; all are stopped at teardown, and logs printed on failure."""
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        rep = getattr(request.node, 'rep_call', None)
        p.close(failed=bool(rep and rep.failed))


class RosNode:
    """An rclpy node in the test process, spun by a background executor."""

    def __init__(self, name: str):
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def wait_for_subscribers(self, publisher, n: int = 1, timeout: float = 30.0) -> None:
        """Wait until ``publisher`` has matched ``n`` subscriptions."""
        wait_until(lambda: publisher.get_subscription_count() >= n, timeout,
                   f'{n} subscriber(s) on {publisher.topic_name}')

    def wait_heard(self, *subscriptions, timeout: float = 30.0) -> None:
        """Wait until every one of ``subscriptions`` is matched to a writer."""
        # The graph lists a writer before it has matched a reader, and what a volatile writer
        # sends in between is lost: a test that counts a node's outputs waits for this first.
        wait_until(lambda: all(s.get_publisher_count() >= 1 for s in subscriptions), timeout,
                   'writers matched to ' + ', '.join(s.topic_name for s in subscriptions))

    def wait_for_publishers(self, topic: str, n: int = 1, timeout: float = 30.0) -> None:
        """Wait until ``topic`` has ``n`` publishers."""
        wait_until(lambda: self.node.count_publishers(topic) >= n, timeout,
                   f'{n} publisher(s) on {topic}')

    def call(self, client, request, timeout: float = 30.0):
        """Call a service, waiting for it first; return the response."""
        wait_until(lambda: client.service_is_ready(), timeout,
                   f'service {client.srv_name}')
        fut = client.call_async(request)
        wait_until(fut.done, timeout, f'response from {client.srv_name}')
        return fut.result()

    def close(self) -> None:
        import rclpy
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(5.0)


@pytest.fixture
def rosnode():
    """Yield an rclpy node in the test's ROS domain, spinning in the background."""
    n = RosNode(f'test_{os.getpid()}_{time.monotonic_ns() % 10**9}')
    try:
        yield n
    finally:
        n.close()


@pytest.fixture(scope='session')
def camvid() -> Path:
    """CamVid root; skips, saying where it was looked for, when the data is missing."""
    from laecips_core import camvid as cv
    root = cv.find_root()
    if root is None:
        pytest.skip('CamVid not found: set LAECIPS_CAMVID or put the shared folder at '
                    f'{ROOT.parent / "shared"} (see README, "Data")')
    return root


@pytest.fixture(scope='session')
def shared_models() -> Path:
    """Return the shared reference weights folder; skip with a clear message when missing."""
    d = Path(os.environ.get('LAECIPS_SHARED', ROOT.parent / 'shared')) / 'models'
    if not (d / 'espnet_c_camvid.pth').is_file():
        pytest.skip(f'ESPNet-C weights not found in {d}: set LAECIPS_SHARED or put the '
                    'shared folder beside the project')
    return d


@pytest.fixture
def tmpdir_path() -> Path:
    """Yield a temporary folder removed afterwards (for bags, weights, state)."""
    with tempfile.TemporaryDirectory(prefix='laecips-test-') as d:
        yield Path(d)
