# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Fault tests: the nodes as separate processes over real DDS, killed and restarted mid-stream.

1. The cloud bridge is killed (SIGKILL) and restarted: every camera frame is still a mask
   or a counted skip at every stats message, masks keep coming at once while the cloud is
   down (``no_cloud`` counts the uploads the policy wanted), and uploads and cloud labels
   resume by themselves after the restart.
2. The trainer is down, first never started, then killed: the edge's accounting is the
   same, nothing is logged as an error, and the bridge labels every upload.
3. The edge is killed in the full system (edge + bridge + trainer, the gate always open):
   on restart it runs the last pushed weights and policy from its ``state_dir``, and the
   trainer goes on pushing newer versions to it.

The bridge labels with a tiny TorchScript model (no ../shared needed), frames are 72x96.
A process a test kills announces a 2 s DDS participant lease (a Fast DDS profile,
``short_lease``) so that its peers notice the death in about 2 s rather than Fast DDS's
default 20 s; test 2 kills the trainer with the default lease: the bridge then publishes
into a dead but still matched subscriber, which must not hold it up.
"""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import threading
import time

from conftest import wait_until
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
import torch

from laecips_core import codecs, dds
from laecips_msgs.msg import CloudStats, EdgeStats, WeightPush

NS = '/robot1'
QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
H, W = 72, 96
FACTORY = Path(__file__).resolve().parents[1] / 'src' / 'laecips_edge' / 'weights' / \
    'factory.safetensors'

LEASE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <participant profile_name="laecips_short_lease" is_default_profile="true">
      <rtps>
        <builtin>
          <discovery_config>
            <leaseDuration><sec>2</sec></leaseDuration>
            <leaseAnnouncement><sec>0</sec><nanosec>500000000</nanosec></leaseAnnouncement>
          </discovery_config>
        </builtin>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


def short_lease(tmp_path: Path) -> dict[str, str]:
    """Return the environment of a process whose death its peers notice within ~2 s."""
    path = tmp_path / 'short_lease.xml'
    path.write_text(LEASE_XML)
    return dds.profile_env(path)  # under the name the installed Fast DDS reads


class _TinySeg(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 11, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def tiny_labeller(tmp_path: Path) -> Path:
    """Save a tiny TorchScript labeller (11 classes) and return its path."""
    torch.manual_seed(0)
    path = tmp_path / 'tiny_labeller.ts'
    torch.jit.trace(_TinySeg().eval(), torch.zeros(1, 3, 8, 8)).save(str(path))
    return path


def edge_params(state_dir: Path, **extra) -> dict:
    """
    Edge parameters of the fault tests: reliable camera, upload every frame, fast stats.

    Back-pressure off: on a loaded CI machine one slow labeller batch can make the bridge
    report overload, and the frames the edge then holds back (held_back) would break the
    tests' every-frame-uploaded accounting; back-pressure has tests of its own. A long label
    deadline: a label past it goes to the trainer only and refines nothing, and one slow
    labeller batch on a loaded machine would then look like a lost answer.
    """
    return {'image_qos': 'reliable', 'policy_rule': 'always', 'num_threads': 1,
            'stats_period': 0.2, 'state_dir': str(state_dir), 'send_edge_label': True,
            'follow_cloud_load': False, 'label_deadline': 120.0, **extra}


def bridge_params(labeller: Path, **extra) -> dict:
    return {'labeller': 'torchscript', 'weights': str(labeller), 'device': 'cpu',
            'torch_threads': 1, 'max_batch': 4, 'max_wait_ms': 20.0, 'queue_size': 32,
            'stats_period': 0.2, **extra}


def alive(procs, *names: str) -> None:
    """Fail, with its log, if one of the named processes has exited."""
    for name, p, _ in procs.items:
        if name in names and p.poll() is not None:
            pytest.fail(f'{name} exited with {p.returncode}:\n{procs.log(name)[-3000:]}')


def kill9(p: subprocess.Popen) -> None:
    """SIGKILL a node's process group: no shutdown code runs, nothing is said goodbye."""
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(10)


class Rig:
    """
    The test's side of one robot: a paced camera and recorders of what comes back.

    Every EdgeStats message is checked on arrival: at most the frame in progress and the
    one waiting may be unaccounted for (``frames_in - masks_out - skipped - rejected`` in
    0..2) and, every frame being one the policy uploads, each handled frame is an upload or
    counted in ``no_cloud`` (``uploaded + no_cloud - masks_out`` in 0..1: the upload is
    counted just before its mask). A violation is kept and fails the test.
    """

    def __init__(self, rosnode, upload_all: bool = True):
        n = rosnode.node
        self.node, self.ros = n, rosnode
        self.upload_all = upload_all
        self.lock = threading.Lock()
        self.sent: dict[int, float] = {}  # stamp sec -> monotonic time published
        self.masks: dict[int, float] = {}  # stamp sec -> monotonic time the mask came
        self.refined: dict[int, float] = {}
        self.duplicates = 0
        self.stats: list[EdgeStats] = []
        self.cloud: list[CloudStats] = []
        self.pushes: list[WeightPush] = []
        self.violations: list[str] = []
        self.next_stamp = 1000
        self.base = 0  # frames sent before the current edge process started
        self.rng = np.random.default_rng(0)
        self.cam = n.create_publisher(Image, '/camera/image_raw', QOS)
        self.outs = (n.create_subscription(Image, f'{NS}/edge/mask', self._on_mask, QOS),
                     n.create_subscription(Image, f'{NS}/edge/mask_refined', self._on_refined,
                                           QOS),
                     n.create_subscription(EdgeStats, '/laecips/stats', self._on_stats, QOS))
        n.create_subscription(CloudStats, '/laecips/stats_cloud', self._keep(self.cloud), QOS)
        n.create_subscription(WeightPush, '/laecips/weight_pushes', self._keep(self.pushes),
                              QOS)

    def _keep(self, bucket: list):
        def cb(msg):
            with self.lock:
                bucket.append(msg)
        return cb

    def _on_mask(self, msg: Image) -> None:
        with self.lock:
            if msg.header.stamp.sec in self.masks:
                self.duplicates += 1
            self.masks.setdefault(msg.header.stamp.sec, time.monotonic())

    def _on_refined(self, msg: Image) -> None:
        with self.lock:
            self.refined.setdefault(msg.header.stamp.sec, time.monotonic())

    def _on_stats(self, s: EdgeStats) -> None:
        open_ = s.frames_in - s.masks_out - s.skipped - s.rejected
        extra = s.uploaded + s.no_cloud - s.masks_out
        with self.lock:
            if not 0 <= open_ <= 2:
                self.violations.append(f'{open_} frames unaccounted for: {s}')
            if self.upload_all and not 0 <= extra <= 1:
                self.violations.append(f'uploaded + no_cloud - masks_out = {extra}: {s}')
            if s.rejected:
                self.violations.append(f'rejected frames: {s}')
            self.stats.append(s)

    def wait_matched(self, timeout: float = 90.0) -> None:
        """Wait until the edge hears the camera and these recorders hear the edge."""
        # Every mask is counted against masks_out: none may go before its reader matches.
        self.ros.wait_for_subscribers(self.cam, timeout=timeout)
        self.ros.wait_heard(*self.outs)

    # -- camera ---------------------------------------------------------------------------
    def publish(self, n: int, hz: float = 5.0) -> list[int]:
        """Publish ``n`` frames at ``hz``; each is stamped with a new sec (its id)."""
        return [self._one(hz) for _ in range(n)]

    def publish_until(self, cond, timeout: float, what: str, hz: float = 5.0,
                      procs=None, names: tuple[str, ...] = ()) -> list[int]:
        """
        Publish frames at ``hz`` until ``cond()`` holds; fail after ``timeout`` s.

        ``names``: processes (of ``procs``) that must stay alive meanwhile.
        """
        stamps, deadline = [], time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                pytest.fail(f'timed out after {timeout:.0f} s (and {len(stamps)} frames) '
                            f'waiting for {what}')
            alive(procs, *names)
            stamps.append(self._one(hz))
        return stamps

    def _one(self, hz: float) -> int:
        rgb = self.rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        msg = codecs.array_to_image(rgb, Image, 'rgb8')
        with self.lock:
            stamp = self.next_stamp
            self.next_stamp += 1
            self.sent[stamp] = time.monotonic()
        msg.header.stamp.sec, msg.header.frame_id = stamp, 'camera'
        self.cam.publish(msg)
        threading.Event().wait(1.0 / hz)  # pacing the camera, not synchronising
        return stamp

    # -- what came back -------------------------------------------------------------------
    def last(self) -> EdgeStats | None:
        with self.lock:
            return self.stats[-1] if self.stats else None

    def last_cloud(self) -> CloudStats | None:
        with self.lock:
            return self.cloud[-1] if self.cloud else None

    def settled(self) -> EdgeStats | None:
        """Return the latest stats once every frame sent to this edge process is handled."""
        with self.lock:
            s = self.stats[-1] if self.stats else None
            n = len(self.sent) - self.base
            mine = [t for t in list(self.sent)[self.base:] if t in self.masks]
        if s and s.frames_in == n and s.masks_out + s.skipped + s.rejected == n \
                and len(mine) == s.masks_out and (not self.upload_all
                                                  or s.uploaded + s.no_cloud == s.masks_out):
            return s
        return None

    def warm_up(self, procs, names: tuple[str, ...], timeout: float = 60.0) -> EdgeStats:
        """
        Publish frames until an upload is answered again, then settle.

        Discovery matches the edge's uploads to a bridge and the bridge's labels to the edge
        separately: until both are, an upload is counted in no_cloud, or its label is lost.
        """
        s0 = self.last()
        n0, l0 = (s0.uploaded, s0.labels_in) if s0 else (0, 0)
        self.publish_until(lambda: (s := self.last()) and s.uploaded > n0 and s.labels_in > l0,
                           timeout, 'an upload answered (edge and bridge matched both ways)',
                           procs=procs, names=names)
        return self.wait_settled()

    def answered(self, stamps: list[int], n: int, timeout: float = 30.0) -> None:
        """Wait until ``n`` of ``stamps`` have a refined mask (the bridge's label)."""
        def done():
            with self.lock:
                return len([t for t in stamps if t in self.refined]) == n
        wait_until(done, timeout, f'refined masks for {n} of {len(stamps)} frames')

    def wait_settled(self, timeout: float = 30.0) -> EdgeStats:
        try:
            return wait_until(self.settled, timeout,
                              f'the edge to account for {len(self.sent) - self.base} frames')
        except BaseException:
            s = self.last()  # which count is short
            print('last EdgeStats:', s and {k: getattr(s, k) for k in (
                'frames_in', 'masks_out', 'skipped', 'rejected', 'camera_lost', 'uploaded',
                'no_cloud', 'held_back')})
            raise

    def check(self, stamps: list[int], max_skipped: float = 0.25) -> None:
        """Assert each of ``stamps`` has its mask, bar a few counted skips, and no dupes."""
        with self.lock:
            missing = [t for t in stamps if t not in self.masks]
            assert not self.violations, self.violations[:3]
            assert self.duplicates == 0
        s = self.last()
        assert len(missing) <= s.skipped and len(missing) <= max_skipped * len(stamps), \
            f'{len(missing)} of {len(stamps)} frames without a mask; skipped {s.skipped}'


def _edge(procs, state: Path, name: str = 'edge', env: dict | None = None, **extra):
    return procs.node(name, 'laecips_edge.edge_node', params=edge_params(state, **extra),
                      ros_args=['-r', f'__ns:={NS}'], env=env)


def _no_errors(procs, *names: str) -> None:
    for name in names:
        errors = [ln for ln in procs.log(name).splitlines()
                  if '[ERROR]' in ln or 'Traceback' in ln]
        assert not errors, f'{name}: {errors[:3]}'


# --- 1. the bridge killed and restarted -----------------------------------------------------

def test_bridge_killed_and_restarted_frames_accounted_uploads_resume(procs, rosnode, tmp_path):
    labeller, lease = tiny_labeller(tmp_path), short_lease(tmp_path)
    bridge = procs.node('bridge', 'laecips_cloud.bridge_node', params=bridge_params(labeller),
                        env=lease)
    _edge(procs, tmp_path / 'state')
    rig = Rig(rosnode)
    n = rosnode.node
    rig.wait_matched()
    wait_until(lambda: n.count_subscribers('/laecips/hard_frames') >= 1, 60, 'the bridge')
    rosnode.wait_for_publishers('/laecips/cloud_labels', timeout=60)

    # Phase 1, bridge up: every frame is uploaded and comes back as a refined mask.
    s0 = rig.warm_up(procs, ('edge', 'bridge'))
    up = rig.publish(10)
    s1 = rig.wait_settled()
    rig.check(up)
    assert s1.no_cloud == s0.no_cloud, s1
    rig.answered(up, s1.uploaded - s0.uploaded)  # a label for every upload
    assert s1.uploaded - s0.uploaded == len(up) - (s1.skipped - s0.skipped)

    # Phase 2, bridge killed: masks keep coming at once; no_cloud counts the would-be uploads
    # once the bridge's lease has run out (until then uploads go to a dead subscriber).
    kill9(bridge)
    t_kill = time.monotonic()
    down = rig.publish_until(lambda: rig.last().no_cloud >= s1.no_cloud + 5, 30,
                             'no_cloud to count 5 frames with the bridge down',
                             procs=procs, names=('edge',))
    gone = time.monotonic() - t_kill
    s2 = rig.wait_settled()
    rig.check(down)
    with rig.lock:
        delays = [rig.masks[t] - rig.sent[t] for t in down if t in rig.masks]
    # No frame waits on the cloud: each mask came within a camera period or so, also while
    # the dead bridge was still matched.
    assert max(delays) < 2.0, f'masks {max(delays):.2f} s late with the bridge down'
    assert s2.no_cloud - s1.no_cloud >= 5, s2
    assert gone < 10, f'the edge took {gone:.1f} s to notice the bridge was gone'

    # Phase 3, a new bridge: uploads and labels resume without touching the edge.
    wait_until(lambda: n.count_subscribers('/laecips/hard_frames') == 0, 10,
               'the dead bridge to leave the graph')
    procs.node('bridge2', 'laecips_cloud.bridge_node', params=bridge_params(labeller))
    wait_until(lambda: n.count_subscribers('/laecips/hard_frames') >= 1, 60, 'the new bridge')
    # The edge finds it by itself; frames until then are counted in no_cloud.
    first = rig.warm_up(procs, ('edge', 'bridge2'))
    after = rig.publish(10)
    s3 = rig.wait_settled()
    rig.check(after)
    assert s3.no_cloud == first.no_cloud and s3.uploaded + s3.no_cloud == s3.masks_out, s3
    rig.answered(after, len(after) - (s3.skipped - first.skipped))  # every one answered
    with rig.lock:
        late = [t for t in rig.refined if t in down]
    assert not late  # uploads into the dead bridge are lost, never answered later
    uploaded = s3.uploaded - s2.uploaded
    c = wait_until(lambda: (c := rig.last_cloud()) and c.labels_out == uploaded and c, 30,
                   'the new bridge to label every upload it was sent')
    assert c.frames_in == uploaded and c.rejected == 0 and c.dropped_queue == 0, c
    alive(procs, 'edge', 'bridge2')
    _no_errors(procs, 'edge', 'bridge2')


# --- 2. the trainer down ------------------------------------------------------------------

def _factory() -> Path:
    if not FACTORY.is_file():
        pytest.skip(f'factory weights not found at {FACTORY} (run train_factory)')
    return FACTORY


def trainer_params(**extra) -> dict:
    """Return parameters of a trainer with tiny rounds and the gate always open."""
    return {'weights': str(_factory()), 'gate_margin': -1.0, 'min_frames': 8,
            'push_bytes_per_point': 0.0, 'steps_per_round': 1, 'batch': 2,
            'val_fraction': 0.25, 'num_threads': 1,
            'call_timeout': 5.0, 'retry_initial': 0.5, 'retry_max': 2.0, 'max_attempts': 100,
            # The fitted policy uploads every frame (explore = 1), so pairs keep coming.
            'policy_rule': 'fixed', 'target_upload_ratio': 1.0, 'min_disagreement': 0.0,
            'explore': 1.0, **extra}


def test_trainer_down_edge_unaffected_bridge_labels(procs, rosnode, tmp_path):
    labeller = tiny_labeller(tmp_path)
    procs.node('bridge', 'laecips_cloud.bridge_node', params=bridge_params(labeller))
    _edge(procs, tmp_path / 'state')
    rig = Rig(rosnode)
    n = rosnode.node
    rig.wait_matched()
    wait_until(lambda: n.count_subscribers('/laecips/hard_frames') >= 1, 60, 'the bridge')
    rosnode.wait_for_publishers('/laecips/cloud_labels', timeout=60)

    def answered(s0: EdgeStats, stamps: list[int]) -> EdgeStats:
        # Every frame is a mask (or a counted skip), uploaded, and answered by the bridge.
        s = rig.wait_settled()
        rig.check(stamps)
        new = s.uploaded - s0.uploaded
        assert new == s.masks_out - s0.masks_out and s.no_cloud == s0.no_cloud, s
        rig.answered(stamps, new)
        return rig.last()

    # Never started: nobody takes /laecips/cloud/frames; the system does not care.
    s1 = answered(rig.warm_up(procs, ('edge', 'bridge')), rig.publish(10))

    # Started, then killed while it collects pairs (default lease: it stays matched ~20 s).
    trainer = procs.node('trainer', 'laecips_cloud.trainer_node', params=trainer_params())
    wait_until(lambda: n.count_subscribers('/laecips/cloud/frames') >= 1, 90, 'the trainer')
    rig.publish_until(lambda: "new robot 'robot1'" in procs.log('trainer'), 60,
                      'the trainer to take frames', procs=procs, names=('edge', 'bridge'))
    kill9(trainer)
    s2 = rig.wait_settled()
    stamps = rig.publish(10)
    # The bridge republished those frames to a dead subscriber, still matched (20 s lease).
    assert n.count_subscribers('/laecips/cloud/frames') >= 1
    s3 = answered(s2, stamps)
    assert s3.updates_rejected == 0 and s3.model_version >= s1.model_version
    c = wait_until(lambda: (c := rig.last_cloud()) and c.labels_out == s3.uploaded and c, 30,
                   'the bridge to count a label for every upload')
    assert c.frames_in == s3.uploaded and c.dropped_queue == 0 and c.rejected == 0, c
    alive(procs, 'edge', 'bridge')
    _no_errors(procs, 'edge', 'bridge')


# --- 3. the edge restarted in the full system ---------------------------------------------

def _policy(p) -> tuple:
    return p.rule, tuple(p.keys), tuple(round(v, 9) for v in p.values)


def test_edge_restart_resumes_pushed_weights_and_trainer_keeps_pushing(procs, rosnode,
                                                                       tmp_path):
    labeller, lease, state = tiny_labeller(tmp_path), short_lease(tmp_path), tmp_path / 'st'
    procs.node('bridge', 'laecips_cloud.bridge_node', params=bridge_params(labeller))
    procs.node('trainer', 'laecips_cloud.trainer_node', params=trainer_params())
    edge = _edge(procs, state, env=lease)
    rig = Rig(rosnode)
    n = rosnode.node
    rig.wait_matched()
    wait_until(lambda: n.count_subscribers('/laecips/hard_frames') >= 1, 60, 'the bridge')
    wait_until(lambda: n.count_subscribers('/laecips/cloud/frames') >= 1, 90, 'the trainer')

    def pushed(after: int = 1):
        """Return the newest accepted push with a policy above version ``after``."""
        with rig.lock:
            ok = [p for p in rig.pushes if p.accepted and p.policy.rule and p.version > after]
        return max(ok, key=lambda p: p.version) if ok else None

    def running(version: int):
        s = rig.last()
        return s is not None and s.model_version >= version

    # A push of weights and a policy lands on the edge.
    rig.publish_until(lambda: (p := pushed()) and running(p.version), 120,
                      'an accepted push with a policy, running on the edge', hz=4.0,
                      procs=procs, names=('edge', 'bridge', 'trainer'))
    before = rig.last()
    assert before.policy.rule == 'fixed' and before.updates_accepted >= 1

    # kill -9 the edge (a push may be in flight), restart it with the same parameters.
    kill9(edge)
    wait_until(lambda: rig.cam.get_subscription_count() == 0, 15, 'the dead edge to go')
    with rig.lock:
        rig.stats.clear()
        rig.base = len(rig.sent)
    _edge(procs, state, name='edge2', env=lease)
    rig.wait_matched()
    first = wait_until(rig.last, 60, 'stats from the restarted edge')
    v = first.model_version
    # It runs what it had accepted (or, when a push landed as it died, that newer one) ...
    assert v >= before.model_version > 1, (v, before.model_version)
    assert 'resuming v' in procs.log('edge2')
    # ... and that push's policy, not its launch parameter 'always'.
    push = wait_until(lambda: next((p for p in list(rig.pushes)
                                    if p.accepted and p.version == v), None), 30,
                      f'the trainer to report the push of v{v}')
    assert _policy(first.policy) == _policy(push.policy) and first.policy.rule == 'fixed'

    # The trainer goes on: a newer version reaches the restarted edge.
    stamps = rig.publish_until(lambda: (p := pushed(v)) and running(p.version), 120,
                               f'a push newer than v{v} on the restarted edge', hz=4.0,
                               procs=procs, names=('edge2', 'bridge', 'trainer'))
    # (The edge swaps the model, persists it, then counts the update: wait for the count.)
    s = wait_until(lambda: (s := rig.settled()) and s.updates_accepted >= 1 and s, 30,
                   'the restarted edge to count the update it accepted')
    rig.check(stamps)
    assert s.model_version > v and s.updates_rejected == 0, s
    alive(procs, 'edge2', 'bridge', 'trainer')
    _no_errors(procs, 'edge2', 'bridge')
