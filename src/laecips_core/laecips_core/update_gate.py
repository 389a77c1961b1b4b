# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The edge's gate for an ``update_weights`` request: everything checked before anything changes.

Cheapest checks first: the size before hashing or parsing, the signature before reading
anything the sender controls, then the policy and its version, the format, the version and
the weights themselves. The request is duck-typed (a laecips_msgs/UpdateWeights request:
version, format, sha256, weights, base_version, base_sha256, policy.{rule,keys,values},
policy_version, signature). A refusal raises ``ValueError`` (``WeightsError``,
``PolicyError`` and ``BaseMismatchError`` are ones) and changes nothing.

Two weight formats: a whole weights file (``safetensors``) or a delta over the edge's
*push base* (``laecips-delta/1``, see ``laecips_core.delta``): the state the trainer last
sent, kept apart from anything the edge adapts locally (normalisation statistics), named by
version and state digest. A delta over another base is refused with ``BaseMismatchError``.

A request carrying a policy must carry a policy version above the last one accepted
(``PolicyVersions`` keeps it in a small file, so a captured push cannot be replayed after a
restart either).
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import os
from pathlib import Path
from typing import Any

import torch

from laecips_core import delta, signing, weights
from laecips_core.policy import Policy

FULL_FORMAT = 'safetensors'


class BaseMismatchError(ValueError):
    """A delta over a base this edge does not hold (the trainer sends a full push then)."""


@dataclass
class PushBase:
    """The state the trainer last sent (the delta base): its version, digest and tensors."""

    version: int
    sha256: str  # laecips_core.delta.state_sha256 of state
    state: dict[str, torch.Tensor]

    @staticmethod
    def of(state: dict[str, torch.Tensor], version: int) -> 'PushBase':
        """Keep a private copy of ``state`` (a live model's tensors may change in place)."""
        own = {k: v.detach().to('cpu').clone() for k, v in state.items()}
        return PushBase(int(version), delta.state_sha256(own), own)


@dataclass
class Update:
    """A checked update: the new policy and/or the new weights (None when not sent)."""

    policy: Policy | None
    data: bytes  # the weights file or delta as sent (b'' for a policy-only update)
    state: dict[str, torch.Tensor] | None = None
    meta: weights.WeightsMeta | None = None  # None: keep the active metadata (a delta)
    base: PushBase | None = None  # the new push base when weights came
    policy_version: int = 0


class PolicyVersions:
    """
    The last accepted policy version, kept in a small JSON file (replaced atomically).

    ``path`` None keeps it in memory only. An unreadable file stops the edge at start-up
    rather than silently forgetting what it accepted (which would reopen replays).
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path else None
        self.last = 0
        if self.path is not None and self.path.exists():
            try:
                self.last = int(json.loads(self.path.read_text())['policy_version'])
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise ValueError(f'unreadable policy version file {self.path}: {e}') from e

    def accept(self, version: int) -> None:
        """Record ``version`` as the last accepted one (on disk first when there is a file)."""
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + '.tmp')
            tmp.write_text(json.dumps({'policy_version': int(version)}))
            os.replace(tmp, self.path)
        self.last = int(version)


def request_size(req: Any) -> int:
    """Return the bytes of weights and policy a request carries (before any parsing)."""
    pol = req.policy
    return (len(req.weights) + 8 * len(pol.values) + sum(len(k) for k in pol.keys)
            + len(pol.rule) + len(req.format) + len(req.sha256) + len(req.signature))


def check_update(req: Any, active_version: int, max_bytes: int, key: bytes | None,
                 robot_id: str, base: PushBase | None = None,
                 last_policy_version: int = 0) -> Update:
    """
    Check an update request; return it parsed, or raise.

    ``active_version`` is the running model's version, ``base`` the push base a delta
    must name, ``last_policy_version`` the last policy version accepted.
    """
    size = request_size(req)
    if size > max_bytes:
        raise ValueError(f'request too large: {size} bytes of weights and policy, the '
                         f'limit is {max_bytes} (max_update_bytes)')
    if key is not None:
        signing.verify_request(key, req, robot_id)
    policy = (Policy.from_lists(req.policy.rule, req.policy.keys, req.policy.values)
              if req.policy.rule else None)
    pv = int(getattr(req, 'policy_version', 0))
    if policy is not None and pv <= last_policy_version:
        raise ValueError(f'policy version {pv} is not newer than the last accepted '
                         f'{last_policy_version} (a replayed or stale policy push)')
    data = bytes(req.weights)
    if not data:
        if policy is None:
            raise ValueError('empty request: no weights and no policy')
        return Update(policy, data, policy_version=pv)
    if req.format not in (FULL_FORMAT, delta.FORMAT):
        raise ValueError(f'format {req.format!r} refused: only {FULL_FORMAT!r} or '
                         f'{delta.FORMAT!r}')
    if req.version <= active_version:
        raise ValueError(f'version {req.version} is not newer than the active '
                         f'{active_version}')
    if req.format == FULL_FORMAT:
        sd, meta = weights.from_bytes(data, expected_sha256=req.sha256)
        return Update(policy, data, sd, meta, PushBase.of(sd, req.version), pv)
    if base is None or (int(req.base_version), str(req.base_sha256)) != (base.version,
                                                                          base.sha256):
        held = f'v{base.version} {base.sha256[:12]}' if base else 'none'
        raise BaseMismatchError(f'delta base v{req.base_version} {str(req.base_sha256)[:12]} '
                           f'not held (this edge holds {held}): send a full push')
    sd = delta.apply(base.state, data)
    digest = delta.state_sha256(sd)
    if digest != str(req.sha256).strip().lower():
        raise delta.DeltaError(f'rebuilt state digest {digest[:16]} does not match the '
                               f'sha256 sent {str(req.sha256)[:16]}')
    # The base gets its own tensors: the engine's copy may be adapted in place later.
    own = {k: v.clone() for k, v in sd.items()}
    return Update(policy, data, sd, None, PushBase(int(req.version), digest, own), pv)
