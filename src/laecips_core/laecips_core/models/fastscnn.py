# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
A Fast-SCNN-like network (Poudel et al., BMVC 2019) in plain PyTorch, sized for a 2-core CPU.

Learning-to-downsample (1/8) -> global feature extractor (inverted residuals down to 1/32,
pyramid pooling) -> feature fusion at 1/8 -> classifier. The output logits are at 1/8 of the
input resolution (``output_stride``); callers upsample them to the size they need.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812 (the PyTorch idiom)


def _cbr(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1,
         relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DSConv(nn.Sequential):
    """Depthwise-separable convolution: 3x3 depthwise then 1x1 pointwise, each BN + ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(_cbr(cin, cin, 3, stride, groups=cin), _cbr(cin, cout, 1))


class Bottleneck(nn.Module):
    """MobileNetV2 inverted residual: expand 1x1, depthwise 3x3, linear project 1x1."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.residual = stride == 1 and cin == cout
        self.block = nn.Sequential(_cbr(cin, mid, 1), _cbr(mid, mid, 3, stride, groups=mid),
                                   _cbr(mid, cout, 1, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class PyramidPooling(nn.Module):
    """PSPNet pooling at bins 1, 2, 3, 6, concatenated with the input and fused by 1x1."""

    def __init__(self, cin: int, cout: int, bins: tuple[int, ...] = (1, 2, 3, 6)):
        super().__init__()
        self.bins = bins
        mid = cin // len(bins)
        self.stages = nn.ModuleList(_cbr(cin, mid, 1) for _ in bins)
        self.out = _cbr(cin + mid * len(bins), cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = [x]
        for b, stage in zip(self.bins, self.stages):
            y = stage(F.adaptive_avg_pool2d(x, b))
            feats.append(F.interpolate(y, size, mode='bilinear', align_corners=False))
        return self.out(torch.cat(feats, 1))


class FastSCNN(nn.Module):
    """Fast-SCNN-like segmenter; ``widths`` and ``blocks`` scale it (defaults ~0.8 M params)."""

    output_stride = 8

    def __init__(self, num_classes: int = 11, ltd: tuple[int, int, int] = (32, 48, 64),
                 gfe: tuple[int, int, int] = (64, 96, 128),
                 blocks: tuple[int, int, int] = (3, 3, 3),
                 expand: int = 4, fuse: int = 128, dropout: float = 0.1):
        super().__init__()
        c1, c2, c3 = ltd
        self.downsample = nn.Sequential(_cbr(3, c1, 3, 2), DSConv(c1, c2, 2), DSConv(c2, c3, 2))
        layers, cin = [], c3
        for i, (cout, n) in enumerate(zip(gfe, blocks)):
            for j in range(n):
                # Two stride-2 stages take 1/8 to 1/32; the last stage keeps 1/32.
                stride = 2 if j == 0 and i < 2 else 1
                layers.append(Bottleneck(cin, cout, stride, expand))
                cin = cout
        self.features = nn.Sequential(*layers)
        self.ppm = PyramidPooling(cin, fuse)
        # Feature fusion: the 1/8 detail branch plus the upsampled 1/32 context branch.
        self.fuse_low = nn.Sequential(_cbr(fuse, fuse, 3, groups=fuse),
                                      _cbr(fuse, fuse, 1, relu=False))
        self.fuse_high = _cbr(c3, fuse, 1, relu=False)
        self.classifier = nn.Sequential(DSConv(fuse, fuse), DSConv(fuse, fuse),
                                        nn.Dropout(dropout), nn.Conv2d(fuse, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        high = self.downsample(x)
        low = self.ppm(self.features(high))
        low = F.interpolate(low, high.shape[-2:], mode='bilinear', align_corners=False)
        fused = F.relu(self.fuse_high(high) + self.fuse_low(low))
        return self.classifier(fused)
