# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Run a set of node processes like ``ros2 launch`` does, for pip-installed ROS 2.

Prefixes and colours each process's output, stops everything on Ctrl-C / SIGTERM or as soon
as one process exits (saying which and why), and returns an exit code that tells: 0 after a
requested shutdown with every node exiting cleanly, else the first failing node's code.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO

COLOURS = ('\033[36m', '\033[35m', '\033[33m', '\033[32m', '\033[34m', '\033[31m')
RESET = '\033[0m'


@dataclass
class Proc:
    """A started process and its label."""

    label: str
    argv: list[str]
    popen: subprocess.Popen | None = None


class Runner:
    """Start processes, relay their output, and stop them all together."""

    def __init__(self, out: IO[str] | None = None, colour: bool | None = None):
        self.out = out or sys.stdout
        self.colour = self.out.isatty() if colour is None else colour
        self.procs: list[Proc] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.reason = ''

    def add(self, label: str, argv: list[str]) -> None:
        """Register a process to start."""
        self.procs.append(Proc(label, argv))

    def _say(self, label: str, line: str, idx: int) -> None:
        prefix = f'[{label}] '
        if self.colour:
            prefix = COLOURS[idx % len(COLOURS)] + prefix + RESET
        with self._lock:
            self.out.write(prefix + line.rstrip('\n') + '\n')
            self.out.flush()

    def _relay(self, p: Proc, idx: int) -> None:
        for line in p.popen.stdout:
            self._say(p.label, line, idx)

    def run(self, env: dict | None = None, until: threading.Event | None = None) -> int:
        """Start all processes, wait until one exits or a stop is requested; return a code."""
        old = {s: signal.signal(s, lambda *_: self._stop.set())
               for s in (signal.SIGINT, signal.SIGTERM)} \
            if threading.current_thread() is threading.main_thread() else {}
        relays = []
        try:
            for i, p in enumerate(self.procs):
                p.popen = subprocess.Popen(p.argv, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True, bufsize=1,
                                           env=env, start_new_session=True,
                                           stdin=subprocess.DEVNULL)
                t = threading.Thread(target=self._relay, args=(p, i), daemon=True)
                t.start()
                relays.append(t)
                self._say('laecips', f'started {p.label} (pid {p.popen.pid})', i)
            dead = None
            while not self._stop.is_set() and not (until and until.is_set()):
                dead = next((p for p in self.procs if p.popen.poll() is not None), None)
                if dead:
                    break
                time.sleep(0.1)
            if dead:
                self.reason = f'{dead.label} exited with code {dead.popen.returncode}'
                self._say('laecips', f'{self.reason}; shutting down the others', 5)
            code = self.shutdown()
            for t in relays:
                t.join(2.0)
            if dead:
                return dead.popen.returncode or 1
            return code
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def shutdown(self, timeout: float = 10.0) -> int:
        """SIGINT every live process group, then SIGKILL what is left; return a code."""
        for p in self.procs:
            if p.popen and p.popen.poll() is None:
                _signal(p.popen, signal.SIGINT)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            if not p.popen:
                continue
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._say('laecips', f'{p.label} did not stop in {timeout:.0f} s: killing', 5)
                _signal(p.popen, signal.SIGKILL)
                p.popen.wait()
        bad = [p for p in self.procs if p.popen and p.popen.returncode not in (0, -2, 130)]
        return bad[0].popen.returncode if bad else 0


def _signal(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass
