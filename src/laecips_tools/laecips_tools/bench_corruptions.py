# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Corruption benchmark (JSON): the factory edge, ESPNet-C and the robust teacher, side by side.

    bench_corruptions [--every 4] [--models edge,espnet_c,teacher] [--out FILE]

Every ``--every``-th Seq05VD test frame (a day drive no model trained on), clean and under
each kind of ``laecips_core.corruptions.KINDS`` at severities 1, 2, 3 (each frame's
corruption seeded by its name: the same images for every model), plus the clean 0001TP test
frames (``dusk``: the drive the teacher never saw). Each model runs as the system runs it:
the edge at its input size, ESPNet-C and the teacher at full resolution, labels scored at
full resolution (11 classes, void ignored, one confusion matrix per condition).

``rows``: one per model, ``clean``, ``dusk`` and ``miou[kind][severity]``; ``checks``: the
issue's bars (severity 3 costs ESPNet-C >= 15; at severity 2 the teacher beats ESPNet-C by
>= 5 and the edge by >= 10; clean teacher >= ESPNet-C - 2; dusk teacher >= 50), each with
its figures, so a reader sees what held.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import platform
import sys
import time

import numpy as np
import torch

from laecips_cloud.labellers import Labeller, create
from laecips_cloud.labellers.teacher import default_weights as teacher_weights
from laecips_core import camvid as cv
from laecips_core import corruptions, metrics
from laecips_core.classes import CAMVID
from laecips_edge.factory import factory_weights
from laecips_tools import camvid_root

MODELS = ('edge', 'espnet_c', 'teacher')


def labeller(name: str, teacher: str = '', espnet: str = '') -> Labeller:
    """Return the model behind a row name (the edge: its factory weights, run as a labeller)."""
    if name == 'edge':
        return create('teacher', weights=factory_weights(), device='cpu')
    if name == 'teacher':
        return create('teacher', weights=teacher, device='cpu')
    if name == 'espnet_c':
        return create('espnet_c', weights=espnet, device='cpu') if espnet else create(
            'espnet_c', device='cpu')
    raise ValueError(f'unknown model {name!r}; known: {", ".join(MODELS)}')


def score(labs: dict[str, Labeller], images: list[np.ndarray], gts: list[np.ndarray],
          conf: dict[str, np.ndarray], batch: int = 4) -> None:
    """Add each model's confusion on ``images`` to ``conf[model]``."""
    n, void = CAMVID.num_classes, CAMVID.void
    for name, lab in labs.items():
        for i in range(0, len(images), batch):
            for pred, gt in zip(lab.label(images[i:i + batch]), gts[i:i + batch]):
                conf[name] += metrics.confusion(pred, gt, n, void)


def _miou(c: np.ndarray) -> float:
    return round(100 * metrics.miou(c), 2)


def run(root: Path, models: list[str], every: int, teacher: str, espnet: str,
        kinds: list[str], log=print) -> dict:
    """Score every model clean, at dusk and under each kind and severity; the report dict."""
    labs = {m: labeller(m, teacher, espnet) for m in models}
    n = CAMVID.num_classes
    day = cv.frames(root, 'test', (cv.DAY_TEST,))[::every]
    dusk = cv.frames(root, 'test', (cv.DUSK,))[::every]
    rgbs, gts = [f.rgb() for f in day], [f.gt() for f in day]
    seeds = [corruptions.seed_of(f.name) for f in day]
    t0 = time.monotonic()

    def fresh() -> dict[str, np.ndarray]:
        return {m: np.zeros((n, n), np.int64) for m in models}
    conf = fresh()
    score(labs, rgbs, gts, conf)
    rows = {m: {'name': m, 'clean': _miou(conf[m]), 'miou': {}} for m in models}
    conf = fresh()
    score(labs, [f.rgb() for f in dusk], [f.gt() for f in dusk], conf)
    for m in models:
        rows[m]['dusk'] = _miou(conf[m])
    for kind in kinds:
        for sev in corruptions.SEVERITIES:
            imgs = [corruptions.corrupt(x, kind, sev, s) for x, s in zip(rgbs, seeds)]
            conf = fresh()
            score(labs, imgs, gts, conf)
            for m in models:
                rows[m]['miou'].setdefault(kind, {})[str(sev)] = _miou(conf[m])
            log(f'{kind} {sev}: ' + ', '.join(f'{m} {rows[m]["miou"][kind][str(sev)]}'
                                              for m in models)
                + f' ({time.monotonic() - t0:.0f} s)')
    for m, lab in labs.items():
        rows[m]['weights'] = Path(getattr(lab, 'weights', '')).name
    return {'frames': {'day': len(day), 'dusk': len(dusk), 'every': every,
                       'day_sequence': cv.DAY_TEST, 'dusk_sequence': cv.DUSK},
            'kinds': kinds, 'severities': list(corruptions.SEVERITIES),
            'rows': [rows[m] for m in models], 'seconds': round(time.monotonic() - t0, 1)}


def checks(report: dict) -> dict:
    """Evaluate the issue's bars on the report (those its rows allow)."""
    r = {row['name']: row for row in report['rows']}
    out: dict[str, dict] = {}
    if 'espnet_c' in r:
        e = r['espnet_c']
        drop = {k: round(e['clean'] - e['miou'][k]['3'], 2) for k in report['kinds']}
        out['severity3_costs_espnet_15'] = {'drop': drop, 'ok': min(drop.values()) >= 15}
    if 'teacher' in r:
        t = r['teacher']
        out['teacher_dusk_50'] = {'teacher': t['dusk'], 'ok': t['dusk'] >= 50}
        for other, margin in (('espnet_c', 5), ('edge', 10)):
            if other in r:
                gap = {k: round(t['miou'][k]['2'] - r[other]['miou'][k]['2'], 2)
                       for k in report['kinds']}
                out[f'severity2_teacher_beats_{other}_by_{margin}'] = {
                    'gap': gap, 'ok': min(gap.values()) >= margin}
        if 'espnet_c' in r:
            out['clean_teacher_within_2_of_espnet'] = {
                'teacher': t['clean'], 'espnet_c': r['espnet_c']['clean'],
                'ok': t['clean'] >= r['espnet_c']['clean'] - 2}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    ap.add_argument('--camvid', help='CamVid root (default: $LAECIPS_CAMVID or ../shared)')
    ap.add_argument('--every', type=int, default=4, help='every n-th test frame')
    ap.add_argument('--models', default=','.join(MODELS))
    ap.add_argument('--kinds', default=','.join(corruptions.KINDS))
    ap.add_argument('--teacher', default='', help='teacher weights (default: the committed)')
    ap.add_argument('--espnet', default='', help='ESPNet-C weights (default: ../shared)')
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    ap.add_argument('--out', help='write the JSON here too')
    args = ap.parse_args(argv)
    root = camvid_root(ap, args)
    models = [m for m in args.models.split(',') if m]
    kinds = [k for k in args.kinds.split(',') if k]
    for k in kinds:
        if k not in corruptions.KINDS:
            ap.error(f'unknown kind {k!r}; known: {", ".join(corruptions.KINDS)}')
    report = run(root, models, args.every, args.teacher, args.espnet, kinds,
                 log=lambda s: print(s, file=sys.stderr, flush=True))
    teacher_json = Path(args.teacher or teacher_weights()).with_suffix('.json')
    if 'teacher' in models and teacher_json.is_file():
        t = json.loads(teacher_json.read_text())
        report['teacher_train_sequences'] = t.get('teacher_train_sequences', [])
        report['teacher_training'] = {k: t.get(k) for k in ('command', 'params', 'training',
                                                            'ran_on', 'sha256')}
    report['checks'] = checks(report)
    report['machine'] = {'machine': platform.machine(), 'torch_threads':
                         torch.get_num_threads()}
    report['command'] = ' '.join(['laecips bench-corruptions',
                                  *(sys.argv[1:] if argv is None else argv)])
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + '\n')
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
