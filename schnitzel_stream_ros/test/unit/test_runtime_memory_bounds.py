"""What a long run keeps in memory for its report and /diagnostics is capped, the overflow counted.

Driven with many distinct keys, as months of input would: counter names made of input (a router's
ports, stop reasons, event types), warning lines, node and edge churn (hot-replace, reload), and
the report built from all of it. Each structure must stay at its cap, and what did not fit must be
visible as a count in the report — never a silent loss, never a dict that grows with the input.
"""

from __future__ import annotations

from schnitzel_stream_ros.observability.bounded import (
    COUNTER_NAMES_REFUSED,
    MAX_COUNTER_NAMES,
    MAX_MESSAGES,
    BoundedMessages,
)
from schnitzel_stream_ros.observability.health import HealthMonitor, NodeView
from schnitzel_stream_ros.observability.metrics import EdgeMetrics, NodeMetrics
from schnitzel_stream_ros.observability.report import build_report
from schnitzel_stream_ros.observability.snapshot import runtime_snapshot

KEYS = 20_000


def test_counter_names_made_of_input_are_capped_and_the_rest_counted():
    metrics = NodeMetrics('router', is_source=False, is_sink=False)
    metrics.count('routed_total', 0)
    for i in range(KEYS):  # e.g. routed_<port>_total / <event type>_total of a hostile stream
        metrics.count(f'robot_{i}_total')
        metrics.gauge(f'battery.robot_{i}', float(i))
        metrics.count('routed_total')  # a name present before the cap keeps counting
    assert len(metrics.counters) <= MAX_COUNTER_NAMES + 1  # + the overflow counter itself
    kept = len(metrics.counters) - 2  # minus routed_total and the overflow counter
    assert metrics.counters['routed_total'] == KEYS
    assert metrics.counters[COUNTER_NAMES_REFUSED] == 2 * KEYS - kept
    snapshot = runtime_snapshot('c', [(metrics, 0)], [])
    report = build_report(graph_path='g.yaml', engine='live', snapshots=[snapshot])
    assert report['metrics'][f'node.router.{COUNTER_NAMES_REFUSED}'] == 2 * KEYS - kept
    assert sum(k.startswith('node.router.') for k in report['metrics']) <= MAX_COUNTER_NAMES + 8


def test_warning_lines_are_capped_per_container_and_the_report_says_how_many_went():
    warnings, fatal = BoundedMessages(), BoundedMessages()
    for i in range(KEYS):
        warnings.add(f"node 'n{i}': close() failed: error {i}")
        warnings.add("node 'n0': close() failed: error 0")  # a repeat is no news, no count
        fatal.add(f'container died: {i}')
    assert len(warnings) == len(fatal) == MAX_MESSAGES
    assert warnings.dropped == fatal.dropped == KEYS - MAX_MESSAGES
    assert warnings.lines[0] == "node 'n0': close() failed: error 0"  # the first failure is kept
    dropped = warnings.dropped + fatal.dropped
    state = {'warnings': list(warnings), 'fatal': list(fatal), 'messages_dropped': dropped}
    report = build_report(graph_path='g.yaml', engine='live', snapshots=[{'container': 'c', 'state': state}])
    assert len(report['warnings']) == MAX_MESSAGES + 1
    assert f'{dropped} more distinct warning/fatal lines were not kept' in report['warnings'][-1]
    assert dropped == 2 * (KEYS - MAX_MESSAGES)
    assert len(report['errors']) == MAX_MESSAGES


def test_health_memory_follows_the_live_nodes_and_edges_under_churn():
    """Nodes and edges come and go (hot-replace, reload under new ids): the monitor remembers only
    the ones in the current snapshot, whatever went before."""
    monitor = HealthMonitor('/c')
    live = 5
    for step in range(2_000):
        ids = [f'n{step}_{k}' for k in range(live)]
        nodes = []
        for node_id in ids:
            m = NodeMetrics(node_id, is_source=False, is_sink=True)
            m.count('errors_total', step)
            nodes.append((m, 0))
        edges = []
        for k in range(live):
            e = EdgeMetrics(f'/t{step}_{k}', ids[k], 'in')
            edges.append((e, 0, 0))
        snapshot = runtime_snapshot('c', nodes, edges)
        views = {node_id: NodeView(fq_name=f'/{node_id}', plugin='P') for node_id in ids}
        health = monitor.update(float(step), snapshot, views)
        assert len(health.statuses) == live + 1
    assert len(monitor._nodes) == live
    assert len(monitor._edges) == live
