# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Property-based fuzzing of everything the edge decodes from the network, in-process.

For random, truncated and mutated message fields each decoder either returns a valid
result or raises its module's own error (CodecError, WeightsError, PolicyError), never
another exception; the result never exceeds the pixel or byte limits it was given, and no
call allocates much more than its input justifies (tracemalloc peak). Hypothesis is
derandomized, so every run tries the same examples; a hang fails on the pytest timeout.
"""

import io
import json
import math
import struct
import tracemalloc
from types import SimpleNamespace
import zlib

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
import numpy as np
from PIL import Image
import pytest
import torch

from laecips_core import codecs, signing, weights
from laecips_core.codecs import CodecError
from laecips_core.policy import MAX_WEIGHTS, RULES, Policy, PolicyError
from laecips_core.weights import WeightsError

FUZZ = settings(derandomize=True, deadline=None, database=None, max_examples=300,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAX_PX = 64 * 64  # a small limit, so that oversize is reachable with small inputs
# Bytes a single decode may allocate beyond its output (PIL's and numpy's working sets).
SLACK = 4 << 20

# No ROS in this module: its result is the same in every distro's venv (see .ci/run).
pytestmark = [pytest.mark.timeout(120), pytest.mark.ros_free]


class Peak:
    """Measure the peak of Python/numpy allocations inside a ``with`` block."""

    def __enter__(self):
        tracemalloc.start()
        return self

    def __exit__(self, *exc):
        self.bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def _encoded(arr: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


_rng = np.random.default_rng(0)
_RGB = _rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
_LABEL = (np.arange(24 * 32) % 12).astype(np.uint8).reshape(24, 32)
# Real files of each kind the edge meets, to truncate and mutate.
SAMPLES = {
    'jpeg': _encoded(_RGB, 'JPEG', quality=90),
    'jpeg_progressive': _encoded(_RGB, 'JPEG', progressive=True),
    'jpeg_gray': _encoded(_RGB[:, :, 0], 'JPEG'),
    'png_rgb': _encoded(_RGB, 'PNG'),
    'png_label': _encoded(_LABEL, 'PNG'),
    'png_rgba': _encoded(np.dstack([_RGB, _LABEL]), 'PNG'),
    'png_16bit': _encoded(_LABEL.astype(np.uint16) * 300, 'PNG'),
    'png_palette': _encoded(np.asarray(Image.fromarray(_RGB).convert('P')), 'PNG'),
}


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for pos, val in edits:
        b[pos % len(b)] = val
    return bytes(b[:cut]) if cut is not None else bytes(b)


mutated = st.builds(
    _mutate, st.sampled_from(sorted(SAMPLES.values(), key=len)),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6),
    st.none() | st.integers(0, 4000))
compressed_bytes = st.one_of(st.binary(max_size=2048), mutated,
                             st.sampled_from(sorted(SAMPLES.values(), key=len)))


# --- raw Image ------------------------------------------------------------------------
@st.composite
def raw_images(draw):
    """Image fields: mostly consistent (so valid images decode), each then maybe broken."""
    enc = draw(st.sampled_from(sorted(codecs.ENCODINGS)))
    ch = codecs.ENCODINGS[enc][0]
    h, w, pad = draw(st.integers(1, 40)), draw(st.integers(1, 40)), draw(st.integers(0, 5))
    step = w * ch + pad
    n = step * h - draw(st.sampled_from([0, 0, pad]))  # the last row's padding may be cut
    broken = draw(st.sampled_from(['none', 'none', 'encoding', 'height', 'width', 'step',
                                   'data', 'all']))
    huge = st.sampled_from([0, -1, 2**31 - 1, 2**32 - 1, 1 << 40])
    if broken in ('encoding', 'all'):
        enc = draw(st.sampled_from(['RGB8', '16UC1', '32FC1', 'yuv422', '', 'mono16'])
                   | st.text(max_size=12))
    if broken in ('height', 'all'):
        h = draw(st.integers(0, 80) | huge)
    if broken in ('width', 'all'):
        w = draw(st.integers(0, 80) | huge)
    if broken in ('step', 'all'):
        step = draw(st.integers(0, 600) | huge | st.just(-3))
    if broken in ('data', 'all'):
        n = draw(st.integers(0, 8192) | st.integers(max(n - 3, 0), n + 3))
    data = draw(st.binary(min_size=min(n, 64), max_size=min(n, 64))) * (n // 64 + 1)
    return SimpleNamespace(height=h, width=w, encoding=enc, step=step, is_bigendian=0,
                           data=data[:n])


@FUZZ
@given(raw_images())
def test_fuzz_raw_image_to_rgb(msg):
    with Peak() as peak:
        try:
            out = codecs.to_rgb(msg, max_pixels=MAX_PX)
        except CodecError as e:
            event(f'CodecError: {str(e)[:25]}')
            out = None
    if out is not None:
        event('valid image')
        assert out.dtype == np.uint8 and out.shape == (msg.height, msg.width, 3)
        assert out.shape[0] * out.shape[1] <= MAX_PX
        assert msg.step >= msg.width * codecs.ENCODINGS[msg.encoding.lower()][0]
        assert msg.step * (msg.height - 1) < len(msg.data) <= msg.step * msg.height
    assert peak.bytes < SLACK + 4 * MAX_PX * 3


def test_raw_image_limits_are_exact():
    # The boundary cases the fuzzer may or may not hit.
    img = codecs.array_to_image(np.zeros((64, 64, 3), np.uint8), SimpleNamespace)
    assert codecs.image_to_rgb(img, max_pixels=64 * 64).shape == (64, 64, 3)
    with pytest.raises(CodecError, match='too large'):
        codecs.image_to_rgb(img, max_pixels=64 * 64 - 1)
    img.data = bytes(img.data) + b'\0' * 192  # a row too many: step or height is wrong
    with pytest.raises(CodecError, match='data bytes'):
        codecs.image_to_rgb(img)
    img.data = bytes(img.data)[:64 * 192 - 1]  # the last pixel short
    with pytest.raises(CodecError, match='data bytes'):
        codecs.image_to_rgb(img)


# --- CompressedImage / cloud labels -----------------------------------------------------
@FUZZ
@given(compressed_bytes)
def test_fuzz_compressed_to_rgb(data):
    with Peak() as peak:
        try:
            out = codecs.compressed_to_rgb(SimpleNamespace(format='jpeg', data=data),
                                           max_pixels=MAX_PX)
        except CodecError as e:
            event(f'CodecError: {str(e)[:25]}')
            out = None
    if out is not None:
        event('valid image')
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
        assert 0 < out.shape[0] * out.shape[1] <= MAX_PX
    assert peak.bytes < SLACK + 4 * MAX_PX * 3


@FUZZ
@given(compressed_bytes, st.none() | st.sampled_from([(24, 32), (32, 24), (1, 1)]))
def test_fuzz_compressed_to_label(data, shape):
    with Peak() as peak:
        try:
            out = codecs.compressed_to_label(SimpleNamespace(format='png', data=data),
                                             shape=shape, max_pixels=MAX_PX)
        except CodecError as e:
            event(f'CodecError: {str(e)[:25]}')
            out = None
    if out is not None:
        event('valid label')
        assert out.dtype == np.uint8 and out.ndim == 2
        assert shape is None or out.shape == shape
        assert out.size <= MAX_PX
    assert peak.bytes < SLACK + 4 * MAX_PX


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack('>I', len(body)) + kind + body + struct.pack(
        '>I', zlib.crc32(kind + body) & 0xFFFFFFFF)


def test_png_bombs_are_refused_before_decompression():
    # Declared 50000x50000 (2.5 Gpx) with a few bytes of data, and a real 4000x4000 zero
    # image that compresses to a few KiB: both refused from the header, quickly.
    fake = (b'\x89PNG\r\n\x1a\n' + _png_chunk(b'IHDR', struct.pack('>IIBBBBB', 50000, 50000,
                                                                    8, 0, 0, 0, 0))
            + _png_chunk(b'IDAT', zlib.compress(b'\0' * 100)) + _png_chunk(b'IEND', b''))
    real = _encoded(np.zeros((4000, 4000), np.uint8), 'PNG')
    assert len(real) < 100_000
    for data in (fake, real):
        for decode in (codecs.compressed_to_rgb, codecs.compressed_to_label):
            with Peak() as peak, pytest.raises(CodecError, match='too large'):
                decode(SimpleNamespace(format='png', data=data), max_pixels=1 << 20)
            assert peak.bytes < SLACK
    with pytest.raises(CodecError, match='expected 32x24'):
        codecs.compressed_to_label(SimpleNamespace(data=real), shape=(24, 32))


def test_only_jpeg_and_png_are_decoded():
    # PIL would open these (and EPS through Ghostscript); a camera message never holds them.
    for fmt in ('BMP', 'TIFF', 'GIF'):
        data = _encoded(_RGB, fmt)
        assert Image.open(io.BytesIO(data)).size == (32, 24)
        with pytest.raises(CodecError, match='corrupt'):
            codecs.compressed_to_rgb(SimpleNamespace(data=data))
    with pytest.raises(CodecError, match='corrupt'):  # a label map is PNG only
        codecs.compressed_to_label(SimpleNamespace(data=_encoded(_LABEL, 'BMP')))


# --- weights (safetensors) ------------------------------------------------------------
_TENSORS = {'a.weight': torch.arange(12, dtype=torch.float32).reshape(3, 4),
            'a.bias': torch.ones(3, dtype=torch.float16), 'n': torch.tensor([7])}
_ST = weights.to_bytes(_TENSORS, weights.WeightsMeta(input_size=(8, 8)))
_HLEN = struct.unpack('<Q', _ST[:8])[0]


def _with_header(header: dict, body: bytes, length_delta: int = 0) -> bytes:
    text = json.dumps(header).encode()
    n = min(max(len(text) + length_delta, 0), 2**64 - 1)
    return struct.pack('<Q', n) + text + body


@st.composite
def st_files(draw):
    """Safetensors bytes built from a header: mostly consistent, then maybe lying."""
    entries, body = {}, b''
    for name in draw(st.lists(st.text(max_size=6), max_size=4, unique=True)):
        dtype = draw(st.sampled_from(sorted(weights.DTYPE_BYTES)))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        size = weights.DTYPE_BYTES[dtype] * math.prod(shape)
        entries[name] = {'dtype': dtype, 'shape': shape,
                         'data_offsets': [len(body), len(body) + size]}
        body += draw(st.binary(min_size=size, max_size=size))
    meta = dict(json.loads(_ST[8:8 + _HLEN])['__metadata__'])
    lie = draw(st.sampled_from(['none', 'none', 'dtype', 'shape', 'offsets', 'metadata',
                                'length', 'body']))
    if lie == 'dtype' and entries:
        entries[next(iter(entries))]['dtype'] = draw(st.sampled_from(['F8_E4M3', 'U64', 'X'])
                                                     | st.integers())
    elif lie == 'shape' and entries:
        entries[next(iter(entries))]['shape'] = draw(st.lists(
            st.integers(0, 5) | st.sampled_from([1 << 31, 1 << 62, -1, 2**64]), max_size=4)
            | st.just('3'))
    elif lie == 'offsets' and entries:
        entries[next(iter(entries))]['data_offsets'] = draw(st.lists(
            st.integers(0, 80) | st.sampled_from([1 << 62, -8, 2**64]), max_size=3))
    elif lie == 'metadata':
        meta[draw(st.sampled_from(sorted(meta)))] = draw(st.text(max_size=20) | st.sampled_from(
            ['[8, 8]', '[NaN, 1, 1]', '[1e400, 2]', '[0, 0, 0]', '{}', '[' * 50, '0.1']))
    if draw(st.booleans()):
        entries['__metadata__'] = meta
    delta = draw(st.sampled_from([-3, 1, 1 << 40, 2**63])) if lie == 'length' else 0
    if lie == 'body':
        body = body[:draw(st.integers(0, len(body)))] + draw(st.binary(max_size=4))
    return _with_header(entries, body, delta)


safetensors_bytes = st.one_of(
    st.binary(max_size=512), st_files(),
    st.builds(_mutate, st.just(_ST),
              st.lists(st.tuples(st.integers(0, len(_ST)), st.integers(0, 255)), max_size=4),
              st.none() | st.integers(0, len(_ST))),
    st.builds(lambda n, rest: struct.pack('<Q', n) + rest,
              st.integers(0, 2**64 - 1), st.binary(min_size=2, max_size=64)))


@FUZZ
@given(safetensors_bytes)
def test_fuzz_weights_from_bytes(data):
    with Peak() as peak:
        try:
            sd, meta = weights.from_bytes(data)
        except WeightsError as e:
            event(f'WeightsError: {str(e)[:40]}')
            sd = None
    if sd is not None:
        event('valid weights')
        assert all(isinstance(v, torch.Tensor) for v in sd.values())
        assert sum(v.numel() * v.element_size() for v in sd.values()) <= len(data)
        assert meta is None or isinstance(meta, weights.WeightsMeta)
    assert peak.bytes < SLACK + 8 * len(data)


def test_weights_zip_bombs_and_lies_are_refused_by_name():
    body = _ST[8 + _HLEN:]
    header = json.loads(_ST[8:8 + _HLEN])
    cases = {
        'header length': struct.pack('<Q', 1 << 40) + _ST[8:],
        'claims': _with_header({**header, 'a.weight': {
            'dtype': 'F32', 'shape': [1 << 20, 1 << 20], 'data_offsets': [0, 48]}}, body),
        'outside': _with_header({**header, 'a.weight': {
            'dtype': 'F32', 'shape': [1 << 40], 'data_offsets': [0, 1 << 42]}}, body),
        'dtype': _with_header({**header, 'a.weight': {
            'dtype': 'U64', 'shape': [6], 'data_offsets': [0, 48]}}, body),
        'zip archive': b'PK\x03\x04' + bytes(100),
        'gzip': b'\x1f\x8b\x08\x00' + bytes(100),
        'zlib/deflate': zlib.compress(_ST),
        'pickle': b'\x80\x04\x95' + bytes(100),
    }
    for why, data in cases.items():
        with pytest.raises(WeightsError, match=why):
            weights.from_bytes(data)


def test_valid_file_starting_with_the_pickle_byte_is_not_refused():
    # safetensors pads the header to 8 bytes, so 1 valid file in 32 starts with 0x80
    # (header length = 128 mod 256), the pickle opcode: it must load.
    for pad in range(64):
        data = weights.to_bytes({'x': torch.zeros(2)}, weights.WeightsMeta(
            training_data='y' * pad))
        if data[0] == 0x80:
            break
    assert data[0] == 0x80
    sd, meta = weights.from_bytes(data)
    assert torch.equal(sd['x'], torch.zeros(2)) and meta.training_data == 'y' * pad


# --- policies -------------------------------------------------------------------------
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, 0.5, 1.0, 1e308]) | st.integers(-2**70, 2**70)
keys = st.text(max_size=6) | st.sampled_from(
    ['w0', 'w1', 'w2', 'w63', 'w64', 'w01', 'w²', 'w999999999', 'threshold', 'b', 'rate',
     'easy', 'p', 'explore', 'logistic'])


@FUZZ
@given(st.sampled_from(RULES) | st.text(max_size=8), st.lists(keys, max_size=6),
       st.lists(floats, max_size=6), st.booleans(),
       st.lists(st.floats(0, 1), min_size=3, max_size=3))
def test_fuzz_policy_from_lists(rule, ks, vs, same_length, features):
    if same_length:  # mostly pairs; sometimes a key or a value too many
        vs = (vs + [0.5] * len(ks))[:len(ks)]
    try:
        pol = Policy.from_lists(rule, ks, vs)
    except PolicyError as e:
        event(f'PolicyError: {str(e)[:25]}')
        return
    event('valid policy')
    assert pol.rule in RULES and not any(math.isnan(v) for v in pol.params.values())
    assert len(pol.weights()) <= MAX_WEIGHTS
    assert isinstance(pol.decide(np.array(features), np.random.default_rng(0)), bool)
    keys2, values2 = pol.to_lists()
    assert Policy.from_lists(pol.rule, keys2, values2) == pol  # the message round trip


@FUZZ
@given(st.text(max_size=70) | st.binary(max_size=70).map(lambda b: b.hex()),
       st.integers(0, 2**32 - 1), st.text(max_size=8), st.lists(keys, max_size=4),
       st.lists(floats, max_size=4))
def test_fuzz_signature_verify_only_says_yes_or_no(sig, version, rule, ks, vs):
    key = b'k' * 32
    ok = signing.verify(key, sig, 'robot1', version, 'safetensors', '', rule, ks, vs)
    assert ok is False  # random signatures never verify
    vs = [float(v) for v in vs[:len(ks)]]
    if len(vs) == len(ks):
        good = signing.sign(key, 'robot1', version, 'safetensors', '', rule, ks, vs)
        assert signing.verify(key, good, 'robot1', version, 'safetensors', '', rule, ks, vs)
