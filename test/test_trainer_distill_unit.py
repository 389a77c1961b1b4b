# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The distillation core on synthetic data: replay buffer, gate, versions, rollback, worker."""

import threading
import zlib

import numpy as np
import pytest
import torch

from laecips_cloud.distill import TRAIN_PARTS, DistillConfig, Distiller, ReplayBuffer
from laecips_core import delta, models, weights

# No ROS in this module: its result is the same in every distro's venv (see .ci/run).
pytestmark = pytest.mark.ros_free

SIZE = (64, 96)


def _meta() -> weights.WeightsMeta:
    return weights.WeightsMeta(input_size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                               version=3, training_data='random init')


def _pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Make a frame whose classes are colours: sky-grey top, road-purple bottom, a car block."""
    h, w = 96, 128
    rgb = np.zeros((h, w, 3), np.uint8)
    lab = np.full((h, w), 11, np.uint8)
    split = int(rng.integers(30, 60))
    rgb[:split], lab[:split] = (128, 128, 128), 0
    rgb[split:], lab[split:] = (128, 64, 128), 3
    x = int(rng.integers(0, w - 40))
    rgb[split - 10:split + 20, x:x + 40], lab[split - 10:split + 20, x:x + 40] = (64, 0, 128), 8
    noise = rng.integers(-20, 20, rgb.shape)
    return np.clip(rgb.astype(int) + noise, 0, 255).astype(np.uint8), lab


def test_replay_buffer_keeps_recent_and_some_old():
    buf = ReplayBuffer(capacity=20, recent_fraction=0.75, seed=0)
    for i in range(1000):
        buf.add(i)
    items = buf.items()
    assert len(buf) == 20 and len(items) == 20
    assert items[-15:] == list(range(985, 1000))  # the newest 15, in order
    old = items[:5]
    assert all(i < 985 for i in old) and min(old) < 500  # reservoir spans the history
    s = buf.sample(8, np.random.default_rng(0))
    assert len(s) == 8 and len(set(s)) == 8
    small = ReplayBuffer(capacity=4)
    small.add('a')
    assert small.sample(3, np.random.default_rng(0)) == ['a'] * 3


def test_gate_versions_commit_and_rollback():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    meta = _meta()
    state = models.create('fastscnn', 11).state_dict()
    cfg = DistillConfig(lr=3e-3, batch=4, steps_per_round=15, min_frames=4, val_fraction=0.25,
                        gate_margin=0.02, gate_metric='pixel_acc', seed=0)
    d = Distiller(state, meta, cfg)
    where = [d.add(*_pair(rng), seq=i) for i in range(16)]
    assert where.count('val') == 4 and d.ready()
    before = d.active_agreement()['pixel_acc']
    cand = None
    for _ in range(6):
        cand = d.round()
        if cand is not None:
            break
    assert cand is not None, d.last_round
    assert cand.version == 4 and cand.val_after['pixel_acc'] > before + 0.02
    sd, m = weights.from_bytes(cand.data, cand.sha256)
    assert m.version == 4 and m.input_size == SIZE
    # While a candidate is pending no second one is emitted, however good the student.
    assert d.round(1) is None or d.pending is cand
    d.commit(cand)
    assert d.active_version == 4 and d.pending is None
    assert d.active_agreement()['pixel_acc'] == pytest.approx(cand.val_after['pixel_acc'])
    back = d.rollback()
    assert back is not None and back.version == 5
    assert all(torch.equal(back.state[k], v) for k, v in state.items())  # version 3 again
    d.commit(back)
    assert d.active_version == 5 and d.rollback() is not None
    d.ensure_version_above(9)
    d.pending = None
    assert d._next_version == 10


def test_background_worker_emits_a_candidate():
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    got = threading.Event()
    seen = []
    cfg = DistillConfig(lr=3e-3, batch=4, steps_per_round=10, min_frames=4, val_fraction=0.25,
                        gate_margin=-1.0, seed=1)  # the gate always passes
    d = Distiller(models.create('fastscnn', 11).state_dict(), _meta(), cfg,
                  on_candidate=lambda c: (seen.append(c), got.set()))
    d.start()
    try:
        for i in range(8):
            d.add(*_pair(rng), seq=i)
        assert got.wait(60), d.last_round
    finally:
        d.stop()
    assert seen[0].version == 4 and len(seen) == 1  # pending blocks a second one


def test_a_frozen_part_is_bit_identical_and_leaves_the_delta_push():
    torch.manual_seed(2)
    rng = np.random.default_rng(2)
    state = models.create('fastscnn', 11).state_dict()
    pairs = [_pair(rng) for _ in range(4)]
    sizes = {}
    for spec in ('all', 'decoder'):
        d = Distiller(state, _meta(), DistillConfig(batch=2, min_frames=1, val_fraction=0.0,
                                                    train_params=spec))
        for i, p in enumerate(pairs):
            d.add(*p, seq=i)
        assert np.isfinite(d.train_steps(3))
        new = d._snapshot()
        moved = {k for k in state if not torch.equal(new[k], state[k])}
        blob = delta.encode(new, state, 'delta_int8')
        sizes[spec] = len(blob)
        sent = {k.split('::')[0] for k in weights.from_bytes(zlib.decompress(blob))[0]}
        assert sent == moved  # unchanged tensors cost nothing but their absence
        if spec == 'decoder':
            # Encoder weights, BN scales and statistics, BN step counters: all untouched,
            # weight decay included; every decoder tensor trained.
            assert moved and all(k.startswith(TRAIN_PARTS['decoder']) for k in moved)
            assert all(k in moved for k, v in state.items()
                       if k.startswith('classifier.') and v.is_floating_point())
    full = len(weights.to_bytes(state, _meta()))
    assert sizes['decoder'] < 0.05 * full < 0.15 * full < sizes['all']
    with pytest.raises(ValueError, match='train_params'):
        Distiller(state, _meta(), DistillConfig(train_params='decoder,encoder'))


def _soft(lab: np.ndarray, stride: int = 8, classes: int = 11) -> np.ndarray:
    """Class probabilities (uint8) of a label map on a grid ``stride`` times coarser."""
    onehot = torch.nn.functional.one_hot(torch.from_numpy(lab).long().clamp(max=classes),
                                         classes + 1)[..., :classes].permute(2, 0, 1).float()
    coarse = torch.nn.functional.avg_pool2d(onehot[None], stride)[0]
    return (coarse * 255).round().to(torch.uint8).numpy()


def test_soft_targets_follow_the_geometry_and_drive_the_loss():
    torch.manual_seed(2)
    rng = np.random.default_rng(2)
    pairs = [_pair(rng) for _ in range(12)]
    # Hard labels that say road everywhere; soft targets with the true layout.
    cfg = DistillConfig(lr=5e-3, batch=4, steps_per_round=1, min_frames=4, val_fraction=0.0,
                        seed=2, train_params='all', class_balance=False, soft_weight=1.0)
    d = Distiller(models.create('fastscnn', 11).state_dict(), _meta(), cfg)
    for i, (rgb, lab) in enumerate(pairs):
        d.add(rgb, np.full_like(lab, 3), seq=i, soft=_soft(lab))
    # Zoom, crop and flip move the soft targets with the image: their argmax is the layout.
    sample = d.buffer.items()[:4]
    x, y, wt, soft = d._batch(sample)
    assert soft is not None and soft.shape == (4, 11, *SIZE)
    assert (y == 3).all()  # the hard labels
    assert set(soft.argmax(1).unique().tolist()) >= {0, 3, 8}
    d.train_steps(80)
    truth = [lab for _, lab in pairs]
    model = d.build(d.model.state_dict())
    with torch.no_grad():
        pred = [p for p in d.predict(model, [r for r, _ in pairs])[0]]
    acc = np.mean([(p == resize(t)).mean() for p, t in zip(pred, truth)])
    # Trained on the soft targets alone (weight 1): the layout, not "road everywhere".
    assert acc > 0.8, acc
    with pytest.raises(ValueError, match='soft targets'):
        d.add(*pairs[0], soft=np.zeros((3, 4, 4), np.uint8))


def resize(lab: np.ndarray) -> np.ndarray:
    from laecips_cloud.distill import resize_label
    return resize_label(lab, SIZE)
