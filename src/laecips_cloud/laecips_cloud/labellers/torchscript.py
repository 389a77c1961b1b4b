# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Any exported segmentation model as a labeller: TorchScript / torch.export, or ONNX.

The model contract: input (B, 3, H, W) float32, RGB scaled to [0, 1] then normalised with
``mean`` / ``std`` (per channel, on that [0, 1] scale; defaults leave it unnormalised);
output (B, C, h, w) logits. Outputs at another size are bilinearly resized to the frame,
and the label is the argmax over the first ``class_map.num_classes`` channels (extra
channels such as a void logit are ignored). The class map is a JSON file written by
``ClassMap.to_json`` (default: CamVid).

``torchscript`` loads ``*.pt2`` with ``torch.export.load`` and anything else with
``torch.jit.load`` (TorchScript is deprecated in torch 2.x but still the most common export).
``onnx`` needs onnxruntime (not in the default environment); it uses the CUDA provider when
the device is 'cuda' and onnxruntime offers it.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch idiom)

from laecips_cloud.labellers import LogitLabeller, resolve_device
from laecips_core.classes import CAMVID, ClassMap


def _class_map(path: str | os.PathLike | None) -> ClassMap:
    return ClassMap.load(path) if path else CAMVID


class _ExportedLabeller(LogitLabeller):
    def __init__(self, weights: str | os.PathLike, class_map: str = '', device: str = 'auto',
                 mean: Sequence[float] = (0.0, 0.0, 0.0), std: Sequence[float] = (1.0, 1.0, 1.0)):
        if not weights or not os.path.isfile(weights):
            raise FileNotFoundError(f'{self.name}: model file not found: {weights!r}')
        self.weights = str(weights)
        self.device = resolve_device(device)
        self.class_map = _class_map(class_map)
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1)

    def _input(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
        return ((x - self.mean) / self.std).contiguous()

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.inference_mode()
    def logits_for(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        h, w = images[0].shape[:2]
        n = self.class_map.num_classes
        logits = self._run(self._input(images))
        if logits.ndim != 4 or logits.shape[1] < n:
            raise ValueError(f'{self.name}: model returned {tuple(logits.shape)}, expected '
                             f'(B, >={n}, h, w)')
        logits = logits[:, :n].float()
        if logits.shape[-2:] != (h, w):
            logits = F.interpolate(logits, (h, w), mode='bilinear', align_corners=False)
        return logits


class TorchScriptLabeller(_ExportedLabeller):
    """A TorchScript (``torch.jit``) or ``torch.export`` (``.pt2``) model file."""

    name = 'torchscript'

    def __init__(self, weights: str | os.PathLike, class_map: str = '', device: str = 'auto',
                 mean: Sequence[float] = (0.0, 0.0, 0.0), std: Sequence[float] = (1.0, 1.0, 1.0)):
        super().__init__(weights, class_map, device, mean, std)
        if self.weights.endswith('.pt2'):
            self.model = torch.export.load(self.weights).module().to(self.device)
        else:
            self.model = torch.jit.load(self.weights, map_location=self.device).eval()

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x.to(self.device))
        return y[0] if isinstance(y, (tuple, list)) else y


class OnnxLabeller(_ExportedLabeller):
    """An ONNX model run by onnxruntime (first input, first output)."""

    name = 'onnx'

    def __init__(self, weights: str | os.PathLike, class_map: str = '', device: str = 'auto',
                 mean: Sequence[float] = (0.0, 0.0, 0.0), std: Sequence[float] = (1.0, 1.0, 1.0)):
        super().__init__(weights, class_map, device, mean, std)
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError('the onnx labeller needs onnxruntime: pip install onnxruntime '
                              '(or onnxruntime-gpu)') from e
        providers = ['CPUExecutionProvider']
        if self.device.startswith('cuda') and 'CUDAExecutionProvider' in \
                ort.get_available_providers():
            providers.insert(0, 'CUDAExecutionProvider')
        self.session = ort.InferenceSession(self.weights, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        y = self.session.run(None, {self.input_name: x.numpy()})[0]
        return torch.from_numpy(np.asarray(y))
