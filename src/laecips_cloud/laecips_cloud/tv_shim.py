# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
A pure-torch stand-in for the four torchvision functions segment_anything imports.

Why: ``segment_anything`` (the official SAM code) imports ``batched_nms`` and ``box_area``
(``torchvision.ops.boxes``) and ``resize`` and ``to_pil_image``
(``torchvision.transforms.functional``), and nothing else from torchvision. The only
torchvision wheels that match torch 2.13 on PyPI depend on the CUDA build of torch, a
multi-GB download that would replace the CPU torch of this environment. So
segment-anything is installed with ``--no-deps`` and :func:`import_segment_anything`
imports it with this module standing in for torchvision.

How: the stand-in modules are put into ``sys.modules`` only when torchvision is not
installed, only for the duration of the ``import segment_anything`` (the official modules
bind the four names at import time and never import torchvision again), and are removed
afterwards so no other library mistakes them for a real torchvision. When torchvision is
installed (e.g. on a GPU machine) the real one is used and this module does nothing.

Fidelity: ``batched_nms``/``nms`` follow torchvision's definition (greedy, by decreasing
score, a box is suppressed when its IoU with a kept box is strictly greater than the
threshold; boxes of different categories never suppress each other; indices returned in
decreasing score order); ``resize`` on a PIL image is PIL's bilinear resize to (h, w),
as torchvision does for PIL input; ``to_pil_image`` covers HxWxC/HxW uint8 arrays and
CxHxW tensors. Tests compare them with reference cases.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import sys
import types
from typing import Iterator, Sequence

import numpy as np
from PIL import Image
import torch

SHIM_VERSION = '0.0+laecips.shim'


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of (N, 4) boxes in (x1, y1, x2, y2) form."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Return the (N, M) IoU matrix of two sets of xyxy boxes."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (box_area(a)[:, None] + box_area(b)[None, :] - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression; int64 indices of kept boxes by decreasing score."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores.float(), descending=True, stable=True).indices
    b = boxes.float()[order]
    # One IoU matrix on the device, then a short greedy pass on the host (no per-box sync).
    over = (box_iou(b, b) > iou_threshold).cpu().numpy()
    suppressed = np.zeros(len(order), bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= over[i]
    return order[torch.as_tensor(keep, dtype=torch.int64, device=order.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """NMS independently per category ``idxs`` (torchvision's coordinate-offset trick)."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def to_pil_image(pic: np.ndarray | torch.Tensor, mode: str | None = None) -> Image.Image:
    """Convert an HxWxC / HxW uint8 array (or a CxHxW tensor) to a PIL image."""
    if isinstance(pic, torch.Tensor):
        t = pic.detach().cpu()
        if t.is_floating_point():
            t = (t * 255).clamp(0, 255).to(torch.uint8)
        pic = t.permute(1, 2, 0).numpy() if t.ndim == 3 else t.numpy()
    arr = np.asarray(pic)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(arr, mode=mode) if mode else Image.fromarray(arr)


def resize(img: Image.Image, size: int | Sequence[int], interpolation: object = None,
           max_size: int | None = None, antialias: bool | None = True) -> Image.Image:
    """Bilinear resize of a PIL image to ``size`` = (h, w), or its short side to an int."""
    if not isinstance(img, Image.Image):
        raise TypeError('tv_shim.resize supports PIL images only (what segment_anything uses)')
    if isinstance(size, int) or len(size) == 1:
        s = size if isinstance(size, int) else size[0]
        w, h = img.size
        short, long_ = (w, h) if w <= h else (h, w)
        new_short, new_long = s, int(s * long_ / short)
        if max_size is not None and new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
        size = (new_long, new_short) if w <= h else (new_short, new_long)
    h, w = size
    return img.resize((int(w), int(h)), Image.BILINEAR)


def _modules() -> dict[str, types.ModuleType]:
    def mod(name: str, **attrs) -> types.ModuleType:
        m = types.ModuleType(name, 'LAECIPS stand-in for part of torchvision (tv_shim)')
        # A spec keeps importlib.util.find_spec() from raising on the stand-in.
        m.__spec__ = importlib.machinery.ModuleSpec(name, None)
        m.__dict__.update(attrs)
        return m

    boxes = mod('torchvision.ops.boxes', batched_nms=batched_nms, box_area=box_area, nms=nms,
                box_iou=box_iou)
    ops = mod('torchvision.ops', boxes=boxes, batched_nms=batched_nms, box_area=box_area,
              nms=nms, box_iou=box_iou)
    functional = mod('torchvision.transforms.functional', resize=resize,
                     to_pil_image=to_pil_image)
    transforms = mod('torchvision.transforms', functional=functional)
    root = mod('torchvision', ops=ops, transforms=transforms, __version__=SHIM_VERSION,
               __laecips_shim__=True)
    for m in (root, ops, transforms):
        m.__path__ = []  # a package, so submodule imports resolve through sys.modules
    return {m.__name__: m for m in (root, ops, boxes, transforms, functional)}


def torchvision_installed() -> bool:
    """Return True when a real torchvision can be imported."""
    mod = sys.modules.get('torchvision')
    if mod is not None:
        return not getattr(mod, '__laecips_shim__', False)
    return importlib.util.find_spec('torchvision') is not None


@contextlib.contextmanager
def installed() -> Iterator[bool]:
    """Provide the stand-in as ``torchvision`` inside the block if torchvision is missing."""
    if torchvision_installed():
        yield False
        return
    added = {k: v for k, v in _modules().items() if k not in sys.modules}
    sys.modules.update(added)
    try:
        yield True
    finally:
        for k, v in added.items():
            if sys.modules.get(k) is v:
                del sys.modules[k]


def import_segment_anything() -> types.ModuleType:
    """Import the official segment_anything package, with the stand-in if needed."""
    if 'segment_anything' in sys.modules:
        return sys.modules['segment_anything']
    with installed():
        import segment_anything
    return segment_anything
