# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The Fast DDS profiles users are told to export load without a parser error."""

import os
from pathlib import Path
import subprocess
import sys

import pytest

from laecips_core import dds
from laecips_eval import netlink

CONFIG = Path(__file__).resolve().parents[1] / 'config'
# A node that publishes once: writers are where a publishMode / flow controller applies.
NODE = """
import rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node('profile_check')
node.create_publisher(String, 'profile_check', 10).publish(String(data='x'))
node.destroy_node()
rclpy.shutdown()
print('ok')
"""


def _load(path: Path) -> tuple[int, str]:
    """Return the node's exit code and its output (Fast DDS logs errors on either stream)."""
    env = dict(os.environ, RMW_FASTRTPS_PUBLICATION_MODE='AUTO', **dds.profile_env(path))
    r = subprocess.run([sys.executable, '-c', NODE], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    return r.returncode, r.stdout


@pytest.mark.parametrize('name', ['fastdds_shm.xml', 'fastdds_udp.xml'])
def test_config_profile_loads(name):
    code, out = _load(CONFIG / name)
    assert code == 0 and out.strip().endswith('ok'), out[-2000:]
    assert 'Error' not in out, out[-2000:]


def test_link_profile_loads(tmp_path):
    path = tmp_path / 'link.xml'
    path.write_text(netlink.profile(20e6))
    code, out = _load(path)
    assert code == 0 and 'Error' not in out, out[-2000:]


def test_a_broken_profile_is_noticed(tmp_path):
    # The check above can fail: Fast DDS reports unknown elements on stderr.
    path = tmp_path / 'bad.xml'
    path.write_text((CONFIG / 'fastdds_udp.xml').read_text().replace(
        '<useBuiltinTransports>', '<useBuiltinTransport>1</useBuiltinTransport>'
        '<useBuiltinTransports>'))
    assert 'Error' in _load(path)[1]


def test_profile_env_names():
    both = set(dds.PROFILE_VARS)
    assert set(dds.profile_env('p.xml', {'ROS_DISTRO': 'jazzy'})) == both
    assert dds.profile_env('p.xml', {'ROS_DISTRO': 'kilted'}) == {dds.NEW_VAR: 'p.xml'}
    # The PyPI wheels: whichever is installed here is told by its distribution name.
    major = dds.fastdds_major({})
    assert major in (2, 3)
    assert set(dds.profile_env('p.xml', {})) == (both if major == 2 else {dds.NEW_VAR})
    assert dds.profile_set({dds.OLD_VAR: 'a.xml'}) == 'a.xml'
    assert dds.profile_set({}) is None


@pytest.mark.parametrize('base', [None, 'fastdds_shm.xml', 'fastdds_udp.xml'])
def test_capped_profile_loads(tmp_path, base):
    # The edge's profile (#17 defect 3) over each shipped one, with QoS from XML as it runs.
    # AUTO: the publish mode of the base's writer profile (as _load; the udp one paces).
    environ = {dds.PUBLICATION_MODE: 'AUTO', **(dds.profile_env(CONFIG / base) if base else {})}
    path = tmp_path / 'capped.xml'
    env = dds.cap_requests([dds.request_topic('/robot1/edge/update_weights')], path, environ)
    assert env[dds.QOS_FROM_XML] == '1' and dds.capped('rq/robot1/edge/update_weightsRequest',
                                                       env)
    text = path.read_text()
    assert '<data_reader profile_name="rq/robot1/edge/update_weightsRequest">' in text
    assert text.count('PREALLOCATED_WITH_REALLOC') == 4  # discovery (2), writers, readers
    if base == 'fastdds_shm.xml':
        assert 'shm_large' in text
    r = subprocess.run([sys.executable, '-c', NODE], env={**os.environ, **environ, **env},
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip().endswith('ok'), r.stdout[-2000:]
    assert 'Error' not in r.stdout, r.stdout[-2000:]


def test_ros_names_follow_remap_rules():
    argv = ['edge', '--ros-args', '-p', 'a:=1', '-r', '__ns:=/robot1', '-r', 'other:__ns:=/x']
    assert dds.ros_names(argv, 'edge') == ('/robot1', 'edge')
    assert dds.ros_names(argv + ['--remap', 'edge:__node:=e2'], 'edge') == ('/robot1', 'e2')
    assert dds.ros_names(['edge', '-r', '__ns:=/ignored'], 'edge') == ('/', 'edge')
    assert dds.request_topic('/robot1/edge/update_weights') == \
        'rq/robot1/edge/update_weightsRequest'
    assert not dds.capped('rq/a', {dds.CAPPED_VAR: 'rq/a'})  # QoS not taken from XML


def test_remapped_topics_follow_remap_rules():
    shard = ['bridge', '--ros-args', '-r', '/laecips/hard_frames:=/shard2/laecips/hard_frames',
             '-r', '__node:=cloud_bridge2']
    assert dds.remapped(shard, 'cloud_bridge', '/laecips/hard_frames') == \
        '/shard2/laecips/hard_frames'
    assert dds.remapped(shard, 'cloud_bridge', '/laecips/cloud_labels') == \
        '/laecips/cloud_labels'
    # Node-specific rules, relative names expanded in the node's namespace, first rule wins.
    argv = ['edge', '--ros-args', '-r', '__ns:=/robot1', '-r', 'other:/a:=/b',
            '-r', 'edge:/a:=c', '-r', '/a:=/d', '-r', '~/x:=y']
    assert dds.remapped(argv, 'edge', '/a') == '/robot1/c'
    assert dds.remapped(argv, 'other', '/a') == '/b'
    assert dds.remapped(argv, 'third', '/a') == '/d'
    assert dds.remapped(argv, 'edge', '~/x') == '/robot1/y'
    assert dds.remapped(['edge', '-r', '/a:=/ignored'], 'edge', '/a') == '/a'  # no --ros-args
    renamed = ['edge', '--ros-args', '-r', '__node:=e2', '-r', 'e2:/a:=/e', '-r', 'edge:/a:=/f']
    assert dds.remapped(renamed, 'edge', '/a') == '/e'
    # What a main() caps: the service's final name too (rcl remaps services like topics).
    robot = ['edge', '--ros-args', '-r', '__ns:=/robot1', '-r', '~/update_weights:=/fleet/uw']
    assert dds.final_names(robot, 'edge', ['~/update_weights', '/laecips/cloud_labels']) == \
        ['/fleet/uw', '/laecips/cloud_labels']
    assert dds.final_names(['edge', '--ros-args', '-r', '__ns:=/robot1'], 'edge',
                           ['~/update_weights']) == ['/robot1/edge/update_weights']
