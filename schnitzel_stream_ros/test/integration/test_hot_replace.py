"""Hot-replace of a running node (runtime/hot_replace.py) in a real container process.

A numbered source at 1,500 packets/s feeds a policy node that is replaced 20 times while the stream
runs — alternating new parameters and another class — into a sink that writes every packet to a
file. Every number must arrive exactly once and in order, each packet stamped by exactly one
instance, and the count the instances hand over (`snapshot_state`/`restore_state`) must run on
without a gap. Replace requests are built from edited graphs (graph/wiring.py), as the reconciler
builds them, and sent over DDS to the container's `~/_schnitzel/replace` service from this process.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.node import Node

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import compile_graph
from schnitzel_stream_ros.graph.wiring import load_requests, node_load_request
from schnitzel_stream_ros.runtime.container_handles import ContainerClient, container_command
from schnitzel_stream_ros.runtime.executors import Spinner, make_executor
from schnitzel_stream_ros.testing import processes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PLUGINS_DIR = Path(__file__).resolve().parents[1] / 'runtime_plugins'
sys.path.insert(0, str(PLUGINS_DIR))

COUNT = 15_000
RATE_HZ = 1_500.0
SWAPS = 20

GRAPH = """
    version: 2
    namespace: /hr
    nodes:
      - {id: src, plugin: SyntheticSource, container: box,
         config: {rate_hz: RATE, count: COUNT, payload_bytes: 4}}
      - {id: policy, plugin: 'runtime_test_plugins:CLASS', container: box, config: {tag: TAG}}
      - {id: sink, kind: sink, plugin: JsonlSink, container: box,
         config: {path: TMP/out.jsonl, body: payload}}
    edges:
      - {from: src, to: policy}
      - {from: policy, to: sink}
"""


def _graph(tmp_path: Path, cls: str, tag: str):
    text = (
        textwrap.dedent(GRAPH)
        .replace('RATE', str(RATE_HZ))
        .replace('COUNT', str(COUNT))
        .replace('CLASS', cls)
        .replace('TAG', tag)
        .replace('TMP', str(tmp_path))
    )
    path = tmp_path / f'graph-{tag}.yaml'
    path.write_text(text)
    return compile_graph(path, PluginRegistry(Allowlist().widened(['runtime_test_plugins'])))


@pytest.fixture
def plugin_env(ros_env):
    return {
        **ros_env,
        'PYTHONPATH': f'{PLUGINS_DIR}{os.pathsep}{ros_env.get("PYTHONPATH", "")}',
        'SCHNITZEL_STREAM_PLUGIN_ALLOWLIST': 'runtime_test_plugins',
    }


@pytest.fixture
def client_node(ros_domain):
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    node = Node('test_replacer', context=context)
    executor = make_executor('single', context)
    executor.add_node(node)
    spinner = Spinner(executor, context, 'test-replacer').start()
    yield node
    spinner.stop()
    node.destroy_node()
    rclpy.shutdown(context=context)


@pytest.fixture
def box(plugin_env, tmp_path, client_node):
    cmd = container_command('box', '/hr', executor='events', max_events=None)
    with (tmp_path / 'container.log').open('w') as log:
        proc = processes.start(cmd, plugin_env, stdout=log, stderr=subprocess.STDOUT)
    client = ContainerClient(
        '/hr/box', client_node, lambda: None if proc.poll() is None else 'container died'
    )
    client.wait_ready()
    yield client
    client.destroy()
    processes.stop(proc)


def _get_param(node: Node, full_name: str, name: str):
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    client = node.create_client(GetParameters, f'{full_name}/get_parameters')
    try:
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(GetParameters.Request(names=[name]))
        deadline = time.monotonic() + 10
        while not future.done():
            assert time.monotonic() < deadline, 'get_parameters did not answer'
            time.sleep(0.02)
        (value,) = future.result().values
        return parameter_value_to_python(value)
    finally:
        node.destroy_client(client)


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith('}')]


def test_twenty_hot_replaces_lose_reorder_and_duplicate_nothing(box, tmp_path):
    first = _graph(tmp_path, 'Stamp', 'v0')
    for request in load_requests(first):
        result = box.load(request)
        assert result.success, result.error_message
    box.start()
    out = tmp_path / 'out.jsonl'
    variants = []
    deadline = time.monotonic() + 30
    while len(_lines(out)) < 500:  # the stream runs before the first swap
        assert time.monotonic() < deadline, 'no packets reached the sink'
        time.sleep(0.05)
    for i in range(1, SWAPS + 1):
        cls = 'OtherStamp' if i % 2 else 'Stamp'  # odd swaps change the class, even ones the tag
        tag = f'v{i}'
        graph = _graph(tmp_path, cls, tag)
        result = box.replace(node_load_request(graph, graph.node('policy')))
        assert result.success, result.error_message
        assert result.full_node_name == '/hr/policy'
        variants.append((cls, tag))
        time.sleep(0.25)

    # a replacement whose ports do not fit the node's edges is refused, and changes nothing (the
    # validator would refuse such a graph; the container checks again whatever the caller sends)
    good = node_load_request(graph, graph.node('policy'))
    bad = dataclasses.replace(
        good,
        plugin_name='runtime_test_plugins:StampWithoutInput',
        parameters={k: v for k, v in good.parameters.items() if k != 'tag'},
    )
    refused = box.replace(bad)
    assert not refused.success
    reason = "wiring parameter 'inputs.in' names no input port of the plugin (ports: ['data'])"
    assert reason in refused.error_message
    resized = dataclasses.replace(good, parameters={**good.parameters, 'inbox.in.max': 5})
    refused = box.replace(resized)
    assert not refused.success
    reason = "input 'in': its QoS or inbox differs from the running node's (apply reloads such a node)"
    assert reason in refused.error_message

    deadline = time.monotonic() + 60
    while len(_lines(out)) < COUNT:
        assert time.monotonic() < deadline, f'{len(_lines(out))} of {COUNT} packets arrived'
        time.sleep(0.2)
    time.sleep(0.5)
    lines = _lines(out)
    assert [line['seq'] for line in lines] == list(range(COUNT))  # exactly once, in order
    assert [line['seen'] for line in lines] == list(range(1, COUNT + 1))  # state handed over 20 times
    stamps = [(line['by'], line['tag']) for line in lines]
    runs = [stamps[0]] + [b for a, b in itertools.pairwise(stamps) if a != b]
    assert runs == [('Stamp', 'v0'), *variants]  # every instance took over in turn, none came back
    # the node's ROS parameters are the new instance's (re-declared, read-only as before)
    assert _get_param(box.node, '/hr/policy', 'tag') == f'v{SWAPS}'
    report = box.snapshot()
    policy = report['nodes']['policy']
    assert policy['counters']['replaced_total'] == SWAPS
    assert policy['inbox_dropped_total'] == 0
    assert report['nodes']['policy']['consumed'] == COUNT
