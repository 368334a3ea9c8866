"""Credentials never become readable ROS parameters nor text in compiled launch files (issue 11, item 6).

A graph names a secret by reference (`${secret:ENV}` / `${secret_file:PATH}`); the load request --
whose parameters are exactly the node's ROS parameters -- and the compiled launch file hold the
reference; the container resolves it when it sets the node up. A literal password is refused.
"""

from __future__ import annotations

import yaml

from schnitzel_stream_ros.graph.load import load_graph_text
from schnitzel_stream_ros.graph.secrets import literal_credential, resolve_secrets
from schnitzel_stream_ros.graph.validate import validate
from schnitzel_stream_ros.graph.wiring import load_requests
from schnitzel_stream_ros.launchgen.render import render_launch_file
from schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink import DurableForwarderSink
from schnitzel_stream_ros.plugin import resolve_params
from schnitzel_stream_ros.runtime.plugin_host import PluginHost

RTSP = 'schnitzel_stream_ros.nodes.vision.rtsp:OpenCvRtspSource'
SINK = 'schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink:DurableForwarderSink'


def _graph(cam_url: str, backend_url: str) -> dict:
    return {
        'version': 2,
        'nodes': [
            {'id': 'cam', 'kind': 'source', 'plugin': RTSP, 'config': {'url': cam_url}},
            {'id': 'gate', 'plugin': 'Identity'},
            {'id': 'src', 'kind': 'source', 'plugin': 'StaticSource', 'config': {'kind': 'event'}},
            {
                'id': 'events',
                'kind': 'sink',
                'plugin': SINK,
                'config': {'path': '/tmp/q.db', 'url': backend_url},
            },
        ],
        'edges': [{'from': 'cam', 'to': 'gate'}, {'from': 'src', 'to': 'events'}],
    }


def _validate(graph: dict):
    loaded = load_graph_text(yaml.safe_dump(graph, sort_keys=False), 'site.yaml')
    assert not loaded.errors, loaded.errors
    return validate(loaded.graph)


def test_literal_passwords_in_graph_urls_are_refused_naming_the_parameter():
    result = _validate(_graph('rtsp://admin:hunter2@10.0.0.5/stream', 'https://u:pw-42@backend/events'))
    messages = [str(e) for e in result.errors]
    assert any("node 'cam'" in m and "parameter 'url'" in m and '${secret:' in m for m in messages), messages
    assert any("node 'events'" in m and "parameter 'url'" in m for m in messages), messages
    assert not any('hunter2' in m or 'pw-42' in m for m in messages)  # masked in the error too


def test_secret_references_stay_references_in_ros_parameters_and_launch_files(tmp_path, monkeypatch):
    monkeypatch.setenv('CAM1_PASSWORD', 'hunter2')
    secret_file = tmp_path / 'ingest.pass'
    secret_file.write_text('pw-42\n')
    graph = _graph(
        'rtsp://admin:${secret:CAM1_PASSWORD}@10.0.0.5/stream',
        f'https://ingest:${{secret_file:{secret_file}}}@backend.example/events',
    )
    result = _validate(graph)
    assert result.ok, [str(e) for e in result.errors]
    params = {r.node_name: r.parameters for r in load_requests(result.graph)}
    assert params['cam']['url'] == 'rtsp://admin:${secret:CAM1_PASSWORD}@10.0.0.5/stream'
    assert params['events']['url'] == f'https://ingest:${{secret_file:{secret_file}}}@backend.example/events'
    launch = render_launch_file(result.graph)
    assert 'hunter2' not in launch and 'pw-42' not in launch
    assert '${secret:CAM1_PASSWORD}' in launch
    assert 'hunter2' not in repr(params) and 'pw-42' not in repr(params)


def test_the_container_resolves_references_when_it_sets_the_node_up(tmp_path, monkeypatch):
    monkeypatch.setenv('SITE_BACKEND_PW', 's3cret')
    config = resolve_params(
        DurableForwarderSink,
        {'path': str(tmp_path / 'q.db'), 'url': 'http://op:${secret:SITE_BACKEND_PW}@127.0.0.1:9/events'},
    )
    host = PluginHost('events', DurableForwarderSink, config, is_source=False, is_sink=True)
    host.setup()
    try:
        client = host.plugin.forwarder._client_factory()
        import base64

        assert client._base_headers['Authorization'] == 'Basic ' + base64.b64encode(b'op:s3cret').decode()
    finally:
        host.close()


def test_helpers():
    assert literal_credential('rtsp://a:b@h/x') == 'rtsp://a:***@'
    assert literal_credential('rtsp://a:${secret:P}@h/x') is None
    assert literal_credential({'urls': ['http://h/x', 'http://u:p@h']}) == 'http://u:***@'
    assert literal_credential('rtsp://h:554/x') is None and literal_credential(5) is None
    assert resolve_secrets({'a': ['x${secret:A}y']}, {'A': '1'}) == {'a': ['x1y']}
