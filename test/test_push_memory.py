# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
What an oversize ``update_weights`` request costs the edge in memory (#17 defect 3).

A hostile writer in the test process (``peers/raw_request.py``: a peer with its own DDS
stack is not held to the message's bounds) sends one 200 MiB request to an edge process
while its resident memory is sampled from /proc. The edge's Fast DDS profile
(``laecips_core.dds.capped_profile``) gives the request reader payloads of the request
type's bound (16 MiB of weights), so DDS refuses the request at its first fragment, with
a log line of its own and no memory taken (before: 337 -> 1,129 MiB at peak, rclpy
deserialised it whole). A request under that bound but over the edge's
``max_update_bytes`` reaches the node and is refused and counted there; a real push still
lands after both.

The edge's reader of ``/laecips/cloud_labels`` is capped the same way (``CloudLabel`` is
bounded, ~16 MiB): a 200 MiB label for one of its uploads is refused by DDS, and the next
valid label of that upload still refines it. So is its reader of the bridge's
``/laecips/stats_cloud`` (``CloudStats``, bounded strings; every edge reads it for
back-pressure): a 200 MiB one is refused by DDS and the next valid one still applies.
"""

import threading

from conftest import wait_until
import numpy as np
from peers.raw_request import RawRequestWriter, RawWriter, oversize_request, oversize_string
from sensor_msgs.msg import Image
from test_edge_bad_input import QOS, H, W, _label
from test_edge_node import NS, Peer, _start

from laecips_core import codecs, weights
from laecips_core import interface as ifc
from laecips_edge.factory import factory_weights
from laecips_msgs.msg import CloudLabel, CloudStats
from laecips_msgs.srv import UpdateWeights

REQUEST_BYTES = 200 << 20
LABEL_BYTES = 200 << 20
STATS_BYTES = 200 << 20
MAX_UPDATE_BYTES = 8 << 20
# Growth allowed while the edge refuses both: the 9 MiB request reassembled, deserialised
# and converted to Python (~3 copies) plus slack; the 200 MiB one alone grew it ~790 MiB.
BOUND = 64 << 20
# Fast DDS's own line when a change is larger than a PREALLOCATED history's payloads.
DDS_REFUSAL = 'is larger than the history payload size'


def _rss(pid: int) -> int:
    for line in open(f'/proc/{pid}/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) << 10
    raise RuntimeError(f'no VmRSS for {pid}')


class _Peak:
    """Sample a process's resident memory every 20 ms until the block ends."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.done = pid, _rss(pid), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, _rss(self.pid))
            self.done.wait(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join(5.0)
        self.peak = max(self.peak, _rss(self.pid))


class _Attack(_Peak):
    """
    Write one raw oversize message to the edge and sample its memory until the block ends.

    On entry: ``before`` (RSS), the message written, and a wait until DDS refuses it (a new
    Fast DDS line in the edge's log) or the node shows it took it (``taken`` in the log);
    ``dds_peak`` is the peak up to then.
    """

    def __init__(self, procs, pid: int, writer: RawWriter, cdr: bytes, taken: str,
                 what: str):
        super().__init__(pid)
        self.procs, self.writer, self.cdr, self.taken, self.what = \
            procs, writer, cdr, taken, what

    def __enter__(self):
        log = lambda: self.procs.log('edge')  # noqa: E731
        self.refusals, self.before = log().count(DDS_REFUSAL), _rss(self.pid)
        super().__enter__()
        self.writer.write(self.cdr)
        self.cdr = None
        wait_until(lambda: log().count(DDS_REFUSAL) > self.refusals or self.taken in log(),
                   90.0, self.what)
        self.dds_peak = self.peak
        return self

    def refused(self) -> bool:
        """Return True if DDS refused the message (its line is in the edge's log)."""
        return self.procs.log('edge').count(DDS_REFUSAL) > self.refusals

    def assert_took_nothing(self, what: str) -> None:
        """Assert DDS refused the message before it cost the edge memory."""
        took = (self.dds_peak - self.before) >> 20
        assert self.refused(), f'DDS did not refuse the {what}'
        assert self.dds_peak - self.before < 8 << 20, f'the {what} took {took} MiB'


def test_an_oversize_request_or_label_costs_the_edge_bounded_memory(procs, rosnode, tmp_path):
    # policy always: the label part needs uploads; refine=replace: the refined mask is the label.
    edge = _start(procs, tmp_path / 'state', rule='always', max_update_bytes=MAX_UPDATE_BYTES,
                  refine='replace')
    peer = Peer(rosnode)
    writer = RawRequestWriter(rosnode.node, UpdateWeights, f'{NS}/edge/update_weights')
    labels = stats = None
    try:
        # A first (small, unsigned: refused) call: the service, its threads and buffers warm.
        res = rosnode.call(peer.update, UpdateWeights.Request(version=2), timeout=90.0)
        assert not res.accepted and 'signature' in res.reason, res.reason
        wait_until(lambda: writer.matched() > 0, 30.0, 'the raw writer matched the service')
        hostile = UpdateWeights.Request(version=2, format='safetensors', sha256='0' * 64,
                                        weights=b'\xab' * 16)
        # Refused by DDS (capped), or else taken whole and refused by the node.
        with _Attack(procs, edge.pid, writer,
                     oversize_request(hostile, 'weights', REQUEST_BYTES),
                     f'({REQUEST_BYTES + 16} bytes',
                     "the 200 MiB request's refusal in the edge's log") as peak:
            before, dds_peak = peak.before, peak.dds_peak
            # Under the type's bound, over max_update_bytes: the node refuses and counts it.
            big = UpdateWeights.Request(version=2, format='safetensors',
                                        weights=bytes(MAX_UPDATE_BYTES + (1 << 20)))
            res = rosnode.call(peer.update, big, timeout=60.0)
            del big
        assert not res.accepted and 'too large' in res.reason, res.reason
        after = _rss(edge.pid)
        procs.assert_alive()
        print(f'edge RSS before {before >> 20} MiB, peak with the {REQUEST_BYTES >> 20} MiB '
              f'request {dds_peak >> 20} MiB, with the {(MAX_UPDATE_BYTES >> 20) + 1} MiB one '
              f'{peak.peak >> 20} MiB, after {after >> 20} MiB')
        peak.assert_took_nothing('200 MiB request')
        assert peak.peak - before < BOUND, f'peak grew {(peak.peak - before) >> 20} MiB'
        assert after - before < BOUND, f'grew {(after - before) >> 20} MiB after the answers'
        # Counted: the warm-up and the 9 MiB request; the 200 MiB one never reached the node.
        wait_until(lambda: peer.stats and peer.stats[-1].updates_rejected == 2, 30.0,
                   'two refused updates in /laecips/stats')

        # A real (full, signed) push lands after both.
        sd, meta = weights.load(factory_weights())
        res = peer.call(2, weights.to_bytes(sd, meta))
        assert res.accepted and res.active_version == 2, res.reason
        procs.assert_alive()

        # --- a 200 MiB cloud label, for an upload of this edge ------------------------------
        n = rosnode.node
        refined = []
        n.create_subscription(Image, f'{NS}/edge/mask_refined', refined.append, QOS)
        pub_label = n.create_publisher(CloudLabel, ifc.CLOUD_LABELS, QOS)
        labels = RawWriter(n, CloudLabel, 'rt' + ifc.CLOUD_LABELS)  # its DDS topic
        rosnode.wait_for_subscribers(pub_label)
        peer.wait_matched()
        peer.send(2, 1000)
        wait_until(lambda: len(peer.hard) >= 2, 60.0, 'two uploads')
        first, second = sorted(peer.hard, key=lambda m: m.seq)[:2]
        ok = [np.full((H, W), c, np.uint8) for c in (3, 5)]
        # A first valid label: the label reader, its payloads and the refinement are warm.
        pub_label.publish(_label(first, ok[0]))
        wait_until(lambda: refined, 30.0, 'a refined mask for the first upload')
        wait_until(lambda: labels.matched() > 0, 30.0, 'the raw label writer matched the edge')
        hostile = _label(second, ok[1], key=None)
        hostile.label.data = b'\xab' * 16
        # Refused by DDS (capped), or else taken whole and refused by the node (unsigned).
        with _Attack(procs, edge.pid, labels,
                     oversize_request(hostile, 'label.data', LABEL_BYTES), 'unsigned label',
                     "the 200 MiB label's refusal in the edge's log") as peak:
            before, dds_peak = peak.before, peak.dds_peak
            # The upload it named is still waiting: its valid label refines it.
            pub_label.publish(_label(second, ok[1]))
            wait_until(lambda: len(refined) == 2, 30.0, 'the next valid label refined')
        after = _rss(edge.pid)
        procs.assert_alive()
        print(f'edge RSS before the label {before >> 20} MiB, peak with the '
              f'{LABEL_BYTES >> 20} MiB label {dds_peak >> 20} MiB, after the next valid label '
              f'{peak.peak >> 20} MiB (peak), {after >> 20} MiB')
        peak.assert_took_nothing('200 MiB label')
        assert peak.peak - before < BOUND and after - before < BOUND, \
            f'grew {(peak.peak - before) >> 20} MiB'
        assert (codecs.image_to_array(refined[1]) == ok[1]).all()
        assert refined[1].header.stamp == second.header.stamp
        # Not counted: the label never reached the node (the first and last were taken).
        wait_until(lambda: peer.stats[-1].labels_in == 2, 30.0, 'two labels in the stats')
        assert peer.stats[-1].labels_rejected == 0

        # --- a 200 MiB CloudStats (every edge reads the bridge's stats) --------------------
        pub_stats = n.create_publisher(CloudStats, ifc.CLOUD_STATS, QOS)
        stats = RawWriter(n, CloudStats, 'rt' + ifc.CLOUD_STATS)
        rosnode.wait_for_subscribers(pub_stats)
        wait_until(lambda: stats.matched() > 0, 30.0, 'the raw stats writer matched the edge')
        pub_stats.publish(CloudStats(load=0.5))  # a first valid one: the reader is warm
        cdr = oversize_string(CloudStats(labeller='x' * 16, overloaded=True, load=9.0),
                              'labeller', STATS_BYTES)
        with _Attack(procs, edge.pid, stats, cdr, 'load 9.00',
                     'the 200 MiB CloudStats refused (or taken) by the edge') as peak:
            del cdr
        before, dds_peak = peak.before, peak.dds_peak
        print(f'edge RSS before the stats {before >> 20} MiB, peak with the '
              f'{STATS_BYTES >> 20} MiB CloudStats {dds_peak >> 20} MiB')
        assert 'load 9.00' not in procs.log('edge'), 'the oversize stats were taken'
        peak.assert_took_nothing('200 MiB CloudStats')
        # The next valid one still applies: the edge backs off on the cloud's overload.
        pub_stats.publish(CloudStats(overloaded=True, load=2.5))
        wait_until(lambda: 'cloud overloaded (load 2.50)' in procs.log('edge'), 30.0,
                   'the edge backing off on the next valid CloudStats')
        procs.assert_alive()
    finally:
        writer.close()
        if labels is not None:
            labels.close()
        if stats is not None:
            stats.close()
