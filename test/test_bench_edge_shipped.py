# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
bench-edge's shipped-settings camera row: a 30 Hz 640x480 bgr8 camera into the shipped edge.

The camera runs in its own process; the edge starts from config/edge.yaml with the
shared-memory profile, as `laecips up` starts it. Short (3 s of camera): it checks the
row's accounting, not its speed; the figure (>= 99 % of frames masked) is the
benchmark's, measured on an idle machine (docs/bench).
"""

import json
import subprocess
import sys


def test_shipped_camera_row_accounts_for_every_frame(tmp_path):
    out = tmp_path / 'row.json'
    r = subprocess.run([sys.executable, '-m', 'laecips_tools.bench_edge',
                        '--only-shipped-camera', '--camera-seconds', '3', '--out', str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    row = json.loads(out.read_text())['shipped_camera']
    assert row['camera'].startswith('640x480 bgr8 at 30 Hz')
    assert row['dds_profile'].endswith('fastdds_shm.xml') and 'edge.yaml' in row['edge']
    assert row['sent'] >= 60 and row['masks_out'] > 0
    # Every frame published is masked, skipped, rejected or counted lost on the way.
    assert row['frames_in'] == row['masks_out'] + row['skipped'] + row['rejected']
    assert row['frames_in'] + row['camera_lost'] <= row['sent']
    assert 0 < row['masked_fraction'] <= 1
