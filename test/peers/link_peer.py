# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Test peer beside the edge (in its network namespace): a camera and a recorder.

Waits until the edge's camera subscription is matched, publishes ``--frames`` 72x96 frames
at ``--hz`` (stamp sec = 1000 + i), and records what comes back: the edge's masks and
refined masks (by stamp), every EdgeStats (each checked: at most two frames unaccounted
for, and with the upload-everything policy each handled frame an upload or ``no_cloud``)
and CloudStats (from across the link; the largest queue seen). The record is written as
JSON to ``--out`` (atomically) every 0.2 s and on SIGINT/SIGTERM, for the test to poll.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import signal
import threading

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from laecips_core import codecs
from laecips_msgs.msg import CloudStats, EdgeStats

QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
EDGE_KEYS = ('frames_in', 'masks_out', 'skipped', 'rejected', 'uploaded', 'no_cloud',
             'held_back', 'labels_in', 'labels_rejected', 'model_version')
CLOUD_KEYS = ('frames_in', 'labels_out', 'dropped_queue', 'rejected', 'queue_len')


class Peer:
    def __init__(self, node, ns: str, out: Path):
        self.node, self.out = node, out
        self.lock = threading.Lock()
        self.rec = {'sent': [], 'masks': [], 'refined': [], 'edge': None, 'cloud': None,
                    'edge_msgs': 0, 'cloud_msgs': 0, 'cloud_queue_max': 0, 'violations': [],
                    'done': False}
        self.cam = node.create_publisher(Image, '/camera/image_raw', QOS)
        self.mask_sub = node.create_subscription(Image, f'{ns}/edge/mask', self._add('masks'),
                                                 QOS)
        node.create_subscription(Image, f'{ns}/edge/mask_refined', self._add('refined'), QOS)
        node.create_subscription(EdgeStats, '/laecips/stats', self._on_edge, QOS)
        node.create_subscription(CloudStats, '/laecips/stats_cloud', self._on_cloud, QOS)
        node.create_timer(0.2, self.write)

    def _add(self, key: str):
        def cb(msg: Image) -> None:
            with self.lock:
                self.rec[key].append(msg.header.stamp.sec)
        return cb

    def _on_edge(self, s: EdgeStats) -> None:
        d = {k: int(getattr(s, k)) for k in EDGE_KEYS}
        open_ = d['frames_in'] - d['masks_out'] - d['skipped'] - d['rejected']
        # Rule 'always': every mask is uploaded, not sent for want of a bridge, or held back
        # while the bridge reports overload (back-pressure).
        extra = d['uploaded'] + d['no_cloud'] + d['held_back'] - d['masks_out']
        with self.lock:
            if not (0 <= open_ <= 2 and 0 <= extra <= 1):
                self.rec['violations'].append(d)
            self.rec['edge'] = d
            self.rec['edge_msgs'] += 1

    def _on_cloud(self, s: CloudStats) -> None:
        with self.lock:
            self.rec['cloud'] = {k: int(getattr(s, k)) for k in CLOUD_KEYS}
            self.rec['cloud_msgs'] += 1
            self.rec['cloud_queue_max'] = max(self.rec['cloud_queue_max'], int(s.queue_len))

    def write(self) -> None:
        with self.lock:
            text = json.dumps(self.rec)
        tmp = self.out.with_suffix('.tmp')
        tmp.write_text(text)
        os.replace(tmp, self.out)

    def camera(self, frames: int, hz: float, stop: threading.Event) -> None:
        # Both directions matched: discovery matches each on its own, and a mask published
        # before this node's subscription matched would be lost to the record.
        while (self.cam.get_subscription_count() < 1 or self.mask_sub.get_publisher_count() < 1) \
                and not stop.wait(0.05):
            pass
        rng = np.random.default_rng(0)
        for i in range(frames):
            if stop.is_set():
                return
            msg = codecs.array_to_image(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8),
                                        Image, 'rgb8')
            msg.header.stamp.sec, msg.header.frame_id = 1000 + i, 'camera'
            self.cam.publish(msg)
            with self.lock:
                self.rec['sent'].append(1000 + i)
            stop.wait(1.0 / hz)  # pacing the camera
        with self.lock:
            self.rec['done'] = True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    p.add_argument('--frames', type=int, default=20)
    p.add_argument('--hz', type=float, default=4.0)
    p.add_argument('--ns', default='/robot1', help="the edge's namespace")
    p.add_argument('--out', required=True, help='JSON record, rewritten every 0.2 s')
    args = p.parse_args()
    rclpy.init()
    node = rclpy.create_node('link_peer')
    peer = Peer(node, args.ns, Path(args.out))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cam = threading.Thread(target=peer.camera, args=(args.frames, args.hz, stop), daemon=True)
    cam.start()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok() and not stop.is_set():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        stop.set()
        peer.write()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
