# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""sam_download offline: a tiny checkpoint served from a file:// URL, hash checks, loading."""

import hashlib
import subprocess
import sys

import numpy as np
import torch

from laecips_cloud.labellers import Labeller, create
from laecips_cloud.labellers.sam_ssa import build_tiny_sam


class _Zeros(Labeller):
    name = 'zeros'

    def label(self, images, edge_labels=None):
        return [np.zeros(im.shape[:2], np.uint8) for im in images]


def _run(*args):
    return subprocess.run([sys.executable, '-m', 'laecips_tools.sam_download', *args],
                          capture_output=True, text=True, timeout=120)


def test_download_file_url_verify_and_load(tmp_path):
    src = tmp_path / 'mirror' / 'sam_tiny_test.pth'
    src.parent.mkdir()
    torch.save(build_tiny_sam(seed=1).state_dict(), src)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = tmp_path / 'ckpt'

    bad = _run('--model', 'vit_b', '--url', src.as_uri(), '--dir', str(dest), '--sha256',
               '0' * 64, '--quiet')
    assert bad.returncode == 1 and 'mismatch' in bad.stderr
    assert not list(dest.glob('*'))  # nothing left behind, not even the .part file

    ok = _run('--model', 'vit_b', '--url', src.as_uri(), '--dir', str(dest), '--sha256', sha)
    assert ok.returncode == 0, ok.stderr
    assert f'sha256 {sha}' in ok.stdout and 'verified' in ok.stdout
    got = dest / src.name
    assert got.read_bytes() == src.read_bytes()

    again = _run('--model', 'vit_b', '--url', src.as_uri(), '--dir', str(dest))
    assert again.returncode == 0 and 'already present' in again.stdout and sha in again.stdout

    # The downloaded checkpoint loads into the official SAM modules and labels a frame.
    lab = create('sam_ssa', model_type='tiny', checkpoint=str(got), points_per_side=2,
                 semantic=_Zeros(), device='cpu')
    ref = build_tiny_sam(seed=1).state_dict()
    loaded = lab.predictor.model.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in loaded.items())
    out = lab.label([np.zeros((32, 48, 3), np.uint8)])
    assert out[0].shape == (32, 48)


def test_unreachable_url_fails_cleanly(tmp_path):
    r = _run('--url', (tmp_path / 'missing.pth').as_uri(), '--dir', str(tmp_path), '--quiet')
    assert r.returncode == 2 and 'could not download' in r.stderr
