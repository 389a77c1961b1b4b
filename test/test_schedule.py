# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The bridge's deadline-aware scheduler (laecips_core.schedule), without ROS."""

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from laecips_core.policy import Backoff
from laecips_core.schedule import INFERENCE, OUTCOMES, TRAINING, Entry, LoadMeter, Scheduler

# No ROS in this module: its result is the same in every distro's venv (see .ci/run).
pytestmark = pytest.mark.ros_free


def _e(robot: str, t: float, deadline: float = 1.0, nbytes: int = 100, tag=None) -> Entry:
    return Entry(robot, t, t + deadline, nbytes, tag if tag is not None else (robot, t))


def _tags(batch: list[Entry]) -> list:
    return [e.payload for e in batch]


def test_freshest_first():
    s = Scheduler(100, 10**9, service_s=0.01)
    for t in (0.0, 0.1, 0.2, 0.3):
        s.push(_e('r1', t))
    lane, batch = s.take(0.35, max_batch=2)
    assert lane == INFERENCE and _tags(batch) == [('r1', 0.3), ('r1', 0.2)]


def test_fair_across_robots():
    # r1 floods, r2 sends one frame: r2's frame goes in the first batch, and the next
    # batch starts with the robot served longest ago.
    s = Scheduler(100, 10**9, service_s=0.01)
    for i in range(10):
        s.push(_e('r1', 0.01 * i))
    s.push(_e('r2', 0.0))
    _, b1 = s.take(0.1, max_batch=2)
    assert sorted(e.robot for e in b1) == ['r1', 'r2']
    s.push(_e('r2', 0.11))
    s.push(_e('r3', 0.11))
    _, b2 = s.take(0.12, max_batch=1)
    assert [e.robot for e in b2] == ['r3']  # never served before
    _, b3 = s.take(0.12, max_batch=3)
    assert [e.robot for e in b3][:2] in (['r1', 'r2'], ['r2', 'r1'])


def test_late_frames_wait_while_fresh_ones_are_labelled():
    s = Scheduler(100, 10**9, service_s=0.2)
    s.push(_e('r1', 0.0))  # deadline 1.0
    s.push(_e('r1', 0.9))  # deadline 1.9
    # At 0.85 the first cannot finish by 1.0 (0.85 + 0.2): only the fresh one is taken.
    lane, batch = s.take(0.95, max_batch=4)
    assert lane == INFERENCE and _tags(batch) == [('r1', 0.9)]
    s.finish(lane, batch, 1.1, seconds=0.2)
    # Nothing fresh left: the expired one goes to the training lane.
    lane, batch = s.take(1.1, max_batch=4)
    assert lane == TRAINING and _tags(batch) == [('r1', 0.0)]
    s.finish(lane, batch, 1.3, seconds=0.2)
    assert s.counts['labelled_in_time'] == 1 and s.counts['labelled_for_training'] == 1


def test_batch_only_as_large_as_deadlines_allow():
    s = Scheduler(100, 10**9, service_s=0.32)
    for t in (0.0, 0.05, 0.1):
        s.push(_e('r1', t))
    # At 0.1: three frames would end at 1.06 (late for the one due at 1.0); two at 0.74.
    lane, batch = s.take(0.1, max_batch=8)
    assert lane == INFERENCE and _tags(batch) == [('r1', 0.1), ('r1', 0.05)]


def test_bounds_in_frames_and_bytes():
    s = Scheduler(3, 10**9)
    dropped = [d.payload for t in range(5) for d in s.push(_e('r1', t * 0.01, tag=t))]
    assert dropped == [0, 1] and [e.payload for e in s.entries()] == [2, 3, 4]
    s = Scheduler(100, 250)
    assert s.push(_e('r1', 0.0, nbytes=100, tag='a')) == []
    assert s.push(_e('r1', 0.1, nbytes=100, tag='b')) == []
    assert _tags(s.push(_e('r1', 0.2, nbytes=100, tag='c'))) == ['a']
    assert s.bytes == 200 and s.counts['dropped'] == 1


def test_eviction_hits_the_flooding_robot_and_late_frames_first():
    s = Scheduler(4, 10**9, service_s=0.01)
    s.push(_e('r2', 0.0, tag='r2'))
    for i in range(4):
        s.push(_e('r1', 0.01 + 0.01 * i, tag=i))
    assert 'r2' in _tags(s.entries())  # r1's own oldest went
    s = Scheduler(2, 10**9, service_s=0.01)
    s.push(_e('r1', 0.0, deadline=0.1, tag='old'))
    s.push(_e('r2', 0.5, deadline=1.0, tag='fresh'))
    assert _tags(s.push(_e('r2', 0.6, deadline=1.0, tag='fresher'))) == ['old']


@settings(derandomize=True, deadline=None, database=None, max_examples=150)
@given(st.lists(st.tuples(st.sampled_from(['r1', 'r2', 'r3']), st.floats(0.0, 0.3),
                          st.integers(1, 500), st.sampled_from(['push', 'take', 'fail'])),
                min_size=1, max_size=80),
       st.integers(1, 8), st.integers(1, 4), st.floats(0.0, 0.5))
def test_every_frame_counted_once(ops, max_frames, max_batch, service):
    s = Scheduler(max_frames, 1200, service_s=service)
    now, pushed, seen = 0.0, 0, set()
    for robot, dt, nbytes, op in ops:
        now += dt
        if op == 'push':
            s.push(_e(robot, now, deadline=0.5, nbytes=nbytes, tag=pushed))
            pushed += 1
        else:
            lane, batch = s.take(now, max_batch)
            ids = {e.payload for e in batch}
            assert not ids & seen  # never handed out twice
            seen |= ids
            if lane == INFERENCE:  # never a frame whose deadline has passed
                assert all(now < e.deadline for e in batch)
                if any(now + service * len(batch) > e.deadline + 1e-9 for e in batch):
                    assert len(batch) == 1  # predicted late: only alone, nothing fresh
            now += service * len(batch)
            fail = batch[:1] if op == 'fail' else []
            s.finish(lane, batch[len(fail):], now, service * len(batch), failed=fail)
        assert s.waiting() <= max_frames and s.bytes <= 1200
        assert sum(s.counts[k] for k in OUTCOMES) + s.waiting() + s.in_flight == pushed
    s.drop_all()
    assert sum(s.counts[k] for k in OUTCOMES) == pushed and s.in_flight == 0


def test_load_meter():
    m = LoadMeter(0.0)
    for _ in range(20):
        m.arrive()
    assert m.read(2.0, service_s=0.2) == pytest.approx(2.0)  # 10 frames/s x 0.2 s
    assert m.read(4.0, service_s=0.2) == 0.0


def test_backoff_halves_on_overload_and_recovers():
    b = Backoff(down=0.5, up=0.1, floor=0.05)
    assert [round(b.update(True), 3) for _ in range(6)] == [0.5, 0.25, 0.125, 0.062, 0.05, 0.05]
    rng = np.random.default_rng(0)
    sent = sum(b.admit(True, rng) for _ in range(2000))
    assert 50 <= sent <= 150  # about 5 %
    assert not b.admit(False, rng)  # never uploads what the policy did not pick
    for _ in range(10):
        b.update(False)
    assert b.scale == 1.0 and all(b.admit(True, rng) for _ in range(100))


def test_too_slow_for_the_deadline_still_answers_for_inference():
    # A labeller slower than the deadline: no frame can make it, so the newest unexpired one
    # goes alone (counted late when it ends past its deadline), not to the training lane.
    s = Scheduler(100, 10**9, service_s=2.0)
    s.push(_e('r1', 0.0))
    s.push(_e('r1', 0.1))
    lane, batch = s.take(0.2, max_batch=4)
    assert lane == INFERENCE and _tags(batch) == [('r1', 0.1)]
    s.finish(lane, batch, 2.2, seconds=2.0)
    assert s.counts['labelled_late'] == 1
    lane, batch = s.take(2.2, max_batch=4)
    assert lane == TRAINING and _tags(batch) == [('r1', 0.0)]
