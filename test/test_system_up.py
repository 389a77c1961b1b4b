# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""``laecips up``: starts the installed executables, and stops cleanly or on a node's death."""

from pathlib import Path
import signal
import sys

from conftest import wait_until
from diagnostic_msgs.msg import DiagnosticArray
import psutil_free as pf
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
import yaml

from laecips_core import nodes as system

RVIZ = Path(__file__).resolve().parents[1] / 'config' / 'laecips.rviz'
SMALL = ['--set', 'edge.num_threads=1', '--set', 'cloud_bridge.torch_threads=1',
         '--set', 'cloud_bridge.warmup=false', '--set', 'trainer.num_threads=1']


def _up(procs, *args):
    return procs.start('up', [sys.executable, '-m', 'laecips_bringup.cli', 'up', *args])


def _rviz_topics() -> list[str]:
    d = yaml.safe_load(RVIZ.read_text())
    return [x['Topic']['Value'] for x in d['Visualization Manager']['Displays']]


def test_up_all_starts_serves_rviz_topics_and_stops_cleanly(procs, rosnode):
    p = _up(procs, 'all', *SMALL)
    node = rosnode.node
    diags = []
    node.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 50)
    wanted = ['/robot1/edge/mask', '/laecips/hard_frames', '/laecips/cloud_labels',
              '/laecips/stats', '/laecips/weight_pushes']
    wait_until(lambda: all(node.count_publishers(t) for t in wanted), 120,
               f'publishers on {wanted}')
    wait_until(lambda: ('/robot1/edge/update_weights', ['laecips_msgs/srv/UpdateWeights'])
               in node.get_service_names_and_types(), 30, 'the update_weights service')
    # RViz shows only what the nodes publish, or the camera topic the edge subscribes to.
    for topic in _rviz_topics():
        # Discovery reports each endpoint on its own: wait for each, not just the first ones.
        if topic == system.CAMERA_TOPIC:
            wait_until(lambda t=topic: node.count_subscribers(t) >= 1, 30,
                       f'a subscriber on {topic}')
        else:
            wait_until(lambda t=topic: node.count_publishers(t) >= 1, 30,
                       f'a publisher on {topic} (shown in laecips.rviz)')
    # Each node's health on /diagnostics (rqt_robot_monitor, diagnostic aggregators).
    wanted_names = ('/robot1/edge: laecips edge', '/cloud_bridge: laecips cloud bridge',
                    '/trainer: laecips trainer')
    wait_until(lambda: set(wanted_names) <= {st.name for d in diags for st in d.status}, 60,
               f'{wanted_names} on /diagnostics')
    # The bridge's parameters are read once at start: setting one live is refused, not
    # accepted and ignored.
    client = node.create_client(SetParameters, '/cloud_bridge/set_parameters')
    res = rosnode.call(client, SetParameters.Request(parameters=[
        Parameter('max_batch', value=2).to_parameter_msg()]))
    assert not res.results[0].successful and 'read-only' in res.results[0].reason
    children = pf.children(p.pid)
    assert len(children) == 3, children
    # Camera frames through shared memory: every node loads the SHM profile.
    for c in children:
        environ = dict(kv.split('=', 1) for kv in open(f'/proc/{c}/environ').read().split(
            '\0') if '=' in kv)
        assert environ.get('FASTDDS_DEFAULT_PROFILES_FILE', '').endswith('fastdds_shm.xml')
    p.send_signal(signal.SIGINT)
    assert p.wait(30) == 0, procs.log('up')
    assert 'shutdown requested' in procs.log('up')
    assert not [c for c in children if pf.alive(c)], 'node processes left behind'


def test_up_stops_everything_when_a_node_dies(procs):
    p = _up(procs, 'cloud', '--set', 'trainer.push_mode=bogus', *SMALL)
    code = p.wait(120)
    log = procs.log('up')
    assert code != 0, log
    assert 'trainer exited with code' in log and 'shutting down the others' in log, log
