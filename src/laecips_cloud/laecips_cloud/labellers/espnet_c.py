# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
ESPNet (Mehta et al., ECCV 2018) with p=2, q=8, written to load the authors' CamVid weights.

The published CamVid state_dict is the full ESPNet: the ESPNet-C encoder (``encoder.*``)
plus the light-weight RUM decoder (``level3_C``, ``br``, ``conv``, ``up_l3``,
``combine_l2_l3``, ``up_l2``, ``classifier``), 12 outputs at input resolution with index 11
= void. The project calls this labeller ``espnet_c`` after the encoder. Module names and
shapes match ``shared/models/espnet_c_camvid.keys.txt`` exactly so ``load_state_dict`` is
strict; the layer wiring follows the description in the paper and the authors' public
training code (MIT licence), rewritten here.

Input: the authors' loader reads BGR with OpenCV and computes ``((img - mean) / std) / 255``
with the *average of per-image* channel means and standard deviations of the training
images (0-255 scale). Those statistics are in ``CAMVID_MEAN_BGR`` / ``CAMVID_STD_BGR``
(measured on CamVid ``train``, 367 frames); see the labeller docstring for the effect.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812 (the PyTorch idiom)

from laecips_cloud.labellers import LogitLabeller, resolve_device
from laecips_core.classes import CAMVID

# Per-channel statistics of CamVid train as the authors' loader computes them (BGR, 0-255):
# mean of per-image means, mean of per-image standard deviations.
# Measured here on the 367 CamVid train frames (bench_cloud --miou recomputes them).
CAMVID_MEAN_BGR = (110.3310, 108.4089, 105.0332)
CAMVID_STD_BGR = (72.1257, 72.6907, 69.9043)
_BN_EPS = 1e-3
WEIGHTS_NAME = 'espnet_c_camvid.pth'


def default_weights() -> str:
    """
    Find the published weights: $LAECIPS_ESPNET_WEIGHTS, then shared/models beside the project.

    Returns '' when not found (the weights are never part of the project itself).
    """
    env = os.environ.get('LAECIPS_ESPNET_WEIGHTS')
    if env:
        return env
    roots = [Path(os.environ['LAECIPS_SHARED'])] if os.environ.get('LAECIPS_SHARED') else []
    roots += [p / 'shared' for p in Path(__file__).resolve().parents]
    roots += [Path.cwd().parent / 'shared', Path.cwd() / 'shared']
    for r in roots:
        if (r / 'models' / WEIGHTS_NAME).is_file():
            return str(r / 'models' / WEIGHTS_NAME)
    return ''


class _C(nn.Module):
    """Convolution without bias, 'same' padding, optional stride and dilation."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, d: int = 1):
        super().__init__()
        pad = (k - 1) // 2 * d
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _BR(nn.Module):
    """BatchNorm + PReLU."""

    def __init__(self, c: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(c, eps=_BN_EPS)
        self.act = nn.PReLU(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class _CBR(_C):
    """Convolution + BatchNorm + PReLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__(cin, cout, k, stride)
        self.bn = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class _ESP(nn.Module):
    """
    The ESP module: reduce, split into dilated branches (1, 2, 4, 8, 16), merge.

    Branch outputs are summed hierarchically before concatenation (the paper's fix for
    gridding artefacts). ``down`` makes it the strided variant used between levels.
    """

    def __init__(self, cin: int, cout: int, add: bool = True, down: bool = False):
        super().__init__()
        n = cout // 5
        n1 = cout - 4 * n
        self.c1 = _C(cin, n, 3, 2) if down else _C(cin, n, 1, 1)
        self.d1 = _C(n, n1, 3, 1, 1)
        self.d2 = _C(n, n, 3, 1, 2)
        self.d4 = _C(n, n, 3, 1, 4)
        self.d8 = _C(n, n, 3, 1, 8)
        self.d16 = _C(n, n, 3, 1, 16)
        self.down = down
        self.add = add and not down
        if down:  # the strided block keeps BN/PReLU at its top level (state_dict names)
            self.bn = nn.BatchNorm2d(cout, eps=_BN_EPS)
            self.act = nn.PReLU(cout)
        else:
            self.bn = _BR(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.c1(x)
        a1 = self.d2(r)
        a2 = a1 + self.d4(r)
        a3 = a2 + self.d8(r)
        a4 = a3 + self.d16(r)
        y = torch.cat([self.d1(r), a1, a2, a3, a4], 1)
        if self.add:
            y = y + x
        return self.act(self.bn(y)) if self.down else self.bn(y)


class _Pool(nn.Module):
    """Input image pyramid: ``times`` 3x3/2 average pools."""

    def __init__(self, times: int):
        super().__init__()
        self.pool = nn.ModuleList(nn.AvgPool2d(3, stride=2, padding=1) for _ in range(times))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for p in self.pool:
            x = p(x)
        return x


class EspnetCEncoder(nn.Module):
    """ESPNet-C: output stride 8, ``classes`` channels."""

    def __init__(self, classes: int = 12, p: int = 2, q: int = 8):
        super().__init__()
        self.level1 = _CBR(3, 16, 3, 2)
        self.sample1 = _Pool(1)
        self.sample2 = _Pool(2)
        self.b1 = _BR(16 + 3)
        self.level2_0 = _ESP(16 + 3, 64, down=True)
        self.level2 = nn.ModuleList(_ESP(64, 64) for _ in range(p))
        self.b2 = _BR(128 + 3)
        self.level3_0 = _ESP(128 + 3, 128, down=True)
        self.level3 = nn.ModuleList(_ESP(128, 128) for _ in range(q))
        self.b3 = _BR(256)
        self.classifier = _C(256, classes, 1, 1)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the level-1 (stride 2), level-2 (stride 4) and level-3 (stride 8) maps."""
        l1 = self.b1(torch.cat([self.level1(x), self.sample1(x)], 1))
        l2_0 = self.level2_0(l1)
        y = l2_0
        for m in self.level2:
            y = m(y)
        l2 = self.b2(torch.cat([y, l2_0, self.sample2(x)], 1))
        l3_0 = self.level3_0(l2)
        y = l3_0
        for m in self.level3:
            y = m(y)
        l3 = self.b3(torch.cat([l3_0, y], 1))
        return l1, l2, l3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)[2])


class Espnet(nn.Module):
    """ESPNet: the ESPNet-C encoder plus the RUM decoder; logits at input resolution."""

    def __init__(self, classes: int = 12, p: int = 2, q: int = 8):
        super().__init__()
        self.encoder = EspnetCEncoder(classes, p, q)
        self.level3_C = _C(128 + 3, classes, 1, 1)
        self.br = nn.BatchNorm2d(classes, eps=_BN_EPS)
        self.conv = _CBR(19 + classes, classes, 3, 1)
        self.up_l3 = nn.Sequential(nn.ConvTranspose2d(classes, classes, 2, stride=2, bias=False))
        self.combine_l2_l3 = nn.Sequential(_BR(2 * classes), _ESP(2 * classes, classes, add=False))
        self.up_l2 = nn.Sequential(nn.ConvTranspose2d(classes, classes, 2, stride=2, bias=False),
                                   _BR(classes))
        self.classifier = nn.ConvTranspose2d(classes, classes, 2, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, 3, H, W) normalised BGR, H and W multiples of 8, to (B, C, H, W) logits."""
        l1, l2, l3 = self.encoder.features(x)
        up3 = self.up_l3(self.br(self.encoder.classifier(l3)))
        up2 = self.up_l2(self.combine_l2_l3(torch.cat([self.level3_C(l2), up3], 1)))
        return self.classifier(self.conv(torch.cat([up2, l1], 1)))


def normalise(images: Sequence[np.ndarray], mean_bgr: Sequence[float] = CAMVID_MEAN_BGR,
              std_bgr: Sequence[float] = CAMVID_STD_BGR) -> torch.Tensor:
    """Stack same-size RGB uint8 frames into the (B, 3, H, W) input the weights expect."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).flip(1).float()  # RGB -> BGR
    mean = torch.tensor(mean_bgr, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(std_bgr, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std / 255.0


class EspnetCLabeller(LogitLabeller):
    """
    CamVid labels from the authors' ESPNet weights; argmax over the 11 real classes.

    Parameters: ``weights`` (path to the state_dict .pth, loaded with weights_only=True;
    empty: :func:`default_weights`),
    ``device`` ('auto', 'cpu', 'cuda'), ``mean_bgr`` / ``std_bgr`` (override the input
    statistics), ``half`` (fp16 on CUDA).
    """

    name = 'espnet_c'

    def __init__(self, weights: str | os.PathLike = '', device: str = 'auto',
                 mean_bgr: Sequence[float] = CAMVID_MEAN_BGR,
                 std_bgr: Sequence[float] = CAMVID_STD_BGR, half: bool = False):
        weights = weights or default_weights()
        if not weights or not os.path.isfile(weights):
            raise FileNotFoundError(f'espnet_c: weights file not found: {weights!r}')
        self.device = resolve_device(device)
        state = torch.load(weights, map_location='cpu', weights_only=True)
        self.model = Espnet(classes=state['classifier.weight'].shape[0])
        self.model.load_state_dict(state, strict=True)
        self.model.eval().to(self.device)
        self.half = bool(half) and self.device.startswith('cuda')
        if self.half:
            self.model.half()
        self.mean_bgr, self.std_bgr = tuple(mean_bgr), tuple(std_bgr)
        self.class_map = CAMVID
        self.num_classes = CAMVID.num_classes  # index 11 (void) is never predicted

    @torch.inference_mode()
    def logits(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Return (B, 12, H, W) float32 logits for same-size RGB frames (on the device)."""
        x = normalise(images, self.mean_bgr, self.std_bgr).to(self.device)
        h, w = x.shape[-2:]
        # The decoder adds stride-2/4/8 maps, so pad to a multiple of 8 and crop after.
        ph, pw = -h % 8, -w % 8
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode='replicate')
        if self.half:
            x = x.half()
        return self.model(x)[..., :h, :w].float()

    def logits_for(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        return self.logits(images)[:, :self.num_classes]
