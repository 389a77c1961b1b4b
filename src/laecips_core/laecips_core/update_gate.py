# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The edge's gate for an ``update_weights`` request: everything checked before anything changes.

Cheapest checks first: the size before hashing or parsing, the signature before reading
anything the sender controls, then the policy, the format, the version and the weights
themselves. The request is duck-typed (a laecips_msgs/UpdateWeights request: version,
format, sha256, weights, policy.{rule,keys,values}, signature). A refusal raises
``ValueError`` (``WeightsError`` and ``PolicyError`` are ones) and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from laecips_core import signing, weights
from laecips_core.policy import Policy


@dataclass
class Update:
    """A checked update: the new policy and/or the new weights (None when not sent)."""

    policy: Policy | None
    data: bytes  # the weights file as sent (b'' for a policy-only update)
    state: dict[str, torch.Tensor] | None = None
    meta: weights.WeightsMeta | None = None


def request_size(req: Any) -> int:
    """Return the bytes of weights and policy a request carries (before any parsing)."""
    pol = req.policy
    return (len(req.weights) + 8 * len(pol.values) + sum(len(k) for k in pol.keys)
            + len(pol.rule) + len(req.format) + len(req.sha256) + len(req.signature))


def check_update(req: Any, active_version: int, max_bytes: int, key: bytes | None,
                 robot_id: str) -> Update:
    """Check an update request against the active version; return it parsed, or raise."""
    size = request_size(req)
    if size > max_bytes:
        raise ValueError(f'request too large: {size} bytes of weights and policy, the '
                         f'limit is {max_bytes} (max_update_bytes)')
    if key is not None:
        signing.verify_request(key, req, robot_id)
    policy = (Policy.from_lists(req.policy.rule, req.policy.keys, req.policy.values)
              if req.policy.rule else None)
    data = bytes(req.weights)
    if not data:
        if policy is None:
            raise ValueError('empty request: no weights and no policy')
        return Update(policy, data)
    if req.format != 'safetensors':
        raise ValueError(f"format {req.format!r} refused: only 'safetensors'")
    if req.version <= active_version:
        raise ValueError(f'version {req.version} is not newer than the active '
                         f'{active_version}')
    sd, meta = weights.from_bytes(data, expected_sha256=req.sha256)
    return Update(policy, data, sd, meta)
