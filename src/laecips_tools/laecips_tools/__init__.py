# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Tools beside the runtime: benchmarks, downloads, factory training, the soak."""

from __future__ import annotations

import argparse
from pathlib import Path


def camvid_root(ap: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    """
    Return CamVid's root for a tool's ``--camvid``, or exit with the parser's error.

    Also applies ``--threads`` when the tool has it (0: torch's default), the same way for
    every tool that trains or benchmarks on CamVid.
    """
    from laecips_core import camvid as cv
    root = cv.find_root(args.camvid)
    if root is None:
        ap.error('CamVid not found: pass --camvid or set LAECIPS_CAMVID')
    if getattr(args, 'threads', 0):
        import torch
        torch.set_num_threads(args.threads)
    return root
