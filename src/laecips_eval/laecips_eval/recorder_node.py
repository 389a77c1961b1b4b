# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Record one system run for the evaluation: ground truth, masks, uploads, labels, pushes.

Subscribes (all names are parameters) the replay's ground truth, the edge's ``mask`` and
``mask_refined``, ``/laecips/hard_frames``, ``/laecips/cloud_labels`` (serialized sizes are
counted from the raw CDR bytes), ``/laecips/weight_pushes`` and ``/laecips/stats``. Prints
``ready`` once the publishers, subscribers and nodes named in ``require_publishers``,
``require_subscribers`` and ``require_nodes`` exist (for topics it subscribes itself: once
its subscription has matched a publisher), so the replay can start. Finishes when
``expect_frames`` ground truths are in, the last frame has a mask, every upload a label,
every label a refined mask, and the edge's stats account for every frame and upload (or
nothing new came for ``idle_timeout`` s after the last ground truth, or ``max_time``
passed), then scores the run (:mod:`laecips_eval.recorder`) and writes ``output`` (JSON)
and, for the frames in ``keep_frames``, ``output`` with suffix ``.npz`` (edge and final
masks).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
import sys
import threading
import time

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image

from laecips_core import dds
from laecips_core import interface as ifc
from laecips_eval import bags
from laecips_eval.recorder import Recording
from laecips_msgs.msg import CloudLabel, CloudStats, EdgeStats, HardFrame, WeightPush
from laecips_ros.node import interrupted, log_read_cap, ros_session

# CloudStats fields kept; the outcomes of the frames it accepted (laecips_core.schedule).
CLOUD_OUTCOMES = ('labelled_in_time', 'labelled_late', 'labelled_for_training',
                  'dropped_queue')
CLOUD_KEYS = ('frames_in', 'labels_out', 'rejected', 'queue_len', 'load', 'overloaded',
              'seconds_per_frame') + CLOUD_OUTCOMES


def _stamp_ns(stamp) -> int:
    return stamp.sec * 10**9 + stamp.nanosec


class RecorderNode(Node):

    def __init__(self) -> None:
        super().__init__('eval_recorder')
        d = self._declare
        self.output = d('output', '', 'JSON file to write (npz of kept masks beside it)')
        self.expect = d('expect_frames', 0, 'ground-truth frames the replay will send')
        self.deadline = d('deadline', 1.0, 'seconds after the edge mask a refined mask counts')
        self.idle_timeout = d('idle_timeout', 10.0, 'finish after this long without news')
        self.max_time = d('max_time', 3600.0, 'finish after this many seconds in any case')
        self.keep = set(d('keep_frames', [-1], 'frame indices whose masks are saved'))
        self.req_pubs = [t for t in d('require_publishers', [''], 'topics that need a '
                                      'publisher before ready') if t]
        self.req_subs = [t for t in d('require_subscribers', [''], 'topics that need a '
                                      'subscriber (besides this node) before ready') if t]
        self.req_nodes = [n for n in d('require_nodes', [''], 'node names that must exist '
                                       'before ready') if n]
        topics = {
            'gt': d('gt_topic', '/camera/ground_truth', 'ground truth (mono8)'),
            'mask': d('mask_topic', '/robot1/edge/mask', "the edge's mask (mono8)"),
            'refined': d('refined_topic', '/robot1/edge/mask_refined',
                         "the cloud's mask, republished by the edge"),
            'hard': d('hard_frames_topic', '/laecips/hard_frames', 'uploads'),
            'labels': d('labels_topic', '/laecips/cloud_labels', 'cloud labels'),
            'pushes': d('pushes_topic', '/laecips/weight_pushes', 'weight pushes'),
            'stats': d('stats_topic', '/laecips/stats', 'edge statistics'),
            'cloud_stats': d('cloud_stats_topic', '/laecips/stats_cloud', 'bridge statistics'),
        }
        mask_rel = d('mask_reliability', 'reliable', 'QoS of the mask topics')
        data_rel = d('data_reliability', 'reliable', 'QoS of hard frames, labels, pushes')
        depth = d('depth', 100, 'subscription history depth')
        self.rec = Recording()
        self.lock = threading.Lock()
        self.last_event = time.monotonic()
        self.last_hard = 0.0
        self.started = time.monotonic()
        self.done = threading.Event()

        def qos(rel: str) -> QoSProfile:
            return QoSProfile(depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT
                              if rel == 'best_effort' else ReliabilityPolicy.RELIABLE)

        sub = self.create_subscription
        self.subs = {
            topics['gt']: sub(Image, topics['gt'], self._on_gt, qos('reliable'), raw=True),
            topics['mask']: sub(Image, topics['mask'], self._on_mask, qos(mask_rel), raw=True),
            topics['refined']: sub(Image, topics['refined'], self._on_refined, qos(mask_rel),
                                   raw=True),
            topics['hard']: sub(HardFrame, topics['hard'], self._on_hard, qos(data_rel),
                                raw=True),
            topics['labels']: sub(CloudLabel, topics['labels'], self._on_label, qos(data_rel),
                                  raw=True),
            topics['pushes']: sub(WeightPush, topics['pushes'], self._on_push, qos(data_rel)),
            topics['stats']: sub(EdgeStats, topics['stats'], self._on_stats,
                                 qos('best_effort')),
            topics['cloud_stats']: sub(CloudStats, topics['cloud_stats'], self._on_cloud_stats,
                                       qos('best_effort')),
        }
        log_read_cap(self, topics['hard'], HardFrame)
        log_read_cap(self, topics['labels'], CloudLabel)
        self.own_subs = set(topics.values())
        self.ready = False
        self.create_timer(0.1, self._tick)

    def _declare(self, name: str, default, description: str):
        value = self.declare_parameter(
            name, default, ParameterDescriptor(description=description)).value
        return default if value is None else value

    # ---- callbacks ---------------------------------------------------------------------
    def _event(self) -> None:
        self.last_event = time.monotonic()

    def _on_gt(self, raw: bytes) -> None:
        msg = deserialize_message(raw, Image)
        phase, _, name = msg.header.frame_id.partition('/')
        with self.lock:
            self.rec.on_gt(_stamp_ns(msg.header.stamp), phase, name,
                           bags.image_array(msg).copy())
            self._event()

    def _image(self, raw: bytes) -> tuple[int, np.ndarray]:
        msg = deserialize_message(raw, Image)
        return _stamp_ns(msg.header.stamp), bags.image_array(msg).copy()

    def _on_mask(self, raw: bytes) -> None:
        t = time.time_ns()
        stamp, mask = self._image(raw)
        with self.lock:
            self.rec.on_edge_mask(stamp, mask, t)
            self._event()

    def _on_refined(self, raw: bytes) -> None:
        t = time.time_ns()
        stamp, mask = self._image(raw)
        with self.lock:
            self.rec.on_refined(stamp, mask, t)
            self._event()

    def _on_hard(self, raw: bytes) -> None:
        msg = deserialize_message(raw, HardFrame)
        with self.lock:
            self.rec.on_hard_frame(_stamp_ns(msg.header.stamp), len(raw), float(msg.hardness),
                                   [float(x) for x in msg.features])
            self.last_hard = time.monotonic()
            self._event()

    def _on_label(self, raw: bytes) -> None:
        msg = deserialize_message(raw, CloudLabel)
        with self.lock:
            self.rec.on_label(_stamp_ns(msg.header.stamp), len(raw),
                              msg.purpose == CloudLabel.PURPOSE_TRAINING)
            self._event()

    def _on_push(self, msg: WeightPush) -> None:
        push = {'t_ns': time.time_ns(), 'stamp_ns': _stamp_ns(msg.stamp),
                'version': msg.version, 'active_version': msg.active_version,
                'bytes': msg.bytes, 'accepted': msg.accepted, 'reason': msg.reason,
                'encoding': msg.encoding, 'bytes_full': msg.bytes_full,
                'val_before': msg.val_before, 'val_after': msg.val_after,
                'steps': msg.steps, 'frames_seen': msg.frames_seen,
                'policy': {'rule': msg.policy.rule,
                           'params': dict(zip(msg.policy.keys, msg.policy.values))}}
        with self.lock:
            self.rec.on_weight_push(push)

    def _on_cloud_stats(self, msg: CloudStats) -> None:
        with self.lock:
            self.rec.cloud = {k: getattr(msg, k) for k in CLOUD_KEYS}
            self.rec.cloud['t_recv'] = time.monotonic()

    def _cloud_settled(self) -> bool:
        # Uploads the bridge dropped get no label: once its stats (received after the last
        # upload seen here) show nothing waiting or in the labeller, none will come. Also
        # required when a bridge reports at all, so the run keeps its final counts.
        c = self.rec.cloud
        return bool(c) and c['t_recv'] > self.last_hard + 0.5 and c['frames_in'] == (
            c['rejected'] + sum(c[k] for k in CLOUD_OUTCOMES))

    def _on_stats(self, msg: EdgeStats) -> None:
        with self.lock:
            self.rec.stats = {k: getattr(msg, k) for k in (
                'frames_in', 'masks_out', 'skipped', 'rejected', 'camera_lost', 'uploaded',
                'bytes_up', 'no_cloud', 'held_back', 'labels_in', 'bytes_down',
                'updates_accepted', 'updates_rejected', 'labels_untrusted', 'fused_fraction',
                'cloud_trusted', 'weight_bytes_in', 'model_version', 'upload_ratio',
                'bn_shift', 'bn_adapted', 'bn_harm_trips')}

    # ---- progress ----------------------------------------------------------------------
    def _graph_ready(self) -> bool:
        if self.req_nodes:
            names = set(self.get_node_names())
            if any(n.rsplit('/', 1)[-1] not in names for n in self.req_nodes):
                return False
        for t in self.req_pubs:
            # Our own subscriptions must have matched a publisher (not only seen it in the
            # graph), or the first messages could be missed.
            own = self.subs.get(t)
            if (own.get_publisher_count() if own else self.count_publishers(t)) < 1:
                return False
        for t in self.req_subs:
            if self.count_subscribers(t) < 1 + (t in self.own_subs):
                return False
        return True

    def _tick(self) -> None:
        if not self.ready:
            if self._graph_ready():
                self.ready = True
                self.started = time.monotonic()
                print('ready', flush=True)
            return
        now = time.monotonic()
        with self.lock:
            n = len(self.rec.gts)
            complete = (n >= self.expect > 0 and self.rec.last_frame_done()
                        and (self.rec.pending_labels() == 0 or self._cloud_settled())
                        and (not self.rec.cloud or self._cloud_settled())
                        and self.rec.pending_refined() == 0 and self._edge_settled(n))
        idle = n >= 1 and now - self.last_event > self.idle_timeout
        if complete or idle or now - self.started > self.max_time:
            self.done.set()

    def _edge_settled(self, n: int) -> bool:
        # The last mask can arrive before the last frame's upload: wait until the edge's
        # own counters say every frame is handled and every upload it made was seen here.
        s = self.rec.stats
        return bool(s) and s['frames_in'] >= n and len(self.rec.hard) >= s['uploaded'] and (
            s['frames_in'] == s['masks_out'] + s['skipped'] + s['rejected'])

    def write(self) -> dict:
        """Score the run and write the output files; return the summary written."""
        with self.lock:
            frames = self.rec.finalize(self.deadline, keep=self.keep)
            out = {'frames': [f.to_dict() for f in frames], 'pushes': self.rec.pushes,
                   'edge_stats': self.rec.stats, 'cloud_stats': self.rec.cloud,
                   'totals': {'gt': len(self.rec.gts), 'edge_masks': len(self.rec.edge),
                              'refined_masks': len(self.rec.refined),
                              'hard_frames': len(self.rec.hard),
                              'labels': len(self.rec.labels),
                              'labels_training': len(self.rec.training),
                              'bytes_hard_frames': self.rec.bytes_hard_total,
                              'bytes_labels': self.rec.bytes_labels_total},
                   'deadline_s': self.deadline, 'expect_frames': self.expect}
        if self.output:
            path = Path(self.output)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(out, default=_json_default))
            kept = {f'{kind}_{f.index}': getattr(f, f'{kind}_mask') for f in frames
                    for kind in ('edge', 'final') if getattr(f, f'{kind}_mask') is not None}
            if kept:
                np.savez_compressed(path.with_suffix('.npz'), **kept)
        return out


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(type(o).__name__)


def main(args: list[str] | None = None) -> int:
    code = 0
    # Uploads and labels are capped at the transport as on the bridge, edges and trainer
    # (laecips_core.dds; under their remapped names), before the DDS participant exists.
    with dds.capped_process(dds.final_names(args, 'eval_recorder',
                                            (ifc.HARD_FRAMES, ifc.CLOUD_LABELS)), 'recorder'), \
            ros_session(args) as made:
        node = None
        try:
            node = RecorderNode()
            made.append(node)
            executor = rclpy.executors.SingleThreadedExecutor()  # short callbacks only
            executor.add_node(node)
            # Spun from this thread: a spin thread still inside rcl when the interpreter
            # exits (executor.shutdown can time out under load) aborted the process
            # ('terminate called without an active exception') after the results were written.
            while not node.done.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.2)
            out = node.write()
            t = out['totals']
            nan = sum(1 for f in out['frames'] if math.isnan(f['latency_s']))
            node.get_logger().info(f'recorded {t["gt"]} frames ({t["edge_masks"]} edge masks, '
                                   f'{t["refined_masks"]} refined, {t["hard_frames"]} uploads, '
                                   f'{t["labels"]} labels, {len(out["pushes"])} pushes, '
                                   f'{nan} without a mask)')
            executor.shutdown(timeout_sec=2.0)
        except BaseException as e:
            if not interrupted(e):
                raise
            code = 130
            if node is not None:
                node.write()
    return code


if __name__ == '__main__':
    sys.exit(main())
