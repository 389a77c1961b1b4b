# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
``backend: ray``: the bridge as a ROS gateway to a Ray Serve labeller deployment.

The test starts a local Ray (2 CPUs, no dashboard, its own temp dir) in the test process;
the bridge runs in its own process and connects to it with ``ray_address``, deploys two
replicas of a tiny TorchScript labeller and answers two robots over DDS. Then one replica
actor is killed mid-stream (``ray.kill``): Serve replaces it and frames keep being answered,
every frame either labelled or counted as dropped; malformed frames are rejected by the
bridge's own checks as with the in-process labeller. A second bridge, for another shard of
robots (its own topics), uses the same replicas. A trainer actor (``laecips_cloud.ray_trainers``)
killed in the middle of a push is restarted by Ray and resumes from its state directory; and
through the system: the trainer node with ``backend: ray`` pushes to a stand-in edge service
over DDS, its robot's actor is killed mid-stream, and the node goes on pushing versions the
restarted actor trained from its persisted state. Ray (one local instance for the module, on
the loopback address only) is shut down at teardown and no Ray process of this test may be
left behind.
"""

import os
from pathlib import Path
import shutil
import struct
import subprocess
import tempfile
import threading
import zlib

from conftest import wait_until
import numpy as np
import pytest
import ray
from rclpy.qos import QoSProfile, ReliabilityPolicy
import torch

from laecips_cloud import ray_backend, ray_trainers
from laecips_core import codecs, weights
from laecips_msgs.msg import CloudLabel, CloudStats, HardFrame, WeightPush
from laecips_msgs.srv import UpdateWeights

QOS = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
H, W = 48, 64
APP = 'laecips_test_labeller'


class _TinySeg(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 11, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def _frame(robot: str, seq: int) -> HardFrame:
    msg = HardFrame(robot_id=robot, seq=seq, hardness=0.5, model_version=1)
    msg.header.frame_id = f'{robot}/camera'
    rgb = np.random.default_rng(seq).integers(0, 256, (H, W, 3), dtype=np.uint8)
    codecs.encode_compressed(rgb, msg.image, 'jpeg', 90)
    return msg


def _png_header_only(width: int, height: int) -> bytes:
    """Return a ~70-byte PNG that declares ``width`` x ``height`` RGB pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack('>I', len(body)) + kind + body
                + struct.pack('>I', zlib.crc32(kind + body)))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2,
                                                               0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'\x00' * 64)) + chunk(b'IEND', b''))


def _ray_procs(tmp: str) -> list[int]:
    """Pids of processes whose command line names ``tmp`` (raylet, gcs_server, workers)."""
    out = []
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                cmd = Path(f'/proc/{d}/cmdline').read_bytes().replace(b'\0', b' ')
                env = Path(f'/proc/{d}/environ').read_bytes()
            except OSError:
                continue
            if tmp.encode() in cmd or f'RAY_TMPDIR={tmp}'.encode() in env:
                out.append(int(d))
    return [p for p in out if p != os.getpid()]


@pytest.fixture(scope='module')
def local_ray():
    """Start a local Ray here (2 CPUs, no dashboard, loopback); stop it, check it is gone."""
    from ray import serve
    tmp = tempfile.mkdtemp(prefix='lray', dir='/tmp')  # short: Ray's socket paths are long
    os.environ['RAY_TMPDIR'] = tmp
    try:
        assert ray_backend.connect('', 2, log_to_driver=False)
        address = ray.get_runtime_context().gcs_address
        assert address.startswith('127.0.0.1:'), address  # no traffic off this machine
        yield address, tmp
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            os.environ.pop('RAY_TMPDIR', None)
        try:
            wait_until(lambda: not _ray_procs(tmp), 30.0, 'every Ray process to exit')
        finally:
            for pid in _ray_procs(tmp):  # only what this test started (its own temp dir)
                subprocess.run(['kill', '-9', str(pid)], check=False)
            shutil.rmtree(tmp, ignore_errors=True)


def _replica_names() -> list[str]:
    return sorted(a['name'] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a['name'].startswith(f'SERVE_REPLICA::{APP}#'))


def test_bridge_ray_two_replicas_two_robots_and_a_replica_killed(local_ray, procs, rosnode,
                                                                 tmp_path):
    # local_ray first: it is torn down last, after the bridge (a Ray driver) has stopped.
    address, tmp = local_ray
    torch.manual_seed(0)
    model = tmp_path / 'seg.ts'
    torch.jit.trace(_TinySeg().eval(), torch.zeros(1, 3, 8, 8)).save(str(model))
    params = {
        'labeller': 'torchscript', 'weights': str(model), 'device': 'cpu',
        'backend': 'ray', 'ray_address': address, 'ray_app': APP, 'ray_replicas': 2,
        'ray_num_cpus': 0.5, 'ray_max_batch_size': 4, 'ray_batch_wait_s': 0.01,
        'ray_max_in_flight': 8, 'ray_retries': 2, 'ray_timeout_s': 30.0,
        'max_batch': 8, 'max_wait_ms': 10.0, 'queue_size': 256, 'stats_period': 0.2,
        'torch_threads': 1, 'anchor_root': 'none', 'deadline': 600.0,
        'qos_depth': 100}  # the bursts below must not overflow the reader's history
    procs.node('bridge', 'laecips_cloud.bridge_node', params=params, env={'RAY_TMPDIR': tmp})
    lock = threading.Lock()
    labels, stats = [], []

    def keep(bucket):
        def cb(m):
            with lock:
                bucket.append(m)
        return cb

    n = rosnode.node
    pub = n.create_publisher(HardFrame, '/laecips/hard_frames', QOS)
    n.create_subscription(CloudLabel, '/laecips/cloud_labels', keep(labels), QOS)
    n.create_subscription(CloudStats, '/laecips/stats_cloud', keep(stats), QOS)
    rosnode.wait_for_subscribers(pub, timeout=120.0)
    rosnode.wait_for_publishers('/laecips/cloud_labels', timeout=120.0)
    probes = []

    def probe() -> bool:  # until the bridge's label writer has matched our reader
        with lock:
            if any(m.robot_id == 'probe0' for m in labels):
                return True
        probes.append(_frame('probe0', len(probes)))
        pub.publish(probes[-1])
        return False

    wait_until(probe, 120.0, 'a label for a probe frame (Serve deployed)', period=1.0)
    first = _replica_names()
    assert len(first) == 2, first

    def answered(robots=('robot1', 'robot2')) -> set:
        with lock:
            return {(m.robot_id, m.seq) for m in labels if m.robot_id in robots}

    # Two robots, every hard frame answered once, by the deployment's labeller.
    sent = [(r, s) for s in range(10) for r in ('robot1', 'robot2')]
    for r, s in sent:
        pub.publish(_frame(r, s))
    wait_until(lambda: answered() >= set(sent), 60.0, 'a label for each of 20 hard frames')
    with lock:
        mine = [m for m in labels if m.robot_id != 'probe0']
    assert len(mine) == len(sent)
    for m in mine:
        assert m.labeller == 'torchscript' and m.label.format == 'png'
        ids = codecs.compressed_to_label(m.label)
        assert ids.shape == (H, W) and ids.max() < 11

    # The bridge checks frames before any backend sees them (#13's bounded decoding): a
    # 64 Mpx PNG bomb and a corrupt JPEG are rejected and counted, never sent to Ray.
    bomb, corrupt = _frame('robot1', 900), _frame('robot2', 901)
    bomb.image.format, bomb.image.data = 'png', _png_header_only(8000, 8000)
    corrupt.image.data = b'\xff\xd8\xff\xe0' + b'not a jpeg' * 50
    pub.publish(bomb)
    pub.publish(corrupt)

    # A replica killed mid-stream: replaced, and frames keep being answered.
    for s in range(10, 20):
        for r in ('robot1', 'robot2'):
            pub.publish(_frame(r, s))
            sent.append((r, s))
    wait_until(lambda: len(answered()) >= 24, 60.0, 'labels flowing before the kill')
    ray.kill(ray.get_actor(first[0], namespace='serve'), no_restart=True)
    for s in range(20, 30):
        for r in ('robot1', 'robot2'):
            pub.publish(_frame(r, s))
            sent.append((r, s))
    wait_until(lambda: len(_replica_names()) == 2 and _replica_names() != first, 120.0,
               'Serve to replace the killed replica')
    # Frames sent once the replacement runs are all answered.
    later = [(r, s) for s in range(100, 110) for r in ('robot1', 'robot2')]
    for r, s in later:
        pub.publish(_frame(r, s))
    wait_until(lambda: answered() >= set(later), 60.0, 'a label for each frame after it')

    def settled():
        with lock:
            st = stats[-1] if stats else None
        done = len(answered())
        return st if st and done + st.dropped_queue == len(sent) + len(later) else None

    st = wait_until(settled, 60.0, 'every frame labelled or counted as dropped')
    assert st.rejected == 2 and st.device.startswith('ray:')
    assert not answered() & {('robot1', 900), ('robot2', 901)}
    log = procs.log('bridge')
    assert "'robot1'#900" in log and '8000x8000 is over the limit' in log
    procs.assert_alive()

    # A second bridge for another shard of robots (its own topics) shares the replicas.
    replicas = _replica_names()
    shard = '/shard2/laecips/'
    remaps = [a for t in ('hard_frames', 'cloud_labels', 'cloud/frames', 'stats_cloud')
              for a in ('-r', f'/laecips/{t}:={shard}{t}')]
    procs.node('bridge2', 'laecips_cloud.bridge_node', params=params, env={'RAY_TMPDIR': tmp},
               ros_args=remaps + ['-r', '__node:=cloud_bridge2'])
    pub2 = n.create_publisher(HardFrame, f'{shard}hard_frames', QOS)
    labels2 = []
    n.create_subscription(CloudLabel, f'{shard}cloud_labels', keep(labels2), QOS)
    rosnode.wait_for_subscribers(pub2, timeout=120.0)
    rosnode.wait_for_publishers(f'{shard}cloud_labels', timeout=120.0)

    def probe2() -> bool:
        with lock:
            if labels2:
                return True
        pub2.publish(_frame('robot3', 1000 + len(probes)))
        probes.append(None)
        return False

    wait_until(probe2, 120.0, 'a label from the second bridge', period=1.0)
    for s in range(10):
        pub2.publish(_frame('robot3', s))
    wait_until(lambda: {m.seq for m in list(labels2)} >= set(range(10)), 60.0,
               'the second shard answered')
    assert 'using the running Serve application' in procs.log('bridge2')
    # Its remapped hard-frame topic is capped at the transport like the default one.
    assert f"{shard}hard_frames: a HardFrame over its type's bound is dropped" in \
        procs.log('bridge2')
    assert _replica_names() == replicas  # the same replicas, not a second deployment
    assert not any(m.robot_id == 'robot3' for m in list(labels))  # shards stay apart
    # The bridges let Ray go when they stop: no error on the way out.
    assert procs.stop('bridge2', timeout=30.0) == 0
    assert procs.stop('bridge', timeout=30.0) == 0


def test_trainer_actor_restarted_resumes_from_its_state(local_ray, tmp_path):
    from laecips_cloud import ray_trainers
    from laecips_core import weights
    from laecips_edge.factory import factory_weights
    # Tiny rounds; a gate every candidate passes: this is about restarts, not learning.
    cfg = {'min_frames': 4, 'steps_per_round': 2, 'batch': 2, 'val_fraction': 0.25,
           'val_size': 1, 'buffer_size': 4, 'gate_margin': -1.0, 'class_balance': False,
           'jitter': 0.0, 'scale': (1.0, 1.0)}  # keeps 4 + 1 x 4 = 8 pairs on disk
    actor = ray_trainers.get_or_create('robot1', str(tmp_path), factory_weights(), cfg,
                                       max_restarts=2, num_cpus=0.5)
    rng = np.random.default_rng(0)

    def add(seqs):
        for s in seqs:
            rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            ray.get(actor.add.remote(rgb, np.full((H, W), s % 3, np.uint8), s))

    add(range(10))
    assert len(list((tmp_path / 'robot1' / 'pairs').glob('*.npz'))) == 8
    first = ray.get(actor.round.remote())
    _, meta = weights.from_bytes(first['data'], first['sha256'])  # pushable as it is
    assert meta.version == first['version']
    assert ray.get(actor.commit.remote(first['version']))  # the edge accepted it
    offered = ray.get(actor.round.remote())  # handed to a push that is still in flight
    assert offered['version'] > first['version']
    before = ray.get(actor.status.remote())

    ray.kill(actor, no_restart=False)  # the process dies; Ray restarts the actor
    after = wait_until(lambda: _status_if_restarted(actor, before['pid']), 120.0,
                       'the trainer actor to come back in a new process')
    assert after['active_version'] == first['version']  # resumes from the accepted push
    assert after['frames_seen'] == before['frames_seen'] == 10
    assert after['resumed_pairs'] == 8
    add(range(10, 12))
    again = ray.get(actor.round.remote())
    # A version it handed out before dying is never offered again.
    assert again['version'] > offered['version']
    assert ray.get(actor.status.remote())['frames_seen'] == 12


def _status_if_restarted(actor, pid: int) -> dict | None:
    try:
        st = ray.get(actor.status.remote(), timeout=10.0)
    except Exception:  # noqa: BLE001 -- the call that met the dying process
        return None
    return st if st['pid'] != pid else None


def test_params_file_sets_replicas_autoscaling_and_resources():
    # Checked by Serve's own option classes, without starting Ray.
    from laecips_cloud import ray_backend
    from laecips_cloud.ray_replica import LabellerReplica
    p = {k: v[0] for k, v in ray_backend.PARAMS.items()}
    p.update(ray_replicas=3, ray_num_gpus=0.5, ray_num_cpus=2.0, ray_max_batch_size=8)
    fixed = LabellerReplica.options(**ray_backend.deployment_options(p))
    assert fixed.num_replicas == 3 and fixed._deployment_config.autoscaling_config is None
    assert fixed.ray_actor_options == {'num_cpus': 2.0, 'num_gpus': 0.5}
    assert fixed.max_ongoing_requests == 16
    p.update(ray_max_replicas=10, ray_target_ongoing=4.0)
    auto = LabellerReplica.options(**ray_backend.deployment_options(p))._deployment_config
    a = auto.autoscaling_config
    assert (a.min_replicas, a.max_replicas, a.target_ongoing_requests) == (3, 10, 4.0)
    with pytest.raises(ValueError, match='backend'):
        ray_backend.factory(dict(p, backend='Ray'), lambda *a, **k: None)


def test_trainer_node_ray_backend_pushes_across_an_actor_restart(local_ray, procs, rosnode,
                                                                 tmp_path):
    address, tmp = local_ray
    state_dir = tmp_path / 'trainers'
    procs.node('trainer', 'laecips_cloud.trainer_node', env={'RAY_TMPDIR': tmp}, params={
        'backend': 'ray', 'ray_address': address, 'ray_state_dir': str(state_dir),
        'ray_num_cpus': 0.5, 'num_threads': 1, 'anchor_root': 'none',
        # Tiny rounds and a gate every candidate passes: this is about restarts.
        'gate_margin': -1.0, 'min_frames': 3, 'steps_per_round': 1, 'batch': 2,
        'val_fraction': 0.25, 'val_size': 2, 'buffer_size': 8,
        'push_encoding': 'full', 'push_bytes_per_point': 0.0, 'retry_initial': 0.2,
        'retry_max': 1.0, 'max_attempts': 100,
        'service_pattern': '/{robot_id}/fake_edge/update_weights'})
    n = rosnode.node
    pub_f = n.create_publisher(HardFrame, '/laecips/cloud/frames', QOS)
    pub_l = n.create_publisher(CloudLabel, '/laecips/cloud_labels', QOS)
    lock = threading.Lock()
    pushes, edge = [], {'active': 1, 'bad': []}

    def serve(req, res):  # the edge's rule: intact weights of a newer version
        with lock:
            try:
                _, meta = weights.from_bytes(bytes(req.weights), req.sha256)
                ok = meta.version == req.version > edge['active']
            except weights.WeightsError as e:
                edge['bad'].append(str(e))
                ok = False
            res.accepted, res.reason = ok, 'ok' if ok else 'refused'
            edge['active'] = max(edge['active'], req.version) if ok else edge['active']
            res.active_version = edge['active']
        return res

    n.create_service(UpdateWeights, '/robot7/fake_edge/update_weights', serve)
    n.create_subscription(WeightPush, '/laecips/weight_pushes', pushes.append, QOS)
    rosnode.wait_for_subscribers(pub_f, timeout=120.0)
    rosnode.wait_for_subscribers(pub_l, timeout=120.0)
    rng = np.random.default_rng(7)
    sent = []

    def pair():  # the bridge's part: a labelled frame and its label (any order joins)
        s = len(sent)
        sent.append(s)
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        hf = HardFrame(robot_id='robot7', seq=s, features=[0.5, 0.4, 0.3], model_version=1)
        codecs.encode_compressed(rgb, hf.image, 'jpeg', 90)
        cl = CloudLabel(robot_id='robot7', seq=s, labeller='test')
        codecs.encode_compressed(np.full((H, W), s % 3, np.uint8), cl.label, 'png')
        pub_f.publish(hf)
        pub_l.publish(cl)

    def accepted_from(version: int):
        def cond():
            pair()  # a steady stream: the actor trains while it runs
            return next((p for p in list(pushes) if p.accepted and p.version >= version), None)
        return cond

    first = wait_until(accepted_from(2), 120.0, 'a push accepted', period=0.3)
    # The commit reached the actor: its accepted weights are on disk to resume from.
    active = state_dir / 'robot7' / 'active.safetensors'
    wait_until(lambda: active.is_file(), 30.0, 'the accepted weights persisted')
    actor = ray.get_actor(ray_trainers.actor_name('robot7'), namespace='laecips')
    before = ray.get(actor.status.remote())
    pair()
    pushed = max(p.version for p in list(pushes) if p.accepted)
    ray.kill(actor, no_restart=False)  # mid-stream; Ray restarts it in a new process

    def restarted():
        pair()
        return _status_if_restarted(actor, before['pid'])

    after = wait_until(restarted, 120.0, 'the trainer actor to come back in a new process',
                       period=0.3)
    # The same actor, restarted by Ray, resumed from what the accepted push left on disk.
    assert after['actor_id'] == before['actor_id']
    assert after['resumed_pairs'] >= 1 and after['active_version'] >= first.version
    # Versions from next_version on can only come from the restarted actor.
    later = wait_until(accepted_from(after['next_version']), 120.0,
                       'a push the restarted actor trained', period=0.3)
    assert later.version > pushed
    assert not edge['bad'] and edge['active'] >= later.version
    assert 'trainer actor restarted by Ray' in procs.log('trainer')
    # No pair lost to the restart: calls that met the dead actor were sent again (one may
    # count twice: the actor can die after storing a pair, before answering).
    seen = wait_until(lambda: (st := _status_if_restarted(actor, -1))
                      and st['frames_seen'] >= len(sent) and st['frames_seen'], 30.0,
                      'every pair in the actor')
    assert seen <= len(sent) + 1, (seen, len(sent))
    procs.assert_alive()
    assert procs.stop('trainer', timeout=30.0) == 0
