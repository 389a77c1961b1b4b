# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""Signed updates: the canonical message, sign/verify, key files, requests (no ROS needed)."""

import hashlib
import hmac
import json
import os
from types import SimpleNamespace

import pytest

from laecips_core import signing
from laecips_core.signing import SigningError

KEY = b'0123456789abcdef0123456789abcdef'
FIELDS = dict(robot_id='robot1', version=7, fmt='safetensors', weights_sha256='ab' * 32,
              rule='learned', keys=['w0', 'threshold', 'b'], values=[0.5, 0.25, -1.0])


def _req(data=b'weights', rule='learned', keys=('w0', 'b'), values=(0.5, -1.0), version=7):
    # Duck-typed like laecips_msgs/srv/UpdateWeights.Request (what signing reads).
    return SimpleNamespace(version=version, format='safetensors' if data else '',
                           weights=data, sha256='', signature='',
                           policy=SimpleNamespace(rule=rule, keys=list(keys),
                                                  values=list(values)))


def test_message_is_the_documented_canonical_json():
    msg = signing.message(**FIELDS)
    # Rebuilt independently from the documented format (module docstring and the .srv).
    want = json.dumps({'scheme': 'laecips-update/2', 'robot_id': 'robot1', 'version': 7,
                       'format': 'safetensors', 'weights_sha256': 'ab' * 32,
                       'base_version': 0, 'base_sha256': '', 'policy_version': 0,
                       'policy': {'rule': 'learned', 'params': [
                           ['b', 'bff0000000000000'], ['threshold', '3fd0000000000000'],
                           ['w0', '3fe0000000000000']]}},
                      sort_keys=True, separators=(',', ':'), ensure_ascii=True).encode()
    assert msg == want
    sig = signing.sign(KEY, **FIELDS)
    assert sig == hmac.new(KEY, want, hashlib.sha256).hexdigest()
    # Pair order in the request does not matter; the pairing itself does.
    assert signing.message(**dict(FIELDS, keys=['b', 'w0', 'threshold'],
                                  values=[-1.0, 0.5, 0.25])) == msg
    assert signing.message(**dict(FIELDS, keys=['b', 'w0', 'threshold'],
                                  values=[0.5, -1.0, 0.25])) != msg
    with pytest.raises(SigningError, match='keys'):
        signing.message(**dict(FIELDS, values=[1.0]))


@pytest.mark.parametrize('change', [
    {'robot_id': 'robot2'}, {'version': 8}, {'fmt': ''}, {'weights_sha256': 'ac' * 32},
    {'rule': 'fixed'}, {'keys': ['w0', 'threshold', 'c']},
    {'values': [0.5, 0.25 + 1e-12, -1.0]},  # the last bit of one value
    {'keys': ['w0', 'threshold'], 'values': [0.5, 0.25]},  # a pair dropped
    {'policy_version': 1}, {'base_version': 1}, {'base_sha256': 'cd' * 32},
], ids=['robot', 'version', 'format', 'weights', 'rule', 'key', 'value', 'dropped',
        'policy_version', 'base_version', 'base_sha256'])
def test_any_change_breaks_the_signature(change):
    sig = signing.sign(KEY, **FIELDS)
    assert signing.verify(KEY, sig, **FIELDS)
    assert signing.verify(KEY, sig.upper(), **FIELDS)  # hex case does not matter
    assert not signing.verify(KEY, sig, **dict(FIELDS, **change))
    assert not signing.verify(KEY + b'x', sig, **FIELDS)
    for junk in ('', 'zz', sig[:-1], 'é' * 64, sig + '00'):
        assert not signing.verify(KEY, junk, **FIELDS)


def test_requests_sign_the_weight_bytes_and_the_whole_policy():
    req = _req()
    req.signature = signing.sign_request(KEY, req, 'robot1')
    signing.verify_request(KEY, req, 'robot1')
    # The sha256 field is not what is signed: the bytes are hashed themselves.
    req.sha256 = 'ff' * 32
    signing.verify_request(KEY, req, 'robot1')
    with pytest.raises(SigningError, match='bad signature'):
        signing.verify_request(KEY, req, 'robot2')  # replayed to another robot
    for bad in (_req(data=b'weightS'), _req(version=8)):
        bad.signature = req.signature
        with pytest.raises(SigningError, match='bad signature'):
            signing.verify_request(KEY, bad, 'robot1')
    req.policy.values[1] = -0.5  # params altered after signing
    with pytest.raises(SigningError, match='bad signature'):
        signing.verify_request(KEY, req, 'robot1')
    unsigned = _req()
    with pytest.raises(SigningError, match='unsigned'):
        signing.verify_request(KEY, unsigned, 'robot1')
    # A policy-only request (no weights) signs an empty weights_sha256.
    pol = _req(data=b'', rule='never', keys=(), values=())
    pol.signature = signing.sign_request(KEY, pol, 'robot1')
    assert pol.signature == signing.sign(KEY, 'robot1', 7, '', '', 'never', [], [])
    # rclpy hands weights over as array.array('B').
    import array
    arr = _req(data=array.array('B', b'weights'))
    assert signing.sign_request(KEY, arr, 'robot1') == signing.sign_request(KEY, _req(),
                                                                            'robot1')


def test_load_key_reads_files_and_refuses_unusable_ones(tmp_path):
    p = tmp_path / 'key'
    p.write_bytes(b'secret\n')
    assert signing.load_key(p) == b'secret'  # `echo secret > key` works
    p.write_bytes(b'\x00\xffbinary\r\n')
    assert signing.load_key(str(p)) == b'\x00\xffbinary'
    with pytest.raises(SigningError, match='cannot read key file'):
        signing.load_key(tmp_path / 'missing')
    with pytest.raises(SigningError, match='cannot read key file'):
        signing.load_key(tmp_path)  # a folder
    p.write_bytes(b'\n')
    with pytest.raises(SigningError, match='empty'):
        signing.load_key(p)
    p.write_bytes(b'x' * (signing.MAX_KEY_BYTES + 1))
    with pytest.raises(SigningError, match='not a key'):
        signing.load_key(p)
    if os.geteuid() != 0:  # root reads anything
        p.write_bytes(b'k')
        p.chmod(0)
        with pytest.raises(SigningError, match='cannot read'):
            signing.load_key(p)
    with pytest.raises(SigningError, match='empty'):
        signing.sign(b'', **FIELDS)
