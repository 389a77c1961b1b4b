# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""ROS-style lint: flake8 + pep257 rules (ruff, ament's settings), headers, package manifests."""

from pathlib import Path
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADER = ('# Copyright 2026 LAECIPS-ROS developers', '# SPDX-License-Identifier: Apache-2.0')


def _tracked(pattern: str) -> list[Path]:
    out = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard',
                          pattern], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / p for p in out.stdout.split() if (ROOT / p).is_file()]


def test_flake8_pep257_rules():
    ruff = shutil.which('ruff') or str(Path(sys.executable).parent / 'ruff')
    res = subprocess.run([ruff, 'check', '--no-cache', '.'], cwd=ROOT, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_copyright_headers():
    missing = []
    for path in _tracked('*.py') + [ROOT / 'laecips']:
        lines = path.read_text().splitlines()
        body = [ln for ln in lines[:4] if not ln.startswith('#!')]
        if tuple(body[:2]) != HEADER:
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, f'files without the copyright header: {missing}'


@pytest.mark.parametrize('manifest', sorted((ROOT / 'src').glob('*/package.xml')),
                         ids=lambda p: p.parent.name)
def test_package_manifest(manifest):
    tree = ET.parse(manifest).getroot()
    assert tree.get('format') == '3'
    assert tree.findtext('name') == manifest.parent.name
    assert tree.findtext('license') and tree.findtext('description')
    build_type = tree.find('export/build_type').text
    assert build_type == ('ament_cmake' if (manifest.parent / 'CMakeLists.txt').exists()
                          else 'ament_python')
    if build_type == 'ament_python':
        pkg = manifest.parent.name
        assert (manifest.parent / 'resource' / pkg).is_file()
        # Every package imported by its Python code is declared as a dependency.
        deps = {e.text for e in tree if e.tag.endswith('depend')}
        src = '\n'.join(p.read_text() for p in (manifest.parent / pkg).rglob('*.py'))
        for mod, dep in [('rclpy', 'rclpy'), ('laecips_msgs', 'laecips_msgs'),
                         ('sensor_msgs', 'sensor_msgs'), ('torch', 'python3-torch'),
                         ('laecips_core', 'laecips_core'), ('laecips_ros', 'laecips_ros'),
                         ('laecips_tools', 'laecips_tools'),
                         ('laecips_edge', 'laecips_edge'), ('laecips_cloud', 'laecips_cloud'),
                         ('laecips_eval', 'laecips_eval'), ('numpy', 'python3-numpy')]:
            if mod != pkg and (f'import {mod}' in src or f'from {mod}' in src):
                assert dep in deps, f'{pkg} imports {mod} but package.xml lacks {dep}'
