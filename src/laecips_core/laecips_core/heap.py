# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Keep a long-running process's heap from keeping the memory it frees (glibc, Linux).

glibc serves blocks above its mmap threshold with their own mappings, returned to the
system when freed, and smaller ones from per-thread arenas. The threshold starts at 128 KiB
but rises (up to 32 MiB) after the first big mapped block is freed, so from then on the
trainer's images, labels and activations (hundreds of KiB to tens of MiB, one training
thread per robot) come from the arenas, where freed blocks of varying sizes fragment and
stay resident: in the 10-minute, 4-robot soak the trainer grew 6.8 % after warm-up while
holding a fixed number of pairs. Pinning the threshold keeps big blocks mapped, and a trim
after each candidate the trainer builds hands back what the arenas freed below it.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
# Bytes. Lower thresholds bound the heap more tightly but cost training speed: every
# activation between the threshold and 32 MiB is then mapped and zeroed afresh each step
# (one Fast-SCNN training step at 180x240, batch 4, one thread: 124-143 ms by default,
# 133-145 ms at 16-32 MiB, 178 ms at 4 MiB, 319-340 ms at 256 KiB). The trim after each
# candidate returns what the arenas freed below it.
THRESHOLD = 16 * 1024 * 1024


def _libc():
    if not sys.platform.startswith('linux'):
        return None
    try:
        libc = ctypes.CDLL('libc.so.6')
        return libc if hasattr(libc, 'mallopt') and hasattr(libc, 'malloc_trim') else None
    except OSError:  # not glibc (e.g. musl): nothing to tune
        return None


# glibc's own setting: when the operator set it, it wins (e.g. 262144 to bound the heap
# tighter at the cost of training speed).
ENV = 'MALLOC_MMAP_THRESHOLD_'


def pin_mmap_threshold(threshold: int = THRESHOLD) -> bool:
    """
    Serve blocks of ``threshold`` bytes or more by mmap from now on; True if it took.

    Does nothing (False) when ``MALLOC_MMAP_THRESHOLD_`` is set: glibc has applied it.
    """
    libc = _libc()
    if libc is None or os.environ.get(ENV):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold)) == 1)


def trim() -> bool:
    """Return the arenas' free memory to the system; True if some was released."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))


__all__ = ['ENV', 'THRESHOLD', 'pin_mmap_threshold', 'trim']
