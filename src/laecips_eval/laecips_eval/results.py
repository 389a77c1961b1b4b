# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The evaluation's outcome: the issue's goals, table.md, results.json, plots and overlays.

From recorded runs (``runs/*.json``, see :mod:`laecips_eval.recorder_node`); the numbers
themselves come from :mod:`laecips_eval.report`. :func:`rebuild` re-renders an earlier
output folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from laecips_eval import report, systems
from laecips_eval.netlink import parse_spec


def goals(rows: dict[str, dict], labels: dict[str, str], link: bool) -> list[str]:
    """Return the issue's goals, each with what this run got."""
    def row(name):
        return rows.get(labels.get(name, ''), None)
    e, c, lae = row('edge_only'), row('cloud_only'), row('laecips')
    scoring = report.role_names(next(iter(rows.values()), {}))['scoring']
    out = []
    if e and lae:
        d = lae['miou_scoring'] - e['miou_scoring']
        out.append(f'- LAECIPS - edge-only on {scoring} (scoring) frames: {d:+.1f} mIoU '
                   f'(goal >= +15): {"met" if d >= 15 else "not met"}')
    if e and c and lae:
        gap = c['miou_all'] - e['miou_all']
        rec = (lae['miou_all'] - e['miou_all']) / gap if gap > 0 else math.nan
        # Every byte (#14): frames up, labels down, weight and policy pushes.
        up = lae['total_bytes_per_frame'] / c['total_bytes_per_frame'] \
            if c['total_bytes_per_frame'] else math.nan
        out.append(f'- overall gap recovered: {rec:.0%} of cloud-only - edge-only '
                   f"({gap:.1f} mIoU) with {up:.0%} of cloud-only's total bytes (goal >= 70 % "
                   f'with <= 30 %): {"met" if rec >= 0.7 and up <= 0.3 else "not met"}')
        if link:
            ratio = lae['latency_mean_ms'] / c['latency_mean_ms']
            out.append(f'- mean latency over the link: {ratio:.2f} x cloud-only '
                       f'(goal <= 0.5): {"met" if ratio <= 0.5 else "not met"}')
    if lae and lae.get('push_bytes_full', 0) > 0:
        frac = lae['push_bytes_mean'] / lae['push_bytes_full']
        line = (f'- mean weight push {lae["push_bytes_mean"]:,.0f} B: {frac:.1%} of a full fp32 '
                f'push ({lae["push_bytes_full"]:,.0f} B; goal <= 5 %')
        met = frac <= 0.05
        full = row('laecips_full')
        if full:
            d = lae['edge_miou_scoring'] - full['edge_miou_scoring']
            line += f', edge model {scoring} {d:+.1f} mIoU vs full pushes, goal >= -1'
            met = met and d >= -1
        out.append(line + f'): {"met" if met else "not met"}')
    if c and lae:  # the edge learns what the cloud knows (#15)
        frac = lae['edge_miou_scoring'] / c['miou_scoring'] if c['miou_scoring'] else math.nan
        out.append(f"- edge model on {scoring} (scoring): {lae['edge_miou_scoring']:.1f} = "
                   f"{frac:.0%} of cloud-only's {c['miou_scoring']:.1f} (goal >= 90 %): "
                   f'{"met" if frac >= 0.9 else "not met"}')
    clean = report.role_names(next(iter(rows.values()), {}))['clean']
    final = lae.get(f'edge_final_miou_{clean}', math.nan) if lae else math.nan
    if e and math.isfinite(final):
        d = final - e['miou_clean']
        out.append(f'- final pushed weights alone on {clean}: {final:.1f}, {d:+.1f} vs edge-only '
                   f'(goal >= -1, no forgetting): {"met" if d >= -1 else "not met"}')
    if lae and 'first_push_s_after_drift' in lae:
        t = lae['first_push_s_after_drift']
        out.append(f'- first accepted weight push {t:.0f} s after the first drifted frame '
                   f'(goal <= 30 s): {"met" if t <= 30 else "not met"}')
    for name in ('laecips_entropy', 'random', 'fixed_online', 'entropy_online', 'random_distil',
                 'entropy_distil', 'fixed_matched', 'entropy'):
        b = row(name)
        if lae and b:
            ok = lae['miou_all'] > b['miou_all'] and lae['miou_scoring'] > b['miou_scoring']
            nb = b['total_bytes_per_frame'] / lae['total_bytes_per_frame'] \
                if lae['total_bytes_per_frame'] else math.nan
            out.append(f'- vs {labels[name]}: mIoU {lae["miou_all"] - b["miou_all"]:+.1f} '
                       f'overall, {lae["miou_scoring"] - b["miou_scoring"]:+.1f} {scoring}, '
                       f"at {nb:.0%} of LAECIPS's total bytes "
                       f'({"beats" if ok else "does not beat"} it)')
    return out


def write_report(out: Path, runs: dict[str, list[dict]], names: list[str], meta: dict) -> str:
    """Write table.md, results.json and the plots of recorded runs; return the markdown."""
    labels = {name: next((r[0]['system']['label'] for r in runs.values()
                          if r[0]['system']['name'] == name), '') for name in names}
    rows = {label: report.average([report.summarize(r) for r in rs])
            for label, rs in runs.items()}
    spec = parse_spec(meta['link']) if meta.get('link') else None
    md = [f'Command: `{meta["command"]}`', '',
          f'{meta["frames"]} frames at {meta["rate"]:g} Hz, deadline {meta["deadline"]:g} s'
          + (f', link {spec}' if spec else ', loopback DDS') + '.', '',
          report.table(rows), '', report.phase_table(rows), '', 'Goals:'
          ] + goals(rows, labels, spec is not None)
    (out / 'table.md').write_text('\n'.join(md) + '\n')
    report.write_json(out / 'results.json', {
        **meta, 'rows': rows,
        'runs': {label: [{'system': r['system'], 'summary': report.summarize(r),
                          'totals': r['totals'], 'pushes': r['pushes'],
                          'edge_stats': r.get('edge_stats', {})} for r in rs]
                 for label, rs in runs.items()}})
    report.plots({label: rs[0] for label, rs in runs.items()}, out)
    return '\n'.join(md)


def rebuild(out: Path) -> str:
    """Re-render the report of an earlier ``--out`` folder from its runs/*.json."""
    meta = json.loads((out / 'results.json').read_text())
    meta = {k: meta.get(k) for k in ('command', 'frames', 'rate', 'deadline', 'link',
                                     'link_counters', 'wall_s')}
    found = [json.loads(p.read_text()) for p in sorted((out / 'runs').glob('*.json'))]
    found.sort(key=lambda r: (systems.ORDER.index(r['system']['name']), r['system']['seed']))
    runs: dict[str, list[dict]] = {}
    for r in found:
        runs.setdefault(r['system']['label'], []).append(r)
    names = list(dict.fromkeys(r['system']['name'] for r in found))
    return write_report(out, runs, names, meta)


def overlays(runs: dict[str, list[dict]], out: Path, frames_by_name: dict) -> None:
    import numpy as np

    from laecips_eval.recorder import fit_mask
    d = out / 'overlays'
    d.mkdir(exist_ok=True)
    for label, rs in runs.items():
        run = rs[0]
        name = run['system']['name']
        npz = out / 'runs' / (f'{name}_s0.npz' if name == 'random' else f'{name}.npz')
        if not npz.is_file() or not frames_by_name:
            continue
        masks = np.load(npz)
        for f in run['frames']:
            key = f'final_{f["index"]}'
            frame = frames_by_name.get(f['name'])
            if key not in masks.files or frame is None:
                continue
            edge = masks[f'edge_{f["index"]}'] if f'edge_{f["index"]}' in masks.files else None
            final = masks[key]
            gt = fit_mask(frame.gt(), final.shape)
            report.overlay(frame.rgb(), edge, final, gt,
                           d / f'{name}_{f["index"]:03d}_{f["name"]}.png',
                           f'{f["phase"]} {f["name"]} ({label}, final: {f["source"]})')
