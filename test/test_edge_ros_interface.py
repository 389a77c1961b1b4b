# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The edge as ROS tools see it.

The latched class map, the refined mask in colour, the camera topic however it is moved
(parameter or remap, raw or compressed), /diagnostics, parameter ranges, and the encodings
USB cameras send.
"""

from conftest import wait_until
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from laecips_core import codecs
from laecips_core.classes import CAMVID
from laecips_msgs.msg import ClassMap, CloudLabel, EdgeStats, HardFrame
from laecips_ros import class_map

NS = '/robot1'
QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
BASE = {'image_qos': 'reliable', 'num_threads': 1, 'stats_period': 0.2, 'base_weights': 'none'}


def _edge(procs, name='edge', ros_args=(), **params):
    return procs.node(name, 'laecips_edge.edge_node', params={**BASE, **params},
                      ros_args=['-r', f'__ns:={NS}', *ros_args])


def _frame(stamp: int, encoding: str = 'rgb8') -> Image:
    rgb = np.random.default_rng(stamp).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    if encoding == '8UC3':
        msg = codecs.array_to_image(np.ascontiguousarray(rgb[:, :, ::-1]), Image, 'bgr8')
        msg.encoding = '8UC3'
    else:
        msg = codecs.array_to_image(rgb, Image, 'rgb8')
    msg.header.stamp.sec = stamp
    msg.header.frame_id = 'camera'
    return msg


def test_class_map_latched_and_refined_mask_in_colour(procs, rosnode):
    _edge(procs, policy_rule='always', refine='replace')
    n = rosnode.node
    hard, colour, maps, diags = [], [], [], []
    cam = n.create_publisher(Image, '/camera/image_raw', QOS)
    outs = (n.create_subscription(HardFrame, '/laecips/hard_frames', hard.append, QOS),
            n.create_subscription(Image, f'{NS}/edge/mask_refined_color', colour.append, QOS))
    n.create_subscription(DiagnosticArray, '/diagnostics', diags.append, QOS)
    labels = n.create_publisher(CloudLabel, '/laecips/cloud_labels', QOS)
    rosnode.wait_for_subscribers(cam, timeout=90.0)
    rosnode.wait_for_subscribers(labels)
    rosnode.wait_heard(*outs)  # one frame, one label: nothing may go before a match
    # Subscribed after the edge published it: latched, it still arrives.
    n.create_subscription(ClassMap, f'{NS}/edge/class_map', maps.append, QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL))
    wait_until(lambda: maps, 20, 'the latched class map')
    assert class_map.from_msg(maps[0]) == CAMVID and maps[0].void_id == 11
    # A label for an uploaded frame: the refined mask comes out in the class colours too.
    cam.publish(_frame(100))
    wait_until(lambda: hard, 30, 'a hard frame')
    ids = np.tile(np.arange(11, dtype=np.uint8), (48, 6))[:, :64]
    label = CloudLabel(header=hard[0].header, robot_id='robot1', seq=hard[0].seq,
                       labeller='test')
    codecs.encode_compressed(ids, label.label, 'png')
    labels.publish(label)
    wait_until(lambda: colour, 30, 'the refined mask in colour')
    assert colour[0].encoding == 'rgb8'
    assert np.array_equal(codecs.image_to_rgb(colour[0]), CAMVID.palette()[ids])
    # /diagnostics: the edge's status, named after the node, for this robot.
    wait_until(lambda: any(s.hardware_id == 'robot1' for d in diags for s in d.status), 20,
               'the edge on /diagnostics')
    st = next(s for d in diags for s in d.status if s.hardware_id == 'robot1')
    assert st.name == '/robot1/edge: laecips edge'
    assert st.level in (DiagnosticStatus.OK, DiagnosticStatus.WARN)
    assert {kv.key for kv in st.values} >= {'frames_in', 'fps', 'cloud_trusted'}


@pytest.mark.parametrize('how', ['remap', 'parameter'])
def test_compressed_input_follows_the_camera_topic(procs, rosnode, how):
    # input_type compressed listens on <camera topic>/compressed, the camera topic moved by
    # a remap of /camera/image_raw (launch files, laecips up) or by the parameter.
    moved = '/cam/front/image'
    if how == 'remap':
        _edge(procs, input_type='compressed', ros_args=['-r', f'/camera/image_raw:={moved}'])
    else:
        _edge(procs, input_type='compressed', camera_topic=moved)
    n = rosnode.node
    masks = []
    n.create_subscription(Image, f'{NS}/edge/mask', masks.append, QOS)
    cam = n.create_publisher(CompressedImage, f'{moved}/compressed', QOS)
    rosnode.wait_for_subscribers(cam, timeout=90.0)
    assert n.count_subscribers('/camera/image_raw/compressed') == 0
    rgb = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    msg = codecs.encode_compressed(rgb, CompressedImage, 'jpeg')
    msg.header.stamp.sec = 7

    def answered() -> bool:
        # Sent again until answered: the writer may match the edge before the edge's reader
        # matches it (discovery runs both ways), and a frame sent in between is lost.
        if not masks:
            cam.publish(msg)
        return bool(masks)
    wait_until(answered, 30, 'a mask from the compressed frame', period=1.0)
    assert masks[0].header.stamp.sec == 7


def test_default_camera_topic_and_usb_camera_encodings(procs, rosnode):
    # No arguments but the namespace: /camera/image_raw; an 8UC3 frame (OpenCV BGR) works.
    _edge(procs)
    n = rosnode.node
    masks, stats = [], []
    outs = (n.create_subscription(Image, f'{NS}/edge/mask', masks.append, QOS),
            n.create_subscription(EdgeStats, '/laecips/stats', stats.append, QOS))
    cam = n.create_publisher(Image, '/camera/image_raw', QOS)
    rosnode.wait_for_subscribers(cam, timeout=90.0)
    rosnode.wait_heard(*outs)  # one frame: its mask must not go before the match
    cam.publish(_frame(5, '8UC3'))
    wait_until(lambda: masks, 30, 'a mask from an 8UC3 frame')
    wait_until(lambda: stats and stats[-1].masks_out == 1, 10, 'the frame counted')
    assert stats[-1].rejected == 0


def test_out_of_range_parameter_is_refused(procs):
    p = _edge(procs, jpeg_quality=150)
    wait_until(lambda: p.poll() is not None, 60, 'the edge to refuse jpeg_quality 150')
    assert p.returncode != 0
    assert 'jpeg_quality must be in [1, 100]' in procs.log('edge')
