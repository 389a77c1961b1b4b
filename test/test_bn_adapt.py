# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Test-time BatchNorm adaptation: the adapter, its guards, the engine, and the edge over DDS."""

import math
import threading

from conftest import wait_until
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
import torch

from laecips_core import camvid as cv
from laecips_core import codecs, models, weights
from laecips_core.bn_adapt import HarmCheck, StatsAdapter, agreement
from laecips_core.metrics import confusion, miou
from laecips_edge import engine
from laecips_edge.factory import factory_weights
from laecips_msgs.msg import EdgeStats, HardFrame


def _factory():
    sd, meta = weights.load(factory_weights())
    model = models.create(meta.arch, meta.num_classes, **meta.arch_cfg)
    model.load_state_dict(sd)
    return model.eval(), sd, meta


def _x(rgb: np.ndarray, meta) -> torch.Tensor:
    seg = engine.Segmenter.__new__(engine.Segmenter)  # preprocess only needs these two
    seg.options, seg.device = engine.Options(channels_last=False), torch.device('cpu')
    return seg.preprocess(rgb, meta)


def test_adapter_measures_a_shift_and_resets_on_collapse():
    model, sd, meta = _factory()
    rng = np.random.default_rng(0)
    h, w = meta.input_size
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(6)]
    ad = StatsAdapter(model, _x(frames[0], meta), momentum=0.2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert ad.layers and ad.shift() == 0.0
    for f in frames:  # far darker than anything the factory model was trained on
        assert ad.observe(_x((f * 0.15).astype(np.uint8), meta))
    dark = ad.shift()
    assert dark > 0.05 and ad.steps == 6 and ad.sane()
    # The model it was given is untouched; apply() lays the adapted statistics over a copy.
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    lay = ad.apply(sd)
    name = ad.layers[0][0]
    assert not torch.equal(lay[f'{name}.running_mean'], sd[f'{name}.running_mean'])
    assert torch.equal(lay[f'{name}.weight'], sd[f'{name}.weight'])
    # A frame that makes the statistics non-finite resets them to the model's own.
    bad = _x(frames[0], meta)
    bad[0, 0, 0, 0] = math.inf
    assert not ad.observe(bad)
    assert ad.steps == 0 and ad.resets == 1 and ad.shift() == 0.0


def test_harm_check_switches_off_and_on_with_hysteresis():
    h = HarmCheck(window=4, margin=0.01)
    assert h.helps
    assert not any(h.add(0.80, 0.85) for _ in range(3))  # window not full: no verdict
    assert h.add(0.80, 0.85) and not h.helps and h.trips == 1
    assert not h.add(0.86, 0.85)  # one better label does not outweigh the window
    assert not h.add(math.nan, 0.85)  # unscorable labels are ignored
    for _ in range(3):
        changed = h.add(0.95, 0.85)
    assert changed and h.helps
    with pytest.raises(ValueError):
        HarmCheck(window=0)
    label = np.array([[0, 1], [2, 11]], np.uint8)
    assert agreement(np.array([[0, 1], [3, 3]], np.uint8), label, 11) == pytest.approx(2 / 3)
    assert math.isnan(agreement(label, np.full((2, 2), 11, np.uint8), 11))


def _run(seg, frames):
    cm, adapted = 0, []
    for f in frames:
        r = seg.infer(f.rgb())
        assert seg.settle()  # observed on its own thread: wait, so the test is repeatable
        cm = cm + confusion(r.mask, f.gt())
        adapted.append(r.adapted)
    return miou(cm), adapted


def test_engine_adapts_at_dusk_not_by_day_and_restarts_on_push(camvid):
    sd, meta = weights.load(factory_weights())
    opts = engine.Options(bn_momentum=0.05, bn_period=0.0, bn_refresh=4)
    seg = engine.Segmenter(meta, sd, opts)
    seg.set_base(meta, sd)
    static = engine.Segmenter(meta, sd)
    day = cv.frames(camvid, 'test', (cv.DAY_TEST,))[:24]
    _, adapted = _run(seg, day)
    assert not any(adapted) and seg.adaptation['shift'] < opts.bn_min_shift
    dusk = cv.frames(camvid, 'train', (cv.DUSK,))[:40]
    _run(seg, dusk[:32])
    assert seg.adaptation['serving'] and seg.adaptation['shift'] >= opts.bn_min_shift
    # On the dusk frames that follow, adapted statistics beat the model's own (no labels).
    got, adapted = _run(seg, dusk[32:])
    ref, _ = _run(static, dusk[32:])
    assert any(adapted) and got > ref + 0.02, (got, ref)
    # A push restarts from the pushed statistics: nothing adapted answers until re-estimated.
    seg.swap(sd, 2)
    assert not seg.adaptation['serving'] and not seg.infer(dusk[0].rgb()).adapted
    # Without trusted labels the edge answers with the base model: adapted on the robot too.
    seg.base_only = True
    res = []
    for f in dusk[:16]:
        res.append(seg.infer(f.rgb()))
        assert seg.settle()
    assert all(r.expert == 'base' and r.version == 1 for r in res) and res[-1].adapted


def test_edge_node_reports_adaptation_over_dds(procs, rosnode, camvid):
    procs.node('edge', 'laecips_edge.edge_node', params={
        'image_qos': 'reliable', 'policy_rule': 'never', 'num_threads': 1,
        'stats_period': 0.2, 'bn_rate': 0.0, 'bn_refresh': 4})
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    n = rosnode.node
    stats, masks = [], []
    outs = (n.create_subscription(EdgeStats, '/laecips/stats', stats.append, 50),
            n.create_subscription(Image, '/edge/mask', masks.append, qos))
    cam = n.create_publisher(Image, '/camera/image_raw', qos)
    rosnode.wait_for_subscribers(cam, timeout=90.0)
    rosnode.wait_heard(*outs)  # mask i is awaited before frame i+1: none may be lost
    dusk = cv.frames(camvid, 'train', (cv.DUSK,))[:96]
    for i, f in enumerate(dusk):  # until the edge says it adapted (a few dozen frames)
        cam.publish(codecs.array_to_image(f.rgb(), Image, 'rgb8'))
        wait_until(lambda i=i: len(masks) > i, 30, f'mask {i}')
        threading.Event().wait(0.1)  # pacing the camera (10 Hz), not synchronising
        if stats and stats[-1].bn_adapted:
            break
    s = wait_until(lambda: stats and stats[-1].masks_out == len(masks) and stats[-1], 30,
                   'stats covering every frame')
    assert s.bn_adapted and s.bn_shift >= 0.05 and s.bn_harm_trips == 0, s
    assert len(masks) >= 8  # not from the first frames: re-estimated statistics need a few


def test_edge_saves_its_upload_budget_for_a_drift_over_dds(procs, rosnode, camvid):
    # Rule 'always' under a budget of 0.5 uploads/frame, 90 % of it kept for drift: by day
    # the edge uploads ~0.05 of its frames after the first burst; once its statistics say
    # the stream drifted (dusk), the savings go out.
    procs.node('edge', 'laecips_edge.edge_node', params={
        'image_qos': 'reliable', 'policy_rule': 'always', 'num_threads': 1,
        'policy_params': 'budget=0.5,burst=4,save=0.9', 'bn_rate': 0.0, 'bn_refresh': 4})
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    n = rosnode.node
    masks, hard = [], []
    outs = (n.create_subscription(Image, '/edge/mask', masks.append, qos),
            n.create_subscription(HardFrame, '/laecips/hard_frames', hard.append, qos))
    cam = n.create_publisher(Image, '/camera/image_raw', qos)
    rosnode.wait_for_subscribers(cam, timeout=90.0)
    rosnode.wait_heard(*outs)  # mask i is awaited before frame i+1: none may be lost
    day = cv.frames(camvid, 'test', (cv.DAY_TEST,))[:40]
    dusk = cv.frames(camvid, 'train', (cv.DUSK,))[:32]
    for i, f in enumerate(day + dusk):
        msg = codecs.array_to_image(f.rgb(), Image, 'rgb8')
        msg.header.stamp.sec = i
        cam.publish(msg)
        wait_until(lambda i=i: len(masks) > i, 30, f'mask {i}')
        threading.Event().wait(0.1)  # pacing the camera (10 Hz), not synchronising
    wait_until(lambda: len(hard) >= 1 and hard[-1].header.stamp.sec >= len(day), 30,
               'uploads at dusk')
    by_day = sum(h.header.stamp.sec < len(day) for h in hard)
    at_dusk = len(hard) - by_day
    assert by_day <= 4 + 0.05 * len(day) + 1, (by_day, at_dusk)
    assert at_dusk >= 8, (by_day, at_dusk)


def test_fuse_state_folds_statistics_as_fuse_bn_does():
    # The edge refreshes its traced model from a state_dict: the same numbers fuse_bn makes.
    model, sd, meta = _factory()
    sd = dict(sd)
    for k in sd:
        if k.endswith('running_var'):
            sd[k] = sd[k] * 1.7
    model.load_state_dict(sd)
    pairs = engine.fused_pairs(model)
    fused = engine.fuse_state(dict(model.state_dict()), pairs)
    ref = engine.fuse_bn(model).state_dict()
    assert pairs and fused.keys() == ref.keys()
    for k, v in ref.items():
        assert torch.allclose(fused[k].float(), v.float(), atol=1e-5), k
