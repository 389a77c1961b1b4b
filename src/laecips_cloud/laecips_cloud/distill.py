# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Online distillation of cloud labels into a copy of an edge model, gated by agreement.

``ReplayBuffer`` keeps a bounded set of (frame, cloud label) pairs: a FIFO of the most recent
ones plus a reservoir sample of everything that fell out of the FIFO, so the current
conditions dominate but older ones are not forgotten. ``Distiller`` owns one *student* (a
copy of the edge model) that it fine-tunes on the buffer with cross-entropy (void ignored)
and light augmentation, at the edge model's own input size. Every round it scores the
student and the *active* version (what the edge runs) on a held-out slice of
cloud-labelled frames; when the student agrees with the cloud better than the active version
by ``gate_margin`` it becomes a :class:`Candidate`. The caller pushes it and reports back
with :meth:`Distiller.commit` (accepted) or :meth:`Distiller.reject`; the version before
the last commit is kept so :meth:`Distiller.rollback` can restore it. ``train_params``
names the part of the student that trains (:data:`TRAIN_PARTS`); the rest stays
bit-identical to the version the edge holds, so a delta push (``laecips_core.delta``)
leaves it out.

No rclpy here: the trainer node wires this to topics and services.
"""

from __future__ import annotations

from collections import deque
import copy
from dataclasses import dataclass, field
import json
import logging
import math
import threading
import time
from typing import Callable

import numpy as np
from PIL import Image
import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812

from laecips_core import anchor, calibration, hardness, models, weights
from laecips_core.anchor import AnchorSet
from laecips_core.metrics import confusion, miou, pixel_accuracy

_log = logging.getLogger(__name__)
# Label values never trained on: the class map's void and the PNG "no label" value.
_NO_LABEL = 255
_BN = nn.modules.batchnorm._BatchNorm

# Parts of the student ``DistillConfig.train_params`` may name ('all', or parts joined by
# commas): parameter-name prefixes (FastSCNN's; another architecture must match at least one
# parameter), or None for the BatchNorm parts. A frozen module is frozen wholly: its
# BatchNorm layers keep their running statistics too, so its delta is exactly zero.
TRAIN_PARTS: dict[str, tuple[str, ...] | None] = {
    # Pyramid pooling, feature fusion and classifier: 14 % of the weights.
    'decoder': ('ppm.', 'fuse_low.', 'fuse_high.', 'classifier.'),
    'classifier': ('classifier.',),
    'norm': None,  # every BatchNorm's scale and shift, and its running statistics
    'stats': None,  # every BatchNorm's running statistics only (no gradient)
}


def parse_train_params(spec: str) -> tuple[str, ...]:
    """Return the parts ``spec`` names (('all',) for all); ValueError when it is not valid."""
    if spec.strip() == 'all':
        return ('all',)
    parts = tuple(p.strip() for p in spec.split(',') if p.strip())
    if not parts or any(p not in TRAIN_PARTS for p in parts):
        raise ValueError(f'train_params {spec!r}: choose all or parts of {sorted(TRAIN_PARTS)} '
                         "joined by ','")
    return parts


def select_params(model: nn.Module, spec: str) -> tuple[set[str], set[str]]:
    """
    Return what ``spec`` ('all' or parts of TRAIN_PARTS) trains in ``model``.

    That is (names of the parameters to train, names of the BatchNorm modules whose running
    statistics follow the training data). Raises ValueError for an unknown part or a spec
    that trains no parameter of ``model``.
    """
    params = dict(model.named_parameters())
    bns = {n: m for n, m in model.named_modules() if isinstance(m, _BN)}
    parts = parse_train_params(spec)
    if parts == ('all',):
        return set(params), set(bns)
    train: set[str] = set()
    for part in parts:
        if part == 'norm':
            train |= {f'{b}.{k}' for b, m in bns.items() for k, _ in m.named_parameters()}
        elif TRAIN_PARTS[part]:
            train |= {n for n in params if n.startswith(TRAIN_PARTS[part])}
    if not train:
        raise ValueError(f'train_params {spec!r} trains no parameter of this model')
    stats = set(bns) if {'norm', 'stats'} & set(parts) else {
        b for b, m in bns.items() if any(f'{b}.{k}' in train for k, _ in m.named_parameters())}
    return train, stats


@dataclass(eq=False)  # pairs are compared by identity (forget_recent), never by content
class Pair:
    """One cloud-labelled frame, stored at the size the distiller trains at."""

    rgb: np.ndarray  # HxWx3 uint8 RGB
    label: np.ndarray  # HxW uint8 class ids (void / 255 ignored)
    seq: int = 0
    # The edge's features when it uploaded the frame, and the probability it was uploaded
    # (1 when the rule selected it, the exploration rate otherwise): see policy_fit.
    features: np.ndarray | None = None
    propensity: float = 1.0
    stamp: float = field(default_factory=time.monotonic)
    # How far each pixel's cloud label can be trusted: the labeller's calibrated confidence
    # (uint8, 255 = 1.0) at the stored size; None = fully (a label without confidence).
    weight: np.ndarray | None = None
    # The labeller's class probabilities (CxhxW uint8, 255 = 1.0), at a size of its own (a
    # coarse grid is enough: they are smooth); None = a hard label only.
    soft: np.ndarray | None = None


class ReplayBuffer:
    """
    A bounded buffer favouring recent items: a FIFO for the newest plus a reservoir for the rest.

    ``capacity * recent_fraction`` newest items are always kept; items pushed out of that
    FIFO enter a reservoir of the remaining slots by reservoir sampling, so every older item
    has the same chance of still being there. Sampling is uniform over what is kept, hence
    recent items are drawn more often than their share of the history.
    """

    def __init__(self, capacity: int = 256, recent_fraction: float = 0.75, seed: int = 0):
        if capacity < 1:
            raise ValueError('replay buffer capacity must be >= 1')
        self.capacity = int(capacity)
        n_recent = max(1, min(self.capacity, round(self.capacity * recent_fraction)))
        self.recent: deque = deque(maxlen=n_recent)
        self.n_old = self.capacity - n_recent
        self.old: list = []
        self.evicted = 0  # items that ever left the FIFO
        self.added = 0
        self._rng = np.random.default_rng(seed)

    def add(self, item: object) -> None:
        """Append ``item``; the oldest FIFO item moves to the reservoir (or is dropped)."""
        if len(self.recent) == self.recent.maxlen:
            out = self.recent[0]
            self.evicted += 1
            if len(self.old) < self.n_old:
                self.old.append(out)
            elif self.n_old:
                j = int(self._rng.integers(0, self.evicted))
                if j < self.n_old:
                    self.old[j] = out
        self.recent.append(item)
        self.added += 1

    def items(self) -> list:
        """Return everything kept, oldest reservoir items first, then the FIFO in time order."""
        return list(self.old) + list(self.recent)

    def sample(self, n: int, rng: np.random.Generator) -> list:
        """Draw ``n`` items uniformly (without replacement when enough are kept)."""
        pool = self.items()
        if not pool:
            return []
        idx = rng.choice(len(pool), n, replace=len(pool) < n)
        return [pool[i] for i in idx]

    def __len__(self) -> int:
        return len(self.recent) + len(self.old)


@dataclass
class DistillConfig:
    """Training, validation and gating parameters (the trainer node's ROS parameters)."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch: int = 8
    steps_per_round: int = 40
    min_frames: int = 16  # training frames needed before the first round
    buffer_size: int = 256
    recent_fraction: float = 0.75
    val_fraction: float = 0.2  # share of incoming pairs held out for validation
    val_size: int = 48  # newest held-out frames kept
    gate_margin: float = 0.005  # required gain in agreement (gate_metric, 0..1 scale)
    gate_metric: str = 'miou'  # 'miou' or 'pixel_acc' vs the cloud labels
    scale: tuple[float, float] = (1.0, 1.3)  # random zoom relative to the input size
    jitter: float = 0.2  # brightness/contrast/saturation factors in [1 - j, 1 + j]
    # Class weights (median frequency / frequency) ** 0.5 from the cloud labels seen, as the
    # factory training does: thin classes (poles, signs, people) count for mIoU.
    class_balance: bool = True
    idle_rounds: int = 2  # rounds run without new frames before the worker waits
    seed: int = 0
    # A candidate may lose at most this much mIoU (0-1) on the anchor set (factory data with
    # its labels) against the factory model: the gate that a wrong cloud cannot talk round.
    max_anchor_drop: float = 0.01
    # Rehearsal frames (factory data with its labels) added to every training batch, per
    # stream pair in it, when the distiller has them.
    anchor_mix: float = 0.25
    # What the student trains: 'all' or parts of TRAIN_PARTS joined by ','. Frozen parts cost
    # no push bytes. Measured (docs/bench/push_subsets.json, 3 rounds on CamVid dusk): the
    # decoder with every BatchNorm's statistics is 3.7 % of a full push as an int8 delta
    # (training everything: 21.8 %) and leaves the edge at 41.3 dusk mIoU (everything: 40.4).
    train_params: str = 'decoder,stats'
    # Share of the loss taken from the labeller's class probabilities (soft targets, kept in
    # the cloud) on the pairs that carry them; the rest from its hard labels. 0: hard only.
    soft_weight: float = 0.0


@dataclass
class Candidate:
    """A student snapshot that passed the gate, ready to push as safetensors bytes."""

    version: int
    data: bytes
    sha256: str
    state: dict[str, torch.Tensor]
    val_before: dict[str, float]
    val_after: dict[str, float]
    steps: int
    frames_seen: int
    anchor: dict[str, float] = field(default_factory=dict)


class Distiller:
    """
    Fine-tune a copy of an edge model on cloud labels and emit gated candidates.

    ``state_dict`` and ``meta`` are the version the edge runs now (e.g. the factory
    weights). ``on_candidate(candidate)`` is called from the worker thread when a student
    passes the gate; until the caller resolves it with :meth:`commit` or :meth:`reject` no
    other candidate is emitted (no pile-up of pushes), though training goes on.
    """

    def __init__(self, state_dict: dict[str, torch.Tensor], meta: weights.WeightsMeta,
                 config: DistillConfig | None = None,
                 on_candidate: Callable[[Candidate], None] | None = None,
                 anchor_set: AnchorSet | None = None, rehearsal: AnchorSet | None = None):
        self.cfg = config or DistillConfig()
        if self.cfg.gate_metric not in ('miou', 'pixel_acc'):
            raise ValueError(f'gate_metric must be miou or pixel_acc, not {self.cfg.gate_metric}')
        self.meta = meta
        self.void = meta.class_map.void
        self.num_classes = meta.num_classes
        self.size = tuple(int(v) for v in meta.input_size)
        # Frames are stored zoomed by the largest augmentation scale, so a crop of any
        # scale is a downscale (never an upsample of a stored frame).
        self.store_size = tuple(math.ceil(v * self.cfg.scale[1]) for v in self.size)
        self._mean = torch.tensor(meta.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(meta.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.model = models.create(meta.arch, self.num_classes, **meta.arch_cfg)
        weights.check(state_dict, self.model)
        self.model.load_state_dict(state_dict)
        train, self._bn_train = select_params(self.model, self.cfg.train_params)
        for name, p in self.model.named_parameters():
            p.requires_grad_(name in train)
        self._bn_frozen = [m for n, m in self.model.named_modules()
                           if isinstance(m, _BN)
                           and n not in self._bn_train]
        self.active = self._snapshot()
        self.active_version = int(meta.version)
        self.previous: tuple[int, dict[str, torch.Tensor]] | None = None
        self._active_model = self.build(self.active)
        self.on_candidate = on_candidate
        self.buffer = ReplayBuffer(self.cfg.buffer_size, self.cfg.recent_fraction, self.cfg.seed)
        self.val: deque[Pair] = deque(maxlen=self.cfg.val_size)
        self._val_rev = 0  # bumped when the validation set changes
        self._active_val: tuple[int, dict[str, float]] | None = None
        self._rng = np.random.default_rng(self.cfg.seed)
        self._gen = torch.Generator().manual_seed(self.cfg.seed)
        self._opt = self._new_opt()
        self.pending: Candidate | None = None
        self._next_version = self.active_version + 1
        self.steps = 0  # optimiser steps of the student
        self._class_pixels = np.zeros(self.num_classes, np.float64)
        self.frames_seen = 0  # pairs added (train + val)
        self.rounds = 0
        self.last_round: dict = {}
        self._lock = threading.RLock()  # buffer, val set, active/previous, pending
        self._model_lock = threading.Lock()  # the student (worker vs rollback)
        self._wake = threading.Condition(self._lock)
        self._new_since_round = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The newest additions, so labels found untrustworthy after the fact can be taken
        # back (the teacher-health verdict needs a few labels to form).
        self._added: deque[tuple[str, Pair]] = deque(maxlen=64)
        self.forgotten = 0
        self.anchor_rejections = 0
        self.anchor: tuple[np.ndarray, np.ndarray] | None = None
        self.anchor_factory: dict[str, float] = {}
        self._anchor_base: tuple[np.ndarray, np.ndarray] | None = None
        self.rehearsal = [Pair(resize_rgb(r, self.store_size), resize_label(g, self.store_size))
                          for r, g in zip(rehearsal.rgbs, rehearsal.labels)] if rehearsal else []
        if anchor_set is not None and len(anchor_set):
            self.anchor = (np.stack([resize_rgb(r, self.size) for r in anchor_set.rgbs]),
                           np.stack([resize_label(g, self.size) for g in anchor_set.labels]))
            self.anchor_factory = self.anchor_score(self._active_model)
            self.meta = copy.deepcopy(meta)
            self.meta.extra['calibration'] = json.dumps(self.anchor_factory.pop('calibration'))

    # ---- data ---------------------------------------------------------------------------
    def add(self, rgb: np.ndarray, label: np.ndarray, seq: int = 0,
            features: np.ndarray | None = None, propensity: float = 1.0,
            confidence: np.ndarray | None = None, soft: np.ndarray | None = None) -> str:
        """
        Store one (frame, cloud label) pair; return 'train' or 'val' (where it went).

        ``confidence``: the label's calibrated per-pixel confidence (HxW float in [0, 1]),
        which weighs its pixels in training; None weighs every pixel 1. ``soft``: the
        labeller's class probabilities (CxhxW, uint8 with 255 = 1.0, any h and w).
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or label.shape != rgb.shape[:2]:
            raise ValueError(f'frame {rgb.shape} and label {label.shape} do not match')
        if soft is not None and (soft.ndim != 3 or soft.shape[0] != self.num_classes
                                 or soft.dtype != np.uint8):
            raise ValueError(f'soft targets {soft.shape} {soft.dtype} are not '
                             f'{self.num_classes}xHxW uint8')
        with self._lock:
            # Every k-th pair is held out: deterministic, and spread over time like the data.
            k = round(1 / self.cfg.val_fraction) if self.cfg.val_fraction > 0 else 0
            to_val = bool(k) and self.frames_seen % k == k - 1
            self.frames_seen += 1
        size = self.size if to_val else self.store_size
        weight = None
        if confidence is not None:
            weight = resize_label(np.clip(np.rint(np.asarray(confidence) * 255), 0, 255)
                                  .astype(np.uint8), size)
        pair = Pair(resize_rgb(rgb, size), resize_label(label, size), int(seq),
                    None if features is None else np.asarray(features, np.float64),
                    float(propensity), weight=weight,
                    soft=None if soft is None else np.array(soft))
        with self._lock:
            self._added.append(('val' if to_val else 'train', pair))
            if to_val:
                self.val.append(pair)
                self._val_rev += 1
            else:
                self.buffer.add(pair)
                self._new_since_round += 1
                self._class_pixels += np.bincount(pair.label.ravel(), minlength=256)[
                    :self.num_classes]
            self._wake.notify_all()
        return 'val' if to_val else 'train'

    def forget_recent(self, n: int) -> int:
        """Take back the last ``n`` pairs added (labels judged untrustworthy after the fact)."""
        with self._lock:
            gone = 0
            while self._added and gone < n:
                where, pair = self._added.pop()
                if where == 'val':
                    if pair in self.val:
                        self.val.remove(pair)
                        self._val_rev += 1
                elif pair in self.buffer.recent:
                    self.buffer.recent.remove(pair)
                elif pair in self.buffer.old:
                    self.buffer.old.remove(pair)
                gone += 1
            self.forgotten += gone
            return gone

    def ready(self) -> bool:
        """Return True once there are enough frames to train and validate."""
        with self._lock:
            return len(self.buffer) >= self.cfg.min_frames and len(self.val) > 0

    # ---- training -----------------------------------------------------------------------
    def _new_opt(self) -> torch.optim.Optimizer:
        # Frozen parameters stay out: AdamW's weight decay would move them.
        return torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad],
                                 lr=self.cfg.lr,
                                 weight_decay=self.cfg.weight_decay)

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._mean) / self._std

    def _batch(self, pairs: list[Pair]
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """
        Random zoom + crop to the input size, horizontal flip and colour jitter.

        Return normalised images, labels, pixel weights and, when a pair carries soft
        targets and soft_weight > 0, the class probabilities (B, C, h, w; rows of pairs
        without them are 0).
        """
        h, w = self.size
        c = self.num_classes
        use_soft = self.cfg.soft_weight > 0 and any(p.soft is not None for p in pairs)
        xs, ys = [], []
        for p in pairs:
            x = torch.from_numpy(p.rgb).permute(2, 0, 1)[None].float().div_(255)
            # Label, pixel weight and soft targets travel together through every step.
            wt = (np.full(p.label.shape, 255, np.uint8) if p.weight is None else p.weight)
            y = torch.from_numpy(np.stack([p.label, wt]))[None].float()
            if use_soft:
                soft = (torch.zeros(1, c, *p.label.shape) if p.soft is None else F.interpolate(
                    torch.from_numpy(p.soft)[None].float(), p.label.shape, mode='bilinear',
                    align_corners=False))
                y = torch.cat([y, soft], 1)
            s = float(self._rng.uniform(*self.cfg.scale))
            hw = (max(h, round(h * s)), max(w, round(w * s)))
            if hw != tuple(x.shape[-2:]):
                x = F.interpolate(x, hw, mode='bilinear', align_corners=False, antialias=True)
                y = F.interpolate(y, hw, mode='nearest')
            top = int(self._rng.integers(0, hw[0] - h + 1))
            left = int(self._rng.integers(0, hw[1] - w + 1))
            x, y = x[..., top:top + h, left:left + w], y[..., top:top + h, left:left + w]
            if self._rng.random() < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            xs.append(self._jitter(x))
            ys.append(y)
        yw = torch.cat(ys)
        y, wt = yw[:, 0].long(), yw[:, 1] / 255.0
        y[(y == _NO_LABEL) | (y >= self.num_classes)] = self.void
        soft = yw[:, 2:] / 255.0 if use_soft else None
        return self._normalise(torch.cat(xs)), y, wt, soft

    def _jitter(self, x: torch.Tensor) -> torch.Tensor:
        j = self.cfg.jitter
        if j <= 0:
            return x
        b, c, s = (float(v) for v in self._rng.uniform(1 - j, 1 + j, 3))
        grey = x.mean(1, keepdim=True)
        x = grey + (x - grey) * s  # saturation
        x = (x - x.mean()) * c + x.mean()  # contrast
        return (x * b).clamp_(0, 1)  # brightness

    def class_weights(self) -> torch.Tensor | None:
        """Return the loss weights per class (None when class balancing is off)."""
        if not self.cfg.class_balance:
            return None
        with self._lock:
            px = self._class_pixels.copy()
        if px.sum() == 0:
            return None
        freq = px / px.sum()
        seen = freq > 0
        med = np.median(freq[seen])
        # Classes absent from the labels get weight 1: they add nothing to the loss anyway.
        w = np.where(seen, np.sqrt(med / np.maximum(freq, 1e-12)), 1.0).clip(0.2, 5.0)
        return torch.tensor(w, dtype=torch.float32)

    def train_steps(self, n: int) -> float:
        """Run ``n`` optimiser steps on the buffer; return the mean loss (NaN if empty)."""
        losses = []
        with self._model_lock:
            self.model.train()
            for m in self._bn_frozen:  # frozen statistics: eval mode neither reads nor moves them
                m.eval()
            for _ in range(n):
                # Rehearsal frames join the batch rather than displace stream pairs: the
                # drift is learnt as fast as without them (taking them from the batch cost
                # 3 dusk mIoU offline).
                k = round(self.cfg.batch * self.cfg.anchor_mix) if self.rehearsal else 0
                with self._lock:
                    pairs = self.buffer.sample(self.cfg.batch, self._rng)
                if not pairs:
                    break
                n_re = len(self.rehearsal)
                pairs += [self.rehearsal[i] for i in self._rng.choice(n_re, k, replace=n_re < k)]
                x, y, wt, soft = self._batch(pairs)
                logits = models.upsample(self.model(x), self.size)
                cw = self.class_weights()
                per_px = F.cross_entropy(logits, y, weight=cw, ignore_index=self.void,
                                         reduction='none')
                # Cloud pixels weigh as much as they can be trusted (calibrated confidence);
                # normalised like the class-weighted mean, so the scale does not change.
                valid = (y != self.void).float() * wt
                norm = (valid * (cw[y.clamp(max=self.num_classes - 1)] if cw is not None
                                 else 1.0)).sum()
                loss = (per_px * wt).sum() / norm if norm > 0 else per_px.sum() * math.nan
                if soft is not None:
                    loss = self._with_soft(loss, logits, soft, wt, cw)
                if not torch.isfinite(loss):
                    continue  # an all-void batch; nothing to learn from
                self._opt.zero_grad(set_to_none=True)
                loss.backward()
                self._opt.step()
                losses.append(loss.item())
                self.steps += 1
        return float(np.mean(losses)) if losses else math.nan

    def _with_soft(self, hard: torch.Tensor, logits: torch.Tensor, soft: torch.Tensor,
                   wt: torch.Tensor, cw: torch.Tensor | None) -> torch.Tensor:
        """Blend the hard-label loss with cross-entropy to the labeller's probabilities."""
        # Where the labeller was unsure its probabilities say what else it saw: the student
        # learns the ranking, not just the argmax (pixels of pairs without soft targets: 0).
        has = soft.sum(1) > 0.5
        px = wt * has.float()
        if cw is not None:  # class balance by the labeller's most likely class, as above
            px = px * cw[soft.argmax(1)]
        norm = px.sum()
        if norm <= 0:
            return hard
        ce = -(soft * F.log_softmax(logits, 1)).sum(1)
        a = self.cfg.soft_weight
        return (1 - a) * hard + a * (ce * px).sum() / norm

    # ---- evaluation ---------------------------------------------------------------------
    def build(self, state: dict[str, torch.Tensor]) -> nn.Module:
        """Return a new edge model (eval mode) holding ``state``."""
        m = models.create(self.meta.arch, self.num_classes, **self.meta.arch_cfg)
        m.load_state_dict(state)
        return m.eval()

    def scored_pairs(self) -> list[Pair]:
        """Return every kept pair (training buffer and held-out), e.g. for policy fitting."""
        with self._lock:
            return self.buffer.items() + list(self.val)

    @torch.inference_mode()
    def predict(self, model: nn.Module, rgbs: list[np.ndarray], batch: int = 8
                ) -> tuple[np.ndarray, np.ndarray]:
        """Return (labels at the input size (B, h, w) uint8, features (B, 3)) of ``model``."""
        model.eval()
        labs, feats = [], []
        for i in range(0, len(rgbs), batch):
            x = torch.from_numpy(np.stack([resize_rgb(r, self.size) for r in rgbs[i:i + batch]]))
            x = self._normalise(x.permute(0, 3, 1, 2).float().div_(255))
            native = model(x)
            # Features from the native-resolution logits, as the edge computes them.
            feats.append(hardness.features(native))
            labs.append(models.upsample(native, self.size).argmax(1).to(torch.uint8).numpy())
        if not labs:
            return np.zeros((0, *self.size), np.uint8), np.zeros((0, 3))
        return np.concatenate(labs), np.concatenate(feats)

    def agreement(self, model: nn.Module, pairs: list[Pair] | None = None) -> dict[str, float]:
        """Return pixel accuracy and mIoU of ``model`` against the cloud labels of ``pairs``."""
        if pairs is None:
            with self._lock:
                pairs = list(self.val)
        if not pairs:
            return {'pixel_acc': math.nan, 'miou': math.nan, 'frames': 0}
        pred, _ = self.predict(model, [p.rgb for p in pairs])
        gt = np.stack([resize_label(p.label, self.size) for p in pairs])
        conf = confusion(pred, gt, self.num_classes, self.void)
        return {'pixel_acc': pixel_accuracy(conf), 'miou': miou(conf), 'frames': len(pairs)}

    @torch.inference_mode()
    def anchor_score(self, model: nn.Module) -> dict:
        """
        Score ``model`` on the anchor set as the edge would run it; fit its calibration.

        The edge keeps the factory model beside a pushed one and answers each frame with the
        model whose mean calibrated confidence is higher (laecips_edge.engine.set_base), so
        ``miou`` scores that pair; ``miou_alone`` the model by itself.
        """
        if self.anchor is None:
            return {}
        rgbs, gts = self.anchor
        model.eval()
        preds, confs = [], []
        for i in range(0, len(rgbs), 8):
            x = torch.from_numpy(rgbs[i:i + 8]).permute(0, 3, 1, 2).float().div_(255)
            prob = models.upsample(model(self._normalise(x)), self.size).softmax(1)
            c, p = prob.max(1)
            preds.append(p.to(torch.uint8).numpy())
            confs.append(c.numpy())
        pred, conf = np.concatenate(preds), np.concatenate(confs)
        valid = gts != self.void
        cal = calibration.fit(conf[valid], (pred == gts)[valid])
        sure = cal(conf).reshape(len(pred), -1).mean(1)  # per frame
        alone = miou(confusion(pred, gts, self.num_classes, self.void))
        if self._anchor_base is None:  # this is the factory model: the base from now on
            self._anchor_base = (pred, sure)
        base_pred, base_sure = self._anchor_base
        chosen = np.where((base_sure > sure)[:, None, None], base_pred, pred)
        cm = confusion(chosen, gts, self.num_classes, self.void)
        return {'miou': miou(cm), 'pixel_acc': pixel_accuracy(cm), 'miou_alone': alone,
                'base_frames': int((base_sure > sure).sum()), 'calibration': cal.to_list()}

    def active_agreement(self) -> dict[str, float]:
        """Return the active version's agreement on the current validation set (cached)."""
        with self._lock:
            rev, pairs = self._val_rev, list(self.val)
            cached = self._active_val
        if cached and cached[0] == rev:
            return cached[1]
        with self._lock:
            model = self._active_model
        score = self.agreement(model, pairs)
        with self._lock:
            self._active_val = (rev, score)
        return score

    # ---- rounds, gate, versions ---------------------------------------------------------
    def round(self, steps: int | None = None) -> Candidate | None:
        """Train one round, validate, and return a candidate when the gate passes."""
        with self._lock:
            self._new_since_round = 0
            val = list(self.val)
        loss = self.train_steps(steps or self.cfg.steps_per_round)
        before = self.active_agreement()
        with self._model_lock:
            after = self.agreement(self.model, val)
        self.rounds += 1
        m = self.cfg.gate_metric
        passed = bool(after[m] > before[m] + self.cfg.gate_margin) if val else False
        self.last_round = {'round': self.rounds, 'loss': loss, 'steps': self.steps,
                           'before': before, 'after': after, 'passed': passed}
        _log.info('round %d: loss %.3f, %s %.4f -> %.4f%s', self.rounds, loss, m, before[m],
                  after[m], ' (candidate)' if passed else '')
        if not passed:
            return None
        with self._model_lock:
            anc = self.anchor_score(self.model)
            state = self._snapshot()
        if anc:
            ok, why = anchor.gate(anc['miou'], self.anchor_factory['miou'],
                                  self.cfg.max_anchor_drop)
            self.last_round['anchor'] = {'miou': anc['miou'], 'passed': ok}
            _log.info('round %d: %s%s', self.rounds, why, '' if ok else ': rejected')
            if not ok:
                self.anchor_rejections += 1
                return None
        with self._lock:
            if self.pending is not None:
                return None
            version = self._next_version
            self._next_version += 1
            meta = copy.deepcopy(self.meta)
            meta.version = version
            meta.training_data = (f'{self.meta.training_data}; distilled from cloud labels: '
                                  f'{self.frames_seen} frames, {self.steps} steps')
            if anc:  # the edge compares its calibrated confidence with the cloud's
                meta.extra['calibration'] = json.dumps(anc['calibration'])
            data = weights.to_bytes(state, meta)
            cand = Candidate(version, data, weights.sha256(data), state, before, after,
                             self.steps, self.frames_seen,
                             {k: v for k, v in anc.items() if k != 'calibration'})
            self.pending = cand
        return cand

    def commit(self, cand: Candidate) -> None:
        """Record that the edge accepted ``cand``: it becomes active, the old one previous."""
        with self._lock:
            self.previous = (self.active_version, self.active)
            self.active, self.active_version = cand.state, cand.version
            # A new module rather than load_state_dict: the worker may be scoring the old one.
            self._active_model = self.build(cand.state)
            self._active_val = None
            if self.pending is cand:
                self.pending = None

    def reject(self, cand: Candidate) -> None:
        """Forget ``cand`` (push failed or refused) so a later round may try again."""
        with self._lock:
            if self.pending is cand:
                self.pending = None

    def ensure_version_above(self, version: int) -> None:
        """Give later candidates versions above ``version`` (an edge that is already ahead)."""
        with self._lock:
            self._next_version = max(self._next_version, int(version) + 1)

    def rollback(self) -> Candidate | None:
        """
        Restore the version before the last commit as a new candidate (for a re-push).

        The student restarts from it with a fresh optimiser; the returned candidate carries
        a new, larger version number (edges only accept increasing versions). None when
        there is nothing to roll back to.
        """
        # Lock order everywhere: the student first, then the bookkeeping.
        with self._model_lock, self._lock:
            if self.previous is None:
                return None
            old_version, state = self.previous
            self.model.load_state_dict(state)
            self._opt = self._new_opt()
            version = self._next_version
            self._next_version += 1
            meta = copy.deepcopy(self.meta)
            meta.version = version
            meta.training_data = f'{self.meta.training_data}; rollback to version {old_version}'
            data = weights.to_bytes(state, meta)
            self.previous = None
            return Candidate(version, data, weights.sha256(data), state, {}, {}, self.steps,
                             self.frames_seen)

    # ---- background worker --------------------------------------------------------------
    def start(self) -> None:
        """Train in a daemon thread: rounds while frames arrive, idle otherwise."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name='distiller', daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the worker to stop after its current step and wait for it."""
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        idle = 0
        while not self._stop.is_set():
            with self._lock:
                fresh = self._new_since_round > 0
                if not self.ready() or (not fresh and idle >= self.cfg.idle_rounds):
                    self._wake.wait(1.0)
                    continue
            idle = 0 if fresh else idle + 1
            try:
                cand = self.round()
            except Exception:  # keep the worker alive; the node logs it
                _log.exception('distillation round failed')
                self._stop.wait(1.0)
                continue
            if cand is not None and self.on_candidate is not None:
                self.on_candidate(cand)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize HxWx3 uint8 to ``size`` = (h, w) with PIL's bilinear filter, as the edge does."""
    if tuple(rgb.shape[:2]) == tuple(size):
        return np.array(rgb)  # a copy: the caller may reuse its buffer
    return np.array(Image.fromarray(np.ascontiguousarray(rgb)).resize(  # a writable copy
        (int(size[1]), int(size[0])), Image.BILINEAR))


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxW class-id map to ``size`` (nearest neighbour)."""
    if tuple(label.shape[:2]) == tuple(size):
        return np.array(label)
    y = torch.from_numpy(np.array(label))[None, None].float()  # decoded maps are read-only
    return F.interpolate(y, tuple(size), mode='nearest')[0, 0].to(torch.uint8).numpy()
