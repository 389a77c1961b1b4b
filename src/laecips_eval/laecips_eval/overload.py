# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The overload figure (issue #16): how much of the cloud's labelling reaches the edge in time.

``evaluate --systems cloud_only --rate 10 --deadline 1 --overload-out docs/bench/overload.json``
uploads every frame of the stream faster than the labeller can label them, then writes:

* ``in_deadline_ratio``: refined masks (the edge's answer to a label produced for inference)
  that reached the recorder within the deadline of the edge's own mask / all refined masks;
* ``refined_in_time_per_s``: frames whose final mask is the cloud's, per second of stream;
* ``labeller_fps_standalone``: the same labeller alone (``bench_cloud.time_batches`` at batch
  1 on CamVid frames, with the bridge's torch thread count), measured right after the run
  on the same machine; ``refined_in_time_per_s`` over it is the share of the labeller's
  capacity that ended up as in-time masks;
* the bridge's counts from its last CloudStats: ``labelled_in_time``, ``labelled_late``,
  ``labelled_for_training``, ``dropped`` (and ``rejected``, ``frames_in``).
"""

from __future__ import annotations

import math
import os
import time


def figure(run: dict, n_frames: int, rate: float, deadline: float) -> dict:
    """Return the figure's fields measured from one recorded cloud-only run."""
    frames = run['frames']
    delays = [f['cloud_delay_s'] for f in frames if not math.isnan(f['cloud_delay_s'])]
    in_time = sum(1 for d in delays if d <= deadline)
    cloud = sum(1 for f in frames if f['source'] == 'cloud')
    c = run.get('cloud_stats') or {}
    return {
        'in_deadline_ratio': in_time / len(delays) if delays else math.nan,
        'refined_in_time_per_s': cloud / (n_frames / rate),
        'refined_masks': len(delays), 'refined_in_time': in_time, 'frames_cloud_final': cloud,
        'uploads': run['totals']['hard_frames'], 'labels': run['totals']['labels'],
        'labels_training_seen': run['totals'].get('labels_training', 0),
        'labelled_in_time': c.get('labelled_in_time'),
        'labelled_late': c.get('labelled_late'),
        'labelled_for_training': c.get('labelled_for_training'),
        'dropped': c.get('dropped_queue'), 'rejected': c.get('rejected'),
        'frames_in': c.get('frames_in'),
    }


def labeller_fps(bridge_params: dict, repeats: int = 15) -> dict:
    """Time the bridge's labeller alone at batch 1 with its thread count (frames/s)."""
    import torch

    from laecips_cloud.labellers import create
    from laecips_tools.bench_cloud import _frames, time_batches
    threads = int(bridge_params.get('torch_threads', 0) or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    name = str(bridge_params.get('labeller', 'espnet_c'))
    lab = create(name, weights=str(bridge_params.get('weights', '')), device='cpu')
    res = time_batches(lab.label, _frames(8), 1, repeats, warmup=2)
    return {'labeller': name, 'threads': torch.get_num_threads(), **res,
            'load_avg': [round(x, 2) for x in os.getloadavg()], 'at': time.time()}
