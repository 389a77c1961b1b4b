# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Fit the edge's upload policy under the cloud's supervision, within a bandwidth budget.

Input: frames the cloud labelled, each with the edge's features ([conf_ratio, entropy,
margin], see ``laecips_core.hardness``) and the measured edge-cloud disagreement
(:func:`disagreement`: 1 - pixel agreement of the edge's label with the cloud's). Output: a
``laecips_core.policy.Policy``:

* :func:`fit_learned` - rule ``learned``: a linear (least squares) or logistic estimator of
  disagreement from the features, and a threshold chosen so that the frames with the highest
  predicted disagreement are uploaded, at most ``target_upload_ratio`` of all frames. The
  threshold is never below ``min_disagreement``: a well-adapted edge, whose predicted
  disagreement is low everywhere, uploads less than the budget.
* :func:`fit_conf_ratio` - the reference rule ``fixed`` with only its threshold (``easy``)
  refitted the same way: upload when conf_ratio <= easy.

Selection bias, honestly: the cloud sees only frames the edge uploaded, i.e. those the
active rule called hard. The policies fitted here carry an exploration rate ``explore``:
the edge also uploads that fraction of the frames its rule calls easy, at random. The
trainer records each frame's upload probability (:func:`propensity`: 1 when the rule
selected it, ``explore`` otherwise) and weights the frame by its inverse, so the weighted
sample stands for the whole stream (Horvitz-Thompson) and the quantile that sets the
threshold is a quantile of *all* frames, not of the hard ones. With ``explore`` = 0 the
estimate covers uploaded frames only and the budget is met conservatively (fewer uploads).
The exploration uploads are paid from the budget: the rule gets (target - explore) /
(1 - explore) of the frames. Frames the rule selected but the edge's budget held back
(``budget``/``burst``) never reach the cloud; the uploaded ones are still weighted 1, so
under a binding budget the hard end of the stream is under-represented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import TYPE_CHECKING

import numpy as np

from laecips_core.policy import Policy

if TYPE_CHECKING:  # distill imports torch; the fitting itself does not need it
    from laecips_cloud.distill import Distiller

FEATURES = ('conf_ratio', 'entropy', 'margin')


@dataclass
class Fit:
    """A fitted policy and what the fit expects of it on the weighted sample."""

    policy: Policy
    expected_upload_ratio: float  # rule + exploration, as a fraction of all frames
    info: dict = field(default_factory=dict)


def disagreement(edge_label: np.ndarray, cloud_label: np.ndarray, void: int = 11) -> float:
    """Return 1 - the fraction of pixels where the edge agrees with the cloud (void ignored)."""
    if edge_label.shape != cloud_label.shape:
        raise ValueError(f'label shapes differ: {edge_label.shape} vs {cloud_label.shape}')
    keep = (cloud_label != void) & (cloud_label != 255)
    n = int(keep.sum())
    if n == 0:
        return math.nan
    return 1.0 - float((edge_label[keep] == cloud_label[keep]).sum()) / n


def propensity(policy: Policy, features: np.ndarray, explore: float | None = None) -> float:
    """
    Return the probability that ``policy`` uploaded a frame with these features.

    1 when its rule selects the frame; otherwise the exploration rate (``explore`` or the
    policy's own ``explore`` parameter). A frame that arrived although the rule would not
    have sent it and no exploration was on is weighted 1 (the rule in force was not the
    one assumed, so nothing better is known).
    """
    rate = float(policy.params.get('explore', 0.0) if explore is None else explore)
    if policy.rule == 'always':
        return 1.0
    if policy.rule == 'random':
        return max(float(policy.params['rate']), 1e-3)
    if policy.rule != 'never' and policy.decide(features):
        return 1.0
    return rate if rate > 0 else 1.0


def recent_mask(seqs: np.ndarray, window: int, min_frames: int = 8) -> np.ndarray:
    """
    Flag the frames within the newest ``window`` camera frames (by the robot's seq).

    The seq counts every camera frame, uploaded or not, so the window is stream time; at
    least the ``min_frames`` newest labelled frames are flagged when the window holds fewer.
    """
    s = np.asarray(seqs, np.int64).ravel()
    if s.size == 0:
        return np.zeros(0, bool)
    mask = s > s.max() - int(window)
    if mask.sum() < min_frames:
        mask = s >= np.sort(s)[-min(min_frames, s.size)]
    return mask


def rule_share(target_upload_ratio: float, explore: float) -> float:
    """Return the fraction of frames the rule may select so rule + exploration = target."""
    if explore >= 1:
        return 0.0
    return float(np.clip((target_upload_ratio - explore) / (1 - explore), 0.0, 1.0))


def top_threshold(scores: np.ndarray, share: float, weights: np.ndarray | None = None
                  ) -> float:
    """
    Return t such that the weighted fraction of ``scores`` > t is as large as possible <= share.

    Ties are never split: a group of equal scores is either all above t or all below. When
    nothing may be selected, t is the largest score (``score > t`` selects none).
    """
    s = np.asarray(scores, np.float64)
    w = np.ones_like(s) if weights is None else np.asarray(weights, np.float64)
    if s.size == 0:
        return math.inf
    order = np.argsort(-s, kind='stable')
    s, w = s[order], w[order]
    uniq, start = np.unique(-s, return_index=True)  # distinct values, descending
    uniq = -uniq
    # Weighted fraction selected when the cut is just below each distinct value.
    cum = np.cumsum(w) / w.sum()
    ends = np.append(start[1:], s.size) - 1
    frac = cum[ends]
    ok = np.nonzero(frac <= share + 1e-12)[0]
    if ok.size == 0:
        return float(uniq[0])
    k = int(ok[-1])
    if k + 1 < uniq.size:
        return float((uniq[k] + uniq[k + 1]) / 2)  # midway to the next value, below it
    return float(uniq[k] - max(1e-6, 1e-6 * abs(uniq[k])))  # everything selected


def _weighted_lstsq(x: np.ndarray, y: np.ndarray, w: np.ndarray, ridge: float) -> np.ndarray:
    a = np.hstack([x, np.ones((len(x), 1))])
    sw = np.sqrt(w / w.mean())[:, None]
    reg = ridge * np.eye(a.shape[1])
    reg[-1, -1] = 0.0  # the bias is not shrunk
    return np.linalg.solve((a * sw).T @ (a * sw) + reg, (a * sw).T @ (y[:, None] * sw))[:, 0]


def _weighted_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, ridge: float,
                       iters: int = 50) -> np.ndarray:
    # Newton's method on the cross-entropy with soft targets y in [0, 1] (a fractional
    # logistic regression): the output is then a probability-like predicted disagreement.
    a = np.hstack([x, np.ones((len(x), 1))])
    w = w / w.mean()
    beta = np.zeros(a.shape[1])
    reg = ridge * np.eye(a.shape[1])
    reg[-1, -1] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(a @ beta, -60, 60)))
        g = a.T @ (w * (p - y)) + reg @ beta
        h = (a * (w * p * (1 - p))[:, None]).T @ a + reg + 1e-9 * np.eye(a.shape[1])
        step = np.linalg.solve(h, g)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta


def _clean(features: np.ndarray, dis: np.ndarray, weights: np.ndarray | None,
           recent: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = np.atleast_2d(np.asarray(features, np.float64))
    y = np.asarray(dis, np.float64).ravel()
    w = np.ones_like(y) if weights is None else np.asarray(weights, np.float64).ravel()
    r = np.ones(len(y), bool) if recent is None else np.asarray(recent, bool).ravel()
    if len(x) != len(y) or len(w) != len(y) or len(r) != len(y):
        raise ValueError(f'{len(x)} feature rows, {len(y)} disagreements, {len(w)} weights, '
                         f'{len(r)} recent flags')
    ok = np.isfinite(x).all(1) & np.isfinite(y) & np.isfinite(w) & (w > 0)
    r = r[ok]
    if not r.any():  # nothing recent survived: the whole sample is the best estimate
        r = np.ones_like(r)
    return x[ok], y[ok], w[ok], r


def fit_learned(features: np.ndarray, dis: np.ndarray, target_upload_ratio: float,
                weights: np.ndarray | None = None, min_disagreement: float = 0.1,
                explore: float = 0.05, logistic: bool = False, ridge: float = 1e-3,
                min_frames: int = 8, recent: np.ndarray | None = None,
                burst: float = 0.0, save: float = 0.0, reserve: float = 0.0) -> Fit:
    """
    Fit rule ``learned``: predicted disagreement = w . features + b (sigmoid if logistic).

    ``weights`` are per-frame sample weights, normally 1 / propensity. The threshold is the
    larger of the budget quantile of the predicted disagreement and ``min_disagreement``.
    ``recent`` (a boolean mask) restricts the budget quantile to the frames that stand for
    the near future, e.g. the newest ones: the estimator learns from all frames, but the
    budget is a rate over the stream to come, not over the history (after day -> dusk a
    quantile over mostly-day history would let every dusk frame through). ``burst`` > 0
    also caps the edge at that rate (policy ``budget``/``burst``, see
    ``laecips_core.policy.Budget``), because a threshold fitted on the past cannot.
    Raises ValueError with fewer than ``min_frames`` usable frames.
    """
    x, y, w, recent = _clean(features, dis, weights, recent)
    if len(y) < min_frames:
        raise ValueError(f'policy fit needs >= {min_frames} labelled frames, got {len(y)}')
    y = np.clip(y, 0.0, 1.0)
    beta = (_weighted_logistic if logistic else _weighted_lstsq)(x, y, w, ridge)
    params = {f'w{i}': float(v) for i, v in enumerate(beta[:-1])}
    params['b'] = float(beta[-1])
    if logistic:
        params['logistic'] = 1.0
    probe = Policy('learned', {**params, 'threshold': 0.0})
    pred = np.array([probe.score(f) for f in x])
    share = rule_share(target_upload_ratio, explore)
    t_budget = top_threshold(pred[recent], share, w[recent])
    threshold = max(t_budget, float(min_disagreement))
    params.update(threshold=threshold, target_upload_ratio=float(target_upload_ratio),
                  explore=float(explore), min_disagreement=float(min_disagreement),
                  **budget_params(target_upload_ratio, burst, save, reserve))
    sel = pred > threshold
    ratio = _ratio(sel[recent], w[recent], explore)
    resid = y - pred
    info = {'frames': int(len(y)), 'rule_share': share, 'budget_threshold': t_budget,
            'weighted_mae': float(np.average(np.abs(resid), weights=w)),
            'corr': _corr(pred, y, w), 'mean_disagreement': float(np.average(y, weights=w)),
            'selected_mean_disagreement': float(y[sel].mean()) if sel.any() else math.nan}
    return Fit(Policy('learned', params), ratio, info)


def fit_conf_ratio(conf_ratio: np.ndarray, dis: np.ndarray, target_upload_ratio: float,
                   weights: np.ndarray | None = None, min_disagreement: float = 0.1,
                   explore: float = 0.05, p: float = 0.9, min_frames: int = 8,
                   recent: np.ndarray | None = None, burst: float = 0.0,
                   save: float = 0.0, reserve: float = 0.0) -> Fit:
    """
    Fit only the threshold of the reference rule ``fixed``: upload when conf_ratio <= easy.

    ``easy`` selects the lowest-confidence frames within the budget, and no frame whose
    disagreement, predicted by a straight line in conf_ratio, is below ``min_disagreement``.
    ``recent``, ``burst``: as in :func:`fit_learned`.
    """
    x, y, w, recent = _clean(np.asarray(conf_ratio, np.float64).reshape(-1, 1), dis, weights,
                             recent)
    if len(y) < min_frames:
        raise ValueError(f'policy fit needs >= {min_frames} labelled frames, got {len(y)}')
    c = x[:, 0]
    slope, icpt = _weighted_lstsq(c[:, None], np.clip(y, 0, 1), w, 1e-6)
    share = rule_share(target_upload_ratio, explore)
    # Upload when -conf > -easy_budget, i.e. conf < easy_budget (ties never split).
    t = top_threshold(-c[recent], share, w[recent])
    easy_budget = -t if np.any(-c[recent] > t) else float(c[recent].min()) - 1e-6
    # The conf_ratio above which the line predicts less than min_disagreement.
    if slope < 0:
        easy_floor = (min_disagreement - icpt) / slope
    else:  # confidence does not lower disagreement here: the floor is all or nothing
        easy_floor = math.inf if icpt >= min_disagreement else -math.inf
    easy = float(np.clip(min(easy_budget, easy_floor), -1e-6, 1.0))
    sel = c <= easy
    ratio = _ratio(sel[recent], w[recent], explore)
    params = {'p': float(p), 'easy': easy, 'target_upload_ratio': float(target_upload_ratio),
              'explore': float(explore), 'min_disagreement': float(min_disagreement),
              **budget_params(target_upload_ratio, burst, save, reserve)}
    info = {'frames': int(len(y)), 'rule_share': share, 'budget_easy': easy_budget,
            'floor_easy': easy_floor, 'slope': float(slope), 'intercept': float(icpt),
            'corr': _corr(-c, y, w)}
    return Fit(Policy('fixed', params), ratio, info)


def budget_params(target_upload_ratio: float, burst: float, save: float = 0.0,
                  reserve: float = 0.0) -> dict[str, float]:
    """
    Return the policy parameters that cap the edge at the target (none if burst <= 0).

    ``save`` > 0 keeps that share for drift, in a reserve ``reserve`` frames deep (<= 0:
    ``burst`` deep); see laecips_core.policy.Budget.
    """
    if burst <= 0 or not 0 < target_upload_ratio <= 1:
        return {}
    out = {'budget': float(target_upload_ratio), 'burst': float(max(burst, 1.0))}
    if save > 0:
        out['save'] = float(save)
        if reserve > 0:
            out['reserve'] = float(max(reserve, 1.0))
    return out


def _ratio(sel: np.ndarray, w: np.ndarray, explore: float) -> float:
    r = float(np.average(sel, weights=w)) if len(w) else 0.0
    return r + (1 - r) * float(explore)


def _corr(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> float:
    if len(a) < 2:
        return math.nan
    ma, mb = np.average(a, weights=w), np.average(b, weights=w)
    cov = np.average((a - ma) * (b - mb), weights=w)
    va, vb = np.average((a - ma) ** 2, weights=w), np.average((b - mb) ** 2, weights=w)
    return float(cov / math.sqrt(va * vb)) if va > 0 and vb > 0 else math.nan


@dataclass(frozen=True)
class Recipe:
    """How the cloud fits a robot's policy: the trainer's parameters, and adapt_bench's."""

    rule: str = 'learned'  # 'learned' (estimator) or 'fixed' (conf_ratio threshold only)
    target_upload_ratio: float = 0.25
    min_disagreement: float = 0.1
    explore: float = 0.05
    window: int = 60  # camera frames (by seq) whose labelled ones set the budget threshold
    burst: float = 10.0  # the edge's token bucket; 0 = threshold only
    # Half the budget kept for drift, up to 60 frames of it (30 s at 2 Hz): on CamVid it
    # spends at the dusk onset what the day saved (measured in docs/eval/camvid).
    save: float = 0.5  # share of the budget the edge keeps for drift (policy.Budget)
    reserve: float = 60.0  # frames of savings the edge may hold; 0 = burst


def fit_policy(dist: Distiller, state: dict, recipe: Recipe) -> Fit:
    """
    Fit a robot's policy on its distiller's kept pairs, scored with the model ``state``.

    Each pair is weighted by its inverse upload propensity; only the ``recipe.window``
    newest frames set the budget threshold. Raises ValueError with too few frames.
    """
    from laecips_cloud.distill import resize_label
    pairs = dist.scored_pairs()
    preds, feats = dist.predict(dist.build(state), [q.rgb for q in pairs])
    dis = np.array([disagreement(e, resize_label(q.label, dist.size), dist.void)
                    for e, q in zip(preds, pairs)])
    w = np.array([1.0 / max(q.propensity, 1e-3) for q in pairs])
    recent = recent_mask([q.seq for q in pairs], recipe.window)
    args = dict(weights=w, min_disagreement=recipe.min_disagreement, explore=recipe.explore,
                recent=recent, burst=recipe.burst, save=recipe.save, reserve=recipe.reserve)
    if recipe.rule == 'fixed':
        fit = fit_conf_ratio(feats[:, 0], dis, recipe.target_upload_ratio, **args)
    else:
        fit = fit_learned(feats, dis, recipe.target_upload_ratio, **args)
    fit.info.setdefault('pairs', len(pairs))
    return fit
