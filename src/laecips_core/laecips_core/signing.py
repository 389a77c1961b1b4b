# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
HMAC-SHA256 signatures of ``UpdateWeights`` requests, with a shared key read from a file.

The signature covers everything a request changes on the edge: the robot it is meant for,
the version, the weight format and bytes (through their SHA-256), a delta's base (version
and state digest), the whole policy (rule and every key/value) and the policy
version. The signed message is the ASCII bytes of::

    json.dumps({'scheme': 'laecips-update/2', 'robot_id': <str>, 'version': <int>,
                'format': <str>, 'weights_sha256': <lowercase hex SHA-256 of the weight
                bytes, '' when there are none>, 'base_version': <int>,
                'base_sha256': <str>,
                'policy_version': <int>,
                'policy': {'rule': <str>, 'params': [[<key>, <value>], ...]}},
               sort_keys=True, separators=(',', ':'), ensure_ascii=True)

where ``params`` lists the policy's (key, value) pairs sorted by key (pairs with equal keys
keep their order) and each value is the 16 lowercase hex digits of its IEEE 754 binary64
big-endian bytes, so every implementation formats floats alike and exactly. The signature
is the lowercase hex HMAC-SHA256 of the message under the key. ``weights_sha256`` is
computed from the weight bytes themselves, never taken from the request's ``sha256`` field
(which is not signed: the signed bytes and base fix what a delta rebuilds, and the edge
checks the rebuilt state's digest against it).

Binding ``robot_id`` keeps a push signed for one robot from being replayed to another
that shares the key; replaying an old weight push fails the edge's version check, an old
policy push its policy-version check (scheme 2; scheme 1 signed no policy version, so a
captured policy-only push could be replayed).

Keys live in files (``load_key``): a key given as a parameter or on a command line ends up
in params files, ``ps`` output and launch logs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
import struct
from typing import Iterable

SCHEME = 'laecips-update/2'
# A key file larger than this is a wrong path (a weights file, a log), not a key.
MAX_KEY_BYTES = 4096


class SigningError(ValueError):
    """A key file that cannot be used, or a request whose signature does not verify."""


def load_key(path: str | os.PathLike) -> bytes:
    """
    Read a shared key file and return its bytes, trailing CR/LF dropped.

    Dropping the line end lets ``echo secret > key`` and an editor's file both work; both
    sides load keys this way, so they agree. Raise SigningError for a missing, unreadable,
    empty or oversized file.
    """
    p = Path(path)
    try:
        if p.stat().st_size > MAX_KEY_BYTES:
            raise SigningError(f'key file {p} has {p.stat().st_size} bytes, more than '
                               f'{MAX_KEY_BYTES}: not a key')
        key = p.read_bytes().rstrip(b'\r\n')
    except OSError as e:
        raise SigningError(f'cannot read key file {p}: {e.strerror or e}') from e
    if not key:
        raise SigningError(f'key file {p} is empty')
    return key


def _hex_float(value: float) -> str:
    return struct.pack('>d', float(value)).hex()


def message(robot_id: str, version: int, fmt: str, weights_sha256: str, rule: str,
            keys: Iterable[str], values: Iterable[float], *, base_version: int = 0,
            base_sha256: str = '', policy_version: int = 0) -> bytes:
    """Return the canonical signed bytes (see the module docstring)."""
    keys, values = list(keys), list(values)
    if len(keys) != len(values):  # a pair would be dropped by zip: sign nothing ambiguous
        raise SigningError(f'{len(keys)} policy keys but {len(values)} values')
    pairs = sorted(((str(k), _hex_float(v)) for k, v in zip(keys, values)),
                   key=lambda kv: kv[0])
    doc = {'scheme': SCHEME, 'robot_id': str(robot_id), 'version': int(version),
           'format': str(fmt), 'weights_sha256': str(weights_sha256),
           'base_version': int(base_version), 'base_sha256': str(base_sha256),
           'policy_version': int(policy_version),
           'policy': {'rule': str(rule), 'params': [list(kv) for kv in pairs]}}
    return json.dumps(doc, sort_keys=True, separators=(',', ':'),
                      ensure_ascii=True).encode('ascii')


def sign(key: bytes, robot_id: str, version: int, fmt: str, weights_sha256: str, rule: str,
         keys: Iterable[str], values: Iterable[float], **extra) -> str:
    """Return the lowercase hex HMAC-SHA256 of :func:`message` (``extra``: its keywords)."""
    if not key:
        raise SigningError('empty signing key')
    msg = message(robot_id, version, fmt, weights_sha256, rule, keys, values, **extra)
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def verify(key: bytes, signature: str, robot_id: str, version: int, fmt: str,
           weights_sha256: str, rule: str, keys: Iterable[str],
           values: Iterable[float], **extra) -> bool:
    """Return True when ``signature`` is the signature of these fields (constant time)."""
    try:
        want = sign(key, robot_id, version, fmt, weights_sha256, rule, keys, values, **extra)
    except SigningError:
        return False
    # Compare as ASCII bytes: compare_digest refuses non-ASCII str, and a signature field
    # comes from the network.
    got = str(signature).strip().lower().encode('ascii', 'replace')
    return hmac.compare_digest(want.encode('ascii'), got)


def weights_digest(data: bytes) -> str:
    """Return the SHA-256 that goes into the message: lowercase hex, '' for no bytes."""
    return hashlib.sha256(data).hexdigest() if len(data) else ''


def _request_fields(req, robot_id: str) -> tuple[tuple, dict]:
    # Duck-typed on laecips_msgs/srv/UpdateWeights.Request, so this module needs no ROS.
    data = req.weights
    data = data.tobytes() if hasattr(data, 'tobytes') else bytes(data)
    extra = {'base_version': int(getattr(req, 'base_version', 0)),
             'base_sha256': str(getattr(req, 'base_sha256', '')),
             'policy_version': int(getattr(req, 'policy_version', 0))}
    return (robot_id, int(req.version), str(req.format), weights_digest(data),
            str(req.policy.rule), list(req.policy.keys), list(req.policy.values)), extra


def sign_request(key: bytes, req, robot_id: str) -> str:
    """Return the signature of an UpdateWeights request meant for ``robot_id``."""
    args, extra = _request_fields(req, robot_id)
    return sign(key, *args, **extra)


def verify_request(key: bytes, req, robot_id: str) -> None:
    """Raise SigningError unless ``req.signature`` signs ``req`` for ``robot_id``."""
    if not str(req.signature).strip():
        raise SigningError('unsigned request refused: this edge requires an HMAC signature')
    args, extra = _request_fields(req, robot_id)
    if not verify(key, req.signature, *args, **extra):
        raise SigningError("bad signature: not signed with this edge's key, or the robot, "
                           'version, weights, delta base or policy (or its version) '
                           'changed after signing')


LABEL_SCHEME = 'laecips-label/2'  # /2: the purpose (inference or training) is signed


def label_message(robot_id: str, seq: int, stamp_ns: int, label_sha256: str,
                  confidence_sha256: str, confidence_mean: float, teacher_state: int,
                  teacher_health: float, labeller: str, purpose: int = 0) -> bytes:
    """
    Return the signed bytes of a CloudLabel: every field the edge acts on.

    ASCII JSON (sorted keys, ``,``/``:`` separators) of the scheme, robot id, seq, camera
    stamp in nanoseconds, the SHA-256 of the label and confidence PNG bytes, the confidence
    mean and teacher health as IEEE 754 hex (as policy values), the teacher state, the
    labeller's name and the purpose (a training-lane label flipped to inference would refine
    a frame long past its deadline; the other way, a real answer would be ignored). Not
    signed: the header's frame_id and the images' formats, which the edge does not act on (its
    refined mask takes the camera frame's own header; a label decodes as PNG or not at all),
    and the bridge's queue and processing times.
    """
    doc = {'scheme': LABEL_SCHEME, 'robot_id': str(robot_id), 'seq': int(seq),
           'stamp_ns': int(stamp_ns), 'label_sha256': label_sha256,
           'confidence_sha256': confidence_sha256,
           'confidence_mean': _hex_float(confidence_mean), 'teacher_state': int(teacher_state),
           'teacher_health': _hex_float(teacher_health), 'labeller': str(labeller),
           'purpose': int(purpose)}
    return json.dumps(doc, sort_keys=True, separators=(',', ':'),
                      ensure_ascii=True).encode('ascii')


def _f32(value: float) -> float:
    # The float32 fields as they arrive: the sender holds float64 until serialisation.
    return struct.unpack('<f', struct.pack('<f', float(value)))[0]


def _label_fields(msg) -> tuple:
    st = msg.header.stamp
    return (msg.robot_id, msg.seq, st.sec * 10**9 + st.nanosec,
            weights_digest(bytes(msg.label.data)), weights_digest(bytes(msg.confidence.data)),
            _f32(msg.confidence_mean), msg.teacher_state, _f32(msg.teacher_health),
            msg.labeller, msg.purpose)


def sign_label(key: bytes, msg) -> str:
    """Return the lowercase hex HMAC-SHA256 of a CloudLabel (see :func:`label_message`)."""
    return hmac.new(key, label_message(*_label_fields(msg)), hashlib.sha256).hexdigest()


def verify_label(key: bytes, msg) -> None:
    """Raise ValueError unless ``msg.signature`` signs this CloudLabel under ``key``."""
    if not msg.signature:
        raise ValueError('unsigned label (this edge requires signed labels: hmac_key_file)')
    if not hmac.compare_digest(sign_label(key, msg), str(msg.signature)):
        raise ValueError('bad label signature (wrong key, or the label was altered)')
