# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Push sizes and accuracy of each push encoding and trained subset after training rounds (JSON).

Distils the factory model on CamVid dusk_adapt frames (ground truth stands in for the cloud's
labels) with the trainer's own ``Distiller`` and defaults, ``rounds`` rounds of
``steps_per_round`` steps, once per ``--train`` subset (``DistillConfig.train_params``: the
part of the student that trains; the rest stays as the edge holds it). After each round
every encoding is pushed as the trainer pushes it: a delta over the state the edge holds
(the previous rebuilt state, per encoding), the full fp32 weights file for ``full``. At the
end the model each encoding left on the edge is scored (mIoU, 0-100) on the dusk test
frames against the trainer's exact model. One row per subset, side by side. ``--rehearsal``
mixes factory frames into every batch as the trainer does (``rehearsal_frames``).

    python -m laecips_tools.push_bench --rounds 3 --frames 32 --test 24 \
        --train all decoder decoder,stats norm --encodings delta_int8
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from laecips_cloud.distill import TRAIN_PARTS, DistillConfig, Distiller, Pair
from laecips_core import anchor, camvid, delta, weights
from laecips_edge.factory import factory_weights


def run_subset(spec: str, sd: dict, meta: weights.WeightsMeta, adapt: list, test: list,
               rounds: int, steps: int, encodings: list[str], seed: int = 0,
               rehearsal: anchor.AnchorSet | None = None) -> dict:
    """Train ``spec`` from the factory state for ``rounds`` rounds; return its row."""
    torch.manual_seed(seed)
    dist = Distiller(sd, meta, DistillConfig(val_fraction=0.0, train_params=spec, seed=seed),
                     rehearsal=rehearsal)
    for i, f in enumerate(adapt):
        dist.add(f.rgb(), f.gt(), seq=i)
    held = {enc: dict(sd) for enc in encodings}  # what each encoding left on the edge
    trained = sum(p.numel() for p in dist.model.parameters() if p.requires_grad)
    rows = []
    for r in range(rounds):
        t = time.monotonic()
        loss = dist.train_steps(steps)
        exact = {k: v.detach().clone() for k, v in dist.model.state_dict().items()}
        row = {'round': r + 1, 'loss': loss, 'train_s': time.monotonic() - t,
               'full': len(weights.to_bytes(exact, meta)),
               'tensors_changed': sum(not torch.equal(exact[k], sd[k]) for k in sd)}
        for enc in encodings:
            t = time.monotonic()
            blob = delta.encode(exact, held[enc], enc)
            held[enc] = delta.apply(held[enc], blob)
            row[enc] = len(blob)
            row[f'{enc}_s'] = time.monotonic() - t
        rows.append(row)
    pairs = [Pair(f.rgb(), f.gt()) for f in test]

    def score(state: dict) -> float:  # at the model's input size, as the gate scores
        return dist.agreement(dist.build(state), pairs)['miou'] * 100

    out = {'train_params': spec, 'trained_params': trained,
           'all_params': sum(p.numel() for p in dist.model.parameters()),
           'rounds': rows, 'miou_exact': score(exact)}
    for enc in encodings:
        out[f'miou_{enc}'] = score(held[enc])
        out[f'{enc}_mean_bytes'] = float(np.mean([r[enc] for r in rows]))
        out[f'{enc}_mean_fraction'] = float(np.mean([r[enc] / r['full'] for r in rows]))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--steps', type=int, default=40, help='steps per round (trainer default)')
    ap.add_argument('--frames', type=int, default=48, help='dusk_adapt training frames')
    ap.add_argument('--test', type=int, default=40, help='dusk test frames scored')
    ap.add_argument('--train', nargs='+', default=[DistillConfig.train_params],
                    help="subsets trained, one row each: 'all' or parts of "
                         f"{sorted(TRAIN_PARTS)} joined by ','")
    ap.add_argument('--encodings', nargs='+', default=list(delta.ENCODINGS),
                    choices=delta.ENCODINGS, help='delta encodings pushed')
    ap.add_argument('--seed', type=int, default=0, help='seed of sampling and augmentation')
    ap.add_argument('--rehearsal', type=int, default=0,
                    help="factory frames mixed into training as the trainer's rehearsal_frames "
                         '(0: none)')
    ap.add_argument('--root', default=None, help='CamVid folder (found as usual)')
    a = ap.parse_args(argv)
    root = camvid.find_root(a.root)
    if root is None:
        raise SystemExit('CamVid not found (../shared/data/camvid or $LAECIPS_CAMVID)')
    stream = camvid.drift_stream(root)
    adapt = [f for p, f in stream if p == 'dusk_adapt']
    test = [f for p, f in stream if p == 'dusk']
    adapt = [adapt[i] for i in np.linspace(0, len(adapt) - 1, a.frames).astype(int)]
    test = [test[i] for i in np.linspace(0, len(test) - 1, a.test).astype(int)]
    sd, meta = weights.load(factory_weights())
    # As the trainer loads them: beside the anchor gate's frames (its default count).
    rehearsal = anchor.load(root, 24, a.rehearsal) if a.rehearsal > 0 else None
    factory = Distiller(sd, meta, DistillConfig(val_fraction=0.0))
    pairs = [Pair(f.rgb(), f.gt()) for f in test]
    out = {'command': 'python -m laecips_tools.push_bench ' + ' '.join(
               argv if argv is not None else sys.argv[1:]),
           'full_push_bytes': len(weights.to_bytes(sd, meta)),
           'state_bytes': delta.state_bytes(sd),
           'miou_factory': factory.agreement(factory.build(sd), pairs)['miou'] * 100,
           'subsets': [run_subset(spec, sd, meta, adapt, test, a.rounds, a.steps, a.encodings,
                                  a.seed, rehearsal)
                       for spec in a.train]}
    print(json.dumps(out, indent=1))


if __name__ == '__main__':
    main()
