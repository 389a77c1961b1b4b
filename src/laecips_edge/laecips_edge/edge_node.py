# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The edge node: segment the camera stream, send hard frames to the cloud, take new weights.

The camera callback only keeps the newest frame (a replaced frame counts as skipped); a
worker thread decodes, segments, publishes ``~/mask`` (and the colour views while someone
subscribes), scores hardness and asks the upload policy. ``~/update_weights`` checks and
builds a new model on its own thread and swaps it in between two frames.

One single-threaded executor (``laecips_ros.node.run_node``) serves camera, labels, stats
and the service: every callback is short.

Bad input never stops the node: a malformed or oversized frame, a cloud label that is not
for a frame this node uploaded (or has the wrong size or class ids), and a refused update
(too large, unsigned or badly signed, not safetensors, wrong or non-finite tensors) each
add one to a counter in /laecips/stats (``rejected``, ``labels_rejected``,
``updates_rejected``) and log one line (repeats of one kind at most every ``LOG_PERIOD``).
Algorithms live in laecips_edge.engine and laecips_core.{hardness,policy,weights,codecs,
signing}; this file wires them.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
import json
import math
import os
import re
import threading
import time

import numpy as np
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.serialization import serialize_message
from rclpy.task import Future
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from laecips_core import bn_adapt, codecs, dds, diagnostics, fusion, signing, weights
from laecips_core import interface as ifc
from laecips_core.camera_loss import CameraLoss
from laecips_core.drift import DriftDetector
from laecips_core.policy import Backoff, Budget, ByteBudget, Policy, PolicyError, parse_params
from laecips_core.update_gate import PolicyVersions, PushBase, check_update
from laecips_edge import engine
from laecips_edge.factory import factory_weights
from laecips_msgs.msg import (
    ClassMap,
    CloudLabel,
    CloudStats,
    EdgeStats,
    FrameHeader,
    FrameImage,
    HardFrame,
)
from laecips_msgs.msg import Policy as PolicyMsg
from laecips_msgs.srv import UpdateWeights
from laecips_ros import class_map as class_map_msg
from laecips_ros.diagnostics import Diagnostics
from laecips_ros.node import check_choices, declare_params, log_read_cap, qos, run_node

# Uploads whose label may still come back: (h, w) by (seq, stamp). At 30 uploads/s this
# covers half a minute of cloud latency; a label for a frame forgotten by then is dropped.
UPLOAD_MEMORY = 1024


# HardFrame is bounded (its readers in the cloud are capped at the transport, #17): an upload
# over these is not sent. The image bound covers any JPEG of upload_max_pixels' 4 Mpx range.
MAX_UPLOAD_BYTES = dds.msg_bound(FrameImage, 'data')
MAX_FRAME_ID = dds.msg_bound(FrameHeader, 'frame_id')
# Seconds between two log lines of the same kind of bad input (the counters count all).
LOG_PERIOD = 5.0
# Update requests taken but not yet answered (each may be up to max_update_bytes).
MAX_QUEUED_UPDATES = 2
# The bound of UpdateWeights.weights (the .srv file is the one place it is stated).
MAX_REQUEST_WEIGHTS = next(t.maximum_size for n, t in zip(
    UpdateWeights.Request.get_fields_and_field_types(), UpdateWeights.Request.SLOT_TYPES)
    if n == 'weights')


class EdgeNode(Node):

    PARAMS = {  # name: (default, description)
        'weights': ('', 'safetensors weights file; empty = installed factory weights'),
        'arch': ('', "architecture; empty = the weights' metadata, 'torchscript' = arch_cfg"),
        'arch_cfg': ('', 'JSON kwargs of models.create, e.g. {"path": m.pt, "class_map": c}'),
        'device': ('cpu', 'torch device'),
        # 1 by default: on 2 shared cores a second OpenMP thread that waits for a busy core
        # spins, and the forward pass got 5-10x slower in bench_edge under load.
        'num_threads': (1, 'torch threads; 0 = one per core', (0, 1024)),
        'input_height': (0, "model input height; 0 = the weights' metadata", (0, 16384)),
        'input_width': (0, "model input width; 0 = the weights' metadata", (0, 16384)),
        'mask_res': ('half', "argmax at 'full', 'model', 'half' or 'native' size, then nearest"),
        'jit': (True, 'trace the model (TorchScript) once; updates load into a second copy'),
        'bn_momentum': (0.05, 'test-time BatchNorm adaptation: momentum of the statistics '
                              're-estimated on the stream (edge-local, no bytes); 0 = off',
                        (0.0, 1.0)),
        'bn_rate': (2.0, 'BN adaptation observes at most this many frames per second (each '
                         'an eager forward pass, ~3x an inference); 0 = every frame',
                    (0.0, 1000.0)),
        'bn_refresh': (4, 'observed frames between rebuilds of the fast model with the '
                          'adapted statistics', (1, 1000)),
        'bn_min_shift': (0.05, 'adapted statistics serve only once the stream is this far '
                               "(nats, first BN layer) from the model's own", (0.0, 100.0)),
        'input_type': ('image', "'image' (sensor_msgs/Image) or 'compressed'"),
        'camera_topic': (ifc.CAMERA, 'camera topic (/compressed added for compressed, after '
                                     'remapping: a remap of this name moves both)'),
        'image_qos': ('sensor_data', "'sensor_data' (best effort) or 'reliable'"),
        'image_depth': (10, 'camera frames DDS queues for the node (keep last N); frames '
                            'overwritten there are never seen (counted in camera_lost from '
                            'sequence gaps): raise N if the node can be starved of CPU',
                        (1, 100000)),
        'policy_rule': ('fixed', 'never | always | random | fixed | entropy | learned | quantile'),
        'policy_params': ('', 'policy parameters: JSON or k=v,k=v (e.g. rate=0.2)'),
        'seed': (0, 'seed of the random policy'),
        'upload_max_pixels': (1920 * 1080, "frames are shrunk to at most this many pixels "
                                           "before upload (the labeller's working size): a "
                                           'big camera frame is shrunk here, not in the cloud '
                                           '(at most 4 Mpx: any JPEG that size fits '
                                           "HardFrame's 8 MiB image bound)",
                              (1, 1 << 22)),
        'jpeg_quality': (90, 'JPEG quality of uploaded frames', (1, 100)),
        'send_edge_label': (False, 'attach the edge label map (PNG) to hard frames'),
        'robot_id': ('', 'robot id; empty = the namespace without the leading /'),
        'state_dir': ('', 'folder persisting accepted weights, version and policy; empty = off'),
        'policy_version_file': ('', 'file keeping the last accepted policy version across '
                                    'restarts (replays refused); empty: <state_dir>/'
                                    'policy_version.json, or $ROS_HOME (~/.ros)/laecips/'
                                    '<robot_id>/policy_version.json without a state_dir'),
        'stats_period': (1.0, 'seconds between /laecips/stats and /diagnostics messages',
                         (0.01, 3600.0)),
        'hmac_key_file': ('', 'file holding the shared HMAC key (laecips_core.signing); when '
                              'set, unsigned or badly signed updates and cloud labels are '
                              'refused'),
        'max_pixels': (16 << 20, 'camera frames with more pixels (raw, or decoded from JPEG/PNG)'
                                 ' are rejected before decoding', (1, 1 << 40)),
        'max_update_bytes': (MAX_REQUEST_WEIGHTS, 'update_weights requests with more bytes '
                                                  '(weights + policy) are rejected before any '
                                                  'parsing (DDS drops requests with more '
                                                  'weight bytes than the message bound, 16 '
                                                  'MiB, before that)', (1, 1 << 40)),
        'base_weights': ('', "kept beside pushed weights: each frame is answered by the one "
                             "surer of it (calibrated); empty = the factory weights, 'none' = "
                             'off (pushed weights alone)'),
        'refine': ('fuse', "'fuse': ~/mask_refined takes each pixel from the side with the "
                           "higher calibrated confidence; 'replace': the cloud's label as is"),
        'default_cloud_confidence': (fusion.DEFAULT_CLOUD_CONFIDENCE,
                                     'confidence given to every pixel of a cloud label that '
                                     'carries none (0..1)', (0.0, 1.0)),
        'follow_teacher_health': (True, 'while labels say the teacher is unhealthy, keep the '
                                        'own mask, answer with the base model and upload only '
                                        'probes'),
        'probe_rate': (0.15, 'share of frames uploaded while the teacher is unhealthy, to see '
                            'when it recovers (the budget still applies)', (0.0, 1.0)),
        'follow_cloud_load': (True, 'thin uploads while the cloud bridge reports overload '
                                    '(CloudStats.overloaded; laecips_core.policy.Backoff); '
                                    'frames held so count in held_back'),
        'label_deadline': (0.0, "seconds after an upload's receipt in the cloud within which "
                                'its label helps this edge (HardFrame.deadline); 0: the '
                                "bridge's own deadline", (0.0, 3600.0)),
        'drift_sigmas': (3.0, 'the stream drifts (a budget may spend its savings) while the '
                              "edge's mean entropy, averaged over a few frames, is this many "
                              'spreads above its steady state (laecips_core.drift), or its '
                              "BatchNorm statistics have left the factory model's",
                         (0.1, 100.0)),
        'drift_max_frames': (600, 'a drift no push undoes becomes the new steady state after '
                                  'this many frames', (1, 1 << 24)),
        'upload_bytes_per_s': (0.0, 'uplink budget in bytes/s over hard frames as sent (on '
                                    "top of the policy's frame budget); 0 = none",
                               (0.0, 1e12)),
        'upload_burst_s': (10.0, 'seconds of upload_bytes_per_s the uplink budget may save up',
                           (0.001, 86400.0)),
    }

    def __init__(self, **kwargs):
        super().__init__('edge', **kwargs)
        p = declare_params(self, self.PARAMS)
        check_choices(p, {'refine': ('fuse', 'replace'),
                          'input_type': ('image', 'compressed'),
                          'image_qos': ('sensor_data', 'reliable'),
                          'mask_res': ('full', 'model', 'half', 'native')})
        self.p = p
        self.robot_id = p['robot_id'] or self.get_namespace().strip('/') or self.get_name()
        # A configured key that cannot be read stops the node: running unsigned instead
        # would silently drop the protection the operator asked for.
        self.hmac_key = signing.load_key(p['hmac_key_file']) if p['hmac_key_file'] else None
        engine.set_threads(p['num_threads'])
        self.rng = np.random.default_rng(p['seed'])
        self.segmenter, self.policy = self._load_model(p)
        if p['base_weights'] != 'none' and p['arch'] != 'torchscript':
            sd, meta = weights.load(p['base_weights'] or factory_weights())
            if meta is None:
                raise weights.WeightsError(f'{p["base_weights"]} carries no LAECIPS metadata')
            self.segmenter.set_base(meta, sd)
        self.budget = Budget.of(self.policy)  # the policy's upload budget, if it has one
        # What the trainer last sent (the delta base), apart from the live model, whose
        # normalisation statistics may be adapted here; and the policy versions accepted.
        self.push_base = PushBase.of(self.segmenter.state_dict(), self.segmenter.version)
        self.policy_versions = PolicyVersions(self._policy_version_path(p))
        self.backoff = Backoff()  # the cloud's back-pressure (guarded by self.lock)
        self.drift = DriftDetector(p['drift_sigmas'], p['drift_max_frames'])
        self.byte_budget = (ByteBudget(p['upload_bytes_per_s'], p['upload_burst_s'])
                            if p['upload_bytes_per_s'] > 0 else None)
        self.get_logger().info(
            f'robot {self.robot_id}: {self.segmenter.meta.arch} v{self.segmenter.version} '
            f'input {self.segmenter.input_size}, policy {self.policy.to_json()}')

        # Counters (EdgeStats) and the latest-frame slot, guarded by one lock.
        self.lock = threading.Lock()
        # Held while an accepted update is swapped in, persisted and counted, and while stats
        # are read, so a stats message never shows a new version without its count.
        self.swap_lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.pending = None  # (msg, seq)
        self.harm = bn_adapt.HarmCheck()  # does BN adaptation help? (trusted labels)
        self.c = dict.fromkeys(['frames_in', 'masks_out', 'skipped', 'rejected', 'camera_lost',
                                'uploaded', 'bytes_up', 'no_cloud', 'held_back', 'labels_in',
                                'bytes_down',
                                'labels_rejected', 'labels_untrusted', 'updates_accepted',
                                'updates_rejected', 'weight_bytes_in'], 0)
        self.cloud_trusted = True  # the latest label's teacher verdict (follow_teacher_health)
        self.fused_sum, self.fused_n = 0.0, 0
        self.latencies: deque[float] = deque(maxlen=10000)
        self.period_masks, self.period_start = 0, time.monotonic()
        self.uploads: OrderedDict[tuple[int, int, int], _Upload] = OrderedDict()
        self.log_times: dict[str, tuple[float, int]] = {}  # kind -> (last line, suppressed)

        if p['image_depth'] < 1:
            raise ValueError(f"parameter image_depth must be >= 1, not {p['image_depth']}")
        compressed = p['input_type'] == 'compressed'
        # Resolved with the remapping rules first: '-r /camera/image_raw:=/cam' (the launch
        # files, laecips up) then moves '<camera>/compressed' too, not only the raw topic.
        topic = self.resolve_topic_name(p['camera_topic'])
        if compressed and not topic.endswith('/compressed'):
            topic += '/compressed'
        self.camera_loss = CameraLoss()  # frames DDS dropped before _on_frame (guarded: lock)
        self.camera_sub = self.create_subscription(
            CompressedImage if compressed else Image, topic, self._on_frame,
            qos(ifc.camera_qos(p['image_depth'], p['image_qos'])),
            event_callbacks=SubscriptionEventCallbacks(message_lost=self._on_camera_lost))
        out_qos, link_qos = qos(ifc.EDGE_OUT), qos(ifc.EDGE_LINK)
        self.pub_mask = self.create_publisher(Image, ifc.EDGE_MASK, out_qos)
        self.pub_color = self.create_publisher(Image, ifc.EDGE_MASK_COLOR, out_qos)
        self.pub_overlay = self.create_publisher(Image, ifc.EDGE_OVERLAY, out_qos)
        self.pub_refined = self.create_publisher(Image, ifc.EDGE_MASK_REFINED, out_qos)
        self.pub_refined_color = self.create_publisher(Image, ifc.EDGE_MASK_REFINED_COLOR,
                                                       out_qos)
        # Class names and colours of the masks, latched: late subscribers get it too.
        self.pub_class_map = self.create_publisher(ClassMap, ifc.EDGE_CLASS_MAP,
                                                   qos(ifc.LATCHED))
        self.class_map_sent = None
        self._publish_class_map()
        self.diagnostics = Diagnostics(self, diagnostics.edge_status)
        self.pub_hard = self.create_publisher(HardFrame, ifc.HARD_FRAMES, link_qos)
        self.pub_stats = self.create_publisher(EdgeStats, ifc.EDGE_STATS, link_qos)
        self.create_subscription(CloudLabel, ifc.CLOUD_LABELS, self._on_label, link_qos)
        log_read_cap(self, ifc.CLOUD_LABELS, CloudLabel)
        if p['follow_cloud_load']:
            self.create_subscription(CloudStats, ifc.CLOUD_STATS, self._on_cloud_stats,
                                     qos(ifc.STATS))
            log_read_cap(self, ifc.CLOUD_STATS, CloudStats)
        # An update (parse, check, build, persist) takes a few hundred ms: it runs on its own
        # thread and the service answers when it is done, so frames keep flowing meanwhile.
        self.updater = ThreadPoolExecutor(max_workers=1, thread_name_prefix='edge-update')
        self.updates_queued = 0  # taken but not answered; bounded by MAX_QUEUED_UPDATES
        # Reentrant: the wake-up below must run while the service's coroutine is pending
        # (in a mutually exclusive group it would wait for it: the answer never went out).
        group = ReentrantCallbackGroup()
        self.update_done = self.create_guard_condition(lambda: None, callback_group=group)
        self.create_service(UpdateWeights, ifc.UPDATE_WEIGHTS, self._on_update_async,
                            callback_group=group)
        topic = dds.request_topic(self.resolve_service_name(ifc.UPDATE_WEIGHTS))
        if dds.capped(topic):
            self.get_logger().info(f'update_weights: requests over {MAX_REQUEST_WEIGHTS} weight '
                                   'bytes are dropped by DDS before they take memory')
        else:  # e.g. main() not used: requests are then reassembled whatever their size
            self.get_logger().warning(f'update_weights: no Fast DDS cap on {topic}: an '
                                      'oversize request is reassembled whole before it is '
                                      'checked')
        self.create_timer(p['stats_period'], self._publish_stats)
        self.running = True
        self.worker = threading.Thread(target=self._work, name='edge-infer', daemon=True)
        self.worker.start()

    # --- model and policy -------------------------------------------------------------
    def _load_model(self, p: dict) -> tuple[engine.Segmenter, Policy]:
        opts = engine.Options(mask_res=p['mask_res'], jit=p['jit'], input_size=(
            (p['input_height'], p['input_width']) if p['input_height'] > 0 else None),
            bn_momentum=p['bn_momentum'], bn_refresh=p['bn_refresh'],
            bn_period=1.0 / p['bn_rate'] if p['bn_rate'] > 0 else 0.0,
            bn_min_shift=p['bn_min_shift'])
        policy = Policy(p['policy_rule'], parse_params(p['policy_params']))
        if p['state_dir']:
            try:
                state = weights.load_state(p['state_dir'])
            except weights.WeightsError as e:
                self.get_logger().error(f'ignoring saved state in {p["state_dir"]}: {e}')
                state = None
            if state is not None:
                sd, meta, pol = state
                self.get_logger().info(f'resuming v{meta.version} from {p["state_dir"]}')
                return (engine.Segmenter(meta, sd, opts, p['device']),
                        Policy.from_dict(pol) if pol else policy)
        if p['arch'] == 'torchscript':
            cfg = json.loads(p['arch_cfg'] or '{}')
            meta = weights.WeightsMeta(arch='torchscript', arch_cfg=cfg,
                                       input_size=opts.input_size or (360, 480))
            if cfg.get('class_map'):
                from laecips_core.classes import ClassMap
                meta.class_map = ClassMap.load(cfg['class_map'])
            return engine.Segmenter(meta, None, opts, p['device']), policy
        seg = engine.Segmenter.from_file(p['weights'] or factory_weights(), options=opts,
                                         device=p['device'])
        if p['arch'] and p['arch'] != seg.meta.arch:
            raise weights.WeightsError(f'weights are for {seg.meta.arch}, not {p["arch"]}')
        return seg, policy

    def _policy_version_path(self, p: dict) -> str:
        if p['policy_version_file']:
            return p['policy_version_file']
        if p['state_dir']:
            return os.path.join(p['state_dir'], 'policy_version.json')
        home = os.environ.get('ROS_HOME') or os.path.join(os.path.expanduser('~'), '.ros')
        return os.path.join(home, 'laecips', re.sub(r'[^A-Za-z0-9_.-]', '_', self.robot_id),
                            'policy_version.json')

    def _persist(self) -> None:
        if not self.p['state_dir']:
            return
        meta = self.segmenter.meta
        meta = weights.WeightsMeta(**{**meta.__dict__, 'version': self.push_base.version})
        try:  # the state pushed (the delta base), not what the edge adapted since
            weights.save_state(self.p['state_dir'], self.push_base.state, meta,
                               self.policy.to_dict())
        except OSError as e:  # the update is live; only the restart would lose it
            self.get_logger().error(f'could not persist v{meta.version}: {e}')

    # --- camera -> worker -------------------------------------------------------------
    def _on_frame(self, msg, info: dict) -> None:
        # The writer's sequence numbers show the frames DDS dropped before this callback (a
        # slow node's KEEP_LAST history overwrites them with no event): laecips_core.camera_loss
        single = self.camera_sub.get_publisher_count() == 1
        with self.lock:
            lost = self.camera_loss.frame(info.get('publication_sequence_number'), single,
                                          _gid(info.get('publisher_gid')))
            self.c['camera_lost'] = self.camera_loss.lost
            seq = self.c['frames_in']
            self.c['frames_in'] += 1
            if self.pending is not None:
                self.c['skipped'] += 1
            self.pending = (msg, seq)
            self.wake.notify()
        if lost:
            self._reject('camera_lost', f'{lost} camera frame(s) dropped in DDS before reaching '
                                        f'the node (sequence gap before frame #{seq})',
                         count=False)

    def _work(self) -> None:
        while self.running:
            with self.lock:
                while self.pending is None and self.running:
                    self.wake.wait(0.2)
                item, self.pending = self.pending, None
            if item is None:
                continue
            try:
                self._process(*item)
            except codecs.CodecError as e:
                self._reject('rejected', f'rejected camera frame {_frame_id(item[0], item[1])}'
                                         f': {e}')
            except Exception as e:  # keep segmenting whatever one frame did
                self._reject('rejected', f'camera frame {_frame_id(item[0], item[1])} failed: '
                                         f'{e!r}', error=True)

    def _process(self, msg, seq: int) -> None:
        rgb = codecs.to_rgb(msg, self.p['max_pixels'])
        res = self.segmenter.infer(rgb)
        self.pub_mask.publish(codecs.array_to_image(res.mask, Image, 'mono8', msg.header))
        now = self.get_clock().now()
        stamp = msg.header.stamp
        latency = (now.nanoseconds - (stamp.sec * 10**9 + stamp.nanosec)) / 1e6
        cm = self.segmenter.class_map
        if self.pub_color.get_subscription_count():
            self.pub_color.publish(codecs.array_to_image(engine.colorize(res.mask, cm), Image,
                                                         'rgb8', msg.header))
        if self.pub_overlay.get_subscription_count():
            self.pub_overlay.publish(codecs.array_to_image(engine.overlay(rgb, res.mask, cm),
                                                           Image, 'rgb8', msg.header))
        if self.cloud_trusted:
            want = self.policy.decide(res.features, self.rng)
        else:  # the cloud cannot help here: only probes, to notice when it can again
            want = bool(self.rng.random() < self.p['probe_rate'])
        drifting = self._drifting(float(res.features[1]))
        with self.lock:
            link_ok = self.byte_budget is None or self.byte_budget.admit(time.monotonic())
            send = self.budget.admit(self.backoff.admit(want, self.rng) and link_ok,
                                     drifting=drifting)
            self.c['held_back'] += int(want and not send)
        if send:
            if self.pub_hard.get_subscription_count():
                self._upload(msg, rgb, res, seq)
            else:  # nobody would receive it: skip the JPEG encoding, count it
                with self.lock:
                    self.c['no_cloud'] += 1
        # Counted once the frame is fully handled (upload included), so a stats message with
        # frames_in == masks_out + skipped + rejected also covers every upload it implies.
        with self.lock:
            self.c['masks_out'] += 1
            self.period_masks += 1
            self.latencies.append(latency)

    def _upload(self, msg, rgb: np.ndarray, res: engine.Result, seq: int) -> None:
        # Both BN variants' masks of this frame, for the harm check when its label is back.
        pair = self.segmenter.adaptation_pair(rgb)
        # A TF frame id is short; a longer one is cut to the message's bound (answers are
        # matched by seq and stamp, and this node's own outputs keep the camera's header).
        head = FrameHeader(stamp=msg.header.stamp, frame_id=msg.header.frame_id[:MAX_FRAME_ID])
        hf = HardFrame(header=head, robot_id=self.robot_id, seq=seq,
                       hardness=float(1.0 - res.features[0]),
                       features=[float(v) for v in res.features],
                       model_version=res.version, deadline=float(self.p['label_deadline']))
        up_rgb = codecs.shrink(rgb, self.p['upload_max_pixels'])
        if (up_rgb is rgb and hasattr(msg, 'format') and 'jpeg' in msg.format.lower()
                and len(msg.data) <= MAX_UPLOAD_BYTES):
            image = msg
        else:  # encoded first into an unbounded message: its size is checked before use
            image = codecs.encode_compressed(up_rgb, CompressedImage, 'jpeg',
                                             self.p['jpeg_quality'])
        if len(image.data) > MAX_UPLOAD_BYTES:  # not seen: a 4 Mpx JPEG is at most ~7.9 MiB
            self._reject('held_back', f'frame #{seq} not uploaded: its JPEG has '
                                      f'{len(image.data)} bytes, over the hard-frame bound of '
                                      f'{MAX_UPLOAD_BYTES}')
            return
        hf.image = FrameImage(format='jpeg', data=image.data)
        if self.p['send_edge_label']:  # a 4 Mpx PNG class-id map is at most ~4 MiB: it fits
            label = codecs.encode_compressed(codecs.resize_nearest(res.small, *up_rgb.shape[:2]),
                                             CompressedImage, 'png')
            hf.edge_label = FrameImage(format='png', data=label.data)
        # Remembered before publishing: the label may come back before publish() returns.
        with self.lock:
            self.uploads[_label_key(seq, msg.header.stamp)] = _Upload(
                up_rgb.shape[:2], res.small, res.conf, rgb.shape[:2], msg.header, pair)
            while len(self.uploads) > UPLOAD_MEMORY:
                self.uploads.popitem(last=False)
        self.pub_hard.publish(hf)
        with self.lock:
            nbytes = len(serialize_message(hf))
            self.c['uploaded'] += 1
            self.c['bytes_up'] += nbytes
            if self.byte_budget is not None:
                self.byte_budget.charge(nbytes)

    def _drifting(self, entropy: float) -> bool:
        """Whether the stream drifts now: the edge's entropy, or its BatchNorm statistics."""
        was = self.drift.drifting
        now = self.drift.update(entropy)
        if now != was:
            self.get_logger().info(
                f'drift {"began" if now else "ended"} (mean entropy {self.drift.fast:.3f}, '
                f'steady state {self.drift.mean:.3f})')
        return now or self.segmenter.drifting

    # --- cloud labels -----------------------------------------------------------------
    def _on_label(self, msg: CloudLabel) -> None:
        if msg.robot_id != self.robot_id:
            return
        if msg.purpose == CloudLabel.PURPOSE_TRAINING:  # past its deadline: for the trainer
            return
        try:
            label, up, cloud_conf = self._check_label(msg)
            final = self._refine(msg, label, up, cloud_conf)
        except (codecs.CodecError, ValueError) as e:
            self._reject('labels_rejected', f'rejected cloud label for frame '
                                            f'{_frame_id(msg, msg.seq)}: {e}')
            return
        except Exception as e:  # an exception here would stop the executor, i.e. the node
            self._reject('labels_rejected', f'cloud label for frame {_frame_id(msg, msg.seq)} '
                                            f'failed: {e!r}', error=True)
            return
        # The camera frame's header, not the label's (its frame_id is neither signed nor whole).
        self.pub_refined.publish(codecs.array_to_image(final, Image, 'mono8', up.header))
        if self.pub_refined_color.get_subscription_count():
            self.pub_refined_color.publish(codecs.array_to_image(
                engine.colorize(final, self.segmenter.class_map), Image, 'rgb8', up.header))
        with self.lock:
            self.c['labels_in'] += 1
            self.c['bytes_down'] += len(serialize_message(msg))

    def _refine(self, msg: CloudLabel, label: np.ndarray, up: '_Upload',
                cloud_conf: np.ndarray | float) -> np.ndarray:
        """Return the final mask of an uploaded frame: fused, replaced, or the edge's own."""
        h, w = up.frame_shape
        edge = codecs.resize_nearest(up.small, h, w)
        if label.shape != (h, w):  # uploaded shrunk: answers come back at the camera's size
            label = codecs.resize_nearest(label, h, w)
            if isinstance(cloud_conf, np.ndarray):
                cloud_conf = codecs.resize_nearest(cloud_conf, h, w)
        if self.p['follow_teacher_health']:
            trusted = msg.teacher_state != CloudLabel.TEACHER_UNHEALTHY
            if trusted != self.cloud_trusted:
                self.get_logger().warning(
                    f'cloud teacher {"recovered" if trusted else "unhealthy"} on this stream '
                    f'(health {msg.teacher_health:.2f}): '
                    + ('fusing its labels again' if trusted else 'keeping own masks, uploading '
                       f'probes only ({self.p["probe_rate"]:.0%})'))
            self.cloud_trusted = trusted
            # Pushed weights were learned where the teacher was trusted; on a stream it cannot
            # vouch for, nothing validates them: answer with the base (factory) model, as
            # edge-only would, until trusted labels come back.
            self.segmenter.base_only = not trusted
            if not trusted:
                with self.lock:
                    self.c['labels_untrusted'] += 1
                return edge
        if up.pair is not None:
            self._check_adaptation(label, up.pair)
        if self.p['refine'] == 'replace':
            return label
        edge_conf = codecs.resize_nearest(up.conf, h, w).astype(np.float32) / 255.0
        final, took = fusion.fuse(edge, edge_conf, label, cloud_conf,
                                  self.segmenter.class_map.void)
        with self.lock:
            self.fused_sum += took
            self.fused_n += 1
        return final

    def _check_adaptation(self, label: np.ndarray, pair: tuple[np.ndarray, np.ndarray]) -> None:
        """Score both BN variants against a trusted label; switch adaptation as it says."""
        small = codecs.resize_nearest(label, *pair[0].shape)
        void = self.segmenter.class_map.void
        if self.harm.add(*(bn_adapt.agreement(m, small, void) for m in pair)):
            self.segmenter.use_adapted = self.harm.helps
            self.get_logger().warning(
                'BN adaptation ' + ('helps again: serving adapted statistics' if self.harm.helps
                                    else 'hurts (trusted labels agree less with it): serving '
                                         "the model's own statistics"))

    def _check_label(self, msg: CloudLabel) -> tuple[np.ndarray, '_Upload', np.ndarray | float]:
        # Only labels of frames this node uploaded, at their size: anything else is stale
        # (from before a restart: seq starts again at 0, the stamp differs), replayed or
        # forged, and would publish a wrong refined mask.
        key = _label_key(msg.seq, msg.header.stamp)
        with self.lock:  # looked up, not taken: a bad or forged label must not cancel it
            up = self.uploads.get(key)
        if up is None:
            raise ValueError('no such upload (unknown, already labelled or forgotten)')
        if self.hmac_key is not None:
            signing.verify_label(self.hmac_key, msg)
        shape = up.shape
        label = codecs.compressed_to_label(msg.label, shape=shape)  # size checked first
        cm = self.segmenter.class_map
        bad = (label >= cm.num_classes) & (label != cm.void)
        if bad.any():
            raise ValueError(f'{int(bad.sum())} pixels with class ids out of range, e.g. '
                             f'{int(label[bad][0])} (classes 0..{cm.num_classes - 1}, void '
                             f'{cm.void})')
        cloud_conf: np.ndarray | float = float(self.p['default_cloud_confidence'])
        if len(msg.confidence.data):
            grid = codecs.compressed_to_label(msg.confidence, max_pixels=shape[0] * shape[1])
            fusion.check_grid(grid.shape, shape)
            cloud_conf = fusion.from_grid(grid, shape)
        with self.lock:  # only a label that passed every check answers the upload
            if self.uploads.pop(key, None) is None:
                raise ValueError('already labelled (a second label for this frame)')
        return label, up, cloud_conf

    def _on_cloud_stats(self, msg: CloudStats) -> None:
        with self.lock:
            before = self.backoff.scale
            scale = self.backoff.update(bool(msg.overloaded))
        if (scale < 1.0) != (before < 1.0):
            self.get_logger().warning(
                f'cloud overloaded (load {msg.load:.2f}): uploading {scale:.0%} of the frames '
                'the policy picks' if scale < 1.0 else 'cloud keeps up again: uploads as the '
                'policy picks')

    def _on_camera_lost(self, info) -> None:
        # Frames that never reach _on_frame would otherwise vanish from the accounting.
        # The sequence gaps include these when they can be seen: counted once (the larger).
        n = int(info.total_count_change)
        with self.lock:
            self.camera_loss.report(n)
            self.c['camera_lost'] = self.camera_loss.lost
        self._reject('camera_lost', f'{n} camera frame(s) lost in DDS before reaching the node '
                                    f'({info.total_count} in all)', count=False)

    def _reject(self, counter: str, text: str, error: bool = False, count: bool = True) -> None:
        """Count a rejected input and log it, one line per kind of problem per LOG_PERIOD."""
        # rclpy throttles per call site, which would hide a second kind of bad input behind
        # the first; here the kind is the text without its numbers (frame ids, sizes).
        kind = counter + re.sub(r'\d+', '#', text)
        now = time.monotonic()
        with self.lock:
            self.c[counter] += int(count)
            last, suppressed = self.log_times.get(kind, (-math.inf, 0))
            if now - last < LOG_PERIOD:
                self.log_times[kind] = (last, suppressed + 1)
                return
            if len(self.log_times) > 256:  # kinds can be made up by the sender: bounded
                self.log_times.clear()
            self.log_times[kind] = (now, 0)
        if suppressed:
            text += f' ({suppressed} more like it in the last {now - last:.0f} s)'
        # rclpy ties a severity to each call site: one call per severity.
        if error:
            self.get_logger().error(text)
        else:
            self.get_logger().warning(text)

    # --- weight / policy updates ------------------------------------------------------
    async def _on_update_async(self, req: UpdateWeights.Request, res: UpdateWeights.Response):
        with self.lock:
            busy = self.updates_queued >= MAX_QUEUED_UPDATES
            if not busy:
                self.updates_queued += 1
        if busy:  # requests may be tens of MB each: never hold an unbounded number
            return self._on_update(req, res, refuse=f'busy: {MAX_QUEUED_UPDATES} updates '
                                                    'already queued, try again later')
        done = Future(executor=self.executor)

        def run() -> None:
            try:
                self._on_update(req, res)
            finally:  # the caller hears back whatever happened
                with self.lock:
                    self.updates_queued -= 1
                done.set_result(res)
                self.update_done.trigger()  # wake the executor: the answer goes out now
        self.updater.submit(run)
        return await done

    def _on_update(self, req: UpdateWeights.Request, res: UpdateWeights.Response,
                   refuse: str | None = None):
        """Apply an update (or refuse it unread with ``refuse``); count, log and answer."""
        try:
            if refuse:
                raise ValueError(refuse)
            reason = self._apply_update(req)
            res.accepted = True
        except (weights.WeightsError, PolicyError, ValueError) as e:
            reason = str(e)
            res.accepted = False
        except Exception as e:  # an exception here would stop the executor, i.e. the node
            reason = f'internal error: {e!r}'[:500]
            res.accepted = False
        if not res.accepted:  # accepted ones are counted with the swap (_apply_update)
            with self.lock:
                self.c['updates_rejected'] += 1
        engine.release_memory()  # see there: RSS would ratchet up with every push
        res.reason = reason if not res.accepted else 'ok'
        res.active_version = self.segmenter.version
        res.active_sha256 = self.push_base.sha256
        res.active_policy_version = self.policy_versions.last
        text = (f'update v{req.version} ({len(req.weights)} bytes, rule '
                f'{req.policy.rule[:40]!r}) {"accepted" if res.accepted else "rejected"}: '
                f'{res.reason}; active v{res.active_version}')
        # rclpy ties a severity to each call site: one call per severity.
        if res.accepted:
            self.get_logger().info(text)
        else:
            self.get_logger().warning(text)
        return res

    def _apply_update(self, req: UpdateWeights.Request) -> str:
        # Everything is checked before anything changes, so a rejection changes nothing.
        up = check_update(req, self.segmenter.version, self.p['max_update_bytes'],
                          self.hmac_key, self.robot_id, self.push_base,
                          self.policy_versions.last)
        policy, data = up.policy, up.data
        prepared = (self.segmenter.prepare(up.state, req.version, up.meta)
                    if up.state is not None else None)
        with self.swap_lock:
            if policy is not None:  # on disk before it acts: a restart never forgets it
                try:
                    self.policy_versions.accept(up.policy_version)
                except OSError as e:
                    raise ValueError(f'cannot record policy version {up.policy_version}: '
                                     f'{e}') from e
            if prepared is not None:
                self.segmenter.commit(prepared)
                self.push_base = up.base
            if policy is not None:
                self.policy = policy
                with self.lock:
                    self.budget.configure(policy)
            self._persist()
            with self.lock:
                self.c['updates_accepted'] += 1
                self.c['weight_bytes_in'] += len(data)
        return 'ok'

    # --- stats ------------------------------------------------------------------------
    def _publish_stats(self) -> None:
        now = time.monotonic()
        with self.swap_lock, self.lock:
            version, policy = self.segmenter.version, self.policy
            c = dict(self.c)
            fused = self.fused_sum / self.fused_n if self.fused_n else 0.0
            lat = np.array(self.latencies) if self.latencies else None
            self.latencies.clear()
            fps = self.period_masks / max(now - self.period_start, 1e-6)
            self.period_masks, self.period_start = 0, now
        msg = EdgeStats(stamp=self.get_clock().now().to_msg(), robot_id=self.robot_id, **c)
        msg.fps = float(fps)
        if lat is not None:
            msg.latency_p50_ms, msg.latency_p95_ms = (float(v) for v in
                                                      np.percentile(lat, [50, 95]))
        msg.upload_ratio = min(1.0, c['uploaded'] / c['masks_out']) if c['masks_out'] else 0.0
        msg.model_version = version
        keys, values = policy.to_lists()
        msg.policy = PolicyMsg(rule=policy.rule, keys=keys, values=values)
        msg.threshold = float(policy.threshold)
        msg.cloud_trusted, msg.fused_fraction = bool(self.cloud_trusted), float(fused)
        bn = self.segmenter.adaptation
        msg.bn_shift, msg.bn_adapted = float(bn['shift']), bool(bn['serving'])
        msg.bn_harm_trips = self.harm.trips
        self.pub_stats.publish(msg)
        self.diagnostics.update(msg)
        self._publish_class_map()  # again when an update brought another class map

    def _publish_class_map(self) -> None:
        cm = self.segmenter.class_map
        if cm != self.class_map_sent:
            self.pub_class_map.publish(class_map_msg.to_msg(
                cm, stamp=self.get_clock().now().to_msg()))
            self.class_map_sent = cm

    def close(self) -> None:
        """Stop the worker thread."""
        with self.lock:
            self.running = False
            self.wake.notify_all()
        self.worker.join(5.0)
        self.segmenter.close()
        self.updater.shutdown(wait=False, cancel_futures=True)


@dataclass
class _Upload:
    """What the edge keeps of an uploaded frame until its label comes back."""

    shape: tuple[int, int]  # the uploaded frame's (h, w): the label's size
    small: np.ndarray  # its mask at mask_res (uint8 class ids)
    conf: np.ndarray  # that mask's calibrated confidence (uint8, 255 = 1.0)
    frame_shape: tuple[int, int]  # the camera frame's (h, w): ~/mask_refined's size
    header: Header  # the camera frame's: ~/mask_refined's
    pair: tuple[np.ndarray, np.ndarray] | None = None  # masks with/without adapted BN stats


def _label_key(seq: int, stamp) -> tuple[int, int, int]:
    return int(seq), int(stamp.sec), int(stamp.nanosec)


def _gid(gid) -> bytes | None:
    """Name a camera writer by its GID where the message info has one (Kilted), else None."""
    return bytes(gid['data']) if isinstance(gid, dict) and 'data' in gid else None


def _frame_id(msg, seq: int) -> str:
    """Name a frame in log lines: its seq and camera stamp."""
    st = msg.header.stamp
    return f'#{seq} (stamp {st.sec}.{st.nanosec:09d})'


def main(args: list[str] | None = None) -> None:
    # Cap update_weights requests, cloud labels and the bridge's stats at the transport
    # (laecips_core.dds.capped_profile) before the node's DDS participant reads its profiles;
    # the node checks that it took.
    service, *topics = dds.final_names(
        args, 'edge', (ifc.UPDATE_WEIGHTS, ifc.CLOUD_LABELS, ifc.CLOUD_STATS))
    with dds.capped_process([dds.request_topic(service), *topics], 'edge'):
        run_node(EdgeNode, args)


if __name__ == '__main__':
    main()
