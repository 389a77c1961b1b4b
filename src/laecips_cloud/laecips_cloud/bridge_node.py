# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The cloud bridge: hard frames from any number of robots in, cloud labels out.

Subscribes ``/laecips/hard_frames`` (HardFrame, reliable) and queues the frames in a
deadline-aware scheduler (``laecips_core.schedule``: bounded in frames and bytes, freshest
first and fair across robots, frames past their deadline labelled only for the trainer when
nothing fresh waits); a worker thread labels what it hands out in batches of up to
``max_batch`` frames, waiting at most ``max_wait_ms`` after the first frame arrived for
more to join. A frame's deadline counts from its receipt here (monotonic clock): the
``deadline`` the edge states in the HardFrame, else this node's ``deadline`` parameter, less
``return_margin`` for the way back. Each answer goes to ``/laecips/cloud_labels``
(CloudLabel: PNG mono8 class ids with the frame's header, robot id and sequence number
copied; ``purpose`` says inference or training). ``/laecips/stats_cloud`` carries CloudStats
every ``stats_period`` seconds: every valid frame ends labelled in time, labelled late,
labelled for training or dropped, and ``load``/``overloaded`` tell the edges to upload less
(back-pressure, ``laecips_core.policy.Backoff``).

Hard frames come from robots, so they are untrusted: ``laecips_core.frame_check`` checks
them on arrival (robot id, empty image, payload size) and decodes them on the worker (the
JPEG or PNG frame and the optional PNG edge label, which must match the frame's size), raising
``HardFrameError`` for anything malformed. Such a frame is skipped, counted in
``rejected`` and logged on one line (at most ``LOG_BURST`` lines at once and
``LOG_RATE`` per second, so a flood cannot fill the log; the next line says how many were
not logged).

The trainer, beside the bridge in the cloud, receives (frame, label) pairs without a second
upload: the bridge republishes each labelled frame on ``/laecips/cloud/frames`` and the
trainer joins it with its ``/laecips/cloud_labels`` answer on (robot_id, seq). Only the bridge
subscribes the robots' uplink topic, so each hard frame crosses a robot's uplink once.
"""

from __future__ import annotations

import collections
import math
import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage

from laecips_cloud import ray_backend
from laecips_cloud.labellers import SOFT_STRIDE, Labeller, LogitLabeller, create, resolve_device
from laecips_core import anchor, codecs, dds, diagnostics, health, signing
from laecips_core import interface as ifc
from laecips_core.frame_check import (
    MAX_PAYLOAD_BYTES,
    HardFrameError,
    check_hard_frame,
    decode_hard_frame,
    payload_size,
)
from laecips_core.schedule import INFERENCE, Entry, LoadMeter, Scheduler
from laecips_core.teacher import Teacher
from laecips_msgs.msg import CloudLabel, CloudStats, FrameImage, HardFrame, SoftTargets
from laecips_ros.diagnostics import Diagnostics
from laecips_ros.node import declare_params, log_read_cap, qos, run_node

# Rejection log lines: a burst of this many, then this many per second.
LOG_BURST, LOG_RATE = 20, 2.0
# CloudLabel is bounded (its readers on the edges and the trainer are capped at the transport,
# #17): a label or confidence PNG over this is not sent. Not seen: a frame has at most
# max_pixels (4 Mpx), and 4 Mpx of mono8 is at most ~4 MiB as PNG.
MAX_LABEL_BYTES = dds.msg_bound(FrameImage, 'data')
MAX_LABELLER = dds.msg_bound(CloudLabel, 'labeller')
MAX_DEVICE = dds.msg_bound(CloudStats, 'device')

# name: (default, description)
PARAMS = {
    'labeller': ('espnet_c', 'labeller name: espnet_c, sam_ssa, teacher, torchscript, onnx'),
    'weights': ('', 'espnet_c weights (.pth; empty: $LAECIPS_ESPNET_WEIGHTS or '
                    'shared/models), teacher weights (empty: the committed robust teacher), '
                    'or the torchscript/onnx model file'),
    'class_map': ('', 'class map JSON for torchscript/onnx models (empty: CamVid)'),
    'sam_checkpoint': ('', 'SAM checkpoint path (sam_ssa); fetch with sam_download'),
    'sam_model_type': ('vit_h', 'SAM size: vit_b, vit_l, vit_h (tiny: random-init test model)'),
    'sam_points_per_side': (32, 'SAM automatic mask generator point grid per side', (1, 1024)),
    'sam_points_per_batch': (64, 'point prompts per mask-decoder batch', (1, 65536)),
    'sam_vote_with': ('semantic', "sam_ssa votes with 'semantic' (labeller) or 'edge' labels"),
    'sam_bf16': (False, 'run SAM under bf16 autocast (CUDA)'),
    'device': ('auto', 'auto (cuda when available), cpu or cuda[:N]'),
    'torch_threads': (0, 'torch CPU threads (0: torch default / OMP_NUM_THREADS)', (0, 1024)),
    'max_batch': (4, 'most frames labelled in one batch', (1, 1024)),
    'max_wait_ms': (20.0, 'longest wait for more frames after the first of a batch arrived',
                    (0.0, 60000.0)),
    'queue_size': (16, 'frames waiting to be labelled; beyond it the stalest is dropped',
                   (1, 100000)),
    'queue_bytes': (64 << 20, 'payload bytes waiting to be labelled; beyond it the stalest '
                              'is dropped', (1, 1 << 40)),
    'deadline': (1.0, 'seconds from receipt within which a label helps the edge, for frames '
                      'that state none (HardFrame.deadline)', (0.001, 3600.0)),
    'return_margin': (0.1, "seconds of a frame's deadline kept for the label's way back and "
                           "the edge's fusion", (0.0, 3600.0)),
    'overload_load': (1.0, 'CloudStats.overloaded when the offered load (arrivals x seconds '
                           'per frame / period) exceeds this, or frames were dropped',
                      (0.0, 1000.0)),
    'max_payload_bytes': (MAX_PAYLOAD_BYTES, 'hard frames with a larger image + edge label are '
                                             'rejected', (1, 1 << 40)),
    # 2048x2048: far more than a labeller needs (edges upload at upload_max_pixels); a frame
    # declaring more is refused from its PNG/JPEG header, before any decoding. At most 4 Mpx:
    # a label of that size always fits CloudLabel's bounds.
    'max_pixels': (1 << 22, 'hard frames declaring more pixels are rejected before decoding '
                            "(at most 4 Mpx: any label that size fits CloudLabel's bounds)",
                   (1, 1 << 22)),
    'qos_depth': (10, 'reliable QoS history depth of the hard frame and label topics',
                  (1, 100000)),
    'stats_period': (2.0, 'seconds between CloudStats messages', (0.01, 3600.0)),
    'warmup': (True, 'label one dummy frame before the first real one'),
    'anchor_root': ('', "CamVid folder holding the anchor set (factory data: calibration and "
                        "health reference); empty: found as usual; 'none': no anchor set"),
    'anchor_frames': (16, 'anchor frames labelled at start-up (0: no calibration, health '
                          'unknown)', (0, 100000)),
    'confidence_stride': (8, 'confidence grid block size in pixels (CloudLabel.confidence)',
                          (1, 4096)),
    'health_window': (8, 'labels of a robot averaged by the teacher-health monitor', (1, 100000)),
    'health_trip': (0.75, 'teacher unhealthy below this share of its anchor confident-pixel '
                          'fraction', (0.0, 1.0)),
    'health_recover': (0.85, 'and healthy again above this share', (0.0, 1.0)),
    'soft_targets': (False, "pass the labeller's class probabilities to the trainer in its copy "
                            'of each frame (/laecips/cloud/frames; labellers with logits only, '
                            "not backend ray); the trainer's soft_weight uses them"),
    'hmac_key_file': ('', 'file holding the shared HMAC key (laecips_core.signing): when set, '
                          'every label is signed, so edges with the key can refuse forgeries'),
    **ray_backend.PARAMS,
}


def _soft(prob: np.ndarray) -> SoftTargets:
    """Wrap CxHxW uint8 class probabilities (labellers.LogitLabeller) as SoftTargets."""
    c, h, w = prob.shape
    return SoftTargets(classes=c, height=h, width=w,
                       data=np.ascontiguousarray(prob, np.uint8).tobytes())


class _LogLimit:
    """A token bucket for log lines: ``burst`` at once, then ``rate`` per second."""

    def __init__(self, burst: int = LOG_BURST, rate: float = LOG_RATE):
        self.burst, self.rate = float(burst), float(rate)
        self.tokens, self.t = float(burst), time.monotonic()
        self.suppressed = 0

    def take(self) -> int | None:
        """Return None when this line must be dropped, else how many were dropped before."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens < 1.0:
            self.suppressed += 1
            return None
        self.tokens -= 1.0
        n, self.suppressed = self.suppressed, 0
        return n


class BridgeNode(Node):
    """Label hard frames in batches on a worker thread and publish the answers."""

    def __init__(self, labeller: Labeller | None = None, **node_kwargs):
        super().__init__('cloud_bridge', **node_kwargs)
        # Read-only, as the other nodes': they are read once at start (ros2 param set would
        # succeed and change nothing), checked against their ranges.
        self.p = declare_params(self, PARAMS)
        if self.p['torch_threads'] > 0:
            import torch
            torch.set_num_threads(int(self.p['torch_threads']))
        # A configured key that cannot be read stops the node rather than signing nothing.
        self.hmac_key = (signing.load_key(self.p['hmac_key_file']) if self.p['hmac_key_file']
                         else None)
        self.labeller = labeller or self._make_labeller()
        self.get_logger().info(
            f'labeller {self.labeller.name} on {self.labeller.device}; max_batch '
            f'{self.p["max_batch"]}, max_wait_ms {self.p["max_wait_ms"]}, queue '
            f'{self.p["queue_size"]}')
        # Soft targets need the labeller's probabilities in this process.
        self.soft = bool(self.p['soft_targets']) and isinstance(self.labeller, LogitLabeller)
        if self.p['soft_targets'] and not self.soft:
            self.get_logger().warning(f'soft_targets: {self.labeller.name} gives no class '
                                      'probabilities here; the trainer gets hard labels only')

        self._lock = threading.Condition()
        self.sched = Scheduler(int(self.p['queue_size']), int(self.p['queue_bytes']))
        self._meter = LoadMeter(time.monotonic())
        self._last_counts = dict(self.sched.counts)
        self._stop = False
        self.counters = collections.Counter()
        self._log_limit = _LogLimit()
        self._period = {'batches': 0, 'frames': 0, 'seconds': 0.0}
        self.teacher = Teacher()  # replaced by the anchor-fitted one before the first frame

        link = qos(ifc.Qos(int(self.p['qos_depth'])))
        self.pub_label = self.create_publisher(CloudLabel, ifc.CLOUD_LABELS, link)
        self.pub_frames = self.create_publisher(HardFrame, ifc.CLOUD_FRAMES, link)
        self.pub_stats = self.create_publisher(CloudStats, ifc.CLOUD_STATS, qos(ifc.STATS))
        self.diagnostics = Diagnostics(self, diagnostics.bridge_status)
        self.create_subscription(HardFrame, ifc.HARD_FRAMES, self._on_frame, link)
        log_read_cap(self, ifc.HARD_FRAMES, HardFrame)
        self.create_timer(float(self.p['stats_period']), self._publish_stats)
        self._worker = threading.Thread(target=self._run, name='bridge_worker', daemon=True)
        self._worker.start()

    def _make_labeller(self) -> Labeller:
        p, name = self.p, self.p['labeller']
        device = resolve_device(p['device'])
        # backend ray: the same labeller and parameters, built by each Serve replica instead.
        make = ray_backend.factory(p, create, self.get_logger().info)
        if name == 'sam_ssa':
            return make(name, checkpoint=p['sam_checkpoint'], model_type=p['sam_model_type'],
                        points_per_side=p['sam_points_per_side'],
                        points_per_batch=p['sam_points_per_batch'],
                        vote_with=p['sam_vote_with'], weights=p['weights'], device=device,
                        bf16=p['sam_bf16'])
        if name in ('torchscript', 'onnx'):
            return make(name, weights=p['weights'], class_map=p['class_map'], device=device)
        return make(name, weights=p['weights'], device=device)

    # -- executor thread ---------------------------------------------------------------

    def _reject(self, msg: HardFrame, why: HardFrameError) -> None:
        # One line per rejected frame (the robot id quoted: it may be anything), rate-limited.
        with self._lock:
            self.counters['rejected'] += 1
            total, dropped = self.counters['rejected'], self._log_limit.take()
        if dropped is not None:
            more = f'; {dropped} more not logged' if dropped else ''
            self.get_logger().warning(
                f'rejected hard frame {msg.robot_id[:40]!r}#{msg.seq} '
                f'({payload_size(msg)} bytes): {why} [{total} rejected{more}]')

    def _on_frame(self, msg: HardFrame) -> None:
        with self._lock:
            self.counters['frames_in'] += 1
            self.counters['bytes_in'] += payload_size(msg)
        try:
            check_hard_frame(msg, int(self.p['max_payload_bytes']), int(self.p['max_pixels']))
        except HardFrameError as e:
            self._reject(msg, e)
            return
        now = time.monotonic()
        # The edge's own deadline if it states a sane one; both count from receipt here.
        stated = float(msg.deadline)
        budget = stated if math.isfinite(stated) and 0 < stated <= 3600 else self.p['deadline']
        entry = Entry(msg.robot_id, now, now + budget - float(self.p['return_margin']),
                      payload_size(msg), msg)
        with self._lock:
            self._meter.arrive()
            dropped = self.sched.push(entry)
            self._lock.notify()
        if dropped:
            old = dropped[0].payload
            self.get_logger().warning(
                f'queue full: dropped {old.robot_id}#{old.seq} (stalest first)',
                throttle_duration_sec=5.0)

    def _publish_stats(self) -> None:
        with self._lock:
            c, per = dict(self.counters), dict(self._period)
            self._period = {'batches': 0, 'frames': 0, 'seconds': 0.0}
            qlen, qbytes, counts = self.sched.waiting(), self.sched.bytes, dict(self.sched.counts)
            load = self._meter.read(time.monotonic(), self.sched.mean)
            # Not late labels: a frame waiting out the labeller's start-up is no overload.
            worse = counts['dropped'] > self._last_counts['dropped']
            self._last_counts = counts
        m = CloudStats()
        m.stamp = self.get_clock().now().to_msg()
        m.labeller = self.labeller.name[:MAX_LABELLER]
        m.device = str(self.labeller.device)[:MAX_DEVICE]
        for k in ('frames_in', 'labels_out', 'rejected', 'bytes_in', 'bytes_out'):
            setattr(m, k, int(c.get(k, 0)))
        m.dropped_queue = int(counts['dropped'])
        for k in ('labelled_in_time', 'labelled_late', 'labelled_for_training'):
            setattr(m, k, int(counts[k]))
        m.queue_bytes = int(qbytes)
        m.load = float(load)
        m.overloaded = bool(load > self.p['overload_load'] or worse)
        m.labels_unhealthy = int(c.get('labels_unhealthy', 0))
        m.robots_unhealthy = self.teacher.unhealthy()
        m.queue_len = qlen
        m.mean_batch = per['frames'] / per['batches'] if per['batches'] else 0.0
        m.seconds_per_frame = per['seconds'] / per['frames'] if per['frames'] else 0.0
        self.pub_stats.publish(m)
        self.diagnostics.update(m)

    # -- worker thread -------------------------------------------------------------------

    def _next_batch(self) -> tuple[str, list[Entry]]:
        max_batch, wait = int(self.p['max_batch']), float(self.p['max_wait_ms']) / 1000.0
        with self._lock:
            while not self.sched.waiting() and not self._stop:
                self._lock.wait(0.5)
            if self._stop:
                return INFERENCE, []
            # Wait for more frames until the first one has waited max_wait_ms.
            until = min(e.t_in for e in self.sched.entries()) + wait
            while self.sched.waiting() < max_batch and not self._stop:
                left = until - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            return self.sched.take(time.monotonic(), max_batch)

    def _run(self) -> None:
        if self.p['warmup']:
            try:
                self.labeller.warmup()
            except Exception as e:  # a broken labeller shows up on the first frame too
                self.get_logger().error(f'warmup failed: {e!r}')
        self.teacher = self._fit_teacher()
        while not self._stop:
            lane, batch = self._next_batch()
            if batch:
                self._process(lane, batch)

    def _fit_teacher(self) -> Teacher:
        p = self.p
        args = dict(stride=int(p['confidence_stride']), window=int(p['health_window']),
                    trip=float(p['health_trip']), recover=float(p['health_recover']))
        data = None
        if p['anchor_root'] != 'none' and int(p['anchor_frames']) > 0:
            data = anchor.load(p['anchor_root'] or None, int(p['anchor_frames']))
        if data is None:
            self.get_logger().warning(
                'no anchor set (CamVid day train frames; anchor_root): confidences go out '
                'uncalibrated and teacher health is not judged')
            return Teacher(**args)
        try:
            t = Teacher.from_anchor(self.labeller.label_with_confidence, data.rgbs,
                                    data.labels, self.labeller.class_map.void, **args)
        except Exception as e:  # a labeller that fails here fails on frames too: say so there
            self.get_logger().error(f'could not fit the labeller on the anchor set: {e!r}')
            return Teacher(**args)
        self.get_logger().info(
            f'anchor set: {len(data)} frames; calibration {t.cal.to_list()}; '
            f'confident-pixel reference {t.reference:.3f}' if t.judges else
            f'anchor set: {len(data)} frames; {self.labeller.name} reports no confidence or is '
            'never sure of the anchor set: teacher health not judged')
        return t

    def _decode(self, item: Entry) -> tuple[np.ndarray, np.ndarray | None] | None:
        try:
            return decode_hard_frame(item.payload, int(self.p['max_payload_bytes']),
                                     int(self.p['max_pixels']))
        except HardFrameError as e:
            self._reject(item.payload, e)
            return None

    def _process(self, lane: str, batch: list[Entry]) -> None:
        t0 = time.monotonic()
        decoded, items, t_dec = [], [], []
        for it in batch:
            t = time.monotonic()
            d = self._decode(it)
            if d is not None:
                decoded.append(d)
                items.append(it)
                t_dec.append(time.monotonic() - t)
        self.sched.forget(len(batch) - len(items))  # rejected: counted by _decode
        if not items:
            return
        t1 = time.monotonic()
        try:
            more = {'soft_stride': SOFT_STRIDE} if self.soft else {}
            labels = self.labeller.label_with_confidence([d[0] for d in decoded],
                                                         [d[1] for d in decoded], **more)
        except Exception as e:  # keep serving: one bad batch must not stop the bridge
            self.sched.finish(lane, [], time.monotonic(), failed=items)
            self.get_logger().error(f'labeller failed on a batch of {len(items)}: {e!r}')
            return
        share = (time.monotonic() - t1) / len(items)
        done, failed = [], []
        for it, res, td in zip(items, labels, t_dec):
            if res is None:  # a remote labeller (backend ray) gave this frame up
                failed.append(it)
                continue
            lab, conf = res[:2]
            msg, t = it.payload, time.monotonic()
            # Only the bridge's own probabilities reach the trainer, never an edge's.
            msg.soft = _soft(res[2]) if len(res) > 2 else SoftTargets()
            v = self.teacher.judge(msg.robot_id, msg.seq, conf)
            images = self._label_images(lab, v.grid)
            if images is None:
                self.get_logger().error(f'label of {msg.robot_id!r}#{msg.seq} not sent: its '
                                        f'PNG is over the CloudLabel bound of '
                                        f'{MAX_LABEL_BYTES} bytes')
                failed.append(it)
                continue
            done.append(it)
            out = CloudLabel(header=msg.header, robot_id=msg.robot_id, seq=msg.seq)
            out.label, out.confidence = images
            out.confidence_mean, out.teacher_state = v.mean, v.state
            out.teacher_health = v.score
            out.labeller = self.labeller.name[:MAX_LABELLER]
            out.purpose = (CloudLabel.PURPOSE_INFERENCE if lane == INFERENCE
                           else CloudLabel.PURPOSE_TRAINING)
            if self.hmac_key is not None:
                out.signature = signing.sign_label(self.hmac_key, out)
            out.queue_time = float(t0 - it.t_in)
            out.processing_time = float(td + share + time.monotonic() - t)
            self.pub_label.publish(out)
            self.pub_frames.publish(msg)
            with self._lock:
                self.counters['labels_out'] += 1
                self.counters['labels_unhealthy'] += int(v.state == health.UNHEALTHY)
                self.counters['bytes_out'] += len(out.label.data) + len(out.confidence.data)
        # Counted at the end of the batch: its labels are all out by now.
        self.sched.finish(lane, done, time.monotonic(), time.monotonic() - t0, failed)
        if failed:
            self.get_logger().warning(f'labeller gave up {len(failed)} frame(s) of a batch',
                                      throttle_duration_sec=5.0)
        with self._lock:
            self._period['batches'] += 1
            self._period['frames'] += len(items)
            self._period['seconds'] += time.monotonic() - t0

    @staticmethod
    def _label_images(lab: np.ndarray,
                      grid: np.ndarray | None) -> tuple[FrameImage, FrameImage] | None:
        """Return the label and confidence PNGs, None when one is over CloudLabel's bound."""
        out = []
        for arr in (lab, grid):
            if arr is None:  # a labeller without confidence: empty data
                out.append(FrameImage())
                continue
            # Encoded first into an unbounded message: its size is checked before use.
            png = codecs.encode_compressed(np.ascontiguousarray(arr, np.uint8),
                                           CompressedImage, 'png')
            if len(png.data) > MAX_LABEL_BYTES:
                return None
            out.append(FrameImage(format='png', data=png.data))
        return out[0], out[1]

    def close(self) -> None:
        """Stop the worker thread (the frame in progress finishes)."""
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self._worker.join(timeout=30.0)
        self.sched.drop_all()  # every frame accounted for, also those never labelled
        if hasattr(self.labeller, 'close'):  # backend ray: stops the Ray it started
            self.labeller.close()


def main(args: list[str] | None = None) -> None:
    # Cap hard frames at the transport (laecips_core.dds) before the node's DDS participant
    # reads its profiles; the node says whether it took.
    with dds.capped_process(dds.final_names(args, 'cloud_bridge', [ifc.HARD_FRAMES]),
                            'bridge'):
        run_node(BridgeNode, args)


if __name__ == '__main__':
    main()
