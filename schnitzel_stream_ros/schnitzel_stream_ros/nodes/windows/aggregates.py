"""Aggregations of one window and key: count, sum, min, max, mean, distinct_count, p50, p95.

Exact by construction: every value of a window is kept (bounded by the node's state bound), so
percentiles are exact (nearest rank: the ceil(q*n)-th smallest value) and a replay of the same input
in the same order gives the same numbers bit for bit. Plain data all the way down, so an
accumulator is its own checkpoint.
"""

from __future__ import annotations

import json
import math
from typing import Any

AGGREGATES = ('count', 'sum', 'min', 'max', 'mean', 'distinct_count', 'p50', 'p95')
#: Aggregations that need a numeric value (value_field); the others count packets or distinct keys.
NUMERIC = frozenset({'sum', 'min', 'max', 'mean', 'p50', 'p95'})


def nearest_rank(sorted_values: list[float], q: float) -> float | None:
    """The q-quantile by nearest rank (q in (0, 1]); None for no values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def distinct_token(value: Any) -> str:
    """A JSON scalar as a set member that survives a checkpoint (1 and '1' stay different)."""
    return json.dumps(value, sort_keys=True, separators=(',', ':'))


def new_accumulator() -> dict[str, Any]:
    return {'count': 0, 'values': [], 'distinct': []}


def add(acc: dict[str, Any], value: float | None, distinct: Any, track_distinct: bool) -> None:
    acc['count'] += 1
    if value is not None:
        acc['values'].append(value)
    if track_distinct and distinct is not None:
        token = distinct_token(distinct)
        if token not in acc['distinct']:  # small per window; a list keeps order and is JSON
            acc['distinct'].append(token)


def merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    """Session windows that grow together become one (their accumulators merge)."""
    into['count'] += other['count']
    into['values'].extend(other['values'])
    for token in other['distinct']:
        if token not in into['distinct']:
            into['distinct'].append(token)


def result(acc: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    values = acc['values']
    ordered = sorted(values) if {'p50', 'p95', 'min', 'max'} & set(names) else values
    out: dict[str, Any] = {}
    for name in names:
        if name == 'count':
            out['count'] = acc['count']
        elif name == 'sum':
            out['sum'] = math.fsum(values)
        elif name == 'min':
            out['min'] = ordered[0] if ordered else None
        elif name == 'max':
            out['max'] = ordered[-1] if ordered else None
        elif name == 'mean':
            out['mean'] = math.fsum(values) / len(values) if values else None
        elif name == 'distinct_count':
            out['distinct_count'] = len(acc['distinct'])
        elif name == 'p50':
            out['p50'] = nearest_rank(ordered, 0.50)
        elif name == 'p95':
            out['p95'] = nearest_rank(ordered, 0.95)
    return out
