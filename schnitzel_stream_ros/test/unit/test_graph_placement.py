"""Placement across hosts (graph/placement.py): host of each container group, what may cross hosts,
one host's part (compile/run --host), and the cross-host section of a host's report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.load import load_graph_text
from schnitzel_stream_ros.graph.placement import cross_host_section, host_part, hosts_of
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import compile_graph, validate
from schnitzel_stream_ros.graph.wiring import node_load_request
from schnitzel_stream_ros.runtime.start_gate import cross_topics

REGISTRY = PluginRegistry(Allowlist(('schnitzel_stream_ros',)))
EXAMPLE = Path(__file__).resolve().parents[2] / 'config' / 'examples' / 'site_two_hosts.yaml'
M = 'schnitzel_stream_ros.nodes'
SENDER = f'{M}.delivery.durable_edge_sender:DurableEdgeSender'
RECEIVER = f'{M}.delivery.durable_edge_receiver:DurableEdgeReceiver'
FRAMES = f'{M}.vision.frame_link'
CAMERA = f'{M}.vision.video_file:OpenCvVideoFileSource'
EVENTS = f'{M}.policy.event_builder:ProtocolV02EventBuilderNode'
DETECTOR = f'{M}.compute.mock_detector:MockDetectorNode'
JSONL = f'{M}.core.jsonl_sink:JsonlSink'


def errors_of(text: str) -> list[str]:
    loaded = load_graph_text(text, 'g.yaml', env={})
    result = validate(loaded.graph, REGISTRY)
    return [str(e) for e in [*loaded.errors, *result.errors]]


HEAD = f"""version: 2
nodes:
  - {{id: cam, plugin: '{CAMERA}', container: a, host: h1, config: {{path: v.avi}}}}
  - {{id: det, plugin: '{DETECTOR}', container: a}}
  - {{id: ev, plugin: '{EVENTS}', container: a, config: {{site_id: S}}}}
"""


def test_example_graph_places_two_hosts_and_validates():
    graph = compile_graph(EXAMPLE, REGISTRY)
    assert hosts_of(graph.spec) == ('cameras', 'events')


def test_a_container_group_runs_on_one_host():
    text = HEAD.replace('container: a}\n  - {id: ev', 'container: a, host: h2}\n  - {id: ev', 1)
    text += f"""  - {{id: out, plugin: '{JSONL}', container: a, config: {{path: o.jsonl}}}}
edges:
  - {{from: cam, to: det}}
  - {{from: det, to: ev}}
  - {{from: ev, to: out}}
"""
    [error] = errors_of(text)
    assert error.startswith('g.yaml:4: ') and "node 'det'" in error
    assert "host 'h2', but node 'cam' places container 'a' on host 'h1'" in error


def test_events_cross_hosts_only_through_a_durable_edge():
    text = (
        HEAD
        + f"""  - {{id: out, plugin: '{JSONL}', container: b, host: h2, config: {{path: o.jsonl}}}}
edges:
  - {{from: cam, to: det}}
  - {{from: det, to: ev}}
  - {{from: ev, to: out}}
"""
    )
    [error] = errors_of(text)
    assert error.startswith('g.yaml:10: edge ev->out: ')
    assert "events crosses from host 'h1' to 'h2' only through a durable edge" in error


def test_a_durable_edge_must_end_in_a_receiver():
    text = (
        HEAD
        + f"""  - {{id: up, plugin: '{SENDER}', container: a, config: {{path: q.db, ack_topic: /ack}}}}
  - {{id: out, plugin: '{JSONL}', container: b, host: h2, config: {{path: o.jsonl}}}}
edges:
  - {{from: cam, to: det}}
  - {{from: det, to: ev}}
  - {{from: ev, to: up}}
  - {{from: up, to: out}}
"""
    )
    [error] = errors_of(text)
    assert 'edge up->out' in error and 'not a DurableEdgeReceiver' in error


def test_raw_frames_never_cross_hosts_encoded_ones_do():
    cam_only = HEAD.split('  - {id: det')[0]
    raw = (
        cam_only
        + f"""  - {{id: rx, plugin: '{FRAMES}:FrameLinkReceiver', container: b, host: h2,
      config: {{feedback_topic: /fb}}}}
edges:
  - {{from: cam, to: rx}}
"""
    )
    [error] = errors_of(raw)
    assert error.startswith('g.yaml:7: edge cam->rx: ')
    assert "kind 'frame' crosses from host 'h1' to 'h2' unencoded" in error
    encoded = (
        cam_only
        + f"""  - {{id: tx, plugin: '{FRAMES}:FrameLinkSender', container: a,
      config: {{feedback_topic: /fb}}}}
  - {{id: rx, plugin: '{FRAMES}:FrameLinkReceiver', container: b, host: h2,
      config: {{feedback_topic: /fb}}}}
edges:
  - {{from: cam, to: tx}}
  - {{from: tx, to: rx}}
"""
    )
    assert errors_of(encoded) == []


def test_malformed_host_name_is_one_line_with_the_place():
    text = HEAD.replace('host: h1', "host: 'h 1'") + 'edges: []\n'
    errors = errors_of(text)
    assert any(e.startswith('g.yaml:3: ') and "host 'h 1' is not a host name" in e for e in errors)


def test_host_part_wires_remote_inputs_and_leaves_the_gate_alone():
    graph = compile_graph(EXAMPLE, REGISTRY)
    events = host_part(graph, 'events')
    assert [n.id for n in events.nodes] == ['downlink', 'preview_rx']
    assert [g.name for g in events.containers] == ['events']
    assert events.edges == () and {e.label for e in events.remote_in} == {
        'uplink.out->downlink.in',
        'preview.out->preview_rx.in',
    }
    request = node_load_request(events, events.node('downlink'))
    assert request.parameters['inputs.in'] == ['/site/uplink/out']
    assert cross_topics(events) == {}  # nothing to wait for on another host
    cameras = host_part(graph, 'cameras')
    assert {e.label for e in cameras.remote_out} == {'uplink.out->downlink.in', 'preview.out->preview_rx.in'}
    snapshots = [
        {
            'topics': {'/site/preview/out': {'published': 40}, '/site/uplink/out': {'published': 7}},
            'nodes': {
                'preview': {
                    'counters': {'sent_total': 40, 'link_lost_total': 3, 'partition_dropped_total': 200}
                },
                'uplink': {'counters': {'accepted_total': 7, 'acked_total': 7}},
            },
        }
    ]
    section = cross_host_section(cameras, snapshots)
    rows = {r['edge']: r for r in section['edges']}
    assert rows['preview.out->preview_rx.in']['lost'] == 203
    assert rows['preview.out->preview_rx.in']['packets'] == 40
    assert rows['uplink.out->downlink.in']['link'] == {'accepted_total': 7, 'acked_total': 7}


def test_compile_host_writes_only_that_hosts_containers(tmp_path):
    out = tmp_path / 'events.launch.py'
    done = subprocess.run(
        [
            sys.executable,
            '-m',
            'schnitzel_stream_ros',
            'compile',
            str(EXAMPLE),
            '--host',
            'events',
            '-o',
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "'downlink'" in text and "'cam0'" not in text
    missing = subprocess.run(
        [
            sys.executable,
            '-m',
            'schnitzel_stream_ros',
            'compile',
            str(EXAMPLE),
            '--host',
            'nope',
            '-o',
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1
    assert "no container group is placed on host 'nope' (hosts: 'cameras', 'events')" in missing.stderr


def test_both_ends_of_a_link_must_name_the_same_way_back():
    cam_only = HEAD.split('  - {id: det')[0]
    text = cam_only + f"""  - {{id: tx, plugin: '{FRAMES}:FrameLinkSender', container: a,
      config: {{feedback_topic: /fb}}}}
  - {{id: rx, plugin: '{FRAMES}:FrameLinkReceiver', container: b, host: h2,
      config: {{feedback_topic: /other}}}}
edges:
  - {{from: cam, to: tx}}
  - {{from: tx, to: rx}}
"""
    [error] = errors_of(text)
    assert error.startswith('g.yaml:10: edge tx->rx: ')
    assert "feedback_topic '/fb' of tx differs from feedback_topic '/other' of rx" in error
