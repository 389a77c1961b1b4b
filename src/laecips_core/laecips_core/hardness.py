# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Hardness scores of a frame from the edge model's own logits (B, C, H, W), vectorised.

``conf_ratio`` is the LAECIPS / KubeEdge-Ianvs reference statistic: the fraction of pixels
whose top-1 softmax probability exceeds ``p`` (0.9); the reference rule calls a frame easy
when it is above 0.95. ``entropy`` and ``margin`` are the other two edge features. Each
function takes a torch tensor or a numpy array and returns a float64 numpy array (B,).
"""

from __future__ import annotations

import math

import numpy as np
import torch

FEATURES = ('conf_ratio', 'entropy', 'margin')


def _probs(logits: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(logits)
    if x.dim() != 4:
        raise ValueError(f'logits must be (B, C, H, W), got shape {tuple(x.shape)}')
    return torch.softmax(x.float(), dim=1)


def conf_ratio(logits: torch.Tensor | np.ndarray, p: float = 0.9) -> np.ndarray:
    """Return, per image, the fraction of pixels whose top-1 probability is above ``p``."""
    top = _probs(logits).amax(1)
    return (top > p).flatten(1).float().mean(1).double().numpy()


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    c = probs.shape[1]
    h = -(probs * torch.log(probs.clamp_min(1e-12))).sum(1)
    return (h / math.log(c) if c > 1 else torch.zeros_like(h)).flatten(1).mean(1)


def entropy(logits: torch.Tensor | np.ndarray) -> np.ndarray:
    """Return, per image, the mean pixel entropy divided by log(C), in [0, 1]."""
    return _entropy(_probs(logits)).double().numpy()


def _margin(probs: torch.Tensor) -> torch.Tensor:
    if probs.shape[1] < 2:
        return torch.ones(probs.shape[0])
    top2 = probs.topk(2, dim=1).values
    return (top2[:, 0] - top2[:, 1]).flatten(1).mean(1)


def margin(logits: torch.Tensor | np.ndarray) -> np.ndarray:
    """Return, per image, the mean gap between the top-1 and top-2 probabilities, in [0, 1]."""
    return _margin(_probs(logits)).double().numpy()


def features(logits: torch.Tensor | np.ndarray, p: float = 0.9) -> np.ndarray:
    """Return (B, 3) float64: [conf_ratio, entropy, margin], the order HardFrame uses."""
    probs = _probs(logits)  # one softmax for all three
    ratio = (probs.amax(1) > p).flatten(1).float().mean(1)
    return torch.stack([ratio, _entropy(probs), _margin(probs)], 1).double().numpy()
