# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The robust teacher (#20): corruptions, its training, the labeller serving it, the benchmark."""

import json

import numpy as np
import pytest
import torch

from laecips_cloud.labellers import create
from laecips_core import camvid as cv
from laecips_core import corruptions, models, weights
from laecips_tools import bench_corruptions
from laecips_tools.train_factory import train

# No ROS in this module: its result is the same in every distro's venv (see .ci/run).
pytestmark = pytest.mark.ros_free

TINY = {'ltd': [8, 12, 16], 'gfe': [16, 16, 24], 'blocks': [1, 1, 1], 'expand': 2,
        'fuse': 16}


def _frame() -> np.ndarray:
    rng = np.random.default_rng(1)
    rgb = np.zeros((120, 160, 3), np.uint8)
    rgb[:60] = (150, 170, 200)  # sky
    rgb[60:] = (90, 80, 90)  # road
    return np.clip(rgb + rng.integers(-20, 20, rgb.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize('kind', sorted(corruptions.KINDS))
def test_each_corruption_is_deterministic_and_graded(kind):
    rgb = _frame()
    a = corruptions.corrupt(rgb, kind, 2, seed=7)
    assert np.array_equal(a, corruptions.corrupt(rgb, kind, 2, seed=7))
    assert a.shape == rgb.shape and a.dtype == np.uint8
    # A higher severity moves the image further from the clean one.
    dist = [np.abs(corruptions.corrupt(rgb, kind, s, seed=7).astype(int) - rgb).mean()
            for s in corruptions.SEVERITIES]
    assert 0 < dist[0] < dist[1] < dist[2], dist


def test_unknown_corruption_and_bad_image_are_refused():
    with pytest.raises(ValueError, match='unknown corruption'):
        corruptions.corrupt(_frame(), 'snowstorm', 1, 0)
    with pytest.raises(ValueError, match='uint8'):
        corruptions.corrupt(_frame().astype(np.float32), 'noise', 1, 0)


def test_augment_keeps_the_batch_in_range_and_changes_it():
    x = torch.rand(6, 3, 48, 64)
    y = corruptions.augment(x, torch.Generator().manual_seed(0), p=1.0)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert all(not torch.equal(a, b) for a, b in zip(x, y))


def _save_tiny(path, dtype=torch.float16) -> weights.WeightsMeta:
    model = models.create('fastscnn', 11, **TINY)
    meta = weights.WeightsMeta(arch='fastscnn', arch_cfg=TINY, input_size=(48, 64),
                               training_data='random init (test)')
    weights.save(path, {k: (v.to(dtype) if v.is_floating_point() else v)
                        for k, v in model.state_dict().items()}, meta)
    return meta


def test_teacher_labeller_serves_an_fp16_project_model(tmp_path):
    path = tmp_path / 'teacher.safetensors'
    _save_tiny(path)
    lab = create('teacher', weights=str(path), device='cpu')
    (ids, conf), = lab.label_with_confidence([_frame()])
    assert ids.shape == (120, 160) and ids.dtype == np.uint8 and int(ids.max()) < 11
    assert conf.shape == (120, 160) and 0 < float(conf.min()) <= float(conf.max()) <= 1
    assert lab.name == 'teacher' and lab.class_map.num_classes == 11


def test_teacher_labeller_refuses_files_that_do_not_match(tmp_path):
    bad = tmp_path / 'bad.safetensors'
    bad.write_bytes(b'PK\x03\x04 not safetensors')
    with pytest.raises(weights.WeightsError):
        create('teacher', weights=str(bad), device='cpu')
    path = tmp_path / 'other.safetensors'
    meta = _save_tiny(path)
    state, _ = weights.load(path)
    meta.arch_cfg = {**TINY, 'fuse': 24}  # tensors of one size, metadata of another
    weights.save(path, state, meta)
    with pytest.raises(weights.WeightsError, match='shape'):
        create('teacher', weights=str(path), device='cpu')
    with pytest.raises(FileNotFoundError, match='train-teacher'):
        create('teacher', weights=str(tmp_path / 'missing.safetensors'), device='cpu')


def test_training_never_sees_the_dusk_drive_and_uses_the_augmentation(camvid):
    seen = []

    def augment(x):
        seen.append(x.shape)
        return corruptions.augment(x, torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as train_teacher runs (a second thread spins on CPU time)
    try:
        model, meta, info = train(camvid, 0.02, batch=2, max_wall_minutes=0.5,
                                  log=lambda s: None, arch_cfg=TINY, input_size=(90, 120),
                                  crop=(64, 96), scale=(0.3, 0.4), augment=augment,
                                  role='test teacher', max_frames=16)
    finally:
        torch.set_num_threads(threads)
    assert cv.DUSK not in info['train_sequences'] and info['train_sequences']
    assert seen and seen[0] == (2, 3, 64, 96) and info['steps'] == len(seen)
    assert meta.arch_cfg == TINY and tuple(meta.input_size) == (90, 120)


def test_bench_corruptions_scores_each_kind_and_severity(camvid, tmp_path, capsys):
    out = tmp_path / 'c.json'
    teacher = tmp_path / 'teacher.safetensors'
    _save_tiny(teacher)
    assert bench_corruptions.main(['--models', 'edge,teacher', '--kinds', 'noise,haze',
                                   '--every', '60', '--teacher', str(teacher),
                                   '--out', str(out)]) == 0
    d = json.loads(out.read_text())
    rows = {r['name']: r for r in d['rows']}
    assert set(rows) == {'edge', 'teacher'} and d['frames']['day'] >= 2
    for r in rows.values():
        assert set(r['miou']) == {'noise', 'haze'}
        assert all(set(v) == {'1', '2', '3'} for v in r['miou'].values())
    # The factory edge is a trained model: far above the random-weight one when clean.
    assert rows['edge']['clean'] > rows['teacher']['clean'] + 10
    # No ESPNet-C row: only the bars the rows allow are reported.
    assert set(d['checks']) == {'teacher_dusk_50', 'severity2_teacher_beats_edge_by_10'}
    assert d['checks']['severity2_teacher_beats_edge_by_10']['ok'] is False
