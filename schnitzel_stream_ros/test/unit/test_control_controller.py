"""The AutonomicController plugin in a running graph (deterministic engine, no DDS): it reads the
simulated detector's metrics on its input, changes the rate gate's `fps` through the parameter
interface every plugin has (plugin.RemoteParameters; here the engine's LocalParameters, with the
checks `ros2 param set` applies), and logs each decision to a real JSONL file.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from schnitzel_stream_ros.graph.validate import compile_graph, load_and_validate
from schnitzel_stream_ros.nodes.control.rate_gate import RateGate
from schnitzel_stream_ros.observability.report import build_report
from schnitzel_stream_ros.runtime.deterministic import DeterministicEngine
from schnitzel_stream_ros.runtime.local_parameters import LocalParameters
from schnitzel_stream_ros.runtime.plugin_host import PluginHost

START = 1767225600.0  # 2026-01-01T00:00:00Z

GRAPH = """
version: 2
nodes:
  - id: cam
    plugin: SyntheticSource
    config: {rate_hz: 30.0, count: 1800, source_id: cam0, sim_start_ts: "2026-01-01T00:00:00Z"}
  - id: gate
    plugin: RateGate
    config: {fps: 30.0, min_fps: 1.0, max_fps: 30.0}
  - id: det
    plugin: SimulatedLoadNode
    config: {window_sec: 1.0, base_ms: 40.0, ms_per_fps: 8.0, smoothing: 0.5}
  - id: ctl
    plugin: AutonomicController
    config:
      diagnostics_topic: ""
      decision_log: LOG
      knobs:
        fps: {node: gate, param: fps, min: 2, max: 30, max_step: 5, cooldown_sec: 2}
      rules:
        - id: shed
          when: {metric: cam0.latency_ms, above: 150, clear_below: 130}
          do: {knob: fps, by: -5}
          target: cam0.latency_ms
        - id: restore
          when: {metric: cam0.latency_ms, below: 90, clear_above: 110}
          do: {knob: fps, by: 5}
edges:
  - {from: cam, to: gate}
  - {from: gate, to: det}
  - {from: det, to: ctl}
"""


def _graph(tmp_path: Path, text: str = GRAPH) -> Path:
    path = tmp_path / 'graph.yaml'
    path.write_text(textwrap.dedent(text).replace('LOG', str(tmp_path / 'decisions.jsonl')))
    return path


def test_controller_holds_the_simulated_detector_in_its_band(tmp_path):
    graph = compile_graph(_graph(tmp_path))
    outcome = DeterministicEngine(graph).run()
    assert outcome.errors == []
    log = [json.loads(line) for line in (tmp_path / 'decisions.jsonl').read_text().splitlines()]
    brief = [(d['t'] - START, d['rule'], d['action'], d['old'], d['new'], d['guardrail']) for d in log]
    assert brief == [
        (1.0, 'shed', 'set', 30.0, 25.0, None),
        (2.0, 'shed', 'reject', 25.0, 20.0, 'cooldown'),
        (3.0, 'shed', 'set', 25.0, 20.0, None),
        (4.0, 'shed', 'reject', 20.0, 15.0, 'cooldown'),
        (5.0, 'shed', 'set', 20.0, 15.0, None),
        (6.0, 'shed', 'reject', 15.0, 10.0, 'cooldown'),
        (7.0, 'shed', 'set', 15.0, 10.0, None),
        (8.0, 'shed', 'reject', 10.0, 5.0, 'cooldown'),
        (9.0, 'shed', 'set', 10.0, 5.0, None),
        (12.0, 'restore', 'set', 5.0, 10.0, None),  # shed too far: below 90 ms, the other rule
        (13.0, 'restore', 'reject', 10.0, 15.0, 'cooldown'),
    ]  # then 120 ms: inside the band, nothing more to decide
    assert log[0]['metrics'] == {'cam0.latency_ms': 160.0} and log[0]['controller'] == 'ctl'
    assert log[0]['ts'] == '2026-01-01T00:00:01Z'
    report = build_report(
        graph_path='graph.yaml',
        engine='deterministic',
        snapshots=outcome.snapshots,
        graph=graph,
        errors=[],
        warnings=[],
        stop_reason=outcome.stop_reason,
    )
    metrics = report['metrics']
    assert metrics['node.gate.fps'] == 10.0  # the gate's parameter really changed, live
    assert metrics['node.ctl.knob_changes_total'] == 6
    assert metrics['node.ctl.decisions_total'] == 11 and metrics['node.ctl.rejected_total'] == 5
    assert metrics['node.det.latency_ms'] == pytest.approx(120.0)


def test_a_knob_the_node_refuses_is_logged_as_failed(tmp_path):
    """A knob on a read-only parameter: the node refuses the change (as `ros2 param set` would);
    the refusal is logged and the controller keeps believing the node's value, not its own wish."""
    text = GRAPH.replace('fps: {node: gate, param: fps,', 'fps: {node: gate, param: min_fps,')
    DeterministicEngine(compile_graph(_graph(tmp_path, text))).run()
    log = [json.loads(line) for line in (tmp_path / 'decisions.jsonl').read_text().splitlines()]
    brief = [(d['t'] - START, d['rule'], d['action'], d['old'], d['new'], d['guardrail']) for d in log[:3]]
    assert brief == [
        (1.0, 'shed', 'set', 1.0, 2.0, 'bounds'),  # 1.0 read at start, below the knob's bound
        (1.0, 'actuator', 'failed', 1.0, 2.0, 'actuation_failed'),
        (2.0, 'shed', 'reject', 1.0, -4.0, 'cooldown'),
    ]
    assert log[1]['reason'] == "parameter 'min_fps' is read-only while the node runs"


def test_configuration_error_is_reported_at_the_node(tmp_path):
    text = GRAPH.replace('do: {knob: fps, by: 5}', 'do: {knob: fsp, by: 5}')
    errors = [str(e) for e in load_and_validate(_graph(tmp_path, text)).errors]
    assert len(errors) == 1
    assert "node 'ctl'" in errors[0]
    assert "parameter 'rules': rules[1].do.knob: unknown knob 'fsp' (knobs: fps)" in errors[0]


def test_local_parameters_apply_the_node_checks():
    host = PluginHost(
        'gate',
        RateGate,
        {'fps': 30.0, 'min_fps': 1.0, 'max_fps': 30.0, 'control_key': 'fps'},
        is_source=False,
        is_sink=False,
    )
    host.setup()
    answers = []
    params = LocalParameters({'gate': host})
    params.set('/ns/gate', 'fps', 12, lambda v, e: answers.append((v, e)))
    params.set('gate', 'fps', 5000.0, lambda v, e: answers.append((v, e)))
    params.get('gate', 'fps', lambda v, e: answers.append((v, e)))
    params.get('nope', 'fps', lambda v, e: answers.append((v, e)))
    assert answers == [
        (12.0, None),
        (None, "parameter 'fps': 5000.0 is above the maximum 1000.0"),
        (12.0, None),
        (None, "no parameter 'fps' on node 'nope'"),
    ]


def test_diagnostics_are_read_as_node_metrics():
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    from schnitzel_stream_ros.nodes.control.autonomic_controller import MAX_STATUSES, diagnostics_metrics

    def status(name: str, **values: str) -> DiagnosticStatus:
        return DiagnosticStatus(name=name, values=[KeyValue(key=k, value=v) for k, v in values.items()])

    array = DiagnosticArray(status=[
        status('/site/vision', cpu_percent='57.5', started='true'),
        status('/site/vision: det0', latency_p99_ms='212.5', inbox_shed_total='14', plugin='OnnxDetectorNode',
               consumed_per_sec=''),
        status('/site/vision: /site/cam0/out -> det0.in', dropped_total='3'),  # an edge status: not a node
        status('/site/vision: det1', latency_p99_ms='nan', inbox_depth='inf'),
    ])
    assert diagnostics_metrics(array) == {
        'vision.cpu_percent': 57.5, 'det0.latency_p99_ms': 212.5, 'det0.inbox_shed_total': 14.0}
    # a hostile peer's huge array costs a bounded amount of work
    many = DiagnosticArray(status=[status(f'/x: n{i}', v='1') for i in range(MAX_STATUSES + 500)])
    assert len(diagnostics_metrics(many)) == MAX_STATUSES


def test_latency_probe_measures_packet_age_over_its_window():
    from datetime import UTC, datetime, timedelta

    from schnitzel_stream_ros.nodes.control.latency_probe import LatencyProbe
    from schnitzel_stream_ros.packet import StreamPacket, format_ts
    from schnitzel_stream_ros.plugin import SimpleContext

    ctx = SimpleContext('probe', {'window_sec': 60.0, 'every_sec': 3600.0})
    probe = LatencyProbe(ctx)
    probe.setup()
    now = datetime.now(UTC)
    packets = [StreamPacket.new('event', 'cam0', {'i': i}, ts=format_ts(now - timedelta(milliseconds=10 * i)))
               for i in range(1, 101)]  # 10 .. 1000 ms old
    assert [probe.process(p) for p in packets] == packets  # passed through unchanged
    probe._next = 0.0  # the next packet publishes (every_sec is long: only now)
    probe.process(packets[0])
    p50, p99 = ctx.counters['age_p50_ms'], ctx.counters['age_p99_ms']
    assert 500 <= p50 < 500 + 250 and 990 <= p99 < 1000 + 250  # + the time this test took
    first, metrics = ctx.outputs['metrics']  # at the first packet, then when due again
    assert first.payload['age_p99_ms'] < 100  # only the first packet (10 ms old) was seen then
    assert metrics.kind == 'metrics' and metrics.payload['age_p99_ms'] == p99


def test_the_decision_log_rotates_at_its_bound_and_the_rotations_are_counted(tmp_path):
    bound = '      decision_log: LOG\n      decision_log_max_bytes: 1024\n      decision_log_keep: 1'
    text = GRAPH.replace('      decision_log: LOG', bound)
    graph = compile_graph(_graph(tmp_path, text))
    outcome = DeterministicEngine(graph).run()
    assert outcome.errors == []
    [counters] = [s['nodes']['ctl']['counters'] for s in outcome.snapshots if 'ctl' in s.get('nodes', {})]
    log = tmp_path / 'decisions.jsonl'
    assert counters['decision_log_rotations_total'] >= 1
    assert log.stat().st_size <= 1024 and log.with_name('decisions.jsonl.1').exists()
    assert not log.with_name('decisions.jsonl.2').exists()  # keep: 1
