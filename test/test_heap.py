# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The trainer's heap settings (laecips_core.heap): freed frame-sized blocks leave the process."""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.ros_free,
              pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc only')]

# Frame-sized blocks, each followed by a small survivor (as pairs and their metadata are),
# after glibc has raised its mmap threshold by freeing one big block: the trainer's pattern.
PROBE = textwrap.dedent("""
    import sys
    import numpy as np
    from laecips_core import heap

    def rss():
        return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20

    if sys.argv[1] in ('pin', 'trainer'):  # pin: below the blocks; trainer: its default
        assert heap.pin_mmap_threshold(256 * 1024 if sys.argv[1] == 'pin' else heap.THRESHOLD)
    big = np.ones(8 << 20, np.uint8)
    del big
    r0 = rss()
    keep, tmp = [], []
    for i in range(200):
        tmp.append(np.ones(1 << 20, np.uint8))
        keep.append(np.full(64, i, np.int64))
    del tmp
    if sys.argv[1] == 'trainer':
        assert heap.trim()
    print(rss() - r0)
""")


def _kept(mode: str, env: dict | None = None) -> float:
    environ = {k: v for k, v in os.environ.items() if k != 'MALLOC_MMAP_THRESHOLD_'}
    out = subprocess.run([sys.executable, '-c', PROBE, mode], capture_output=True, text=True,
                         timeout=60, check=True, env={**environ, **(env or {})})
    return float(out.stdout.strip())


def test_freed_frames_go_back_to_the_system_with_a_low_threshold_or_the_trainers_trim():
    assert _kept('none') > 150  # MiB of the 200 freed still resident: glibc's default
    assert _kept('pin') < 20  # blocks above a pinned threshold are unmapped when freed
    assert _kept('trainer') < 20  # the trainer's threshold is higher: its trim hands them back
    # glibc's own variable, set by an operator, is glibc's to apply: the code leaves it.
    assert _kept('none', {'MALLOC_MMAP_THRESHOLD_': str(256 * 1024)}) < 20
    with pytest.raises(subprocess.CalledProcessError):  # pin_mmap_threshold() says False
        _kept('pin', {'MALLOC_MMAP_THRESHOLD_': str(256 * 1024)})
