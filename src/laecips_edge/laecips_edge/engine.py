# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Edge inference: preprocessing, the model, class-id masks and hardness features, hot swap.

``Segmenter.infer(rgb)`` takes HxWx3 uint8 RGB of any size, resizes it to the model's input
size (weights metadata), normalises, runs the model in ``torch.inference_mode`` and returns
the class-id mask at the image's own resolution plus the hardness features (computed on the
model's native output logits, which are cheap and enough for frame-level statistics).

``swap(state_dict, version)`` builds and checks the new model in the caller's thread (never
the inference thread) and then replaces one reference: a frame in flight finishes on the old
model, the next frame uses the new one, and on any failure the old model stays.

TorchScript: the model is traced once and updates load their weights into a second traced
copy (the two alternate), because every ``torch.jit.trace``/``freeze`` keeps ~15 MB that
is never freed: tracing on each push grew an edge by ~20 % in a 10-minute soak.
Unfrozen traced modules run as fast as frozen ones here (5.0 vs 5.0 ms, 1 thread).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from functools import cached_property
import json
import math
import os
import threading
import time

import numpy as np
from PIL import Image
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from laecips_core import codecs, hardness, models, weights
from laecips_core.bn_adapt import StatsAdapter
from laecips_core.calibration import IDENTITY, Calibration
from laecips_core.classes import ClassMap


@dataclass(frozen=True)
class Options:
    """Speed options; all apply to models built from a state_dict (the updatable path)."""

    fuse_bn: bool = True  # fold BatchNorm into the preceding convolution
    channels_last: bool = True
    jit: bool = True  # trace (TorchScript): ~1.3x faster forward than eager, see bench.py
    # Where the argmax happens before a nearest-neighbour resize to the image: 'full' (the
    # image's size), 'model' (model input size), 'half' (half of it; -0.05 mIoU against
    # 'full' on CamVid test frames, ~3 ms less per frame), 'native' (logits; -0.9 mIoU).
    mask_res: str = 'half'
    input_size: tuple[int, int] | None = None  # override the metadata's (H, W)
    # Test-time BatchNorm adaptation (laecips_core.bn_adapt): 0 = off; else the running
    # statistics' momentum, at most one observed frame per ``bn_period`` seconds (0: every
    # frame; an observation costs an eager forward, ~3x an inference), the fast model rebuilt
    # with the adapted statistics after every ``bn_refresh`` observed frames.
    bn_momentum: float = 0.0
    bn_period: float = 0.5
    bn_refresh: int = 4
    bn_min_shift: float = 0.05  # serve adapted statistics only past this shift (nats)


@dataclass
class Result:
    """One frame's output."""

    mask: np.ndarray  # HxW uint8 class ids at the input image's resolution
    features: np.ndarray  # (3,) [conf_ratio, entropy, margin], see hardness.features
    version: int  # model version that produced it
    logits: torch.Tensor | None = None  # (1, C, h, w) native-resolution logits, if asked
    infer_ms: float = 0.0  # preprocessing + forward + mask, milliseconds
    # The mask before the resize to the input image (at mask_res), and each of its pixels'
    # calibrated confidence (P(correct) as uint8, 255 = 1.0; the model's calibration from
    # its weights' metadata, identity without one): what fusion with the cloud needs.
    small: np.ndarray | None = None
    conf: np.ndarray | None = None
    expert: str = 'active'  # 'active', or 'base' when the base model answered this frame
    adapted: bool = False  # the active model ran with statistics adapted on this stream


@dataclass
class _Active:
    model: nn.Module
    version: int
    meta: weights.WeightsMeta
    state_dict: dict[str, torch.Tensor]
    # Held while a frame runs on ``model``: a later update that reuses this traced module
    # (see Segmenter._build) waits for a frame still in flight on it.
    busy: threading.Lock = field(default_factory=threading.Lock)
    adapter: StatsAdapter | None = None  # re-estimates its BatchNorm statistics (edge-local)
    adapted: bool = False  # this is a copy of an active model with adapted statistics

    @cached_property
    def calibration(self) -> Calibration:
        """The model's confidence calibration (weights metadata 'calibration'; identity)."""
        return calibration_of(self.meta)


def calibration_of(meta: weights.WeightsMeta) -> Calibration:
    """Return the calibration in ``meta.extra['calibration']`` (JSON list), else identity."""
    text = meta.extra.get('calibration', '')
    try:
        return Calibration.from_list(json.loads(text)) if text else IDENTITY
    except (ValueError, TypeError):  # checked when the weights are accepted; never fatal here
        return IDENTITY


def _conv_bn(model: nn.Module):
    """Yield (prefix, Sequential, conv key, BatchNorm key) for each BatchNorm after a Conv2d."""
    for prefix, mod in list(model.named_modules()):
        if isinstance(mod, nn.Sequential):
            names = list(mod._modules)
            for a, b in zip(names, names[1:]):
                if isinstance(mod._modules[a], nn.Conv2d) and isinstance(mod._modules[b],
                                                                         nn.BatchNorm2d):
                    yield (f'{prefix}.' if prefix else ''), mod, a, b


def fuse_bn(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d in a Sequential."""
    for _, mod, a, b in _conv_bn(model):
        mod._modules[a] = fuse_conv_bn_eval(mod._modules[a], mod._modules[b])
        mod._modules[b] = nn.Identity()
    return model


def fused_pairs(model: nn.Module) -> list[tuple[str, str, float]]:
    """Return (conv name, BatchNorm name, eps) of every pair :func:`fuse_bn` folds."""
    return [(p + a, p + b, float(mod._modules[b].eps)) for p, mod, a, b in _conv_bn(model)]


def fuse_state(sd: dict[str, torch.Tensor], pairs: list[tuple[str, str, float]]
               ) -> dict[str, torch.Tensor]:
    """
    Fold BatchNorm into convolutions in a state_dict, as :func:`fuse_bn` does to a model.

    Tensor arithmetic only (no module is built): how the edge refreshes a traced model's
    statistics many times a minute without holding up its camera frames.
    """
    out = dict(sd)
    for conv, bn, eps in pairs:
        w = out[f'{conv}.weight']
        scale = out.pop(f'{bn}.weight') / torch.sqrt(out.pop(f'{bn}.running_var') + eps)
        mean, beta = out.pop(f'{bn}.running_mean'), out.pop(f'{bn}.bias')
        out.pop(f'{bn}.num_batches_tracked', None)
        b = out.get(f'{conv}.bias')
        out[f'{conv}.weight'] = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
        out[f'{conv}.bias'] = ((b if b is not None else torch.zeros_like(mean)) - mean) * scale \
            + beta
    return out


def release_memory() -> None:
    """
    Hand freed heap back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    An update allocates tens of MB for a moment (request, tensors, the model being built) in
    whichever executor thread serves it; glibc keeps freed memory in per-thread arenas, so
    without this an edge's RSS ratchets up with every push.
    """
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL('libc.so.6')
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


_libc = None


def set_threads(n: int) -> None:
    """Set torch's intra-op threads (0 leaves torch's default, one per core)."""
    if n > 0:
        torch.set_num_threads(n)


class Segmenter:
    """A swappable edge model with its input contract (size, normalisation, class map)."""

    def __init__(self, meta: weights.WeightsMeta, state_dict: dict[str, torch.Tensor] | None,
                 options: Options | None = None, device: str = 'cpu'):
        self.options = options or Options()
        self.device = torch.device(device)
        self._lock = threading.Lock()  # serialises swaps, not inference
        self._spare: _Active | None = None  # the traced module an update may reuse
        self._active = self._build(meta, state_dict, meta.version)
        self._base: _Active | None = None  # see set_base
        self.base_only = False  # see set_base
        # Test-time BN adaptation, per role ('active', 'base': whichever answers the stream):
        # the model's twin with adapted statistics; the one traced module each role's twins
        # run on, traced here, before any frame (tracing holds up inference for ~0.1 s and
        # its memory is never freed), then refreshed in place; the stream's shift from that
        # model's own statistics; and the switch the edge's harm check flips.
        self._twins: dict[str, _Active | None] = {'active': None, 'base': None}
        self._twin_mods: dict[str, _Active | None] = {'active': None, 'base': None}
        if self._active.adapter is not None and self.options.jit:
            self._twin_mods['active'] = self._build(meta, state_dict, meta.version,
                                                    adapt=False, spare=None)
        self._shifts = {'active': 0.0, 'base': 0.0}
        self.use_adapted = True
        self._observed = -math.inf  # time.monotonic() of the last observation
        # Observations and twin rebuilds run on a thread of their own (the other core), so
        # the camera's frames never wait for them; a frame offered while it is busy is
        # simply not observed. One slot: ([(role, model)], frame).
        self._adapt_job: tuple[list[tuple[str, _Active]], torch.Tensor] | None = None
        self._adapt_wake = threading.Condition()
        self._adapt_thread: threading.Thread | None = None
        self._adapt_stop = False
        self._pairs: list[tuple[str, str, float]] | None = None  # see fused_pairs

    def set_base(self, meta: weights.WeightsMeta, state_dict: dict[str, torch.Tensor]) -> None:
        """
        Keep a base model (the factory's) beside the active one, for frames it knows better.

        Once the active version differs from the base, every frame runs on both and the mask
        with the higher mean calibrated confidence is published: an adapted model answers
        the conditions it was adapted to, the base model the ones it was made for, so
        adapting to dusk never costs the day (the trainer's anchor gate checks this pair).
        Twice the inference cost while they differ. ``base_only = True`` answers every frame
        with the base instead of pushed weights (the edge sets it while no trusted label can
        vouch for the stream); statistics adapted on the robot (``bn_momentum``) stay, as
        they owe nothing to the cloud.
        """
        weights.check_compatible(meta, self._active.meta)
        base = self._build(meta, state_dict, meta.version, spare=None)
        if base.adapter is not None and self.options.jit and self._twin_mods['base'] is None:
            self._twin_mods['base'] = self._build(meta, state_dict, meta.version, adapt=False,
                                                  spare=None)
        with self._lock:
            self._base = base

    @property
    def base_version(self) -> int | None:
        """The base model's version, None without one."""
        return self._base.version if self._base is not None else None

    @classmethod
    def from_file(cls, path: str | os.PathLike, expected_sha256: str | None = None,
                  options: Options | None = None, device: str = 'cpu',
                  meta: weights.WeightsMeta | None = None) -> 'Segmenter':
        """Load a weights file; ``meta`` is needed only when the file carries none."""
        sd, file_meta = weights.load(path, expected_sha256)
        meta = file_meta or meta
        if meta is None:
            raise weights.WeightsError(f'{path} has no LAECIPS metadata; pass meta')
        return cls(meta, sd, options, device)

    # Read-only views of the active model.
    @property
    def version(self) -> int:
        return self._active.version

    @property
    def meta(self) -> weights.WeightsMeta:
        return self._active.meta

    @property
    def class_map(self) -> ClassMap:
        return self._active.meta.class_map

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.options.input_size or self._active.meta.input_size)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Return the active weights as loaded (unfused), e.g. to persist them."""
        return self._active.state_dict

    def _build(self, meta: weights.WeightsMeta, sd: dict[str, torch.Tensor] | None,
               version: int, adapt: bool = True, spare: _Active | None | str = 'swap',
               warm: int = 2) -> _Active:
        opt = self.options
        model = models.create(meta.arch, meta.num_classes, **meta.arch_cfg)
        if sd is not None:
            weights.check(sd, model)
            model.load_state_dict(sd)
        else:
            sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.eval()
        h, w = opt.input_size or meta.input_size
        example = torch.zeros(1, 3, h, w, device=self.device)
        adapter = None
        if adapt and opt.bn_momentum > 0 and not isinstance(model, torch.jit.ScriptModule):
            adapter = StatsAdapter(model.to(self.device), example, opt.bn_momentum)
        if opt.fuse_bn:
            fuse_bn(model)
        model = model.to(self.device)
        if opt.channels_last:
            model = model.to(memory_format=torch.channels_last)
            example = example.contiguous(memory_format=torch.channels_last)
        busy = threading.Lock()
        with torch.inference_mode():
            if opt.jit and not isinstance(model, torch.jit.ScriptModule):
                model, busy = self._traced(model, example,
                                           self._spare if spare == 'swap' else spare)
            out = None
            for _ in range(warm):  # warm-up here, so the first live frame pays nothing
                out = model(example)
        if out is not None and (out.dim() != 4 or out.shape[1] != meta.num_classes):
            raise weights.WeightsError(f'model output {tuple(out.shape)} is not (B, '
                                       f'{meta.num_classes}, h, w)')
        return _Active(model, int(version), meta, sd, busy, adapter)

    def _traced(self, model: nn.Module, example: torch.Tensor, spare: _Active | None
                ) -> tuple[nn.Module, threading.Lock]:
        """Return a traced module running ``model``'s weights, reusing the spare if it fits."""
        new = model.state_dict()
        if spare is not None:
            old = spare.model.state_dict()
            if old.keys() == new.keys() and all(old[k].shape == v.shape
                                                for k, v in new.items()):
                with spare.busy:  # a frame may still be finishing on it
                    spare.model.load_state_dict(new)
                return spare.model, spare.busy
        # freeze would be as fast but cannot take new weights (see the module docstring).
        return torch.jit.trace(model, example, check_trace=False), threading.Lock()

    def prepare(self, state_dict: dict[str, torch.Tensor], version: int,
                meta: weights.WeightsMeta | None = None) -> _Active:
        """Check and build a new model (slow; call off the inference thread)."""
        meta = meta or self._active.meta
        if meta.arch != self._active.meta.arch:
            raise weights.WeightsError(f'weights are for arch {meta.arch!r}, the edge runs '
                                       f'{self._active.meta.arch!r}')
        weights.check_compatible(meta, self._active.meta)
        return self._build(meta, state_dict, version)

    def commit(self, prepared: _Active) -> int:
        """Make a prepared model active (one reference swap); return the old version."""
        with self._lock:
            old = self._active
            if prepared.model is not old.model:
                self._spare, self._active = old, prepared
        return old.version

    def swap(self, state_dict: dict[str, torch.Tensor], version: int,
             meta: weights.WeightsMeta | None = None) -> int:
        """Build, check and activate new weights; raise WeightsError and keep the old ones."""
        with self._lock:  # one swap at a time; inference never takes this lock
            prepared = self.prepare(state_dict, version, meta)
            old = self._active
            self._spare, self._active = old, prepared
        return old.version

    def preprocess(self, rgb: np.ndarray, meta: weights.WeightsMeta | None = None
                   ) -> torch.Tensor:
        """HxWx3 uint8 RGB -> (1, 3, h, w) normalised float at the model's input size."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f'expected HxWx3 uint8 RGB, got {rgb.dtype} {rgb.shape}')
        meta = meta or self._active.meta
        h, w = self.options.input_size or meta.input_size
        if rgb.shape[:2] != (h, w):
            # PIL's bilinear reduce is antialiased, like training's F.interpolate(antialias).
            rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))
        if not rgb.flags.writeable:  # torch.from_numpy warns on read-only buffers
            rgb = rgb.copy()
        x = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1)[None].float()
        mean = torch.tensor(meta.mean, device=self.device).view(1, 3, 1, 1) * 255
        std = torch.tensor(meta.std, device=self.device).view(1, 3, 1, 1) * 255
        x = (x - mean) / std
        if self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def infer(self, rgb: np.ndarray, want_logits: bool = False) -> Result:
        """Segment one frame with whichever model is active when it starts (or the base)."""
        t0 = time.perf_counter()
        act, base = self._active, self._base  # one read: a swap affects only the next frame
        h, w = rgb.shape[:2]
        x = self.preprocess(rgb, act.meta)
        # base_only drops pushed weights (no trusted label vouches for them), not the
        # statistics adapted on the robot, which owe nothing to the cloud.
        pushed = base is not None and base.version != act.version
        role = 'base' if pushed and self.base_only else 'active'
        own = base if role == 'base' else act
        self._adapt(act, base, x)
        served = self._served(role, own)
        out = self._run(served, x, (h, w))
        expert = role
        if role == 'active' and base is not None and (pushed or served.adapted):
            other = self._run(base, x, (h, w))
            if other[3] > out[3]:  # the base is surer of this frame, calibrated
                out, expert = other, 'base'
        logits, small, conf, _, ver = out
        with torch.inference_mode():
            feats = hardness.features(logits)[0]
        return Result(codecs.resize_nearest(small, h, w), feats, ver,
                      logits if want_logits else None, (time.perf_counter() - t0) * 1e3, small,
                      conf, expert, served.adapted and expert == role)

    def _served(self, role: str, own: _Active) -> _Active:
        """Return ``own``'s adapted twin when it may answer (switched on, shifted), else own."""
        twin = self._twins[role]
        if (self.use_adapted and twin is not None and twin.version == own.version
                and self._shifts[role] >= self.options.bn_min_shift):
            return twin
        return own

    def _adapt(self, act: _Active, base: _Active | None, x: torch.Tensor) -> None:
        """
        Offer a frame to the adaptation thread, at most one every ``bn_period``.

        Both the active and the base model observe it (when they adapt), whichever answers
        now: when the teacher turns unhealthy the base takes over already adapted to the
        stream, as the edge-only system's model is.
        """
        jobs = [(r, m) for r, m in (('active', act), ('base', base))
                if m is not None and m.adapter is not None]
        if not jobs:
            return
        now = time.monotonic()
        if now - self._observed < self.options.bn_period:
            return
        with self._adapt_wake:
            if self._adapt_job is not None:  # still busy with the last one
                return
            self._observed = now
            self._adapt_job = (jobs, x.contiguous().clone())
            if self._adapt_thread is None:
                self._adapt_thread = threading.Thread(target=self._adapt_loop,
                                                      name='bn-adapt', daemon=True)
                self._adapt_thread.start()
            self._adapt_wake.notify()

    def _adapt_loop(self) -> None:
        while True:
            with self._adapt_wake:
                while self._adapt_job is None and not self._adapt_stop:
                    self._adapt_wake.wait()
                if self._adapt_stop:
                    return
                jobs, x = self._adapt_job
            try:
                for role, own in jobs:
                    try:
                        self._observe(role, own, x)
                    except Exception:  # noqa: BLE001 -- adaptation must never stop inference
                        self._twins[role], self._shifts[role] = None, 0.0
            finally:
                with self._adapt_wake:
                    self._adapt_job = None
                    self._adapt_wake.notify_all()

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until the adaptation thread has finished its frame (tests, benchmarks)."""
        with self._adapt_wake:
            return self._adapt_wake.wait_for(lambda: self._adapt_job is None, timeout)

    def close(self) -> None:
        """Stop the adaptation thread."""
        with self._adapt_wake:
            self._adapt_stop = True
            self._adapt_wake.notify_all()
        if self._adapt_thread is not None:
            self._adapt_thread.join(5.0)

    def _observe(self, role: str, own: _Active, x: torch.Tensor) -> None:
        """Observe one frame; rebuild the adapted twin every ``bn_refresh`` observations."""
        ad = own.adapter
        ad.observe(x)
        if ad.steps == 0:  # it collapsed and was reset: serve the model's own statistics
            self._twins[role], self._shifts[role] = None, 0.0
        elif ad.steps % max(1, self.options.bn_refresh) == 0:
            twin = self._twin(role, own, ad.apply(own.state_dict))
            twin.adapted = True
            self._twins[role] = twin
            self._shifts[role] = ad.shift()

    def _twin(self, role: str, own: _Active, sd: dict[str, torch.Tensor]) -> _Active:
        """Return ``own`` with the statistics in ``sd``, on the role's traced module."""
        mod = self._twin_mods[role]
        if mod is not None and self.options.fuse_bn:
            if self._pairs is None:
                self._pairs = fused_pairs(models.create(own.meta.arch, own.meta.num_classes,
                                                        **own.meta.arch_cfg))
            fused = fuse_state(sd, self._pairs)  # tensor arithmetic only: ~2 ms
            target = mod.model.state_dict()
            if fused.keys() == target.keys() and all(
                    fused[k].shape == v.shape for k, v in target.items()):
                with mod.busy:  # a frame may still be running on it: the next one sees these
                    mod.model.load_state_dict(fused)
                return _Active(mod.model, own.version, own.meta, sd, mod.busy)
        # No traced module yet (jit off), or one this shortcut does not fit.
        mod = self._build(own.meta, sd, own.version, adapt=False, spare=mod)
        self._twin_mods[role] = mod
        return mod

    def adaptation_pair(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Masks (at mask_res) of the active model with and without adapted statistics."""
        act, twin = self._active, self._twins['active']
        if (twin is None or twin.version != act.version
                or self._shifts['active'] < self.options.bn_min_shift):
            return None
        h, w = rgb.shape[:2]
        x = self.preprocess(rgb, act.meta)
        return self._run(twin, x, (h, w))[1], self._run(act, x, (h, w))[1]

    @property
    def drifting(self) -> bool:
        """
        Whether the stream has left the conditions the factory model was trained on.

        Measured on the base (factory) model when it adapts beside pushed weights: its
        reference never moves, whereas each accepted push restarts the active model's
        adaptation, and a shift that climbs back from 0 after every push would say "steady"
        through most of a drift. Without a base model, the active model's shift.
        """
        base = self._base
        role = 'base' if base is not None and base.adapter is not None else 'active'
        shift = self._shifts[role]
        return shift > 0 and shift >= self.options.bn_min_shift

    @property
    def adaptation(self) -> dict:
        """State of the BN adaptation of the active model (for stats and diagnostics)."""
        act = self._active
        ad = act.adapter
        return {'on': ad is not None, 'steps': ad.steps if ad else 0,
                'resets': ad.resets if ad else 0, 'shift': self._shifts['active'],
                'serving': self._served('active', act).adapted}

    def _run(self, act: _Active, x: torch.Tensor, hw: tuple[int, int]
             ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, float, int]:
        """(logits, mask at mask_res, calibrated confidence uint8, its mean, version)."""
        with act.busy, torch.inference_mode():
            logits = act.model(x)
            size = {'full': hw, 'model': tuple(x.shape[-2:]), 'native': None}.get(
                self.options.mask_res, (x.shape[-2] // 2, x.shape[-1] // 2))
            prob = (models.upsample(logits, size) if size else logits).softmax(1)
            top, small = prob.max(1)
        cal = act.calibration(top[0].numpy())
        return (logits, small[0].to(torch.uint8).numpy(),
                np.rint(cal * 255).astype(np.uint8), float(cal.mean()), act.version)


def colorize(mask: np.ndarray, class_map: ClassMap) -> np.ndarray:
    """Class ids -> HxWx3 uint8 RGB with the class map's palette."""
    return class_map.palette()[mask]


def overlay(rgb: np.ndarray, mask: np.ndarray, class_map: ClassMap,
            alpha: float = 0.5) -> np.ndarray:
    """Blend the colour mask over the image (same HxW)."""
    color = colorize(mask, class_map).astype(np.uint16)
    a = int(round(alpha * 256))
    return ((rgb.astype(np.uint16) * (256 - a) + color * a) >> 8).astype(np.uint8)


__all__ = ['Options', 'Result', 'Segmenter', 'calibration_of', 'colorize', 'fuse_bn',
           'overlay', 'release_memory', 'set_threads']
