# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Cloud labeller benchmark (JSON): latency per frame and throughput vs batch size.

    bench_cloud [--out FILE] [--miou] [--weights PTH] [--sam-checkpoint PTH] [--repeats N]

* ``cpu``: ``espnet_c`` at 360x480 for batch 1/2/4/8, and ``sam_ssa`` with the tiny
  random-init SAM (the test configuration) for batch 1/2/4, on this machine's CPU.
* ``gpu`` (only when CUDA is present): SAM vit_h automatic labelling of 360x480 frames in
  frames/s: the official generator at batch 1 (fp32, 32x32 points, 64 prompts per decoder
  batch) against tuned settings (bf16 autocast, large prompt batches, a batched image
  encoder, 16x16 points), plus the vit_h encoder alone. Without ``--sam-checkpoint`` SAM
  has random weights: the encoder and decoder cost is the same, but fewer masks pass the
  quality filters than with real weights, so the post-processing share is optimistic.
* ``--miou``: ESPNet-C on CamVid test, one confusion matrix per subset (day = Seq05VD,
  dusk = 0001TP; 11 classes, void ignored), with the per-channel statistics of CamVid train
  recomputed as the authors' loader does (metrics from laecips_core.metrics).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Callable

import numpy as np
import torch

from laecips_cloud.labellers import Labeller, create
from laecips_core import camvid as cv

H, W = 360, 480


def _frames(n: int) -> list[np.ndarray]:
    root = cv.find_root()
    if root is not None:
        fr = cv.frames(root, 'test')
        return [fr[(i * 37) % len(fr)].rgb() for i in range(n)]
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)]


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_batches(fn: Callable[[list[np.ndarray]], object], frames: list[np.ndarray],
                 batch: int, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Time ``fn`` on batches of ``batch`` frames; per-frame latency and throughput."""
    for i in range(warmup):
        fn(frames[:batch])
    _sync()
    times = []
    for r in range(repeats):
        sel = [frames[(r * batch + j) % len(frames)] for j in range(batch)]
        t = time.perf_counter()
        fn(sel)
        _sync()
        times.append(time.perf_counter() - t)
    med = float(np.median(times))
    return {'batch': batch, 'batch_s_median': round(med, 4),
            'ms_per_frame': round(1000 * med / batch, 2),
            'frames_per_s': round(batch / med, 2), 'repeats': repeats}


class _Zeros(Labeller):
    name = 'zeros'

    def label(self, images, edge_labels=None):
        return [np.zeros(im.shape[:2], np.uint8) for im in images]


def cpu_section(weights: str, repeats: int) -> dict:
    frames = _frames(8)
    out: dict = {'threads': torch.get_num_threads()}
    if weights or os.path.isfile(_default_weights()):
        lab = create('espnet_c', weights=weights, device='cpu')
        out['espnet_c'] = [time_batches(lab.label, frames, b, repeats) for b in (1, 2, 4, 8)]
        sem: Labeller = lab
    else:
        out['espnet_c'] = 'skipped: no weights (--weights or $LAECIPS_ESPNET_WEIGHTS)'
        sem = _Zeros()
    tiny = create('sam_ssa', model_type='tiny', points_per_side=8, semantic=sem, device='cpu')
    out['sam_ssa_tiny'] = {
        'config': 'random-init tiny SAM (2 blocks, 128 px input), 8x8 points, filters off',
        'runs': [time_batches(tiny.label, frames, b, max(2, repeats // 2)) for b in (1, 2, 4)]}
    return out


def _default_weights() -> str:
    from laecips_cloud.labellers.espnet_c import default_weights
    return default_weights() or '/nonexistent'


def _encoder_ms(checkpoint: str, repeats: int) -> dict[str, float]:
    """Time the vit_h image encoder alone on one 1024x1024 input, fp32 and bf16."""
    from laecips_cloud.labellers.sam_ssa import build_sam
    sam = build_sam('vit_h', checkpoint, allow_random=True).cuda()
    x = torch.randn(1, 3, 1024, 1024, device='cuda')
    enc = {}
    for name, ctx in (('fp32', torch.autocast('cuda', enabled=False)),
                      ('bf16', torch.autocast('cuda', dtype=torch.bfloat16))):
        with torch.no_grad(), ctx:
            r = time_batches(lambda _f: sam.image_encoder(x), [x], 1, repeats, warmup=2)
        enc[name] = r['ms_per_frame']
    return enc


def gpu_section(weights: str, checkpoint: str, repeats: int) -> dict:
    frames = _frames(8)
    sem: Labeller = (create('espnet_c', weights=weights, device='cuda')
                     if weights or os.path.isfile(_default_weights()) else _Zeros())
    out: dict = {'device': torch.cuda.get_device_name(0),
                 'sam_weights': checkpoint or 'random (no checkpoint)'}
    out['vit_h_encoder_ms'] = _encoder_ms(checkpoint, repeats)
    torch.cuda.empty_cache()
    configs = [
        ('official: fp32, 32x32 points, 64 prompts/batch, batch 1',
         dict(points_per_side=32, points_per_batch=64), 1),
        ('bf16, 32x32 points, 1024 prompts/batch, batch 1',
         dict(points_per_side=32, points_per_batch=1024, bf16=True), 1),
        ('bf16, 16x16 points, 256 prompts/batch, batch 1',
         dict(points_per_side=16, points_per_batch=256, bf16=True), 1),
        ('bf16, 16x16 points, 256 prompts/batch, batched encoder, batch 4',
         dict(points_per_side=16, points_per_batch=256, bf16=True, batch_encoder=True), 4),
    ]
    runs = []
    for desc, params, batch in configs:
        lab = create('sam_ssa', model_type='vit_h', checkpoint=checkpoint, allow_random=True,
                     semantic=sem, device='cuda', **params)
        r = time_batches(lab.label, frames, batch, repeats, warmup=1)
        r['config'] = desc
        r['masks_per_frame'] = float(np.mean([s['masks'] for s in lab.last_stats]))
        runs.append(r)
        del lab
        torch.cuda.empty_cache()
    out['sam_ssa_vit_h'] = runs
    return out


def miou_section(weights: str) -> dict:
    from laecips_core.metrics import class_iou, confusion, miou
    root = cv.find_root()
    if root is None:
        return {'skipped': 'CamVid not found'}
    train = cv.frames(root, 'train')
    m, s = np.zeros(3), np.zeros(3)
    for f in train:  # the authors' loader: mean of per-image means and of per-image stds
        bgr = f.rgb()[:, :, ::-1].reshape(-1, 3).astype(np.float64)
        m += bgr.mean(0)
        s += bgr.std(0)
    mean, std = (m / len(train)).tolist(), (s / len(train)).tolist()
    lab = create('espnet_c', weights=weights, device='cpu', mean_bgr=mean, std_bgr=std)
    conf = {'day': np.zeros((11, 11), np.int64), 'dusk': np.zeros((11, 11), np.int64)}
    test = cv.frames(root, 'test')
    for i in range(0, len(test), 8):
        chunk = test[i:i + 8]
        for f, p in zip(chunk, lab.label([f.rgb() for f in chunk])):
            conf['day' if f.sequence == cv.DAY_TEST else 'dusk'] += confusion(p, f.gt())
    conf['overall'] = conf['day'] + conf['dusk']
    return {'normalisation': 'BGR, ((img - mean) / std) / 255, CamVid train statistics',
            'mean_bgr': [round(v, 4) for v in mean], 'std_bgr': [round(v, 4) for v in std],
            'frames': {'day': int(sum(f.sequence == cv.DAY_TEST for f in test)),
                       'dusk': int(sum(f.sequence != cv.DAY_TEST for f in test))},
            **{k: round(100 * miou(c), 2) for k, c in conf.items()},
            'class_iou_overall': [round(100 * v, 1) for v in class_iou(conf['overall'])]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog='bench_cloud', description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', default='-', help='JSON file (default: stdout)')
    ap.add_argument('--weights', default='', help='ESPNet-C weights (default: shared/models)')
    ap.add_argument('--sam-checkpoint', default='', help='SAM vit_h checkpoint for the GPU part')
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--miou', action='store_true', help='also measure ESPNet-C CamVid mIoU')
    ap.add_argument('--no-cpu', action='store_true', help='skip the CPU section')
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    res: dict = {'host': platform.node(), 'cpu_count': os.cpu_count(), 'torch': torch.__version__,
                 'load_avg': os.getloadavg(), 'frame': [H, W]}
    if args.miou:
        res['espnet_c_camvid_miou'] = miou_section(args.weights)
    if not args.no_cpu:
        res['cpu'] = cpu_section(args.weights, args.repeats)
    res['gpu'] = (gpu_section(args.weights, args.sam_checkpoint, args.repeats)
                  if torch.cuda.is_available() else 'skipped: no CUDA device')
    text = json.dumps(res, indent=1)
    if args.out == '-':
        print(text)
    else:
        with open(args.out, 'w') as f:
            f.write(text + '\n')
        print(f'wrote {args.out}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
