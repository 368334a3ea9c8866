"""EventRouterNode: events to named ports by event_type / severity / object_type."""

from __future__ import annotations

import pytest

from schnitzel_stream_ros.graph.ports import declared_ports
from schnitzel_stream_ros.nodes.policy.event_router import EventRouterNode
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params

ROUTES = [
    {'port': 'urgent', 'min_severity': 'HIGH'},
    {'port': 'intrusions', 'event_types': ['ZONE_INTRUSION'], 'severities': ['MEDIUM', 'HIGH']},
    {'port': 'ppe', 'object_types': ['NO_HELMET', 'NO_VEST']},
]


def make_node(**params):
    ctx = SimpleContext(node_id='router', params=resolve_params(EventRouterNode, params))
    node = EventRouterNode(ctx)
    node.setup()
    return node, ctx


def event(event_type, severity, object_type='PERSON'):
    return StreamPacket.new(
        'event', 'cam01', {'event_type': event_type, 'severity': severity, 'object_type': object_type}
    )


def routed(ctx) -> dict[str, list[str]]:
    return {
        port: [f'{p.payload["event_type"]}/{p.payload["severity"]}' for p in packets]
        for port, packets in ctx.outputs.items()
    }


def test_first_matching_route_wins_and_the_rest_goes_to_the_default_port():
    node, ctx = make_node(routes=ROUTES)
    for e in (
        event('FIRE_DETECTED', 'CRITICAL', 'FIRE'),
        event('ZONE_INTRUSION', 'HIGH'),
        event('ZONE_INTRUSION', 'MEDIUM'),
        event('PPE_VIOLATION', 'LOW', 'NO_VEST'),
        event('PPE_COMPLIANCE', 'INFO', 'HELMET'),
        event('ZONE_INTRUSION', 'LOW'),
    ):
        assert node.process(e) is None
    assert routed(ctx) == {
        'urgent': ['FIRE_DETECTED/CRITICAL', 'ZONE_INTRUSION/HIGH'],
        'intrusions': ['ZONE_INTRUSION/MEDIUM'],
        'ppe': ['PPE_VIOLATION/LOW'],
        'out': ['PPE_COMPLIANCE/INFO', 'ZONE_INTRUSION/LOW'],
    }
    assert ctx.counters == {
        'routed_urgent_total': 2,
        'routed_intrusions_total': 1,
        'routed_ppe_total': 1,
        'routed_out_total': 2,
    }


def test_match_all_sends_to_every_matching_route_once_and_packets_are_unchanged():
    node, ctx = make_node(
        routes=[*ROUTES, {'port': 'urgent', 'event_types': ['ZONE_INTRUSION']}], match=r'all'
    )
    packet = event('ZONE_INTRUSION', 'HIGH')
    node.process(packet)
    assert {port: [p is packet for p in packets] for port, packets in ctx.outputs.items()} == {
        'urgent': [True],
        'intrusions': [True],
    }


def test_unmatched_events_are_dropped_without_a_default_port():
    node, ctx = make_node(routes=ROUTES, default_port='')
    node.process(event('PPE_COMPLIANCE', 'INFO', 'HELMET'))
    assert ctx.outputs == {} and ctx.counters == {'dropped_total': 1}


def test_output_ports_follow_the_routes():
    params = resolve_params(EventRouterNode, {'routes': ROUTES, 'default_port': 'rest'})
    inputs, outputs = declared_ports(EventRouterNode, params)
    assert [p.name for p in inputs] == ['in']
    assert [p.name for p in outputs] == ['urgent', 'intrusions', 'ppe', 'rest']
    assert all(p.kinds == frozenset({'event'}) for p in outputs)


@pytest.mark.parametrize(
    ('routes', 'message'),
    [
        ([{'port': 'bad-name'}], r'routes\[0\].port'),
        ([{'port': 'a', 'min_severity': 'URGENT'}], r'routes\[0\].min_severity'),
        ([{'port': 'a', 'severities': ['HIGH', 'SEVERE']}], r"routes\[0\].severities: 'SEVERE'"),
        ([{'port': 'a', 'event_types': []}], r'routes\[0\].event_types'),
        ([{'port': 'a', 'when': 'always'}], r'routes\[0\].when: unknown key'),
        (['a'], r'routes\[0\]: expected a mapping'),
    ],
)
def test_bad_routes_are_refused_naming_the_route(routes, message):
    with pytest.raises(ValueError, match=rf'router: parameter {message}'):
        make_node(routes=routes)
