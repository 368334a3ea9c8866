"""RosEventTopicSource (typed Events from a topic back into a graph) and the demo's lanes graph.

The runtime hands the source `StreamPacket(kind=raw, source_id=<topic>, payload=<Event msg>)`
(docs/wiring.md); the test does the same with real message objects. The lanes graph
(config/site_lanes.yaml, run by scripts/demo) must validate as shipped.
"""
from __future__ import annotations

import os
from pathlib import Path

from schnitzel_stream_ros.codec.event_protocol import build_event, event_to_msg
from schnitzel_stream_ros.graph.load import load_graph_text
from schnitzel_stream_ros.graph.validate import validate
from schnitzel_stream_ros.nodes.sensors.ros_event_topic import RosEventTopicSource
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params

CONFIG = Path(__file__).resolve().parents[2] / 'config'


def make(**params):
    ctx = SimpleContext(node_id='persons', params=resolve_params(RosEventTopicSource, params))
    source = RosEventTopicSource(ctx)
    source.setup()
    return source, ctx


def event_msg(object_type='PERSON', track_id=3, **changes):
    event = build_event(site_id='S001', camera_id='cam0', ts='2026-02-14T12:00:01.500000Z',
                        object_type=object_type, bbox={'x1': 1, 'y1': 2, 'x2': 30, 'y2': 90},
                        confidence=0.8, track_id=track_id)
    msg = event_to_msg(event)
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg, event


def delivered(msg):
    return StreamPacket.new('raw', '/site/events', msg)


def test_events_come_back_as_event_packets_and_forgeries_are_dropped():
    source, ctx = make(event_types=['ZONE_INTRUSION'], object_types=['PERSON'])
    msg, event = event_msg()
    out = source.process(delivered(msg))
    assert (out.kind, out.source_id, out.ts) == ('event', 'cam0', event['ts'])
    assert out.meta['ros_topic'] == '/site/events'
    assert out.payload['event_id'] == event['event_id'] and out.meta['idempotency_key'] == msg.idempotency_key
    forged, _ = event_msg(event_id='00000000-0000-5000-8000-000000000000')
    assert source.process(delivered(forged)) is None
    fire, _ = event_msg(object_type='FIRE', track_id=None)
    assert source.process(delivered(fire)) is None  # filtered: ZONE_INTRUSION / PERSON only
    counted = (ctx.counters['events_total'], ctx.counters['invalid_total'], ctx.counters['filtered_total'])
    assert counted == (1, 1, 1)


def test_the_demo_lanes_graph_validates():
    text = (CONFIG / 'site_lanes.yaml').read_text()
    os.environ.setdefault('SITE_OUT', '/tmp/site')
    result = validate(load_graph_text(text, 'site_lanes.yaml').graph)
    assert result.errors == []
    assert {n.container for n in result.graph.nodes} == {'lanes', 'fusion'}
