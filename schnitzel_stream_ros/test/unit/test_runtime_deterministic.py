"""Deterministic run mode reproduces the upstream run semantics (no DDS, one thread).

Graphs are real files, validated by the graph package, run by the engine with the core plugins;
the order packets arrive in is read back from a real JSONL file written by JsonlSink.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import compile_graph
from schnitzel_stream_ros.observability.report import build_report
from schnitzel_stream_ros.runtime.deterministic import DeterministicEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'runtime_plugins'))
REGISTRY = PluginRegistry(Allowlist(('schnitzel_stream_ros', 'runtime_test_plugins')))


def _graph(tmp_path: Path, text: str):
    path = tmp_path / 'graph.yaml'
    path.write_text(textwrap.dedent(text).replace('OUT', str(tmp_path / 'out.jsonl')))
    return compile_graph(path, REGISTRY)


def _lines(tmp_path: Path) -> list[dict]:
    path = tmp_path / 'out.jsonl'
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _run(graph, **kwargs):
    outcome = DeterministicEngine(graph, **kwargs).run()
    report = build_report(
        graph_path='graph.yaml',
        engine='deterministic',
        snapshots=outcome.snapshots,
        graph=graph,
        errors=outcome.errors,
        warnings=outcome.warnings,
        stop_reason=outcome.stop_reason,
    )
    return outcome, report


TWO_SOURCES = """
    version: 2
    nodes:
      - {id: a, kind: source, plugin: StaticSource, config: {packets: [{payload: a1}, {payload: a2}]}}
      - {id: b, kind: source, plugin: StaticSource, config: {packets: [{payload: b1}, {payload: b2}]}}
      - {id: sink, kind: sink, plugin: JsonlSink, config: {path: OUT, body: payload}}
    edges:
      - {from: a, to: sink}
      - {from: b, to: sink}
"""


def test_sources_are_pulled_round_robin_in_declaration_order(tmp_path):
    outcome, report = _run(_graph(tmp_path, TWO_SOURCES))
    assert _lines(tmp_path) == ['a1', 'b1', 'a2', 'b2']
    assert outcome.stop_reason == 'sources_done'
    assert report['status'] == 'ok'
    m = report['metrics']
    assert m['packets.source_emitted_total'] == 4
    assert m['packets.consumed_total'] == 4
    assert m['node.sink.consumed'] == 4 and m['node.sink.is_sink'] == 1 and m['node.a.is_source'] == 1
    assert m['node.sink.written_total'] == 4  # plugin counter, reported under the node


def test_max_events_is_one_budget_for_all_sources(tmp_path):
    outcome, report = _run(_graph(tmp_path, TWO_SOURCES), max_events=2)
    assert _lines(tmp_path) == ['a1', 'b1']
    assert outcome.stop_reason == 'max_events'
    assert report['metrics']['packets.source_emitted_total'] == 2


def test_diamond_is_drained_breadth_first_before_the_next_pull(tmp_path):
    # src fans out to b (then e) and c; both paths meet in d. FIFO drain: c's output reaches d
    # before the longer b->e path, and x1 is fully drained before x2 is pulled.
    graph = _graph(
        tmp_path,
        """
        version: 2
        nodes:
          - {id: src, kind: source, plugin: StaticSource, config: {packets: [{payload: x1}, {payload: x2}]}}
          - {id: b, plugin: BurstNode, config: {count: 1, meta_key: via_b}}
          - {id: e, plugin: BurstNode, config: {count: 1, meta_key: via_e}}
          - {id: c, plugin: BurstNode, config: {count: 1, meta_key: via_c}}
          - {id: d, kind: sink, plugin: JsonlSink, config: {path: OUT}}
        edges:
          - {from: src, to: b}
          - {from: src, to: c}
          - {from: b, to: e}
          - {from: e, to: d}
          - {from: c, to: d}
    """,
    )
    _run(graph)
    order = [
        (rec['payload'], sorted(k for k in rec['meta'] if k.startswith('via_'))) for rec in _lines(tmp_path)
    ]
    assert order == [
        ('x1', ['via_c']),
        ('x1', ['via_b', 'via_e']),
        ('x2', ['via_c']),
        ('x2', ['via_b', 'via_e']),
    ]


def test_every_output_goes_to_every_edge_in_declaration_order(tmp_path):
    graph = _graph(
        tmp_path,
        """
        version: 2
        nodes:
          - {id: src, kind: source, plugin: StaticSource, config: {packets: [{payload: p}]}}
          - {id: second, plugin: BurstNode, config: {count: 1, meta_key: second}}
          - {id: first, plugin: BurstNode, config: {count: 1, meta_key: first}}
          - {id: d, kind: sink, plugin: JsonlSink, config: {path: OUT}}
        edges:
          - {from: src, to: first}
          - {from: src, to: second}
          - {from: first, to: d}
          - {from: second, to: d}
    """,
    )
    _run(graph)
    assert [sorted(rec['meta']) for rec in _lines(tmp_path)] == [['first'], ['second']]


BURST_INTO_TWO = """
    version: 2
    nodes:
      - {id: src, kind: source, plugin: StaticSource, config: {packets: [{payload: p}]}}
      - {id: burst, plugin: BurstNode, config: {count: 5}}
      - {id: sink, kind: sink, plugin: JsonlSink, config: {path: OUT}}
    edges:
      - {from: src, to: burst}
      - {from: burst, to: sink, inbox: {max: 2, overflow: POLICY}}
"""


@pytest.mark.parametrize(('policy', 'kept'), [('drop_new', [0, 1]), ('drop_oldest', [3, 4])])
def test_burst_of_five_into_inbox_of_two_drops_three(tmp_path, policy, kept):
    outcome, report = _run(_graph(tmp_path, BURST_INTO_TWO.replace('POLICY', policy)))
    assert [rec['meta']['burst_seq'] for rec in _lines(tmp_path)] == kept
    m = report['metrics']
    assert m['node.sink.inbox_dropped_total'] == 3
    assert m['packets.dropped_total'] == 3
    assert m['edge.burst.out->sink.in.packets'] == 5
    assert m['edge.burst.out->sink.in.dropped_total'] == 3
    assert m['edge.burst.out->sink.in.inbox_depth_max'] == 2
    assert m['node.sink.consumed'] == 2
    assert report['status'] == 'degraded'  # packets were lost: never "ok"
    assert outcome.errors == []


def test_burst_into_full_inbox_with_policy_error_stops_the_run(tmp_path):
    outcome, report = _run(_graph(tmp_path, BURST_INTO_TWO.replace('POLICY', 'error')))
    assert report['status'] == 'error'
    assert outcome.errors == ["inbox 'sink.in' is full (2 packets) and its overflow policy is 'error'"]
    assert _lines(tmp_path) == []  # the run stopped before the sink got anything
    m = report['metrics']
    # 1 refused by the policy + the 2 that were waiting when the run stopped
    assert m['node.sink.inbox_dropped_total'] == 3
    assert m['edge.burst.out->sink.in.packets'] == 3  # the burst was cut off at the third packet


def test_block_policy_never_drops_in_deterministic_mode(tmp_path):
    _outcome, report = _run(_graph(tmp_path, BURST_INTO_TWO.replace('POLICY', 'block')))
    assert [rec['meta']['burst_seq'] for rec in _lines(tmp_path)] == [0, 1, 2, 3, 4]
    assert report['status'] == 'ok' and report['metrics']['packets.dropped_total'] == 0


def test_plugin_exception_ends_the_run_with_error_and_close_always_runs(tmp_path):
    marker = tmp_path / 'closed.txt'
    graph = _graph(
        tmp_path,
        f"""
        version: 2
        nodes:
          - {{id: src, kind: source, plugin: StaticSource,
              config: {{packets: [{{payload: ok1}}, {{payload: boom}}, {{payload: ok2}}]}}}}
          - {{id: check, plugin: 'runtime_test_plugins:FailOnPayload'}}
          - {{id: sink, kind: sink, plugin: 'runtime_test_plugins:MarkClosedSink',
              config: {{closed_marker: '{marker}'}}}}
        edges:
          - {{from: src, to: check}}
          - {{from: check, to: sink}}
    """,
    )
    outcome, report = _run(graph)
    assert report['status'] == 'error'
    assert len(outcome.errors) == 1
    assert outcome.errors[0].startswith("node 'check': process() failed on port 'in'")
    assert 'ValueError: refusing payload' in outcome.errors[0]
    assert marker.read_text() == 'consumed=1'  # ok1 went through; close() ran after the error


def test_setup_failure_is_an_error_naming_the_node(tmp_path):
    marker = tmp_path / 'closed.txt'
    graph = _graph(
        tmp_path,
        f"""
        version: 2
        nodes:
          - {{id: src, kind: source, plugin: StaticSource, config: {{packets: [{{payload: x}}]}}}}
          - {{id: dev, kind: sink, plugin: 'runtime_test_plugins:FailingSetup',
              config: {{closed_marker: '{marker}'}}}}
        edges:
          - {{from: src, to: dev}}
    """,
    )
    outcome, report = _run(graph)
    assert outcome.errors == ["node 'dev': setup() failed: RuntimeError: cannot open the device"]
    assert report['status'] == 'error'
    assert marker.read_text() == 'closed'
    assert report['metrics']['packets.source_emitted_total'] == 0  # nothing ran


def test_stop_event_ends_an_endless_source_cleanly(tmp_path):
    graph = _graph(
        tmp_path,
        """
        version: 2
        nodes:
          - {id: src, kind: source, plugin: 'runtime_test_plugins:EndlessSource'}
          - {id: sink, kind: sink, plugin: JsonlSink, config: {path: OUT}}
        edges:
          - {from: src, to: sink}
    """,
    )
    engine = DeterministicEngine(graph)
    original = engine.hosts['sink'].handle

    def handle_then_stop(packet, port):
        original(packet, port)
        if engine.hosts['sink'].metrics.consumed == 10:
            engine.stop_event.set()

    engine.hosts['sink'].handle = handle_then_stop
    outcome = engine.run()
    assert outcome.stop_reason == 'stopped'
    assert len(_lines(tmp_path)) == 10
    assert engine.hosts['src'].closed and engine.hosts['sink'].closed


def test_keep_freshest_inbox_sheds_by_design_and_the_run_stays_ok(tmp_path):
    """max 1 + drop_oldest is how a detector keeps up with a camera: shed, counted, not degraded."""
    graph = tmp_path / 'freshest.yaml'
    graph.write_text(f'''
version: 2
nodes:
  - {{id: src, plugin: StaticSource, config: {{packets: [{{payload: {{n: 1}}}}]}}}}
  - {{id: burst, plugin: BurstNode, config: {{count: 5}}}}
  - {{id: sink, plugin: JsonlSink, config: {{path: "{tmp_path / 'out.jsonl'}"}}}}
edges:
  - {{from: src, to: burst}}
  - {{from: burst, to: sink, inbox: {{max: 1, overflow: drop_oldest}}}}
''')
    report_path = tmp_path / 'report.json'
    from schnitzel_stream_ros.runtime.runner import main as run

    assert run([str(graph), '--mode', 'deterministic', '--quiet', '--report-json', str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    m = report['metrics']
    assert m['packets.dropped_total'] == 4  # upstream counter: every drop
    assert m['packets.shed_total'] == 4
    assert m['node.sink.consumed'] == 1
    assert report['status'] == 'ok'
