# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
What one system run produced, frame by frame, and the protocol's rules to score it (no rclpy).

Events are keyed by the camera stamp (the replay restamps frames; the edge copies the header
into its masks, hard frames and the cloud's labels). ``Recording.finalize`` applies the
evaluation protocol of DESIGN.md:

* A frame's final mask is the cloud's refined mask when it arrived within ``deadline``
  seconds of the edge's mask, else the edge's mask. Pixels the cloud left void (``void`` or
  255) take the edge's class, so abstaining is never rewarded.
* A frame the edge skipped (no mask) is scored with the last final mask of an earlier
  frame (all class 0 before any mask existed) and has no latency.
* Latency = arrival of the final mask at the recorder - camera stamp (same machine clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math

import numpy as np

from laecips_core import metrics


@dataclass
class _Mask:
    t_ns: int
    mask: np.ndarray


@dataclass
class FrameResult:
    """One scored frame (arrays only for the frames asked for in ``keep``)."""

    index: int
    phase: str
    name: str
    stamp_ns: int
    source: str  # 'cloud', 'edge', 'last' (skipped: previous mask), 'none'
    uploaded: bool
    labelled: bool  # a cloud label came back (in time or not)
    latency_s: float  # NaN for skipped frames
    cloud_delay_s: float  # refined mask arrival - edge mask arrival, NaN if none
    bytes_up: int
    bytes_down: int
    hardness: float
    features: list[float]
    conf: np.ndarray
    edge_conf: np.ndarray | None = None  # the edge's own mask (None when it skipped)
    edge_mask: np.ndarray | None = None
    final_mask: np.ndarray | None = None

    def to_dict(self) -> dict:
        """Return the JSON-serialisable fields (no masks)."""
        d = {k: getattr(self, k) for k in (
            'index', 'phase', 'name', 'stamp_ns', 'source', 'uploaded', 'labelled',
            'latency_s', 'cloud_delay_s', 'bytes_up', 'bytes_down', 'hardness', 'features')}
        d['conf'] = self.conf.tolist()
        d['edge_conf'] = self.edge_conf.tolist() if self.edge_conf is not None else None
        return d


@dataclass
class Recording:
    """Everything the recorder saw during one run."""

    gts: dict[int, tuple[str, str, np.ndarray]] = field(default_factory=dict)
    edge: dict[int, _Mask] = field(default_factory=dict)
    refined: dict[int, _Mask] = field(default_factory=dict)
    hard: dict[int, dict] = field(default_factory=dict)
    labels: dict[int, int] = field(default_factory=dict)
    # Frames the bridge labelled past their deadline, for the trainer only (CloudLabel
    # purpose TRAINING): the edge keeps its own mask, so no refined mask comes for them.
    training: set[int] = field(default_factory=set)
    # The cloud bridge's latest CloudStats counters (its totals since start).
    cloud: dict = field(default_factory=dict)
    pushes: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    bytes_hard_total: int = 0
    bytes_labels_total: int = 0

    # ---- events ------------------------------------------------------------------------
    def on_gt(self, stamp_ns: int, phase: str, name: str, gt: np.ndarray) -> None:
        self.gts[stamp_ns] = (phase, name, gt)

    def on_edge_mask(self, stamp_ns: int, mask: np.ndarray, t_ns: int) -> None:
        self.edge.setdefault(stamp_ns, _Mask(t_ns, mask))

    def on_refined(self, stamp_ns: int, mask: np.ndarray, t_ns: int) -> None:
        self.refined.setdefault(stamp_ns, _Mask(t_ns, mask))

    def on_hard_frame(self, stamp_ns: int, nbytes: int, hardness: float = math.nan,
                      features: list[float] | None = None) -> None:
        self.bytes_hard_total += nbytes
        h = self.hard.setdefault(stamp_ns, {'bytes': 0, 'hardness': hardness,
                                            'features': list(features or [])})
        h['bytes'] += nbytes

    def on_label(self, stamp_ns: int, nbytes: int, training: bool = False) -> None:
        self.bytes_labels_total += nbytes
        if training:
            self.training.add(stamp_ns)
        self.labels[stamp_ns] = self.labels.get(stamp_ns, 0) + nbytes

    def on_weight_push(self, push: dict) -> None:
        self.pushes.append(push)

    # ---- progress ----------------------------------------------------------------------
    def pending_labels(self) -> int:
        """Return hard frames of this run still without a cloud label."""
        return sum(1 for s in self.hard if s not in self.labels and s in self.gts)

    def pending_refined(self) -> int:
        """Return labelled frames whose refined mask has not come back from the edge yet."""
        return sum(1 for s in self.labels
                   if s not in self.refined and s not in self.training and s in self.gts)

    def last_frame_done(self) -> bool:
        """Return whether the newest frame has a mask (the edge works in stamp order)."""
        if not self.gts:
            return False
        last = max(self.gts)
        return last in self.edge or last in self.refined

    # ---- scoring -----------------------------------------------------------------------
    def finalize(self, deadline_s: float, num_classes: int = metrics.NUM_CLASSES,
                 void: int = metrics.VOID, keep: set[int] | frozenset = frozenset()
                 ) -> list[FrameResult]:
        """Score every frame with ground truth, in stamp order (see the module docstring)."""
        out: list[FrameResult] = []
        last: np.ndarray | None = None
        for i, stamp in enumerate(sorted(self.gts)):
            phase, name, gt = self.gts[stamp]
            edge, ref = self.edge.get(stamp), self.refined.get(stamp)
            delay = (ref.t_ns - edge.t_ns) / 1e9 if edge and ref else math.nan
            if edge is not None:
                e = fit_mask(edge.mask, gt.shape)
                if ref is not None and delay <= deadline_s:
                    final, source, t = _fill(fit_mask(ref.mask, gt.shape), e, num_classes), \
                        'cloud', ref.t_ns
                else:
                    final, source, t = e, 'edge', edge.t_ns
            elif ref is not None:
                e = None
                final, source, t = fit_mask(ref.mask, gt.shape), 'cloud', ref.t_ns
            else:
                e = None
                source, t = ('last', None) if last is not None else ('none', None)
                final = fit_mask(last, gt.shape) if last is not None else np.zeros_like(gt)
            if source != 'last' and source != 'none':
                last = final
            hard = self.hard.get(stamp)
            out.append(FrameResult(
                index=i, phase=phase, name=name, stamp_ns=stamp, source=source,
                uploaded=hard is not None, labelled=stamp in self.labels,
                latency_s=(t - stamp) / 1e9 if t is not None else math.nan,
                cloud_delay_s=delay, bytes_up=hard['bytes'] if hard else 0,
                bytes_down=self.labels.get(stamp, 0),
                hardness=float(hard['hardness']) if hard else math.nan,
                features=hard['features'] if hard else [],
                conf=metrics.confusion(final, gt, num_classes, void),
                edge_conf=metrics.confusion(e, gt, num_classes, void) if e is not None else None,
                edge_mask=e if i in keep else None,
                final_mask=final if i in keep else None))
        return out


def fit_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Resize a label map to ``shape`` by nearest neighbour (no-op when it already fits)."""
    if mask.shape == shape:
        return mask
    h, w = shape
    rows = (np.arange(h) * mask.shape[0] // h).clip(0, mask.shape[0] - 1)
    cols = (np.arange(w) * mask.shape[1] // w).clip(0, mask.shape[1] - 1)
    return mask[rows][:, cols]


def _fill(cloud: np.ndarray, edge: np.ndarray, num_classes: int) -> np.ndarray:
    """Return the cloud mask with its void / unknown pixels taken from the edge mask."""
    bad = cloud >= num_classes
    if not bad.any():
        return cloud
    out = cloud.copy()
    out[bad] = edge[bad]
    return out
