# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Edge architectures by name.

``create(arch, num_classes, **cfg)`` returns an ``nn.Module`` mapping a normalised float
image batch (B, 3, H, W) to logits (B, num_classes, h, w). The output may be smaller than the
input (``fastscnn``: 1/8, see ``module.output_stride``; a TorchScript model: whatever it
returns): callers resize logits with :func:`upsample` to the size they need.

Another architecture plugs in with ``register('name')`` on a factory function, or by listing
``module:function`` as the arch (imported on demand), so a parameter can select it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812 (the PyTorch idiom)

from laecips_core.classes import ClassMap
from laecips_core.models.fastscnn import FastSCNN

ARCHS: dict[str, Callable[..., nn.Module]] = {}
DEFAULT_ARCH = 'fastscnn'


def register(name: str) -> Callable:
    """Register a factory ``f(num_classes, **cfg) -> nn.Module`` under ``name``."""
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        ARCHS[name] = fn
        return fn
    return deco


@register('fastscnn')
def _fastscnn(num_classes: int = 11, **cfg) -> nn.Module:
    return FastSCNN(num_classes, **{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in cfg.items()})


class TorchScriptModel(nn.Module):
    """Any TorchScript segmenter file plus a class map file (``ClassMap`` JSON)."""

    def __init__(self, path: str, class_map: str | None = None, num_classes: int | None = None):
        super().__init__()
        if not Path(path).is_file():
            raise FileNotFoundError(f'TorchScript model not found: {path}')
        # torch.jit.load reads a zip of code and tensors; it does not unpickle arbitrary objects.
        self.net = torch.jit.load(str(path), map_location='cpu')
        self.class_map = ClassMap.load(class_map) if class_map else None
        n = self.class_map.num_classes if self.class_map else num_classes
        if num_classes is not None and n != num_classes:
            raise ValueError(f'class map has {n} classes, expected {num_classes}')
        self.num_classes = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        # Common export shapes: a tensor, a tuple (first = logits) or a dict with 'out'.
        if isinstance(out, dict):
            out = out['out']
        elif isinstance(out, (tuple, list)):
            out = out[0]
        return out


@register('torchscript')
def _torchscript(num_classes: int | None = None, path: str = '', class_map: str | None = None,
                 **_: object) -> nn.Module:
    return TorchScriptModel(path, class_map, num_classes)


def create(arch: str = DEFAULT_ARCH, num_classes: int = 11, **cfg) -> nn.Module:
    """Build an architecture by name (or ``package.module:function``), in train mode, on CPU."""
    fn = ARCHS.get(arch)
    if fn is None and ':' in arch:
        mod, _, attr = arch.partition(':')
        fn = getattr(importlib.import_module(mod), attr)
    if fn is None:
        raise KeyError(f'unknown edge architecture {arch!r}; known: {sorted(ARCHS)}')
    return fn(num_classes=num_classes, **cfg)


def upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize logits (B, C, h, w) bilinearly to ``size`` = (H, W); a no-op when equal."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode='bilinear', align_corners=False)


def num_params(model: nn.Module) -> int:
    """Return the number of parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())
