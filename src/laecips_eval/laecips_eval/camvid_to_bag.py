# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Convert CamVid frames into a rosbag2 file: a camera stream with its ground truth.

Topics (defaults):

* ``/camera/image_raw``: sensor_msgs/Image ``rgb8``, ``header.frame_id = 'camera'``.
* ``/camera/ground_truth``: sensor_msgs/Image ``mono8`` class ids (CamVid: 0-10, 11 = void),
  with the same ``header.stamp`` as its frame. Its ``header.frame_id`` is the phase marker:
  ``'<phase>/<frame name>'``, e.g. ``'dusk/0001TP_008550'``; the phase is ``day``,
  ``dusk_adapt`` or ``dusk`` for ``--stream drift`` (DESIGN.md, evaluation protocol) and the
  split name otherwise.

Frames are stamped ``start + i / rate`` and written with that time as the bag's receive
time, in stream order.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import shutil
import sys
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from laecips_eval import bags

CAMERA_TOPIC = '/camera/image_raw'
GT_TOPIC = '/camera/ground_truth'
START_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z: fixed, so bags are reproducible


def select(root: str | Path, stream: str | None = 'drift', split: str = 'test',
           sequences: Sequence[str] | None = None, first: int | None = None,
           last: int | None = None, per_phase: int | None = None,
           limit: int | None = None) -> list[tuple[str, object]]:
    """
    Return (phase, laecips_core.camvid.Frame) pairs in time order.

    ``stream='drift'`` gives the protocol's stream; ``stream=None`` a split (optionally some
    sequences and a frame-number range), phase = split name. ``per_phase`` keeps the first N
    frames of each phase, ``limit`` the first N overall.
    """
    from laecips_core import camvid
    if stream in camvid.STREAMS:
        items = camvid.STREAMS[stream](root)
    elif stream is None:
        items = [(split, f) for f in camvid.frames(root, split, tuple(sequences or ()) or None,
                                                    first, last)]
    else:
        raise ValueError(f'unknown stream {stream!r} (known: {", ".join(camvid.STREAMS)})')
    if per_phase is not None:
        seen: dict[str, int] = {}
        kept = []
        for phase, f in items:
            seen[phase] = seen.get(phase, 0) + 1
            if seen[phase] <= per_phase:
                kept.append((phase, f))
        items = kept
    return items[:limit] if limit is not None else items


def _resize(arr: np.ndarray, scale: float, nearest: bool) -> np.ndarray:
    if scale == 1.0:
        return arr
    h, w = arr.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.NEAREST if nearest else Image.BILINEAR
    return np.asarray(Image.fromarray(arr).resize(size, resample))


def write(items: Iterable[tuple[str, object]], out: str | Path, rate: float = 1.0,
          storage: str = 'mcap', start_ns: int = START_NS, frame_id: str = 'camera',
          camera_topic: str = CAMERA_TOPIC, gt_topic: str | None = GT_TOPIC,
          scale: float = 1.0, overwrite: bool = False, progress: bool = False) -> int:
    """Write frames (and ground truth unless ``gt_topic`` is None) to a bag; return the count."""
    from rosbags.rosbag2 import Writer
    from tqdm import tqdm
    if rate <= 0:
        raise ValueError('rate must be > 0')
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise FileExistsError(f'{out} exists (use --overwrite)')
        shutil.rmtree(out)
    store = bags.typestore()
    items = list(items)
    with Writer(out, version=9, storage_plugin=bags.storage_plugin(storage)) as w:
        cam = w.add_connection(camera_topic, bags.IMAGE, typestore=store)
        gtc = w.add_connection(gt_topic, bags.IMAGE, typestore=store) if gt_topic else None
        for i, (phase, f) in enumerate(tqdm(items, desc='bag', unit='frame',
                                            disable=not progress)):
            t = start_ns + round(i * 1e9 / rate)
            w.write(cam, t, bags.image_cdr(_resize(f.rgb(), scale, False), 'rgb8', t,
                                           frame_id, store))
            if gtc is not None:
                w.write(gtc, t, bags.image_cdr(_resize(f.gt(), scale, True), 'mono8', t,
                                               f'{phase}/{f.name}', store))
    return len(items)


def read_stream(bag: str | Path, gt_topic: str = GT_TOPIC,
                camera_topic: str = CAMERA_TOPIC) -> tuple[list[str], list[str], float]:
    """
    Return a bag's phases and frame names (one per ground-truth message) and its frame rate.

    The phase and name come from each ground-truth ``frame_id`` (``'<phase>/<name>'``); the
    rate (frames per second) from the receive times of the camera topic (else the ground
    truth): what a replay at rate 1.0 plays. A bag with one frame reports 1.0 Hz.
    """
    from rosbags.rosbag2 import Reader
    store = bags.typestore()
    phases, names, times = [], [], {camera_topic: [], gt_topic: []}
    with Reader(Path(bag)) as r:
        conns = [c for c in r.connections if c.topic in times]
        for conn, t, raw in r.messages(connections=conns):
            times[conn.topic].append(t)
            if conn.topic == gt_topic:
                msg = store.deserialize_cdr(raw, conn.msgtype)
                phase, name = parse_gt_frame_id(msg.header.frame_id)
                phases.append(phase)
                names.append(name)
    stamps = times[camera_topic] or times[gt_topic]
    span = (stamps[-1] - stamps[0]) / 1e9 if len(stamps) > 1 else 0.0
    return phases, names, (len(stamps) - 1) / span if span > 0 else 1.0


def parse_gt_frame_id(frame_id: str) -> tuple[str, str]:
    """Split a ground-truth frame_id into (phase, frame name)."""
    phase, _, name = frame_id.partition('/')
    return phase, name


def main(argv: list[str] | None = None) -> int:
    from laecips_core import camvid
    p = argparse.ArgumentParser(prog='camvid_to_bag', description=__doc__.split('\n')[1])
    p.add_argument('out', help='bag folder to create')
    p.add_argument('--root', default=None, help='CamVid folder (default: $LAECIPS_CAMVID, '
                   'then ../shared/data/camvid)')
    p.add_argument('--stream', choices=sorted(camvid.STREAMS), default=None,
                   help="a named stream: the evaluation protocol's (drift: day, dusk_adapt, "
                   'dusk) or dusk_noise (its dusk phases with sensor noise)')
    p.add_argument('--split', default='test', help='split when --stream is not given')
    p.add_argument('--sequences', default='', help='comma-separated sequences of the split')
    p.add_argument('--first', type=int, default=None, help='first frame number to keep')
    p.add_argument('--last', type=int, default=None, help='last frame number to keep')
    p.add_argument('--per-phase', type=int, default=None, help='first N frames of each phase')
    p.add_argument('--limit', type=int, default=None, help='first N frames overall')
    p.add_argument('--rate', type=float, default=1.0, help='frames per second (stamps)')
    p.add_argument('--scale', type=float, default=1.0, help='resize factor (GT: nearest)')
    p.add_argument('--storage', choices=bags.STORAGES, default='mcap')
    p.add_argument('--frame-id', default='camera')
    p.add_argument('--camera-topic', default=CAMERA_TOPIC)
    p.add_argument('--gt-topic', default=GT_TOPIC, help="'' to leave ground truth out")
    p.add_argument('--overwrite', action='store_true')
    args = p.parse_args(argv)
    root = camvid.find_root(args.root)
    if root is None:
        print('camvid_to_bag: CamVid not found (use --root or LAECIPS_CAMVID; '
              'laecips_tools.camvid_download fetches it)', file=sys.stderr)
        return 1
    seqs = [s for s in args.sequences.split(',') if s]
    items = select(root, args.stream, args.split, seqs, args.first, args.last,
                   args.per_phase, args.limit)
    if not items:
        print('camvid_to_bag: no frames selected', file=sys.stderr)
        return 1
    try:
        n = write(items, args.out, args.rate, args.storage, frame_id=args.frame_id,
                  camera_topic=args.camera_topic, gt_topic=args.gt_topic or None,
                  scale=args.scale, overwrite=args.overwrite, progress=True)
    except (OSError, ValueError) as e:
        print(f'camvid_to_bag: {e}', file=sys.stderr)
        return 1
    phases = ', '.join(f'{ph} {sum(1 for q, _ in items if q == ph)}'
                       for ph in dict.fromkeys(q for q, _ in items))
    print(f'wrote {n} frames ({phases}) at {args.rate:g} Hz to {args.out} ({args.storage})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
