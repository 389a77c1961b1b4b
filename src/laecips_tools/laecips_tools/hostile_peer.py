# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
A hostile peer on the DDS domain, for the soak (``laecips soak --hostile``); prints JSON.

Runs in its own process without any key and, every ``--period`` seconds, tries the next
attack of #17 against one of ``--robots`` in turn:

- ``png_bomb``: a hard frame whose 150-byte PNG declares 8000x8000 pixels (the bridge counts
  it in ``CloudStats.rejected``);
- ``malformed_label``: a cloud label with the seq and stamp of a real upload (copied from
  /laecips/hard_frames) and garbage PNG bytes; ``forged_label``: a well-formed label of the
  right size for a real upload, unsigned; ``replayed_label``: a real signed label for the edge
  (not one meant for the trainer only) seen on /laecips/cloud_labels sent again (each
  counted in that edge's ``labels_rejected``);
- ``bad_push``: an unsigned ``update_weights`` request with garbage weights; ``policy_push``:
  a policy-only request (rule ``always``: upload everything) with a forged signature, as a
  replayed push would look (each refused: the answer says so, and the edge counts it in
  ``updates_rejected``). Replays of real signed pushes need a captured request, which an
  rclpy subscription could not read from the service's request topic here; the edge's own
  tests cover them (laecips_core.update_gate).

Camera bursts come from the soak's own camera publisher (one writer per camera topic, so
the edge can count what DDS drops from its sequence numbers), not from here.

    python -m laecips_tools.hostile_peer --robots robot1,robot2 --seconds 60 --out a.json
"""

from __future__ import annotations

import argparse
from collections import defaultdict
import json
from pathlib import Path
import signal
import struct
import sys
import time
import zlib

import numpy as np

KINDS = ('png_bomb', 'malformed_label', 'forged_label', 'replayed_label', 'bad_push',
         'policy_push')


def png_bomb(width: int = 8000, height: int = 8000) -> bytes:
    """Return a tiny PNG whose header declares ``width`` x ``height`` RGB pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b'\0' * 4096, 9)  # a few rows' worth; the decoder wants far more
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', idat) + \
        chunk(b'IEND', b'')


class Peer:
    """The attacker's node: what it has seen, what it sent, what it was answered."""

    def __init__(self, robots: list[str]):
        import rclpy
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from laecips_msgs.msg import CloudLabel, HardFrame
        from laecips_msgs.srv import UpdateWeights
        rclpy.init()
        self.node = rclpy.create_node('intruder')
        self.robots = robots
        rel = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_hard = self.node.create_publisher(HardFrame, '/laecips/hard_frames', rel)
        self.pub_label = self.node.create_publisher(CloudLabel, '/laecips/cloud_labels', rel)
        self.uploads: dict[str, object] = {}  # robot -> its latest real hard frame
        self.labels: dict[str, object] = {}  # robot -> a real label seen
        self.node.create_subscription(HardFrame, '/laecips/hard_frames', self._on_hard, rel)
        self.node.create_subscription(CloudLabel, '/laecips/cloud_labels', self._on_label, rel)
        self.clients = {r: self.node.create_client(UpdateWeights, f'/{r}/edge/update_weights')
                        for r in robots}
        self.sent: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(KINDS, 0))
        self.answers = {'refused': 0, 'accepted': 0, 'no_answer': 0, 'not_tried': 0}
        self.accepted_reasons: list[str] = []

    def _on_hard(self, m) -> None:
        if m.robot_id in self.robots and m.image.format != 'png':  # not our own bombs
            self.uploads[m.robot_id] = m

    def _on_label(self, m) -> None:
        # Labels for the edge only: one the bridge sent for the trainer (past its deadline,
        # purpose TRAINING) is ignored by the edge by design, replayed or not.
        if m.robot_id in self.robots and m.signature and m.labeller != 'intruder' and \
                getattr(m, 'purpose', 0) == 0:
            self.labels[m.robot_id] = m

    def spin(self, seconds: float) -> None:
        import rclpy
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=max(0.0, min(0.05, end - time.monotonic())))

    # --- the attacks -------------------------------------------------------------------
    def attack(self, kind: str, robot: str) -> bool:
        """Try ``kind`` against ``robot``; return False when it cannot be tried yet."""
        from laecips_msgs.msg import CloudLabel, HardFrame
        if kind == 'png_bomb':
            hf = HardFrame(robot_id=robot, seq=2**40 + self.sent[robot][kind], hardness=1.0)
            hf.header.stamp = self.node.get_clock().now().to_msg()
            hf.image.format, hf.image.data = 'png', png_bomb()
            self.pub_hard.publish(hf)
        elif kind in ('malformed_label', 'forged_label'):
            up = self.uploads.get(robot)
            if up is None:
                return False
            lab = CloudLabel(header=up.header, robot_id=robot, seq=up.seq, labeller='intruder')
            lab.label.format = 'png'
            if kind == 'malformed_label':
                lab.label.data = b'\x89PNG\r\n\x1a\n' + bytes(range(256)) * 4
            else:
                from laecips_core import codecs
                h, w = _size_of(up)
                codecs.encode_compressed(np.zeros((h, w), np.uint8), lab.label, 'png')
            self.pub_label.publish(lab)
        elif kind == 'replayed_label':
            lab = self.labels.get(robot)
            if lab is None:
                return False
            self.pub_label.publish(lab)
        elif kind in ('bad_push', 'policy_push'):
            return self._push(kind, robot)
        self.sent[robot][kind] += 1
        return True

    def _push(self, kind: str, robot: str) -> bool:
        from laecips_msgs.msg import Policy as PolicyMsg
        from laecips_msgs.srv import UpdateWeights
        if kind == 'policy_push':
            req = UpdateWeights.Request(version=0, signature='0' * 64)
            req.policy = PolicyMsg(rule='always')
        else:
            req = UpdateWeights.Request(version=2**31, format='safetensors', sha256='0' * 64,
                                        weights=np.random.default_rng().integers(
                                            0, 256, 4096, dtype=np.uint8).tobytes())
        client = self.clients[robot]
        if not client.service_is_ready():
            return False
        self.sent[robot][kind] += 1
        fut = client.call_async(req)
        end = time.monotonic() + 30.0
        while not fut.done() and time.monotonic() < end:
            self.spin(0.05)
        if not fut.done():
            self.answers['no_answer'] += 1
        elif fut.result().accepted:
            self.answers['accepted'] += 1
            self.accepted_reasons.append(f'{kind} to {robot}: {fut.result().reason}')
        else:
            self.answers['refused'] += 1
        return True

    def report(self) -> dict:
        total = dict.fromkeys(KINDS, 0)
        for per in self.sent.values():
            for k, v in per.items():
                total[k] += v
        return {'sent': total, 'sent_per_robot': {r: dict(v) for r, v in self.sent.items()},
                'push_answers': self.answers, 'accepted_pushes': self.accepted_reasons,
                'captured': {'uploads': sorted(self.uploads), 'labels': sorted(self.labels)}}


def _size_of(hf) -> tuple[int, int]:
    """Return the (h, w) of a hard frame's image from its header, without decoding it."""
    from io import BytesIO

    from PIL import Image
    with Image.open(BytesIO(bytes(hf.image.data))) as im:
        return im.height, im.width


def run(robots: list[str], seconds: float, period: float, warmup: float) -> dict:
    """Attack for ``seconds`` (after ``warmup`` of only listening); return the report."""
    peer = Peer(robots)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        peer.spin(warmup)
        end, i = time.monotonic() + seconds, 0
        while time.monotonic() < end and not stop:
            kind, robot = KINDS[i % len(KINDS)], robots[(i // len(KINDS)) % len(robots)]
            i += 1
            if not peer.attack(kind, robot) and kind.endswith('push'):
                peer.answers['not_tried'] += 1
            peer.spin(period)
        return peer.report()
    finally:
        peer.node.destroy_node()
        import rclpy
        rclpy.try_shutdown()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    ap.add_argument('--robots', default='robot1', help='comma-separated robot ids')
    ap.add_argument('--seconds', type=float, default=60.0, help='how long to attack')
    ap.add_argument('--period', type=float, default=0.5, help='seconds between attacks')
    ap.add_argument('--warmup', type=float, default=5.0, help='seconds listening first')
    ap.add_argument('--out', default=None, help='also write the JSON here')
    args = ap.parse_args(argv)
    out = run(args.robots.split(','), args.seconds, args.period, args.warmup)
    text = json.dumps(out)
    if args.out:
        Path(args.out).write_text(text)
    print(text, flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
