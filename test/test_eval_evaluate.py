# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
A short evaluation end to end: the real edge node and cloud bridge as processes over DDS.

Nine frames (three per phase), two systems (edge-only, cloud-only), small inputs. Asserts
accounting, not accuracy: every frame is scored, the edge-only system uploads nothing, the
cloud-only one uploads every frame it segmented and gets labels back, and the report files
are written.
"""

import json
import os
import subprocess
import sys

import pytest


def test_short_evaluation_edge_only_and_cloud_only(camvid, shared_models, tmp_path):
    out = tmp_path / 'eval'
    argv = [sys.executable, '-m', 'laecips_eval.evaluate', '--root', str(camvid),
            '--systems', 'edge_only,cloud_only', '--per-phase', '3', '--rate', '2',
            '--tiny', '--deadline', '5', '--out', str(out), '--overlays', '2']
    env = dict(os.environ, LAECIPS_SHARED=str(shared_models.parent))
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    logs = ''.join(f'\n--- {p.name}\n{p.read_text(errors="replace")[-1500:]}'
                   for p in sorted((out / 'logs').glob('*.log'))) if out.exists() else ''
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:] + logs
    res = json.loads((out / 'results.json').read_text())
    rows = res['rows']
    assert set(rows) == {'edge-only', 'cloud-only'} and res['frames'] == 9
    edge, cloud = rows['edge-only'], rows['cloud-only']
    for row in (edge, cloud):
        assert row['frames'] == 9 and row['frames_day'] == row['frames_dusk'] == 3
        assert sum(row[f'source_{s}'] for s in ('cloud', 'edge', 'last', 'none')) == 9
        assert row['source_none'] == 0 and 0 <= row['miou_all'] <= 100
        assert row['latency_n'] == 9 - row['source_last']
    assert edge['upload_ratio'] == 0 and edge['bytes_up_per_frame'] == 0
    segmented = 9 - cloud['source_last']
    assert cloud['uploads'] == segmented and cloud['bytes_up_per_frame'] > 1000
    assert cloud['bytes_down_per_frame'] > 100 and cloud['source_cloud'] >= 1
    run = json.loads((out / 'runs' / 'cloud_only.json').read_text())
    assert all(len(f['features']) == 3 for f in run['frames'] if f['uploaded'])
    table = (out / 'table.md').read_text()
    assert '| edge-only |' in table and '| cloud-only |' in table
    for name in ('miou_over_stream.png', 'upload_over_stream.png', 'latency_cdf.png'):
        assert (out / name).stat().st_size > 1000
    assert len(list((out / 'overlays').glob('*.png'))) >= 2


@pytest.mark.parametrize('bad', [['--systems', 'nope'], ['--link', 'fast']])
def test_evaluate_rejects_bad_arguments(bad, tmp_path):
    r = subprocess.run([sys.executable, '-m', 'laecips_eval.evaluate', '--out',
                        str(tmp_path / 'x'), *bad], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0


def test_evaluate_a_bag_takes_its_phases_and_rate(tmp_path):
    # Any phase names, at the bag's own rate: reported per phase, with the rate it played at.
    from test_eval_bags import write_phased_bag
    phases = ['sun', 'sun', 'rain_adapt', 'rain', 'rain']
    write_phased_bag(tmp_path / 'bag', phases, rate=4.0)
    out = tmp_path / 'eval'
    argv = [sys.executable, '-m', 'laecips_eval.evaluate', '--bag', str(tmp_path / 'bag'),
            '--systems', 'edge_only', '--tiny', '--deadline', '2', '--out', str(out)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    res = json.loads((out / 'results.json').read_text())
    assert res['frames'] == 5 and res['rate'] == 4.0
    row = res['rows']['edge-only']
    assert row['phases'] == ['sun', 'rain_adapt', 'rain']
    assert row['frames_sun'] == 2 and row['frames_rain'] == 2 and row['frames_scoring'] == 2
    assert row['frames_adapt'] == 1 and row['frames_clean'] == 2
    table = (out / 'table.md').read_text()
    assert '5 frames at 4 Hz' in table and 'rain (scoring)' in table
    assert 'rain_adapt (adaptation)' in table
