"""BatteryPolicyNode: BATTERY_LOW / BATTERY_CRITICAL / BATTERY_OK with hysteresis.

A battery that reads 19.9 %, 20.1 %, 19.9 % ... around a 20 % threshold must not raise an alarm per
message. The node keeps a state per robot (OK, LOW, CRITICAL) and changes it only when the value
crosses a threshold on the way down (≤ `low`, ≤ `critical`) or clears it by `hysteresis` on the way
up (≥ `low + hysteresis` back to OK, ≥ `critical + hysteresis` back from CRITICAL to LOW). Each
change of state is one event: entering LOW → BATTERY_LOW, entering CRITICAL → BATTERY_CRITICAL,
back to OK → BATTERY_OK (`emit_recovered`). The first reading of a robot that starts low raises its
state's event at once; starting OK raises nothing.

Values are in the field's own units: `percentage` of sensor_msgs/BatteryState is 0..1 (so the
defaults are 0.2 / 0.1 / 0.05); a reading without a number (NaN percentage = unknown) is counted
(`no_value_total`) and changes nothing.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from schnitzel_stream_ros.codec.event_protocol import EventType, Severity
from schnitzel_stream_ros.nodes.robot.detection import RobotStates, robot_detection, robot_id
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port

OK, LOW, CRITICAL = 'OK', 'LOW', 'CRITICAL'
_SEVERITIES = tuple(Severity)


#: Slack for the clearing levels: 0.1 + 0.05 is 0.15000000000000002 in binary, and a battery at
#: exactly 0.15 must clear a 0.1 threshold with 0.05 hysteresis as written.
_EPS = 1e-9


def next_state(state: str | None, value: float, low: float, critical: float, hysteresis: float) -> str:
    """The battery state after `value`, from `state` (None = first reading: no hysteresis)."""
    if value <= critical:
        return CRITICAL
    if state == CRITICAL:
        if value >= low + hysteresis - _EPS:
            return OK
        return LOW if value >= critical + hysteresis - _EPS else CRITICAL
    if value <= low:
        return LOW
    if state == LOW and value < low + hysteresis - _EPS:
        return LOW
    return OK


class BatteryPolicyNode(Plugin):
    """Battery low / critical with hysteresis: one event per change of state, per robot."""

    INPUTS = (Port('in', frozenset({Kind.SENSOR}), description='battery readings (BatteryState)'),)
    OUTPUTS = (Port('out', frozenset({Kind.DETECTION}), description='one detection per change of state'),)
    PARAMS = (
        Param('field', str, 'percentage', 'reading field with the charge (BatteryState: 0..1)'),
        Param('low', float, 0.2, 'at or below: LOW'),
        Param('critical', float, 0.1, 'at or below: CRITICAL'),
        Param('hysteresis', float, 0.05, 'how far above a threshold the value must come back to clear it',
              min=0.0),
        Param('low_severity', str, 'MEDIUM', 'severity of BATTERY_LOW', choices=_SEVERITIES),
        Param('critical_severity', str, 'CRITICAL', 'severity of BATTERY_CRITICAL', choices=_SEVERITIES),
        Param('ok_severity', str, 'INFO', 'severity of BATTERY_OK', choices=_SEVERITIES),
        Param('emit_recovered', bool, True, 'emit BATTERY_OK once back above low + hysteresis'),
        Param('max_robots', int, 1024, 'robots remembered (least recently heard forgotten first)', min=1),
    )

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        if params.get('critical', 0.1) >= params.get('low', 0.2):
            return [f"parameter 'critical': {params.get('critical')} must be below low ({params.get('low')})"]
        return []

    def setup(self) -> None:
        problems = self.check_params(self.params)
        if problems:
            raise ValueError(f'{self.node_id}: {problems[0]}')
        self.states = RobotStates(self.params.get('max_robots', 1024))

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        p = self.params
        payload = packet.payload if isinstance(packet.payload, Mapping) else {}
        value = payload.get(p['field'])
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.count('no_value_total')
            return None
        self.count('readings_total')
        robot = robot_id(packet)
        before, evicted = self.states.touch(robot, None)
        if evicted:
            self.count('robots_evicted_total', evicted)
        state = next_state(before, float(value), p['low'], p['critical'], p['hysteresis'])
        self.states[robot] = state
        if state == before or (before is None and state == OK):
            return None
        self.count(f'{state.lower()}_total')
        if state == LOW:
            return robot_detection(packet, EventType.BATTERY_LOW.value, p['low_severity'])
        if state == CRITICAL:
            return robot_detection(packet, EventType.BATTERY_CRITICAL.value, p['critical_severity'])
        if p.get('emit_recovered', True):
            return robot_detection(packet, EventType.BATTERY_OK.value, p['ok_severity'])
        return None
