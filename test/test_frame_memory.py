# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
What an oversize hard frame costs the cloud bridge in memory (#17, the hard-frame topic).

A hostile writer in the test process (``peers/raw_request.py``: a peer with its own DDS stack
is not held to the message's bounds) publishes one 200 MiB ``HardFrame`` on
``/laecips/hard_frames`` while the bridge's resident memory is sampled from /proc. The
bridge's Fast DDS profile (``laecips_core.dds``, loaded by its main()) gives its hard-frame
reader payloads of the bounded type's size (~16 MiB), so DDS refuses the frame at its first
fragment, with a log line of its own and no memory taken (without the profile the bridge
reassembles and converts it whole before its node refuses it). The bridge labels the next
valid frame as before. The trainer's reader of the frames the bridge passes on
(``/laecips/cloud/frames``) is capped the same way: the same frame written there costs it
nothing either, and so does a 200 MiB ``CloudLabel`` on ``/laecips/cloud_labels`` (its label
reader is capped too; the edges' label reader: ``test_push_memory``).
"""

import time

from conftest import wait_until
from peers.raw_request import RawWriter, oversize_request
from test_cloud_bridge import QOS, _frame, _model
from test_push_memory import DDS_REFUSAL, _Peak, _rss
from test_trainer_node import _factory

from laecips_core import interface as ifc
from laecips_msgs.msg import CloudLabel, CloudStats, HardFrame

FRAME_BYTES = 200 << 20
# Growth allowed while DDS refuses the frame: the bridge's label of the valid frames and
# allocator noise; the 200 MiB frame taken whole grows it by several times its size.
BOUND = 8 << 20
# The trainer may still be warming up (torch, its first timers) when the frame arrives: it
# grew up to 24 MiB then; the frame taken whole would add several times its size.
TRAINER_BOUND = 64 << 20


def _settled(pid: int, window: float = 2.0, slack: int = 4 << 20):
    """Return a condition: ``pid``'s RSS moved less than ``slack`` over the last ``window`` s."""
    seen = []

    def cond() -> bool:
        now = time.monotonic()
        seen.append((now, _rss(pid)))
        recent = [rss for t, rss in seen if now - t <= window]
        return now - seen[0][0] >= window and max(recent) - min(recent) < slack
    return cond


def test_an_oversize_hard_frame_costs_the_bridge_and_trainer_bounded_memory(procs, rosnode,
                                                                            tmp_path):
    bridge = procs.node('bridge', 'laecips_cloud.bridge_node', params={
        'labeller': 'torchscript', 'weights': str(_model(tmp_path)), 'device': 'cpu',
        'max_batch': 1, 'stats_period': 0.2, 'torch_threads': 1})
    trainer = procs.node('trainer', 'laecips_cloud.trainer_node', params={
        'weights': str(_factory()), 'num_threads': 1})
    n = rosnode.node
    labels, stats = [], []
    pub = n.create_publisher(HardFrame, ifc.HARD_FRAMES, QOS)
    label_sub = n.create_subscription(CloudLabel, ifc.CLOUD_LABELS, labels.append, QOS)
    n.create_subscription(CloudStats, ifc.CLOUD_STATS, stats.append, QOS)
    writer = RawWriter(n, HardFrame, 'rt' + ifc.HARD_FRAMES)  # its DDS topic
    to_trainer = RawWriter(n, HardFrame, 'rt' + ifc.CLOUD_FRAMES)
    labels_out = None
    try:
        rosnode.wait_for_subscribers(pub, timeout=60.0)
        # A labelled probe: the bridge's reader, labeller and label writer are all warm.
        probes = []

        def answered(robot: str) -> bool:
            return any(m.robot_id == robot for m in labels)

        def probe() -> bool:
            if answered('probe0'):
                return True
            probes.append(_frame('probe0', len(probes)))
            pub.publish(probes[-1])
            return False
        wait_until(probe, 60.0, 'a label for a probe frame', period=0.5)
        wait_until(lambda: writer.matched() > 0, 30.0, 'the raw writer matched the bridge')

        hostile = _frame('robot1', 1)
        hostile.image.data = b'\xab' * 16
        cdr = oversize_request(hostile, 'image.data', FRAME_BYTES)
        before = _rss(bridge.pid)
        with _Peak(bridge.pid) as peak:
            writer.write(cdr)
            # Refused by DDS (capped), or else taken whole and rejected by the node.
            wait_until(lambda: DDS_REFUSAL in procs.log('bridge') or
                       f'({FRAME_BYTES + 16} bytes)' in procs.log('bridge'), 90.0,
                       "the 200 MiB hard frame's refusal in the bridge's log")
            # The next valid frame is labelled as before.
            pub.publish(_frame('robot2', 2))
            wait_until(lambda: answered('robot2'), 30.0, 'a label for the next valid frame')
        after = _rss(bridge.pid)
        procs.assert_alive()
        print(f'bridge RSS before {before >> 20} MiB, peak with the {FRAME_BYTES >> 20} MiB '
              f'hard frame {peak.peak >> 20} MiB, after {after >> 20} MiB')
        assert DDS_REFUSAL in procs.log('bridge')
        assert peak.peak - before < BOUND, f'peak grew {(peak.peak - before) >> 20} MiB'
        assert after - before < BOUND, f'grew {(after - before) >> 20} MiB'
        # The frame never reached the node: every frame it counted is a valid one, labelled.
        wait_until(lambda: stats and stats[-1].labels_out == len(probes) + 1, 30.0,
                   'the stats counting every valid frame labelled')
        assert stats[-1].rejected == 0 and stats[-1].frames_in == len(probes) + 1, stats[-1]

        # The trainer: refused by DDS too (its node would not log a frame it took). Measured
        # once it has taken in what the bridge passed on (a model and a training thread per
        # robot, 150-220 MiB when that overlapped the attack), so only the attack counts.
        wait_until(lambda: to_trainer.matched() > 0, 60.0, 'the raw writer matched the trainer')
        # Valid frames until the trainer has paired one (and built that robot's model): the
        # bridge's earlier frames may have gone out before the trainer subscribed.
        sent = []

        def trainer_has_a_robot() -> bool:
            if "new robot '" in procs.log('trainer'):
                return True
            sent.append(_frame('robot3', 10 + len(sent)))
            pub.publish(sent[-1])
            return False
        wait_until(trainer_has_a_robot, 90.0, "the trainer's model for a robot", period=2.0)
        wait_until(_settled(trainer.pid), 60.0, "the trainer's memory settled", period=0.2)
        before = _rss(trainer.pid)
        with _Peak(trainer.pid) as peak:
            to_trainer.write(cdr)
            del cdr
            # Refused by DDS (capped), or else taken: the trainer's node logs nothing then.
            wait_until(lambda: DDS_REFUSAL in procs.log('trainer') or
                       peak.peak - before >= TRAINER_BOUND, 30.0,
                       "Fast DDS's refusal of the 200 MiB frame in the trainer's log")
        procs.assert_alive()
        print(f'trainer RSS before {before >> 20} MiB, peak {peak.peak >> 20} MiB')
        assert peak.peak - before < TRAINER_BOUND, f'grew {(peak.peak - before) >> 20} MiB'
        assert DDS_REFUSAL in procs.log('trainer')

        # A 200 MiB label to the trainer: refused by DDS too. This process's own label reader
        # goes first (it would take the label whole); the bridge only writes labels.
        n.destroy_subscription(label_sub)
        labels_out = RawWriter(n, CloudLabel, 'rt' + ifc.CLOUD_LABELS)
        wait_until(lambda: labels_out.matched() > 0, 60.0, 'the raw label writer matched')
        label = CloudLabel(header=hostile.header, robot_id='robot1', seq=1, labeller='x')
        label.label.format, label.label.data = 'png', b'\xab' * 16
        cdr = oversize_request(label, 'label.data', FRAME_BYTES)
        refusals = procs.log('trainer').count(DDS_REFUSAL)
        before = _rss(trainer.pid)
        with _Peak(trainer.pid) as peak:
            labels_out.write(cdr)
            del cdr
            wait_until(lambda: procs.log('trainer').count(DDS_REFUSAL) > refusals or
                       peak.peak - before >= TRAINER_BOUND, 30.0,
                       "Fast DDS's refusal of the 200 MiB label in the trainer's log")
        procs.assert_alive()
        print(f'trainer RSS before the label {before >> 20} MiB, peak {peak.peak >> 20} MiB')
        assert peak.peak - before < TRAINER_BOUND, f'grew {(peak.peak - before) >> 20} MiB'
        assert procs.log('trainer').count(DDS_REFUSAL) > refusals
    finally:
        writer.close()
        to_trainer.close()
        if labels_out is not None:
            labels_out.close()

