# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Cloud labellers behind one interface, and the registry that picks one by name.

A labeller turns a batch of RGB frames (HxWx3 uint8) into class-id maps (HxW uint8, ids of
its class map, CamVid by default). Some can also use the edge's own label map sent with the
hard frame (``edge_labels``); the others ignore it.

    from laecips_cloud.labellers import create
    lab = create('espnet_c', weights='../shared/models/espnet_c_camvid.pth')
    masks = lab.label([rgb1, rgb2])

Names: ``espnet_c``, ``sam_ssa``, ``teacher`` (the project's robust teacher, or any project
weights file), ``torchscript`` (and ``onnx`` when onnxruntime is installed). Implementations
are imported on first use, so asking for ``espnet_c`` does not import segment_anything.
"""

from __future__ import annotations

import abc
import importlib
import math
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

if TYPE_CHECKING:  # torch is imported by the labellers that need it
    import torch

from laecips_core.classes import CAMVID, ClassMap

# name -> 'module:attribute' of a factory taking keyword parameters.
_REGISTRY: dict[str, str | Callable[..., 'Labeller']] = {
    'espnet_c': 'laecips_cloud.labellers.espnet_c:EspnetCLabeller',
    'sam_ssa': 'laecips_cloud.labellers.sam_ssa:SamSsaLabeller',
    'torchscript': 'laecips_cloud.labellers.torchscript:TorchScriptLabeller',
    'teacher': 'laecips_cloud.labellers.teacher:TeacherLabeller',
    'onnx': 'laecips_cloud.labellers.torchscript:OnnxLabeller',
}


SOFT_STRIDE = 8  # probabilities are smooth: a grid 8x coarser keeps what they say
SOFT_MAX_BYTES = 1 << 20  # laecips_msgs/SoftTargets' bound


class Labeller(abc.ABC):
    """A batched semantic labeller: RGB frames in, class-id maps of the same size out."""

    #: Registry name, also published in CloudLabel.labeller.
    name: str = ''
    #: The class map its ids refer to.
    class_map: ClassMap = CAMVID
    #: 'cpu' or 'cuda' (the torch device it runs on).
    device: str = 'cpu'

    @abc.abstractmethod
    def label(self, images: Sequence[np.ndarray],
              edge_labels: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
        """
        Label a batch of frames.

        images: HxWx3 uint8 RGB arrays (sizes may differ within a batch).
        edge_labels: optional, one HxW uint8 map per image (or None), for labellers that vote
        with the edge's answer; ignored by the others.
        Returns one HxW uint8 class-id map per image.
        """

    def label_with_confidence(
            self, images: Sequence[np.ndarray],
            edge_labels: Sequence[np.ndarray | None] | None = None
    ) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """
        Label a batch and say how sure each pixel is.

        Returns (label, confidence) per image: confidence is HxW float32 in [0, 1], the
        labeller's own top-1 probability or its equivalent, *uncalibrated* (the bridge
        calibrates it); None when the labeller has no confidence (this default).
        """
        return [(lab, None) for lab in self.label(images, edge_labels)]

    def warmup(self, height: int = 360, width: int = 480) -> None:
        """Run one dummy frame so the first real frame does not pay for lazy init."""
        self.label([np.zeros((height, width, 3), np.uint8)])


class LogitLabeller(Labeller):
    """A labeller built on a per-pixel classifier: label = argmax, confidence = max softmax."""

    def logits_for(self, images: Sequence[np.ndarray]) -> 'torch.Tensor':
        """Return (B, C, H, W) float logits of the class map's classes for same-size frames."""
        raise NotImplementedError

    def label_with_confidence(
            self, images: Sequence[np.ndarray],
            edge_labels: Sequence[np.ndarray | None] | None = None, soft_stride: int = 0
    ) -> list[tuple]:
        """
        Return (labels, max-softmax confidence) per image, from one forward pass.

        ``soft_stride`` > 0 adds a third item, the class probabilities as
        :meth:`probabilities` gives them (the bridge's soft targets for the trainer).
        """
        import torch
        out: list = [None] * len(images)
        # One forward pass per image size: robots may have different cameras.
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            by_size.setdefault(im.shape[:2], []).append(i)
        with torch.inference_mode():
            for idx in by_size.values():
                prob = self.logits_for([images[i] for i in idx]).float().softmax(1)
                soft = _coarse(prob, soft_stride) if soft_stride > 0 else None
                conf, ids = prob.max(1)
                ids = ids.to(torch.uint8).cpu().numpy()
                conf = conf.cpu().numpy().astype(np.float32)
                for j, i in enumerate(idx):
                    out[i] = (ids[j], conf[j]) if soft is None else (ids[j], conf[j], soft[j])
        return out

    def label(self, images: Sequence[np.ndarray],
              edge_labels: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
        return [lab for lab, _ in self.label_with_confidence(images, edge_labels)]

    def probabilities(self, images: Sequence[np.ndarray], stride: int = SOFT_STRIDE
                      ) -> list[np.ndarray]:
        """
        Return each image's class probabilities on a grid ``stride`` times coarser.

        CxhxW uint8 (255 = 1.0): soft targets for the trainer, which stay in the cloud.
        """
        return [r[2] for r in self.label_with_confidence(images, soft_stride=stride)]


def _coarse(prob: 'torch.Tensor', stride: int) -> np.ndarray:
    """
    Return (B, C, H, W) probabilities as (B, C, h, w) uint8 on a grid ``stride``x coarser.

    Coarser still when one frame's grid would not fit SoftTargets.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812
    c, h, w = prob.shape[1:]
    while c * math.ceil(h / stride) * math.ceil(w / stride) > SOFT_MAX_BYTES:
        stride *= 2
    prob = F.interpolate(prob, (math.ceil(h / stride), math.ceil(w / stride)), mode='area')
    return (prob * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def resolve_device(device: str | None = 'auto') -> str:
    """Map 'auto' (or '' / None) to 'cuda' when a GPU is visible, else 'cpu'."""
    if device in (None, '', 'auto'):
        import torch
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    return str(device)


def register(name: str, factory: Callable[..., Labeller]) -> None:
    """Add a labeller factory (e.g. a plugin or a test double) under ``name``."""
    _REGISTRY[name] = factory


def names() -> list[str]:
    """Return the registered labeller names."""
    return sorted(_REGISTRY)


def create(name: str, **params) -> Labeller:
    """Build the labeller registered as ``name`` with keyword ``params``."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f'unknown labeller {name!r}; known: {", ".join(names())}') from None
    if isinstance(factory, str):
        module, attr = factory.split(':')
        factory = getattr(importlib.import_module(module), attr)
    return factory(**params)
