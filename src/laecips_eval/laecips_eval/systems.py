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
                   candidate): the ablation of compact pushes
``random``         rule ``random`` at LAECIPS's realised upload ratio, one run per seed
``fixed_matched``  the reference rule with ``easy`` tuned so it uploads LAECIPS's ratio
``entropy``        Sedna's cross-entropy filter (upload when the mean normalised entropy
                   is above a threshold), the threshold tuned to LAECIPS's ratio
``entropy_sedna``  the same filter at Sedna's default (confidence 1 - entropy < 0.5)
=================  =========================================================================

The tuned thresholds are quantiles of the factory edge model's features over the stream,
measured in the ``cloud_only`` run (it uploads every frame with its features; baselines do
not adapt, so their features are the same in every run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Sequence

import numpy as np

ORDER = ('edge_only', 'cloud_only', 'fixed', 'laecips', 'laecips_full', 'random',
         'fixed_matched', 'entropy', 'entropy_sedna')
DEFAULT = ('edge_only', 'cloud_only', 'fixed', 'laecips', 'random', 'fixed_matched',
           'entropy')
MATCHED = ('random', 'fixed_matched', 'entropy')  # need LAECIPS's realised ratio
NEED_FEATURES = ('fixed_matched', 'entropy')  # need the cloud_only run's features


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


def build(name: str, laecips_ratio: float | None = None,
          features: Sequence[Sequence[float]] | None = None, seeds: int = 3,
          laecips_policy: tuple[str, dict] = ('fixed', {})) -> list[System]:
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
                       trainer_params={'push_encoding': 'full', 'push_bytes_per_point': 0.0})]
    if name == 'random':
        return [System(name, f'random @{r:.0%}', 'random', {'rate': r}, seed=s)
                for s in range(seeds)]
    if name == 'entropy_sedna':
        return [System(name, 'entropy (Sedna 0.5)', 'entropy', {'threshold': 0.5})]
    f = np.asarray(features if features is not None else [], np.float64)
    if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] < 2:
        raise ValueError(f'{name} needs the per-frame features of the cloud_only run')
    if name == 'fixed_matched':
        easy = fixed_easy_for_ratio(f[:, 0], r)
        return [System(name, f'fixed 0.9/{easy:.3f} @{r:.0%}', 'fixed',
                       {'p': 0.9, 'easy': easy})]
    if name == 'entropy':
        th = entropy_threshold_for_ratio(f[:, 1], r)
        return [System(name, f'entropy {th:.3f} @{r:.0%}', 'entropy', {'threshold': th})]
    raise ValueError(f'unknown system {name!r}')
