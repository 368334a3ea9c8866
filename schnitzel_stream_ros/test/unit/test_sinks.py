"""RobotEventSink (typed Event + legacy JSON) and AnnotatedImageSink (boxes and zones on frames)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import String

from schnitzel_stream_msgs.msg import Event as EventMsg
from schnitzel_stream_ros.codec.event_protocol import build_event, event_to_packet, msg_to_event
from schnitzel_stream_ros.codec.image import image_msg_to_frame
from schnitzel_stream_ros.graph.ports import declared_ports
from schnitzel_stream_ros.nodes.sinks.annotated_image import AnnotatedImageSink
from schnitzel_stream_ros.nodes.sinks.overlay import ALARM_COLOUR, BOX_COLOUR, ZONE_COLOUR
from schnitzel_stream_ros.nodes.sinks.robot_event import RobotEventSink
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params

TS = '2026-02-14T12:00:00.250000Z'


def make(cls, **params):
    ctx = SimpleContext(node_id='sink', params=resolve_params(cls, params))
    plugin = cls(ctx)
    plugin.setup()
    return plugin, ctx


def fire_event(**extra):
    event = build_event(
        site_id='S001',
        camera_id='cam01',
        ts=TS,
        object_type='FIRE',
        bbox={'x1': 10, 'y1': 20, 'x2': 110.5, 'y2': 220},
        confidence=0.8,
        zone={'zone_id': 'dock', 'inside': True},
        sensor={'distance_cm': 42.0},
        **extra,
    )
    return event_to_packet(event)


# -- robot events -------------------------------------------------------------------------------
def test_event_becomes_a_typed_event_message():
    sink, ctx = make(RobotEventSink)
    packet = fire_event(extra={'fusion': {'strategy': 'nearest_by_abs_delta'}})
    assert sink.process(packet) is None
    [out] = ctx.outputs['events']
    msg = out.payload
    assert isinstance(msg, EventMsg)
    assert (msg.site_id, msg.camera_id, msg.event_type, msg.severity, msg.object_type) == (
        'S001',
        'cam01',
        'FIRE_DETECTED',
        'CRITICAL',
        'FIRE',
    )
    assert (
        msg.event_id == packet.payload['event_id'] and msg.idempotency_key == packet.meta['idempotency_key']
    )
    assert (msg.bbox.x1, msg.bbox.y1, msg.bbox.x2, msg.bbox.y2) == (10.0, 20.0, 110.5, 220.0)
    assert (msg.zone_id, msg.zone_inside, msg.has_track_id) == ('dock', True, False)
    assert msg.header.frame_id == 'cam01' and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (
        1771070400,
        250000000,
    )
    assert json.loads(msg.sensor_json) == {'distance_cm': 42.0}
    assert json.loads(msg.extra_json) == {'fusion': {'strategy': 'nearest_by_abs_delta'}}
    assert msg_to_event(msg) == packet.payload  # nothing lost on the way to the robot
    assert 'legacy_json' not in ctx.outputs and ctx.counters == {'published_total': 1}


def test_legacy_json_string_when_asked():
    sink, ctx = make(RobotEventSink, legacy_json=True)
    packet = fire_event()
    sink.process(packet)
    [legacy] = ctx.outputs['legacy_json']
    assert isinstance(legacy.payload, String)
    assert json.loads(legacy.payload.data) == packet.payload
    assert len(ctx.outputs['events']) == 1
    only_legacy, ctx2 = make(RobotEventSink, legacy_json=True, typed=False)
    only_legacy.process(packet)
    assert list(ctx2.outputs) == ['legacy_json']


def test_ports_follow_the_parameters():
    def names(**params):
        return [p.name for p in declared_ports(RobotEventSink, resolve_params(RobotEventSink, params))[1]]

    assert names() == ['events']
    assert names(legacy_json=True) == ['events', 'legacy_json']
    outputs = declared_ports(RobotEventSink, resolve_params(RobotEventSink, {'legacy_json': True}))[1]
    assert [p.msg_type for p in outputs] == ['schnitzel_stream_msgs/msg/Event', 'std_msgs/msg/String']
    with pytest.raises(ValueError, match=r'sink: parameters typed and legacy_json are both false'):
        make(RobotEventSink, typed=False)


def test_invalid_events_are_counted_not_published():
    sink, ctx = make(RobotEventSink, legacy_json=True)
    good = fire_event()
    forged = good.derive(payload={**good.payload, 'camera_id': 'cam99'})  # identity field changed, id not
    missing = good.derive(payload={k: v for k, v in good.payload.items() if k != 'zone'})
    for packet in (forged, missing, StreamPacket.new('event', 'cam01', 'not an event')):
        assert sink.process(packet) is None
    assert ctx.outputs == {} and ctx.counters == {'invalid_total': 3}
    lenient, ctx2 = make(RobotEventSink, check_identity=False)
    lenient.process(forged)
    assert ctx2.outputs['events'][0].payload.camera_id == 'cam99'


# -- annotated images ---------------------------------------------------------------------------
def frame_packet(frame, ts=TS, source_id='cam01', meta=None):
    return StreamPacket.new('frame', source_id, frame, meta=meta, ts=ts)


def detections_packet(items, ts=TS, source_id='cam01'):
    return StreamPacket.new('detection', source_id, items, ts=ts)


def published(ctx) -> np.ndarray:
    msg = ctx.outputs['image'][-1].payload
    assert isinstance(msg, Image) and msg.encoding == 'bgr8'
    return image_msg_to_frame(msg)


def colour_at(image, x, y):
    return tuple(int(c) for c in image[y, x])


def test_boxes_and_zones_are_drawn_where_they_are():
    zones = [
        {'zone_id': 'dock', 'polygon': [[5, 5], [90, 5], [90, 90], [5, 90]]},
        {'zone_id': 'gate', 'polygon': [[150, 10], [190, 10], [190, 50], [150, 50]]},
    ]
    sink, ctx = make(AnnotatedImageSink, zones=zones, labels=False, thickness=1)
    frame = np.full((120, 200, 3), 50, dtype=np.uint8)
    frame.flags.writeable = False  # frames are shared read-only between nodes
    sink.process(
        detections_packet(
            [
                {
                    'bbox': {'x1': 20, 'y1': 30, 'x2': 60, 'y2': 80},
                    'object_type': 'PERSON',
                    'track_id': 3,
                    'zone': {'zone_id': 'dock', 'inside': True},
                },
                {'bbox': {'x1': 100.4, 'y1': 60, 'x2': 140, 'y2': 110}, 'object_type': 'PERSON'},
            ]
        ),
        'detections',
    )
    sink.process(frame_packet(frame), 'frames')
    image = published(ctx)
    assert (
        colour_at(image, 20, 50) == ALARM_COLOUR and colour_at(image, 60, 50) == ALARM_COLOUR
    )  # in-zone box
    assert colour_at(image, 40, 30) == ALARM_COLOUR and colour_at(image, 40, 80) == ALARM_COLOUR
    assert (
        colour_at(image, 100, 80) == BOX_COLOUR and colour_at(image, 120, 110) == BOX_COLOUR
    )  # 100.4 -> 100
    assert colour_at(image, 40, 50) == (50, 50, 50)  # inside a box: untouched
    assert colour_at(image, 5, 50) == ALARM_COLOUR  # occupied zone outline
    assert colour_at(image, 170, 10) == ZONE_COLOUR  # empty zone outline
    assert colour_at(image, 170, 30) == (50, 50, 50)
    assert (frame == 50).all()  # the shared frame was not drawn on
    header = ctx.outputs['image'][0].payload.header
    assert header.frame_id == 'cam01' and header.stamp.nanosec == 250_000_000


def test_latest_detections_of_the_same_camera_within_max_age():
    sink, ctx = make(AnnotatedImageSink, max_age_ms=100, labels=False)
    frame = np.zeros((60, 60, 3), dtype=np.uint8)
    box = {'bbox': {'x1': 10, 'y1': 10, 'x2': 40, 'y2': 40}}
    sink.process(detections_packet([box], ts='2026-02-14T12:00:00Z'), 'detections')
    sink.process(frame_packet(frame, ts='2026-02-14T12:00:00.100000Z'), 'frames')
    assert colour_at(published(ctx), 10, 20) == BOX_COLOUR
    sink.process(frame_packet(frame, ts='2026-02-14T12:00:00.100001Z'), 'frames')  # too old now
    assert colour_at(published(ctx), 10, 20) == (0, 0, 0)
    sink.process(frame_packet(frame, ts='2026-02-14T12:00:00.050000Z', source_id='cam02'), 'frames')
    assert colour_at(published(ctx), 10, 20) == (0, 0, 0)  # another camera's boxes are not drawn
    # events of one frame arrive one by one: all are drawn
    event_a = fire_event().derive(ts='2026-02-14T12:00:01Z')
    event_b = fire_event().derive(
        ts='2026-02-14T12:00:01Z', payload={'bbox': {'x1': 150, 'y1': 0, 'x2': 170, 'y2': 50}}
    )
    big = np.zeros((240, 240, 3), dtype=np.uint8)
    sink.process(event_a, 'detections')
    sink.process(event_b, 'detections')
    sink.process(frame_packet(big, ts='2026-02-14T12:00:01Z'), 'frames')
    image = published(ctx)
    assert colour_at(image, 10, 100) == ALARM_COLOUR and colour_at(image, 150, 25) == BOX_COLOUR


def test_frame_with_its_own_detections_and_every_nth():
    sink, ctx = make(AnnotatedImageSink, every_nth=2, labels=True)
    frame = np.zeros((50, 50, 3), dtype=np.uint8)
    own = {
        'detections': [
            {
                'bbox': {'x1': 5, 'y1': 5, 'x2': 45, 'y2': 45},
                'object_type': 'PERSON',
                'track_id': 1,
                'confidence': 0.9,
            }
        ]
    }
    for _ in range(5):
        sink.process(frame_packet(frame, meta=own), 'frames')
    assert len(ctx.outputs['image']) == 3 and ctx.counters['published_total'] == 3
    assert colour_at(published(ctx), 5, 30) == BOX_COLOUR


def test_mono_frames_and_bad_frames():
    sink, ctx = make(AnnotatedImageSink)
    sink.process(frame_packet(np.zeros((10, 10), dtype=np.uint8)), 'frames')
    assert published(ctx).shape == (10, 10, 3)
    sink.process(frame_packet('not an image'), 'frames')
    sink.process(frame_packet(np.zeros((10, 10, 3), dtype=np.float32)), 'frames')
    assert ctx.counters['invalid_frames_total'] == 2
