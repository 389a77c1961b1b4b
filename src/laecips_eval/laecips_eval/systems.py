# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The systems the evaluation compares, and how the rate-matched baselines are tuned (no rclpy).

Each system is the same edge node with another upload policy (``policy_rule`` and
``policy_params`` of laecips_edge.edge_node), with or without the trainer:

=================  =========================================================================
``edge_only``      rule ``never``
``cloud_only``     rule ``always``; the cloud's label replaces the edge's mask (no fusion,
                   no teacher-health check); every frame goes up (the cloud's back-pressure
                   is not followed)
``fixed``          the reference rule (Ianvs): p = 0.9, easy = 0.95, at its own upload rate
``laecips``        the trainer distils cloud labels into the edge and pushes weights and
                   the evolving (learned) policy; the edge starts from ``laecips_policy``
``laecips_full``   the same with every weight push a full fp32 weights file (trainer
                   ``push_encoding`` full, its push-cost rule off so it pushes every gated
                   candidate) of a student that trains all its parameters
                   (``train_params`` all): the ablation of compact pushes
``laecips_entropy`` the same loop with entropy mining instead of the learned policy: rule
                   ``quantile`` on the entropy at the trainer's budget, with its drift-saving
                   bucket (``budget_save``, ``budget_reserve``); the trainer pushes weights
                   only (the ablation of the learned policy)
``random``         rule ``random`` at LAECIPS's realised upload ratio, one run per seed
``fixed_online``   rule ``quantile`` on 1 - conf_ratio: uploads frames above the running
                   (1 - rate) quantile of the frames seen so far, at LAECIPS's total bytes,
                   held there by the token bucket LAECIPS's policies carry (``budget``,
                   ``burst``; under drift every frame beats a quantile of the past)
``entropy_online`` the same on the mean normalised entropy (Sedna's filter, online)
``random_distil``  the trainer's distillation driven by random mining at LAECIPS's ratio
                   (it pushes weights only, never a policy)
``entropy_distil`` the same driven by ``entropy_online`` mining (with its bucket)
``fixed_matched``  oracle: the reference rule with ``easy`` tuned after the fact so it
                   uploads LAECIPS's ratio
``entropy``        oracle: Sedna's cross-entropy filter (upload when the mean normalised
                   entropy is above a threshold), the threshold tuned after the fact
``entropy_sedna``  the same filter at Sedna's default (confidence 1 - entropy < 0.5)
=================  =========================================================================

The oracles' thresholds are quantiles of the factory edge model's features over the whole
stream, measured in the ``cloud_only`` run (it uploads every frame with its features):
look-ahead no robot has, so their rows say ``(oracle)``. The online rules decide with what
they have seen. Rows compare at equal total bytes (frames up, labels down, pushes): the
rules alone upload LAECIPS's total bytes / cloud-only's share of the frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Sequence

import numpy as np

from laecips_cloud.policy_fit import Recipe, budget_params

ORDER = ('edge_only', 'cloud_only', 'fixed', 'laecips', 'laecips_full', 'laecips_entropy',
         'random', 'fixed_online', 'entropy_online', 'random_distil', 'entropy_distil',
         'fixed_matched', 'entropy', 'entropy_sedna')
DEFAULT = ('edge_only', 'cloud_only', 'fixed', 'laecips', 'random', 'fixed_matched',
           'entropy')
MATCHED = ('random', 'fixed_matched', 'entropy', 'fixed_online', 'entropy_online',
           'random_distil', 'entropy_distil')  # need LAECIPS's realised ratio
# The cloud_only run's features (oracles) or its bytes per uploaded frame (online rules,
# run at LAECIPS's total bytes).
NEED_FEATURES = ('fixed_matched', 'entropy', 'fixed_online', 'entropy_online')


@dataclass(frozen=True)
class System:
    """One evaluated configuration (``label`` is its row in the table)."""

    name: str
    label: str
    rule: str
    params: dict = field(default_factory=dict)
    trainer: bool = False
    seed: int = 0
    edge: dict = field(default_factory=dict)  # more edge parameters of this system
    trainer_params: dict = field(default_factory=dict)  # more trainer parameters

    def policy_params(self) -> str:
        """Return the edge's ``policy_params`` parameter (k=v,k=v)."""
        return ','.join(f'{k}={v:.6g}' for k, v in sorted(self.params.items()))


def resolve(names: Sequence[str]) -> list[str]:
    """Return the requested systems in run order (dependencies first); check names."""
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        raise ValueError(f'unknown systems {unknown}; known: {", ".join(ORDER)}')
    wanted = set(names)
    if wanted & set(MATCHED):
        wanted.add('laecips')
    if wanted & set(NEED_FEATURES):
        wanted.add('cloud_only')
    return [n for n in ORDER if n in wanted]


def fixed_easy_for_ratio(conf_ratio: Sequence[float], ratio: float) -> float:
    """Return ``easy`` so that ``conf_ratio <= easy`` holds for about ``ratio`` of frames."""
    x = np.sort(np.asarray(conf_ratio, np.float64))
    if x.size == 0:
        raise ValueError('no conf_ratio features recorded')
    k = int(round(ratio * x.size))
    if k <= 0:
        return float(np.nextafter(x[0], -np.inf))
    if k >= x.size:
        return float(x[-1])
    return float((x[k - 1] + x[k]) / 2)


def entropy_threshold_for_ratio(entropy: Sequence[float], ratio: float) -> float:
    """Return ``threshold`` so that ``entropy > threshold`` holds for about ``ratio``."""
    x = np.sort(np.asarray(entropy, np.float64))[::-1]
    if x.size == 0:
        raise ValueError('no entropy features recorded')
    k = int(round(ratio * x.size))
    if k <= 0:
        return float(x[0])
    if k >= x.size:
        return float(np.nextafter(x[-1], -np.inf))
    return float((x[k - 1] + x[k]) / 2)


def _bucket(rate: float) -> dict[str, float]:
    """Return the token bucket that holds an online rule to ``rate`` (LAECIPS's own)."""
    return budget_params(rate, Recipe.burst)


def build(name: str, laecips_ratio: float | None = None,
          features: Sequence[Sequence[float]] | None = None, seeds: int = 3,
          laecips_policy: tuple[str, dict] = ('fixed', {}),
          bytes_ratio: float | None = None) -> list[System]:
    """Return the run(s) of one system (several for the random baseline's seeds)."""
    if name in MATCHED and (laecips_ratio is None or not math.isfinite(laecips_ratio)):
        raise ValueError(f"{name} needs LAECIPS's upload ratio (run laecips first)")
    r = laecips_ratio
    if name == 'edge_only':
        return [System(name, 'edge-only', 'never')]
    if name == 'cloud_only':
        # The cloud's label replaces the edge's mask as it is: no fusion, no health check.
        return [System(name, 'cloud-only', 'always', edge={
            'refine': 'replace', 'follow_teacher_health': False, 'follow_cloud_load': False})]
    if name == 'fixed':
        return [System(name, 'fixed 0.9/0.95', 'fixed', {'p': 0.9, 'easy': 0.95})]
    if name == 'laecips':
        return [System(name, 'LAECIPS', laecips_policy[0], dict(laecips_policy[1]),
                       trainer=True)]
    if name == 'laecips_full':
        return [System(name, 'LAECIPS full pushes', laecips_policy[0],
                       dict(laecips_policy[1]), trainer=True,
                       trainer_params={'push_encoding': 'full', 'push_bytes_per_point': 0.0,
                                       'train_params': 'all'})]
    if name == 'laecips_entropy':
        rec = Recipe()
        return [System(name, 'LAECIPS entropy mining', 'quantile', {
            'rate': rec.target_upload_ratio, 'feature': 1.0,
            **budget_params(rec.target_upload_ratio, rec.burst, rec.save, rec.reserve)},
            trainer=True, trainer_params={'push_mode': 'weights'})]
    if name == 'random':
        return [System(name, f'random @{r:.0%}', 'random', {'rate': r}, seed=s)
                for s in range(seeds)]
    # Online baselines: thresholds that track the budget as a running quantile of the frames
    # already seen (no look-ahead). Rules alone upload at LAECIPS's total bytes (its pushes
    # included; ``bytes_ratio`` = LAECIPS's total bytes / cloud-only's); with the trainer
    # ('+ distil': its weights, never its policy) at LAECIPS's upload ratio.
    if name in ('fixed_online', 'entropy_online'):
        if bytes_ratio is None or not math.isfinite(bytes_ratio):
            raise ValueError(f"{name} needs LAECIPS's and cloud-only's total bytes")
        b = min(1.0, bytes_ratio)
        kind = name.split('_')[0]
        return [System(name, f'{kind} online @{b:.0%}', 'quantile',
                       {'rate': b, 'feature': float(kind == 'entropy'), **_bucket(b)})]
    if name == 'random_distil':
        return [System(name, f'random + distil @{r:.0%}', 'random', {'rate': r}, seed=s,
                       trainer=True, trainer_params={'push_mode': 'weights'})
                for s in range(seeds)]
    if name == 'entropy_distil':
        return [System(name, f'entropy online + distil @{r:.0%}', 'quantile',
                       {'rate': r, 'feature': 1.0, **_bucket(r)}, trainer=True,
                       trainer_params={'push_mode': 'weights'})]
    if name == 'entropy_sedna':
        return [System(name, 'entropy (Sedna 0.5)', 'entropy', {'threshold': 0.5})]
    f = np.asarray(features if features is not None else [], np.float64)
    if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] < 2:
        raise ValueError(f'{name} needs the per-frame features of the cloud_only run')
    if name == 'fixed_matched':
        easy = fixed_easy_for_ratio(f[:, 0], r)
        return [System(name, f'fixed 0.9/{easy:.3f} @{r:.0%} (oracle)', 'fixed',
                       {'p': 0.9, 'easy': easy})]
    if name == 'entropy':
        th = entropy_threshold_for_ratio(f[:, 1], r)
        return [System(name, f'entropy {th:.3f} @{r:.0%} (oracle)', 'entropy',
                       {'threshold': th})]
    raise ValueError(f'unknown system {name!r}')
