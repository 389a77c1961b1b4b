# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Download an official Segment Anything checkpoint, with a progress bar and its sha256.

    sam_download --model vit_h [--dir DIR] [--sha256 HEX] [--url URL] [--force]

URLs are the ones in the segment-anything README (facebookresearch/segment-anything,
"Model Checkpoints"). No hash ships with this tool: that README publishes none, and the
six hex digits in each file name are not a documented checksum, so there is no
authoritative value to cite. Pass ``--sha256`` (e.g. the value printed by a download you
trust) to have the file verified; the tool always prints the sha256 it saw, and a mismatch
deletes the download and exits with status 1. ``--url`` overrides the source (any URL
urllib opens, including ``file://``: the tests download offline that way).

The default folder is $LAECIPS_SAM_DIR, else ~/.cache/laecips/sam. The file is written to
``<name>.part`` and renamed when complete and verified, so a partial file is never mistaken
for a checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
import sys
import urllib.parse
import urllib.request

from tqdm import tqdm

BASE = 'https://dl.fbaipublicfiles.com/segment_anything/'
CHECKPOINTS = {
    'vit_h': BASE + 'sam_vit_h_4b8939.pth',  # 2.4 GiB
    'vit_l': BASE + 'sam_vit_l_0b3195.pth',  # 1.2 GiB
    'vit_b': BASE + 'sam_vit_b_01ec64.pth',  # 358 MiB
}
CHUNK = 1 << 20


def default_dir() -> Path:
    """Return $LAECIPS_SAM_DIR or ~/.cache/laecips/sam."""
    return Path(os.environ.get('LAECIPS_SAM_DIR') or Path.home() / '.cache' / 'laecips' / 'sam')


def sha256_file(path: str | os.PathLike) -> str:
    """Return the hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str | os.PathLike, sha256: str | None = None,
             progress: bool = True, timeout: float = 60.0) -> str:
    """
    Fetch ``url`` to ``dest`` and return its sha256; raise ValueError on a hash mismatch.

    The file appears at ``dest`` only when complete (and verified when ``sha256`` is given).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + '.part')
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(part, 'wb') as out:
            total = int(r.headers.get('Content-Length') or 0) or None
            with tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024,
                      desc=dest.name, disable=not progress, file=sys.stderr) as bar:
                for block in iter(lambda: r.read(CHUNK), b''):
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
        seen = h.hexdigest()
        if sha256 and seen.lower() != sha256.lower():
            raise ValueError(f'sha256 mismatch for {url}: expected {sha256.lower()}, got {seen}')
        os.replace(part, dest)
        return seen
    finally:
        part.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog='sam_download', description=__doc__.split('\n\n')[0])
    ap.add_argument('--model', choices=sorted(CHECKPOINTS), default='vit_h')
    ap.add_argument('--dir', type=Path, default=None, help='target folder (default: '
                    '$LAECIPS_SAM_DIR or ~/.cache/laecips/sam)')
    ap.add_argument('--url', default=None, help='download from here instead (file:// works)')
    ap.add_argument('--sha256', default=None, help='expected sha256; verify the file')
    ap.add_argument('--force', action='store_true', help='download even if the file exists')
    ap.add_argument('--quiet', action='store_true', help='no progress bar')
    args = ap.parse_args(argv)

    url = args.url or CHECKPOINTS[args.model]
    name = Path(urllib.parse.urlparse(url).path).name or f'sam_{args.model}.pth'
    dest = (args.dir or default_dir()) / name
    try:
        if dest.is_file() and not args.force:
            seen = sha256_file(dest)
            print(f'already present: {dest}')
            if args.sha256 and seen != args.sha256.lower():
                print(f'sha256 {seen}  {dest}\nerror: expected {args.sha256.lower()} '
                      '(use --force to download again)', file=sys.stderr)
                return 1
        else:
            print(f'downloading {url} -> {dest}')
            seen = download(url, dest, args.sha256, progress=not args.quiet)
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    except OSError as e:  # network or disk
        print(f'error: could not download {url}: {e}', file=sys.stderr)
        return 2
    print(f'sha256 {seen}  {dest}')
    print('verified against --sha256' if args.sha256 else
          'not verified (no --sha256 given; no official hash is published)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
