# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Train the factory edge model: CamVid day sequences only, on the CPU, within a time budget.

The model never sees dusk (0001TP) frames; its day/dusk test mIoU gap is the drift the
system has to win back. Usage::

    train_factory [--camvid PATH] [--minutes 10] [--out weights/factory.safetensors]

``--minutes`` is CPU time of this process (one torch thread by default), so the result does
not depend on what else the machine runs; ``--max-wall-minutes`` (15) caps the wall time.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
import json
import math
from pathlib import Path
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch idiom)

from laecips_core import camvid as cv
from laecips_core import metrics, models, weights
from laecips_core.classes import CAMVID
from laecips_tools import camvid_root

DEFAULT_OUT = (Path(__file__).resolve().parents[2] / 'laecips_edge' / 'weights'
               / 'factory.safetensors')
INPUT_SIZE = (180, 240)  # half of CamVid's 360x480; masks are upsampled back


def _load(frames: list[cv.Frame]) -> tuple[torch.Tensor, torch.Tensor]:
    imgs = torch.from_numpy(np.stack([f.rgb() for f in frames])).permute(0, 3, 1, 2)
    gts = torch.from_numpy(np.stack([f.gt() for f in frames]))
    return imgs.contiguous(), gts.contiguous()


def _batch(imgs, gts, idx, rng, size, mean, std, scale=(0.4, 0.8), augment=None):
    """Random scale (of full res), crop to ``size``, flip, brightness/contrast, ``augment``."""
    x = imgs[idx].float().div_(255)
    y = gts[idx][:, None].float()
    s = rng.uniform(*scale)
    hw = (max(size[0], round(x.shape[2] * s)), max(size[1], round(x.shape[3] * s)))
    x = F.interpolate(x, hw, mode='bilinear', align_corners=False, antialias=True)
    y = F.interpolate(y, hw, mode='nearest')
    top, left = rng.integers(0, hw[0] - size[0] + 1), rng.integers(0, hw[1] - size[1] + 1)
    x = x[:, :, top:top + size[0], left:left + size[1]]
    y = y[:, 0, top:top + size[0], left:left + size[1]].long()
    flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
    x[flip] = x[flip].flip(-1)
    y[flip] = y[flip].flip(-1)
    # Mild photometric jitter (brightness and contrast x0.75-1.25 per image), the usual
    # robustness of a shipped model; dusk (mean brightness ~0.45x day) stays out of range.
    b = torch.from_numpy(rng.uniform(0.75, 1.25, (len(idx), 1, 1, 1))).float()
    c = torch.from_numpy(rng.uniform(0.75, 1.25, (len(idx), 1, 1, 1))).float()
    m = x.mean((1, 2, 3), keepdim=True)
    x = ((x - m) * c + m * b).clamp_(0, 1)
    if augment is not None:
        x = augment(x)
    return (x - mean) / std, y


def evaluate(model: torch.nn.Module, frames: list[cv.Frame], meta: weights.WeightsMeta,
             batch: int = 8) -> dict:
    """Return mIoU and per-class IoU of ``model`` on ``frames`` at full label resolution."""
    model.eval()
    mean = torch.tensor(meta.mean).view(1, 3, 1, 1)
    std = torch.tensor(meta.std).view(1, 3, 1, 1)
    n = meta.num_classes
    conf = np.zeros((n, n), np.int64)
    with torch.inference_mode():
        for i in range(0, len(frames), batch):
            imgs, gts = _load(frames[i:i + batch])
            x = F.interpolate(imgs.float() / 255, meta.input_size, mode='bilinear',
                              align_corners=False, antialias=True)
            logits = models.upsample(model((x - mean) / std), tuple(gts.shape[-2:]))
            pred = logits.argmax(1).to(torch.uint8).numpy()
            conf += metrics.confusion(pred, gts.numpy(), n, meta.class_map.void)
    iou = metrics.class_iou(conf)
    return {'miou': round(100 * metrics.miou(conf), 2), 'frames': len(frames),
            'iou': {c: (None if math.isnan(v) else round(100 * v, 2))
                    for c, v in zip(meta.class_map.names, iou)}}


def train(root: Path, minutes: float, seed: int = 0, batch: int = 8, lr: float = 4e-3,
          max_wall_minutes: float = 15.0, log=print, *, arch_cfg: dict | None = None,
          input_size: tuple[int, int] = INPUT_SIZE, crop: tuple[int, int] | None = None,
          scale: tuple[float, float] = (0.4, 0.8), augment=None, role: str = 'factory model',
          checkpoint=None, max_frames: int | None = None,
          sequences: tuple[str, ...] = cv.DAY_TRAIN
          ) -> tuple[torch.nn.Module, weights.WeightsMeta, dict]:
    """
    Train the default architecture on the day sequences for ``minutes`` of CPU time.

    ``input_size``: what the model is run at; ``crop``: training crops (default the input
    size) taken at ``scale`` of full resolution; ``augment``: a function on float batches in
    [0, 1] (the teacher's corruptions); ``checkpoint(model, meta, step)`` is called every
    500 steps (a long run keeps what it has); ``max_frames``: an even subset (tests). The
    dusk drive (0001TP) is never seen unless ``sequences`` names it (an oracle, for ceilings).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    crop = crop or input_size
    frames = cv.frames(root, 'train', sequences)
    if max_frames:
        frames = frames[::max(1, len(frames) // max_frames)][:max_frames]
    imgs, gts = _load(frames)
    # Normalisation from the training images themselves (RGB, 0..1 scale).
    f = imgs[::4].float().div_(255)
    mean_v, std_v = f.mean((0, 2, 3)), f.std((0, 2, 3))
    del f
    n, void = CAMVID.num_classes, CAMVID.void
    # Mild class balancing: (median frequency / frequency) ** 0.5, so thin classes count.
    freq = torch.bincount(gts[gts != void].flatten().long(), minlength=n).double()
    freq = freq / freq.sum()
    cw = (freq.median() / freq.clamp_min(1e-6)).sqrt().clamp(0.2, 5.0).float()
    meta = weights.WeightsMeta(
        arch=models.DEFAULT_ARCH, arch_cfg=dict(arch_cfg or {}), class_map=CAMVID,
        input_size=tuple(input_size),
        mean=tuple(round(float(v), 4) for v in mean_v),
        std=tuple(round(float(v), 4) for v in std_v), version=1,
        training_data=(f'CamVid train, {"" if cv.DUSK in sequences else "day "}sequences '
                       f'{", ".join(sequences)} only '
                       f'({len(frames)} frames); {role}, seed {seed}'))
    model = models.create(meta.arch, n, **meta.arch_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    mean, std = mean_v.view(1, 3, 1, 1), std_v.view(1, 3, 1, 1)
    # The budget is this process's CPU time (what the work costs, the same on a busy shared
    # machine), capped in wall time; the learning rate decays with whichever runs out first.
    budget, cap, step, warmup = minutes * 60.0, max_wall_minutes * 60.0, 0, 30
    start, cpu0 = time.monotonic(), time.process_time()
    losses = []
    model.train()
    while (frac := max((time.process_time() - cpu0) / budget,
                       (time.monotonic() - start) / cap)) < 1.0:
        elapsed = time.monotonic() - start
        for g in opt.param_groups:
            g['lr'] = lr * min(1.0, (step + 1) / warmup) * (1 - frac) ** 0.9
        idx = rng.choice(len(frames), batch, replace=False)
        x, y = _batch(imgs, gts, idx, rng, crop, mean, std, scale, augment)
        logits = models.upsample(model(x), crop)
        loss = F.cross_entropy(logits, y, weight=cw, ignore_index=void)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if checkpoint is not None and step % 500 == 0:
            checkpoint(model, meta, step)
            model.train()
        if step % 50 == 0:
            log(f'step {step} {elapsed / 60:.1f} min loss {np.mean(losses[-50:]):.3f}')
    info = {'steps': step, 'cpu_minutes': round((time.process_time() - cpu0) / 60, 2),
            'wall_minutes': round((time.monotonic() - start) / 60, 2),
            'batch': batch, 'lr': lr, 'seed': seed, 'train_frames': len(frames),
            'train_sequences': sorted({f.sequence for f in frames}), 'crop': list(crop),
            'scale': list(scale),
            'final_loss': round(float(np.mean(losses[-50:])), 4) if losses else None}
    return model.eval(), meta, info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    ap.add_argument('--camvid', help='CamVid root (default: $LAECIPS_CAMVID or ../shared)')
    ap.add_argument('--minutes', type=float, default=10.0,
                    help='training budget in CPU minutes of this process (<= 15)')
    ap.add_argument('--max-wall-minutes', type=float, default=15.0,
                    help='stop training after this much wall time even if CPU budget is left')
    ap.add_argument('--out', default=str(DEFAULT_OUT), help='weights file to write')
    ap.add_argument('--report', help='JSON report (default: <out>.json beside the weights)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--batch', type=int, default=8)
    # One thread by default: on a shared 2-core machine a second OpenMP thread that has to
    # wait for a busy core spins, and a step took 13x longer (5.5 s vs 0.43 s) in a test.
    ap.add_argument('--threads', type=int, default=1, help='torch threads (0: all cores)')
    ap.add_argument('--arch-cfg', default='',
                    help='JSON kwargs of the architecture (e.g. wider: {"ltd": [48, 64, 96], '
                         '"gfe": [96, 128, 192], "fuse": 192}); default: the shipped size')
    ap.add_argument('--oracle-dusk', action='store_true',
                    help='also train on the dusk drive (0001TP train split, ground truth): an '
                         'oracle that bounds what this architecture and budget can reach on '
                         'dusk; never the factory model (needs --out)')
    args = ap.parse_args(argv)
    if args.oracle_dusk and Path(args.out).resolve() == DEFAULT_OUT.resolve():
        ap.error('--oracle-dusk writes an oracle, not the factory model: give --out')
    if not 0 < args.minutes <= 15 or not 0 < args.max_wall_minutes <= 15:
        ap.error('--minutes and --max-wall-minutes must be in (0, 15]')
    try:
        arch_cfg = {k: tuple(v) if isinstance(v, list) else v
                    for k, v in json.loads(args.arch_cfg or '{}').items()}
    except (ValueError, AttributeError) as e:
        ap.error(f'--arch-cfg: not a JSON object: {e}')
    root = camvid_root(ap, args)
    model, meta, info = train(root, args.minutes, args.seed, args.batch,
                              max_wall_minutes=args.max_wall_minutes,
                              log=lambda s: print(s, flush=True),
                              sequences=cv.DAY_TRAIN + ((cv.DUSK,) if args.oracle_dusk else ()),
                              role='oracle (dusk seen)' if args.oracle_dusk else 'factory model',
                              arch_cfg=arch_cfg)
    meta.extra['created'] = datetime.now(timezone.utc).isoformat(timespec='seconds')
    out = Path(args.out)
    sha = weights.save(out, model.state_dict(), meta)
    day = evaluate(model, cv.frames(root, 'test', (cv.DAY_TEST,)), meta)
    dusk = evaluate(model, cv.frames(root, 'test', (cv.DUSK,)), meta)
    report = {'weights': out.name, 'sha256': sha, 'bytes': out.stat().st_size,
              'arch': meta.arch, 'params': models.num_params(model),
              'input_size': list(meta.input_size), 'training': info,
              'training_data': meta.training_data, 'torch_threads': torch.get_num_threads(),
              'command': ' '.join(['train_factory', *(sys.argv[1:] if argv is None else argv)]),
              'test_miou': {'day': day['miou'], 'dusk': dusk['miou']},
              'day': day, 'dusk': dusk}
    report_path = Path(args.report) if args.report else out.with_suffix('.json')
    report_path.write_text(json.dumps(report, indent=1) + '\n')
    # Fusion needs the factory model's calibrated confidence; an oracle is never shipped.
    if report_path == out.with_suffix('.json') and not args.oracle_dusk:
        from laecips_tools.calibrate_edge import calibrate
        calibrate(out, str(root))
    print(json.dumps({'test_miou': report['test_miou'], 'training': info, 'out': str(out)}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
