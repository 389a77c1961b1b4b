# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The upload policy: which frames the edge sends to the cloud, as a rule name plus parameters.

It mirrors ``laecips_msgs/Policy`` (rule, keys[], values[]) so the trainer can fit one and
push it, and it persists as JSON beside the weights. Features come from
``hardness.features``: [conf_ratio, entropy, margin]. Any rule with a threshold takes an
optional ``explore`` rate (see :meth:`Policy.decide`), and any rule an upload budget
(``budget``, ``burst``, ``save``, ``reserve``: see :class:`Budget`).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
import json
import math
import os
from pathlib import Path

import numpy as np

RULES = ('never', 'always', 'random', 'fixed', 'entropy', 'learned', 'quantile')
# Defaults merged under the given params; the fixed rule's are the reference (Ianvs) values.
DEFAULTS: dict[str, dict[str, float]] = {
    'never': {}, 'always': {}, 'random': {'rate': 0.2},
    'fixed': {'p': 0.9, 'easy': 0.95},
    'entropy': {'threshold': 0.3},
    'learned': {'threshold': 0.5, 'b': 0.0},
    'quantile': {'rate': 0.2, 'feature': 1.0, 'window': 300.0},
}
# The quantile rule's scores: 0 = 1 - conf_ratio (the fixed rule's), 1 = entropy.
QUANTILE_FEATURES = (0.0, 1.0)
# Frames the quantile rule must have seen before its threshold means anything; until then
# it uploads at random at its rate.
QUANTILE_WARMUP = 10


# Feature weights w0..w{MAX_WEIGHTS-1} of the learned rule (hardness.features has 3).
MAX_WEIGHTS = 64
# Deepest upload burst a budget may allow (frames).
MAX_BURST = 10000.0


# Allowed range of each parameter (inclusive); any other key, and learned-rule weights and
# bias, must be finite and within +-LIMIT. A pushed policy is untrusted input: +-inf or
# 1e308 would silently stop or force every upload (or overflow the score).
LIMIT = 1e6
RANGES: dict[str, tuple[float, float]] = {
    'rate': (0.0, 1.0), 'explore': (0.0, 1.0), 'p': (0.0, 1.0), 'easy': (-1.0, 1.0),
    'budget': (0.0, 1.0), 'burst': (1.0, MAX_BURST), 'logistic': (0.0, 1.0),
    'target_upload_ratio': (0.0, 1.0), 'min_disagreement': (0.0, 1.0),
    'feature': (0.0, 1.0), 'window': (QUANTILE_WARMUP, MAX_BURST), 'save': (0.0, 1.0),
    'reserve': (1.0, MAX_BURST),
}


class PolicyError(ValueError):
    """An unknown rule or unusable parameters."""


def _weight_index(key: str) -> int | None:
    # ASCII digits only: str.isdigit() also takes '²', which int() refuses.
    d = key[1:]
    return int(d) if key[:1] == 'w' and d.isascii() and d.isdigit() and len(d) < 10 else None


@dataclass
class Policy:
    """An upload rule (one of ``RULES``) and its float parameters."""

    rule: str = 'fixed'
    params: dict[str, float] = field(default_factory=dict)
    # The quantile rule's memory of scores already seen (never compared or serialised).
    seen: deque = field(default_factory=deque, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise PolicyError(f'unknown policy rule {self.rule!r}; known: {", ".join(RULES)}')
        try:
            self.params = {**DEFAULTS[self.rule],
                           **{str(k): float(v) for k, v in self.params.items()}}
        except (TypeError, ValueError, OverflowError) as e:
            raise PolicyError(f'policy parameters must be numbers: {e}'[:200]) from e
        nan = sorted(k for k, v in self.params.items() if math.isnan(v))
        if nan:  # every comparison with NaN is False: the rule would silently never fire
            raise PolicyError(f'policy parameters are NaN: {", ".join(nan)[:120]}')
        budget, burst = self.params.get('budget'), self.params.get('burst', 1.0)
        if budget is not None and not (0 < budget <= 1 and 1 <= burst <= MAX_BURST):
            raise PolicyError(f'budget must be in (0, 1] and burst in [1, {MAX_BURST}], not '
                              f'{budget} and {burst}')
        for k, v in self.params.items():
            lo, hi = RANGES.get(k, (-LIMIT, LIMIT))
            if not lo <= v <= hi:
                raise PolicyError(f'policy parameter {k[:40]!r} = {v} is outside [{lo:g}, '
                                  f'{hi:g}]')
        if self.rule == 'quantile' and self.params['feature'] not in QUANTILE_FEATURES:
            raise PolicyError(f'quantile feature must be one of {QUANTILE_FEATURES}, not '
                              f'{self.params["feature"]}')
        big = [k for k in self.params if (_weight_index(k) or 0) >= MAX_WEIGHTS]
        if big:  # weights() allocates up to the largest index, on every frame
            raise PolicyError(f'feature weight {big[0][:40]!r}: the learned rule takes at '
                              f'most {MAX_WEIGHTS} (w0..w{MAX_WEIGHTS - 1})')

    @property
    def threshold(self) -> float:
        """Return the decision threshold (``easy`` for the fixed rule), NaN if none."""
        key = 'easy' if self.rule == 'fixed' else 'threshold'
        return float(self.params.get(key, math.nan))

    def weights(self) -> np.ndarray:
        """Return the learned rule's feature weights w0..wk (missing ones are 0)."""
        idx = {i: v for k, v in self.params.items() if (i := _weight_index(k)) is not None}
        w = np.zeros(max(idx) + 1 if idx else 0)
        for i, v in idx.items():
            w[i] = v
        return w

    def score(self, features: np.ndarray) -> float:
        """Return the rule's hardness score of one frame's features (larger = harder)."""
        f = np.asarray(features, np.float64).ravel()
        if self.rule == 'fixed':
            return 1.0 - float(f[0])
        if self.rule == 'entropy' or (self.rule == 'quantile' and self.params['feature']):
            return float(f[1])
        if self.rule == 'learned':
            w = self.weights()
            k = min(len(w), len(f))
            z = float(np.dot(w[:k], f[:k]) + self.params['b'])
            # logistic=1 turns the linear score into a probability (a logistic regression).
            if self.params.get('logistic', 0) > 0:
                return 1.0 / (1.0 + math.exp(-min(max(z, -60.0), 60.0)))
            return z
        return 1.0 - float(f[0]) if len(f) else math.nan

    def decide(self, features: np.ndarray, rng: np.random.Generator | None = None) -> bool:
        """
        Return True when this frame should be uploaded.

        With ``rng`` (the edge passes one), the optional ``explore`` parameter also uploads
        that fraction of the frames the rule calls easy, at random, so the cloud sees
        unbiased samples (laecips_cloud.policy_fit). Without ``rng`` the answer is the rule's
        own, deterministic verdict (the ``random`` rule then draws from a fresh generator).
        """
        r = self.rule
        if r == 'never':
            return False
        if r == 'always':
            return True
        if r == 'random':
            return bool((rng or np.random.default_rng()).random() < self.params['rate'])
        f = np.asarray(features, np.float64).ravel()
        if r == 'quantile':
            return self._quantile(self.score(f), rng)
        if r == 'fixed':
            # conf_ratio is the edge's, measured with p = 0.9 (HardFrame.features).
            hard = bool(f[0] <= self.params['easy'])
        else:
            hard = bool(self.score(f) > self.params['threshold'])
        explore = self.params.get('explore', 0.0)
        if not hard and rng is not None and explore > 0:
            return bool(rng.random() < explore)
        return hard

    def _quantile(self, score: float, rng: np.random.Generator | None) -> bool:
        """
        Upload when ``score`` is above the (1 - rate) quantile of the scores seen before.

        An online rule (no look-ahead): its threshold tracks the budget over the last
        ``window`` frames, so it uploads about ``rate`` of any stationary stream. It is the
        honest version of a threshold tuned afterwards on the whole stream (an oracle).
        """
        past = self.seen
        if len(past) >= QUANTILE_WARMUP:
            hard = score > float(np.quantile(np.fromiter(past, float), 1 - self.params['rate']))
        else:
            hard = bool((rng or np.random.default_rng()).random() < self.params['rate'])
        past.append(score)
        while len(past) > self.params['window']:
            past.popleft()
        return hard

    def budget(self) -> tuple[float, float, float, float]:
        """
        Return (uploads per frame, burst, share saved for drift, savings depth).

        (1, 1, 0, 1) if none; the savings depth (``reserve``) defaults to ``burst``.
        """
        if 'budget' not in self.params:
            return 1.0, 1.0, 0.0, 1.0
        burst = self.params.get('burst', 1.0)
        return (self.params['budget'], burst, self.params.get('save', 0.0),
                self.params.get('reserve', burst))

    # Serialisation: dict / JSON for files, keys+values lists for laecips_msgs/Policy.
    def to_dict(self) -> dict:
        return {'rule': self.rule, 'params': dict(self.params)}

    @staticmethod
    def from_dict(d: dict) -> 'Policy':
        return Policy(str(d.get('rule', 'fixed')), dict(d.get('params', {})))

    def to_lists(self) -> tuple[list[str], list[float]]:
        keys = sorted(self.params)
        return keys, [float(self.params[k]) for k in keys]

    @staticmethod
    def from_lists(rule: str, keys, values) -> 'Policy':
        keys, values = list(keys), list(values)
        if len(keys) != len(values):
            raise PolicyError(f'{len(keys)} policy keys but {len(values)} values')
        if len(set(keys)) != len(keys):  # which one would win is not for the sender to guess
            dup = sorted(k for k, n in Counter(keys).items() if n > 1)
            raise PolicyError(f'duplicate policy keys: {", ".join(map(str, dup))[:120]}')
        return Policy(rule, dict(zip(keys, values)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> 'Policy':
        try:
            return Policy.from_dict(json.loads(text))
        except (json.JSONDecodeError, AttributeError) as e:
            raise PolicyError(f'bad policy JSON: {e}') from e

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + '.tmp')
        tmp.write_text(self.to_json() + '\n')
        os.replace(tmp, path)

    @staticmethod
    def load(path: str | os.PathLike) -> 'Policy':
        return Policy.from_json(Path(path).read_text())


def parse_params(text: str) -> dict[str, float]:
    """Parse policy parameters given as JSON (``{"rate": 0.2}``) or ``rate=0.2,easy=0.9``."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith('{'):
        return {k: float(v) for k, v in json.loads(text).items()}
    return {k.strip(): float(v) for k, v in (kv.split('=', 1) for kv in text.split(','))}


class Budget:
    """
    Hold uploads to a rate: a token bucket that gains ``rate`` tokens a frame, ``burst`` deep.

    A fitted threshold is a quantile of frames already seen; under drift (day -> dusk) every
    new frame can score above it and the rule alone would upload all of them. The bucket
    caps the uploads of any run of n frames at ``burst + rate * n``, so a burst of hard
    frames still goes out at once. It counts frames, not seconds: a budget is a fraction of
    the camera stream, as the trainer's ``target_upload_ratio`` is.

    With ``save`` > 0 that share of the rate goes into a second bucket, ``reserve`` frames
    deep (default ``burst``), that only frames taken while the stream drifts may spend (the
    edge says when: its statistics have left the model's, see laecips_core.bn_adapt): in
    steady state it uploads at most ``(1 - save) * rate``, and the savings go out when the
    conditions change, which is when the edge model is worst and a label teaches the most.
    Any run of n frames still uploads at most ``burst + reserve + rate * n``, and the
    long-run ratio stays ``rate``: savings a drift never spends are lost (the reserve is
    full), never added to a later rate.
    """

    def __init__(self, rate: float = 1.0, burst: float = 1.0, save: float = 0.0,
                 reserve: float | None = None) -> None:
        self.rate, self.burst, self.save = float(rate), float(burst), float(save)
        self.reserve = self.burst if reserve is None else float(reserve)
        self.tokens = self.burst
        self.saved = 0.0  # spendable only while drifting

    @staticmethod
    def of(policy: Policy) -> 'Budget':
        """Return a full bucket for ``policy``'s budget."""
        return Budget(*policy.budget())

    def configure(self, policy: Policy) -> None:
        """
        Take a new policy's budget.

        Coming from no budget the bucket starts full; from another budget the tokens saved
        so far stay (at most the new burst), so a push never refills it.
        """
        unlimited = self.rate >= 1.0
        self.rate, self.burst, self.save, self.reserve = policy.budget()
        self.tokens = self.burst if unlimited else min(self.tokens, self.burst)
        self.saved = min(self.saved, self.reserve) if self.save > 0 else 0.0

    def admit(self, want: bool, drifting: bool = False) -> bool:
        """Account one frame; return True if it may be uploaded (``want`` and a token left)."""
        self.tokens = min(self.burst, self.tokens + self.rate * (1.0 - self.save))
        self.saved = min(self.reserve, self.saved + self.rate * self.save)
        if not want:
            return False
        if self.tokens >= 1.0 - 1e-9:
            self.tokens -= 1.0
            return True
        if drifting and self.saved >= 1.0 - 1e-9:
            self.saved -= 1.0
            return True
        return False


class Backoff:
    """
    Thin uploads while the cloud says it is overloaded (back-pressure, CloudStats.overloaded).

    Each overloaded report multiplies the share of wanted uploads that go out by ``down``
    (not below ``floor``: the cloud must still see some frames to say when it recovers);
    each normal report adds ``up`` back, up to 1. Multiplicative decrease and additive
    increase, as TCP's congestion window: edges sharing one bridge converge to a fair share of
    what it can label instead of oscillating between all and nothing.
    """

    def __init__(self, down: float = 0.5, up: float = 0.1, floor: float = 0.05) -> None:
        if not (0 < down <= 1 and 0 <= up <= 1 and 0 < floor <= 1):
            raise ValueError(f'bad backoff: down {down}, up {up}, floor {floor}')
        self.down, self.up, self.floor = float(down), float(up), float(floor)
        self.scale = 1.0

    def update(self, overloaded: bool) -> float:
        """Take one report from the cloud; return the new share of uploads sent."""
        if overloaded:
            self.scale = max(self.floor, self.scale * self.down)
        else:
            self.scale = min(1.0, self.scale + self.up)
        return self.scale

    def admit(self, want: bool, rng: np.random.Generator) -> bool:
        """Return True if a frame the policy wants uploaded goes out at the current share."""
        return want and (self.scale >= 1.0 or bool(rng.random() < self.scale))


class ByteBudget:
    """
    Hold uploads to a link's bytes per second: how robot teams size an uplink.

    A token bucket in bytes that fills at ``rate`` bytes/s up to ``burst_s`` seconds of
    it. A frame may go while the bucket is not in debt; its real size (known only once
    encoded) is charged afterwards and may leave a debt the next seconds pay back, so the
    long-run rate holds exactly without guessing a frame's size beforehand. It applies on
    top of the policy's frame budget (:class:`Budget`), whichever binds first.
    """

    def __init__(self, rate: float, burst_s: float = 10.0) -> None:
        if not (math.isfinite(rate) and rate > 0 and math.isfinite(burst_s) and burst_s > 0):
            raise ValueError(f'byte budget needs rate > 0 and burst_s > 0, not {rate}, '
                             f'{burst_s}')
        self.rate, self.depth = float(rate), float(rate) * float(burst_s)
        self.tokens = self.depth
        self.last: float | None = None

    def admit(self, now: float) -> bool:
        """Return True if a frame may be uploaded at time ``now`` (seconds, monotonic)."""
        if self.last is not None:
            self.tokens = min(self.depth, self.tokens + self.rate * max(0.0, now - self.last))
        self.last = now
        return self.tokens > 0

    def charge(self, nbytes: int) -> None:
        """Account an upload of ``nbytes`` (after :meth:`admit` let it go)."""
        self.tokens -= float(nbytes)
