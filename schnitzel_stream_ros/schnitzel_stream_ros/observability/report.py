"""The run report: one JSON object per run, upstream-compatible keys, and a status that tells the truth.

Shape (upstream: `{ts, status, engine, graph_version, graph, metrics}`; the other keys are ours):

    {"ts": "...Z", "status": "ok|degraded|error", "engine": "deterministic|live",
     "graph_version": 2, "graph": "path/to/graph.yaml",
     "metrics": {"packets.consumed_total": ..., "packets.produced_total": ...,
                 "packets.source_emitted_total": ..., "packets.dropped_total": ...,
                 "packets.shed_total": ...,
                 "node.<id>.consumed|produced|is_source|is_sink|inbox_dropped_total|errors_total": ...,
                 "node.<id>.<plugin counter>": ...,
                 "edge.<src>.<port>-><dst>.<port>.packets|dropped_total|inbox_depth|inbox_depth_max": ...,
                 "edge.<...>.latency_p50_ms|latency_p99_ms": ...,
                 "edge.<...>.transport_lost_total": ...,         # edges between processes
                 "transport.<counter>": ...,
                 "lane.<topic>.<counter>": ...},                # shared-memory frame lanes (shm_lane/)
     "stop_reason": "...", "duration_sec": ..., "errors": [...], "warnings": [...],
     "executor": "...", "containers": [...]}

Status (upstream always wrote ok):
- error: the run failed — a node did not load or set up, a plugin raised in deterministic mode, an
  `error` overflow policy fired, a container died, the runner itself failed;
- degraded: the run finished but lost or failed something — a packet dropped (overflow, still
  waiting at the end), plugin errors survived in live mode, a close() failing, undeliverable packets,
  a plugin failure counter above zero (`*failed_total`, `*failures_total`, `dead_letter_total`,
  `gave_up_total`, `refused_total`: an HTTP post given up, non-JSON refused, a device failing).
  Packets shed by a keep-freshest inbox (`max: 1, overflow: drop_oldest`, e.g. a detector behind
  a camera) are the graph's design: counted in `packets.dropped_total` (upstream) and
  `packets.shed_total`, not degraded;
- ok: none of that.

Outcome (`outcome`, and the exit code of `schnitzel-stream run`) answers the one question a
supervisor or CI has — did this run lose data? — on top of the status:
- `failed` (exit 1): status error, or data was lost: a packet dropped outside a keep-freshest inbox
  (or lost between processes), a packet a node raised on (`errors_total`), an event a queue refused
  (`refused_total`), a packet that failed to encode/decode. `lost` counts each kind;
- `degraded` (exit 3): the run finished and lost nothing, but something needs a look (warnings, a
  backlog left queued for the next start, dead letters kept in the queue file, a restart, a queue
  that had to hold its producers back for room: `storage_blocked_total`; events a queue sink dropped
  at its budget because the graph chose `full_policy: drop_oldest|drop_newest`: `budget_dropped_total`,
  counted, noted in the queue file);
- `ok` (exit 0). An invalid graph exits 2 before anything runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.graph.model import NodeKind, Overflow, ValidatedGraph
from schnitzel_stream_ros.observability.metrics import LatencyHistogram
from schnitzel_stream_ros.packet import format_ts

_BUILTIN_NODE_METRICS = (
    'consumed',
    'produced',
    'is_source',
    'is_sink',
    'inbox_dropped_total',
    'errors_total',
)
_TRANSPORT_FAILURES = ('encode_failed_total', 'decode_failed_total')
#: Plugin counters that mean "something failed" (HTTP posts given up, refused non-JSON, device errors):
#: any of them above zero makes a run degraded. Counters of intended filtering (dedup's
#: dropped_total, a sampler's dropped_total, skipped/invalid detections) are not failures.
FAILURE_COUNTER_SUFFIXES = (
    'failed_total',
    'failures_total',
    'dead_letter_total',
    'gave_up_total',
    'refused_total',
)


def _edge_labels(graph: ValidatedGraph | None) -> dict[tuple[str, str, str], str]:
    if graph is None:
        return {}
    return {(e.topic, e.dst, e.dst_port): e.label for e in graph.edges}


def collect_metrics(
    snapshots: Iterable[Mapping[str, Any]], graph: ValidatedGraph | None = None
) -> dict[str, Any]:
    """Flat upstream-style metrics from runtime snapshots (observability/snapshot.py)."""
    kinds = {n.id: n.kind for n in graph.nodes} if graph is not None else {}
    order = [n.id for n in graph.nodes] if graph is not None else []
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[str, dict[str, Any]] = {}
    transport: dict[str, int] = {}
    published: dict[str, int] = {}  # DDS publishes per topic (what crossed a process boundary)
    labels = _edge_labels(graph)
    container_of = {n.id: n.container for n in graph.nodes} if graph is not None else {}
    crossing = (
        {e.label for e in graph.edges if container_of[e.src] != container_of[e.dst]} if graph else set()
    )
    topic_of = {e.label: e.topic for e in graph.edges} if graph is not None else {}
    # keep-freshest inboxes (max 1, drop_oldest: a detector behind a camera) replace the waiting packet
    # by design: what they shed is counted in packets.shed_total and is not a sign of trouble
    freshest = (
        {e.label for e in graph.edges if e.overflow is Overflow.DROP_OLDEST and e.inbox_max == 1}
        if graph
        else set()
    )
    shed = 0
    lane_written: dict[str, int] = {}
    lane_counters: dict[str, int] = {}  # lane.<topic>.<counter>: what each frame lane's writer counted
    lane_edges = {e.label for e in graph.edges if getattr(e, 'lane', None)} if graph is not None else set()
    for snap in snapshots:
        for node_id, values in snap.get('nodes', {}).items():
            nodes[node_id] = dict(values)
        for row in snap.get('edges', []):
            key = (row['topic'], row['dst'], row['dst_port'])
            edges[labels.get(key, f'{row["topic"]}->{row["dst"]}.{row["dst_port"]}')] = row
        for name, value in snap.get('transport', {}).items():
            transport[name] = transport.get(name, 0) + int(value)
        for topic, row in snap.get('topics', {}).items():
            published[topic] = published.get(topic, 0) + int(row.get('published', 0))
            if 'lane' in row:  # a shared-memory frame lane (shm_lane/): what it wrote for its readers
                lane_written[topic] = lane_written.get(topic, 0) + int(row['lane'].get('written_total', 0))
                for name, value in row['lane'].items():
                    key = f'lane.{topic}.{name}'
                    lane_counters[key] = lane_counters.get(key, 0) + int(value)
    metrics: dict[str, Any] = {}
    totals = {'consumed': 0, 'produced': 0, 'source_emitted': 0, 'dropped': 0}
    for node_id in [*order, *sorted(set(nodes) - set(order))]:
        values = nodes.get(node_id)
        if values is None:
            continue  # never loaded (the errors say why)
        if node_id in kinds:  # the graph's kind is the truth (a PrintSink may be used as a node)
            values['is_source'] = int(kinds[node_id] is NodeKind.SOURCE)
            values['is_sink'] = int(kinds[node_id] is NodeKind.SINK)
        counters = dict(values.get('counters', {}))
        # a plugin that counts its own errors_total adds to the runtime's (caught exceptions)
        values['errors_total'] = values.get('errors_total', 0) + counters.pop('errors_total', 0)
        for name in _BUILTIN_NODE_METRICS:
            metrics[f'node.{node_id}.{name}'] = values.get(name, 0)
        for name, value in sorted(counters.items()):
            if name not in _BUILTIN_NODE_METRICS:
                metrics[f'node.{node_id}.{name}'] = value
        totals['consumed'] += values.get('consumed', 0)
        totals['produced'] += values.get('produced', 0)
        totals['dropped'] += values.get('inbox_dropped_total', 0)
        if values.get('is_source'):
            totals['source_emitted'] += values.get('produced', 0)
    for label in [e.label for e in graph.edges] if graph is not None else sorted(edges):
        row = edges.get(label)
        if row is None:
            continue
        hist = LatencyHistogram()
        hist.merge(row.get('latency_counts', []), row.get('latency_max_ns', 0))
        prefix = f'edge.{label}'
        lost = 0
        if label in crossing:
            # every publish reaches each matched subscriber of a reliable edge; what did not arrive was
            # lost between processes (DDS history overrun, best effort): count it, never hide it
            sent = lane_written if label in lane_edges else published  # a lane edge: what the lane carried
            lost = max(0, sent.get(topic_of[label], 0) - row['packets'])
            metrics[f'{prefix}.transport_lost_total'] = lost
            totals['dropped'] += lost
        if label in freshest:
            shed += row['dropped_total']
        metrics[f'{prefix}.packets'] = row['packets']
        metrics[f'{prefix}.dropped_total'] = row['dropped_total'] + lost
        metrics[f'{prefix}.inbox_depth'] = row['inbox_depth']
        metrics[f'{prefix}.inbox_depth_max'] = row['inbox_depth_max']
        metrics[f'{prefix}.latency_p50_ms'] = hist.percentile_ms(0.50)
        metrics[f'{prefix}.latency_p99_ms'] = hist.percentile_ms(0.99)
    for name, value in sorted(transport.items()):
        metrics[f'transport.{name}'] = value
    metrics.update(sorted(lane_counters.items()))
    head = {
        'packets.consumed_total': totals['consumed'],
        'packets.produced_total': totals['produced'],
        'packets.source_emitted_total': totals['source_emitted'],
        'packets.dropped_total': totals['dropped'],
        'packets.shed_total': shed,
    }
    return {**head, **metrics}


#: Plugin counters that need a look but lose nothing (degraded, never failed).
ATTENTION_COUNTERS = ('storage_blocked_total', 'budget_dropped_total')
#: Exit codes of `schnitzel-stream run` per outcome (docs/runtime.md).
OUTCOME_EXIT_CODES = {'ok': 0, 'failed': 1, 'degraded': 3}


def _node_sum(metrics: Mapping[str, Any], suffix: str) -> int:
    return int(
        sum(
            v
            for k, v in metrics.items()
            if k.startswith('node.') and k.endswith(suffix) and isinstance(v, int | float)
        )
    )


def lost_counts(metrics: Mapping[str, Any]) -> dict[str, int]:
    """What the run lost, by kind (see the module docstring); all zero = nothing lost."""
    return {
        'dropped': int(metrics.get('packets.dropped_total', 0) - metrics.get('packets.shed_total', 0)),
        'node_errors': _node_sum(metrics, '.errors_total'),
        'refused': _node_sum(metrics, '.refused_total'),
        'transport_failures': int(sum(metrics.get(f'transport.{n}', 0) for n in _TRANSPORT_FAILURES)),
    }


def decide_outcome(status: str, lost: Mapping[str, int]) -> str:
    if status == 'error' or any(lost.values()):
        return 'failed'
    return 'degraded' if status == 'degraded' else 'ok'


def decide_status(metrics: Mapping[str, Any], errors: list[str], warnings: list[str]) -> str:
    if errors:
        return 'error'
    node_errors = sum(v for k, v in metrics.items() if k.startswith('node.') and k.endswith('.errors_total'))
    transport_failures = sum(metrics.get(f'transport.{name}', 0) for name in _TRANSPORT_FAILURES)
    unplanned_drops = metrics.get('packets.dropped_total', 0) - metrics.get('packets.shed_total', 0)
    plugin_failures = sum(
        v
        for k, v in metrics.items()
        if k.startswith('node.') and k.endswith(FAILURE_COUNTER_SUFFIXES) and isinstance(v, int | float)
    )
    attention = sum(_node_sum(metrics, f'.{name}') for name in ATTENTION_COUNTERS)
    if warnings or unplanned_drops or node_errors or transport_failures or plugin_failures or attention:
        return 'degraded'
    return 'ok'


def build_report(
    *,
    graph_path: str,
    engine: str,
    snapshots: list[Mapping[str, Any]],
    graph: ValidatedGraph | None = None,
    errors: list[str] | None = None,
    warnings: list[str] | None = None,
    stop_reason: str = '',
    duration_sec: float = 0.0,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    errors = list(errors or [])
    warnings = list(warnings or [])
    for snap in snapshots:
        state = snap.get('state', {})
        errors += [e for e in state.get('fatal', []) if e not in errors]
        warnings += [w for w in state.get('warnings', []) if w not in warnings]
        if state.get('messages_dropped'):  # the container's lines are capped (observability/bounded.py)
            warnings.append(
                f"container {snap.get('container', '?')}: {state['messages_dropped']} more distinct "
                'warning/fatal lines were not kept (cap per container); the log has them'
            )
    metrics = collect_metrics(snapshots, graph)
    status = decide_status(metrics, errors, warnings)
    lost = lost_counts(metrics)
    report: dict[str, Any] = {
        'ts': format_ts(datetime.now(UTC)),
        'status': status,
        'outcome': decide_outcome(status, lost),
        'lost': lost,
        'engine': engine,
        'graph_version': graph.spec.version if graph is not None else 2,
        'graph': graph_path,
        'metrics': metrics,
        'stop_reason': stop_reason,
        'duration_sec': round(duration_sec, 3),
        'errors': errors,
        'warnings': warnings,
    }
    report.update(extra or {})
    return report


def write_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write atomically (temp file + rename): a reader never sees half a report, even on a crash."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # here: the runner writes reports, containers only import this module

    fd, tmp = tempfile.mkstemp(prefix=f'.{target.name}.', dir=target.parent)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            json.dump(report, f, indent=2, sort_keys=False)
            f.write('\n')
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
