# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Trusting the cloud only where it earns it: calibration, fusion, teacher health, anchors."""

import math

import numpy as np
import pytest

from laecips_core import anchor, calibration, corruptions, fusion, health

# No ROS in this module: its result is the same in every distro's venv (see .ci/run).
pytestmark = pytest.mark.ros_free

VOID = 11


def test_calibration_learns_an_overconfident_model():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 200_000)
    # Right only half as often as it claims.
    correct = rng.random(conf.size) < conf * 0.5
    cal = calibration.fit(conf, correct)
    assert np.all(np.diff(cal.table) >= 0), 'monotone'
    assert cal(np.array([0.95]))[0] == pytest.approx(0.475, abs=0.03)
    assert cal(np.array([0.55]))[0] == pytest.approx(0.275, abs=0.03)
    # uint8 confidences (255 = 1.0) map the same way, and a table survives a round trip.
    assert cal(np.array([245], np.uint8))[0] == pytest.approx(cal(np.array([0.96]))[0])
    assert calibration.Calibration.from_list(cal.to_list())(np.array([0.95]))[0] == \
        pytest.approx(cal(np.array([0.95]))[0], abs=1e-3)
    assert calibration.Calibration.from_list([]) is calibration.IDENTITY
    with pytest.raises(ValueError):
        calibration.Calibration((0.2, float('nan')))


def test_fusion_takes_the_calibrated_confident_side():
    edge = np.zeros((4, 4), np.uint8)
    cloud = np.full((4, 4), 3, np.uint8)
    cloud[0, 0] = VOID
    raw_edge = np.full((4, 4), 0.9, np.float32)
    raw_cloud = np.full((4, 4), 0.8, np.float32)
    raw_cloud[2:] = 0.99
    # Raw, the edge (0.9) beats the cloud (0.8) on the top half ...
    fused, took = fusion.fuse(edge, raw_edge, cloud, raw_cloud, VOID, cross_check=False)
    assert (fused[:2] == 0).all() and (fused[2:] == 3).all() and took == 0.5
    # ... but an edge calibrated as overconfident (0.9 -> 0.6) loses there: the
    # comparison is between calibrated estimates, not raw scores.
    edge_cal = calibration.Calibration(tuple(np.linspace(0.0, 0.65, 20)))
    fused, took = fusion.fuse(edge, edge_cal(raw_edge), cloud, raw_cloud, VOID,
                              cross_check=False)
    assert fused[0, 0] == 0, 'void cloud pixels never win'
    assert (fused.ravel()[1:] == 3).all() and took == pytest.approx(15 / 16)


def test_fusion_discounts_an_edge_that_disagrees_with_the_sure_cloud():
    # The cloud is sure (0.95) of the bottom half and right there; the edge says otherwise
    # with 0.97: on this frame the edge is not as reliable as its calibration claims.
    cloud = np.full((8, 8), 2, np.uint8)
    edge = np.full((8, 8), 2, np.uint8)
    edge[4:] = 5
    edge[:4, :2] = 5  # a disagreement where the cloud is unsure
    cloud_conf = np.full((8, 8), 0.6, np.float32)
    cloud_conf[4:] = 0.95
    edge_conf = np.full((8, 8), 0.97, np.float32)
    assert fusion.edge_reliability(edge, cloud, cloud_conf, VOID) == 0.0
    fused, _ = fusion.fuse(edge, edge_conf, cloud, cloud_conf, VOID)
    assert (fused == 2).all()
    fused, _ = fusion.fuse(edge, edge_conf, cloud, cloud_conf, VOID, cross_check=False)
    assert (fused[4:] == 5).all()
    # Agreeing where the cloud is sure: the edge keeps its confident pixels elsewhere.
    edge[4:] = 2
    assert fusion.edge_reliability(edge, cloud, cloud_conf, VOID) == 1.0
    fused, _ = fusion.fuse(edge, edge_conf, cloud, cloud_conf, VOID)
    assert (fused[:4, :2] == 5).all()
    # Too few sure pixels, or no confidence at all: nothing to judge by.
    assert fusion.edge_reliability(edge, cloud, np.full((8, 8), 0.5), VOID) == 1.0
    assert fusion.edge_reliability(edge, cloud, 0.5, VOID) == 1.0


def test_a_label_without_confidence_uses_the_default():
    edge = np.zeros((2, 3), np.uint8)
    cloud = np.ones((2, 3), np.uint8)
    edge_conf = np.array([[0.9, 0.3, 0.6], [0.2, 0.95, 0.5]], np.float32)
    fused, _ = fusion.fuse(edge, edge_conf, cloud, fusion.DEFAULT_CLOUD_CONFIDENCE, VOID)
    assert fused.tolist() == [[0, 1, 0], [1, 0, 0]]


def test_confidence_grid_round_trip_and_checks():
    conf = np.zeros((360, 480), np.float32)
    conf[:, 240:] = 1.0
    grid = fusion.to_grid(conf, 8)
    assert grid.shape == (45, 60) and grid.dtype == np.uint8
    back = fusion.from_grid(grid, (360, 480))
    assert back.shape == (360, 480) and np.abs(back - conf).max() < 1e-6
    # Sizes that do not divide: padded, then expanded back to the frame.
    assert fusion.to_grid(np.ones((10, 13)), 4).shape == (3, 4)
    assert fusion.from_grid(fusion.to_grid(np.ones((10, 13)), 4), (10, 13)).min() == 1.0
    fusion.check_grid((45, 60), (360, 480))
    for bad in ((0, 60), (361, 60), (2, 2)):
        with pytest.raises(ValueError):
            fusion.check_grid(bad, (360, 480))


def test_health_trips_on_a_corrupted_labeller_and_recovers():
    rng = np.random.default_rng(1)
    good = lambda: float(rng.uniform(0.78, 0.88))  # noqa: E731 (reference ~0.85)
    bad = lambda: float(rng.uniform(0.2, 0.4))  # noqa: E731 (a labeller out of its depth)
    h = health.TeacherHealth(reference=0.85, window=6, trip=0.75, recover=0.85, min_labels=3)
    assert math.isnan(h.score)
    assert all(h.update(good()) for _ in range(20)), 'a healthy labeller never trips'
    states = [h.update(bad()) for _ in range(12)]
    assert not states[-1] and states.index(False) <= 3, 'trips within a few labels'
    assert h.trips == 1 and h.state == health.UNHEALTHY
    states = [h.update(good()) for _ in range(12)]
    assert states[-1] and h.state == health.HEALTHY, 'recovers when the labeller does'
    # Hysteresis: a score between trip and recover does not flip the verdict either way.
    h2 = health.TeacherHealth(reference=1.0, window=1, trip=0.5, recover=0.9, min_labels=1)
    assert h2.update(0.7) and not h2.update(0.4) and not h2.update(0.7) and h2.update(0.95)
    with pytest.raises(ValueError):
        health.TeacherHealth(reference=0.0)
    assert health.confident_fraction(np.array([0.95, 0.5, 0.9, 0.1])) == 0.5


def test_the_anchor_gate_rejects_a_candidate_that_forgets():
    ok, _ = anchor.gate(0.405, 0.41)
    assert ok
    ok, why = anchor.gate(0.38, 0.41)
    assert not ok and 'factory' in why
    assert not anchor.gate(float('nan'), 0.41)[0]


def test_sensor_noise_is_deterministic_per_frame():
    rgb = np.full((8, 8, 3), 128, np.uint8)
    a = corruptions.sensor_noise(rgb, 0.1, corruptions.seed_of('0001TP_008550'))
    b = corruptions.sensor_noise(rgb, 0.1, corruptions.seed_of('0001TP_008550'))
    c = corruptions.sensor_noise(rgb, 0.1, corruptions.seed_of('0001TP_008580'))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert 15 < np.std(a.astype(float)) < 35  # ~25.5 levels


def test_teacher_judges_per_robot_and_per_frame_size():
    from laecips_core import teacher
    rng = np.random.default_rng(3)
    truths = [rng.integers(0, 3, (24, 32)).astype(np.uint8) for _ in range(4)]
    rgbs = [np.repeat(t[..., None] * 80, 3, 2).astype(np.uint8) for t in truths]
    calls = []

    def label(images, edge_labels=None):
        # Right and sure at the anchors' size, less sure of smaller frames.
        out = []
        for im in images:
            calls.append(im.shape[:2])
            conf = np.full(im.shape[:2], 0.95, np.float32)
            if im.shape[:2] != (24, 32):
                conf[::2] = 0.5
            out.append(((im[..., 0] // 80).astype(np.uint8), conf))
        return out

    t = teacher.Teacher.from_anchor(label, rgbs, truths, VOID, window=3, min_labels=2)
    assert t.judges and t.reference == 1.0
    sure, unsure = np.full((24, 32), 0.95, np.float32), np.full((24, 32), 0.5, np.float32)
    v = t.judge('r1', 0, sure)
    assert v.state == health.HEALTHY and v.grid.shape == (3, 4) and 0.9 < v.mean <= 1
    states = [t.judge('r1', s, unsure).state for s in range(1, 12)]
    assert states[-1] == health.UNHEALTHY and t.unhealthy() == 1
    assert t.judge('r2', 0, sure).state == health.HEALTHY, 'per robot'
    assert t.judge('r1', 0, sure).state == health.HEALTHY, 'an edge restart starts afresh'
    # Smaller frames: judged against the anchors resized to that size (measured once).
    n = len(calls)
    small = np.full((12, 16), 0.95, np.float32)
    small[::2] = 0.5  # as unsure as on the resized anchors: healthy at this size
    assert all(t.judge('r3', s, small).state == health.HEALTHY for s in range(5))
    assert len(calls) == n + len(rgbs)
    assert teacher.Teacher().judge('r', 0, None).state == health.UNKNOWN
