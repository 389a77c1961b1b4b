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
import os
from pathlib import Path
import struct

from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
import torch
from torch import nn

from laecips_edge.classes import CAMVID, ClassMap

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
        try:
            m = WeightsMeta(
                arch=d['arch'], arch_cfg=json.loads(d.get('arch_cfg', '{}')),
                class_map=ClassMap.from_json(d['class_map']) if 'class_map' in d else CAMVID,
                input_size=tuple(int(v) for v in json.loads(d['input_size'])),
                mean=tuple(float(v) for v in json.loads(d['mean'])),
                std=tuple(float(v) for v in json.loads(d['std'])),
                version=int(d.get('version', 0)), training_data=d.get('training_data', ''),
                extra={k: v for k, v in d.items() if k not in known})
        except (KeyError, ValueError, TypeError) as e:
            raise WeightsError(f'bad weights metadata: {e!r}') from e
        if len(m.input_size) != 2 or len(m.mean) != 3 or len(m.std) != 3:
            raise WeightsError('bad weights metadata: input_size needs 2 values, mean/std 3')
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


def read_header(data: bytes) -> dict:
    """Return the safetensors JSON header, or raise WeightsError if ``data`` is not one."""
    if len(data) < 10:
        raise WeightsError(f'not a safetensors file: only {len(data)} bytes')
    if data[:2] == b'PK' or data[:1] == b'\x80':
        raise WeightsError('not a safetensors file: looks like a torch.save/pickle file '
                           '(refused, never unpickled)')
    (n,) = struct.unpack('<Q', data[:8])
    if n > min(_MAX_HEADER, len(data) - 8) or data[8:9] != b'{':
        raise WeightsError('not a safetensors file: bad header length or header not JSON')
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f'not a safetensors file: header is not JSON ({e})') from e
    if not isinstance(header, dict):
        raise WeightsError('not a safetensors file: header is not a JSON object')
    return header


def from_bytes(data: bytes, expected_sha256: str | None = None
               ) -> tuple[dict[str, torch.Tensor], WeightsMeta | None]:
    """
    Parse safetensors bytes into (state_dict, metadata or None).

    ``expected_sha256`` (lowercase hex), when given, must match the bytes.
    """
    data = bytes(data)
    if expected_sha256 is not None:
        seen = sha256(data)
        if seen != expected_sha256.strip().lower():
            raise WeightsError(f'sha256 mismatch: got {seen}, expected {expected_sha256}')
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
