# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The labeller as a Ray Serve deployment: one replica wraps one registry labeller.

A replica builds the labeller the bridge would have built in-process
(``laecips_cloud.labellers.create`` with the same keyword parameters), so the labels and the
per-pixel confidence are the same for ``backend: local`` and ``backend: ray``. Requests are
single frames; ``@serve.batch`` gathers up to ``max_batch_size`` of them (from every bridge
using the deployment) for at most ``batch_wait_timeout_s`` and labels them in one call.
The batch runs on a worker thread, so the replica keeps accepting the requests that form its
next batch meanwhile. Imported by Ray's worker processes and by ``laecips_cloud.ray_backend``
only: the in-process path never imports ray.
"""

from __future__ import annotations

import asyncio
import os

import numpy as np
from ray import serve

from laecips_cloud.labellers import create, resolve_device


@serve.deployment(name='labeller')
class LabellerReplica:
    """One labeller replica: frames in one at a time, labelled in batches."""

    def __init__(self, labeller: str, params: dict, torch_threads: int = 0,
                 max_batch_size: int = 4, batch_wait_timeout_s: float = 0.01,
                 warmup: bool = True):
        import torch
        if torch_threads > 0:
            torch.set_num_threads(int(torch_threads))
        params = dict(params)
        # 'auto' means this replica's machine, not the bridge's.
        params['device'] = resolve_device(params.get('device', 'auto'))
        self.lab = create(labeller, **params)
        # The decorator's values are placeholders: the params file sets them per deployment.
        self.label.set_max_batch_size(int(max_batch_size))
        self.label.set_batch_wait_timeout_s(float(batch_wait_timeout_s))
        if warmup:  # a replacement replica is ready when Serve routes to it, not a frame later
            self.lab.warmup()

    def info(self) -> dict:
        """Describe the labeller (name, class map, device) and this replica's process."""
        return {'name': self.lab.name, 'class_map': self.lab.class_map,
                'device': str(self.lab.device), 'pid': os.getpid()}

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01)
    async def label(self, items: list[tuple[np.ndarray, np.ndarray | None]]
                    ) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Label a batch gathered from single-frame requests: (label, confidence) each."""
        images, edges = [it[0] for it in items], [it[1] for it in items]
        return await asyncio.get_running_loop().run_in_executor(
            None, self.lab.label_with_confidence, images, edges)
