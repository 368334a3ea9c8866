"""ProtocolV02EventBuilderNode: one event per detection, deterministic ids, taxonomy, counted skips."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from schnitzel_stream_ros.codec.event_protocol import validate_event
from schnitzel_stream_ros.nodes.policy.event_builder import ProtocolV02EventBuilderNode
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import ParamError, SimpleContext, resolve_params

TS = '2026-02-14T00:00:00Z'


def make_node(**params):
    params.setdefault('site_id', 'S001')
    ctx = SimpleContext(node_id='events', params=resolve_params(ProtocolV02EventBuilderNode, params))
    node = ProtocolV02EventBuilderNode(ctx)
    node.setup()
    return node, ctx


def detection_packet(payload, source_id='cam01', ts=TS, meta=None):
    return StreamPacket.new(
        'detection', source_id, payload, meta=meta or {'frame_idx': 42, 'epoch': 1}, ts=ts
    )


def person(track_id=0, bbox=(2, 2, 4, 4), confidence=0.9, **extra):
    return {
        'bbox': dict(zip(('x1', 'y1', 'x2', 'y2'), bbox, strict=True)),
        'confidence': confidence,
        'object_type': 'PERSON',
        'class_id': 0,
        'track_id': track_id,
        **extra,
    }


def expected_event_id(key: str) -> str:
    """The contract's formula, written out here independently of the code under test."""
    return str(uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_DNS, 'schnitzel_stream:event_protocol_v0.2'), key))


def test_pinned_event_id_of_the_contract_example():
    node, ctx = make_node()
    [out] = node.process(detection_packet([person(track_id=0)]))
    key = (
        'event:S001:cam01:ZONE_INTRUSION:PERSON:na:2026-02-14T00:00:00Z:2:2:4:4'  # track 0 -> 'na' (upstream)
    )
    assert out.meta['idempotency_key'] == key
    assert out.payload['event_id'] == expected_event_id(key)
    assert out.payload['event_id'] == '612f37c7-7442-547d-86eb-6065c85803b6'
    assert ctx.counters == {'emitted_total': 1}


def test_event_fields_taxonomy_and_packet_identity():
    node, _ = make_node()
    parent = detection_packet([person(track_id=5, confidence=0.75, bbox=(10.5, 20, 30, 40.25))])
    [out] = node.process(parent)
    event = out.payload
    validate_event(event)  # complete and consistent v0.2, id derived from the fields
    assert event['site_id'] == 'S001' and event['camera_id'] == 'cam01' and event['ts'] == TS
    assert (event['event_type'], event['severity'], event['object_type']) == (
        'ZONE_INTRUSION',
        'MEDIUM',
        'PERSON',
    )
    assert event['track_id'] == 5 and event['confidence'] == 0.75
    assert event['bbox'] == {'x1': 10.5, 'y1': 20, 'x2': 30, 'y2': 40.25}
    assert out.kind == 'event' and out.source_id == 'cam01' and out.packet_id != parent.packet_id
    assert out.meta['source_packet_id'] == parent.packet_id
    assert out.meta['frame_idx'] == 42 and out.meta['epoch'] == 1  # frame position inherited


@pytest.mark.parametrize(
    ('object_type', 'event_type', 'severity'),
    [
        ('FIRE', 'FIRE_DETECTED', 'CRITICAL'),
        ('SMOKE', 'SMOKE_DETECTED', 'HIGH'),
        ('FORKLIFT', 'ZONE_INTRUSION', 'MEDIUM'),
        ('HELMET', 'PPE_COMPLIANCE', 'INFO'),
        ('VEST', 'PPE_COMPLIANCE', 'INFO'),
        ('NO_HELMET', 'PPE_VIOLATION', 'MEDIUM'),
        ('NO_VEST', 'PPE_VIOLATION', 'LOW'),
        ('FALLEN_PERSON', 'FALL_DETECTED', 'HIGH'),
    ],
)
def test_class_taxonomy(object_type, event_type, severity):
    node, _ = make_node()
    det = {'bbox': {'x1': 0, 'y1': 0, 'x2': 1, 'y2': 1}, 'confidence': 0.5, 'object_type': object_type}
    [out] = node.process(detection_packet(det))
    assert (out.payload['event_type'], out.payload['severity']) == (event_type, severity)


def test_same_detection_same_id_and_any_change_a_new_id():
    node, _ = make_node()
    ids = {node.process(detection_packet([person(3)]))[0].payload['event_id'] for _ in range(3)}
    assert len(ids) == 1
    variants = [
        detection_packet([person(4)]),
        detection_packet([person(3, bbox=(2, 2, 4, 5))]),
        detection_packet([person(3)], ts='2026-02-14T00:00:00.100000Z'),
        detection_packet([person(3)], 'cam02'),
    ]
    other = {node.process(p)[0].payload['event_id'] for p in variants}
    assert len(other) == 4 and not other & ids
    node2, _ = make_node(site_id='S002')
    assert node2.process(detection_packet([person(3)]))[0].payload['event_id'] not in ids


def test_skips_are_counted_by_reason():
    node, ctx = make_node()
    ok = person(1)
    no_box = {k: v for k, v in person(1).items() if k != 'bbox'}
    no_conf = {k: v for k, v in person(1).items() if k != 'confidence'}
    no_type = {k: v for k, v in person(1).items() if k != 'object_type'}
    no_track = person(None)
    unknown_class = {'bbox': ok['bbox'], 'confidence': 0.5, 'object_type': 'CAT'}
    bad_conf = person(1, confidence=1.5)
    bad_box = person(1, bbox=(0, 0, float('nan'), 1))
    out = node.process(
        detection_packet([ok, no_box, no_conf, no_type, no_track, unknown_class, bad_conf, bad_box, 'junk'])
    )
    assert len(out) == 1
    assert ctx.counters == {
        'emitted_total': 1,
        'skipped_total': 8,
        'skipped_missing_bbox_total': 1,
        'skipped_missing_confidence_total': 1,
        'skipped_missing_object_type_total': 1,
        'skipped_missing_track_id_total': 1,
        'skipped_missing_event_type_total': 1,  # CAT: not in the taxonomy and no event_type given
        'skipped_invalid_total': 3,  # confidence 1.5, NaN box, a string instead of a dict
    }


def test_explicit_fields_win_and_strict_mode_requires_them():
    node, _ = make_node()
    det = {**person(1), 'event_type': 'CUSTOM_ALERT', 'severity': 'HIGH'}
    [out] = node.process(detection_packet(det))
    assert (out.payload['event_type'], out.payload['severity']) == ('CUSTOM_ALERT', 'HIGH')
    strict, ctx = make_node(apply_taxonomy=False)
    assert strict.process(detection_packet(person(1))) == []
    assert ctx.counters['skipped_missing_event_type_total'] == 1
    assert len(strict.process(detection_packet(det))) == 1


def test_taxonomy_override_and_bad_override():
    node, _ = make_node(
        taxonomy={
            'CAT': {'event_type': 'ANIMAL', 'severity': 'LOW'},
            'PERSON': {'event_type': 'PRESENCE', 'severity': 'INFO'},
        }
    )
    cat = {'bbox': {'x1': 0, 'y1': 0, 'x2': 1, 'y2': 1}, 'confidence': 0.5, 'object_type': 'CAT'}
    out = node.process(detection_packet([cat, person(1)]))
    assert [(e.payload['event_type'], e.payload['severity']) for e in out] == [
        ('ANIMAL', 'LOW'),
        ('PRESENCE', 'INFO'),
    ]
    with pytest.raises(ValueError, match=r"events: parameter taxonomy.CAT.severity: 'URGENT'"):
        make_node(taxonomy={'CAT': {'event_type': 'ANIMAL', 'severity': 'URGENT'}})


def test_payload_shapes_zone_snapshot_sensor_and_numpy_values():
    node, _ = make_node(camera_id='gate_cam')
    assert node.process(detection_packet(None)) is None
    det = person(
        2,
        confidence=np.float32(0.5),
        zone={'zone_id': 'dock', 'inside': True},
        snapshot_path='snaps/1.jpg',
        sensor={'distance_cm': 80},
    )
    det['bbox'] = {'x1': np.float32(1.5), 'y1': np.int64(2), 'x2': 3, 'y2': 4}
    [out] = node.process(detection_packet(det))  # a dict payload = one detection
    event = out.payload
    assert event['camera_id'] == 'gate_cam' and out.source_id == 'gate_cam'
    assert event['zone'] == {'zone_id': 'dock', 'inside': True}
    assert event['snapshot_path'] == 'snaps/1.jpg' and event['sensor'] == {'distance_cm': 80}
    assert type(event['confidence']) is float and type(event['bbox']['y1']) is int
    with pytest.raises(
        ValueError, match=r'events: packet .* detection payload must be a dict, a list of dicts or null'
    ):
        node.process(detection_packet('person'))


def test_site_id_is_required():
    with pytest.raises(ParamError, match=r"'site_id' is required"):
        resolve_params(ProtocolV02EventBuilderNode, {})
    with pytest.raises(ValueError, match=r'events: parameter site_id'):
        make_node(site_id='  ')
