"""`schnitzel-stream run --mode deterministic`: exit codes and the report file (no DDS)."""

from __future__ import annotations

import json
import textwrap

from schnitzel_stream_ros.graph.validate import compile_graph
from schnitzel_stream_ros.runtime import runner
from schnitzel_stream_ros.runtime.live_run import budget_shares

GRAPH = """
    version: 2
    nodes:
      - {id: a, kind: source, plugin: StaticSource, config: {packets: [{payload: a1}, {payload: a2}]}}
      - {id: b, kind: source, plugin: StaticSource, config: {packets: [{payload: b1}, {payload: b2}]}}
      - {id: burst, plugin: BurstNode, config: {count: 3}}
      - {id: sink, kind: sink, plugin: JsonlSink, config: {path: OUT, body: payload}}
    edges:
      - {from: a, to: burst}
      - {from: b, to: burst}
      - {from: burst, to: sink, inbox: {max: 2, overflow: POLICY}}
"""


def _write(tmp_path, policy='drop_new', text=GRAPH):
    path = tmp_path / 'graph.yaml'
    path.write_text(
        textwrap.dedent(text).replace('OUT', str(tmp_path / 'out.jsonl')).replace('POLICY', policy)
    )
    return path


def _run(*args) -> int:
    return runner.main([*map(str, args), '--mode', 'deterministic', '--quiet'])


def test_report_has_upstream_keys_and_truthful_status(tmp_path):
    report_path = tmp_path / 'report.json'
    # packets were dropped (drop_new, not a keep-freshest inbox): data lost, the run failed -> exit 1
    assert _run(_write(tmp_path), '--max-events', 3, '--report-json', report_path) == 1
    report = json.loads(report_path.read_text())
    assert report['outcome'] == 'failed' and report['lost']['dropped'] == 3
    assert {'ts', 'status', 'engine', 'graph_version', 'graph', 'metrics'} <= set(report)
    assert report['engine'] == 'deterministic' and report['graph_version'] == 2
    assert report['stop_reason'] == 'max_events'
    m = report['metrics']
    assert m['packets.source_emitted_total'] == 3
    # a1 -> burst x3 into inbox 2 (drop_new): 1 dropped per emission
    assert m['packets.dropped_total'] == 3 and report['status'] == 'degraded'
    assert m['edge.burst.out->sink.in.latency_p50_ms'] is not None
    assert [json.loads(x) for x in (tmp_path / 'out.jsonl').read_text().splitlines()] == [
        'a1',
        'a1',
        'b1',
        'b1',
        'a2',
        'a2',
    ]


def test_a_run_that_loses_nothing_exits_0_and_one_that_needs_a_look_exits_3(tmp_path, capsys):
    report_path = tmp_path / 'report.json'
    assert _run(_write(tmp_path, 'block'), '--report-json', report_path) == 0
    report = json.loads(report_path.read_text())
    assert (report['status'], report['outcome']) == ('ok', 'ok') and not any(report['lost'].values())
    assert 'outcome ok' in capsys.readouterr().err


def test_outcome_separates_lost_data_from_a_run_that_only_needs_a_look():
    from schnitzel_stream_ros.observability.report import build_report

    def outcome(counters, warnings=(), errors=()):
        snapshot = {'nodes': {'q': {'consumed': 5, 'counters': counters}}}
        report = build_report(
            graph_path='g.yaml',
            engine='live',
            snapshots=[snapshot],
            warnings=list(warnings),
            errors=list(errors),
        )
        return report['status'], report['outcome'], {k: v for k, v in report['lost'].items() if v}

    assert outcome({}) == ('ok', 'ok', {})
    # the queue held the producer back for room, a backlog stays queued: nothing lost
    assert outcome({'storage_blocked_total': 1}) == ('degraded', 'degraded', {})
    assert outcome({}, warnings=["node 'q': 12 events still undelivered"]) == ('degraded', 'degraded', {})
    assert outcome({'dead_letter_total': 2}) == ('degraded', 'degraded', {})
    # refused events and packets a node raised on are lost
    assert outcome({'refused_total': 3}) == ('degraded', 'failed', {'refused': 3})
    assert outcome({'errors_total': 4}) == ('degraded', 'failed', {'node_errors': 4})
    assert outcome({}, errors=['container died']) == ('error', 'failed', {})


def test_error_status_exits_1_and_still_writes_the_report(tmp_path, capsys):
    report_path = tmp_path / 'report.json'
    assert _run(_write(tmp_path, 'error'), '--report-json', report_path) == 1
    report = json.loads(report_path.read_text())
    assert report['status'] == 'error'
    assert report['errors'] == ["inbox 'sink.in' is full (2 packets) and its overflow policy is 'error'"]
    assert 'run error' in capsys.readouterr().err


def test_invalid_graph_exits_2_with_every_error_and_an_error_report(tmp_path, capsys):
    bad = _write(
        tmp_path,
        text="""
        version: 2
        nodes:
          - {id: a, kind: source, plugin: StaticSource, config: {pakets: []}}
          - {id: s, kind: sink, plugin: PrintSink}
        edges:
          - {from: a, to: nowhere}
    """,
    )
    report_path = tmp_path / 'report.json'
    assert _run(bad, '--report-json', report_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 2 and all(line.startswith(f'{bad}:') for line in err)
    report = json.loads(report_path.read_text())
    assert report['status'] == 'error' and report['errors'] == err


def test_budget_is_split_over_container_groups_by_round_robin_share(tmp_path):
    graph = compile_graph(
        _write(
            tmp_path,
            text="""
        version: 2
        nodes:
          - {id: a, kind: source, plugin: StaticSource, container: one, config: {packets: [{payload: 1}]}}
          - {id: b, kind: source, plugin: StaticSource, container: two, config: {packets: [{payload: 1}]}}
          - {id: c, kind: source, plugin: StaticSource, container: one, config: {packets: [{payload: 1}]}}
          - {id: s, kind: sink, plugin: PrintSink, container: one}
        edges:
          - {from: a, to: s}
          - {from: b, to: s}
          - {from: c, to: s}
    """,
        )
    )
    # 7 emissions over a, b, c round robin: a 3, b 2, c 2 -> group one (a, c) 5, group two (b) 2
    assert budget_shares(graph, 7) == {'one': 5, 'two': 2}
    assert budget_shares(graph, None) == {'one': None, 'two': None}


CROSSING = """
    version: 2
    nodes:
      - {id: src, kind: source, plugin: StaticSource, container: front, config: {packets: [{payload: 1}]}}
      - {id: s, kind: sink, plugin: PrintSink, container: back}
    edges:
      - {from: src, to: s}
"""


class _ScriptedContainers:
    """Two containers' snapshots at the end of a run, poll by poll: `front` published 100 packets, `back`
    took in the counts given (a receive thread starved on a loaded machine catches up late)."""

    def __init__(self, graph, received: list[int]) -> None:
        self.topic = graph.edges[0].topic
        self.received = received
        self.polls = 0

    def handles(self):
        return [self._Handle(self, 'front'), self._Handle(self, 'back')]

    class _Handle:
        def __init__(self, script, name) -> None:
            self.script, self.name = script, name

        def snapshot(self):
            script = self.script
            if self.name == 'front':
                return {'container': 'front', 'nodes': {}, 'edges': [], 'transport': {},
                        'topics': {script.topic: {'published': 100}}, 'state': {'idle': True}}
            got = script.received[min(script.polls, len(script.received) - 1)]
            script.polls += 1
            row = {'topic': script.topic, 'dst': 's', 'dst_port': 'in', 'packets': got, 'dropped_total': 0,
                   'inbox_depth': 0, 'inbox_depth_max': 1, 'latency_counts': [], 'latency_max_ns': 0}
            return {'container': 'back', 'nodes': {'s': {'consumed': got}}, 'edges': [row],
                    'transport': {'dds_received_total': got}, 'topics': {}, 'state': {'idle': True}}


def test_the_end_of_a_run_waits_for_packets_still_in_flight_between_containers(tmp_path, monkeypatch):
    from schnitzel_stream_ros.runtime import live_run

    monkeypatch.setattr(live_run, 'POLL_SEC', 0.01)
    monkeypatch.setattr(live_run, 'IN_FLIGHT_PATIENCE_SEC', 0.5)
    graph = compile_graph(_write(tmp_path, text=CROSSING))
    run = live_run.LiveRun(graph, drain_timeout=30.0)
    # both containers idle, counters still for 20 polls (0.2 s), 40 of 100 packets taken in: in flight
    script = _ScriptedContainers(graph, [40] * 20 + [100])
    run._settle(script.handles())
    assert script.polls >= 22  # it waited past the stall, up to the poll after the last packet came in
    assert run.packets_in_flight([h.snapshot() for h in script.handles()]) == 0

    # a lossy edge never catches up: the wait ends after IN_FLIGHT_PATIENCE_SEC without progress
    script = _ScriptedContainers(graph, [40])
    started = live_run.time.monotonic()
    run._settle(script.handles())
    assert 0.5 <= live_run.time.monotonic() - started < run.drain_timeout
    assert run.packets_in_flight([h.snapshot() for h in script.handles()]) == 60
