# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""SSA voting on constructed cases, and the torchvision stand-in against reference answers."""

import numpy as np
from PIL import Image
import pytest
import torch

from laecips_cloud import tv_shim, voting

# No ROS in this module: its result is the same in every distro's venv (see .ci/run).
pytestmark = pytest.mark.ros_free

def test_vote_known_answer():
    # 6x8 base: left half class 1, right half class 2, bottom row void (11).
    base = np.ones((6, 8), np.uint8)
    base[:, 4:] = 2
    base[5] = 11
    big = np.zeros((6, 8), bool)
    big[0:5, 0:6] = True  # 20 px of class 1, 10 px of class 2 -> 1
    small = np.zeros((6, 8), bool)
    small[1:3, 3:7] = True  # 2 px of 1, 6 px of 2 -> 2; smaller, so it wins the overlap
    void_only = np.zeros((6, 8), bool)
    void_only[5, :] = True  # only ignored ids: no vote, pixels unchanged
    out, chosen = voting.vote_details(base, [small, void_only, big], ignore=(11, 255))
    expect = base.copy()
    expect[big] = 1
    expect[small] = 2
    assert chosen == [2, -1, 1]
    np.testing.assert_array_equal(out, expect)
    # Uncovered pixels keep their class; the input is not modified.
    assert out[0, 7] == 2 and base[0, 5] == 2 and out[0, 5] == 1
    assert voting.mask_order([small, void_only, big]) == [2, 0, 1]  # ties keep input order


def test_vote_counts_on_original_map_and_ties():
    base = np.array([[0, 0, 3, 3]], np.uint8)
    a = np.array([[1, 1, 1, 1]], bool)  # tie 0 vs 3 -> smaller id 0
    b = np.array([[0, 0, 1, 1]], bool)  # votes on the original map: 3
    out = voting.vote(base, [a, b], ignore=())
    np.testing.assert_array_equal(out, [[0, 0, 3, 3]])


def test_shim_nms_matches_definition():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 9],
                          [0, 0, 10, 10]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.1])
    # IoU(3, 0) = 0.9 > 0.5 -> 0 suppressed by 3; 1 vs 3: 81/(90+81-72)... suppressed too.
    keep = tv_shim.nms(boxes, scores, 0.5)
    assert keep.tolist() == [3, 2]
    # Different categories never suppress each other.
    keep = tv_shim.batched_nms(boxes, scores, torch.tensor([0, 1, 0, 0, 1]), 0.5)
    assert keep.tolist() == [3, 1, 2]
    assert tv_shim.box_area(boxes[:1]).item() == 100.0
    assert tv_shim.nms(boxes[:0], scores[:0], 0.5).numel() == 0


def test_shim_resize_and_import():
    img = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    pil = tv_shim.to_pil_image(img)
    assert isinstance(pil, Image.Image) and pil.size == (40, 30)
    out = np.array(tv_shim.resize(pil, (60, 80)))
    np.testing.assert_array_equal(out, np.array(pil.resize((80, 60), Image.BILINEAR)))
    assert tv_shim.resize(pil, 15).size == (20, 15)
    sa = tv_shim.import_segment_anything()
    assert hasattr(sa, 'SamAutomaticMaskGenerator')
    import sys
    # The stand-in is gone again (no library may mistake it for torchvision).
    mod = sys.modules.get('torchvision')
    assert mod is None or not getattr(mod, '__laecips_shim__', False)
