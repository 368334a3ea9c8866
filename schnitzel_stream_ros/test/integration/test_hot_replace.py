"""Hot-replace of a running node (runtime/hot_replace.py) in a real container process.

A numbered source at 1,500 packets/s feeds a policy node that is replaced 20 times while the stream
runs — alternating new parameters and another class — into a sink that writes every packet to a
file. Every number must arrive exactly once and in order, each packet stamped by exactly one
instance, and the count the instances hand over (`snapshot_state`/`restore_state`) must run on
without a gap. Replace requests are built from edited graphs (graph/wiring.py), as the reconciler
builds them, and sent over DDS to the container's `~/_schnitzel/replace` service from this process.

Nothing here depends on the machine keeping up (seven test runs share two cores):
- the inboxes are `block`, so a worker starved of CPU holds its producer back instead of dropping
  packets under the default `drop_new` of 64 (which a loaded machine did: 189, 101 and 445 packets
  dropped, and counted, in three runs at load 5-12, at a swap or between two; the test then waited
  60 s for packets that were gone). What is tested is that a replace loses nothing, not that the
  machine keeps up;
- the source runs until it is stopped, and each swap waits until the instance before it has
  stamped a packet, so every instance works on the stream however slow the replace calls are (with
  a fixed count of 15,000 the stream could end before the last swap, whose instance then saw nothing);
- the end is the container's own verdict: sources done and every node idle, then the counts.
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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PLUGINS_DIR = Path(__file__).resolve().parents[1] / 'runtime_plugins'
sys.path.insert(0, str(PLUGINS_DIR))

RATE_HZ = 1_500.0
SWAPS = 20
#: packets the sink must see after the refused replaces before the source is stopped
TAIL = 300
#: how long one step may take on a loaded machine (a step normally takes well under a second)
STEP_TIMEOUT_SEC = 30.0

GRAPH = """
    version: 2
    namespace: /hr
    nodes:
      - {id: src, plugin: SyntheticSource, container: box,
         config: {rate_hz: RATE, count: 0, payload_bytes: 4}}
      - {id: policy, plugin: 'runtime_test_plugins:CLASS', container: box,
         config: {tag: TAG, __runtime__: {inbox_overflow: block}}}
      - {id: sink, kind: sink, plugin: JsonlSink, container: box,
         config: {path: TMP/out.jsonl, body: payload, __runtime__: {inbox_overflow: block}}}
    edges:
      - {from: src, to: policy}
      - {from: policy, to: sink}
"""


def _graph(tmp_path: Path, cls: str, tag: str):
    text = (
        textwrap.dedent(GRAPH)
        .replace('RATE', str(RATE_HZ))
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


class SinkFile:
    """The sink's JSON lines, read on as the file grows (complete lines only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[dict] = []
        self._offset = 0

    def read(self) -> list[dict]:
        if self.path.exists():
            with self.path.open('rb') as f:
                f.seek(self._offset)
                chunk = f.read()
            complete = chunk[: chunk.rfind(b'\n') + 1]
            self._offset += len(complete)
            self.lines += [json.loads(line) for line in complete.splitlines()]
        return self.lines

    def wait(self, what: str, done) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT_SEC
        while not done(self.read()):
            assert time.monotonic() < deadline, f'{what}: not within {STEP_TIMEOUT_SEC:.0f} s'
            time.sleep(0.05)


def _counts(report: dict) -> dict:
    return {node: {k: v for k, v in row.items() if k in ('consumed', 'produced', 'inbox_dropped_total')}
            for node, row in report['nodes'].items()}


def _wait_drained(box) -> dict:
    """The container's own verdict: its source ended, every node idle (in one container a hand-off
    is synchronous, so idle everywhere means nothing is in flight), twice with the same counts."""
    deadline = time.monotonic() + STEP_TIMEOUT_SEC
    last = None
    while True:
        report = box.snapshot()
        state = report['state']
        if state['sources_done'] and state['idle']:
            if _counts(report) == last:
                return report
            last = _counts(report)
        else:
            last = None
        assert time.monotonic() < deadline, f'the container did not drain: {_counts(report)}'
        time.sleep(0.1)


def test_twenty_hot_replaces_lose_reorder_and_duplicate_nothing(box, tmp_path):
    first = _graph(tmp_path, 'Stamp', 'v0')
    for request in load_requests(first):
        result = box.load(request)
        assert result.success, result.error_message
    box.start()
    sink = SinkFile(tmp_path / 'out.jsonl')
    sink.wait('500 packets before the first swap', lambda lines: len(lines) >= 500)
    variants = []
    for i in range(1, SWAPS + 1):
        cls = 'OtherStamp' if i % 2 else 'Stamp'  # odd swaps change the class, even ones the tag
        tag = f'v{i}'
        graph = _graph(tmp_path, cls, tag)
        result = box.replace(node_load_request(graph, graph.node('policy')))
        assert result.success, result.error_message
        assert result.full_node_name == '/hr/policy'
        variants.append((cls, tag))
        # the new instance works on the stream before the next one replaces it
        sink.wait(f'a packet stamped {tag}', lambda lines, tag=tag: lines[-1]['tag'] == tag)

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

    after_refusals = len(sink.read()) + TAIL
    sink.wait(f'{TAIL} packets after the refused replaces', lambda lines: len(lines) >= after_refusals)
    box.trigger('stop_sources')
    report = _wait_drained(box)
    count = report['nodes']['src']['produced']
    assert _counts(report) == {
        'src': {'consumed': 0, 'produced': count, 'inbox_dropped_total': 0},
        'policy': {'consumed': count, 'produced': count, 'inbox_dropped_total': 0},
        'sink': {'consumed': count, 'produced': 0, 'inbox_dropped_total': 0},
    }
    lines = sink.read()
    assert [line['seq'] for line in lines] == list(range(count))  # exactly once, in order
    assert [line['seen'] for line in lines] == list(range(1, count + 1))  # state handed over 20 times
    stamps = [(line['by'], line['tag']) for line in lines]
    runs = [stamps[0]] + [b for a, b in itertools.pairwise(stamps) if a != b]
    assert runs == [('Stamp', 'v0'), *variants]  # every instance took over in turn, none came back
    # the node's ROS parameters are the new instance's (re-declared, read-only as before)
    assert _get_param(box.node, '/hr/policy', 'tag') == f'v{SWAPS}'
    assert report['nodes']['policy']['counters']['replaced_total'] == SWAPS
