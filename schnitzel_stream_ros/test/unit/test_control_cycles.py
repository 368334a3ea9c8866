"""Cycles that run: Delay and InitialValue close a loop, the validator admits a cycle only through
them, and the deterministic engine runs config/examples/pid_fps.yaml to its set-point.

The PID example runs as shipped (the real file, its real plugins), on simulated camera time, so
the numbers are exact: the loop's outputs are compared with an independent step-by-step
computation of the same plant, gate and controller, and the end state with the analytic answer
(latency 120 ms <=> 10 frames/s kept).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from schnitzel_stream_ros.graph.load import load_graph
from schnitzel_stream_ros.graph.validate import compile_graph, load_and_validate
from schnitzel_stream_ros.nodes.control.delay import Delay
from schnitzel_stream_ros.nodes.control.initial_value import InitialValue
from schnitzel_stream_ros.observability.report import build_report
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext
from schnitzel_stream_ros.runtime.deterministic import DeterministicEngine

EXAMPLE = Path(__file__).resolve().parents[2] / 'config' / 'examples' / 'pid_fps.yaml'


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / 'graph.yaml'
    path.write_text(textwrap.dedent(text).replace('OUT', str(tmp_path / 'out.jsonl')))
    return path


def _errors(path: Path) -> list[str]:
    return [str(e) for e in load_and_validate(path).errors]


# -- the two cycle breakers ------------------------------------------------------------------------
def test_delay_releases_each_packet_count_arrivals_later():
    ctx = SimpleContext('hold', {'count': 2})
    delay = Delay(ctx)
    delay.setup()
    packets = [StreamPacket.new('control', 's', {'i': i}) for i in range(5)]
    out = [delay.process(p) for p in packets]
    assert out[:2] == [None, None]
    assert [p.payload['i'] for p in out[2:]] == [0, 1, 2]
    assert ctx.counters['held'] == 2  # never more than `count` held


def test_initial_value_seeds_on_start_then_passes_through():
    ctx = SimpleContext('seed', {'value': {'fps': 30.0}, 'kind': 'control', 'source_id': ''})
    seed = InitialValue(ctx)
    seed.on_start()
    assert [(p.kind, p.source_id, dict(p.payload)) for p in ctx.outputs['out']] == [
        ('control', 'seed', {'fps': 30.0})
    ]
    later = StreamPacket.new('control', 'pid', {'fps': 12.0})
    assert seed.process(later) is later


# -- the validator --------------------------------------------------------------------------------
LOOP = """
    version: 2
    config: {allow_cycles: %s}
    nodes:
      - {id: src, plugin: StaticSource, config: {packets: [{payload: 1}]}}
      - {id: a, plugin: Identity}
      - {id: b, %s}
    edges:
      - {from: src, to: a}
      - {from: a, to: b}
      - {from: b, to: a%s}
"""


def test_cycle_through_a_delay_is_admitted_when_cycles_are_enabled(tmp_path):
    assert _errors(_write(tmp_path, LOOP % ('true', 'plugin: Delay', ''))) == []


def test_delay_kind_is_taken_from_the_plugin(tmp_path):
    graph = compile_graph(_write(tmp_path, LOOP % ('true', 'plugin: InitialValue', '')))
    assert str(graph.node('b').kind) == 'initial'


def test_strict_mode_refuses_the_cycle_even_through_a_delay(tmp_path):
    errors = _errors(_write(tmp_path, LOOP % ('false', 'plugin: Delay', '')))
    assert len(errors) == 1 and 'closes a cycle (strict mode): a -> b -> a' in errors[0]
    assert 'allow_cycles: true' in errors[0]


def test_kind_delay_on_a_plugin_that_does_not_hold_packets_is_refused(tmp_path):
    errors = _errors(_write(tmp_path, LOOP % ('true', 'kind: delay, plugin: Identity', '')))
    assert len(errors) == 1
    assert "node 'b'" in errors[0]
    assert "kind 'delay' but plugin Identity does not hold packets back" in errors[0]
    assert 'graph.yaml:7' in errors[0]


def test_cycle_without_a_breaker_is_refused_with_its_path(tmp_path):
    errors = _errors(_write(tmp_path, LOOP % ('true', 'plugin: Identity', '')))
    assert len(errors) == 1 and 'cycle without a delay/initial node: a -> b -> a' in errors[0]


def test_block_inbox_inside_a_cycle_is_refused(tmp_path):
    errors = _errors(_write(tmp_path, LOOP % ('true', 'plugin: Delay', ', inbox: {overflow: block}')))
    assert len(errors) == 1
    assert 'edge b->a' in errors[0] and "'block' inside a cycle could deadlock" in errors[0]
    # block outside the cycle stays allowed (an input fed from the loop, not part of it)
    text = (LOOP % ('true', 'plugin: Delay', '')).replace(
        '      - {id: b,', '      - {id: out, plugin: JsonlSink, config: {path: OUT}}\n      - {id: b,'
    )
    text += '      - {from: a, to: out, inbox: {overflow: block}}\n'
    assert _errors(_write(tmp_path, text)) == []


# -- the engine -----------------------------------------------------------------------------------
def test_a_cycle_that_circulates_for_ever_ends_with_an_error(tmp_path):
    """InitialValue passes everything on: around an Identity its seed would circulate for ever."""
    path = _write(
        tmp_path,
        """
        version: 2
        config: {allow_cycles: true}
        nodes:
          - {id: src, plugin: StaticSource, config: {packets: []}}
          - {id: a, plugin: Identity}
          - {id: seed, plugin: InitialValue}
        edges:
          - {from: src, to: a}
          - {from: a, to: seed}
          - {from: seed, to: a}
    """,
    )
    import schnitzel_stream_ros.runtime.deterministic as engine_module

    limit = engine_module.CYCLE_HANDOFF_LIMIT
    engine_module.CYCLE_HANDOFF_LIMIT = 1000
    try:
        outcome = DeterministicEngine(compile_graph(path)).run()
    finally:
        engine_module.CYCLE_HANDOFF_LIMIT = limit
    assert outcome.stop_reason == 'error'
    assert (
        len(outcome.errors) == 1
        and 'packets keep circulating in a cycle: over 1000 hand-offs' in outcome.errors[0]
    )


# -- the PID example ----------------------------------------------------------------------------
def _expected_loop(frames: int) -> list[tuple[float, float]]:
    """(latency_ms, fps) per sample of the example, computed step by step without the engine:
    camera 30 fps -> gate (keep a frame when 1/fps has passed) -> plant (40 + 8 * rate, half-way per
    second) -> PID (kp 0.02, ki 0.05, bias 30, [1, 30], anti-windup) -> one-sample delay -> gate."""
    gate_fps, last_kept, window_start, in_window = 30.0, None, None, 0
    latency, integral, held, samples = 40.0, 0.0, [], []
    for i in range(frames):
        t = round(i * 1e6 / 30) / 1e6
        if last_kept is not None and last_kept <= t < last_kept + 1 / gate_fps - 0.001:
            continue
        last_kept = t
        if window_start is None:
            window_start = t
        elif t >= window_start + 1.0:
            latency += 0.5 * (40.0 + 8.0 * in_window - latency)
            error = 120.0 - latency
            candidate = integral + error
            raw = 30.0 + 0.02 * error + 0.05 * candidate
            fps = min(30.0, max(1.0, raw))
            if not ((raw > 30.0 and error > 0) or (raw < 1.0 and error < 0)):
                integral = candidate
            samples.append((latency, fps))
            held.append(fps)
            if len(held) > 1:
                gate_fps = held.pop(0)
            window_start += int(t - window_start)
            in_window = 0
        in_window += 1
    return samples


def test_pid_example_converges_on_the_simulated_plant(tmp_path, monkeypatch):
    monkeypatch.setenv('PID_FPS_SIM_START', '2026-01-01T00:00:00Z')
    monkeypatch.setenv('PID_FPS_FRAMES', str(30 * 90))  # 90 s of camera time
    monkeypatch.setenv('PID_FPS_OUT', str(tmp_path))
    graph = compile_graph(EXAMPLE)
    outcome = DeterministicEngine(graph).run()
    assert outcome.errors == [] and outcome.stop_reason == 'sources_done'
    lines = [json.loads(line) for line in (tmp_path / 'control.jsonl').read_text().splitlines()]
    got = [(rec['payload']['measured'], rec['payload']['fps']) for rec in lines]
    expected = _expected_loop(30 * 90)
    assert len(got) == len(expected) == 89  # one sample per full second of camera time
    assert [x for pair in got for x in pair] == pytest.approx(
        [x for pair in expected for x in pair], abs=1e-9
    )
    # the first samples, written out: the plant loaded at 30 fps, the loop backing off
    assert [round(v, 2) for v, _ in got[:7]] == [160.0, 220.0, 190.0, 175.0, 167.5, 163.75, 141.88]
    assert [round(f, 2) for _, f in got[:3]] == [27.2, 21.0, 18.1]
    # converged: latency at the set-point, the gate keeping 10 frames/s (the analytic answer)
    latency, fps = got[-1]
    assert latency == pytest.approx(120.0, abs=1e-6)
    assert fps == pytest.approx(10.0, abs=1e-3)
    report = build_report(
        graph_path=str(EXAMPLE),
        engine='deterministic',
        snapshots=outcome.snapshots,
        graph=graph,
        errors=outcome.errors,
        warnings=outcome.warnings,
        stop_reason=outcome.stop_reason,
    )
    metrics = report['metrics']
    assert metrics['node.seed.seeded_total'] == 1
    assert metrics['node.hold.held'] == 1  # the delay holds exactly one control packet at the end
    assert metrics['node.gate.kept_total'] < 30 * 90 / 2  # the loop really throttled the camera
    assert metrics['packets.dropped_total'] == 0


def test_pid_example_is_deterministic_across_runs(tmp_path, monkeypatch):
    monkeypatch.setenv('PID_FPS_SIM_START', '2026-01-01T00:00:00Z')
    monkeypatch.setenv('PID_FPS_FRAMES', '900')
    runs = []
    for n in range(2):
        out = tmp_path / str(n)
        monkeypatch.setenv('PID_FPS_OUT', str(out))
        assert DeterministicEngine(compile_graph(EXAMPLE)).run().errors == []
        runs.append([json.loads(x)['payload'] for x in (out / 'control.jsonl').read_text().splitlines()])
    assert runs[0] == runs[1] and len(runs[0]) == 29


def test_example_file_loads_without_warnings():
    loaded = load_graph(EXAMPLE)
    assert loaded.errors == [] and loaded.graph is not None and loaded.graph.allow_cycles
