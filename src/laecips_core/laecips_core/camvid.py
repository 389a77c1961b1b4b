# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""CamVid (SegNet version) on disk: splits, sequences in time order, and the drift stream."""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path

import numpy as np
from PIL import Image

DAY_TRAIN = ('0006R0', '0016E5')
DUSK = '0001TP'
DAY_TEST = 'Seq05VD'


@dataclass(frozen=True)
class Frame:
    """One CamVid frame: its image and ground-truth paths and where it sits in the stream."""

    image: Path
    label: Path
    split: str
    sequence: str
    index: int  # frame number within the source video

    @property
    def name(self) -> str:
        """Return the frame's file stem, e.g. ``0001TP_008550``."""
        return self.image.stem

    def rgb(self) -> np.ndarray:
        """Return the frame as HxWx3 uint8 RGB."""
        return np.asarray(Image.open(self.image).convert('RGB'))

    def gt(self) -> np.ndarray:
        """Return the HxW uint8 ground truth (class ids, 11 = void)."""
        return np.asarray(Image.open(self.label))


def find_root(explicit: str | os.PathLike | None = None) -> Path | None:
    """Locate CamVid: an explicit path, then $LAECIPS_CAMVID, then ../shared/data/camvid."""
    here = Path(__file__).resolve()
    candidates = [explicit, os.environ.get('LAECIPS_CAMVID')]
    candidates += [p / 'shared' / 'data' / 'camvid' for p in here.parents]
    candidates += [Path.cwd().parent / 'shared' / 'data' / 'camvid']
    for c in candidates:
        if c and (Path(c) / 'train.txt').is_file():
            return Path(c)
    return None


def frames(root: str | os.PathLike, split: str, sequences: tuple[str, ...] | None = None,
           first: int | None = None, last: int | None = None) -> list[Frame]:
    """List a split's frames in time order, optionally only some sequences or a frame range."""
    root = Path(root)
    out = []
    for line in (root / f'{split}.txt').read_text().split('\n'):
        if not line.strip():
            continue
        img, lab = (p.replace('/SegNet/CamVid/', '', 1) for p in line.split())
        stem = Path(img).stem
        seq, idx = stem.rsplit('_', 1)
        idx = int(idx.lstrip('f') or 0)
        if sequences and seq not in sequences:
            continue
        if (first is not None and idx < first) or (last is not None and idx > last):
            continue
        out.append(Frame(root / img, root / lab, split, seq, idx))
    return sorted(out, key=lambda f: (f.sequence, f.index))


def drift_stream(root: str | os.PathLike) -> list[tuple[str, Frame]]:
    """
    Return the evaluation stream of DESIGN.md as (phase, frame) in time order.

    Phases: ``day`` (Seq05VD test), ``dusk_adapt`` (0001TP train 6690-8520),
    ``dusk`` (0001TP test 8550-10380, the scoring phase).
    """
    return ([('day', f) for f in frames(root, 'test', (DAY_TEST,))]
            + [('dusk_adapt', f) for f in frames(root, 'train', (DUSK,))]
            + [('dusk', f) for f in frames(root, 'test', (DUSK,))])


@dataclass(frozen=True)
class CorruptedFrame:
    """A frame seen through a corruption (laecips_core.corruptions), same name and truth."""

    frame: Frame
    corruption: str
    severity: float

    @property
    def name(self) -> str:
        return self.frame.name

    @property
    def split(self) -> str:
        return self.frame.split

    @property
    def sequence(self) -> str:
        return self.frame.sequence

    @property
    def index(self) -> int:
        return self.frame.index

    def rgb(self) -> np.ndarray:
        """Return the corrupted frame (deterministic: seeded by the frame's name)."""
        from laecips_core import corruptions
        fn = corruptions.CORRUPTIONS[self.corruption]
        return fn(self.frame.rgb(), self.severity, corruptions.seed_of(self.frame.name))

    def gt(self) -> np.ndarray:
        return self.frame.gt()


# Read noise of the dusk phases of the 'dusk_noise' stream (0-1 scale): ~25 of 255 levels,
# a camera at high gain. Chosen so the cloud labeller is clearly the weaker model there
# (see laecips_core.corruptions), not tuned to any figure of the system.
DUSK_NOISE_SIGMA = 0.10


def dusk_noise_stream(root: str | os.PathLike) -> list[tuple[str, Frame | CorruptedFrame]]:
    """
    Return the drift stream with sensor noise on its dusk phases: a stream the cloud fails.

    Phases as in :func:`drift_stream`: ``day`` clean, then ``dusk_adapt`` and ``dusk`` with
    Gaussian read noise of ``DUSK_NOISE_SIGMA``.
    """
    return [(phase, f if phase == 'day' else CorruptedFrame(f, 'sensor_noise',
                                                             DUSK_NOISE_SIGMA))
            for phase, f in drift_stream(root)]


# Named evaluation streams (``laecips evaluate --stream NAME``).
STREAMS = {'drift': drift_stream, 'dusk_noise': dusk_noise_stream}
