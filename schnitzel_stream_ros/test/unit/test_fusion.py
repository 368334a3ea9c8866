"""SensorFusionNode: nearest reading within the window, none outside, exact interpolation on linear
data, FUSED_EVENT / SENSOR_EVENT emission, bounded per-sensor buffers."""

from __future__ import annotations

import uuid

import pytest

from schnitzel_stream_ros.codec.event_protocol import build_event, event_to_packet, validate_event
from schnitzel_stream_ros.nodes.fusion.sensor_fusion import SensorFusionNode
from schnitzel_stream_ros.nodes.fusion.sensor_history import (
    Reading,
    SensorHistory,
    micros_to_ts,
    ts_to_micros,
)
from schnitzel_stream_ros.nodes.sensors.reading import sensor_packet
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params

T0 = ts_to_micros('2026-02-14T12:00:00Z')


def ts(ms: float) -> str:
    """Time text `ms` milliseconds after T0 (microsecond resolution)."""
    return micros_to_ts(T0 + round(ms * 1000))


def make_node(**params):
    ctx = SimpleContext(node_id='fusion', params=resolve_params(SensorFusionNode, params))
    node = SensorFusionNode(ctx)
    node.setup()
    return node, ctx


def reading(ms: float, sensor_id='ultra1', **fields):
    fields = fields or {'distance_cm': 100.0}
    return sensor_packet(sensor_id, 'ultrasonic', ts(ms), fields, unit='cm')


def event_packet(ms: float, track_id=7):
    event = build_event(
        site_id='S001',
        camera_id='cam01',
        ts=ts(ms),
        object_type='PERSON',
        bbox={'x1': 10, 'y1': 20, 'x2': 30, 'y2': 80},
        confidence=0.9,
        track_id=track_id,
        zone={'zone_id': 'dock', 'inside': True},
    )
    return event_to_packet(event)


def fuse(node, ms: float):
    out = node.process(event_packet(ms))
    packets = out if isinstance(out, list) else [out]
    return packets[0].payload.get('sensor'), packets


def feed(node, *packets, port='sensor'):
    for p in packets:
        assert node.process(p, port) is None


# -- nearest ------------------------------------------------------------------------------------
def test_nearest_reading_within_the_window_is_attached():
    node, ctx = make_node()  # window 300 ms, nearest_by_abs_delta (upstream)
    feed(
        node, reading(0, distance_cm=100.0), reading(100, distance_cm=110.0), reading(200, distance_cm=120.0)
    )
    sensor, _ = fuse(node, 140)
    assert (
        sensor['distance_cm'] == 110.0 and sensor['sensor_ts'] == ts(100) and sensor['sensor_id'] == 'ultra1'
    )
    sensor, _ = fuse(node, 160)
    assert sensor['distance_cm'] == 120.0
    sensor, _ = fuse(node, 150)  # a tie: the earlier reading, whatever the arrival order
    assert sensor['distance_cm'] == 110.0
    sensor, _ = fuse(node, 499.999)  # 299.999 ms after the last reading
    assert sensor['distance_cm'] == 120.0
    sensor, _ = fuse(node, 500)  # exactly the window: still in
    assert sensor['distance_cm'] == 120.0
    assert ctx.counters['matched_total'] == 5


def test_no_reading_outside_the_window():
    node, ctx = make_node(time_window_ms=300)
    feed(node, reading(0), reading(1000))
    sensor, [out] = fuse(node, 500.001)  # 500 ms from both
    assert sensor is None and out.payload['sensor'] is None
    sensor, _ = fuse(node, -300.001)
    assert sensor is None
    sensor, _ = fuse(node, 1300.001)
    assert sensor is None
    assert ctx.counters['unmatched_total'] == 3 and 'matched_total' not in ctx.counters


def test_no_sensor_yet_passes_the_event_unchanged():
    node, _ = make_node()
    packet = event_packet(0)
    assert node.process(packet) is packet


def test_readings_arriving_out_of_order_and_on_the_in_port():
    node, _ = make_node()
    feed(node, reading(200, distance_cm=120.0), port='in')  # kind decides, not the port
    feed(node, reading(0, distance_cm=100.0), reading(100, distance_cm=110.0))
    sensor, _ = fuse(node, 90)
    assert sensor['distance_cm'] == 110.0


def test_nearest_over_several_sensors_and_the_sensor_filter():
    node, _ = make_node()
    feed(node, reading(0, 'far'), reading(95, 'near', distance_cm=55.0), reading(300, 'far'))
    sensor, _ = fuse(node, 100)
    assert sensor['sensor_id'] == 'near' and sensor['distance_cm'] == 55.0
    node, ctx = make_node(sensor_ids=['far'])
    feed(node, reading(0, 'far'), reading(95, 'near', distance_cm=55.0))
    sensor, _ = fuse(node, 100)
    assert sensor['sensor_id'] == 'far'
    assert ctx.counters['readings_ignored_total'] == 1


def test_the_window_is_a_dynamic_parameter():
    node, _ = make_node()
    feed(node, reading(0))
    assert fuse(node, 250)[0] is not None
    node.params['time_window_ms'] = 200  # what the runtime does before on_params
    assert fuse(node, 250)[0] is None


# -- interpolation ------------------------------------------------------------------------------
def linear(ms: float) -> float:
    return 250.0 - 0.5 * ms  # cm: someone walking towards the sensor at 5 m/s


def test_interpolation_is_exact_on_linear_data():
    node, ctx = make_node(strategy='interpolate')
    feed(
        node,
        *(reading(ms, distance_cm=linear(ms), temperature_c=20.0 + ms / 100) for ms in range(0, 401, 100)),
    )
    for ms in (0, 37, 50, 140, 199.5, 250, 333.333, 400):
        sensor, _ = fuse(node, ms)
        assert sensor['distance_cm'] == pytest.approx(linear(ms), abs=1e-9)
        assert sensor['temperature_c'] == pytest.approx(20.0 + ms / 100, abs=1e-9)
        assert sensor['sensor_ts'] == ts(ms) and sensor['unit'] == 'cm' and sensor['sensor_id'] == 'ultra1'
    sensor, _ = fuse(node, 140)
    assert sensor['interpolation'] == {
        'before_ts': ts(100),
        'after_ts': ts(200),
        'fraction': pytest.approx(0.4),
    }
    assert ctx.counters['matched_total'] == 9


def test_interpolation_versus_nearest_on_the_same_data():
    nearest, _ = make_node()
    interp, _ = make_node(strategy='interpolate')
    for node in (nearest, interp):
        feed(node, reading(0, distance_cm=100.0), reading(100, distance_cm=200.0))
    assert fuse(nearest, 30)[0]['distance_cm'] == 100.0
    assert fuse(interp, 30)[0]['distance_cm'] == pytest.approx(130.0)


def test_interpolation_needs_both_sides_within_the_window():
    node, _ = make_node(strategy='interpolate', time_window_ms=100)
    feed(node, reading(0, distance_cm=100.0), reading(250, distance_cm=200.0))
    sensor, _ = fuse(node, 80)  # after-reading 170 ms away: no bracket -> nearest (fallback)
    assert sensor['distance_cm'] == 100.0 and 'interpolation' not in sensor
    strict, _ = make_node(strategy='interpolate', time_window_ms=100, interpolate_fallback='none')
    feed(strict, reading(0, distance_cm=100.0), reading(250, distance_cm=200.0))
    assert fuse(strict, 80)[0] is None
    feed(strict, reading(150, distance_cm=160.0))
    assert fuse(strict, 80)[0]['distance_cm'] == pytest.approx(100.0 + 60.0 * 80 / 150)


def test_interpolation_of_nested_numbers_and_field_selection():
    node, _ = make_node(strategy='interpolate', interpolate_fields=['distance_cm'])
    feed(
        node,
        reading(0, distance_cm=100.0, raw=10, status='ok'),
        reading(100, distance_cm=200.0, raw=20, status='warn'),
    )
    sensor, _ = fuse(node, 75)
    assert sensor['distance_cm'] == pytest.approx(175.0)
    assert sensor['raw'] == 20 and sensor['status'] == 'warn'  # not selected: from the nearer reading
    node, _ = make_node(strategy='interpolate')
    imu = {'angular_velocity': {'x': 0.0, 'y': 1.0, 'z': 2.0}}
    feed(
        node,
        sensor_packet('imu', 'imu', ts(0), imu),
        sensor_packet('imu', 'imu', ts(100), {'angular_velocity': {'x': 1.0, 'y': 3.0, 'z': 2.0}}),
    )
    sensor, _ = fuse(node, 25)
    assert sensor['angular_velocity'] == pytest.approx({'x': 0.25, 'y': 1.5, 'z': 2.0})


# -- emitted events -----------------------------------------------------------------------------
def test_fused_event_has_a_deterministic_id_and_the_upstream_fusion_object():
    node, ctx = make_node(emit_fused_events=True)
    feed(node, reading(0, distance_cm=90.0))
    source = event_packet(120)
    enriched, fused = node.process(source)
    assert enriched.packet_id == source.packet_id and enriched.payload['event_type'] == 'ZONE_INTRUSION'
    event = fused.payload
    validate_event(event)  # valid v0.2, event_id derived from its own fields
    assert event['event_type'] == 'FUSED_EVENT' and event['sensor']['distance_cm'] == 90.0
    assert event['fusion'] == {
        'source_event_id': source.payload['event_id'],
        'source_event_type': 'ZONE_INTRUSION',
        'time_window_ms': 300,
        'strategy': 'nearest_by_abs_delta',
        'delta_ms': 120.0,
    }
    key = f'event:S001:cam01:FUSED_EVENT:PERSON:7:{ts(120)}:10:20:30:80'
    assert fused.meta['idempotency_key'] == key
    ns = uuid.uuid5(uuid.NAMESPACE_DNS, 'schnitzel_stream:event_protocol_v0.2')
    assert event['event_id'] == str(uuid.uuid5(ns, key)) != source.payload['event_id']
    again, _ = make_node(emit_fused_events=True)
    feed(again, reading(0, distance_cm=90.0))
    assert again.process(event_packet(120))[1].payload['event_id'] == event['event_id']
    unmatched = node.process(event_packet(5000))
    assert unmatched.payload['sensor'] is None  # no reading: no FUSED_EVENT
    assert ctx.counters['fused_events_total'] == 1


def test_sensor_event_once_per_crossing():
    node, ctx = make_node(
        emit_sensor_event=True,
        site_id='S001',
        sensor_event_rule={'field': 'distance_cm', 'below': 50, 'severity': 'HIGH'},
    )
    values = [120.0, 80.0, 45.0, 40.0, 30.0, 60.0, 49.9, 49.0]
    out = [node.process(reading(i * 100, distance_cm=v), 'sensor') for i, v in enumerate(values)]
    fired = [(i, p) for i, p in enumerate(out) if p is not None]
    assert [i for i, _ in fired] == [2, 6]  # entering below-50 twice
    event = fired[0][1].payload
    validate_event(event)
    assert (event['event_type'], event['severity'], event['camera_id'], event['ts']) == (
        'SENSOR_EVENT',
        'HIGH',
        'ultra1',
        ts(200),
    )
    assert event['sensor']['distance_cm'] == 45.0 and event['object_type'] is None
    assert fired[0][1].meta['source_packet_id'] == fired[0][1].meta['source_packet_id']
    assert ctx.counters['sensor_events_total'] == 2


@pytest.mark.parametrize(
    ('params', 'message'),
    [
        ({'emit_sensor_event': True, 'site_id': 'S001'}, 'sensor_event_rule: required'),
        ({'emit_sensor_event': True, 'sensor_event_rule': {'field': 'd', 'below': 1}}, 'site_id: required'),
        (
            {'emit_sensor_event': True, 'site_id': 'S', 'sensor_event_rule': {'field': 'd'}},
            'sensor_event_rule: give `above` or `below`',
        ),
        (
            {
                'emit_sensor_event': True,
                'site_id': 'S',
                'sensor_event_rule': {'field': 'd', 'below': 1, 'severity': 'X'},
            },
            'sensor_event_rule.severity',
        ),
    ],
)
def test_sensor_event_config_errors(params, message):
    with pytest.raises(ValueError, match=rf'fusion: parameter {message}'):
        make_node(**params)


# -- buffer -------------------------------------------------------------------------------------
def test_each_sensor_buffer_is_bounded():
    node, ctx = make_node(queue_size=256, time_window_ms=0)
    feed(node, *(reading(ms) for ms in range(300)))
    assert len(node.histories['ultra1']) == 256
    assert fuse(node, 43)[0] is None and fuse(node, 44)[0]['sensor_ts'] == ts(44)  # 0..43 fell out
    feed(node, reading(1))  # older than the full buffer: not kept
    assert ctx.counters['readings_too_old_total'] == 1


def test_history_primitives():
    history = SensorHistory(maxlen=3)
    packets = {t: reading(t) for t in (10, 30, 20)}
    for t, p in packets.items():
        history.add(Reading(t, 's', p))
    assert [r.t_us for r in history._readings] == [10, 20, 30]
    assert history.nearest(25, 5).t_us == 20 and history.nearest(26, 5).t_us == 30
    assert history.nearest(100, 5) is None
    assert [r.t_us for r in history.bracket(25, 5)] == [20, 30]
    assert [r.t_us for r in history.bracket(20, 0)] == [20, 20]
    assert history.bracket(35, 100) is None and history.bracket(5, 100) is None
    assert micros_to_ts(ts_to_micros('2026-02-14T12:00:00.000001Z')) == '2026-02-14T12:00:00.000001Z'
