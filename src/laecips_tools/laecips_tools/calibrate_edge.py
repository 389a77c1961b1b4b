# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Calibrate an edge weights file's confidence on the anchor set and store it in its metadata.

The edge fuses its mask with the cloud's by *calibrated* confidence
(laecips_core.fusion): the weights' metadata key ``calibration`` maps the model's top-1
probability to its accuracy on the anchor set (the factory data, laecips_core.anchor). The
trainer does this for every version it pushes; this command does it for a weights file
made elsewhere (``train-factory`` calls it too). The tensors are unchanged.

    laecips calibrate-edge src/laecips_edge/weights/factory.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys

from laecips_cloud.distill import Distiller
from laecips_core import anchor, weights


def calibrate(path: str | Path, camvid: str | None = None, frames: int = anchor.DEFAULT_FRAMES
              ) -> dict:
    """Rewrite ``path`` with its calibration; update ``<path>.json`` if present; return it."""
    path = Path(path)
    sd, meta = weights.load(path)
    if meta is None:
        raise SystemExit(f'{path} carries no LAECIPS metadata')
    data = anchor.load(camvid, frames)
    if data is None:
        raise SystemExit('CamVid not found (the anchor set): pass --camvid or set '
                         'LAECIPS_CAMVID')
    d = Distiller(sd, meta, anchor_set=data)
    sha = weights.save(path, sd, d.meta)
    out = {'weights': str(path), 'sha256': sha, 'bytes': path.stat().st_size,
           'anchor_frames': len(data), 'anchor_miou': round(100 * d.anchor_factory['miou'], 2),
           'calibration': json.loads(d.meta.extra['calibration'])}
    report = path.with_suffix('.json')
    if report.is_file():
        r = json.loads(report.read_text())
        r.update(sha256=sha, bytes=out['bytes'], calibration=out['calibration'],
                 anchor_miou=out['anchor_miou'])
        report.write_text(json.dumps(r, indent=1) + '\n')
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    ap.add_argument('weights', help='safetensors weights file (rewritten in place)')
    ap.add_argument('--camvid', help='CamVid root (default: $LAECIPS_CAMVID or ../shared)')
    ap.add_argument('--frames', type=int, default=anchor.DEFAULT_FRAMES)
    args = ap.parse_args(argv)
    print(json.dumps(calibrate(args.weights, args.camvid, args.frames)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
