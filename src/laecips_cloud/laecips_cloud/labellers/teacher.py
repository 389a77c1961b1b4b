# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
A model of the project's own as a labeller: the robust teacher (``laecips train-teacher``).

Loads any project weights file (safetensors with ``WeightsMeta``: an architecture of
``laecips_core.models``, its class map, input size and normalisation), runs it at its input
size and returns labels and max-softmax confidences at the frame's size. Half-precision
files (the committed teacher is fp16, to stay small) are widened to the model's dtype.
The default file is the teacher the project trained (``weights/teacher.safetensors`` of
this package; ``weights/teacher.json`` says how, on which sequences, and what it scored).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch idiom)

from laecips_cloud.labellers import LogitLabeller, resolve_device
from laecips_core import models
from laecips_core import weights as wts


def default_weights() -> str:
    """Return the installed teacher weights (share/laecips_cloud/weights), else the source."""
    try:
        from ament_index_python.packages import get_package_share_directory
        p = (Path(get_package_share_directory('laecips_cloud')) / 'weights'
             / 'teacher.safetensors')
        if p.is_file():
            return str(p)
    except (ImportError, LookupError, ValueError):
        pass
    return str(Path(__file__).resolve().parents[2] / 'weights' / 'teacher.safetensors')


def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, wts.WeightsMeta]:
    """Build the model a project weights file describes, in eval mode, with its tensors."""
    state, meta = wts.load(path)
    if meta is None:
        raise wts.WeightsError(f'{path}: no LAECIPS metadata (architecture, input size)')
    model = models.create(meta.arch, meta.num_classes, **meta.arch_cfg)
    want = model.state_dict()
    # fp16 on disk, the model's dtype in memory (only floating tensors, never counters).
    state = {k: (v.to(want[k].dtype) if k in want and v.is_floating_point() else v)
             for k, v in state.items()}
    wts.check(state, model)
    model.load_state_dict(state)
    return model.eval(), meta


class TeacherLabeller(LogitLabeller):
    """Label with a project model; confidence is its max softmax (calibrated by the bridge)."""

    name = 'teacher'

    def __init__(self, weights: str | os.PathLike = '', device: str = 'auto'):
        path = str(weights) or default_weights()
        if not os.path.isfile(path):
            raise FileNotFoundError(f'teacher: weights not found: {path!r} (train them with '
                                    f'laecips train-teacher)')
        self.weights = path
        self.device = resolve_device(device)
        self.model, self.meta = load_model(path)
        self.model.to(self.device)
        self.class_map = self.meta.class_map
        self.mean = torch.tensor(self.meta.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(self.meta.std, device=self.device).view(1, 3, 1, 1)

    @torch.inference_mode()
    def logits_for(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        h, w = images[0].shape[:2]
        x = torch.from_numpy(np.stack(images)).to(self.device).permute(0, 3, 1, 2).float()
        x = x / 255.0
        if tuple(x.shape[-2:]) != tuple(self.meta.input_size):
            x = F.interpolate(x, tuple(self.meta.input_size), mode='bilinear',
                              align_corners=False, antialias=True)
        logits = self.model((x - self.mean) / self.std)
        return models.upsample(logits, (h, w))
