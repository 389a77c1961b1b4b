# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The protocol's scoring rules (final mask, deadline, skips), the recorder node, the report."""

import json
import math

from conftest import wait_until
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message

from laecips_eval import report
from laecips_eval.recorder import Recording

S = 10**9


def _gt():
    gt = np.zeros((4, 6), np.uint8)
    gt[2:] = 3
    gt[0, 0] = 11  # void: ignored
    return gt


def test_final_mask_rules():
    gt = _gt()
    right, wrong = gt.copy(), np.full_like(gt, 5)
    right[0, 0] = 0
    rec = Recording()
    for i, phase in enumerate(['day', 'day', 'dusk', 'dusk', 'dusk']):
        rec.on_gt((10 + i) * S, phase, f'f{i}', gt)
    # f0: edge wrong at +0.1 s, cloud right 0.4 s later: cloud in time.
    rec.on_edge_mask(10 * S, wrong, 10 * S + S // 10)
    rec.on_refined(10 * S, right, 10 * S + S // 2)
    rec.on_hard_frame(10 * S, 1000, 0.7, [0.1, 0.2, 0.3])
    rec.on_label(10 * S, 300)
    # f1: cloud late (2 s after the edge mask): the edge's answer counts.
    rec.on_edge_mask(11 * S, wrong, 11 * S + S // 10)
    rec.on_refined(11 * S, right, 13 * S)
    rec.on_hard_frame(11 * S, 1000)
    rec.on_label(11 * S, 300)
    # f2: skipped by the edge: the last final mask (f1's: wrong).
    # f3: cloud in time with void pixels: filled from the edge mask (half right).
    half = right.copy()
    half[2:] = 255
    edge3 = right.copy()
    edge3[2:] = 1
    rec.on_edge_mask(13 * S, edge3, 13 * S + S // 5)
    rec.on_refined(13 * S, half, 13 * S + S // 2)
    # f4: masks arrive in a different order than ground truth (keyed by stamp), resized.
    rec.on_edge_mask(14 * S, np.repeat(np.repeat(right, 2, 0), 2, 1), 14 * S + S // 4)
    frames = rec.finalize(deadline_s=1.0, keep={0, 2})
    assert [f.source for f in frames] == ['cloud', 'edge', 'last', 'cloud', 'edge']
    assert [f.uploaded for f in frames] == [True, True, False, False, False]
    assert frames[0].latency_s == pytest.approx(0.5) and frames[1].latency_s == pytest.approx(0.1)
    assert math.isnan(frames[2].latency_s) and frames[3].latency_s == pytest.approx(0.5)
    assert frames[1].cloud_delay_s == pytest.approx(1.9)
    assert frames[0].conf.trace() == 23 and frames[1].conf.trace() == 0
    assert frames[2].conf.trace() == 0  # the wrong mask of f1 carried over
    assert frames[3].conf.sum() == 23 and frames[3].conf.trace() == 11  # void filled, wrong
    assert frames[4].conf.trace() == 23
    assert frames[0].bytes_up == 1000 and frames[0].bytes_down == 300
    assert frames[0].features == [0.1, 0.2, 0.3] and frames[0].hardness == pytest.approx(0.7)
    assert frames[2].final_mask is not None and frames[1].final_mask is None
    s = report.summarize({'frames': [f.to_dict() for f in frames], 'pushes': []})
    assert s['upload_ratio'] == pytest.approx(0.4) and s['source_last'] == 1
    assert s['bytes_up_per_frame'] == pytest.approx(400) and s['late_labels'] == 1
    # day: f0 right, f1 all class 5 -> IoU 0: 11/22, 3: 12/24, 5: 0/23 -> mIoU 1/3.
    assert s['miou_day'] == pytest.approx(100 / 3)
    assert s['frames_dusk'] == 3 and 'miou_dusk_adapt' not in s
    assert math.isnan(s['miou_adapt']) and s['frames_adapt'] == 0
    assert s['phases'] == ['day', 'dusk'] and s['miou_clean'] == s['miou_day']
    assert s['miou_scoring'] == s['miou_dusk'] and s['frames_scoring'] == 3


def _frame(i, phase, right):
    gt = _gt()
    conf = np.zeros((11, 11), np.int64)
    for g, p in zip(gt.ravel(), (gt if right else np.full_like(gt, 5)).ravel()):
        if g < 11:
            conf[g, p] += 1
    return {'index': i, 'phase': phase, 'name': f'f{i}', 'conf': conf.tolist(),
            'edge_conf': conf.tolist(), 'source': 'edge', 'uploaded': i % 2 == 0,
            'labelled': False, 'latency_s': 0.1, 'bytes_up': 0, 'bytes_down': 0,
            'stamp_ns': i}


def test_phases_come_from_the_frames_any_names():
    # Phase names other than the drift stream's: each reported, with the roles.
    assert report.phase_roles(['day', 'dusk_adapt', 'dusk']) == {
        'clean': ['day'], 'scoring': ['dusk'], 'adapt': ['dusk_adapt']}
    assert report.phase_roles(['sun', 'rain_adapt', 'rain', 'snow']) == {
        'clean': ['sun'], 'scoring': ['rain', 'snow'], 'adapt': ['rain_adapt']}
    assert report.phase_roles(['test']) == {'clean': ['test'], 'scoring': ['test'],
                                             'adapt': []}
    frames = [_frame(i, ph, ph != 'rain') for i, ph in enumerate(
        ['sun', 'sun', 'rain_adapt', 'rain', 'rain', 'snow'])]
    s = report.summarize({'frames': frames, 'pushes': []})
    assert s['phases'] == ['sun', 'rain_adapt', 'rain', 'snow']
    assert s['miou_sun'] == pytest.approx(100) and s['miou_rain'] == pytest.approx(0)
    assert s['frames_scoring'] == 3 and s['frames_adapt'] == 1 and s['frames_clean'] == 2
    assert s['miou_adapt'] == pytest.approx(100) and 0 < s['miou_scoring'] < 100
    assert s['upload_ratio_rain'] == pytest.approx(0.5)
    row = report.average([s, s])
    assert row['roles'] == s['roles'] and row['miou_scoring_std'] == 0
    head = report.table({'x': row}).splitlines()[0]
    assert '| sun | rain+snow (scoring) | rain_adapt (adaptation) | edge model rain+snow |' \
        in head


def _image(stamp_ns, arr, encoding='mono8', frame_id=''):
    from sensor_msgs.msg import Image
    msg = Image(height=arr.shape[0], width=arr.shape[1], encoding=encoding,
                step=arr.shape[1] * (1 if arr.ndim == 2 else 3), data=arr.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, S)
    msg.header.frame_id = frame_id
    return msg


def test_recorder_node_counts_and_scores(procs, rosnode, tmp_path):
    from sensor_msgs.msg import Image

    from laecips_msgs.msg import CloudLabel, EdgeStats, HardFrame, WeightPush
    out = tmp_path / 'run.json'
    procs.node('rec', 'laecips_eval.recorder_node', params={
        'output': str(out), 'expect_frames': 3, 'keep_frames': [0, 2], 'deadline': 30.0,
        'idle_timeout': 30.0})
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    pub = {t: rosnode.node.create_publisher(c, t, qos) for t, c in (
        ('/camera/ground_truth', Image), ('/robot1/edge/mask', Image),
        ('/robot1/edge/mask_refined', Image), ('/laecips/hard_frames', HardFrame),
        ('/laecips/cloud_labels', CloudLabel), ('/laecips/weight_pushes', WeightPush),
        ('/laecips/stats', EdgeStats))}
    for p in pub.values():
        rosnode.wait_for_subscribers(p)
    wait_until(lambda: 'ready' in procs.log('rec'), 30, 'the recorder to be ready')
    gt = _gt()
    import time
    now = time.time_ns()
    stamps = [now + i * S // 10 for i in range(3)]
    hf = HardFrame(robot_id='robot1', seq=0, hardness=0.5, features=[0.5, 0.2, 0.1])
    lab = CloudLabel(robot_id='robot1', seq=0, labeller='test')
    head = _image(stamps[0], gt).header
    hf.header.stamp, hf.header.frame_id = head.stamp, head.frame_id
    lab.header = hf.header
    hf.image.format, hf.image.data = 'jpeg', bytes(5000)
    lab.label.format, lab.label.data = 'png', bytes(700)
    pub['/laecips/weight_pushes'].publish(WeightPush(version=2, active_version=2,
                                                     bytes=12345, accepted=True))
    for i, s in enumerate(stamps):
        pub['/camera/ground_truth'].publish(_image(s, gt, frame_id=f'dusk/f{i}'))
    pub['/robot1/edge/mask'].publish(_image(stamps[0], np.full_like(gt, 5)))
    pub['/laecips/hard_frames'].publish(hf)
    pub['/robot1/edge/mask_refined'].publish(_image(stamps[0], gt))
    pub['/laecips/cloud_labels'].publish(lab)
    pub['/robot1/edge/mask'].publish(_image(stamps[2], gt))
    assert procs.items[0][1].poll() is None  # the edge has not accounted for its frames yet
    # The edge's counters: 3 frames, 2 masks, 1 skipped, 1 upload (all seen): now it is done.
    # Periodic like the edge's (the recorder reads stats best effort).
    stats = EdgeStats(robot_id='robot1', frames_in=3, masks_out=2, skipped=1, uploaded=1)

    def finished():
        pub['/laecips/stats'].publish(stats)
        return procs.items[0][1].poll() is not None
    wait_until(finished, 30, 'the recorder to finish', period=0.2)
    assert procs.items[0][1].returncode == 0, procs.log('rec')
    run = json.loads(out.read_text())
    assert run['totals']['gt'] == 3 and run['totals']['hard_frames'] == 1
    # The bytes as received: the CDR payload padded to a multiple of 4 (a CloudLabel's length
    # need not be one: it ends in a uint8).
    def wire(msg) -> int:
        return -(-len(serialize_message(msg)) // 4) * 4
    assert run['totals']['bytes_hard_frames'] == wire(hf)
    assert run['totals']['bytes_labels'] == wire(lab)
    assert [f['source'] for f in run['frames']] == ['cloud', 'last', 'edge']
    assert [f['name'] for f in run['frames']] == ['f0', 'f1', 'f2']
    assert run['pushes'][0]['bytes'] == 12345
    masks = np.load(out.with_suffix('.npz'))
    assert sorted(masks.files) == ['edge_0', 'edge_2', 'final_0', 'final_2']
    assert np.array_equal(masks['final_0'][gt != 11], gt[gt != 11])
    assert masks['final_0'][0, 0] == 5  # the cloud's void pixel took the edge's class
    s = report.summarize(run)
    # f0, f2 right; f1 carries f0's mask (right): every class right.
    assert s['miou_dusk'] == pytest.approx(100)
    rows = {'laecips': report.average([s]), 'random': report.average([s, s])}
    md = report.table(rows)
    assert '| laecips |' in md and 'random (×2)' in md
    assert '1 pushes reported by the trainer (1 accepted)' in md
    files = report.plots({'laecips': run}, tmp_path / 'plots')
    assert all(f.stat().st_size > 1000 for f in files)
    png = report.overlay(np.zeros((4, 6, 3), np.uint8), masks['edge_0'], masks['final_0'],
                         gt, tmp_path / 'o.png')
    assert png.is_file()
