"""The state of one runtime (a container or the deterministic engine) as one JSON-able dict.

Containers in other processes send this over `~/_schnitzel/report`; the in-process runtimes hand
it over directly. The run report (observability/report.py) merges snapshots, so both run modes and
every container share one format:

    {'container': name,
     'nodes': {node_id: NodeMetrics.snapshot(...)},
     'edges': [EdgeMetrics.snapshot(...) ...],          # one per (topic, dst, dst_port)
     'transport': {counter: n},                          # DDS publishes, serialisations, receptions
     'topics': {topic: {'published': n, 'external_subscribers': n}},
     'state': {'started', 'sources_done', 'idle', 'fatal': [...], 'warnings': [...]}}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from schnitzel_stream_ros.observability.metrics import EdgeMetrics, NodeMetrics


def runtime_snapshot(
    name: str,
    nodes: Iterable[tuple[NodeMetrics, int]],
    edges: Iterable[tuple[EdgeMetrics, int, int]],
    *,
    transport: Mapping[str, int] | None = None,
    topics: Mapping[str, Mapping[str, int]] | None = None,
    state: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`nodes`: (metrics, inbox drops of the node); `edges`: (metrics, inbox depth, inbox depth max)."""
    return {
        'container': name,
        'nodes': {m.node_id: m.snapshot(dropped) for m, dropped in nodes},
        'edges': [m.snapshot(depth, depth_max) for m, depth, depth_max in edges],
        'transport': dict(transport or {}),
        'topics': {t: dict(v) for t, v in (topics or {}).items()},
        'state': dict(state or {}),
    }
