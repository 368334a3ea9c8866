"""Control loops live: the PID example for 60 s (no deadlock, bounded inboxes), and the
AutonomicController acting over real ROS parameter services with an operator pinning through its
parameters, as `ros2 param set` (and any control plane) does.

Real processes on the test's leased DDS domain: `schnitzel-stream run` hosts the graph, a RosPeer in
this process plays the operator (SetParameters services) and listens to `~/decisions`.
"""
from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from std_msgs.msg import String

from schnitzel_stream_ros.packet import parse_ts
from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.ros_peer import RosPeer

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / 'config' / 'examples' / 'pid_fps.yaml'


def _run(graph: Path, env: dict[str, str], report: Path, log: Path, duration: float) -> subprocess.Popen:
    with log.open('w') as out:
        return processes.start(
            [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph), '--duration', str(duration),
             '--report-json', str(report)], env, stdout=subprocess.DEVNULL, stderr=out)


def test_pid_example_runs_live_for_60_seconds_without_deadlock(tmp_path, ros_env):
    env = dict(ros_env, PID_FPS_OUT=str(tmp_path))  # real camera time, frames until stopped
    report, log = tmp_path / 'report.json', tmp_path / 'run.txt'
    run = _run(EXAMPLE, env, report, log, 60)
    try:
        assert run.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        processes.stop(run)
    result = json.loads(report.read_text())
    metrics = result['metrics']
    assert result['status'] == 'ok', log.read_text()[-3000:]
    samples = [json.loads(line) for line in (tmp_path / 'control.jsonl').read_text().splitlines()]
    # the loop turned all the time: one control sample per second of camera time, up to the end
    times = [parse_ts(s['ts']).timestamp() for s in samples]
    assert len(samples) >= 50, len(samples)
    assert max(b - a for a, b in itertools.pairwise(times)) < 3.0  # never stuck
    assert metrics['node.seed.seeded_total'] == 1
    assert metrics['node.hold.held'] == 1
    # bounded: no inbox of the loop ever held more than its bound, and nothing was dropped
    depths = {k: v for k, v in metrics.items() if k.endswith('.inbox_depth_max')}
    assert depths and all(v <= 64 for v in depths.values()), depths
    assert metrics['packets.dropped_total'] == 0
    # and it controlled: the unthrottled camera would load the detector to 280 ms
    late = [s['payload'] for s in samples[-20:]]
    assert max(p['measured'] for p in late) < 200.0, late
    assert sum(p['fps'] for p in late) / len(late) < 20.0, late


GRAPH = """
version: 2
namespace: /ctl_live
nodes:
  - id: cam
    plugin: SyntheticSource
    config: {rate_hz: 30.0, count: 0, source_id: cam0}
  - id: gate
    plugin: RateGate
    config: {fps: 30.0, min_fps: 1.0, max_fps: 30.0}
  - id: det
    plugin: SimulatedLoadNode
    config: {window_sec: 1.0, base_ms: 40.0, ms_per_fps: 8.0, smoothing: 0.5}
  - id: ctl
    plugin: AutonomicController
    config:
      decision_log: LOG
      stale_after_sec: 5.0
      knobs:
        fps: {node: gate, param: fps, min: 2, max: 30, max_step: 5, cooldown_sec: 2}
      rules:
        - id: shed
          when: {metric: cam0.latency_ms, above: 150, clear_below: 130}
          do: {knob: fps, by: -5}
        - id: restore
          when: {metric: cam0.latency_ms, below: 90, clear_above: 110}
          do: {knob: fps, by: 5}
        - id: stalled    # read from /diagnostics: the gate's input rate
          when: {metric: gate.consumed_per_sec, below: 1.0}
          do: {mode: low_power}
      modes:
        low_power: {fps: 4}
edges:
  - {from: cam, to: gate}
  - {from: gate, to: det}
  - {from: det, to: ctl}
"""


class Operator(RosPeer):
    """`ros2 param set/get` and `ros2 topic echo ~/decisions`, from another process's point of view."""

    def __init__(self, domain_id: int) -> None:
        super().__init__(domain_id, 'operator')
        self.decisions: list[dict] = []
        self.node.create_subscription(String, '/ctl_live/ctl/decisions',
                                      lambda msg: self.decisions.append(json.loads(msg.data)), 100)

    def set(self, node: str, name: str, value: ParameterValue) -> SetParameters.Response:
        request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=value)])
        return self.call(SetParameters, f'{node}/set_parameters', request).results[0]

    def get(self, node: str, name: str) -> ParameterValue:
        request = GetParameters.Request(names=[name])
        return self.call(GetParameters, f'{node}/get_parameters', request).values[0]

    def wait_for(self, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((d for d in list(self.decisions) if predicate(d)), None)
            if found is not None:
                return found
            time.sleep(0.05)
        raise AssertionError(f'no decision {what} within {timeout} s: {self.decisions[-10:]}')

    def wait_param(self, node: str, name: str, predicate, what: str, timeout: float = 10.0) -> ParameterValue:
        """The parameter's value once `predicate` holds (a decision is logged as its set call goes out;
        the value is read back until it shows, not after a fixed time)."""
        deadline = time.monotonic() + timeout
        while not predicate(value := self.get(node, name)):
            assert time.monotonic() < deadline, f'{node} {name}: not {what} within {timeout} s: {value}'
            time.sleep(0.05)
        return value

    def wait_subscribers(self, topic: str, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.node.count_subscribers(topic) < count:
            assert time.monotonic() < deadline, f'{topic}: fewer than {count} subscribers after {timeout} s'
            time.sleep(0.05)


def _control(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    # --timeout: how long the CLI waits to discover the controller (default 10 s; at load 20+ a fresh
    # process took longer: 'no node /ctl_live/ctl answers')
    command = [sys.executable, '-m', 'schnitzel_stream_ros', 'controller', *args, '--timeout', '60']
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def _double(value: float) -> ParameterValue:
    return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)


def _text(value: str) -> ParameterValue:
    return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)


def test_controller_tunes_over_ros_and_honours_operator_pins(tmp_path, ros_env, ros_domain):
    graph = tmp_path / 'graph.yaml'
    graph.write_text(textwrap.dedent(GRAPH).replace('LOG', str(tmp_path / 'decisions.jsonl')))
    report, log = tmp_path / 'report.json', tmp_path / 'run.txt'
    operator = Operator(ros_domain)
    run = _run(graph, ros_env, report, log, 45)
    try:
        # the rules shed load through the gate's parameter service (another node: a real ROS call)
        operator.wait_for(lambda d: d['rule'] == 'shed' and d['action'] == 'set', 25, 'shed')
        operator.wait_param('/ctl_live/gate', 'fps', lambda v: v.double_value < 30.0, 'shed below 30')

        # pin the knob: honoured (the gate gets the value), logged, rules refused while pinned
        follow = processes.start([sys.executable, '-m', 'schnitzel_stream_ros', 'controller', 'decisions',
                                  '/ctl_live/ctl', '--count', '1', '--duration', '30'], ros_env,
                                 stdout=subprocess.PIPE, text=True)
        operator.wait_subscribers('/ctl_live/ctl/decisions', 2)  # ours and the follower's
        assert operator.set('/ctl_live/ctl', 'pin.fps', _double(7.0)).successful
        pin = operator.wait_for(lambda d: d['action'] == 'pin' and d['knob'] == 'fps', 10, 'pin')
        followed, _ = follow.communicate(timeout=40)
        assert follow.returncode == 0 and json.loads(followed.splitlines()[0])['controller'] == 'ctl'
        assert pin['rule'] == 'operator' and pin['new'] == 7.0
        operator.wait_param('/ctl_live/gate', 'fps', lambda v: v.double_value == 7.0, 'the pinned 7.0')
        refused = operator.set('/ctl_live/ctl', 'pin.fps', _double(99.0))  # outside the knob's bounds
        assert not refused.successful and 'out of range' in refused.reason
        operator.wait_for(lambda d: d['guardrail'] == 'pinned' and d['knob'] == 'fps', 15, 'pinned refusal')

        # lift it: logged, the rules act again
        assert operator.set('/ctl_live/ctl', 'pin.fps', _text('')).successful
        unpin = operator.wait_for(lambda d: d['action'] == 'unpin' and d['knob'] == 'fps', 10, 'unpin')
        operator.wait_for(lambda d: d['t'] > unpin['t'] and d['action'] == 'set' and d['rule'] != 'operator',
                          20, 'rules acting after the pin')

        # pin a mode with the CLI: its knob values are applied; lifting it restores what was before
        before = operator.get('/ctl_live/gate', 'fps').double_value
        done = _control(ros_env, 'mode', '/ctl_live/ctl', 'low_power')
        assert done.returncode == 0 and "pin_mode = 'low_power'" in done.stdout, done.stderr
        operator.wait_for(lambda d: d['action'] == 'enter' and d['mode'] == 'low_power', 10, 'low_power')
        operator.wait_param('/ctl_live/gate', 'fps', lambda v: v.double_value == 4.0, "low_power's 4.0")
        refused = _control(ros_env, 'pin', '/ctl_live/ctl', 'fps', '99')
        assert refused.returncode == 1 and 'refused pin.fps=99.0' in refused.stderr
        assert _control(ros_env, 'mode', '/ctl_live/ctl', '--lift').returncode == 0
        operator.wait_for(lambda d: d['action'] == 'enter' and d['mode'] == 'normal', 10, 'back to normal')
        restored = operator.wait_param('/ctl_live/gate', 'fps', lambda v: v.double_value != 4.0,
                                       'restored').double_value
        assert restored != 4.0 and abs(restored - before) <= 5.0  # restored, then maybe one rule step
        assert run.wait(timeout=90) == 0, log.read_text()[-3000:]
    finally:
        operator.close()
        processes.stop(run, sig=signal.SIGTERM)
    logged = [json.loads(line) for line in (tmp_path / 'decisions.jsonl').read_text().splitlines()]
    # the file has every decision the topic carried (the topic may have missed the first ones)
    keys = {(d['t'], d['rule'], d['action'], d['knob']) for d in logged}
    assert all((d['t'], d['rule'], d['action'], d['knob']) in keys for d in operator.decisions)
    # /diagnostics was read: decisions carry the gate's input rate from the container's statuses
    assert any(d['metrics'].get('gate.consumed_per_sec', 0) > 1.0 for d in logged), logged[:5]
    metrics = json.loads(report.read_text())['metrics']
    assert metrics['node.ctl.decisions_total'] == len(logged)
