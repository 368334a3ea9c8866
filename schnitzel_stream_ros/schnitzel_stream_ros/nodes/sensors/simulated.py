"""SimulatedSensorSource: a deterministic sensor for demos, tests and benchmarks without hardware.

Reading i is a pure function of i: value = waveform(t_i), t_i = i / rate_hz, ts = start_ts + t_i.
With a fixed `start_ts` two runs emit identical readings (ids aside), so fusion results can be
checked exactly; `realtime: false` emits as fast as the graph takes them (the timestamps stay on
the rate grid). `noise` adds seeded Gaussian noise, still reproducible.
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from schnitzel_stream_ros.nodes.sensors.reading import sensor_packet
from schnitzel_stream_ros.packet import Kind, StreamPacket, format_ts, parse_ts
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role

WAVEFORMS = ('sine', 'triangle', 'sawtooth', 'square', 'ramp', 'constant')


def waveform_value(
    waveform: str, t: float, *, amplitude: float, offset: float, period_sec: float, slope: float
) -> float:
    """The noiseless value at time t (seconds since the first reading)."""
    if waveform == 'constant':
        return offset
    if waveform == 'ramp':
        return offset + slope * t
    phase = (t / period_sec) % 1.0
    if waveform == 'sine':
        return offset + amplitude * math.sin(2.0 * math.pi * phase)
    if waveform == 'triangle':
        return offset + amplitude * (1.0 - 4.0 * abs(phase - 0.5))
    if waveform == 'sawtooth':
        return offset + amplitude * (2.0 * phase - 1.0)
    if waveform == 'square':
        return offset + (amplitude if phase < 0.5 else -amplitude)
    raise ValueError(f'parameter waveform: {waveform!r} is not one of {list(WAVEFORMS)}')


class SimulatedSensorSource(Plugin):
    """A deterministic waveform sensor (sine, triangle, sawtooth, square, ramp, constant) at rate_hz."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({Kind.SENSOR})),)
    PARAMS = (
        Param('sensor_id', str, '', 'reading source id (default: the node id)'),
        Param('sensor_type', str, 'simulated', 'e.g. ultrasonic'),
        Param('field', str, 'value', 'payload field of the value, e.g. distance_cm'),
        Param('unit', str, '', 'unit of the value'),
        Param('waveform', str, 'sine', 'shape of the signal', choices=WAVEFORMS),
        Param('amplitude', float, 1.0, 'half the peak-to-peak swing'),
        Param('offset', float, 0.0, 'centre value (start value of a ramp)'),
        Param('period_sec', float, 10.0, 'period of periodic waveforms', min=1e-6),
        Param('slope', float, 1.0, 'units per second (ramp)'),
        Param('noise', float, 0.0, 'standard deviation of added Gaussian noise', min=0.0),
        Param('seed', int, 0, 'noise seed'),
        Param('decimals', int, 6, 'values are rounded to this many decimals', min=0, max=15),
        Param('rate_hz', float, 10.0, 'readings per second', min=1e-6),
        Param('max_samples', int, 0, 'stop after this many readings (0 = run until stopped)', min=0),
        Param('start_ts', str, '', 'time of reading 0 (ISO-8601); empty = when the source starts'),
        Param('realtime', bool, True, 'pace readings at rate_hz; false = as fast as consumed'),
    )

    def setup(self) -> None:
        p = self.params
        self.sensor_id = p.get('sensor_id') or self.node_id
        start = p.get('start_ts') or ''
        try:
            self.start = parse_ts(start) if start else datetime.now(UTC)
        except ValueError:
            raise ValueError(f'{self.node_id}: parameter start_ts: not an ISO-8601 time: {start!r}') from None
        self._random = random.Random(p.get('seed', 0))

    def value_at(self, index: int) -> float:
        p = self.params
        t = index / p.get('rate_hz', 10.0)
        value = waveform_value(
            p.get('waveform', 'sine'), t, amplitude=p.get('amplitude', 1.0), offset=p.get('offset', 0.0),
            period_sec=p.get('period_sec', 10.0), slope=p.get('slope', 1.0),
        )
        if p.get('noise', 0.0) > 0:
            value += self._random.gauss(0.0, p['noise'])
        return round(value, p.get('decimals', 6))

    def ts_at(self, index: int) -> str:
        micros = round(index * 1_000_000 / self.params.get('rate_hz', 10.0))
        return format_ts(self.start + timedelta(microseconds=micros))

    def produce(self) -> Iterator[StreamPacket]:
        p = self.params
        limit, rate, realtime = p.get('max_samples', 0), p.get('rate_hz', 10.0), p.get('realtime', True)
        t0 = time.monotonic()
        index = 0
        while not self.stopping and (limit == 0 or index < limit):
            if realtime:
                delay = t0 + index / rate - time.monotonic()
                if delay > 0 and self.ctx.stop_event.wait(delay):
                    break
            yield sensor_packet(
                self.sensor_id, p.get('sensor_type', 'simulated'), self.ts_at(index),
                {p.get('field', 'value'): self.value_at(index)}, unit=p.get('unit', ''),
                meta={'sample_idx': index},
            )
            self.count('readings_total')
            index += 1
