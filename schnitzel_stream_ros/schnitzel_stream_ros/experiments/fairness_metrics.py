"""The metrics of upstream's backpressure-fairness benchmark, from the sink's lines and the drop count.

Defined as upstream's runner computes them (schnitzel-stream-platform, exp/backpressure-paper-submission,
scripts/experiments/_backpressure_common.py, Apache-2.0), so a run file here and one there mean the
same; docs in bench/README.md. With E = packets expected at the sink (planned events x burst
copies), O = lines the sink wrote, D = packets the runtime dropped, T = run seconds:
- throughput = O / T; p50/p95/p99 = percentiles (linear interpolation) of the lines' latency_ms;
- drop_rate = D / E; event_miss_rate = (E - O) / E (misses include drops and anything else lost);
- per group g: miss rate m_g = (E_g - O_g) / E_g and latency p95_g; group_miss_gap = max m - min m,
  group_latency_gap_ms = max p95 - min p95; the worst group is the highest (m_g, p95_g);
- recovery_time_ms = latency of the first recovery-marker line (null when it was lost);
- harm_weighted_cost = 100 x sum(w_g m_g) / sum(w) + 10 x sum(w_g min(5, p95_g / budget)) / sum(w)
  + 5 when the run failed (w = the sink's group_weights, 1 for unlisted groups; a group without
  latencies counts p95 = 5 x budget).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

ERROR_PENALTY = 5.0
LATENCY_RATIO_CAP = 5.0


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = (len(ordered) - 1) * min(1.0, max(0.0, q))
    low, high = math.floor(index), math.ceil(index)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] * (high - index) + ordered[high] * (index - low))


def _latency(line: Mapping[str, Any]) -> float | None:
    value = line.get('latency_ms')
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if number and math.isfinite(value) and value >= 0 else None


def run_metrics(
    lines: Iterable[Mapping[str, Any]],
    *,
    expected_total: int,
    expected_by_group: Mapping[str, int],
    duration_sec: float,
    dropped: int,
    group_weights: Mapping[str, float],
    latency_budget_ms: float,
    ok: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, per-group breakdown) of one run, upstream's field names."""
    lines = list(lines)
    observed = len(lines)
    latencies: list[float] = []
    by_group: dict[str, int] = {}
    group_latencies: dict[str, list[float]] = {}
    recovery: list[float] = []
    for line in lines:
        group = str(line.get('group_id', 'unknown'))
        by_group[group] = by_group.get(group, 0) + 1
        latency = _latency(line)
        if latency is None:
            continue
        latencies.append(latency)
        group_latencies.setdefault(group, []).append(latency)
        if line.get('recovery_marker') is True:
            recovery.append(latency)
    groups = sorted(set(expected_by_group) | set(by_group))
    miss: dict[str, float] = {}
    p95: dict[str, float | None] = {}
    worst, worst_rank = '', (-1.0, -1.0, '')
    for group in groups:
        expected = int(expected_by_group.get(group, 0))
        miss[group] = max(0, expected - by_group.get(group, 0)) / expected if expected > 0 else 0.0
        p95[group] = percentile(group_latencies[group], 0.95) if group_latencies.get(group) else None
        rank = (miss[group], p95[group] if p95[group] is not None else 1_000_000.0, group)
        if rank > worst_rank:
            worst, worst_rank = group, rank
    weights = {g: max(0.0, float(group_weights.get(g, 1.0))) for g in groups}
    total_weight = sum(weights.values())
    if total_weight <= 0.0:
        weights = dict.fromkeys(groups, 1.0)
        total_weight = float(len(groups)) or 1.0
    weighted_miss = sum(weights[g] * miss[g] for g in groups) / total_weight
    weighted_ratio = sum(
        weights[g] * min(LATENCY_RATIO_CAP, (p95[g] if p95[g] is not None else latency_budget_ms * 5.0)
                         / max(1.0, latency_budget_ms))
        for g in groups
    ) / total_weight
    known_p95 = [v for v in p95.values() if v is not None]
    metrics = {
        'expected_total': expected_total,
        'observed_total': observed,
        'missed_total': max(0, expected_total - observed),
        'drop_total_runtime': dropped,
        'throughput': observed / duration_sec if duration_sec > 0 else 0.0,
        'p50_latency_ms': percentile(latencies, 0.50),
        'p95_latency_ms': percentile(latencies, 0.95),
        'p99_latency_ms': percentile(latencies, 0.99),
        'drop_rate': dropped / expected_total if expected_total > 0 else 0.0,
        'event_miss_rate': max(0, expected_total - observed) / expected_total if expected_total > 0 else 0.0,
        'recovery_time_ms': recovery[0] if recovery else None,
        'group_miss_gap': (max(miss.values()) - min(miss.values())) if miss else 0.0,
        'group_latency_gap_ms': (max(known_p95) - min(known_p95)) if known_p95 else 0.0,
        'weighted_miss_rate': weighted_miss,
        'weighted_latency_ratio': weighted_ratio,
        'harm_weighted_cost': weighted_miss * 100.0 + weighted_ratio * 10.0 + (0.0 if ok else ERROR_PENALTY),
        'worst_group_id': worst,
        'worst_group_miss_rate': miss.get(worst, 0.0),
        'worst_group_latency_p95_ms': p95.get(worst),
    }
    breakdown = {
        'expected_by_group': dict(expected_by_group), 'observed_by_group': by_group,
        'group_miss_rate': miss, 'group_latency_p95_ms': p95, 'group_weights': weights,
    }
    return metrics, breakdown


def run_record(plan: Any, metrics: Mapping[str, Any], breakdown: Mapping[str, Any], *, status: str,
               error: str, duration_sec: float, placement: str, counters: Mapping[str, Any],
               paths: Mapping[str, str]) -> dict[str, Any]:
    """One run file in upstream's run schema (plus `placement` and the run's own counters)."""
    return {
        'schema_version': 1, 'ts': datetime.now(UTC).isoformat(), 'status': status, 'error': error,
        'experiment_id': 'backpressure_fairness',
        'placement': placement, 'policy': plan.policy_id, 'policy_id': plan.policy_id,
        'workload_id': plan.workload_id, 'seed': plan.seed, 'repeat': plan.repeat, 'run_id': plan.run_id,
        'duration_sec': duration_sec,
        **{k: metrics[k] for k in ('throughput', 'p50_latency_ms', 'p95_latency_ms', 'p99_latency_ms',
                                   'drop_rate', 'event_miss_rate', 'recovery_time_ms', 'group_miss_gap',
                                   'group_latency_gap_ms', 'weighted_miss_rate', 'weighted_latency_ratio',
                                   'harm_weighted_cost')},
        'group_id': metrics['worst_group_id'], 'group_miss_rate': metrics['worst_group_miss_rate'],
        'group_latency_p95_ms': metrics['worst_group_latency_p95_ms'],
        'metrics': dict(metrics), 'group_metrics': dict(breakdown), 'runtime_metrics': dict(counters),
        'paths': dict(paths),
    }
