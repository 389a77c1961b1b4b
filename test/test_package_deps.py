# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Every package.xml declares what its package imports, with rosdep keys that exist.

``rosdep install --from-paths src`` fails on a key rosdep does not know (it was
``python3-safetensors``) and leaves out what a package imports but does not declare. The
imports are read from the sources as syntax trees; each maps to a rosdep key (ROS packages:
their own name) or to a documented PyPI-only dependency named in a comment.
"""

import ast
from pathlib import Path
import sys
import xml.etree.ElementTree as ET

import pytest

SRC = Path(__file__).resolve().parents[1] / 'src'
PACKAGES = sorted(p.parent.name for p in SRC.glob('*/package.xml'))
# Python modules -> rosdep keys (rosdistro's rosdep/python.yaml).
KEYS = {
    'numpy': 'python3-numpy', 'torch': 'python3-torch', 'PIL': 'python3-pil',
    'tqdm': 'python3-tqdm', 'matplotlib': 'python3-matplotlib',
    'rosbags': 'python3-rosbags-pip', 'yaml': 'python3-yaml', 'cv2': 'python3-opencv',
}
# On PyPI without a rosdep key: the package.xml says so in a comment.
PYPI_ONLY = {'safetensors': 'safetensors', 'pytun': 'python-pytun', 'ray': 'ray[serve]'}
# Imported only where present (ImportError handled): neither declared nor required.
OPTIONAL = {'onnxruntime', 'segment_anything', 'cv_bridge', 'onnx'}
# ROS packages that are build or launch tools rather than imports.
NOT_IMPORTED = {'setuptools'}
ROS_MODULES = {'rclpy', 'rcl_interfaces', 'ament_index_python', 'sensor_msgs', 'std_msgs',
               'std_srvs', 'builtin_interfaces', 'rosgraph_msgs', 'diagnostic_msgs',
               'launch', 'launch_ros'}


def _imports(package: str) -> set[str]:
    out = set()
    for path in (SRC / package).rglob('*.py'):
        if path.name == 'setup.py' or 'test' in path.relative_to(SRC / package).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out |= {a.name.split('.')[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.add(node.module.split('.')[0])
    return out - set(sys.stdlib_module_names) - NOT_IMPORTED - {package}


def _declared(package: str) -> tuple[set[str], str]:
    text = (SRC / package / 'package.xml').read_text()
    root = ET.fromstring(text)
    keys = {e.text.strip() for e in root
            if e.tag in ('depend', 'exec_depend', 'build_depend', 'buildtool_depend',
                         'test_depend')}
    comments = ' '.join(c for c in text.split('<!--')[1:])
    return keys, comments


@pytest.mark.parametrize('package', PACKAGES)
def test_package_xml_declares_what_the_package_imports(package):
    keys, comments = _declared(package)
    missing = []
    for module in sorted(_imports(package) - OPTIONAL):
        if module in PYPI_ONLY:
            if PYPI_ONLY[module] not in comments:
                missing.append(f'{module} (PyPI only: say so in a comment)')
        elif KEYS.get(module, module) not in keys:
            missing.append(f'{module} -> <exec_depend>{KEYS.get(module, module)}</exec_depend>')
    assert not missing, f'{package}/package.xml lacks: {missing}'


@pytest.mark.parametrize('package', PACKAGES)
def test_package_xml_keys_are_known(package):
    keys, _ = _declared(package)
    known = set(KEYS.values()) | ROS_MODULES | set(PACKAGES) | {
        'python3-pytest', 'ament_cmake', 'rosidl_default_generators', 'rosidl_default_runtime'}
    unknown = keys - known
    assert not unknown, f'{package}/package.xml: keys rosdep may not know: {unknown}'
    assert 'python3-safetensors' not in keys  # no such rosdep key


def test_pypi_only_dependencies_are_in_the_requirements():
    reqs = (SRC.parent / 'requirements' / 'python.txt').read_text()
    for name in PYPI_ONLY.values():
        assert f'\n{name}==' in reqs or f'\n{name}>' in reqs, name
