"""The control plane's read model of a running site: graph, live rates, health, events, decisions.

Fed from three sides, each on its own thread: the runner's progress snapshots (`observe`, the same
dicts the progress line and the timeline get), `/diagnostics` statuses and the event/decision
topics (control/ros_bridge.py). Readers (HTTP handlers, the page's push stream) get plain JSON-able
dicts. Everything kept is bounded: the last snapshot, the newest MAX_EVENTS events and
MAX_DECISIONS decisions, at most MAX_STATUSES health statuses (the oldest evicted, counted); texts
of a status are cut to MAX_TEXT, an event larger than MAX_EVENT_BYTES is counted and dropped (they
come from anyone on the domain).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from schnitzel_stream_ros.delivery.redact import mask_url
from schnitzel_stream_ros.graph.model import ValidatedGraph
from schnitzel_stream_ros.observability.health import BREAKER_GAUGE, BREAKER_NAMES, LEVEL_NAMES, STALE
from schnitzel_stream_ros.observability.metrics import percentiles_ms

MAX_EVENTS = 200
MAX_DECISIONS = 200
MAX_STATUSES = 2048
#: what one status or event may hold here (they come from anyone on the ROS domain)
MAX_TEXT = 512
MAX_VALUES = 64
MAX_EVENT_BYTES = 64 * 1024
#: Rates are computed over at least this interval (the page is pushed at most at 2 Hz).
RATE_INTERVAL_SEC = 0.5
#: A health status not refreshed for this long is reported STALE (containers publish every second).
STALE_AFTER_SEC = 5.0


def _masked(value: Any) -> Any:
    """Parameter values as the page may show them: URLs with their password masked."""
    if isinstance(value, str):
        return mask_url(value) if '://' in value else value
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _masked(v) for k, v in value.items()}
    return value


def fq_name(node: Any) -> str:
    """The ROS name of a graph node (its parameter services live under it)."""
    return ('' if node.namespace == '/' else node.namespace.rstrip('/')) + '/' + node.id


def graph_document(graph: ValidatedGraph) -> dict[str, Any]:
    """Nodes, edges, containers and hosts of a validated graph, as the API returns them."""
    host = socket.gethostname()
    nodes = []
    for node in graph.nodes:
        schema = node.plugin_cls.param_schema()
        nodes.append({
            'id': node.id,
            'plugin': node.plugin_ref,
            'kind': node.kind.value,
            'container': node.container,
            'fq_name': fq_name(node),
            'inputs': [p.name for p in node.inputs],
            'outputs': [p.name for p in node.outputs],
            'params': {k: _masked(v) for k, v in node.params.items()},
            'dynamic_params': sorted(name for name, p in schema.items() if p.dynamic),
        })
    edges = [
        {'label': e.label, 'src': e.src, 'src_port': e.src_port, 'dst': e.dst, 'dst_port': e.dst_port,
         'topic': e.topic, 'overflow': e.overflow.value, 'inbox_max': e.inbox_max}
        for e in graph.edges
    ]
    containers = [{'name': c.name, 'nodes': list(c.node_ids), 'host': host} for c in graph.containers]
    return {'namespace': graph.spec.namespace, 'source': graph.spec.source, 'nodes': nodes, 'edges': edges,
            'containers': containers, 'hosts': [host]}


class SiteView:
    """Thread-safe, bounded state of the site for the API; `graph()` gives the graph that runs now."""

    def __init__(self, graph: Callable[[], ValidatedGraph]) -> None:
        self.graph = graph
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._snapshots: list[Mapping[str, Any]] = []
        self._metrics: dict[str, Any] = {'t': 0.0, 'nodes': {}, 'edges': {}}
        self._last_rate_at: float | None = None
        self._last_nodes: dict[str, tuple[float, float, float]] = {}
        self._last_edges: dict[str, tuple[float, float, list[int]]] = {}
        self._statuses: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.statuses_evicted = 0
        self.events_dropped = 0  # larger than MAX_EVENT_BYTES
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._decisions: deque[dict[str, Any]] = deque(maxlen=MAX_DECISIONS)
        self._seq = 0
        self.events_total = 0
        self.decisions_total = 0
        self.version = 0  # grows with every change; the push stream sends only when it moved

    # -- snapshots -> metrics -------------------------------------------------------------------
    def observe(self, snapshots: Iterable[Mapping[str, Any]]) -> None:
        """A runner progress observer: keeps the snapshots, recomputes rates every RATE_INTERVAL_SEC."""
        snapshots = list(snapshots)
        now = time.monotonic()
        with self._lock:
            self._snapshots = snapshots
            if self._last_rate_at is not None and now - self._last_rate_at < RATE_INTERVAL_SEC:
                return
            dt = max(now - (self._last_rate_at if self._last_rate_at is not None else self._t0), 1e-6)
            self._last_rate_at = now
            self._metrics = self._rates(snapshots, dt, now)
            self.version += 1

    def _rates(self, snapshots: list[Mapping[str, Any]], dt: float, now: float) -> dict[str, Any]:
        labels = {(e.topic, e.dst, e.dst_port): e.label for e in self.graph().edges}
        nodes: dict[str, Any] = {}
        edges: dict[str, Any] = {}
        for snap in snapshots:
            for node_id, v in snap.get('nodes', {}).items():
                produced, consumed = v.get('produced', 0), v.get('consumed', 0)
                dropped = v.get('inbox_dropped_total', 0)
                before = self._last_nodes.get(node_id, (produced, consumed, dropped))
                self._last_nodes[node_id] = (produced, consumed, dropped)
                counters = v.get('counters', {})
                nodes[node_id] = {
                    'container': snap.get('container'),
                    'produced': produced, 'consumed': consumed,
                    'rate': round((produced - before[0]) / dt, 2),
                    'consumed_rate': round((consumed - before[1]) / dt, 2),
                    'dropped_total': dropped, 'errors_total': v.get('errors_total', 0),
                    'counters': counters,
                }
                if BREAKER_GAUGE in counters:
                    nodes[node_id]['breaker'] = BREAKER_NAMES.get(int(counters[BREAKER_GAUGE]), 'closed')
            for row in snap.get('edges', []):
                label = labels.get((row['topic'], row['dst'], row['dst_port']),
                                   f'{row["topic"]}->{row["dst"]}.{row["dst_port"]}')
                packets, dropped = row.get('packets', 0), row.get('dropped_total', 0)
                counts = list(row.get('latency_counts', []))
                last = self._last_edges.get(label, (packets, dropped, counts))
                self._last_edges[label] = (packets, dropped, counts)
                window = [c - p for c, p in zip(counts, [*last[2], *[0] * len(counts)], strict=False)]
                p50, p99 = percentiles_ms(window, int(row.get('latency_max_ns', 0)), (0.5, 0.99))
                edges[label] = {
                    'packets': packets, 'rate': round((packets - last[0]) / dt, 2),
                    'dropped_total': dropped, 'drop_rate': round((dropped - last[1]) / dt, 2),
                    'inbox_depth': row.get('inbox_depth', 0),
                    'inbox_depth_max': row.get('inbox_depth_max', 0),
                    'latency_p50_ms': p50, 'latency_p99_ms': p99,
                }
        return {'t': round(now - self._t0, 3), 'nodes': nodes, 'edges': edges}

    def snapshots(self) -> list[Mapping[str, Any]]:
        with self._lock:
            return list(self._snapshots)

    def metrics(self) -> dict[str, Any]:
        with self._lock:
            return self._metrics

    # -- health (/diagnostics) -----------------------------------------------------------------
    def add_statuses(self, statuses: Iterable[tuple[str, int, str, str, list[tuple[str, str]]]]) -> None:
        """(name, level, message, hardware_id, values) of one DiagnosticArray."""
        now = time.monotonic()
        with self._lock:
            for name, level, message, hardware_id, values in statuses:
                name = name[:MAX_TEXT]
                self._statuses.pop(name, None)
                self._statuses[name] = {
                    'name': name, 'level': level if level in (0, 1, 2, 3) else 2,
                    'message': message[:MAX_TEXT], 'hardware_id': hardware_id[:MAX_TEXT],
                    'values': {k[:MAX_TEXT]: v[:MAX_TEXT] for k, v in list(values)[:MAX_VALUES]}, 'at': now,
                }
                while len(self._statuses) > MAX_STATUSES:
                    self._statuses.popitem(last=False)
                    self.statuses_evicted += 1
            self.version += 1

    def health(self) -> dict[str, Any]:
        """Every status as /diagnostics has it, a level per node id and per container, the worst."""
        now = time.monotonic()
        graph = self.graph()
        node_ids = {n.id for n in graph.nodes}
        containers = {c.name for c in graph.containers}
        statuses, by_node, by_container = [], {}, {}
        with self._lock:
            rows = list(self._statuses.values())
        for row in rows:
            age = now - row['at']
            level = STALE if age > STALE_AFTER_SEC else row['level']
            item = {k: v for k, v in row.items() if k != 'at'}
            item.update(level=level, level_name=LEVEL_NAMES.get(level, str(level)), age_sec=round(age, 1))
            head, _, tail = row['name'].rpartition(': ')
            if head and tail in node_ids:
                item['node'] = tail
                by_node[tail] = max(by_node.get(tail, 0), level)
            else:
                last = row['name'].rstrip('/').rsplit('/', 1)[-1]
                if last in containers:
                    item['container'] = last
                    by_container[last] = max(by_container.get(last, 0), level)
            statuses.append(item)
        levels = [*by_node.values(), *by_container.values()]
        worst = max(levels) if levels else None
        return {'worst': worst, 'worst_name': LEVEL_NAMES.get(worst) if worst is not None else 'UNKNOWN',
                'nodes': by_node, 'containers': by_container, 'statuses': statuses,
                'statuses_evicted': self.statuses_evicted}

    # -- events and decisions ------------------------------------------------------------------
    def add_event(self, topic: str, event: Mapping[str, Any]) -> None:
        if len(json.dumps(event, default=str)) > MAX_EVENT_BYTES:
            with self._lock:
                self.events_dropped += 1
            return
        with self._lock:
            self._seq += 1
            self.events_total += 1
            self._events.append({'seq': self._seq, 'topic': topic, 'received': time.time(),
                                 'event': dict(event)})
            self.version += 1

    def add_decision(self, topic: str, decision: Any) -> None:
        with self._lock:
            self._seq += 1
            self.decisions_total += 1
            self._decisions.append({'seq': self._seq, 'topic': topic, 'received': time.time(),
                                    'decision': decision})
            self.version += 1

    def events(self, after: int = 0, limit: int = MAX_EVENTS) -> dict[str, Any]:
        with self._lock:
            rows = [e for e in self._events if e['seq'] > after][-limit:]
            return {'events': rows, 'total': self.events_total, 'kept': len(self._events),
                    'dropped_too_large': self.events_dropped}

    def decisions(self, after: int = 0, limit: int = MAX_DECISIONS) -> dict[str, Any]:
        with self._lock:
            rows = [d for d in self._decisions if d['seq'] > after][-limit:]
            return {'decisions': rows, 'total': self.decisions_total, 'kept': len(self._decisions)}
