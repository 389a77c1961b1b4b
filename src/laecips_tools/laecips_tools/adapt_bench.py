# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Adaptation benchmark on the dusk stream: does distilling cloud labels win back the drift.

Run (prints one JSON object)::

    python -m laecips_tools.adapt_bench [--weights factory.safetensors] [--camvid PATH]
        [--espnet espnet_c_camvid.pth] [--steps 400] [--mode offline|online]

The edge model adapts on the 62 ``train``-split 0001TP frames (6690-8520) labelled by the
cloud labeller (ESPNet-C) and is scored against the ground truth on the 62 ``test``-split
0001TP frames (8550-10380) that come after them in the video: the edge before and after,
and the cloud labeller itself on the same frames (goal: adapted edge >= 90 % of it).
Figures on the frames the model was adapted on are reported apart, under ``adaptation_frames``.

``offline``: every adaptation frame is labelled and given to the distiller, which trains
``--steps`` steps in rounds; each round whose student passes the gate is committed (as an
accepted push would be). ``online``: the stream is replayed in time order (optionally
after the day sequence): the edge's policy decides per frame whether to upload, uploads are
labelled and fed to the distiller, a round runs every ``--round-every`` frames, and a
passing candidate is committed together with a newly fitted policy; the upload ratio per
window is reported. The model is frozen on the scoring frames in both modes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
import sys
import time

import numpy as np
import torch

from laecips_cloud import labellers
from laecips_cloud import policy_fit as pf
from laecips_cloud.distill import DistillConfig, Distiller
from laecips_core import camvid as cv
from laecips_core import weights
from laecips_core.metrics import confusion, miou
from laecips_core.policy import Policy
from laecips_edge import engine
from laecips_tools import camvid_root

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / 'laecips_edge' / 'weights' \
    / 'factory.safetensors'


def _shared() -> Path:
    return Path(os.environ.get('LAECIPS_SHARED',
                               Path(__file__).resolve().parents[4] / 'shared'))


def edge_masks(state: dict, meta: weights.WeightsMeta, rgbs: list[np.ndarray]
               ) -> tuple[list[np.ndarray], np.ndarray]:
    """Return the edge's published masks (full resolution) and features, via its engine."""
    seg = engine.Segmenter(meta, state)
    out = [seg.infer(r) for r in rgbs]
    return [o.mask for o in out], np.stack([o.features for o in out])


def score(preds: list[np.ndarray], gts: list[np.ndarray], void: int = 11) -> float:
    """Return mIoU in percent of one confusion matrix over all frames."""
    conf = sum(confusion(p, g, 11, void) for p, g in zip(preds, gts))
    return round(100 * miou(conf), 2)


def cloud_labels(lab: labellers.Labeller, rgbs: list[np.ndarray], batch: int = 4
                 ) -> list[np.ndarray]:
    out = []
    for i in range(0, len(rgbs), batch):
        out += lab.label(rgbs[i:i + batch])
    return out


def offline(dist: Distiller, rgbs: list[np.ndarray], labels: list[np.ndarray], steps: int,
            log, probe=None, soft: list[np.ndarray] | None = None) -> dict:
    """Give every pair to the distiller, train ``steps`` steps, commit passing rounds."""
    for i, (r, y) in enumerate(zip(rgbs, labels)):
        dist.add(r, y, seq=i, soft=None if soft is None else soft[i])
    rounds, done = [], 0
    while done < steps:
        n = min(dist.cfg.steps_per_round, steps - done)
        cand = dist.round(n)
        done += n
        if cand is not None:
            dist.commit(cand)
        rounds.append(_round_info(dist, cand))
        if probe is not None:  # diagnostics only: never used to select anything
            rounds[-1]['student_scoring_miou'] = probe(dist.model.state_dict())
        log(json.dumps(rounds[-1]))
    return {'rounds': rounds}


def _round_info(dist: Distiller, cand) -> dict:
    lr = dist.last_round
    m = dist.cfg.gate_metric
    return {'round': lr['round'], 'steps': lr['steps'], 'loss': round(lr['loss'], 4),
            f'val_{m}_active': round(lr['before'][m], 4),
            f'val_{m}_student': round(lr['after'][m], 4),
            'pushed_version': cand.version if cand is not None else None}


def online(dist: Distiller, stream: list[tuple[str, np.ndarray]], lab: labellers.Labeller,
           args, log) -> dict:
    """Replay the stream in order with uploads decided by the edge's evolving policy."""
    rng = np.random.default_rng(args.seed)
    policy = Policy('fixed', {'explore': args.explore})
    seg = engine.Segmenter(dist.meta, dist.active)
    events, rounds, since = [], [], 0
    for i, (phase, rgb) in enumerate(stream):
        res = seg.infer(rgb)
        up = policy.decide(res.features, rng)  # the rule, or an exploration upload
        events.append({'i': i, 'phase': phase, 'upload': bool(up), 'version': res.version})
        if not up:
            continue
        y = lab.label([rgb])[0]
        if phase == 'dusk':  # scoring phase: the model is frozen, uploads are still counted
            continue
        dist.add(rgb, y, seq=i, features=res.features,
                 propensity=pf.propensity(policy, res.features))
        since += 1
        if since >= args.round_every and dist.ready():
            since = 0
            cand = dist.round()
            info = _round_info(dist, cand)
            if cand is not None:
                dist.commit(cand)
                seg.swap(cand.state, cand.version)
                try:
                    policy = fit_policy(dist, args).policy
                    info['policy'] = policy.to_dict()
                except ValueError as e:  # too few frames yet: keep the policy
                    info['policy'] = f'kept: {e}'
            info['frame'] = i
            rounds.append(info)
            log(json.dumps(info))
    return {'rounds': rounds, 'events': events, 'final_policy': policy.to_dict()}


def fit_policy(dist: Distiller, args) -> pf.Fit:
    """Fit the policy on every kept pair, scored with the active model: the trainer's recipe."""
    return pf.fit_policy(dist, dist.active, pf.Recipe(
        rule=args.policy_rule, target_upload_ratio=args.target_upload_ratio,
        min_disagreement=args.min_disagreement, explore=args.explore,
        window=args.policy_window, burst=args.budget_burst))


def windows(events: list[dict], size: int) -> list[dict]:
    """Upload ratio per window of ``size`` frames, with the phase(s) it covers."""
    out = []
    for i in range(0, len(events), size):
        w = events[i:i + size]
        out.append({'frames': f'{w[0]["i"]}-{w[-1]["i"]}',
                    'phase': '/'.join(sorted({e['phase'] for e in w})),
                    'upload_ratio': round(float(np.mean([e['upload'] for e in w])), 3),
                    'version': w[-1]['version']})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    ap.add_argument('--weights', default=str(DEFAULT_WEIGHTS), help='factory edge weights')
    ap.add_argument('--camvid', help='CamVid root (default: $LAECIPS_CAMVID or ../shared)')
    ap.add_argument('--espnet', default=str(_shared() / 'models' / 'espnet_c_camvid.pth'))
    ap.add_argument('--mode', choices=('offline', 'online'), default='offline')
    ap.add_argument('--steps', type=int, default=400, help='offline: training steps')
    ap.add_argument('--steps-per-round', type=int, default=50)
    ap.add_argument('--round-every', type=int, default=4, help='online: uploads per round')
    ap.add_argument('--day', action='store_true', help='online: replay Seq05VD first')
    ap.add_argument('--lr', type=float, default=DistillConfig.lr)
    ap.add_argument('--batch', type=int, default=DistillConfig.batch)
    ap.add_argument('--val-fraction', type=float, default=DistillConfig.val_fraction)
    ap.add_argument('--gate-margin', type=float, default=DistillConfig.gate_margin)
    ap.add_argument('--target-upload-ratio', type=float, default=0.3)
    ap.add_argument('--min-disagreement', type=float, default=0.1)
    ap.add_argument('--explore', type=float, default=0.05)
    ap.add_argument('--policy-window', type=int, default=60,
                    help='camera frames whose labelled ones set the budget threshold')
    ap.add_argument('--policy-rule', choices=('learned', 'fixed'), default=pf.Recipe.rule,
                    help="fitted policy, as the trainer's policy_rule")
    ap.add_argument('--budget-burst', type=float, default=pf.Recipe.burst,
                    help="the edge's token bucket, as the trainer's budget_burst (0: off)")
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    ap.add_argument('--no-class-balance', action='store_true')
    ap.add_argument('--soft-weight', type=float, default=DistillConfig.soft_weight,
                    help="offline: share of the loss from the labeller's probabilities")
    ap.add_argument('--probe', action='store_true',
                    help='offline: score the student on the scoring frames every round '
                         '(a diagnostic learning curve; selection never sees it)')
    ap.add_argument('--labels', choices=('cloud', 'gt'), default='cloud',
                    help="offline: train on the cloud labeller's labels, or on the ground truth "
                         '(an oracle: the ceiling of any labeller for this student and budget)')
    ap.add_argument('--quiet', action='store_true')
    args = ap.parse_args(argv)
    if args.labels == 'gt' and (args.mode != 'offline' or args.soft_weight > 0):
        ap.error('--labels gt: offline mode, hard labels only')
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    root = camvid_root(ap, args)  # and --threads
    torch.manual_seed(args.seed)
    t0 = time.monotonic()
    state, meta = weights.load(args.weights)
    adapt = cv.frames(root, 'train', (cv.DUSK,))
    test = cv.frames(root, 'test', (cv.DUSK,))
    a_rgb, a_gt = [f.rgb() for f in adapt], [f.gt() for f in adapt]
    t_rgb, t_gt = [f.rgb() for f in test], [f.gt() for f in test]
    lab = labellers.create('espnet_c', weights=args.espnet, device='cpu')
    a_cloud, t_cloud = cloud_labels(lab, a_rgb), cloud_labels(lab, t_rgb)
    before_t, _ = edge_masks(state, meta, t_rgb)
    before_a, _ = edge_masks(state, meta, a_rgb)
    cfg = DistillConfig(lr=args.lr, batch=args.batch, steps_per_round=args.steps_per_round,
                        val_fraction=args.val_fraction, gate_margin=args.gate_margin,
                        min_frames=4, seed=args.seed,
                        class_balance=not args.no_class_balance,
                        soft_weight=args.soft_weight)
    dist = Distiller(state, meta, cfg)
    t_train = time.monotonic()
    if args.mode == 'offline':
        probe = (lambda sd: score(edge_masks(sd, meta, t_rgb)[0], t_gt)) if args.probe else None
        soft = lab.probabilities(a_rgb) if args.soft_weight > 0 else None
        run = offline(dist, a_rgb, a_gt if args.labels == 'gt' else a_cloud, args.steps, log,
                      probe, soft)
    else:
        stream = [('dusk_adapt', r) for r in a_rgb] + [('dusk', r) for r in t_rgb]
        if args.day:
            day = cv.frames(root, 'test', (cv.DAY_TEST,))
            stream = [('day', f.rgb()) for f in day] + stream
        run = online(dist, stream, lab, args, log)
        run['upload_windows'] = windows(run.pop('events'), 20)
    train_s = time.monotonic() - t_train
    after_t, _ = edge_masks(dist.active, meta, t_rgb)
    after_a, _ = edge_masks(dist.active, meta, a_rgb)
    student_t, _ = edge_masks(dist.model.state_dict(), meta, t_rgb)
    cloud_t = score(t_cloud, t_gt)
    after = score(after_t, t_gt)
    report = {
        'mode': args.mode, 'weights': Path(args.weights).name,
        'scoring_frames': {  # 0001TP test split: never trained on
            'frames': len(test), 'edge_before_miou': score(before_t, t_gt),
            'edge_after_miou': after, 'student_last_miou': score(student_t, t_gt),
            'cloud_miou': cloud_t,
            'after_over_cloud': round(after / cloud_t, 3) if cloud_t else math.nan,
            'goal_0.9_of_cloud': bool(after >= 0.9 * cloud_t)},
        'adaptation_frames': {  # 0001TP train split: the edge adapted on these
            'frames': len(adapt), 'edge_before_miou': score(before_a, a_gt),
            'edge_after_miou': score(after_a, a_gt), 'cloud_miou': score(a_cloud, a_gt)},
        'active_version': dist.active_version, 'steps': dist.steps,
        'frames_seen': dist.frames_seen, 'train_seconds': round(train_s, 1),
        'total_seconds': round(time.monotonic() - t0, 1),
        'torch_threads': torch.get_num_threads(),
        'config': {k: getattr(args, k) for k in ('steps', 'steps_per_round', 'lr', 'batch',
                                                  'val_fraction', 'gate_margin', 'seed',
                                                  'no_class_balance', 'soft_weight')},
        'labels': 'ground truth (oracle)' if args.labels == 'gt' else 'cloud labeller',
        **run}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
