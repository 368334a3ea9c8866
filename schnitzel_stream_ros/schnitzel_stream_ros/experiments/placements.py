"""Where a benchmark run executes. Deterministic: one thread, upstream's in-process order (drain the
graph after every emission), no DDS — the placement that must reproduce upstream's drops exactly."""
from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.experiments.fairness_configs import RunPlan
from schnitzel_stream_ros.experiments.fairness_metrics import run_metrics, run_record
from schnitzel_stream_ros.graph.model import Overflow
from schnitzel_stream_ros.graph.validate import load_and_validate
from schnitzel_stream_ros.runtime.deterministic import DeterministicEngine
from schnitzel_stream_ros.runtime.inbox import Inbox

#: lines read back from one run's sink file (the sink bounds the file; this bounds the reading)
MAX_LINES = 5_000_000


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The sink's JSON lines; a torn or foreign line is skipped (as upstream's reader does)."""
    if not path.exists():
        return []
    out = []
    with path.open(encoding='utf-8') as fh:
        for index, text in enumerate(fh):
            if index >= MAX_LINES:
                break
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(line, dict):
                out.append(line)
    return out


def policy_drops(inboxes: Iterable[Inbox]) -> tuple[int, int, int]:
    """(dropped by an overflow policy, refused by policy `error`, discarded when the run ended).

    Upstream's `packets.dropped_total` counts only the first: the packet an `error` inbox refuses
    ends the run instead, and what still waits then is abandoned. Our inboxes count all three as
    lost (nothing goes silently); the benchmark reports them apart to stay comparable."""
    dropped = refused = discarded = 0
    for inbox in inboxes:
        if inbox.overflow is Overflow.ERROR:
            refused += inbox.dropped_new
        else:
            dropped += inbox.dropped_new
        dropped += inbox.dropped_oldest + inbox.dropped_weighted
        discarded += inbox.discarded
    return dropped, refused, discarded


def run_deterministic(plan: RunPlan, run_dir: Path) -> dict[str, Any]:
    """Run one plan in deterministic mode; the run record (upstream's run schema)."""
    graph_path = plan.write_graph(run_dir / 'graphs' / f'{plan.run_id}.yaml')
    events_path = Path(plan.node_config('sink')['output_path'])
    result = load_and_validate(graph_path)
    if result.graph is None:
        raise ValueError('; '.join(str(e) for e in result.errors))
    engine = DeterministicEngine(result.graph)
    t0 = time.monotonic_ns()
    outcome = engine.run()
    duration = (time.monotonic_ns() - t0) / 1e9
    dropped, refused, discarded = policy_drops(inp.inbox for inp in engine.inputs.values())
    ok = not outcome.errors
    metrics, breakdown = run_metrics(
        read_lines(events_path), expected_total=plan.expected_total,
        expected_by_group=plan.expected_by_group, duration_sec=duration, dropped=dropped,
        group_weights=plan.group_weights, latency_budget_ms=plan.latency_budget_ms, ok=ok,
    )
    counters = {'packets.dropped_total': dropped, 'packets.refused_by_error_policy': refused,
                'packets.discarded_at_end': discarded, 'packets.source_emitted_total': engine.emitted}
    return run_record(plan, metrics, breakdown, status='ok' if ok else 'error',
                      error='; '.join(outcome.errors), duration_sec=duration, placement='deterministic',
                      counters=counters,
                      paths={'events_path': str(events_path), 'graph_path': str(graph_path)})
