"""Load requests (docs/wiring.md): the shared path of the launch generator and the runner."""
from __future__ import annotations

import json
from pathlib import Path

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import compile_graph
from schnitzel_stream_ros.graph.wiring import (
    decode_param_value,
    is_reserved_param,
    load_requests,
    load_requests_by_container,
    ros_param_value,
)

GRAPHS = Path(__file__).resolve().parents[1] / 'graphs'
REGISTRY = PluginRegistry(Allowlist())


def test_load_request_carries_plugin_name_namespace_remaps_and_wiring_params():
    graph = compile_graph(GRAPHS / 'valid' / 'fan_in_out.yaml', REGISTRY)
    requests = {r.node_name: r for r in load_requests(graph)}
    cam = requests['cam']
    assert cam.package_name == 'schnitzel_stream_ros'
    assert cam.plugin_name == 'schnitzel_stream_ros.nodes.core.static_source:StaticSource'
    assert cam.node_namespace == '/plant/line1'
    assert cam.remap_rules == ('~/out:=/plant/line1/camera/events',)
    assert json.loads(cam.parameters['packets'])[0]['meta'] == {'idempotency_key': 'e-1'}
    merge = requests['merge']
    assert merge.remap_rules == ()
    assert dict(merge.parameters) == {
        'inputs.in': ['/plant/line1/burst/out', '/plant/line1/beacon/out'],
        'qos.in.reliability': 'reliable',
        'qos.in.depth': 10,
        'inbox.in.max': 32,
        'inbox.in.overflow': 'drop_oldest',
        'qos.out.reliability': 'reliable',
        'qos.out.depth': 10,
        'container.group': 'main',
    }
    assert requests['log'].parameters['flush'] is False and 'ensure_ascii' not in requests['log'].parameters
    assert all(is_reserved_param(k) for k in merge.parameters)
    assert not is_reserved_param('prefix')


def test_requests_are_grouped_by_container_in_order():
    graph = compile_graph(GRAPHS / 'valid' / 'two_containers.yaml', REGISTRY)
    groups = load_requests_by_container(graph)
    assert {k: [r.node_name for r in v] for k, v in groups.items()} == {
        'camera': ['grabber', 'to_ref'], 'storage': ['from_ref', 'files', 'sampled_out']}
    assert groups['storage'][0].parameters['inputs.in'] == ['/to_ref/out']


def test_parameter_values_become_ros_types_or_json_text():
    assert ros_param_value(3) == 3 and ros_param_value('x') == 'x' and ros_param_value(True) is True
    assert ros_param_value([1, 2]) == [1, 2] and ros_param_value(['a', 'b']) == ['a', 'b']
    assert ros_param_value([1, 2.5]) == [1.0, 2.5]  # widened: ROS arrays are homogeneous
    for value in ({'a': 1}, [], [1, 'a'], [True, 1], [[1]]):
        text = ros_param_value(value)
        assert isinstance(text, str) and json.loads(text) == value
        declared = dict if isinstance(value, dict) else list
        assert decode_param_value(text, declared) == value
    assert decode_param_value('plain text', str) == 'plain text'
