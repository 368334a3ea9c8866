"""Per-cell comparison of our placements with upstream's runner in the same benchmark run.

Input: run records per placement (ours and upstream's, both in upstream's run schema). A cell is
(policy, workload, seed). Per cell:
- `vclock`: deterministic_vclock against upstream_vclock — status, drop and miss counts equal, harm
  relative difference (both measure latency on the same virtual clock: it must be 0 up to rounding);
- `wall`: deterministic against upstream's runs on the machine's clock — the same equalities, harm
  relative to the mean of upstream's runs, and upstream's own spread between its runs (what the
  machine's clock alone moves harm by);
- `live`: each live placement (and the rclpy baseline) against upstream's wall-clock mean —
  p95 ratio, miss rates side by side, harm ratio (the issue's bounds: p95 <= 2x, paced harm <= 1.1x).
`totals` holds the worst relative harm difference of each comparison over all cells.
"""
from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

LIVE = ('live_paced', 'live_2c_paced', 'live', 'live_2c', 'rclpy')


def _key(run: Mapping[str, Any]) -> tuple[str, str, int]:
    return (str(run.get('policy_id')), str(run.get('workload_id')), int(run.get('seed', -1)))


def _by_cell(runs: list[dict[str, Any]]) -> dict[tuple[str, str, int], list[dict[str, Any]]]:
    cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for run in runs:
        cells.setdefault(_key(run), []).append(run)
    return cells


def _counts(run: Mapping[str, Any]) -> tuple[Any, ...]:
    metrics = run.get('metrics') or {}
    return (run.get('status'), metrics.get('observed_total'), metrics.get('drop_total_runtime'))


def _rel(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return (ours - theirs) / theirs


def _pair(ours: Mapping[str, Any] | None, theirs: list[dict[str, Any]]) -> dict[str, Any] | None:
    theirs = [r for r in theirs if 'harm_weighted_cost' in r]
    if ours is None or not theirs:
        return None
    harms = [float(r['harm_weighted_cost']) for r in theirs]
    mean = statistics.fmean(harms)
    out = {
        'counts_equal': all(_counts(ours) == _counts(r) for r in theirs),
        'drop_rate': [ours['drop_rate'], theirs[0]['drop_rate']],
        'event_miss_rate': [ours['event_miss_rate'], theirs[0]['event_miss_rate']],
        'p95_latency_ms': [ours['p95_latency_ms'], [r['p95_latency_ms'] for r in theirs]],
        'harm': [ours['harm_weighted_cost'], harms],
        'harm_rel_diff': _rel(float(ours['harm_weighted_cost']), mean),
    }
    if len(harms) > 1:
        out['upstream_harm_spread_rel'] = (max(harms) - min(harms)) / mean if mean else None
    return out


def compare_cells(runs: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The comparison described in the module docstring."""
    cells = {name: _by_cell(records) for name, records in runs.items()}
    upstream = cells.get('upstream', {})
    rows = []
    for key in sorted(set(upstream) | set(cells.get('upstream_vclock', {}))):
        wall = upstream.get(key, [])
        row: dict[str, Any] = {'policy_id': key[0], 'workload_id': key[1], 'seed': key[2]}
        ours_v = (cells.get('deterministic_vclock', {}).get(key) or [None])[0]
        row['vclock'] = _pair(ours_v, cells.get('upstream_vclock', {}).get(key, []))
        ours_w = (cells.get('deterministic', {}).get(key) or [None])[0]
        row['wall'] = _pair(ours_w, wall)
        ok_wall = [r for r in wall if 'p95_latency_ms' in r]
        live: dict[str, Any] = {}
        for name in LIVE:
            ours = (cells.get(name, {}).get(key) or [None])[0]
            if ours is None or not ok_wall:
                continue
            p95 = statistics.fmean(r['p95_latency_ms'] for r in ok_wall)
            harm = statistics.fmean(r['harm_weighted_cost'] for r in ok_wall)
            live[name] = {
                'p95_ratio': ours['p95_latency_ms'] / p95 if p95 else None,
                'event_miss_rate': [ours['event_miss_rate'], ok_wall[0]['event_miss_rate']],
                'harm_ratio': ours['harm_weighted_cost'] / harm if harm else None,
                'status': [ours.get('status'), ok_wall[0].get('status')],
                'copies_through_per_event': [ours.get('copies_through_per_event'),
                                             ok_wall[0].get('copies_through_per_event')],
            }
        row['live'] = live
        rows.append(row)
    totals: dict[str, Any] = {}
    for part in ('vclock', 'wall'):
        diffs = [abs(r[part]['harm_rel_diff']) for r in rows
                 if r[part] and r[part]['harm_rel_diff'] is not None]
        totals[part] = {
            'cells': len(diffs),
            'counts_equal_cells': sum(bool(r[part] and r[part]['counts_equal']) for r in rows),
            'max_abs_harm_rel_diff': max(diffs) if diffs else None,
            'cells_within_0.1pct': sum(d <= 0.001 for d in diffs),
        }
    spreads = [r['wall']['upstream_harm_spread_rel'] for r in rows
               if r['wall'] and r['wall'].get('upstream_harm_spread_rel') is not None]
    totals['wall']['upstream_own_max_spread_rel'] = max(spreads) if spreads else None
    for name in LIVE:
        ratios = [r['live'][name] for r in rows if name in r['live']]
        if ratios:
            totals[name] = {
                'max_p95_ratio': max((x['p95_ratio'] for x in ratios if x['p95_ratio'] is not None),
                                     default=None),
                'max_harm_ratio': max((x['harm_ratio'] for x in ratios if x['harm_ratio'] is not None),
                                      default=None),
                'miss_equal_cells': sum(x['event_miss_rate'][0] == x['event_miss_rate'][1] for x in ratios),
                'cells': len(ratios),
            }
    return {'cells': rows, 'totals': totals}
