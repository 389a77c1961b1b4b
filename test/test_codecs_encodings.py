# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Camera encodings USB cameras send: 8UC1/8UC3, YUV 4:2:2, Bayer; cv_bridge for the rest."""

from types import SimpleNamespace

import numpy as np
import pytest

from laecips_core import codecs
from laecips_core.codecs import CodecError

# No ROS in this module: its result is the same in every distro's venv (see .ci/run).
pytestmark = pytest.mark.ros_free


def _msg(arr: np.ndarray, encoding: str, pad: int = 0) -> SimpleNamespace:
    h, w = arr.shape[:2]
    row = arr.reshape(h, -1)
    rows = np.zeros((h, row.shape[1] + pad), np.uint8)
    rows[:, :row.shape[1]] = row
    return SimpleNamespace(height=h, width=w, encoding=encoding, is_bigendian=0,
                           step=rows.shape[1], data=rows.tobytes())


@pytest.fixture
def no_cv_bridge(monkeypatch):
    monkeypatch.setattr(codecs, '_CV_BRIDGE', [None])


def _rgb(h=6, w=8, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_opencv_type_encodings(no_cv_bridge):
    rgb = _rgb()
    assert np.array_equal(codecs.to_rgb(_msg(rgb[:, :, ::-1].copy(), '8UC3', pad=2)), rgb)
    bgra = np.concatenate([rgb[:, :, ::-1], np.full((6, 8, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(codecs.to_rgb(_msg(bgra, '8UC4')), rgb)
    mono = rgb[:, :, 1].copy()
    out = codecs.to_rgb(_msg(mono, '8UC1', pad=1))
    assert out.shape == (6, 8, 3) and all(np.array_equal(out[:, :, c], mono) for c in range(3))


def _yuv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r, g, b = (rgb[:, :, i].astype(np.float64) for i in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    return tuple(np.clip(np.round(c), 0, 255).astype(np.uint8) for c in (y, u, v))


@pytest.mark.parametrize('encoding,order', [('yuv422', 'uyvy'), ('uyvy', 'uyvy'),
                                            ('yuv422_yuy2', 'yuyv'), ('yuyv', 'yuyv')])
def test_yuv422(no_cv_bridge, encoding, order):
    # Pixel pairs share their colour, so 4:2:2 subsampling loses nothing but rounding.
    rgb = np.repeat(_rgb(6, 4, seed=2), 2, axis=1)
    rgb = np.clip(rgb, 20, 235).astype(np.uint8)  # inside video range
    y, u, v = _yuv(rgb)
    packed = np.zeros((6, 8, 2), np.uint8)
    chroma = np.where(np.arange(8) % 2 == 0, u, v)  # U on even pixels, V on odd ones
    y_at = 1 if order == 'uyvy' else 0
    packed[:, :, y_at], packed[:, :, 1 - y_at] = y, chroma
    out = codecs.to_rgb(_msg(packed, encoding, pad=4))
    assert out.shape == (6, 8, 3) and np.abs(out.astype(int) - rgb).max() <= 3


def test_yuv422_needs_an_even_width(no_cv_bridge):
    with pytest.raises(CodecError, match='even width'):
        codecs.to_rgb(_msg(np.zeros((2, 3, 2), np.uint8), 'yuv422'))


@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'gbrg', 'grbg'])
def test_bayer(no_cv_bridge, pattern):
    # A colour per 2x2 cell: the demosaicked image is exact.
    cells = _rgb(3, 4, seed=3)
    rgb = np.repeat(np.repeat(cells, 2, axis=0), 2, axis=1)
    raw = np.zeros(rgb.shape[:2], np.uint8)
    for i, c in enumerate(pattern):
        raw[i // 2::2, i % 2::2] = rgb[i // 2::2, i % 2::2, 'rgb'.index(c)]
    assert np.array_equal(codecs.to_rgb(_msg(raw, f'bayer_{pattern}8', pad=3)), rgb)
    odd = codecs.to_rgb(_msg(raw[:5, :7].copy(), f'bayer_{pattern}8'))
    assert odd.shape == (5, 7, 3) and np.array_equal(odd[:4, :6], rgb[:4, :6])
    assert codecs.to_rgb(_msg(raw[:1, :5].copy(), f'bayer_{pattern}8')).shape == (1, 5, 3)


def test_other_encodings_refused_without_cv_bridge(no_cv_bridge):
    with pytest.raises(CodecError, match=r"unsupported encoding '16UC1'.*cv_bridge"):
        codecs.to_rgb(_msg(np.zeros((2, 2, 2), np.uint8), '16UC1'))


class _FakeBridge:
    def __init__(self, fail=False):
        self.fail, self.calls = fail, []

    def imgmsg_to_cv2(self, msg, desired_encoding):
        self.calls.append((msg.encoding, desired_encoding))
        if self.fail:
            raise RuntimeError('cannot convert')
        return np.full((msg.height, msg.width, 3), 42, np.uint8)


def test_other_encodings_go_through_cv_bridge_when_installed(monkeypatch):
    bridge = _FakeBridge()
    monkeypatch.setattr(codecs, '_CV_BRIDGE', [bridge])
    msg = _msg(np.zeros((2, 3, 2), np.uint8), 'mono16')
    assert (codecs.to_rgb(msg) == 42).all() and bridge.calls == [('mono16', 'rgb8')]
    assert np.array_equal(codecs.to_rgb(_msg(_rgb(), 'rgb8')), _rgb())  # ours: not bridged
    assert len(bridge.calls) == 1
    with pytest.raises(CodecError, match='too large'):  # the limit before decoding
        codecs.to_rgb(msg, max_pixels=5)
    monkeypatch.setattr(codecs, '_CV_BRIDGE', [_FakeBridge(fail=True)])
    with pytest.raises(CodecError, match='through cv_bridge: cannot convert'):
        codecs.to_rgb(msg)


def test_outputs_stay_the_plain_encodings():
    with pytest.raises(CodecError):
        codecs.array_to_image(np.zeros((2, 2, 2), np.uint8), SimpleNamespace, 'yuv422')
