"""The component container as another process sees it: composition services, parameters, topics.

The container runs as the installed `component_container` executable (as launch_ros starts it, with
`--ros-args -r __node:=... -r __ns:=...`); this test process is the client, using the standard
composition_interfaces service types, rcl_interfaces parameter services and std_srvs Trigger.
An external subscriber is a separate plain-rclpy process (test/runtime_plugins/echo_packets.py).
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
from composition_interfaces.srv import ListNodes, LoadNode, UnloadNode
from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
from schnitzel_stream_ros.codec.packet_codec import encode_packet
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.runtime.container_handles import container_command
from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.ros_peer import RosPeer

pytestmark = pytest.mark.integration

PLUGINS_DIR = Path(__file__).resolve().parents[1] / 'runtime_plugins'
CONTAINER = '/t/box'


class Client(RosPeer):
    """A plain rclpy client in this test process (own context, the test's DDS domain)."""

    def __init__(self, domain_id: int) -> None:
        super().__init__(domain_id, 'test_client')

    def load(self, plugin: str, name: str, params: dict, remaps: tuple[str, ...] = ()):
        request = LoadNode.Request(
            package_name='schnitzel_stream_ros',
            plugin_name=plugin,
            node_name=name,
            node_namespace='/t',
            remap_rules=list(remaps),
        )
        request.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in params.items()]
        return self.call(LoadNode, f'{CONTAINER}/_container/load_node', request)

    def listed(self) -> list[tuple[str, int]]:
        response = self.call(ListNodes, f'{CONTAINER}/_container/list_nodes', ListNodes.Request())
        return list(zip(response.full_node_names, response.unique_ids, strict=True))

    def report(self) -> dict:
        return json.loads(self.call(Trigger, f'{CONTAINER}/_schnitzel/report', Trigger.Request()).message)



def _wait_for(predicate, timeout: float = 15.0, what: str = 'condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f'timed out waiting for {what}')


@pytest.fixture
def plugin_env(plugin_env):
    """The shared plugin_env (conftest), plus a secret only the container process has."""
    return {**plugin_env, 'SITE_BACKEND_PW': 's3cret-of-the-site'}


@pytest.fixture
def container(plugin_env, tmp_path):
    cmd = container_command('box', '/t', executor='events', max_events=None)
    cmd.remove('--paused')  # as launch starts it: loaded nodes run at once
    log = (tmp_path / 'container.log').open('w')
    proc = processes.start(cmd, plugin_env, stdout=log, stderr=subprocess.STDOUT)
    yield proc
    processes.stop(proc)
    log.close()


@pytest.fixture
def client(ros_domain):
    c = Client(ros_domain)
    yield c
    c.close()


def test_load_list_unload_through_composition_services(container, client, tmp_path):
    marker = tmp_path / 'closed.txt'
    assert client.listed() == []
    src = client.load(
        'schnitzel_stream_ros.nodes.core.synthetic_source:SyntheticSource',
        'src',
        {'rate_hz': 100.0, 'count': 0},
    )
    assert (src.success, src.error_message, src.full_node_name) == (True, '', '/t/src')
    sink = client.load(
        'runtime_test_plugins:MarkClosedSink',
        'sink',
        {'closed_marker': str(marker), 'inputs.in': ['/t/src/out'], 'inbox.in.max': 8},
    )
    assert sink.success, sink.error_message
    assert sink.unique_id != src.unique_id

    # failing loads answer success=false with one line naming node and cause; nothing is left behind
    missing = client.load('schnitzel_stream_ros.nodes.core.nope:Missing', 'ghost', {})
    assert not missing.success
    assert missing.error_message.startswith("node 'ghost': cannot import plugin module")
    outside = client.load('os.path:join', 'intruder', {})
    assert not outside.success and 'outside the plugin allowlist' in outside.error_message
    bad_param = client.load('schnitzel_stream_ros.nodes.core.burst:BurstNode', 'burst', {'count': -2})
    assert bad_param.error_message == "node 'burst': parameter 'count': -2 is below the minimum 0"
    duplicate = client.load('schnitzel_stream_ros.nodes.core.identity:Identity', 'src', {})
    assert not duplicate.success and 'already loaded' in duplicate.error_message

    assert client.listed() == [('/t/src', src.unique_id), ('/t/sink', sink.unique_id)]
    assert container.poll() is None  # the container survived every refused load

    _wait_for(lambda: client.report()['nodes']['sink']['consumed'] >= 20, what='packets at the sink')

    unloaded = client.call(
        UnloadNode, f'{CONTAINER}/_container/unload_node', UnloadNode.Request(unique_id=sink.unique_id)
    )
    assert (unloaded.success, unloaded.error_message) == (True, '')
    consumed = int(marker.read_text().split('=')[1])  # close() ran at unload
    assert consumed >= 20
    assert client.listed() == [('/t/src', src.unique_id)]
    unknown = client.call(
        UnloadNode, f'{CONTAINER}/_container/unload_node', UnloadNode.Request(unique_id=999)
    )
    assert not unknown.success and 'no node with unique_id 999' in unknown.error_message

    container.send_signal(signal.SIGTERM)
    assert container.wait(timeout=15) == 0


def test_parameters_are_described_and_dynamic_ones_reach_the_plugin(container, client, tmp_path):
    loaded = client.load(
        'runtime_test_plugins:MarkClosedSink',
        'sink',
        {'closed_marker': str(tmp_path / 'closed.txt'), 'inputs.in': ['/t/nowhere']},
    )
    assert loaded.success, loaded.error_message
    described = client.call(
        DescribeParameters,
        '/t/sink/describe_parameters',
        DescribeParameters.Request(names=['delay_sec', 'closed_marker', 'inputs.in']),
    )
    delay, marker, inputs = described.descriptors
    assert not delay.read_only and delay.floating_point_range[0].from_value == 0.0
    assert marker.read_only and inputs.read_only
    assert 'wiring' in inputs.description

    def set_param(name, value):
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return client.call(SetParameters, '/t/sink/set_parameters', request).results[0]

    assert set_param('delay_sec', 0.01).successful
    refused_range = set_param('delay_sec', -1.0)
    assert not refused_range.successful
    assert not set_param('closed_marker', '/tmp/elsewhere').successful
    assert not set_param('inputs.in', ['/t/other']).successful
    # the accepted change reached the plugin (on its own thread): it counts on_params calls
    _wait_for(
        lambda: client.report()['nodes']['sink']['counters'].get('param_updates_total') == 1, what='on_params'
    )


def test_outside_listener_gets_packets_and_nobody_listening_means_no_serialisation(
    container, client, plugin_env
):
    for plugin, name, params in (
        (
            'schnitzel_stream_ros.nodes.core.synthetic_source:SyntheticSource',
            'src',
            {'rate_hz': 200.0, 'count': 0},
        ),
        ('schnitzel_stream_ros.nodes.core.identity:Identity', 'ident', {'inputs.in': ['/t/src/out']}),
        (
            'runtime_test_plugins:MarkClosedSink',
            'sink',
            {'closed_marker': '/dev/null', 'inputs.in': ['/t/ident/out']},
        ),
    ):
        result = client.load(plugin, name, params)
        assert result.success, result.error_message

    report = _wait_for(
        lambda: (r := client.report())['nodes']['sink']['consumed'] >= 100 and r, what='in-container traffic'
    )
    assert report['transport']['dds_published_total'] == 0  # nobody outside: not one serialisation
    assert report['transport']['local_deliveries_total'] >= 200

    echo = subprocess.run(
        [sys.executable, str(PLUGINS_DIR / 'echo_packets.py'), '/t/ident/out', '20', '20'],
        env=plugin_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert echo.returncode == 0, echo.stderr
    packets = [json.loads(line) for line in echo.stdout.splitlines()]
    assert len(packets) >= 20
    assert all(p['source_id'] == 'src' and isinstance(p['payload']['seq'], int) for p in packets)
    seqs = [p['payload']['seq'] for p in packets]
    assert seqs == sorted(seqs)

    report = client.report()
    assert report['topics']['/t/ident/out']['published'] >= 20
    assert report['topics']['/t/src/out']['published'] == 0  # the src->ident edge never left the process
    published = report['transport']['dds_published_total']
    assert published == report['topics']['/t/ident/out']['published']

    # the listener is gone: publishing stops again (once DDS unmatches it)
    def settled():
        first = client.report()['transport']['dds_published_total']
        time.sleep(0.3)
        return client.report()['transport']['dds_published_total'] == first

    _wait_for(settled, what='publishing to stop after the listener left')


@pytest.fixture
def paused_container(ros_env, tmp_path):
    """A container whose loaded nodes wait for ~/_schnitzel/start: loading a source opens nothing."""
    log = (tmp_path / 'paused_container.log').open('w')
    proc = processes.start(container_command('box', '/t', executor='events', max_events=None), ros_env,
                           stdout=log, stderr=subprocess.STDOUT)
    yield proc
    processes.stop(proc)
    log.close()


def test_every_type_ros2_component_types_lists_loads_in_our_container(paused_container, client):
    """The names in the ament index (resource rclcpp_components) are the ones LoadNode accepts.

    Each type is loaded without parameters: it loads, or — when the plugin cannot run on its
    defaults (a required parameter, a model to name) — is refused for a parameter, never because
    the type name is not understood. Plugins whose parameter schema already requires a parameter
    must be among the refused.
    """
    from ament_index_python import get_resource

    from schnitzel_stream_ros.graph.allowlist import Allowlist
    from schnitzel_stream_ros.graph.registry import PluginRegistry

    content, _prefix = get_resource('rclcpp_components', 'schnitzel_stream_ros')
    types = [line.split(';')[0] for line in content.splitlines()]
    registry = PluginRegistry(Allowlist())
    loaded, refused = [], []
    for index, type_name in enumerate(types):
        name = f'c{index}'
        answer = client.load(type_name, name, {})
        if answer.success:
            assert answer.error_message == ''
            loaded.append((f'/t/{name}', answer.unique_id))
            continue
        assert answer.error_message.startswith(f"node '{name}': "), answer.error_message
        # refused for a parameter, or by setup() for a device this machine lacks (audio capture
        # without PortAudio): never for its name
        assert "parameter '" in answer.error_message or 'setup() failed' in answer.error_message, (
            type_name, answer.error_message)
        assert 'unknown plugin' not in answer.error_message
        refused.append(type_name)
    schema_requires = {t for t in types if any(p.required for p in registry.resolve(t).cls.PARAMS)}
    assert schema_requires <= set(refused)
    assert len(loaded) >= len(types) // 2  # most plugins need no parameter at all
    # the contrast: a type name the container does not know is refused as such
    unknown = client.load('schnitzel_stream_ros.nodes.core.identity:NoSuchPlugin', 'ghost', {})
    assert not unknown.success and 'has no attribute' in unknown.error_message
    assert client.listed() == loaded
    unload = f'{CONTAINER}/_container/unload_node'
    for _name, uid in loaded:
        unloaded = client.call(UnloadNode, unload, UnloadNode.Request(unique_id=uid))
        assert unloaded.success, unloaded.error_message
        # the only remark an unload may make here: topic inputs (a controller's /diagnostics, which this
        # container publishes) queued packets in the paused, inactive node, and those were dropped
        assert re.fullmatch(r'(\S+: \d+ packets waiting in the inactive node were dropped; )?',
                            unloaded.error_message), unloaded.error_message
    assert client.listed() == []
    assert paused_container.poll() is None


def test_repeated_sigint_still_ends_in_a_clean_exit(ros_env, tmp_path):
    """Ctrl-C under `ros2 launch` reaches the container twice (from the terminal, then from launch).

    However late the second SIGINT comes — even while the interpreter is already exiting — the
    exit status stays 0 instead of launch reporting "process has died [exit code -2]".
    """
    cmd = container_command('box', '/t', executor='events', max_events=None)
    log_path = tmp_path / 'container.log'
    with log_path.open('w') as log:
        proc = processes.start(cmd, ros_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for(lambda: 'ready' in log_path.read_text(), what='the container to be ready')
            deadline = time.monotonic() + 15
            while proc.poll() is None and time.monotonic() < deadline:
                proc.send_signal(signal.SIGINT)  # again and again until it is gone
                time.sleep(0.002)
            assert proc.wait(timeout=5) == 0, log_path.read_text()[-2000:]
        finally:
            processes.stop(proc)


class _AuthRecorder(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:  # http.server's naming
        self.rfile.read(int(self.headers.get('Content-Length', 0)))
        type(self).seen.append(self.headers.get('Authorization', ''))
        self.send_response(201)
        self.send_header('Content-Length', '2')
        self.end_headers()
        self.wfile.write(b'{}')

    def log_message(self, *_args) -> None:
        pass


def test_a_secret_is_a_reference_in_the_ros_parameter_and_a_value_only_in_the_plugin(
    container, client, tmp_path
):
    """Issue 11, item 6: what `ros2 param get` shows is the reference, never the password."""
    _AuthRecorder.seen = []
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _AuthRecorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f'http://op:${{secret:SITE_BACKEND_PW}}@127.0.0.1:{server.server_address[1]}/events'
    try:
        loaded = client.load(
            'schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink:DurableForwarderSink',
            'deliver',
            {'path': str(tmp_path / 'q.db'), 'url': url, 'inputs.in': ['/t/events']},
        )
        assert loaded.success, loaded.error_message
        got = client.call(GetParameters, '/t/deliver/get_parameters', GetParameters.Request(names=['url']))
        assert got.values[0].string_value == url  # the reference, as anyone on the domain reads it
        publisher = client.node.create_publisher(StreamPacketMsg, '/t/events', 10)
        event = StreamPacket.new('event', 'cam0', {'i': 1}, meta={'idempotency_key': 'secret-test-1'})
        _wait_for(lambda: publisher.get_subscription_count() > 0, what='the node subscribed')
        publisher.publish(encode_packet(event))
        _wait_for(lambda: _AuthRecorder.seen, what='a POST at the backend')
    finally:
        server.shutdown()
        server.server_close()
    expected = 'Basic ' + base64.b64encode(b'op:s3cret-of-the-site').decode()
    assert _AuthRecorder.seen[0] == expected  # the plugin had the value
