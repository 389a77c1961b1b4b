# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Edge weights files: safetensors tensors plus metadata in the safetensors header.

Nothing here ever unpickles: bytes that are not a well-formed safetensors file are rejected
before any tensor is read. Metadata keys (all strings, JSON where structured):
``laecips`` (format tag), ``arch``, ``arch_cfg`` (JSON kwargs of ``models.create``),
``num_classes``, ``class_map`` (``ClassMap.to_json``), ``input_size`` (JSON ``[H, W]``, the
model's input), ``mean`` / ``std`` (JSON RGB lists on the 0..1 scale), ``version``,
``training_data`` (free text); optional ``policy`` (JSON ``Policy.to_dict``) and anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import hashlib
import json
import math
import os
from pathlib import Path
import struct

from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
import torch
from torch import nn

from laecips_core.classes import CAMVID, ClassMap

FORMAT_TAG = 'edge-weights/1'
# A safetensors header is JSON; anything larger than this is not one of ours.
_MAX_HEADER = 16 << 20


class WeightsError(ValueError):
    """A weights file or update was rejected; the message says why."""


@dataclass
class WeightsMeta:
    """What a model needs besides its tensors: architecture, classes, input contract."""

    arch: str = 'fastscnn'
    arch_cfg: dict = field(default_factory=dict)
    class_map: ClassMap = CAMVID
    input_size: tuple[int, int] = (180, 240)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    version: int = 0
    training_data: str = ''
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.class_map.num_classes

    def to_dict(self) -> dict[str, str]:
        """Return the safetensors metadata (str -> str)."""
        d = dict(self.extra)
        d.update(laecips=FORMAT_TAG, arch=self.arch, arch_cfg=json.dumps(self.arch_cfg),
                 num_classes=str(self.num_classes), class_map=self.class_map.to_json(),
                 input_size=json.dumps(list(self.input_size)), mean=json.dumps(list(self.mean)),
                 std=json.dumps(list(self.std)), version=str(int(self.version)),
                 training_data=self.training_data)
        return d

    @staticmethod
    def from_dict(d: dict[str, str]) -> 'WeightsMeta':
        """Parse metadata written by :meth:`to_dict`; raise WeightsError when malformed."""
        known = {'laecips', 'arch', 'arch_cfg', 'num_classes', 'class_map', 'input_size',
                 'mean', 'std', 'version', 'training_data'}
        if len(d.get('class_map', '')) > 65536:  # ClassMap.from_json costs per class name
            raise WeightsError('bad weights metadata: class_map is over 64 KiB')
        try:
            m = WeightsMeta(
                arch=d['arch'], arch_cfg=json.loads(d.get('arch_cfg', '{}')),
                class_map=ClassMap.from_json(d['class_map']) if 'class_map' in d else CAMVID,
                input_size=tuple(int(v) for v in json.loads(d['input_size'])),
                mean=tuple(float(v) for v in json.loads(d['mean'])),
                std=tuple(float(v) for v in json.loads(d['std'])),
                version=int(d.get('version', 0)), training_data=d.get('training_data', ''),
                extra={k: v for k, v in d.items() if k not in known})
        except (KeyError, ValueError, TypeError, AttributeError, OverflowError,
                RecursionError) as e:
            raise WeightsError(f'bad weights metadata: {e!r}'[:300]) from e
        if len(m.input_size) != 2 or len(m.mean) != 3 or len(m.std) != 3:
            raise WeightsError('bad weights metadata: input_size needs 2 values, mean/std 3')
        # Python's json reads NaN and Infinity: a NaN mean or a zero std would turn every
        # input into NaN, and the model would still "work".
        if not (all(math.isfinite(v) for v in m.mean + m.std) and min(m.std) > 0
                and min(m.input_size) > 0 and isinstance(m.arch_cfg, dict)):
            raise WeightsError(f'bad weights metadata: input_size {m.input_size}, mean '
                               f'{m.mean}, std {m.std}, arch_cfg {str(m.arch_cfg)[:64]}')
        return m


def sha256(data: bytes) -> str:
    """Return the lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def to_bytes(state_dict: dict[str, torch.Tensor], meta: WeightsMeta | None = None) -> bytes:
    """Serialise tensors (made contiguous, on CPU) and metadata to safetensors bytes."""
    tensors = {k: v.detach().to('cpu').contiguous() for k, v in state_dict.items()}
    return _st_save(tensors, metadata=meta.to_dict() if meta else None)


def save(path: str | os.PathLike, state_dict: dict[str, torch.Tensor],
         meta: WeightsMeta | None = None) -> str:
    """Write a weights file atomically (temp file + rename); return its sha256."""
    data = to_bytes(state_dict, meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return sha256(data)


# Leading bytes of payloads that are refused by name (a clearer reason than "bad header").
# Only consulted once the bytes failed to parse as safetensors: a valid header length can
# start with any of these bytes (safetensors pads it to a multiple of 8, so 1 in 32 valid
# files starts with 0x80, the pickle opcode).
_KNOWN_MAGIC = (
    (b'\x80', 'a pickle (torch.save or pickle.dump) payload'),
    (b'PK\x03\x04', 'a zip archive (torch.save: a pickle inside) payload'),
    (b'\x1f\x8b', 'a gzip-compressed payload'),
    (b'BZh', 'a bzip2-compressed payload'),
    (b'\xfd7zXZ', 'an xz-compressed payload'),
    (b'\x28\xb5\x2f\xfd', 'a zstd-compressed payload'),
    (b'\x78\x01', 'a zlib/deflate-compressed payload'),
    (b'\x78\x5e', 'a zlib/deflate-compressed payload'),
    (b'\x78\x9c', 'a zlib/deflate-compressed payload'),
    (b'\x78\xda', 'a zlib/deflate-compressed payload'),
)
# Element sizes of the safetensors dtypes the edge's torch models can hold.
DTYPE_BYTES = {'BOOL': 1, 'U8': 1, 'I8': 1, 'I16': 2, 'F16': 2, 'BF16': 2, 'I32': 4,
               'F32': 4, 'I64': 8, 'F64': 8}
# More tensors than any edge model has; a header listing more is not one of ours.
_MAX_TENSORS = 10_000


def _not_safetensors(data: bytes, why: str) -> WeightsError:
    for magic, what in _KNOWN_MAGIC:
        if data.startswith(magic):
            return WeightsError(f'not a safetensors file: looks like {what} (refused, never '
                                'unpickled or decompressed)')
    return WeightsError(f'not a safetensors file: {why}')


def read_header(data: bytes) -> dict:
    """
    Return the safetensors JSON header, or raise WeightsError if ``data`` is not one.

    Every tensor entry is checked against the bytes actually present (dtype, shape, offsets
    inside the data, size = elements x dtype size), so a header claiming huge tensors is
    refused before anything is allocated or read.
    """
    if len(data) < 10:
        raise WeightsError(f'not a safetensors file: only {len(data)} bytes')
    (n,) = struct.unpack('<Q', data[:8])
    if n > min(_MAX_HEADER, len(data) - 8):
        raise _not_safetensors(data, f'header length {n} but {len(data) - 8} bytes follow')
    if data[8:9] != b'{':
        raise _not_safetensors(data, 'header is not a JSON object')
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise WeightsError(f'not a safetensors file: header is not JSON ({e})') from e
    if not isinstance(header, dict):
        raise WeightsError('not a safetensors file: header is not a JSON object')
    _check_entries(header, len(data) - 8 - n)
    return header


def _check_entries(header: dict, body: int) -> None:
    md = header.get('__metadata__')
    if md is not None and not (isinstance(md, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in md.items())):
        raise WeightsError('bad safetensors header: __metadata__ must map strings to strings')
    entries = {k: v for k, v in header.items() if k != '__metadata__'}
    if len(entries) > _MAX_TENSORS:
        raise WeightsError(f'bad safetensors header: {len(entries)} tensors (limit '
                           f'{_MAX_TENSORS})')
    total = 0
    for name, e in entries.items():
        if not isinstance(e, dict):
            raise WeightsError(f'bad safetensors header: entry {name[:64]!r} is not an object')
        dtype, shape, offs = e.get('dtype'), e.get('shape'), e.get('data_offsets')
        if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
            raise WeightsError(f'bad safetensors header: tensor {name[:64]!r} has dtype '
                               f'{str(dtype)[:16]!r}; allowed: {", ".join(DTYPE_BYTES)}')
        if not (isinstance(shape, list) and len(shape) <= 8 and all(
                type(d) is int and d >= 0 for d in shape)):
            raise WeightsError(f'bad safetensors header: tensor {name[:64]!r} has shape '
                               f'{str(shape)[:64]}')
        if not (isinstance(offs, list) and len(offs) == 2 and all(
                type(o) is int for o in offs) and 0 <= offs[0] <= offs[1] <= body):
            raise WeightsError(f'bad safetensors header: tensor {name[:64]!r} has offsets '
                               f'{str(offs)[:64]} outside the {body} data bytes')
        size = DTYPE_BYTES[dtype]
        for d in shape:
            size *= d
        if size != offs[1] - offs[0]:
            raise WeightsError(f'bad safetensors header: tensor {name[:64]!r} claims '
                               f'{size} bytes ({dtype} {shape}) in {offs[1] - offs[0]}')
        total += size
    if total > body:
        raise WeightsError(f'bad safetensors header: tensors claim {total} bytes, the file '
                           f'has {body}')


def from_bytes(data: bytes, expected_sha256: str | None = None
               ) -> tuple[dict[str, torch.Tensor], WeightsMeta | None]:
    """
    Parse safetensors bytes into (state_dict, metadata or None).

    ``expected_sha256`` (lowercase hex), when given, must match the bytes. Anything
    malformed raises WeightsError, whatever the bytes are.
    """
    data = bytes(data)
    if expected_sha256 is not None:
        seen = sha256(data)
        if seen != str(expected_sha256).strip().lower():
            raise WeightsError(f'sha256 mismatch: got {seen}, expected '
                               f'{str(expected_sha256)[:80]}')
    header = read_header(data)
    try:
        tensors = _st_load(data)
    except Exception as e:  # safetensors raises its own SafetensorError on bad offsets etc.
        raise WeightsError(f'corrupt safetensors file: {e}') from e
    md = header.get('__metadata__') or {}
    meta = WeightsMeta.from_dict(md) if 'arch' in md else None
    return tensors, meta


def load(path: str | os.PathLike, expected_sha256: str | None = None
         ) -> tuple[dict[str, torch.Tensor], WeightsMeta | None]:
    """Read a weights file; see :func:`from_bytes`."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise WeightsError(f'cannot read weights {path}: {e.strerror}') from e
    return from_bytes(data, expected_sha256)


def check(state_dict: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Raise WeightsError unless every tensor matches ``model`` by name, shape and dtype."""
    want = model.state_dict()
    missing = sorted(set(want) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(want))
    problems = []
    if missing:
        problems.append(f'missing tensors {_few(missing)}')
    if unexpected:
        problems.append(f'unexpected tensors {_few(unexpected)}')
    for k in sorted(set(want) & set(state_dict)):
        a, b = state_dict[k], want[k]
        if not isinstance(a, torch.Tensor):
            problems.append(f'{k} is not a tensor')
        elif tuple(a.shape) != tuple(b.shape):
            problems.append(f'{k} has shape {tuple(a.shape)}, expected {tuple(b.shape)}')
        elif a.dtype != b.dtype:
            problems.append(f'{k} has dtype {a.dtype}, expected {b.dtype}')
        elif a.is_floating_point() and not bool(torch.isfinite(a).all()):
            problems.append(f'{k} has non-finite values')
    if problems:
        raise WeightsError('weights do not match the architecture: ' + '; '.join(problems[:5])
                           + (f' (+{len(problems) - 5} more)' if len(problems) > 5 else ''))


def check_compatible(new: WeightsMeta, active: WeightsMeta) -> None:
    """
    Raise WeightsError unless an update's metadata keeps the active model's contract.

    A weight push changes the weights, not the model: architecture, its configuration,
    the class map and the input size must stay. Besides keeping labels and masks
    meaningful, this stops a pushed header from making the edge build a model with a huge
    input (an allocation bomb) or passing arbitrary ``arch_cfg`` keyword arguments.
    """
    diffs = [f'{name} {getattr(new, name)!r} (active {getattr(active, name)!r})'[:160]
             for name in ('arch', 'arch_cfg', 'class_map', 'input_size')
             if getattr(new, name) != getattr(active, name)]
    if diffs:
        raise WeightsError('update metadata changes the model contract: ' + '; '.join(diffs))


def _few(names: list[str], n: int = 3) -> str:
    return ', '.join(names[:n]) + (f' (+{len(names) - n} more)' if len(names) > n else '')


STATE_FILE = 'active.safetensors'


def save_state(state_dir: str | os.PathLike, state_dict: dict[str, torch.Tensor],
               meta: WeightsMeta, policy: dict | None = None) -> Path:
    """
    Persist the active weights, version and policy as one file, replaced atomically.

    The policy goes into the metadata (key ``policy``), so weights, version and policy can
    never disagree after a crash; :func:`load_state` reads it back on restart.
    """
    meta = WeightsMeta(**{**meta.__dict__, 'extra': dict(meta.extra)})
    if policy is not None:
        meta.extra['policy'] = json.dumps(policy, sort_keys=True)
    path = Path(state_dir) / STATE_FILE
    save(path, state_dict, meta)
    return path


def load_state(state_dir: str | os.PathLike
               ) -> tuple[dict[str, torch.Tensor], WeightsMeta, dict | None] | None:
    """Return (state_dict, meta, policy dict or None) saved by :func:`save_state`, or None."""
    path = Path(state_dir) / STATE_FILE
    if not path.is_file():
        return None
    sd, meta = load(path)
    if meta is None:
        raise WeightsError(f'{path} has no metadata')
    policy = meta.extra.get('policy')
    try:
        return sd, meta, json.loads(policy) if policy else None
    except json.JSONDecodeError as e:
        raise WeightsError(f'{path}: bad policy metadata: {e}') from e
