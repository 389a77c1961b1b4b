# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Train the robust teacher: a larger segmenter that never sees the dusk drive, made robust.

The cloud's stand-in for SAM when no checkpoint can be had (issue #20): a wider, deeper
Fast-SCNN (``TEACHER_CFG``, ~2.8 M parameters) run at CamVid's full 360x480, trained on the
CamVid ``train`` frames of the day sequences only (no frame of 0001TP, the drive the
evaluation's dusk figures come from), on 192x256 crops at 0.6-1.1 of full resolution, with every
corruption of ``laecips_core.corruptions`` (low light, haze, noise, blur, rain,
over-exposure, colour casts) drawn at random levels on 70 % of the images. Usage::

    train_teacher [--camvid PATH] [--minutes 60] [--threads 1] [--out WEIGHTS]

``--minutes`` is CPU time of this process (capped by ``--max-wall-minutes``); a checkpoint
is written every 500 steps. The weights are saved in fp16 (half the bytes; the labeller
widens them) with a JSON report beside them: training time, where it ran, sequences, and
the clean mIoU on Seq05VD (day) and 0001TP test (dusk).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
import json
import os
from pathlib import Path
import platform
import sys

import torch

from laecips_core import camvid as cv
from laecips_core import corruptions, models, weights
from laecips_tools import camvid_root
from laecips_tools.train_factory import evaluate, train

DEFAULT_OUT = (Path(__file__).resolve().parents[2] / 'laecips_cloud' / 'weights'
               / 'teacher.safetensors')
TEACHER_CFG = {'ltd': [32, 64, 96], 'gfe': [96, 144, 192], 'blocks': [3, 4, 3],
               'expand': 6, 'fuse': 192}
INPUT_SIZE = (360, 480)  # full CamVid resolution: the cloud has the compute
CROP = (192, 256)


def save_fp16(path: Path, model: torch.nn.Module, meta: weights.WeightsMeta) -> str:
    """Write the weights with floating tensors in fp16; return the file's sha256."""
    state = {k: (v.half() if v.is_floating_point() else v)
             for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    return weights.save(path, state, meta)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[3])
    ap.add_argument('--camvid', help='CamVid root (default: $LAECIPS_CAMVID or ../shared)')
    ap.add_argument('--minutes', type=float, default=60.0,
                    help='training budget in CPU minutes of this process')
    ap.add_argument('--max-wall-minutes', type=float, default=120.0,
                    help='stop after this much wall time even if CPU budget is left')
    ap.add_argument('--out', default=str(DEFAULT_OUT), help='weights file to write')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--lr', type=float, default=4e-3)
    ap.add_argument('--threads', type=int, default=1, help='torch threads (0: all cores)')
    args = ap.parse_args(argv)
    root = camvid_root(ap, args)
    out = Path(args.out)
    gen = torch.Generator().manual_seed(args.seed)

    def checkpoint(model, meta, step):
        save_fp16(out, model, meta)
        print(f'checkpoint at step {step}: {out}', flush=True)

    model, meta, info = train(
        root, args.minutes, args.seed, args.batch, args.lr, args.max_wall_minutes,
        log=lambda s: print(s, flush=True), arch_cfg=TEACHER_CFG, input_size=INPUT_SIZE,
        crop=CROP, scale=(0.6, 1.1), augment=lambda x: corruptions.augment(x, gen),
        role='robust teacher (corruption augmentation)', checkpoint=checkpoint)
    assert cv.DUSK not in info['train_sequences']  # the drive it must never see
    meta.extra['created'] = datetime.now(timezone.utc).isoformat(timespec='seconds')
    sha = save_fp16(out, model, meta)
    day = evaluate(model, cv.frames(root, 'test', (cv.DAY_TEST,)), meta, batch=4)
    dusk = evaluate(model, cv.frames(root, 'test', (cv.DUSK,)), meta, batch=4)
    report = {'weights': out.name, 'sha256': sha, 'bytes': out.stat().st_size,
              'dtype': 'float16', 'arch': meta.arch, 'arch_cfg': TEACHER_CFG,
              'params': models.num_params(model), 'input_size': list(INPUT_SIZE),
              'teacher_train_sequences': info['train_sequences'], 'training': info,
              'training_data': meta.training_data,
              'augmentation': sorted(corruptions.KINDS),
              'ran_on': {'machine': platform.machine(), 'cpus': os.cpu_count(),
                         'torch_threads': torch.get_num_threads(), 'device': 'cpu'},
              'command': ' '.join(['laecips train-teacher',
                                   *(sys.argv[1:] if argv is None else argv)]),
              'test_miou': {'day': day['miou'], 'dusk': dusk['miou']},
              'day': day, 'dusk': dusk}
    out.with_suffix('.json').write_text(json.dumps(report, indent=1) + '\n')
    print(json.dumps({'test_miou': report['test_miou'], 'training': info, 'out': str(out)}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
