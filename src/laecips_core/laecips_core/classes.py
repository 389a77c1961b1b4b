# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The class map: CamVid's 11 classes plus void, as every model and label map here uses it."""

from __future__ import annotations

from dataclasses import dataclass
import json
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ClassMap:
    """Class names and display colours; ids are list indices, ``void`` is ignored in metrics."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    void: int

    @property
    def num_classes(self) -> int:
        """Return the number of real classes (void excluded)."""
        return len(self.names)

    def palette(self) -> np.ndarray:
        """Return a 256x3 uint8 lookup table: class id -> RGB; void and unknown ids are black."""
        lut = np.zeros((256, 3), np.uint8)
        lut[: len(self.colors)] = np.asarray(self.colors, np.uint8)
        return lut

    def to_json(self) -> str:
        """Serialise for weight metadata and class map files."""
        return json.dumps({'names': list(self.names), 'colors': [list(c) for c in self.colors],
                           'void': self.void})

    @staticmethod
    def from_json(text: str) -> 'ClassMap':
        """Parse what :meth:`to_json` wrote (a class map file for TorchScript models)."""
        d = json.loads(text)
        names = tuple(d['names'])
        colors = tuple(tuple(int(v) for v in c) for c in d.get('colors', [])) or tuple(
            tuple(int(v) for v in np.random.default_rng(i).integers(0, 256, 3))
            for i in range(len(names)))
        return ClassMap(names, colors, int(d.get('void', 255)))

    @staticmethod
    def load(path: str | Path) -> 'ClassMap':
        """Read a class map JSON file."""
        return ClassMap.from_json(Path(path).read_text())


# CamVid (SegNet version) colours from the SegNet tutorial's palette.
CAMVID = ClassMap(
    names=('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree', 'SignSymbol', 'Fence',
           'Car', 'Pedestrian', 'Bicyclist'),
    colors=((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
            (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
            (0, 128, 192)),
    void=11,
)
