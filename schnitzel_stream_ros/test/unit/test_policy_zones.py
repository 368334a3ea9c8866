"""Zones: geometry of the contract, parsing errors, and the three zone sources (inline, file, HTTP API).

The HTTP tests run a real server on 127.0.0.1 (http.server in a thread); the non-blocking test holds
a request open inside the server and shows that the packet path still answers meanwhile.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from schnitzel_stream_ros.nodes.policy.zone_policy import ZonePolicyNode
from schnitzel_stream_ros.nodes.policy.zone_sources import ApiSettings, FileZones, HttpZones, load_zone_file
from schnitzel_stream_ros.nodes.policy.zones import (
    Zone,
    ZoneError,
    evaluate,
    first_zone_containing,
    parse_zones,
    point_in_polygon,
    rule_point,
)
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params

SQUARE = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0))
# A "U" shape: the notch (4..6 x 0..6) is outside, the arms are inside.
U_SHAPE = ((0, 0), (10, 0), (10, 10), (6, 10), (6, 4), (4, 4), (4, 10), (0, 10))


def make_node(**params):
    ctx = SimpleContext(node_id='zones', params=resolve_params(ZonePolicyNode, params))
    node = ZonePolicyNode(ctx)
    node.setup()
    return node, ctx


def event(bbox, event_type='ZONE_INTRUSION', object_type='PERSON', camera_id='cam01'):
    payload = {
        'event_type': event_type,
        'object_type': object_type,
        'camera_id': camera_id,
        'bbox': dict(zip(('x1', 'y1', 'x2', 'y2'), bbox, strict=True)),
    }
    return StreamPacket.new('event', camera_id, payload)


def wait_for(condition, timeout=10.0):
    """Poll until condition() is true (bounded; the test fails on timeout, it never asserts a duration)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError('condition not reached in time')
        time.sleep(0.01)


# -- geometry -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ('point', 'inside'),
    [
        ((5, 5), True),
        ((-1, 5), False),
        ((11, 5), False),
        ((5, 11), False),
        ((0, 5), True),
        ((10, 5), True),
        ((5, 0), True),
        ((5, 10), True),  # edges count as inside
        ((0, 0), True),
        ((10, 10), True),  # vertices too
        ((10.000001, 5), False),
    ],
)
def test_square_even_odd_with_boundary_inside(point, inside):
    assert point_in_polygon(point, SQUARE) is inside


@pytest.mark.parametrize(
    ('point', 'inside'),
    [
        ((2, 8), True),
        ((8, 8), True),
        ((5, 8), False),  # the notch is outside
        ((5, 2), True),
        ((5, 4), True),
        ((4, 7), True),
        ((6, 7), True),  # notch edges are boundary
        ((5, 4.0001), False),
        ((2, 4), True),
        ((8, 4), True),  # ray through the notch's bottom vertices: counted once
        ((-1, 4), False),
        ((-1, 10), False),  # ray along a horizontal edge, from outside
    ],
)
def test_concave_polygon(point, inside):
    assert point_in_polygon(point, U_SHAPE) is inside


def test_degenerate_polygon_contains_nothing():
    assert not point_in_polygon((0, 0), ((0, 0), (1, 1)))


def test_rule_point_is_bottom_centre_and_box_centre_for_fire_and_smoke():
    bbox = {'x1': 10, 'y1': 20, 'x2': 30, 'y2': 60}
    assert rule_point(bbox, 'ZONE_INTRUSION', 'PERSON') == (20.0, 60.0)
    assert rule_point(bbox, 'FIRE_DETECTED', 'FIRE') == (20.0, 40.0)
    assert rule_point(bbox, '', 'SMOKE') == (20.0, 40.0)
    assert rule_point(bbox, 'SMOKE_DETECTED', '') == (20.0, 40.0)
    assert rule_point(bbox, 'ZONE_INTRUSION', 'PERSON', {'ZONE_INTRUSION': 'bbox_center'}) == (20.0, 40.0)
    assert rule_point(bbox, 'FIRE_DETECTED', 'FIRE', {'FIRE': 'bottom_center'}) == (20.0, 60.0)
    assert rule_point({'x1': 1, 'y1': 2, 'x2': 3}, 'X', 'Y') is None
    assert rule_point({'x1': 1, 'y1': 2, 'x2': 3, 'y2': float('nan')}) is None


def test_person_with_feet_in_zone_is_inside_although_the_box_centre_is_not():
    zones = (Zone('floor', ((0, 90), (100, 90), (100, 100), (0, 100))),)
    person = {'x1': 40, 'y1': 10, 'x2': 60, 'y2': 95}
    assert evaluate(person, zones, object_type='PERSON') == {'zone_id': 'floor', 'inside': True}
    assert evaluate(person, zones, object_type='FIRE') == {'zone_id': '', 'inside': False}


def test_first_enabled_zone_wins_and_camera_filter_applies():
    zones = (
        Zone('disabled', SQUARE, enabled=False),
        Zone('other_camera', SQUARE, camera_id='cam02'),
        Zone('first', SQUARE),
        Zone('second', SQUARE),
    )
    assert first_zone_containing((5, 5), zones, 'cam01').zone_id == 'first'
    assert first_zone_containing((5, 5), zones, 'cam02').zone_id == 'other_camera'
    assert first_zone_containing((50, 50), zones, 'cam01') is None


# -- parsing ------------------------------------------------------------------------------------
def test_parse_accepts_list_mapping_and_point_shapes():
    zones = parse_zones(
        {
            'zones': [
                {'zone_id': 'a', 'polygon': [[0, 0], [1, 0], [1, 1]]},
                {
                    'zone_id': 7,
                    'polygon': [{'x': 0, 'y': 0}, {'x': 2, 'y': 0}, {'x': 2, 'y': 2}],
                    'enabled': False,
                },
            ]
        },
        'test',
    )
    assert zones[0] == Zone('a', ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0)))
    assert zones[1].zone_id == '7' and not zones[1].enabled


@pytest.mark.parametrize(
    ('data', 'message'),
    [
        ([{'zone_id': 'a', 'polygon': [[0, 0], [1, 1]]}], 'zones[0].polygon: needs at least 3 points'),
        ([{'polygon': [[0, 0], [1, 0], [1, 1]]}], 'zones[0].zone_id'),
        ([{'zone_id': 'a', 'polygon': [[0, 0], [1, 'x'], [1, 1]]}], 'zones[0].polygon[1]'),
        ([{'zone_id': 'a', 'polygon': [[0, 0], [1, 0], [1, 1]], 'enabled': 'yes'}], 'zones[0].enabled'),
        ([{'zone_id': 'a', 'polygon': [[0, 0], [1, 0], [1, 1]]}] * 2, 'zones[1].zone_id: duplicate'),
        ({'areas': []}, 'expected a list of zones or a mapping with a "zones" list'),
        ('zones', 'expected a list of zones'),
    ],
)
def test_parse_errors_name_the_place(data, message):
    with pytest.raises(ZoneError) as info:
        parse_zones(data, 'where')
    assert message in str(info.value)
    assert str(info.value).startswith('where: ')


# -- node: inline ---------------------------------------------------------------------------------
def test_node_sets_zone_on_events_and_detections():
    node, ctx = make_node(
        zones=[
            {'zone_id': 'dock', 'polygon': [[0, 0], [100, 0], [100, 100], [0, 100]]},
        ]
    )
    inside = node.process(event((10, 10, 30, 100)))  # feet exactly on the bottom edge
    outside = node.process(event((10, 10, 30, 101)))
    assert inside.payload['zone'] == {'zone_id': 'dock', 'inside': True}
    assert outside.payload['zone'] == {'zone_id': '', 'inside': False}
    source = event((10, 10, 30, 100))
    out = node.process(source)
    assert out.packet_id == source.packet_id and 'zone' not in source.payload  # derived, not mutated
    detections = StreamPacket.new(
        'detection',
        'cam01',
        [
            {'bbox': {'x1': 0, 'y1': 0, 'x2': 10, 'y2': 50}, 'object_type': 'PERSON'},
            {'bbox': {'x1': 0, 'y1': 0, 'x2': 10, 'y2': 500}, 'object_type': 'PERSON'},
        ],
    )
    zones = [d['zone'] for d in node.process(detections).payload]
    assert zones == [{'zone_id': 'dock', 'inside': True}, {'zone_id': '', 'inside': False}]
    assert ctx.counters['processed_total'] == 5 and ctx.counters['inside_total'] == 3


def test_node_refuses_bad_config_and_bad_payload():
    with pytest.raises(ZoneError, match=r'zones: parameter zones: zones\[0\].polygon'):
        make_node(zones=[{'zone_id': 'a', 'polygon': [[0, 0]]}])
    with pytest.raises(ZoneError, match=r'rule_map.PERSON'):
        make_node(zones=[], rule_map={'PERSON': 'top_left'})
    with pytest.raises(ZoneError, match=r'file_path: required'):
        make_node(source='file')
    node, _ = make_node(zones=[])
    with pytest.raises(ValueError, match=r'zones: packet .* payload must be a mapping'):
        node.process(StreamPacket.new('event', 'cam01', 'text'))


# -- file ---------------------------------------------------------------------------------------
def test_file_zones_yaml_json_and_reload_keeps_last_good(tmp_path: Path):
    path = tmp_path / 'zones.yaml'
    path.write_text('zones:\n  - zone_id: a\n    polygon: [[0, 0], [10, 0], [10, 10]]\n')
    now = [0.0]
    provider = FileZones(path, ttl_sec=5.0, clock=lambda: now[0])
    assert [z.zone_id for z in provider.current()] == ['a']

    path.write_text(json.dumps([{'zone_id': 'b', 'polygon': [[0, 0], [5, 0], [5, 5]]}]))
    os.utime(path, ns=(1, 1))  # a different mtime, whatever the file system's resolution
    assert [z.zone_id for z in provider.current()] == ['a']  # TTL not over yet: not re-checked
    now[0] = 5.0
    assert [z.zone_id for z in provider.current()] == ['b']
    assert provider.stats.generation == 2

    path.write_text('zones:\n  - zone_id: c\n    polygon: [[0, 0]] ]\n')  # broken YAML, line 3
    now[0] = 10.0
    assert [z.zone_id for z in provider.current()] == ['b']
    assert provider.stats.failed_total == 1 and 'zones.yaml:3' in provider.stats.last_error


def test_file_errors_name_file_and_line(tmp_path: Path):
    path = tmp_path / 'zones.yaml'
    path.write_text('zones:\n  - zone_id: a\n    polygon: [[0, 0], [1, 1]]\n')
    with pytest.raises(ZoneError, match=r'zones.yaml: zones\[0\].polygon: needs at least 3 points'):
        load_zone_file(path)
    with pytest.raises(ZoneError, match=r'cannot read zone file'):
        load_zone_file(tmp_path / 'missing.yaml')


def test_node_with_zone_file(tmp_path: Path):
    path = tmp_path / 'zones.json'
    path.write_text(
        json.dumps({'zones': [{'zone_id': 'gate', 'polygon': [[0, 0], [50, 0], [50, 50], [0, 50]]}]})
    )
    node, _ = make_node(source='file', file_path=str(path))
    assert node.process(event((0, 0, 10, 20))).payload['zone'] == {'zone_id': 'gate', 'inside': True}


# -- HTTP API -----------------------------------------------------------------------------------
class ZoneServer:
    """A real HTTP zone API on 127.0.0.1 whose answers the test controls."""

    def __init__(self) -> None:
        self.status = 200
        self.body: object = []
        self.requests: list[str] = []
        self.authorization: list[str | None] = []
        self.hold = threading.Event()
        self.hold.set()  # set = answer at once; clear = keep requests waiting
        self.request_started = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                outer.authorization.append(self.headers.get('Authorization'))
                outer.request_started.set()
                outer.hold.wait(10)
                data = json.dumps(outer.body).encode() if not isinstance(outer.body, bytes) else outer.body
                self.send_response(outer.status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    def stop(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def zone_server():
    server = ZoneServer()
    yield server
    server.stop()


def square_zone(zone_id: str, size: int = 100) -> dict:
    return {'zone_id': zone_id, 'polygon': [[0, 0], [size, 0], [size, size], [0, size]]}


def test_api_zones_fetched_with_the_upstream_path_template(zone_server):
    zone_server.body = {'zones': [square_zone('api_zone')]}
    node, ctx = make_node(
        source='api',
        site_id='S001',
        camera_id='cam01',
        cache_ttl_sec=60.0,
        api_cfg={
            'base_url': zone_server.base_url,
            'get_path_template': '/sites/{site_id}/cameras/{camera_id}/zones',
            'timeout_sec': 2,
            'initial_wait_sec': 5,
        },
    )
    try:
        assert zone_server.requests == ['/sites/S001/cameras/cam01/zones']
        assert node.process(event((0, 0, 10, 50))).payload['zone'] == {'zone_id': 'api_zone', 'inside': True}
        assert ctx.counters['zones_loaded'] == 1
    finally:
        node.close()


def test_api_refresh_after_ttl_and_failures_keep_the_stale_zones(zone_server):
    zone_server.body = [square_zone('v1')]
    settings = ApiSettings(
        url=zone_server.base_url + '/zones',
        timeout_sec=2.0,
        ttl_sec=0.05,
        retry_sec=0.02,
        error_backoff_sec=0.05,
        max_failures=2,
        initial_wait_sec=5.0,
    )
    provider = HttpZones(settings)
    try:
        assert [z.zone_id for z in provider.current()] == ['v1']
        zone_server.body = [square_zone('v2')]
        wait_for(lambda: [z.zone_id for z in provider.current()] == ['v2'])

        zone_server.status = 500  # backend error: keep v2
        failed = provider.stats.failed_total
        wait_for(lambda: provider.stats.failed_total >= failed + 3)
        assert [z.zone_id for z in provider.current()] == ['v2']
        assert 'HTTP 500' in provider.stats.last_error

        zone_server.status = 200
        zone_server.body = b'{not json'  # broken body: keep v2
        failed = provider.stats.failed_total
        wait_for(lambda: provider.stats.failed_total > failed)
        assert 'not JSON' in provider.stats.last_error
        zone_server.body = [{'zone_id': 'bad', 'polygon': [[0, 0]]}]  # invalid zone: keep v2
        failed = provider.stats.failed_total
        wait_for(lambda: provider.stats.failed_total > failed)
        assert [z.zone_id for z in provider.current()] == ['v2']

        zone_server.stop()  # server gone: connection errors, still v2
        failed = provider.stats.failed_total
        wait_for(lambda: provider.stats.failed_total > failed)
        assert [z.zone_id for z in provider.current()] == ['v2']
    finally:
        provider.close()


def test_api_refresh_never_blocks_the_packet_path(zone_server):
    zone_server.body = [square_zone('old')]
    node, _ = make_node(
        source='api',
        cache_ttl_sec=0.05,
        api_cfg={'url': zone_server.base_url + '/zones', 'timeout_sec': 10, 'initial_wait_sec': 5},
    )
    try:
        assert node.process(event((0, 0, 10, 50))).payload['zone']['zone_id'] == 'old'
        zone_server.hold.clear()  # the next request hangs inside the server ...
        zone_server.request_started.clear()
        assert zone_server.request_started.wait(10)
        zone_server.body = [square_zone('new')]
        # ... while the refresh hangs, packets are still answered with the zones we have.
        for _ in range(50):
            assert node.process(event((0, 0, 10, 50))).payload['zone']['zone_id'] == 'old'
        zone_server.hold.set()
        wait_for(lambda: node.process(event((0, 0, 10, 50))).payload['zone']['zone_id'] == 'new')
    finally:
        node.close()


def test_api_down_at_start_gives_no_zones_then_recovers(zone_server):
    zone_server.status = 503
    zone_server.body = [square_zone('late')]
    node, ctx = make_node(
        source='api',
        cache_ttl_sec=0.05,
        api_cfg={'url': zone_server.base_url + '/zones', 'retry_sec': 0.02, 'initial_wait_sec': 5},
    )
    try:
        assert node.process(event((0, 0, 10, 50))).payload['zone'] == {'zone_id': '', 'inside': False}
        assert ctx.counters['zone_refresh_failed_total'] >= 1
        zone_server.status = 200
        wait_for(lambda: node.process(event((0, 0, 10, 50))).payload['zone']['inside'])
    finally:
        node.close()


def test_api_config_errors():
    with pytest.raises(ZoneError, match=r'api_cfg: required'):
        make_node(source='api')
    with pytest.raises(ZoneError, match=r'api_cfg.get_path_template: uses \{camera_id\}'):
        make_node(
            source='api', api_cfg={'base_url': 'http://127.0.0.1:1', 'get_path_template': '/z/{camera_id}'}
        )
    with pytest.raises(ZoneError, match=r'api_cfg.url: expected an http\(s\) URL'):
        make_node(source='api', api_cfg={'url': 'ftp://127.0.0.1/zones'})
    with pytest.raises(ZoneError, match=r'api_cfg.tiemout_sec: unknown key'):
        make_node(source='api', api_cfg={'url': 'http://127.0.0.1:1/zones', 'tiemout_sec': 1})
    with pytest.raises(
        ZoneError, match=r'bearer_token_env: environment variable NO_SUCH_TOKEN_VAR is not set'
    ):
        make_node(
            source='api', api_cfg={'url': 'http://127.0.0.1:1/zones', 'bearer_token_env': 'NO_SUCH_TOKEN_VAR'}
        )


def test_api_bearer_token_comes_from_the_environment(zone_server, monkeypatch):
    monkeypatch.setenv('ZONE_API_TOKEN_FOR_TEST', 's3cret')
    zone_server.body = [square_zone('a')]
    node, _ = make_node(
        source='api',
        api_cfg={
            'url': zone_server.base_url + '/zones',
            'bearer_token_env': 'ZONE_API_TOKEN_FOR_TEST',
            'initial_wait_sec': 5,
        },
    )
    node.close()
    assert zone_server.authorization[0] == 'Bearer s3cret'
