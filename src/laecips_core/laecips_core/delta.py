# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Compact weight pushes: a compressed, reduced-precision delta over a base state both sides hold.

A delta (format ``laecips-delta/1``) is the zlib-compressed bytes of a safetensors file whose
tensors are, for every tensor that changed between ``base`` and ``new``:

- floating point, encoding ``delta_fp16``: ``name`` = (new - base) as F16;
- floating point, encoding ``delta_int8``: ``name`` = round((new - base) / s) as I8 and
  ``name + SCALE_SUFFIX`` = s as a one-element F32 tensor (per-tensor scale max|d| / 127);
- floating point, encoding ``delta_int4``: as ``delta_int8`` with 7 levels either side of 0
  (s = max|d| / 7, still stored as I8: zlib packs the small alphabet);
- floating point, encoding ``delta_sparse``: as ``delta_int8``, with every change of a
  weight matrix or kernel (2 or more dimensions) smaller than the tensor's largest ``keep``
  share (``SPARSE_KEEP``) sent as 0 (zlib then compresses the zeros away; the trainer's
  next delta carries what was left out);
- any tensor whose change does not fit the encoding (F16 overflow) or is not floating point
  (``num_batches_tracked``): ``name + FULL_SUFFIX`` = the new value as it is.

Tensors absent from the delta keep their base value. The safetensors metadata names the
format and encoding. :func:`apply` rebuilds the full state in fp32 exactly as the trainer's
own :func:`apply` of the same bytes does, so both sides agree on :func:`state_sha256` of the
result; the trainer keeps that rebuilt state (not its own exact one) as the next base, so
the rounding of one delta is carried into the next instead of accumulating on the robot.

The base is the state the trainer sent (its digest covers exactly those tensors): an edge
that adapts its normalisation statistics locally keeps the received state aside as the base.

Everything the sender controls is bounded before it is used: the compressed size by the
caller, the decompressed size by ``max_bytes`` (a zlib bomb stops there), the safetensors
header by ``weights.read_header``, names, shapes and dtypes against the base, and every
rebuilt floating-point tensor must be finite. A refusal raises ``DeltaError``.
"""

from __future__ import annotations

import hashlib
import zlib

from safetensors.torch import save as st_save
import torch

from laecips_core import weights

FORMAT = 'laecips-delta/1'
ENCODINGS = ('delta_fp16', 'delta_int8', 'delta_int4', 'delta_sparse')
# Quantisation levels either side of 0 of the integer encodings (all stored as I8).
LEVELS = {'delta_int8': 127, 'delta_int4': 7, 'delta_sparse': 127}
# Share of each tensor's changes (the largest) a delta_sparse push carries.
SPARSE_KEEP = 0.05
SCALE_SUFFIX = '::scale'
FULL_SUFFIX = '::full'
# zlib level: 9 costs ~2x level 6's time on a 3 MB state and saves a few per cent.
LEVEL = 9
_F16_MAX = 65504.0


class DeltaError(weights.WeightsError):
    """A delta that cannot be applied to this base; the message says why."""


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """
    Return the digest of a state dict: SHA-256 over its tensors sorted by name.

    Each tensor contributes its name, dtype, shape and raw little-endian bytes (CPU,
    contiguous), each length-prefixed, so no two different states share the byte stream.
    Metadata is not covered: a delta never changes it.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to('cpu').contiguous()
        for part in (name.encode(), str(t.dtype).encode(), repr(tuple(t.shape)).encode()):
            h.update(len(part).to_bytes(8, 'little'))
            h.update(part)
        raw = t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b''
        h.update(len(raw).to_bytes(8, 'little'))
        h.update(raw)
    return h.hexdigest()


def state_bytes(state: dict[str, torch.Tensor]) -> int:
    """Return the raw tensor bytes of a state dict (what a full push carries, header aside)."""
    return sum(t.numel() * t.element_size() for t in state.values())


def encode(new: dict[str, torch.Tensor], base: dict[str, torch.Tensor],
           encoding: str = 'delta_fp16', keep: float = SPARSE_KEEP) -> bytes:
    """Return the compressed delta taking ``base`` to (approximately) ``new``."""
    if encoding not in ENCODINGS:
        raise ValueError(f'unknown delta encoding {encoding!r}; choose from {ENCODINGS}')
    if set(new) != set(base):
        raise DeltaError('new and base states hold different tensors')
    out: dict[str, torch.Tensor] = {}
    for name in sorted(new):
        a, b = new[name].detach().cpu(), base[name].detach().cpu()
        if a.shape != b.shape or a.dtype != b.dtype:
            raise DeltaError(f'{name}: {tuple(a.shape)} {a.dtype} vs base '
                             f'{tuple(b.shape)} {b.dtype}')
        if torch.equal(a, b):
            continue
        if not a.is_floating_point():
            out[name + FULL_SUFFIX] = a.contiguous()
            continue
        d = a.float() - b.float()
        peak = float(d.abs().max())
        if encoding == 'delta_fp16':
            if peak >= _F16_MAX:
                out[name + FULL_SUFFIX] = a.contiguous()
            else:
                out[name] = d.half().contiguous()
        else:
            # Weight matrices and kernels only: biases and normalisation parameters and
            # statistics are small, and half-applied statistics ruin a model (measured:
            # sparsifying them too took the edge below the factory model).
            if encoding == 'delta_sparse' and d.dim() >= 2 and d.numel() > 1 / keep:
                k = max(1, int(d.numel() * keep))
                floor = d.abs().flatten().kthvalue(d.numel() - k + 1).values
                d = torch.where(d.abs() >= floor, d, torch.zeros_like(d))
            lv = LEVELS[encoding]
            scale = peak / lv
            out[name] = torch.round(d / scale).clamp(-lv, lv).to(torch.int8).contiguous()
            out[name + SCALE_SUFFIX] = torch.tensor([scale], dtype=torch.float32)
    blob = st_save(out, metadata={'laecips': FORMAT, 'encoding': encoding})
    return zlib.compress(blob, LEVEL)


def _inflate(data: bytes, max_bytes: int) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(bytes(data), max_bytes + 1)
    except zlib.error as e:
        raise DeltaError(f'corrupt delta: not zlib data ({e})') from e
    if len(out) > max_bytes or d.unconsumed_tail:
        raise DeltaError(f'delta inflates past {max_bytes} bytes: refused (max for this base)')
    if not d.eof:
        raise DeltaError('corrupt delta: truncated zlib stream')
    return out


def max_inflated(base: dict[str, torch.Tensor]) -> int:
    """Largest decompressed delta accepted for ``base``: every tensor sent whole, plus slack."""
    return state_bytes(base) + 4 * len(base) + (1 << 20)


def apply(base: dict[str, torch.Tensor], data: bytes) -> dict[str, torch.Tensor]:
    """Rebuild the full state from ``base`` and a delta; raise DeltaError if it is unusable."""
    raw = _inflate(data, max_inflated(base))
    try:
        header = weights.read_header(raw)
        md = header.get('__metadata__') or {}
        if md.get('laecips') != FORMAT or md.get('encoding') not in ENCODINGS:
            raise DeltaError(f'not a {FORMAT} delta: metadata {str(md)[:120]}')
        sent, _ = weights.from_bytes(raw)
    except DeltaError:
        raise
    except weights.WeightsError as e:
        raise DeltaError(f'corrupt delta: {e}') from e
    out = dict(base)
    for key, t in sent.items():
        if key.endswith(SCALE_SUFFIX):
            if key[:-len(SCALE_SUFFIX)] not in sent:
                raise DeltaError(f'scale {key[:80]!r} without its tensor')
            continue
        full = key.endswith(FULL_SUFFIX)
        name = key[:-len(FULL_SUFFIX)] if full else key
        if name not in base:
            raise DeltaError(f'delta names tensor {name[:80]!r}, which the base lacks')
        b = base[name]
        if tuple(t.shape) != tuple(b.shape):
            raise DeltaError(f'{name}: delta shape {tuple(t.shape)}, base {tuple(b.shape)}')
        if full:
            if t.dtype != b.dtype:
                raise DeltaError(f'{name}: sent whole as {t.dtype}, base is {b.dtype}')
            new = t.clone()
        elif not b.is_floating_point():
            raise DeltaError(f'{name}: a difference for a non-float tensor')
        elif t.dtype == torch.float16:
            new = (b.float() + t.float()).to(b.dtype)
        elif t.dtype == torch.int8:
            s = sent.get(name + SCALE_SUFFIX)
            if s is None or s.dtype != torch.float32 or s.numel() != 1:
                raise DeltaError(f'{name}: int8 difference without a one-element F32 scale')
            new = (b.float() + t.float() * s.reshape(())).to(b.dtype)
        else:
            raise DeltaError(f'{name}: difference of dtype {t.dtype} (F16 or I8 only)')
        if new.is_floating_point() and not bool(torch.isfinite(new).all()):
            raise DeltaError(f'{name}: non-finite values after applying the delta')
        out[name] = new
    return out
