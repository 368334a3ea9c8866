"""The event lane as a graph: detections -> zones -> events -> dedup -> fusion <- sensor -> router ->
JSONL files, validated and run by the deterministic engine (upstream semantics, real files).

Round-robin order makes the timing exact: the sensor (10 Hz ramp, 300 cm falling 100 cm/s) is pulled
before each detection packet, and every detection is stamped 50 ms before the newest reading, so
from the second detection on fusion can interpolate between the two readings around it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from schnitzel_stream_ros.graph.load import load_graph_text
from schnitzel_stream_ros.graph.validate import validate
from schnitzel_stream_ros.runtime.deterministic import DeterministicEngine

P = 'schnitzel_stream_ros.nodes'
ZONE = {'zone_id': 'dock', 'polygon': [[0, 300], [640, 300], [640, 480], [0, 480]]}


def box(x1, y1, x2, y2):
    return {'x1': x1, 'y1': y1, 'x2': x2, 'y2': y2}


def person(track_id, bbox, confidence=0.9):
    return {
        'bbox': bbox,
        'confidence': confidence,
        'object_type': 'PERSON',
        'class_id': 0,
        'track_id': track_id,
    }


DETECTIONS = [
    # t = -50 ms: a person with feet in the dock zone; no reading before it: nearest (300 cm at 0 ms)
    {'ts': '2026-02-14T11:59:59.950000Z', 'payload': [person(1, box(100, 200, 160, 400))]},
    # t = 50 ms: fire (box centre outside the zone) and a person without track (skipped)
    {
        'ts': '2026-02-14T12:00:00.050000Z',
        'payload': [
            {'bbox': box(400, 10, 500, 110), 'confidence': 0.7, 'object_type': 'FIRE', 'class_id': 5},
            person(None, box(0, 0, 10, 10)),
        ],
    },
    # t = 150 ms: the same person again (dedup drops it) and a second person outside the zone
    {
        'ts': '2026-02-14T12:00:00.150000Z',
        'payload': [person(1, box(102, 200, 162, 401)), person(2, box(300, 50, 360, 250))],
    },
]


def graph_text(tmp_path: Path, *, with_router: bool = True) -> str:
    graph = {
        'version': 2,
        'nodes': [
            {
                'id': 'ultra',
                'kind': 'source',
                'plugin': f'{P}.sensors.simulated:SimulatedSensorSource',
                'config': {
                    'sensor_id': 'ultra1',
                    'field': 'distance_cm',
                    'unit': 'cm',
                    'waveform': 'ramp',
                    'offset': 300.0,
                    'slope': -100.0,
                    'rate_hz': 10.0,
                    'max_samples': 10,
                    'start_ts': '2026-02-14T12:00:00Z',
                    'realtime': False,
                },
            },
            {
                'id': 'cam01',
                'kind': 'source',
                'plugin': f'{P}.core.static_source:StaticSource',
                'config': {'kind': 'detection', 'packets': DETECTIONS},
            },
            {'id': 'zones', 'plugin': f'{P}.policy.zone_policy:ZonePolicyNode', 'config': {'zones': [ZONE]}},
            {
                'id': 'events',
                'plugin': f'{P}.policy.event_builder:ProtocolV02EventBuilderNode',
                'config': {'site_id': 'S001'},
            },
            {'id': 'dedup', 'plugin': f'{P}.policy.dedup:DedupPolicyNode', 'config': {'clock': 'event_ts'}},
            {
                'id': 'fusion',
                'plugin': f'{P}.fusion.sensor_fusion:SensorFusionNode',
                'config': {'strategy': 'interpolate', 'time_window_ms': 300},
            },
            {
                'id': 'router',
                'plugin': f'{P}.policy.event_router:EventRouterNode',
                'config': {'routes': [{'port': 'urgent', 'min_severity': 'HIGH'}], 'default_port': 'rest'},
            },
            {
                'id': 'urgent_file',
                'kind': 'sink',
                'plugin': f'{P}.core.jsonl_sink:JsonlSink',
                'config': {'path': str(tmp_path / 'urgent.jsonl'), 'body': 'payload'},
            },
            {
                'id': 'rest_file',
                'kind': 'sink',
                'plugin': f'{P}.core.jsonl_sink:JsonlSink',
                'config': {'path': str(tmp_path / 'rest.jsonl'), 'body': 'payload'},
            },
        ],
        'edges': [
            {'from': 'cam01', 'to': 'zones'},
            {'from': 'zones', 'to': 'events'},
            {'from': 'events', 'to': 'dedup'},
            {'from': 'dedup', 'to': 'fusion'},
            {'from': 'ultra', 'to': 'fusion', 'to_port': 'sensor'},
            {'from': 'fusion', 'to': 'router'},
            {'from': 'router', 'from_port': 'urgent', 'to': 'urgent_file'},
            {'from': 'router', 'from_port': 'rest', 'to': 'rest_file'},
        ],
    }
    if not with_router:  # every event into one file
        graph['nodes'] = [n for n in graph['nodes'] if n['id'] not in ('router', 'urgent_file')]
        graph['edges'] = [e for e in graph['edges'] if 'router' not in (e['from'], e['to'])]
        graph['edges'].append({'from': 'fusion', 'to': 'rest_file'})
    return yaml.safe_dump(graph, sort_keys=False)


def run_graph(tmp_path: Path, **kwargs):
    loaded = load_graph_text(graph_text(tmp_path, **kwargs), 'events.yaml')
    assert not loaded.errors, loaded.errors
    result = validate(loaded.graph)
    assert result.ok, [str(e) for e in result.errors]
    outcome = DeterministicEngine(result.graph).run()
    assert outcome.errors == [] and outcome.stop_reason == 'sources_done'
    return outcome


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_event_lane_graph(tmp_path: Path):
    outcome = run_graph(tmp_path, with_router=False)
    events = read_jsonl(tmp_path / 'rest.jsonl')
    assert [(e['event_type'], e['track_id'], e['zone']) for e in events] == [
        ('ZONE_INTRUSION', 1, {'zone_id': 'dock', 'inside': True}),
        ('FIRE_DETECTED', None, {'zone_id': '', 'inside': False}),  # box centre rule: outside
        ('ZONE_INTRUSION', 2, {'zone_id': '', 'inside': False}),
    ]
    first, fire, second = events
    assert first['sensor']['distance_cm'] == 300.0 and 'interpolation' not in first['sensor']  # nearest
    assert fire['sensor']['distance_cm'] == pytest.approx(295.0)  # interpolated, 50 ms into the ramp
    assert fire['sensor']['sensor_ts'] == '2026-02-14T12:00:00.050000Z'
    assert second['sensor']['distance_cm'] == pytest.approx(285.0)

    nodes = outcome.snapshots[-1]['nodes']
    assert nodes['events']['counters']['skipped_missing_track_id_total'] == 1
    assert nodes['events']['counters']['emitted_total'] == 4
    assert nodes['dedup']['counters']['dropped_total'] == 1
    assert nodes['fusion']['counters']['matched_total'] == 3
    assert nodes['zones']['counters']['inside_total'] == 2

    again = tmp_path / 'again'
    again.mkdir()
    run_graph(again, with_router=False)
    assert [e['event_id'] for e in read_jsonl(again / 'rest.jsonl')] == [e['event_id'] for e in events]


def test_event_lane_graph_with_router(tmp_path: Path):
    run_graph(tmp_path, with_router=True)
    urgent, rest = read_jsonl(tmp_path / 'urgent.jsonl'), read_jsonl(tmp_path / 'rest.jsonl')
    assert [(e['event_type'], e['severity']) for e in urgent] == [('FIRE_DETECTED', 'CRITICAL')]
    assert [(e['track_id'], e['severity']) for e in rest] == [(1, 'MEDIUM'), (2, 'MEDIUM')]


def test_upstream_policy_demo_graph(tmp_path: Path):
    """Upstream's configs/graphs/dev_vision_policy_demo_v2.yaml (zones -> dedup), same config keys:
    the repeat is dropped, the severity change passes, the zone is set."""
    upstream_event = {
        'event_type': 'ZONE_INTRUSION',
        'camera_id': 'cam01',
        'track_id': 1,
        'severity': 'LOW',
        'bbox': box(2, 2, 4, 4),
    }
    packets = [{'kind': 'event', 'source_id': 'cam01', 'payload': upstream_event}] * 2
    packets.append({'kind': 'event', 'source_id': 'cam01', 'payload': {**upstream_event, 'severity': 'HIGH'}})
    graph = {
        'version': 2,
        'nodes': [
            {
                'id': 'src',
                'kind': 'source',
                'plugin': f'{P}.core.static_source:StaticSource',
                'config': {'packets': packets},
            },
            {
                'id': 'zones',
                'kind': 'node',
                'plugin': f'{P}.policy.zone_policy:ZonePolicyNode',
                'config': {
                    'rule_map': {'ZONE_INTRUSION': 'bottom_center'},
                    'zones': [
                        {'zone_id': 'Z1', 'enabled': True, 'polygon': [[0, 0], [10, 0], [10, 10], [0, 10]]}
                    ],
                },
            },
            {
                'id': 'dedup',
                'kind': 'node',
                'plugin': f'{P}.policy.dedup:DedupPolicyNode',
                'config': {'cooldown_sec': 10.0, 'prune_interval': 1},
            },
            {
                'id': 'out',
                'kind': 'sink',
                'plugin': f'{P}.core.jsonl_sink:JsonlSink',
                'config': {'path': str(tmp_path / 'out.jsonl'), 'body': 'payload'},
            },
        ],
        'edges': [
            {'from': 'src', 'to': 'zones'},
            {'from': 'zones', 'to': 'dedup'},
            {'from': 'dedup', 'to': 'out'},
        ],
        'config': {},
    }
    result = validate(load_graph_text(yaml.safe_dump(graph), 'demo.yaml').graph)
    assert result.ok, [str(e) for e in result.errors]
    assert DeterministicEngine(result.graph).run().errors == []
    out = read_jsonl(tmp_path / 'out.jsonl')
    assert [(e['severity'], e['zone']) for e in out] == [
        ('LOW', {'zone_id': 'Z1', 'inside': True}),
        ('HIGH', {'zone_id': 'Z1', 'inside': True}),
    ]
