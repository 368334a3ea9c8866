"""The event plan of upstream's backpressure-fairness workloads, drawn from the seed exactly as upstream.

Upstream (schnitzel-stream-platform, exp/backpressure-paper-submission, Apache-2.0) decides the
whole run before it starts: `total_events` base events `event_interval_ms` apart on a logical clock;
every `burst_every`-th base event (index 0 included) comes `burst_size` times at the same logical
time; each planned event draws its group from `groups` with the normalised `group_probs` (one
`random.Random(seed).random()` per event, cumulative, first group whose running sum reaches the draw);
the event with sequence number `recovery_marker_seq` carries the recovery marker. The same draws in
the same order make the same plan, so drop and miss counts can be compared with upstream's per seed.
"""
from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_GROUPS = ('group_a', 'group_b')
#: most events one plan may hold (it is built in memory before the first packet)
MAX_PLANNED_EVENTS = 2_000_000


@dataclass(frozen=True)
class PlannedEvent:
    seq: int
    group_id: str
    logical_ts_ms: float
    recovery_marker: bool


def planned_count(total_events: int, burst_every: int, burst_size: int) -> int:
    """How many events a plan holds (without drawing it)."""
    if burst_every <= 0:
        return total_events
    bursts = (total_events + burst_every - 1) // burst_every  # base indexes 0, k, 2k, ...
    return total_events + bursts * (burst_size - 1)


def group_probabilities(groups: Sequence[str], probs: Mapping[str, Any]) -> list[tuple[str, float]]:
    """Normalised (group, probability) in group order; negative or missing counts as 0, all 0 = uniform."""
    groups = list(groups) or list(DEFAULT_GROUPS)
    raw = []
    for group in groups:
        value = probs.get(group, 0.0)
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
        raw.append((group, max(0.0, number)))
    total = sum(p for _, p in raw)
    if total <= 0.0:
        return [(g, 1.0 / len(groups)) for g in groups]
    return [(g, p / total) for g, p in raw]


def _draw(rng: random.Random, probs: list[tuple[str, float]]) -> str:
    cut = rng.random()
    running = 0.0
    for group, p in probs:
        running += p
        if cut <= running:
            return group
    return probs[-1][0]


def event_plan(
    *,
    seed: int,
    total_events: int,
    event_interval_ms: float,
    burst_every: int = 0,
    burst_size: int = 1,
    recovery_marker_seq: int = -1,
    groups: Sequence[str] = (),
    group_probs: Mapping[str, Any] | None = None,
) -> list[PlannedEvent]:
    probs = group_probabilities([g.strip() for g in groups if g.strip()], group_probs or {})
    rng = random.Random(seed)
    plan: list[PlannedEvent] = []
    logical_ms = 0.0
    for base in range(total_events):
        copies = burst_size if burst_every > 0 and base % burst_every == 0 else 1
        for _ in range(copies):
            seq = len(plan)
            plan.append(PlannedEvent(seq, _draw(rng, probs), logical_ms, seq == recovery_marker_seq))
        logical_ms += event_interval_ms
    return plan
