# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The fleet simulation (laecips_core.fleet_sim): service model, queue, GPU search."""

import numpy as np
import pytest

from laecips_core.fleet_sim import Fleet, ServiceModel, gpus_needed, meets, simulate

# No ROS in this module: its result is the same in every distro's venv (see .ci/run).
pytestmark = pytest.mark.ros_free


def test_service_model_interpolates_and_extrapolates():
    m = ServiceModel('m', {1: 0.1, 4: 0.25})
    assert m(1) == pytest.approx(0.1) and m(4) == pytest.approx(0.25)
    assert m(2) == pytest.approx(0.15)  # linear between the measured batches
    assert m(8) == pytest.approx(0.5)  # beyond: the last measured per-frame cost
    assert m.frames_per_s(4) == pytest.approx(16.0)


def test_fleet_arrivals_have_the_fleet_rate_and_each_camera_period():
    rng = np.random.default_rng(1)
    arr = Fleet(50, rate=10.0, upload=0.3).arrivals(40.0, rng)
    assert np.all(np.diff(arr) >= 0) and arr[0] >= 0 and arr[-1] < 40.0
    assert len(arr) / 40.0 == pytest.approx(150.0, rel=0.05)
    one = Fleet(1, rate=10.0, upload=1.0).arrivals(5.0, rng)
    assert np.allclose(np.diff(one), 0.1)  # a camera's frames are 1/rate apart


def test_simulate_light_load_exact_latency():
    # Frames 1 s apart, 0.3 s each, one server: nobody waits.
    res = simulate(np.arange(10.0), 1, ServiceModel('m', {1: 0.3}), rtt=0.05, deadline=1.0)
    assert res.dropped == 0 and len(res.latencies) == 10
    assert np.allclose(res.latencies, 0.35)
    assert res.p(0.95) == pytest.approx(0.35)


def test_simulate_overload_counts_every_frame_and_freshest_first_answers_in_time():
    # 10 frames/s against one server of 4 frames/s: most cannot be labelled in time.
    arr = np.arange(0.0, 30.0, 0.1)
    svc = ServiceModel('m', {1: 0.25})
    fresh = simulate(arr, 1, svc, deadline=1.0, rtt=0.0, order='freshest')
    fifo = simulate(arr, 1, svc, deadline=1.0, rtt=0.0, order='fifo')
    for r in (fresh, fifo):
        assert len(r.latencies) + r.dropped == len(arr)
        # The server's capacity: 4/s for 30 s, and the queue's last frames after.
        assert 110 <= len(r.latencies) <= 124
        assert r.p(0.95) == np.inf  # most uploads are never labelled
    # Freshest first: a frame is picked within one service of its arrival (but the last
    # few, which drain once the stream has stopped).
    assert np.mean(fresh.latencies <= 0.5 + 1e-9) > 0.97
    assert np.median(fifo.latencies) > np.median(fresh.latencies)


def test_batching_raises_capacity():
    arr = np.arange(0.0, 20.0, 0.05)  # 20 frames/s
    svc = ServiceModel('m', {1: 0.1, 8: 0.2})  # 10/s alone, 40/s in batches of 8
    alone = simulate(arr, 1, svc, max_batch=1, deadline=1.0, rtt=0.0)
    batched = simulate(arr, 1, svc, max_batch=8, deadline=1.0, rtt=0.0)
    assert alone.dropped > 100 and batched.dropped == 0
    assert batched.summary(1.0)['mean_batch'] > 1.0


def test_gpus_needed_is_the_fewest_that_meet_the_deadline():
    svc = ServiceModel('m', {1: 0.2})
    fleet = Fleet(20, rate=10.0, upload=0.3)  # 60 frames/s against 5/s per server
    out = gpus_needed(fleet, svc, deadline=1.0, rtt=0.05, target_frames=6000,
                      min_seconds=20.0)
    g = out['gpus']
    assert 12 <= g <= 16 and out['p95_s'] <= 1.0
    arr = fleet.arrivals(max(20.0, 6000 / 60.0), np.random.default_rng(0))
    assert meets(simulate(arr, g, svc, deadline=1.0, rtt=0.05), 1.0)
    assert not meets(simulate(arr, g - 1, svc, deadline=1.0, rtt=0.05), 1.0)
    # Twice the robots need about twice the replicas, never fewer.
    assert gpus_needed(Fleet(40, 10.0, 0.3), svc, target_frames=6000)['gpus'] >= 2 * g - 2
    # A labeller slower than the deadline cannot serve any fleet.
    assert gpus_needed(fleet, ServiceModel('slow', {1: 2.0}))['gpus'] is None
