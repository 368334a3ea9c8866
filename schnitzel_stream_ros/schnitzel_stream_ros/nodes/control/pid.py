"""PidController: a discrete PID loop over one measured value, as a graph node.

Each `metrics` packet carrying `measure` is one sample; the node answers with one `control` packet
carrying `output_key`. The step is the packet-time distance to the previous sample (the sample
period when the two are too close or out of order), so a replay or a deterministic run computes the
same outputs as the live loop did. error = setpoint - measured; output = bias + kp*e + ki*∫e dt +
kd*de/dt, clamped to [out_min, out_max]; the integral only grows while the output is not pinned at a
limit in the same direction (anti-windup), so the loop recovers as soon as the error turns.
"""
from __future__ import annotations

import math
from typing import Any

from schnitzel_stream_ros.packet import Kind, StreamPacket, parse_ts
from schnitzel_stream_ros.plugin import Param, Plugin, Port


class PidController(Plugin):
    """PID over `measure` in metrics packets; emits `{output_key: value}` control packets."""

    INPUTS = (Port('in', frozenset({Kind.METRICS})),)
    OUTPUTS = (Port('out', frozenset({Kind.CONTROL})),)
    PARAMS = (
        Param('measure', str, 'latency_ms', 'payload key of the measured value'),
        Param('setpoint', float, 100.0, 'value the loop holds the measure at', dynamic=True),
        Param('kp', float, 0.0, 'proportional gain', dynamic=True),
        Param('ki', float, 0.0, 'integral gain (per second)', dynamic=True),
        Param('kd', float, 0.0, 'derivative gain (seconds)', dynamic=True),
        Param('bias', float, 0.0, 'output with zero error and an empty integral'),
        Param('out_min', float, 0.0, 'lowest output'),
        Param('out_max', float, 1.0, 'highest output'),
        Param('output_key', str, 'value', 'payload key of the output in control packets'),
        Param('sample_sec', float, 1.0, 'step used when packet times give none', min=1e-6),
    )

    @classmethod
    def check_params(cls, params: Any) -> list[str]:
        if params['out_min'] > params['out_max']:
            return [f"parameter 'out_min': {params['out_min']} is above out_max {params['out_max']}"]
        return []

    def setup(self) -> None:
        self._integral = 0.0
        self._last_error: float | None = None
        self._last_t: float | None = None

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket | None:
        payload = packet.payload
        measured = payload.get(self.params['measure']) if isinstance(payload, dict) else None
        if isinstance(measured, bool) or not isinstance(measured, (int, float)) \
                or not math.isfinite(measured):
            self.count('samples_refused_total')
            return None
        p = self.params
        t = parse_ts(packet.ts).timestamp()
        dt = t - self._last_t if self._last_t is not None and t > self._last_t else p['sample_sec']
        self._last_t = t
        error = p['setpoint'] - float(measured)
        derivative = 0.0 if self._last_error is None else (error - self._last_error) / dt
        self._last_error = error
        integral = self._integral + error * dt
        raw = p['bias'] + p['kp'] * error + p['ki'] * integral + p['kd'] * derivative
        output = min(p['out_max'], max(p['out_min'], raw))
        winding_up = (raw > p['out_max'] and error > 0) or (raw < p['out_min'] and error < 0)
        if not winding_up:
            self._integral = integral
        self.gauge('error', error)
        self.gauge('output', output)
        self.count('samples_total')
        return packet.child(Kind.CONTROL, {p['output_key']: output, 'measured': float(measured),
                                           'setpoint': p['setpoint'], 'error': error})

    def snapshot_state(self) -> Any:
        return {'integral': self._integral, 'last_error': self._last_error, 'last_t': self._last_t}

    def restore_state(self, state: Any) -> None:
        if isinstance(state, dict):
            for key in ('integral', 'last_error', 'last_t'):
                value = state.get(key)
                if value is None or (isinstance(value, (int, float)) and math.isfinite(value)):
                    setattr(self, f'_{key}', value if key != 'integral' else float(value or 0.0))
