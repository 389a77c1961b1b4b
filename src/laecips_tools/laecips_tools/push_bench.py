# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Push sizes and accuracy of each push encoding after realistic training rounds (JSON on stdout).

Distils the factory model on CamVid dusk_adapt frames (ground truth stands in for the cloud's
labels) with the trainer's own ``Distiller`` and defaults, ``rounds`` rounds of
``steps_per_round`` steps. After each round every encoding is pushed as the trainer pushes
it: a delta over the state the edge holds (the previous rebuilt state, per encoding), the
full fp32 weights file for ``full``. At the end the model each encoding left on the edge is
scored (mIoU, 0-100) on the dusk test frames against the trainer's exact model.

    python -m laecips_tools.push_bench --rounds 3 --frames 32 --test 24
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from laecips_cloud.distill import DistillConfig, Distiller, Pair
from laecips_core import camvid, delta, weights
from laecips_edge.factory import factory_weights


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--steps', type=int, default=40, help='steps per round (trainer default)')
    ap.add_argument('--frames', type=int, default=48, help='dusk_adapt training frames')
    ap.add_argument('--test', type=int, default=40, help='dusk test frames scored')
    ap.add_argument('--root', default=None, help='CamVid folder (found as usual)')
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    root = camvid.find_root(a.root)
    if root is None:
        raise SystemExit('CamVid not found (../shared/data/camvid or $LAECIPS_CAMVID)')
    stream = camvid.drift_stream(root)
    adapt = [f for p, f in stream if p == 'dusk_adapt']
    test = [f for p, f in stream if p == 'dusk']
    adapt = [adapt[i] for i in np.linspace(0, len(adapt) - 1, a.frames).astype(int)]
    test = [test[i] for i in np.linspace(0, len(test) - 1, a.test).astype(int)]
    sd, meta = weights.load(factory_weights())
    dist = Distiller(sd, meta, DistillConfig(val_fraction=0.0))
    for i, f in enumerate(adapt):
        dist.add(f.rgb(), f.gt(), seq=i)
    full_bytes = len(weights.to_bytes(sd, meta))
    held = {enc: dict(sd) for enc in delta.ENCODINGS}  # what each encoding left on the edge
    rounds = []
    for r in range(a.rounds):
        t = time.monotonic()
        loss = dist.train_steps(a.steps)
        exact = {k: v.detach().clone() for k, v in dist.model.state_dict().items()}
        row = {'round': r + 1, 'loss': loss, 'train_s': time.monotonic() - t,
               'full': len(weights.to_bytes(exact, meta))}
        for enc in delta.ENCODINGS:
            t = time.monotonic()
            blob = delta.encode(exact, held[enc], enc)
            held[enc] = delta.apply(held[enc], blob)
            row[enc] = len(blob)
            row[f'{enc}_s'] = time.monotonic() - t
        rounds.append(row)
    pairs = [Pair(f.rgb(), f.gt()) for f in test]

    def score(state: dict) -> float:  # at the model's input size, as the gate scores
        return dist.agreement(dist.build(state), pairs)['miou'] * 100

    out = {'full_push_bytes': full_bytes, 'state_bytes': delta.state_bytes(sd),
           'rounds': rounds, 'miou_factory': score(sd), 'miou_exact': score(exact)}
    for enc in delta.ENCODINGS:
        out[f'miou_{enc}'] = score(held[enc])
        out[f'{enc}_mean_fraction'] = float(np.mean([r[enc] / r['full'] for r in rounds]))
    print(json.dumps(out, indent=1))


if __name__ == '__main__':
    main()
