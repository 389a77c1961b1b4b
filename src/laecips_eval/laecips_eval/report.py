# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Summaries, the markdown table, JSON and plots of an evaluation (no rclpy).

A *run* is what :mod:`laecips_eval.recorder_node` wrote for one system (one seed); a
*system* row averages its runs (the random baseline has several seeds). mIoU uses one
confusion matrix per subset: all frames, each phase of the stream (the ground truth's
``frame_id`` names it, see :mod:`laecips_eval.camvid_to_bag`) and each role
(:func:`phase_roles`): ``clean`` = the first phase, ``adapt`` = the phases whose name ends in
``_adapt`` (frames the edge may have been adapted on: reported, not the headline) and
``scoring`` = the other phases after the first (the headline). The drift stream's phases
``day``, ``dusk_adapt``, ``dusk`` give clean = day, adapt = dusk_adapt, scoring = dusk.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from laecips_core import metrics

SUBSETS = ('all', 'day', 'dusk', 'dusk_adapt')  # the drift stream's (named CamVid streams)
ROLES = ('clean', 'scoring', 'adapt')
ADAPT_SUFFIX = '_adapt'
STYLES = ('-', '--', '-.', ':')


def phases_in(frames: Sequence[dict]) -> list[str]:
    """Return the phases of recorded frames in stream order."""
    return list(dict.fromkeys(f['phase'] for f in frames))


def phase_roles(phases: Sequence[str]) -> dict[str, list[str]]:
    """
    Split a stream's phases (in order) into roles: ``clean``, ``scoring``, ``adapt``.

    The first phase is the clean one; a phase whose name ends in ``_adapt`` is an
    adaptation phase; the other phases after the first are scored (the headline), or the
    first one when there are none (a one-phase stream).
    """
    adapt = [p for p in phases if p.endswith(ADAPT_SUFFIX)]
    clean = [p for p in phases[:1] if p not in adapt]
    scoring = [p for p in phases[1:] if p not in adapt] or clean
    return {'clean': clean, 'scoring': scoring, 'adapt': adapt}


def role_names(row: dict) -> dict[str, str]:
    """Return each role's phase names as text (``dusk``, ``a+b``; ``-`` when none)."""
    roles = row.get('roles') or phase_roles(row.get('phases') or [])
    return {r: '+'.join(roles.get(r) or []) or '-' for r in ROLES}


def summarize(run: dict) -> dict:
    """Return the metrics of one recorded run."""
    frames = run['frames']
    n = max(1, len(frames))
    out: dict = {'frames': len(frames)}
    phases = phases_in(frames)
    roles = phase_roles(phases)
    out['phases'], out['roles'] = phases, roles
    subsets = {'all': None, **{p: (p,) for p in phases}, **roles}  # a role wins a name clash
    for subset, members in subsets.items():
        sel = [f for f in frames if members is None or f['phase'] in members]
        conf = sum((np.asarray(f['conf'], np.int64) for f in sel),
                   np.zeros((metrics.NUM_CLASSES,) * 2, np.int64))
        out[f'miou_{subset}'] = metrics.miou(conf) * 100 if sel else math.nan
        out[f'frames_{subset}'] = len(sel)
        # The edge model's own masks (before the cloud's answers): what distillation changed.
        # Runs recorded before edge_conf existed: a final mask from the edge is the edge's.
        own = [np.asarray(f['edge_conf'] if f.get('edge_conf') else f['conf'], np.int64)
               for f in sel if f.get('edge_conf') or f['source'] == 'edge']
        complete = own and len(own) == sum(1 for f in sel if f['source'] != 'last')
        out[f'edge_miou_{subset}'] = metrics.miou(sum(own)) * 100 if complete else math.nan
        out[f'upload_ratio_{subset}'] = (sum(f['uploaded'] for f in sel) / len(sel)
                                         if sel else math.nan)
    lat = metrics.percentiles([f['latency_s'] * 1e3 for f in frames])
    out.update(latency_p50_ms=lat['p50'], latency_p95_ms=lat['p95'],
               latency_mean_ms=lat['mean'], latency_n=lat['n'])
    uploaded = sum(f['uploaded'] for f in frames)
    out['upload_ratio'] = uploaded / n
    out['uploads'] = uploaded
    out['bytes_up_per_frame'] = sum(f['bytes_up'] for f in frames) / n
    out['bytes_down_per_frame'] = sum(f['bytes_down'] for f in frames) / n
    pushes = run.get('pushes', [])
    out['weight_pushes'] = len(pushes)
    out['weight_pushes_accepted'] = sum(1 for p in pushes if p.get('accepted'))
    out['weight_bytes'] = sum(int(p.get('bytes', 0)) for p in pushes)
    out['weight_bytes_per_frame'] = out['weight_bytes'] / n
    # Accepted pushes that carried weights (policy-only pushes count in the total only):
    # their mean serialized size, and what a full fp32 push of the same model costs.
    # Runs recorded before WeightPush.encoding existed: every accepted push, all full.
    carrying = [p for p in pushes if p.get('accepted')
                and (p.get('encoding') or 'encoding' not in p)]
    out['push_bytes_mean'] = (float(np.mean([int(p['bytes']) for p in carrying]))
                              if carrying else math.nan)
    fulls = [int(p.get('bytes_full') or p['bytes']) for p in carrying]
    out['push_bytes_full'] = float(np.mean(fulls)) if fulls else math.nan
    # Everything that crossed the link, per camera frame: frames up, labels down, pushes.
    out['total_bytes_per_frame'] = (out['bytes_up_per_frame'] + out['bytes_down_per_frame']
                                    + out['weight_bytes_per_frame'])
    # What the edge itself counted (includes updates whose WeightPush never came back).
    es = run.get('edge_stats') or {}
    out['edge_updates_accepted'] = int(es.get('updates_accepted', 0))
    out['edge_updates_rejected'] = int(es.get('updates_rejected', 0))
    # Trust in the cloud: labels the edge did not fuse because the teacher was unhealthy.
    out['labels_untrusted'] = int(es.get('labels_untrusted', 0))
    out['fused_fraction'] = float(es.get('fused_fraction', 0.0))
    # Edge-local BN adaptation at the end of the run (laecips_core.bn_adapt).
    out['bn_shift_end'] = float(es.get('bn_shift', 0.0))
    out['bn_adapted_end'] = bool(es.get('bn_adapted', False))
    out['bn_harm_trips'] = int(es.get('bn_harm_trips', 0))
    out['edge_weight_bytes_in'] = int(es.get('weight_bytes_in', 0))
    for src in ('cloud', 'edge', 'last', 'none'):
        out[f'source_{src}'] = sum(1 for f in frames if f['source'] == src)
    out['late_labels'] = sum(1 for f in frames if f['labelled'] and f['source'] != 'cloud')
    # The final pushed weights alone, scored after the run per phase (forgetting).
    for phase, v in (run.get('edge_final') or {}).items():
        out[f'edge_final_miou_{phase}'] = v
    out['first_push_s_after_drift'] = first_push_after_drift(frames, pushes)
    return out


def first_push_after_drift(frames: Sequence[dict], pushes: Sequence[dict]) -> float:
    """Seconds from the first frame after the clean phase to the first weight push accepted."""
    phases = phases_in(frames)
    drift = [f['stamp_ns'] for f in frames if phases and f['phase'] != phases[0]]
    if not drift:
        return math.nan
    t0 = min(drift)
    times = [p['t_ns'] for p in pushes if p.get('accepted') and p.get('t_ns', 0) >= t0
             and (p.get('encoding') or 'encoding' not in p)]
    return (min(times) - t0) / 1e9 if times else math.nan


def average(summaries: Sequence[dict]) -> dict:
    """Average numeric fields over runs (seeds); adds ``runs`` and ``miou_scoring_std``."""
    out: dict = {'runs': len(summaries)}
    for k in ('phases', 'roles'):
        if k in summaries[0]:
            out[k] = summaries[0][k]
    for k in summaries[0]:
        vals = [s[k] for s in summaries if isinstance(s.get(k), (int, float))]
        if vals:
            out[k] = float(np.mean(vals)) if len(vals) > 1 else vals[0]
    if len(summaries) > 1:
        out['miou_scoring_std'] = float(np.std([s['miou_scoring'] for s in summaries]))
        out['miou_all_std'] = float(np.std([s['miou_all'] for s in summaries]))
    return out


def _f(v: float, fmt: str = '.1f') -> str:
    return '-' if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def phase_table(rows: dict[str, dict]) -> str:
    """Return per phase: final mIoU / the edge model's own mIoU / upload ratio, and trust."""
    # The stream's own phases, in order (any names: summarize records them per row).
    phases = list(dict.fromkeys(p for s in rows.values() for p in (s.get('phases') or [])))
    phases = phases or [p for p in SUBSETS if p != 'all']
    lines = ['| system | ' + ' | '.join(f'{p}: final / edge model / upload' for p in phases)
             + ' | total B/frame | labels not trusted |', '|' + '---|' * (len(phases) + 3)]
    for name, s in rows.items():
        cells = [f'{_f(s.get(f"miou_{p}", math.nan))} / '
                 f'{_f(s.get(f"edge_miou_{p}", math.nan))} / '
                 f'{_f(s.get(f"upload_ratio_{p}", math.nan) * 100, ".0f")} %' for p in phases]
        lines.append(f'| {name} | ' + ' | '.join(cells)
                     + f' | {_f(s.get("total_bytes_per_frame", math.nan), ",.0f")} | '
                     f'{int(s.get("labels_untrusted", 0))} |')
    return '\n'.join(lines + ['', '"edge model": the edge\'s own masks (before any cloud '
                                   'answer); "labels not trusted": cloud labels the edge did '
                                   'not use because the teacher was unhealthy.'])


def table(rows: dict[str, dict]) -> str:
    """Return the markdown table of system rows (name -> averaged summary)."""
    n = role_names(next(iter(rows.values()), {}))
    head = (f'| system | mIoU all | {n["clean"]} | {n["scoring"]} (scoring) | {n["adapt"]} '
            f'(adaptation) | edge model {n["scoring"]} | upload | up B/frame | down B/frame | '
            'latency p50 ms | p95 ms | mean ms |')
    lines = [head, '|' + '---|' * 12]
    notes = ('mIoU in %, 11 classes, void ignored, one confusion matrix per subset; "edge model '
             f'{n["scoring"]}" scores the edge\'s own masks on the {n["scoring"]} frames, before '
             'any cloud answer.')
    for name, s in rows.items():
        runs = f' (×{s["runs"]})' if s.get('runs', 1) > 1 else ''
        lines.append(
            f'| {name}{runs} | {_f(s["miou_all"])} | {_f(s.get("miou_clean", math.nan))} | '
            f'{_f(s.get("miou_scoring", math.nan))} | {_f(s.get("miou_adapt", math.nan))} | '
            f'{_f(s.get("edge_miou_scoring", math.nan))} | '
            f'{_f(s["upload_ratio"] * 100, ".0f")} % | {_f(s["bytes_up_per_frame"], ",.0f")} | '
            f'{_f(s["bytes_down_per_frame"], ",.0f")} | {_f(s["latency_p50_ms"], ".0f")} | '
            f'{_f(s["latency_p95_ms"], ".0f")} | {_f(s["latency_mean_ms"], ".0f")} |')
    weights = [f'{name}: {int(s["weight_pushes"])} pushes reported by the trainer '
               f'({int(s["weight_pushes_accepted"])} accepted), '
               f'{s["weight_bytes"] / 1e6:.2f} MB = {_f(s["weight_bytes_per_frame"], ",.0f")}'
               f' B/frame; the edge counted {int(s.get("edge_updates_accepted", 0))} accepted'
               f' + {int(s.get("edge_updates_rejected", 0))} rejected updates, '
               f'{s.get("edge_weight_bytes_in", 0) / 1e6:.2f} MB accepted'
               for name, s in rows.items()
               if s.get('weight_pushes') or s.get('edge_updates_accepted')]
    lines += ['', notes]
    if weights:
        lines += ['', 'Weight pushes (downlink, not in "down B/frame"): ' + '; '.join(weights)]
    return '\n'.join(lines)


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON (NaN written as null)."""
    def clean(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o
    path.write_text(json.dumps(clean(data), indent=2))


def time_to_adapt(runs: dict[str, dict], out_dir: Path, plt, window: int = 10) -> Path | None:
    """Plot the edge model's own mIoU against seconds since the drift began."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    drawn = False
    for i, (name, run) in enumerate(runs.items()):
        frames = run['frames']
        phases = phases_in(frames)
        own = [f for f in frames if f.get('edge_conf')]
        drift = [f['stamp_ns'] for f in frames if phases and f['phase'] != phases[0]]
        if not drift or len(own) < len(frames) // 2:
            continue
        t0 = min(drift)
        after = [dict(f, conf=f['edge_conf']) for f in own if f['stamp_ns'] >= t0]
        if not after:
            continue
        ax.plot([(f['stamp_ns'] - t0) / 1e9 for f in after], _rolling_miou(after, window),
                label=name, ls=STYLES[i % len(STYLES)], lw=1.4)
        drawn = True
        for p in run.get('pushes', []):
            if (p.get('accepted') and (p.get('encoding') or 'encoding' not in p)
                    and p['t_ns'] >= t0):
                ax.axvline((p['t_ns'] - t0) / 1e9, color='grey', lw=0.6, ls=':')
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel('seconds since the first drifted frame (dotted: accepted weight pushes)')
    ax.set_ylabel(f"edge model's own mIoU (%) over the last {window} frames")
    ax.legend(fontsize=7, loc='lower right')
    fig.tight_layout()
    path = out_dir / 'time_to_adapt.png'
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _rolling_miou(frames: list[dict], window: int) -> np.ndarray:
    confs = np.asarray([f['conf'] for f in frames], np.int64)
    csum = np.concatenate([np.zeros((1,) + confs.shape[1:], np.int64), confs.cumsum(0)])
    return np.asarray([metrics.miou(csum[i + 1] - csum[max(0, i + 1 - window)]) * 100
                       for i in range(len(frames))])


def _phase_bounds(frames: list[dict]) -> list[tuple[int, str]]:
    out, prev = [], None
    for f in frames:
        if f['phase'] != prev:
            out.append((f['index'], f['phase']))
            prev = f['phase']
    return out


def plots(runs: dict[str, dict], out_dir: Path, window: int = 20) -> list[Path]:
    """Write mIoU and upload ratio over the stream and the latency CDF; return the files."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    first = next(iter(runs.values()))['frames']
    w = max(1, min(window, len(first)))
    for key, ylabel, fn in (
            ('miou', f'mIoU (%) over the last {w} frames', lambda fr: _rolling_miou(fr, w)),
            ('upload', f'upload ratio over the last {w} frames',
             lambda fr: np.convolve(np.asarray([f['uploaded'] for f in fr], float),
                                    np.ones(w), 'full')[:len(fr)]
             / np.minimum(np.arange(1, len(fr) + 1), w))):
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for i, (name, run) in enumerate(runs.items()):
            if run['frames']:
                ax.plot([f['index'] for f in run['frames']], fn(run['frames']), label=name,
                        ls=STYLES[i % len(STYLES)], lw=1.4)
            for p in run.get('pushes', []):
                idx = _frame_at(run['frames'], p['t_ns'])
                if idx is not None and name.lower().startswith('laecips'):
                    ax.axvline(idx, color='grey', lw=0.6, ls=':')
        for idx, phase in _phase_bounds(first):
            ax.axvline(idx, color='k', lw=0.8)
            ax.text(idx + 1, ax.get_ylim()[1], phase, va='top', fontsize=8)
        ax.set_xlabel('frame in the stream')
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, loc='lower left')
        fig.tight_layout()
        path = out_dir / f'{key}_over_stream.png'
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    path = time_to_adapt(runs, out_dir, plt, window=max(1, w // 2))
    if path is not None:
        files.append(path)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, (name, run) in enumerate(runs.items()):
        lat = np.sort([f['latency_s'] * 1e3 for f in run['frames']
                       if f['latency_s'] is not None and math.isfinite(f['latency_s'])])
        if lat.size:
            ax.step(lat, np.arange(1, lat.size + 1) / lat.size, where='post', label=name,
                    ls=STYLES[i % len(STYLES)])
    ax.set_xscale('log')
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel('camera stamp -> final mask (ms)')
    ax.set_ylabel('fraction of frames')
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / 'latency_cdf.png'
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(path)
    return files


def _frame_at(frames: list[dict], t_ns: int) -> int | None:
    for f in frames:
        if f['stamp_ns'] >= t_ns:
            return f['index']
    return frames[-1]['index'] if frames else None


def overlay(rgb: np.ndarray, edge: np.ndarray | None, final: np.ndarray, gt: np.ndarray,
            path: Path, title: str = '') -> Path:
    """Write one panel: frame | edge mask | final mask | ground truth (CamVid colours)."""
    from PIL import Image, ImageDraw

    from laecips_core.classes import CAMVID
    lut = CAMVID.palette()
    h, w = gt.shape
    tiles = [np.asarray(Image.fromarray(rgb).resize((w, h))),
             lut[edge] if edge is not None else np.zeros((h, w, 3), np.uint8),
             lut[final], lut[gt]]
    panel = Image.fromarray(np.concatenate(tiles, axis=1))
    draw = ImageDraw.Draw(panel)
    for i, label in enumerate(('frame ' + title, 'edge', 'final', 'ground truth')):
        draw.text((i * w + 5, 5), label, fill=(255, 255, 255))
    panel.save(path)
    return path
