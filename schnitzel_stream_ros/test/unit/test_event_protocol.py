"""Event protocol v0.2: deterministic ids (pinned), taxonomy, validation, and the three routes
dict <-> StreamPacket(kind=event) <-> schnitzel_stream_msgs/Event (also through CDR bytes)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message

from schnitzel_stream_msgs.msg import Event as EventMsg
from schnitzel_stream_ros.codec.event_protocol import (
    CLASS_TAXONOMY,
    EVENT_ID_NAMESPACE,
    REQUIRED_FIELDS,
    EventType,
    Severity,
    build_event,
    event_id_from_key,
    event_idempotency_key,
    event_msg_to_packet,
    event_to_msg,
    event_to_packet,
    msg_to_event,
    packet_to_event,
    packet_to_event_msg,
    validate_event,
)
from schnitzel_stream_ros.codec.packet_codec import decode_packet, encode_packet
from schnitzel_stream_ros.packet import StreamPacket

FAST = settings(max_examples=60, deadline=None)
TS = '2026-02-14T00:00:00Z'
BOX = {'x1': 2, 'y1': 2, 'x2': 4, 'y2': 4}


def expected_event_id(key: str) -> str:
    """The contract's formula written out here, independent of the module under test."""
    namespace = uuid.uuid5(uuid.NAMESPACE_DNS, 'schnitzel_stream:event_protocol_v0.2')
    return str(uuid.uuid5(namespace, key))


def person(**changes):
    fields = {
        'site_id': 'S001',
        'camera_id': 'cam01',
        'ts': TS,
        'object_type': 'PERSON',
        'bbox': BOX,
        'confidence': 0.9,
        'track_id': 0,
    }
    fields.update(changes)
    return build_event(**fields)


# ------------------------------------------------------------------------------------------ identity
@pytest.mark.parametrize(
    ('changes', 'key', 'literal_id'),
    [
        (
            {},
            'event:S001:cam01:ZONE_INTRUSION:PERSON:na:2026-02-14T00:00:00Z:2:2:4:4',
            '612f37c7-7442-547d-86eb-6065c85803b6',
        ),
        (
            {'track_id': 7},
            'event:S001:cam01:ZONE_INTRUSION:PERSON:7:2026-02-14T00:00:00Z:2:2:4:4',
            '84c7008c-be9a-5ab7-9136-54f16f8d203a',
        ),
        (
            {'bbox': {'x1': 2.0, 'y1': 2.0, 'x2': 4.0, 'y2': 4.0}},
            'event:S001:cam01:ZONE_INTRUSION:PERSON:na:2026-02-14T00:00:00Z:2.0:2.0:4.0:4.0',
            '1a794c20-2aba-5c83-9682-8d8d3992190d',
        ),
        (
            {'camera_id': 'cam02', 'object_type': 'FIRE', 'track_id': None},
            'event:S001:cam02:FIRE_DETECTED:FIRE:na:2026-02-14T00:00:00Z:2:2:4:4',
            '5df022b0-c439-581b-8aba-13f2ed9324a3',
        ),
    ],
)
def test_pinned_event_ids(changes, key, literal_id):
    event = person(**changes)
    assert event_to_packet(event).meta['idempotency_key'] == key
    assert event['event_id'] == expected_event_id(key) == literal_id


def test_namespace_and_heartbeat_id_are_pinned():
    assert str(EVENT_ID_NAMESPACE) == 'c5b2d7c1-3170-585c-90de-e92b07e756de'
    # the constant is written out in the module (no hashlib at import); it is still the uuid5 it says
    assert uuid.uuid5(uuid.NAMESPACE_DNS, 'schnitzel_stream:event_protocol_v0.2') == EVENT_ID_NAMESPACE
    heartbeat = build_event(
        site_id='S001',
        camera_id='cam01',
        ts=TS,
        object_type=None,
        bbox={'x1': 0, 'y1': 0, 'x2': 0, 'y2': 0},
        confidence=1.0,
        event_type=EventType.HEARTBEAT,
        severity=Severity.INFO,
        extra={'last_frame_age_sec': 0.4},
    )
    assert heartbeat['event_id'] == 'fb7d197a-0054-5845-aa8f-4d6d4a3d6302'
    assert heartbeat['last_frame_age_sec'] == 0.4


def test_same_detection_same_id_and_any_identity_field_changes_it():
    base = person()['event_id']
    assert person()['event_id'] == base
    assert person(confidence=0.2, zone={'zone_id': 'z1', 'inside': True})['event_id'] == base  # not identity
    for changes in [
        {'site_id': 'S002'},
        {'camera_id': 'cam9'},
        {'track_id': 1},
        {'ts': '2026-02-14T00:00:01Z'},
        {'bbox': {**BOX, 'x2': 5}},
        {'event_type': 'FALL_DETECTED'},
    ]:
        assert person(**changes)['event_id'] != base, changes


@FAST
@given(
    st.text(min_size=1, max_size=8),
    st.text(min_size=1, max_size=8),
    st.sampled_from(sorted(CLASS_TAXONOMY)),
    st.none() | st.integers(min_value=0, max_value=10**6),
    st.tuples(*[st.integers(-5000, 5000) | st.floats(-5000, 5000) for _ in range(4)]),
)
def test_event_id_is_the_formula_for_any_detection(site, camera, cls, track, box):
    if cls == 'PERSON' and track is None:
        track = 3
    bbox = dict(zip(('x1', 'y1', 'x2', 'y2'), box, strict=True))
    event = build_event(
        site_id=site, camera_id=camera, ts=TS, object_type=cls, bbox=bbox, confidence=0.5, track_id=track
    )
    key = (
        f'event:{site}:{camera}:{CLASS_TAXONOMY[cls].event_type}:{cls}:{track or "na"}:{TS}:'
        f'{box[0]}:{box[1]}:{box[2]}:{box[3]}'
    )
    assert event['event_id'] == expected_event_id(key)
    assert event_id_from_key(key) == event['event_id']
    assert event_idempotency_key(site, camera, event['event_type'], cls, track, TS, bbox) == key


# ------------------------------------------------------------------------------------------ taxonomy
def test_class_taxonomy_is_the_contracts():
    table = {cls: (rule.event_type, rule.severity) for cls, rule in CLASS_TAXONOMY.items()}
    assert table == {
        'PERSON': ('ZONE_INTRUSION', 'MEDIUM'),
        'FIRE': ('FIRE_DETECTED', 'CRITICAL'),
        'SMOKE': ('SMOKE_DETECTED', 'HIGH'),
        'FORKLIFT': ('ZONE_INTRUSION', 'MEDIUM'),
        'HELMET': ('PPE_COMPLIANCE', 'INFO'),
        'VEST': ('PPE_COMPLIANCE', 'INFO'),
        'NO_HELMET': ('PPE_VIOLATION', 'MEDIUM'),
        'NO_VEST': ('PPE_VIOLATION', 'LOW'),
        'FALLEN_PERSON': ('FALL_DETECTED', 'HIGH'),
    }
    assert [s.value for s in Severity] == ['INFO', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL']
    assert EventMsg.SEVERITY_CRITICAL == Severity.CRITICAL
    assert {getattr(EventMsg, f'EVENT_TYPE_{t.name}') for t in EventType} == {t.value for t in EventType}


def test_build_event_uses_the_taxonomy_and_explicit_values_win():
    fire = build_event(site_id='S1', camera_id='c', ts=TS, object_type='FIRE', bbox=BOX, confidence=0.7)
    assert (fire['event_type'], fire['severity'], fire['track_id']) == ('FIRE_DETECTED', 'CRITICAL', None)
    override = build_event(
        site_id='S1', camera_id='c', ts=TS, object_type='SMOKE', bbox=BOX, confidence=0.7, severity='LOW'
    )
    assert override['severity'] == 'LOW'
    cat = build_event(
        site_id='S1',
        camera_id='c',
        ts=TS,
        object_type='CAT',
        bbox=BOX,
        confidence=0.7,
        event_type='ANIMAL_SEEN',
        severity='INFO',
    )
    assert cat['event_type'] == 'ANIMAL_SEEN'


# ------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ('changes', 'message', 'error'),
    [
        ({'object_type': 'CAT'}, "object_type: 'CAT' is not in the class taxonomy", ValueError),
        ({'track_id': None}, 'event.track_id: required when object_type is PERSON', ValueError),
        ({'track_id': '7'}, 'event.track_id: expected an int', TypeError),
        ({'track_id': True}, 'event.track_id: expected an int', TypeError),
        ({'bbox': {'x1': 2, 'y1': 2, 'x2': 4}}, 'event.bbox.y2: required field missing', ValueError),
        ({'bbox': {**BOX, 'x1': float('nan')}}, 'event.bbox.x1: expected a finite number', ValueError),
        ({'bbox': {**BOX, 'y1': '2'}}, 'event.bbox.y1: expected a finite number', ValueError),
        ({'bbox': [2, 2, 4, 4]}, 'bbox: expected an object', TypeError),
        ({'confidence': 1.5}, r'event.confidence: expected a number in \[0, 1\], got 1.5', ValueError),
        ({'confidence': None}, 'event.confidence', ValueError),
        (
            {'severity': 'URGENT'},
            "event.severity: 'URGENT' is not one of INFO, LOW, MEDIUM, HIGH, CRITICAL",
            ValueError,
        ),
        ({'severity': ['HIGH']}, 'event.severity', ValueError),
        ({'site_id': ''}, 'event.site_id: expected a non-empty string', ValueError),
        ({'camera_id': 5}, 'event.camera_id: expected a non-empty string', ValueError),
        ({'ts': 'noon'}, "event.ts: not an ISO-8601 time: 'noon'", ValueError),
        ({'zone': {'zone_id': 'z'}}, 'event.zone: expected', ValueError),
        ({'zone': {'zone_id': 3, 'inside': True}}, 'event.zone.zone_id: expected str or null', TypeError),
        ({'zone': {'zone_id': 'z', 'inside': 1}}, 'event.zone.inside: expected bool', TypeError),
        ({'sensor': [1]}, 'event.sensor: expected an object or null', TypeError),
        ({'sensor': {'v': float('inf')}}, 'event.sensor.v: inf is not a JSON number', ValueError),
        ({'extra': {'ts': 'x'}}, 'extra.ts: is a standard field', ValueError),
        ({'extra': {'score': object()}}, 'event.score: object is not a JSON type', TypeError),
    ],
)
def test_bad_detections_are_refused_by_name(changes, message, error):
    with pytest.raises(error, match=message):
        person(**changes)


@pytest.mark.parametrize('field', REQUIRED_FIELDS)
def test_every_required_field_is_required(field):
    event = person()
    del event[field]
    with pytest.raises(ValueError, match=f'payload.{field}: required field missing'):
        event_to_packet(event)


def test_event_id_must_match_the_fields_unless_told_otherwise():
    event = {**person(), 'event_id': str(uuid.uuid4())}
    with pytest.raises(ValueError, match=r'payload.event_id: .* is not the id derived from the event fields'):
        event_to_packet(event)
    assert event_to_packet(event, check_identity=False).payload == event
    with pytest.raises(ValueError, match=r"payload.event_id: expected UUID text, got 'e-1'"):
        event_to_packet({**event, 'event_id': 'e-1'}, check_identity=False)
    with pytest.raises(TypeError, match='event: expected an object'):
        validate_event([event])


# ------------------------------------------------------------------------------------------ routes
def test_dict_to_packet_and_back_is_exact():
    event = person(
        zone={'zone_id': 'dock', 'inside': True},
        snapshot_path='s/1.jpg',
        sensor={'source_id': 'r1', 'payload': {'range_m': 3.4}},
        extra={'model': 'ssd'},
    )
    packet = event_to_packet(event)
    assert (packet.kind, packet.source_id, packet.ts) == ('event', 'cam01', TS)
    assert packet.payload == event and packet.payload is not event
    assert packet_to_event(packet) == event
    assert packet_to_event(decode_packet(encode_packet(packet))) == event


def test_event_packet_as_child_of_a_detection():
    detection = StreamPacket.new('detection', 'cam01', [], {'frame_idx': 9}, ts=TS)
    packet = event_to_packet(person(), parent=detection)
    assert packet.packet_id != detection.packet_id
    assert packet.meta['source_packet_id'] == detection.packet_id
    assert packet.meta['idempotency_key'].startswith('event:S001:cam01:')
    assert event_msg_to_packet(event_to_msg(person()), parent=detection).meta['source_packet_id'] == (
        detection.packet_id
    )


def test_packet_to_event_checks_kind_and_key():
    packet = event_to_packet(person())
    with pytest.raises(ValueError, match="kind: expected 'event', got 'detection'"):
        packet_to_event(packet.derive(kind='detection'))
    with pytest.raises(ValueError, match=r"meta.idempotency_key: 'other' is not the key of the payload"):
        packet_to_event(packet.with_meta(idempotency_key='other'))


def test_event_msg_fields():
    event = person(
        track_id=12,
        zone={'zone_id': 'dock', 'inside': True},
        sensor={'range_m': 1.5},
        extra={'last_frame_age_sec': 0.25},
    )
    msg = event_to_msg(event)
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == (
        'cam01',
        1_771_027_200,
        0,
    )
    assert (msg.event_id, msg.site_id, msg.camera_id, msg.event_type, msg.object_type, msg.severity) == (
        event['event_id'],
        'S001',
        'cam01',
        'ZONE_INTRUSION',
        'PERSON',
        'MEDIUM',
    )
    assert (msg.has_track_id, msg.track_id, msg.zone_id, msg.zone_inside) == (True, 12, 'dock', True)
    assert (msg.bbox.x1, msg.bbox.y1, msg.bbox.x2, msg.bbox.y2, msg.confidence) == (2.0, 2.0, 4.0, 4.0, 0.9)
    assert (msg.sensor_json, msg.extra_json) == ('{"range_m":1.5}', '{"last_frame_age_sec":0.25}')
    assert msg.idempotency_key == 'event:S001:cam01:ZONE_INTRUSION:PERSON:12:2026-02-14T00:00:00Z:2:2:4:4'


event_dicts = st.builds(
    lambda site, cam, cls, track, box, conf, zone, snap, sensor, extra, micros: build_event(
        site_id=site,
        camera_id=cam,
        ts=f'2026-02-14T00:00:00.{micros:06d}Z' if micros else TS,
        object_type=cls,
        bbox=dict(zip(('x1', 'y1', 'x2', 'y2'), box, strict=True)),
        confidence=conf,
        track_id=track if track is not None or cls != 'PERSON' else 1,
        zone=zone,
        snapshot_path=snap,
        sensor=sensor,
        extra=extra,
    ),
    st.text(st.characters(exclude_categories=('Cs',), exclude_characters='\x00'), min_size=1, max_size=8),
    st.text(st.characters(exclude_categories=('Cs',), exclude_characters='\x00'), min_size=1, max_size=8),
    st.sampled_from(sorted(CLASS_TAXONOMY)),
    st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.tuples(
        *[
            st.integers(-5000, 5000) | st.floats(-5000, 5000).filter(lambda v: not v.is_integer())
            for _ in range(4)
        ]
    ),
    st.floats(0, 1),
    st.none()
    | st.builds(
        lambda z, i: {'zone_id': z, 'inside': i},
        st.just('')
        | st.text(
            st.characters(exclude_categories=('Cs',), exclude_characters='\x00'), min_size=1, max_size=6
        ),
        st.booleans(),
    ),
    st.none()
    | st.text(st.characters(exclude_categories=('Cs',), exclude_characters='\x00'), min_size=1, max_size=10),
    st.none() | st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
    st.none()
    | st.dictionaries(
        st.sampled_from(['last_frame_age_sec', 'metrics', 'model']),
        st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
        max_size=2,
    ),
    st.integers(0, 999_999),
)


@FAST
@given(event_dicts)
def test_dict_to_event_msg_and_back_is_exact_for_built_events(event):
    msg = event_to_msg(event)
    wire = deserialize_message(serialize_message(msg), EventMsg)
    assert msg_to_event(wire) == event
    assert list(msg_to_event(wire))[:13] == list(event)[:13]  # canonical field order


@FAST
@given(event_dicts)
def test_packet_to_event_msg_to_packet_keeps_identity(event):
    packet = event_to_packet(event)
    back = event_msg_to_packet(packet_to_event_msg(packet))
    assert back.payload == event
    assert back.meta == packet.meta
    assert back.idempotency_key == packet.idempotency_key


def test_event_msg_normalisation_of_numbers_and_missing_optionals():
    event = person(bbox={'x1': 2.0, 'y1': 2.5, 'x2': 4.0, 'y2': 4}, confidence=1)
    back = msg_to_event(event_to_msg(event))
    assert back['bbox'] == {'x1': 2, 'y1': 2.5, 'x2': 4, 'y2': 4}
    assert type(back['confidence']) is float
    assert back['event_id'] == event['event_id']  # identity travels as a field, not recomputed
    minimal = {
        k: v for k, v in person().items() if k not in ('snapshot_path', 'sensor', 'object_type', 'track_id')
    }
    minimal['object_type'] = 'FIRE'
    minimal['event_id'] = event_id_from_key(
        event_idempotency_key('S001', 'cam01', 'ZONE_INTRUSION', 'FIRE', None, TS, BOX)
    )
    canonical = msg_to_event(event_to_msg(minimal))
    assert (canonical['snapshot_path'], canonical['sensor'], canonical['track_id']) == (None, None, None)


@pytest.mark.parametrize(
    ('mutate', 'message'),
    [
        (lambda m: setattr(m, 'event_id', str(uuid.uuid4())), 'event_id: .* is not uuid5 of idempotency_key'),
        (lambda m: setattr(m, 'idempotency_key', ''), 'idempotency_key: must not be empty'),
        (lambda m: setattr(m, 'severity', 'LOUD'), "msg.severity: 'LOUD' is not one of"),
        (lambda m: setattr(m, 'extra_json', '{"ts": 1}'), 'extra_json.ts: is a standard field'),
        (lambda m: setattr(m, 'extra_json', '[1]'), 'extra_json: expected a JSON object'),
        (lambda m: setattr(m, 'sensor_json', '{"a": NaN}'), 'sensor_json: NaN is not JSON'),
        (lambda m: setattr(m, 'has_track_id', False), 'msg.track_id: required when object_type is PERSON'),
        (lambda m: setattr(m.bbox, 'x1', float('inf')), 'msg.bbox.x1: expected a finite number'),
        (lambda m: setattr(m, 'site_id', ''), 'msg.site_id: expected a non-empty string'),
    ],
)
def test_bad_event_messages_are_refused_by_name(mutate, message):
    msg = event_to_msg(person())
    mutate(msg)
    with pytest.raises(ValueError, match=message):
        msg_to_event(msg)


def test_events_that_event_msg_cannot_hold_are_refused_by_name():
    with pytest.raises(
        ValueError, match=r'event.bbox: unexpected key\(s\) w \(Event.msg has x1, y1, x2, y2\)'
    ):
        event_to_msg({**person(), 'bbox': {**BOX, 'w': 2}}, check_identity=False)
    with pytest.raises(ValueError, match=r'event.zone: unexpected key\(s\) name'):
        event_to_msg({**person(), 'zone': {'zone_id': 'z', 'inside': True, 'name': 'dock'}})
    with pytest.raises(ValueError, match=r'event.bbox.x1: 9007199254740993 does not fit a float64 exactly'):
        event_to_msg(person(bbox={**BOX, 'x1': 2**53 + 1}))
    with pytest.raises(ValueError, match=r'event.camera_id: contains a NUL character'):
        event_to_msg(person(camera_id='cam\x00'))
    with pytest.raises(ValueError, match=r'event.zone.zone_id: contains a NUL character'):
        event_to_msg(person(zone={'zone_id': 'z\x00', 'inside': True}))
    with pytest.raises(TypeError, match='msg: expected schnitzel_stream_msgs/Event'):
        msg_to_event(person())  # type: ignore[arg-type]
