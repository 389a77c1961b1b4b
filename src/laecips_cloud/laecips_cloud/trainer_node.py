# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The trainer node: distil cloud labels into each robot's edge model and push gated updates.

It runs in the cloud beside the bridge. Only the bridge subscribes the robots' uplink
topic (``/laecips/hard_frames``), so a hard frame crosses a robot's uplink once; the bridge
republishes each labelled frame on ``/laecips/cloud/frames`` and the trainer pairs it with
the bridge's ``/laecips/cloud_labels`` answer by (robot_id, seq, camera stamp), whichever
arrives first (both topics remappable; the stamp because an edge counts seq from 0 again
when it restarts). A robot's seq is continued across such a restart (a drop of more than
``SEQ_REORDER``), so its newest frames stay the newest for the policy fit.

Each robot gets its own ``Distiller`` (one model per robot: robots drift differently -
another camera, another route, another time of day - and a robot's pushes must only ever
reflect what that robot saw), initialised from the ``weights`` file (the factory weights by
default), the version the edges start with. With ``backend: ray`` each robot's distiller
runs in its own restartable Ray actor that persists its pairs and accepted weights
(``laecips_cloud.ray_trainers``; the ``ray_*`` parameters); the node still joins, pushes and
commits, through a stand-in whose calls (but a policy-only fit) never wait on Ray.

When a student passes the gate the node fits the upload policy on the robot's kept pairs
with the new model (``policy_fit``) and calls ``service_pattern`` (default
``/{robot_id}/edge/update_weights``, the edge node's ``~/update_weights`` in the robot's
namespace) with the safetensors bytes, sha256, version, policy and an optional HMAC
signature. Calls are asynchronous, at most one awaited per robot, with a timeout and
retries with exponential backoff while the service is absent or slow (after a timeout the
next try waits at least ``call_timeout`` more, so a slow edge can finish first); a retry
that finds the edge already running the pushed version (an earlier attempt landed late)
counts as accepted. The candidate is committed only when the edge accepts it. Every
completed push (accepted or not) is published on ``/laecips/weight_pushes`` with the
request's serialized size in bytes and what a full fp32 push would have cost.

Weights go as ``push_encoding`` says: ``full`` (the whole weights file) or a compressed
delta (``delta_fp16``, ``delta_int8``; ``laecips_core.delta``) over the state the robot's
edge holds: the trainer keeps, per robot, the state the edge rebuilt from the last accepted
push (version + digest), starting from the initial weights. An edge holding another base
(restarted without its state_dir, another trainer) refuses the delta, and the same
candidate goes again as a full push at once. A candidate is pushed only when its validated
gain pays for its bytes (``push_bytes_per_point``, ``laecips_core.push_cost``). Every
request carrying a policy carries a fresh policy version (microseconds since the epoch, and
above the last the edge reported), which the edge requires to grow.
"""

from __future__ import annotations

import array
from dataclasses import dataclass, field
import math
import threading
import time

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.serialization import serialize_message
import torch

from laecips_cloud import policy_fit as pf
from laecips_cloud import ray_trainers
from laecips_cloud.distill import Candidate, DistillConfig, Distiller, parse_train_params
from laecips_core import (
    anchor,
    codecs,
    dds,
    delta,
    diagnostics,
    fusion,
    heap,
    push_cost,
    signing,
    weights,
)
from laecips_core import interface as ifc
from laecips_core.pairing import Joiner, SeqContinuation, backoff_delay
from laecips_core.policy import Policy, parse_params
from laecips_core.update_gate import FULL_FORMAT, PushBase
from laecips_edge.factory import factory_weights
from laecips_msgs.msg import CloudLabel, HardFrame, WeightPush
from laecips_msgs.msg import Policy as PolicyMsg
from laecips_msgs.srv import UpdateWeights
from laecips_ros.diagnostics import Diagnostics
from laecips_ros.node import check_choices, declare_params, log_read_cap, qos, run_node

PUSH_MODES = ('weights_and_policy', 'weights', 'policy')
PUSH_ENCODINGS = ('full',) + delta.ENCODINGS
# Seconds between two /diagnostics messages of the trainer.
DIAGNOSTICS_PERIOD = 1.0


@dataclass
class Push:
    """One update for one robot: the request, what it came from, and its retry state."""

    request: UpdateWeights.Request
    candidate: Candidate | None
    policy: Policy | None
    val_before: float = math.nan
    val_after: float = math.nan
    attempts: int = 0  # calls sent
    failures: int = 0  # service missing, timeouts, failed calls
    next_try: float = 0.0
    sent_at: float = 0.0
    future: object = None
    bytes: int = 0  # serialized size of the request
    encoding: str = ''  # 'full', a delta encoding, '' without weights
    base: PushBase | None = None  # what the edge holds once it accepts the weights
    bytes_full: int = 0  # serialized size as a full fp32 push (0 without weights)


@dataclass
class Robot:
    """Per-robot state: its distiller, the policy it runs, the push machinery."""

    robot_id: str
    distiller: Distiller
    policy: Policy
    client: object
    push: Push | None = None  # at most one outstanding update (queued or in flight)
    pairs: int = 0
    pairs_at_policy_fit: int = 0
    seq: SeqContinuation = field(default_factory=SeqContinuation)  # across edge restarts
    teacher_ok: bool = True  # the latest label's teacher-health verdict
    edge_base: PushBase | None = None  # the state the edge holds (what deltas apply to)
    policy_version: int = 0  # the last policy version used or reported by the edge
    pushes: dict = field(default_factory=lambda: {'accepted': 0, 'rejected': 0, 'failed': 0})


class TrainerNode(Node):

    PARAMS = {  # name: (default, description)
        'weights': ('', 'initial edge weights (safetensors); empty = the factory weights'),
        'service_pattern': (ifc.UPDATE_SERVICE_PATTERN,
                            "each robot's UpdateWeights service; {robot_id} is replaced"),
        'hmac_key_file': ('', 'file holding the shared HMAC key; when set, every push is '
                              'signed and unsigned labels are refused (laecips_core.signing)'),
        'push_mode': ('weights_and_policy', 'weights_and_policy | weights | policy (only)'),
        'push_encoding': ('delta_int8', 'how weights cross the link: delta_int8 | delta_int4 | '
                                        'delta_fp16 | delta_sparse (compressed delta over what '
                                        'the edge holds, laecips_core.delta) | full'),
        'push_bytes_per_point': (1e6, 'push bytes one point (0.01) of validated gain is worth: '
                                      'a candidate gaining less than its bytes / this is not '
                                      'pushed (0: off)', (0.0, 1e15)),
        'gate_margin': (0.005, 'agreement gain (0..1) over the active version needed to push'),
        'gate_metric': ('miou', "'miou' or 'pixel_acc' against the held-out cloud labels"),
        'min_frames': (16, 'training pairs per robot before the first round', (1, 1 << 40)),
        'steps_per_round': (40, 'optimiser steps per training round', (1, 1 << 20)),
        'lr': (1e-3, 'learning rate (AdamW)'),
        'batch': (8, 'training batch size', (1, 4096)),
        'buffer_size': (256, 'replay buffer capacity per robot (pairs)', (1, 1 << 24)),
        'recent_fraction': (0.75, 'share of the buffer kept for the newest pairs (FIFO)',
                            (0.0, 1.0)),
        'val_fraction': (0.2, 'share of pairs held out to validate candidates', (0.0, 1.0)),
        'val_size': (48, 'newest held-out pairs kept per robot', (0, 1 << 24)),
        'seed': (0, 'seed of sampling and augmentation'),
        'num_threads': (1, 'torch threads for training; 0 = one per core', (0, 1024)),
        'policy_rule': ('learned', "fitted policy: 'learned' (estimator) or 'fixed' "
                                   '(conf_ratio threshold only)'),
        'target_upload_ratio': (pf.Recipe.target_upload_ratio,
                                'bandwidth budget: fraction of frames to upload', (0.0, 1.0)),
        'min_disagreement': (0.1, 'never upload frames predicted to disagree less than this',
                             (0.0, 1.0)),
        'explore': (0.05, 'fraction of rule-easy frames uploaded anyway (unbiased samples)',
                    (0.0, 1.0)),
        'budget_save': (pf.Recipe.save, 'share of target_upload_ratio the edge keeps for '
                                        'drift: in steady state it uploads (1 - save) of the '
                                        'budget, the rest goes out once the edge says the '
                                        'stream drifted', (0.0, 0.9)),
        'budget_reserve': (pf.Recipe.reserve, 'frames of saved budget the edge may hold for '
                                              'a drift (its savings bucket); 0 = budget_burst',
                           (0.0, 1e6)),
        'budget_burst': (10.0, 'the pushed policy caps the edge at target_upload_ratio with '
                               'bursts of this many frames (token bucket); 0 = threshold only',
                         (0.0, 1e6)),
        'policy_window': (60, 'camera frames (by seq) whose labelled ones set the budget '
                               'threshold: the budget is a rate over the near future',
                          (1, 1 << 24)),
        'policy_min_pairs': (8, 'pairs between two policy-only pushes (push_mode policy)',
                             (0, 1 << 24)),
        'initial_policy_rule': ('fixed', 'the policy edges start with (for upload weights)'),
        'initial_policy_params': ('', 'its parameters: JSON or k=v,k=v'),
        'call_timeout': (30.0, 'seconds to wait for an update_weights response', (0.01, 86400.0)),
        'retry_initial': (1.0, 'first retry delay, seconds (doubles each attempt)',
                          (0.0, 86400.0)),
        'retry_max': (30.0, 'largest retry delay, seconds', (0.0, 86400.0)),
        'max_attempts': (8, 'attempts before an update is dropped', (1, 1 << 20)),
        'join_timeout': (60.0, 'seconds a hard frame or label waits for its other half',
                         (0.0, 86400.0)),
        'join_max': (256, 'unmatched hard frames / labels kept (oldest dropped)', (1, 1 << 24)),
        'anchor_root': ('', "CamVid folder holding the anchor set (the factory model's own "
                            "training data); empty: found as usual; 'none': no anchor gate"),
        'anchor_frames': (24, 'anchor frames of the gate (factory day train frames)', (0, 100000)),
        'rehearsal_frames': (64, 'other factory frames mixed into training (0: none)',
                             (0, 100000)),
        'anchor_mix': (0.25, 'rehearsal frames added to each training batch, per stream pair '
                             'in it', (0.0, 1.0)),
        'train_params': ('decoder,stats', "what the student trains: 'all' or parts joined "
                                          "by ',' of decoder | classifier | norm (BatchNorm "
                                          'scale, shift and statistics) | stats (BatchNorm '
                                          'statistics); frozen parts cost no push bytes '
                                          '(laecips_cloud.distill.TRAIN_PARTS)'),
        'soft_weight': (0.0, "share of the loss from the labeller's class probabilities, on "
                             "frames that carry them (the bridge's soft_targets); 0: hard "
                             'labels only', (0.0, 1.0)),
        'max_anchor_drop': (0.01, 'a candidate losing more anchor mIoU (0-1) than this '
                                  'against the factory model is not pushed', (0.0, 1.0)),
        'forget_on_trip': (8, "pairs taken back when a robot's teacher turns unhealthy (the "
                              "labels that formed the verdict; the bridge's health_window)",
                           (0, 1 << 24)),
        **ray_trainers.PARAMS,
    }

    def __init__(self, **kwargs):
        super().__init__('trainer', **kwargs)
        p = declare_params(self, self.PARAMS)
        check_choices(p, {'push_mode': PUSH_MODES, 'push_encoding': PUSH_ENCODINGS,
                          'backend': ('local', 'ray')})
        parse_train_params(p['train_params'])  # a bad spec stops the node here, not per robot
        self.p = p
        # A configured key that cannot be read stops the node rather than pushing unsigned.
        self.hmac_key = signing.load_key(p['hmac_key_file']) if p['hmac_key_file'] else None
        if p['num_threads'] > 0:
            torch.set_num_threads(p['num_threads'])
        path = p['weights'] or factory_weights()
        self.state, self.meta = weights.load(path)
        if self.meta is None:
            raise weights.WeightsError(f'{path} carries no LAECIPS metadata')
        # What a fresh edge holds: the delta base of every robot's first push.
        self.initial_base = PushBase.of(self.state, self.meta.version)
        self.initial_policy = Policy(p['initial_policy_rule'],
                                     parse_params(p['initial_policy_params']))
        self.cfg = DistillConfig(
            lr=p['lr'], batch=p['batch'], steps_per_round=p['steps_per_round'],
            min_frames=p['min_frames'], buffer_size=p['buffer_size'],
            recent_fraction=p['recent_fraction'], val_fraction=p['val_fraction'],
            val_size=p['val_size'], gate_margin=p['gate_margin'],
            gate_metric=p['gate_metric'], seed=p['seed'], anchor_mix=p['anchor_mix'],
            max_anchor_drop=p['max_anchor_drop'], train_params=p['train_params'],
            soft_weight=p['soft_weight'])
        self.anchor = self.rehearsal = None
        if p['anchor_root'] != 'none':
            root = p['anchor_root'] or None
            self.anchor = anchor.load(root, p['anchor_frames'])
            if p['rehearsal_frames'] > 0:
                self.rehearsal = anchor.load(root, p['anchor_frames'], p['rehearsal_frames'])
        if self.anchor is None:
            self.get_logger().warning(
                'no anchor set (CamVid day train frames; anchor_root): candidates are gated '
                'on the cloud labels only and nothing stops them forgetting the factory data')
        self.ray = None  # backend ray: each robot's distiller in its own actor
        if p['backend'] == 'ray':
            log = self.get_logger()
            self.ray = ray_trainers.Fleet(p, path, log.info, log.warning)
            if p['soft_weight'] > 0:
                log.warning('soft_weight: the Ray trainer actors keep hard labels only')
        # Soft targets are decoded only when the distillers use them.
        self.use_soft = p['soft_weight'] > 0 and self.ray is None
        self.recipe = pf.Recipe(rule=p['policy_rule'],
                                target_upload_ratio=p['target_upload_ratio'],
                                min_disagreement=p['min_disagreement'], explore=p['explore'],
                                window=p['policy_window'], burst=p['budget_burst'],
                                save=p['budget_save'], reserve=p['budget_reserve'])
        self.get_logger().info(
            f'initial weights {path} ({self.meta.arch} v{self.meta.version}, input '
            f'{self.meta.input_size}); pushes to {p["service_pattern"]} ({p["push_mode"]})')

        self.lock = threading.Lock()  # robots, join tables, counters
        self.push_lock = threading.RLock()  # each robot's push state machine
        self.robots: dict[str, Robot] = {}
        self.joiner = Joiner(p['join_max'], p['join_timeout'])  # under self.lock
        self.counts = dict.fromkeys(['frames', 'labels', 'pairs', 'soft', 'bad', 'untrusted'], 0)
        self.clients_group = ReentrantCallbackGroup()
        data_group = MutuallyExclusiveCallbackGroup()
        # Frames come from the bridge beside us, not from the robots: each hard frame crosses
        # a robot's uplink once.
        reliable = qos(ifc.TRAINER)
        self.create_subscription(HardFrame, ifc.CLOUD_FRAMES, self._on_frame, reliable,
                                 callback_group=data_group)
        log_read_cap(self, ifc.CLOUD_FRAMES, HardFrame)
        self.create_subscription(CloudLabel, ifc.CLOUD_LABELS, self._on_label,
                                 reliable, callback_group=data_group)
        log_read_cap(self, ifc.CLOUD_LABELS, CloudLabel)
        self.pub_push = self.create_publisher(WeightPush, ifc.WEIGHT_PUSHES, reliable)
        self.create_timer(0.25, self._tick, callback_group=MutuallyExclusiveCallbackGroup())
        self.diagnostics = Diagnostics(self, diagnostics.trainer_status)
        self.create_timer(DIAGNOSTICS_PERIOD, self._publish_diagnostics)

    def _publish_diagnostics(self) -> None:
        with self.lock:
            robots = {r.robot_id: {'teacher_ok': r.teacher_ok, 'pairs': r.pairs,
                                   'pushes': dict(r.pushes)} for r in self.robots.values()}
            now = {'counts': dict(self.counts), 'robots': robots}
        self.diagnostics.update(now)

    # --- joining hard frames and cloud labels -----------------------------------------
    def _on_frame(self, msg: HardFrame) -> None:
        with self.lock:
            self.counts['frames'] += 1
            label = self.joiner.add_frame(msg)
        if label is not None:
            self._pair(msg, label)

    def _on_label(self, msg: CloudLabel) -> None:
        with self.lock:
            self.counts['labels'] += 1
            frame = self.joiner.add_label(msg)
        if frame is not None:
            self._pair(frame, msg)

    def _pair(self, frame: HardFrame, label: CloudLabel) -> None:
        if self.hmac_key is not None:  # a forged label must not train a robot's model
            try:
                signing.verify_label(self.hmac_key, label)
            except ValueError as e:
                with self.lock:
                    self.counts['bad'] += 1
                self.get_logger().warning(f'refused label {label.robot_id[:40]!r}#{label.seq}:'
                                          f' {e}', throttle_duration_sec=5.0)
                return
        robot = self._robot(frame.robot_id)
        if not self._trust(robot, label):
            return
        try:
            rgb = codecs.compressed_to_rgb(frame.image)
            lab = codecs.compressed_to_label(label.label)
            if lab.shape != rgb.shape[:2]:
                raise codecs.CodecError(f'label {lab.shape} vs frame {rgb.shape[:2]}')
            conf = None
            if len(label.confidence.data):
                grid = codecs.compressed_to_label(label.confidence, max_pixels=lab.size)
                fusion.check_grid(grid.shape, lab.shape)
                conf = fusion.from_grid(grid, lab.shape)
        except (codecs.CodecError, ValueError) as e:
            with self.lock:
                self.counts['bad'] += 1
            self.get_logger().warning(f'unusable pair {frame.robot_id}#{frame.seq}: {e}',
                                      throttle_duration_sec=5.0)
            return
        feats = np.asarray(frame.features, np.float64)
        prop = pf.propensity(robot.policy, feats) if feats.size == 3 else 1.0
        stamp = frame.header.stamp.sec + frame.header.stamp.nanosec * 1e-9
        seq = self._continued_seq(robot, int(frame.seq), stamp)
        soft = {'soft': self._soft(frame)} if self.use_soft else {}
        robot.distiller.add(rgb, lab, seq, feats if feats.size else None, prop, conf, **soft)
        with self.lock:
            self.counts['pairs'] += 1
            self.counts['soft'] += int(soft.get('soft') is not None)
            robot.pairs += 1

    def _soft(self, frame: HardFrame) -> np.ndarray | None:
        """Return the bridge's class probabilities of ``frame`` (CxHxW uint8), None if none."""
        st = frame.soft
        if not st.classes:
            return None
        if (st.classes != self.meta.num_classes or not st.height or not st.width
                or len(st.data) != st.classes * st.height * st.width):
            self.get_logger().warning(
                f'soft targets of {frame.robot_id[:40]!r}#{frame.seq} ignored: {st.classes}x'
                f'{st.height}x{st.width} in {len(st.data)} bytes for {self.meta.num_classes} '
                'classes', throttle_duration_sec=5.0)
            return None
        return np.frombuffer(bytes(st.data), np.uint8).reshape(st.classes, st.height, st.width)

    def _trust(self, robot: Robot, label: CloudLabel) -> bool:
        """Follow the label's teacher verdict; False: do not learn from this label."""
        ok = label.teacher_state != CloudLabel.TEACHER_UNHEALTHY
        if ok != robot.teacher_ok:
            robot.teacher_ok = ok
            if ok:
                self.get_logger().info(f'{robot.robot_id}: cloud teacher healthy again '
                                       f'(health {label.teacher_health:.2f}): learning resumes')
            else:
                # The labels that formed the verdict were sent as healthy: take them back.
                n = robot.distiller.forget_recent(self.p['forget_on_trip'])
                self.get_logger().warning(
                    f'{robot.robot_id}: cloud teacher unhealthy on this stream (health '
                    f'{label.teacher_health:.2f}): not learning from its labels, not pushing; '
                    f'{n} recent pairs taken back')
        if not ok:
            with self.lock:
                self.counts['untrusted'] += 1
        return ok

    def _continued_seq(self, robot: Robot, seq: int, stamp: float) -> int:
        with self.lock:  # a late label's frame has an old stamp: no restart (pairing)
            s, restarted = robot.seq(seq, stamp)
        if restarted:
            self.get_logger().info(f'{robot.robot_id}: seq went back to {seq} (edge '
                                   f'restarted?): continued as {s}')
        return s

    def _robot(self, robot_id: str) -> Robot:
        with self.lock:
            robot = self.robots.get(robot_id)
            if robot is not None:
                return robot
            if self.ray is not None:
                dist = self.ray.distiller(robot_id, self.cfg, self.state, self.meta.version)
            else:
                dist = Distiller(self.state, self.meta, self.cfg, anchor_set=self.anchor,
                                 rehearsal=self.rehearsal)
            srv = self.p['service_pattern'].format(robot_id=robot_id)
            client = self.create_client(UpdateWeights, srv, callback_group=self.clients_group)
            robot = Robot(robot_id, dist, self.initial_policy, client,
                          edge_base=self.initial_base)
            self.robots[robot_id] = robot
        self.get_logger().info(f'new robot {robot_id!r}: own model from v{self.meta.version}, '
                               f'updates via {srv}')
        if self.p['push_mode'] != 'policy':
            dist.on_candidate = lambda cand, r=robot: self._on_candidate(r, cand)
            dist.start()
        return robot

    # --- candidates -> requests -------------------------------------------------------
    def _on_candidate(self, robot: Robot, cand: Candidate) -> None:
        # Distiller worker thread: fitting the policy here keeps the executor responsive.
        heap.trim()  # the round's activations are freed: hand their pages back
        policy = None
        if self.p['push_mode'] == 'weights_and_policy':
            policy = self._fit_policy(robot, cand.state)
        m = self.p['gate_metric']
        with self.push_lock:
            base = robot.edge_base
        push = self._weights_push(robot, cand, policy, self.p['push_encoding'], base)
        gain = cand.val_after.get(m, math.nan) - cand.val_before.get(m, math.nan)
        verdict = push_cost.pays(gain, push.bytes, self.p['push_bytes_per_point'])
        self.get_logger().info(
            f'{robot.robot_id}: candidate v{cand.version} ({push.encoding} push {push.bytes} '
            f'bytes, full {push.bytes_full}), {m} vs cloud '
            f'{cand.val_before.get(m, math.nan):.4f} -> {cand.val_after.get(m, math.nan):.4f} '
            f'after {cand.steps} steps on {cand.frames_seen} frames')
        if not verdict.push:  # the student trains on; a later candidate may pay
            self.get_logger().info(f'{robot.robot_id}: candidate v{cand.version} not pushed: '
                                   f'{verdict.reason}')
            robot.distiller.reject(cand)
            return
        with self.push_lock:
            robot.push = push

    def _weights_push(self, robot: Robot, cand: Candidate, policy: Policy | None,
                      encoding: str, base: PushBase | None, policy_version: int = 0) -> Push:
        """Return the push of ``cand`` as ``encoding`` (a delta over ``base`` when given)."""
        full = self._request(robot, cand.version, cand.data, cand.sha256, policy,
                             policy_version=policy_version)
        bytes_full = len(serialize_message(full))
        # WeightPush reports pixel accuracy (its definition); the gate may use mIoU.
        acc = (cand.val_before.get('pixel_acc', math.nan),
               cand.val_after.get('pixel_acc', math.nan))
        if encoding == 'full' or base is None:
            push = Push(full, cand, policy, *acc, encoding='full',
                        base=PushBase(cand.version, delta.state_sha256(cand.state), cand.state),
                        bytes_full=bytes_full)
        else:
            blob = delta.encode(cand.state, base.state, encoding)
            rebuilt = delta.apply(base.state, blob)  # exactly what the edge will hold
            digest = delta.state_sha256(rebuilt)
            req = self._request(robot, cand.version, blob, digest, policy,
                                fmt=delta.FORMAT, base=base,
                                policy_version=full.policy_version)
            push = Push(req, cand, policy, *acc, encoding=encoding,
                        base=PushBase(cand.version, digest, rebuilt), bytes_full=bytes_full)
        push.bytes = len(serialize_message(push.request))
        return push

    def _fit_policy(self, robot: Robot, state: dict) -> Policy | None:
        try:
            if self.ray is not None:  # in the robot's actor, beside its pairs
                fit = robot.distiller.fit_policy(state, self.recipe)
            else:
                fit = pf.fit_policy(robot.distiller, state, self.recipe)
        except ValueError as e:  # too few frames: keep the robot's policy
            self.get_logger().info(f'{robot.robot_id}: policy not refitted: {e}')
            return None
        self.get_logger().info(
            f'{robot.robot_id}: policy {fit.policy.rule} threshold {fit.policy.threshold:.4f}, '
            f'expected upload ratio {fit.expected_upload_ratio:.3f} on {fit.info["pairs"]} '
            'frames')
        return fit.policy

    def _request(self, robot: Robot, version: int, data: bytes, sha: str,
                 policy: Policy | None, fmt: str = FULL_FORMAT, base: PushBase | None = None,
                 policy_version: int = 0) -> UpdateWeights.Request:
        req = UpdateWeights.Request(version=int(version), format=fmt if data else '',
                                    sha256=sha if data else '')
        req.weights = array.array('B', data)  # a memcpy; bytes would be checked per element
        if base is not None and data and fmt == delta.FORMAT:
            req.base_version, req.base_sha256 = int(base.version), base.sha256
        if policy is not None:
            keys, values = policy.to_lists()
            req.policy = PolicyMsg(rule=policy.rule, keys=keys, values=values)
            req.policy_version = policy_version or self._next_policy_version(robot)
        if self.hmac_key is not None:
            req.signature = signing.sign_request(self.hmac_key, req, robot.robot_id)
        return req

    def _next_policy_version(self, robot: Robot) -> int:
        # Wall-clock microseconds keep versions growing across trainer restarts; the edge's
        # reported last version (robot.policy_version) covers a clock that went back.
        with self.push_lock:
            robot.policy_version = max(robot.policy_version + 1, time.time_ns() // 1000)
            return robot.policy_version

    def _policy_only(self, robot: Robot) -> None:
        d = robot.distiller
        if robot.pairs - robot.pairs_at_policy_fit < self.p['policy_min_pairs']:
            return
        robot.pairs_at_policy_fit = robot.pairs
        policy = self._fit_policy(robot, d.active)
        if policy is not None:
            with self.push_lock:
                robot.push = Push(self._request(robot, d.active_version, b'', '', policy),
                                  None, policy)

    # --- the push machinery: one call in flight per robot -----------------------------
    def _tick(self) -> None:
        with self.lock:
            robots = list(self.robots.values())
        for robot in robots:
            if self.p['push_mode'] == 'policy' and robot.push is None:
                self._policy_only(robot)
            with self.push_lock:
                self._advance(robot, time.monotonic())

    def _advance(self, robot: Robot, now: float) -> None:
        push = robot.push
        if push is None:
            return
        if not robot.teacher_ok and push.future is None:
            # Whatever it learned, it learned from a teacher now judged unfit: drop it
            # unsent (nothing crossed the link, so no WeightPush).
            if push.candidate is not None:
                robot.distiller.reject(push.candidate)
            robot.push = None
            self.get_logger().info(f'{robot.robot_id}: update v{push.request.version} not '
                                   'sent: the cloud teacher is unhealthy on this stream')
            return
        if push.future is not None:  # in flight: only the timeout is ours to handle
            if not push.future.done() and now - push.sent_at > self.p['call_timeout']:
                robot.client.remove_pending_request(push.future)
                push.future = None
                self._retry(robot, push, f'no response in {self.p["call_timeout"]:.0f} s',
                            at_least=self.p['call_timeout'])
            return
        if now < push.next_try:
            return
        if not robot.client.service_is_ready():
            self._retry(robot, push, f'service {robot.client.srv_name} not available')
            return
        push.attempts += 1
        push.sent_at = now
        push.future = robot.client.call_async(push.request)
        push.future.add_done_callback(lambda f, r=robot, q=push: self._done(r, q, f))

    def _retry(self, robot: Robot, push: Push, why: str, at_least: float = 0.0) -> None:
        push.failures += 1
        if push.failures >= self.p['max_attempts']:
            self.get_logger().error(f'{robot.robot_id}: giving up update v{push.request.version} '
                                    f'after {push.failures} failures ({why})')
            robot.pushes['failed'] += 1
            self._finish(robot, push, accepted=False, reason=f'gave up: {why}', active=0)
            return
        delay = backoff_delay(push.failures, self.p['retry_initial'], self.p['retry_max'],
                              at_least)
        push.next_try = time.monotonic() + delay
        self.get_logger().warning(f'{robot.robot_id}: update v{push.request.version}: {why}; '
                                  f'retry in {delay:.1f} s', throttle_duration_sec=5.0)

    def _done(self, robot: Robot, push: Push, future) -> None:
        with self.push_lock:
            if push.future is not future or robot.push is not push:
                return  # timed out and already being retried
            try:
                res = future.result()
            except Exception as e:  # a failed call is retried like a missing service
                push.future = None
                self._retry(robot, push, f'call failed: {e!r}')
                return
            accepted, reason = res.accepted, res.reason
            robot.policy_version = max(robot.policy_version, int(res.active_policy_version))
            if (not accepted and push.attempts > 1 and push.request.weights
                    and res.active_version == push.request.version):
                # An abandoned (timed-out) attempt was applied after all: same version.
                accepted, reason = True, f'ok (applied by an earlier attempt; edge: {reason})'
            if (not accepted and push.encoding in delta.ENCODINGS
                    and res.active_sha256 != push.request.base_sha256):
                # The edge holds another base (restarted, or never had ours): the bytes
                # crossed the link, so the refusal is published; the same candidate goes
                # again whole, at once.
                self._publish(robot, push, False, reason, res.active_version)
                robot.pushes['rejected'] += 1
                robot.edge_base = None
                robot.push = self._weights_push(robot, push.candidate, push.policy, 'full',
                                                None)
                self.get_logger().info(f'{robot.robot_id}: edge holds base '
                                       f'{res.active_sha256[:12]}, not '
                                       f'{push.request.base_sha256[:12]}: sending '
                                       f'v{push.request.version} as a full push')
                return
            robot.pushes['accepted' if accepted else 'rejected'] += 1
            self._finish(robot, push, accepted, reason, res.active_version)

    def _finish(self, robot: Robot, push: Push, accepted: bool, reason: str,
                active: int) -> None:
        d = robot.distiller
        if push.candidate is not None:
            if accepted:
                if push.base is not None:  # before commit: the next candidate deltas on it
                    robot.edge_base = push.base
                d.commit(push.candidate)
            else:
                d.reject(push.candidate)
                # An edge already ahead (e.g. resumed from its state_dir): number past it.
                d.ensure_version_above(active)
        if accepted and push.policy is not None:
            robot.policy = push.policy
        msg = self._publish(robot, push, accepted, reason, active)
        log = self.get_logger().info if accepted else self.get_logger().warning
        log(f'{robot.robot_id}: update v{push.request.version} ({msg.bytes} bytes, '
            f'{push.encoding or "policy"}) {"accepted" if accepted else "rejected"}: {reason}; '
            f'edge active v{active}')
        if robot.push is push:
            robot.push = None

    def _publish(self, robot: Robot, push: Push, accepted: bool, reason: str,
                 active: int) -> WeightPush:
        """Publish one completed call on /laecips/weight_pushes (the bytes that crossed)."""
        d = robot.distiller
        msg = WeightPush(stamp=self.get_clock().now().to_msg(), robot_id=robot.robot_id,
                         version=push.request.version, active_version=int(active),
                         bytes=len(serialize_message(push.request)), accepted=bool(accepted),
                         encoding=push.encoding, bytes_full=int(push.bytes_full),
                         reason=str(reason), val_before=float(push.val_before),
                         val_after=float(push.val_after), steps=d.steps,
                         frames_seen=d.frames_seen, policy=push.request.policy,
                         anchor_miou=float(push.candidate.anchor.get('miou', math.nan)
                                           if push.candidate else math.nan),
                         anchor_miou_factory=float(d.anchor_factory.get('miou', math.nan)))
        self.pub_push.publish(msg)
        return msg

    def close(self) -> None:
        """Stop every robot's training thread (backend ray: then leave Ray)."""
        for robot in list(self.robots.values()):
            robot.distiller.stop()
        if self.ray is not None:
            self.ray.close()


def main(args: list[str] | None = None) -> None:
    # Every callback is short (training has its own threads, pushes are call_async). Hard
    # frames and labels are capped at the transport (laecips_core.dds) before the DDS
    # participant exists.
    heap.pin_mmap_threshold()  # a trainer runs for weeks: freed frames go back to the system
    with dds.capped_process(dds.final_names(args, 'trainer',
                                            (ifc.CLOUD_FRAMES, ifc.CLOUD_LABELS)), 'trainer'):
        run_node(TrainerNode, args)


if __name__ == '__main__':
    main()
