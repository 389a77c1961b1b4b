# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The launch files and ``laecips up`` start the same nodes the same way.

launch_ros is not installable from PyPI, so the launch files are read as syntax trees.
"""

import ast
from pathlib import Path

import pytest

from laecips_core import nodes as system

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / 'launch'


def _const(node):
    return node.value if isinstance(node, ast.Constant) else None


def _arg_defaults(tree) -> dict:
    """Map DeclareLaunchArgument name -> default (a file name under config/ or a constant)."""
    out = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, 'id', '') == \
                'DeclareLaunchArgument':
            kw = {k.arg: k.value for k in call.keywords}
            default = kw.get('default_value')
            if isinstance(default, ast.Call):  # PathJoinSubstitution([config, 'x.yaml'])
                default = _const(default.args[0].elts[-1])
            else:
                default = _const(default)
            out[_const(call.args[0])] = default
    return out


def _launch_config(node):
    if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'LaunchConfiguration':
        return _const(node.args[0])
    if isinstance(node, ast.Name):
        return node.id  # a variable bound to LaunchConfiguration(<same name>)
    return None


def read_nodes(path: Path) -> list[dict]:
    """Return each Node(...) of a launch file (following includes) as plain values."""
    tree = ast.parse(path.read_text())
    defaults = _arg_defaults(tree)
    nodes = []
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        name = getattr(call.func, 'id', '')
        if name == 'PythonLaunchDescriptionSource':
            included = call.args[0].args[0].elts[-1]
            nodes += read_nodes(LAUNCH / _const(included))
        if name != 'Node':
            continue
        kw = {k.arg: k.value for k in call.keywords}
        params = kw['parameters'].elts
        files = [defaults[_launch_config(p)] for p in params if _launch_config(p)]
        dicts = [{_const(k): _launch_config(v) for k, v in zip(p.keys, p.values)}
                 for p in params if isinstance(p, ast.Dict)]
        remaps = [(_const(r.elts[0]), defaults[_launch_config(r.elts[1])])
                  for r in kw['remappings'].elts] if 'remappings' in kw else []
        nodes.append({
            'package': _const(kw['package']), 'executable': _const(kw['executable']),
            'name': _const(kw['name']),
            'namespace': _launch_config(kw['namespace']) if 'namespace' in kw else None,
            'params_files': files, 'param_args': dicts, 'remaps': remaps,
        })
    return nodes


def from_runner(spec: system.NodeSpec) -> dict:
    """Read the same facts back from the argv ``laecips up`` builds."""
    args = system.ros_args(spec, robot_id='robotX', camera_topic='/cam/other')
    pairs = list(zip(args, args[1:]))
    remaps = [b.split(':=') for a, b in pairs if a == '-r']
    node = dict(r for r in remaps if r[0] in ('__node', '__ns'))
    params = [Path(b).name for a, b in pairs if a == '--params-file']
    sets = dict(b.split(':=') for a, b in pairs if a == '-p')
    return {
        'package': spec.package, 'executable': spec.executable, 'name': node['__node'],
        'namespace': 'robot_id' if node.get('__ns') == '/robotX' else None,
        'params_files': params, 'param_args': [{k: k for k in sets}],
        'remaps': [(a, system.CAMERA_TOPIC) for a, b in remaps
                   if not a.startswith('__') and b == '/cam/other'],
    }


@pytest.mark.parametrize('launch_file,group', [('edge.launch.py', 'edge'),
                                               ('cloud.launch.py', 'cloud'),
                                               ('laecips.launch.py', 'all')])
def test_launch_files_match_runner(launch_file, group):
    launched = read_nodes(LAUNCH / launch_file)
    expected = [from_runner(s) for s in system.GROUPS[group]]
    key = lambda n: n['name']  # noqa: E731
    assert sorted(launched, key=key) == sorted(expected, key=key)


def test_params_files_exist_for_every_node():
    for spec in system.GROUPS['all']:
        assert (ROOT / 'config' / spec.params_file).is_file(), spec.params_file
