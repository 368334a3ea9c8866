"""SimulatedSensorSource: deterministic values and timestamps, waveforms, bounded runs."""

from __future__ import annotations

import itertools
import math

import pytest

from schnitzel_stream_ros.nodes.sensors.simulated import SimulatedSensorSource, waveform_value
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params


def run(**params) -> list:
    params.setdefault('realtime', False)
    ctx = SimpleContext(node_id='sim', params=resolve_params(SimulatedSensorSource, params))
    source = SimulatedSensorSource(ctx)
    source.setup()
    packets = list(itertools.islice(source.produce(), 1000))
    source.close()
    return packets


def test_same_config_same_readings():
    params = {
        'waveform': 'sine',
        'amplitude': 50.0,
        'offset': 100.0,
        'period_sec': 2.0,
        'rate_hz': 20.0,
        'noise': 1.5,
        'seed': 3,
        'max_samples': 40,
        'start_ts': '2026-02-14T12:00:00Z',
        'sensor_id': 'ultra1',
        'field': 'distance_cm',
        'unit': 'cm',
    }
    first, second = run(**params), run(**params)
    assert [(p.ts, p.payload) for p in first] == [(p.ts, p.payload) for p in second]
    assert len(first) == 40
    assert first[0].ts == '2026-02-14T12:00:00Z' and first[1].ts == '2026-02-14T12:00:00.050000Z'
    assert first[39].ts == '2026-02-14T12:00:01.950000Z'
    assert first[0].payload['sensor_id'] == 'ultra1' and first[0].payload['unit'] == 'cm'
    assert first[0].payload['sensor_ts'] == first[0].ts and first[0].kind == 'sensor'
    assert [p.meta['sample_idx'] for p in first[:3]] == [0, 1, 2]
    assert run(**{**params, 'seed': 4})[5].payload != first[5].payload


def test_noiseless_values_follow_the_waveform():
    packets = run(
        waveform='sine',
        amplitude=2.0,
        offset=1.0,
        period_sec=1.0,
        rate_hz=4.0,
        max_samples=5,
        start_ts='2026-02-14T12:00:00Z',
    )
    assert [p.payload['value'] for p in packets] == pytest.approx([1.0, 3.0, 1.0, -1.0, 1.0], abs=1e-6)
    ramp = run(waveform='ramp', offset=10.0, slope=-2.0, rate_hz=2.0, max_samples=4)
    assert [p.payload['value'] for p in ramp] == [10.0, 9.0, 8.0, 7.0]


@pytest.mark.parametrize(
    ('waveform', 'phase', 'expected'),
    [
        ('triangle', 0.0, -1.0),
        ('triangle', 0.25, 0.0),
        ('triangle', 0.5, 1.0),
        ('triangle', 0.75, 0.0),
        ('sawtooth', 0.0, -1.0),
        ('sawtooth', 0.5, 0.0),
        ('square', 0.25, 1.0),
        ('square', 0.75, -1.0),
        ('constant', 0.3, 0.0),
        ('sine', 0.25, 1.0),
    ],
)
def test_waveform_shapes(waveform, phase, expected):
    value = waveform_value(waveform, phase * 4.0, amplitude=1.0, offset=0.0, period_sec=4.0, slope=0.0)
    assert math.isclose(value, expected, abs_tol=1e-12)


def test_start_ts_must_be_a_time():
    ctx = SimpleContext(node_id='sim', params=resolve_params(SimulatedSensorSource, {'start_ts': 'noon'}))
    with pytest.raises(ValueError, match=r"sim: parameter start_ts: not an ISO-8601 time: 'noon'"):
        SimulatedSensorSource(ctx).setup()


def test_realtime_source_stops_promptly_when_asked():
    ctx = SimpleContext(node_id='sim', params=resolve_params(SimulatedSensorSource, {'rate_hz': 0.001}))
    source = SimulatedSensorSource(ctx)
    source.setup()
    packets = source.produce()
    assert next(packets).meta['sample_idx'] == 0  # the first reading is immediate
    ctx.stop_event.set()  # the next one is 1000 s away: the stop must not wait for it
    assert list(packets) == []
