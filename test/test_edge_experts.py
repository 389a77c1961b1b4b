# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The edge's two models: the factory model kept beside pushed weights, and who answers."""

import copy

import numpy as np

from laecips_core import weights
from laecips_edge import engine
from laecips_edge.factory import factory_weights


def _pair():
    sd, meta = weights.load(factory_weights())
    pushed = copy.deepcopy(sd)
    # A pushed model sure of one class everywhere (bias on 'road'): surer than the factory.
    pushed['classifier.3.bias'][3] += 40.0
    seg = engine.Segmenter(copy.deepcopy(meta), pushed, engine.Options(jit=False))
    seg._active.version = 2
    seg.set_base(meta, sd)
    return seg


def test_the_surer_model_answers_unless_the_trusted_cloud_disagrees_with_it():
    seg = _pair()
    rgb = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    res = seg.infer(rgb)
    assert res.expert == 'active' and (res.mask == 3).all() and res.other is not None
    # Labels show the pushed model wrong where the cloud is sure, the factory model right:
    # its calibrated confidence no longer wins.
    for _ in range(10):
        seg.note_agreement('active', 2, 0.0)
        seg.note_agreement('base', 2, 0.9)
    res = seg.infer(rgb)
    assert res.expert == 'base' and res.version == seg.base_version
    # A label about a version no longer active changes nothing; a new version starts afresh.
    seg.note_agreement('active', 1, 1.0)
    assert seg.agreement['active'] < 0.1
    seg._active.version = 3
    assert seg.infer(rgb).expert == 'active'
    # While nothing vouches for the stream the base answers, whatever the confidences.
    seg.base_only = True
    assert seg.infer(rgb).expert == 'base'
