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
            if isinstance(default, ast.Call) and getattr(default.func, 'id', '') == \
                    'PathJoinSubstitution':  # PathJoinSubstitution([config, 'x.yaml'])
                default = _const(default.args[0].elts[-1])
            elif isinstance(default, ast.Call):
                default = None  # another substitution (dds_profile: EnvironmentVariable)
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
        if _const(kw['package']) == 'rviz2':
            continue  # a viewer (rviz:=true), not one of the system's nodes
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


def _calls(tree, func: str) -> list[ast.Call]:
    return [c for c in ast.walk(tree) if isinstance(c, ast.Call)
            and getattr(c.func, 'id', getattr(c.func, 'attr', '')) == func]


@pytest.mark.parametrize('launch_file', ['edge.launch.py', 'cloud.launch.py'])
def test_launch_files_apply_the_shared_memory_profile(launch_file):
    # Full camera rate on one machine: both Fast DDS variable names (Jazzy's and Kilted's)
    # are set to the dds_profile argument, whose default is config/fastdds_shm.xml unless a
    # profiles file is exported already.
    text = (LAUNCH / launch_file).read_text()
    tree = ast.parse(text)
    sets = _calls(tree, 'SetEnvironmentVariable')
    assert len(sets) == 1 and _launch_config(sets[0].args[1]) == 'dds_profile'
    assert 'for name in dds.profile_env(' in text  # the names the installed Fast DDS reads
    default = next(c for c in _calls(tree, 'DeclareLaunchArgument')
                   if _const(c.args[0]) == 'dds_profile').keywords[0].value
    inner = default.keywords[0].value  # EnvironmentVariable(NEW, default=EnvironmentVariable(
    assert ast.unparse(default.args[0]) == 'dds.NEW_VAR'  # OLD, default=config/<shm>))
    assert ast.unparse(inner.args[0]) == 'dds.OLD_VAR'
    assert ast.unparse(inner.keywords[0].value.args[0].elts[-1]) == 'dds.SHM_PROFILE'
    from laecips_core import dds
    assert (ROOT / 'config' / dds.SHM_PROFILE).is_file()
    assert set(dds.profile_env('x', {})) <= set(dds.PROFILE_VARS)
    assert set(dds.profile_env('x', {'ROS_DISTRO': 'jazzy'})) == set(dds.PROFILE_VARS)


def test_edge_launch_rviz_argument_starts_rviz_with_the_config():
    tree = ast.parse((LAUNCH / 'edge.launch.py').read_text())
    args = _arg_defaults(tree)
    assert args['rviz'] == 'false'
    rviz = [c for c in _calls(tree, 'Node') if any(
        k.arg == 'package' and _const(k.value) == 'rviz2' for k in c.keywords)]
    assert len(rviz) == 1
    kw = {k.arg: k.value for k in rviz[0].keywords}
    assert _launch_config(kw['condition'].args[0]) == 'rviz'
    assert _const(kw['arguments'].elts[1].args[0].elts[-1]) == 'laecips.rviz'
    assert (ROOT / 'config' / 'laecips.rviz').is_file()


def test_rviz_shows_colour_images_not_raw_class_ids():
    # mono8 class ids 0-11 drawn raw are almost black: every image display shows an rgb8
    # topic (the refined mask's coloured twin), none normalises a range.
    from laecips_core import interface as ifc
    text = (ROOT / 'config' / 'laecips.rviz').read_text()
    topics = [ln.split('Value:')[1].strip() for ln in text.splitlines()
              if ln.strip().startswith('Value: /')]
    assert ifc.edge_topic('robot1', ifc.EDGE_MASK_REFINED_COLOR) in topics
    assert ifc.edge_topic('robot1', ifc.EDGE_MASK_REFINED) not in topics
    assert 'Normalize Range: true' not in text


def test_up_applies_the_shared_memory_profile_unless_one_is_exported(tmp_path):
    from laecips_bringup.cli import up_env
    from laecips_core import dds
    env, profile = up_env({'PATH': '/bin'}, None)
    assert profile.endswith('/config/' + dds.SHM_PROFILE) and Path(profile).is_file()
    assert env[dds.NEW_VAR] == profile and env['PATH'] == '/bin'
    env, _ = up_env({'ROS_DISTRO': 'jazzy'}, None)
    assert env[dds.OLD_VAR] == env[dds.NEW_VAR]  # Jazzy reads the old name
    own = {dds.OLD_VAR: '/my/profile.xml'}
    assert up_env(own, None) == (own, '/my/profile.xml')  # the user's wins
    env, profile = up_env(own, str(tmp_path / 'p.xml'))  # --dds-profile P
    assert profile == str(tmp_path / 'p.xml') and env.get(dds.NEW_VAR) == profile
    assert up_env({}, '') == ({}, None)  # --dds-profile ''
