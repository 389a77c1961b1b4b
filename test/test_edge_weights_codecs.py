# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Weights files (safetensors only, sha256, shape/dtype checks), codecs, models and engine."""

import io
import math
from types import SimpleNamespace

import numpy as np
from PIL import Image
import pytest
import torch

from laecips_core import codecs, models, weights
from laecips_core.codecs import CodecError
from laecips_core.weights import WeightsError, WeightsMeta
from laecips_edge.engine import Options, Segmenter

# No ROS in this module: its result is the same in every distro's venv (see .ci/run).
pytestmark = pytest.mark.ros_free

TINY = WeightsMeta(input_size=(64, 80), version=3, training_data='test')


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return models.create('fastscnn').eval()


def test_fastscnn_shape_and_size(model):
    assert 0.5e6 < models.num_params(model) <= 1.0e6
    with torch.inference_mode():
        y = model(torch.zeros(2, 3, 64, 80))
    assert y.shape == (2, 11, 8, 10)  # output stride 8
    with pytest.raises(KeyError):
        models.create('no_such_arch')


def test_weights_round_trip_and_metadata(model, tmp_path):
    path = tmp_path / 'w.safetensors'
    sha = weights.save(path, model.state_dict(), TINY)
    assert sha == weights.sha256(path.read_bytes())
    sd, meta = weights.load(path, expected_sha256=sha)
    assert meta.input_size == (64, 80) and meta.version == 3 and meta.arch == 'fastscnn'
    assert meta.class_map.void == 11 and meta.num_classes == 11
    weights.check(sd, model)
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())


def test_weights_rejects_pickle_sha_and_shape(model, tmp_path):
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    with pytest.raises(WeightsError, match='pickle'):
        weights.from_bytes(buf.getvalue())
    import pickle
    with pytest.raises(WeightsError, match='not a safetensors'):
        weights.from_bytes(pickle.dumps({'a': 1}, protocol=2))
    data = weights.to_bytes(model.state_dict(), TINY)
    with pytest.raises(WeightsError, match='sha256 mismatch'):
        weights.from_bytes(data, expected_sha256='0' * 64)
    with pytest.raises(WeightsError, match='corrupt|not a safetensors|outside'):
        weights.from_bytes(data[:len(data) // 2])
    sd = dict(model.state_dict())
    name = 'classifier.3.weight'
    sd[name] = torch.zeros(5, 128, 1, 1)
    with pytest.raises(WeightsError, match='shape'):
        weights.check(sd, model)
    sd = dict(model.state_dict())
    sd[name] = sd[name].double()
    with pytest.raises(WeightsError, match='dtype'):
        weights.check(sd, model)
    sd = dict(model.state_dict())
    del sd[name]
    sd['extra.weight'] = torch.zeros(1)
    with pytest.raises(WeightsError, match='missing.*unexpected'):
        weights.check(sd, model)


def test_updates_keep_the_model_contract_and_finite_values(model):
    same = WeightsMeta(**{**TINY.__dict__, 'version': 9, 'training_data': 'more'})
    weights.check_compatible(same, TINY)  # weights, version and notes may change
    from laecips_core.classes import ClassMap
    for change in ({'input_size': (40000, 40000)}, {'arch_cfg': {'path': '/etc/passwd'}},
                   {'class_map': ClassMap(('a',) * 11, ((0, 0, 0),) * 11, 255)}):
        with pytest.raises(WeightsError, match='contract'):
            weights.check_compatible(WeightsMeta(**{**TINY.__dict__, **change}), TINY)
    # The edge refuses them before building anything (a 40000x40000 input would be a
    # 19 GB tensor), and keeps its model.
    seg = Segmenter(TINY, model.state_dict(), Options(jit=False))
    with pytest.raises(WeightsError, match='input_size'):
        seg.swap(model.state_dict(), 4, WeightsMeta(**{**TINY.__dict__,
                                                        'input_size': (40000, 40000)}))
    assert seg.version == 3
    # Python's json reads NaN: metadata that would normalise every input to NaN.
    for key, value in (('mean', '[NaN, 0.5, 0.5]'), ('std', '[0, 1, 1]'),
                       ('input_size', '[0, 8]'), ('input_size', '[1e400, 8]')):
        with pytest.raises(WeightsError, match='bad weights metadata'):
            WeightsMeta.from_dict({**TINY.to_dict(), key: value})
    for bad in (math.nan, math.inf, -math.inf):
        sd = {k: v.clone() for k, v in model.state_dict().items()}
        sd['classifier.3.bias'][4] = bad
        with pytest.raises(WeightsError, match='non-finite'):
            weights.check(sd, model)


def test_segmenter_infer_and_swap(model, tmp_path):
    path = tmp_path / 'w.safetensors'
    weights.save(path, model.state_dict(), TINY)
    seg = Segmenter.from_file(path, options=Options())
    rgb = np.random.default_rng(0).integers(0, 256, (96, 120, 3), dtype=np.uint8)
    r = seg.infer(rgb, want_logits=True)
    assert r.mask.shape == (96, 120) and r.mask.dtype == np.uint8 and r.mask.max() < 11
    assert r.features.shape == (3,) and r.version == 3 and r.logits.shape[1] == 11
    # The fused, channels-last, traced model agrees with the plain one.
    ref = Segmenter.from_file(path, options=Options(fuse_bn=False, channels_last=False,
                                                    jit=False))
    assert (ref.infer(rgb).mask == r.mask).mean() > 0.99
    bad = dict(model.state_dict())
    bad['classifier.3.bias'] = torch.zeros(3)
    with pytest.raises(WeightsError):
        seg.swap(bad, 4)
    assert seg.version == 3
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd['classifier.3.bias'] = torch.arange(11.0) * 100  # class 10 wins everywhere
    seg.swap(sd, 4)
    out = seg.infer(rgb)
    assert seg.version == 4 and out.version == 4 and (out.mask == 10).all()


def test_swaps_reuse_two_traced_modules(model, tmp_path):
    # Tracing on every push leaked ~15 MB a push (soak); updates must alternate between
    # two traced modules and still run exactly the pushed weights.
    path = tmp_path / 'w.safetensors'
    weights.save(path, model.state_dict(), TINY)
    seg = Segmenter.from_file(path, options=Options())
    rgb = np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    seen = set()
    for v in range(4, 10):
        torch.manual_seed(v)
        sd = {k: (t + 0.05 * torch.randn_like(t)) if k.endswith('weight') and t.dim() == 4
              else t.clone() for k, t in model.state_dict().items()}
        seg.swap(sd, v)
        seen.add(id(seg._active.model))
        fresh = Segmenter(TINY, sd, Options())  # traced anew: the reference
        a, b = seg.infer(rgb, want_logits=True), fresh.infer(rgb, want_logits=True)
        assert a.version == v
        assert torch.allclose(a.logits, b.logits, atol=1e-4), v
    assert len(seen) == 2, f'{len(seen)} traced modules for 6 swaps'


def _image(arr, encoding, pad=0):
    h, w = arr.shape[:2]
    ch = 1 if arr.ndim == 2 else arr.shape[2]
    rows = np.zeros((h, w * ch + pad), np.uint8)
    rows[:, :w * ch] = arr.reshape(h, -1)
    return SimpleNamespace(height=h, width=w, encoding=encoding, is_bigendian=0,
                           step=w * ch + pad, data=rows.tobytes())


def test_codecs_raw_encodings():
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(codecs.image_to_rgb(_image(rgb, 'rgb8', pad=3)), rgb)
    assert np.array_equal(codecs.image_to_rgb(_image(rgb[:, :, ::-1], 'bgr8')), rgb)
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], 2)
    assert np.array_equal(codecs.image_to_rgb(_image(rgba, 'rgba8')), rgb)
    assert np.array_equal(codecs.image_to_rgb(_image(rgba[:, :, [2, 1, 0, 3]], 'bgra8')), rgb)
    mono = rgb[:, :, 0]
    assert np.array_equal(codecs.image_to_array(_image(mono, 'mono8', pad=1)), mono)
    assert codecs.image_to_rgb(_image(mono, 'mono8')).shape == (5, 7, 3)
    msg = codecs.array_to_image(mono, SimpleNamespace, header='h')
    assert (msg.encoding, msg.step, msg.header) == ('mono8', 7, 'h')
    assert np.array_equal(codecs.image_to_array(msg), mono)


def test_codecs_reject_malformed():
    rgb = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(CodecError, match='encoding'):
        codecs.image_to_rgb(_image(rgb, '16UC1'))
    short = _image(rgb, 'rgb8')
    short.data = short.data[:-1]
    with pytest.raises(CodecError, match='data bytes'):
        codecs.image_to_rgb(short)
    bad_step = _image(rgb, 'rgb8')
    bad_step.step = 5
    with pytest.raises(CodecError, match='step'):
        codecs.image_to_rgb(bad_step)
    with pytest.raises(CodecError, match='size'):
        codecs.image_to_rgb(SimpleNamespace(height=0, width=4, encoding='rgb8', step=12,
                                            data=b''))


def test_codecs_compressed_round_trip_and_corrupt():
    rgb = np.random.default_rng(2).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    png = codecs.encode_compressed(rgb, SimpleNamespace, 'png')
    assert png.format == 'png' and np.array_equal(codecs.compressed_to_rgb(png), rgb)
    jpg = codecs.encode_compressed(rgb, SimpleNamespace, 'jpeg', quality=95)
    assert codecs.to_rgb(jpg).shape == rgb.shape
    label = (np.arange(24 * 32) % 12).astype(np.uint8).reshape(24, 32)
    assert np.array_equal(codecs.compressed_to_label(
        codecs.encode_compressed(label, SimpleNamespace, 'png')), label)
    with pytest.raises(CodecError, match='8-bit'):
        codecs.compressed_to_label(png)
    for data in (b'', b'not an image at all', bytes(jpg.data)[:40]):
        with pytest.raises(CodecError):
            codecs.compressed_to_rgb(SimpleNamespace(format='jpeg', data=data))
    big = io.BytesIO()
    Image.new('L', (1, 1)).save(big, format='PNG')
    with pytest.raises(CodecError, match='format'):
        codecs.encode_compressed(rgb, SimpleNamespace, 'webp')


def test_torchscript_plugin(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.Upsample(scale_factor=0.5))
    torch.jit.script(net).save(str(tmp_path / 'm.pt'))
    from laecips_core.classes import ClassMap
    cm = ClassMap(('a', 'b', 'c', 'd'), ((0, 0, 0),) * 4, 255)
    (tmp_path / 'classes.json').write_text(cm.to_json())
    cfg = {'path': str(tmp_path / 'm.pt'), 'class_map': str(tmp_path / 'classes.json')}
    m = models.create('torchscript', 4, **cfg)
    assert m(torch.zeros(1, 3, 8, 8)).shape == (1, 4, 4, 4)
    seg = Segmenter(WeightsMeta(arch='torchscript', arch_cfg=cfg, class_map=cm,
                                input_size=(16, 16)), None)
    r = seg.infer(np.zeros((20, 30, 3), np.uint8))
    assert r.mask.shape == (20, 30) and r.mask.max() < 4
    with pytest.raises(ValueError):
        models.create('torchscript', 11, **cfg)


def test_shrink_caps_pixels_and_keeps_the_aspect():
    big = np.zeros((3000, 4000, 3), np.uint8)
    small = codecs.shrink(big, 1920 * 1080)
    assert small.shape[0] * small.shape[1] <= 1920 * 1080 and small.shape[2] == 3
    assert abs(small.shape[1] / small.shape[0] - 4 / 3) < 0.01
    ok = np.zeros((360, 480, 3), np.uint8)
    assert codecs.shrink(ok, 1920 * 1080) is ok


def test_resize_nearest_integer_and_other_factors():
    m = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert codecs.resize_nearest(m, 2, 3) is m
    assert codecs.resize_nearest(m, 4, 6).tolist()[1] == [0, 0, 1, 1, 2, 2]
    odd = codecs.resize_nearest(m, 3, 4)
    assert odd.shape == (3, 4) and odd[0, 0] == 0 and odd[-1, -1] == 5
