"""The container's side of the wiring contract: load requests checked before any node exists."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.errors import GraphInvalid
from schnitzel_stream_ros.graph.model import Overflow, Reliability
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import compile_graph
from schnitzel_stream_ros.graph.wiring import load_requests
from schnitzel_stream_ros.runtime.load_spec import LoadError, parse_load_request

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'runtime_plugins'))
GRAPHS = Path(__file__).resolve().parents[1] / 'graphs'


def _parse(registry: PluginRegistry | None = None, **changes):
    request = {
        'package_name': 'schnitzel_stream_ros',
        'plugin_name': 'schnitzel_stream_ros.nodes.core.burst:BurstNode',
        'node_name': 'burst',
        'node_namespace': '/plant',
        'remap_rules': ('~/out:=/plant/bursts',),
        'parameters': {
            'count': 3,
            'inputs.in': ['/plant/src/out'],
            'inbox.in.max': 4,
            'inbox.in.overflow': 'drop_oldest',
            'qos.in.reliability': 'best_effort',
            'qos.out.depth': 7,
            'container.group': 'main',
        },
    }
    request.update(changes)
    return parse_load_request(registry=registry or PluginRegistry(), **request)


def test_a_good_request_is_decoded_completely():
    spec = _parse()
    assert spec.full_name == '/plant/burst'
    assert spec.params == {'count': 3, 'meta_key': 'burst_seq'}  # default filled in
    wiring = spec.inputs['in']
    assert wiring.topics == ('/plant/src/out',)
    assert (wiring.inbox_max, wiring.overflow, wiring.reliability) == (
        4,
        Overflow.DROP_OLDEST,
        Reliability.BEST_EFFORT,
    )
    assert spec.outputs['out'].depth == 7
    assert spec.group == 'main'
    assert spec.remap_rules == ('~/out:=/plant/bursts',)


@pytest.mark.parametrize(
    ('changes', 'message'),
    [
        ({'package_name': 'demo_nodes_cpp'}, "node 'burst': package_name 'demo_nodes_cpp' is not served"),
        ({'node_name': '9lives'}, "node '9lives': node_name '9lives' is not a valid ROS node name"),
        (
            {'plugin_name': 'os.path:join'},
            "node 'burst': plugin module 'os.path' is outside the plugin allowlist",
        ),
        ({'plugin_name': 'schnitzel_stream_ros.nodes.core.burst:Nope'}, "has no attribute 'Nope'"),
        (
            {'parameters': {'cuont': 3}, 'unknown_parameters': 'refuse'},
            "node 'burst': unknown parameter 'cuont' (did you mean 'count'?)",
        ),
        ({'parameters': {'count': -1}}, "node 'burst': parameter 'count': -1 is below the minimum 0"),
        ({'parameters': {'count': 'many'}}, "node 'burst': parameter 'count': expected int"),
        (
            {'parameters': {'meta_key': 123}},
            "parameter 'meta_key': expected str, got int 123 (ROS types an unquoted 123 as int; "
            'quote it for text: meta_key:="123")',
        ),
        ({'parameters': {'inputs.inn': ['/x']}}, "wiring parameter 'inputs.inn' names no input port"),
        ({'parameters': {'inbox.in.overflow': 'explode'}}, "inbox.in.overflow: 'explode' is not one of"),
        ({'parameters': {'inbox.in.max': 0}}, 'inbox.in.max: expected an integer >= 1, got 0'),
        (
            {'parameters': {'inputs.in': ['relative/topic']}},
            "topic 'relative/topic' must be an absolute ROS topic",
        ),
        ({'remap_rules': ('~/out',)}, "remap rule '~/out' is not of the form"),
        ({'remap_rules': ('__ns:=/x',)}, "remap rule '__ns:=/x' would rename the node"),
        ({'remap_rules': ('burst:__node:=x',)}, "remap rule 'burst:__node:=x' would rename the node"),
        ({'log_level': 15}, "node 'burst': log_level 15 is not one of [0, 10, 20, 30, 40, 50]"),
        (
            {'extra': {'use_intra_process_comms': 'true'}},
            "node 'burst': extra argument 'use_intra_process_comms' must be a boolean, got 'true'",
        ),
        ({'extra': {'forward_global_arguments': 1}}, "'forward_global_arguments' must be a boolean"),
        ({'extra': {'forward_global_arguments': True}}, "'forward_global_arguments:=true' is not supported"),
    ],
)
def test_bad_requests_fail_with_one_line_naming_node_and_field(changes, message):
    with pytest.raises(LoadError) as err:
        _parse(**changes)
    assert message in str(err.value)
    assert '\n' not in str(err.value)


def test_what_rclcpp_components_ignores_is_accepted_with_a_warning():
    """A `SetParameter` or a `/**` parameter file gives every node of a scope the same parameters."""
    spec = _parse(
        parameters={'count': 3, 'site_gain': 2, 'use_sim_time': True, 'start_type_description_service': True},
        extra={'use_intra_process_comms': True, 'forward_global_arguments': False, 'queue_size': 4},
        log_level=10,
    )
    assert spec.params['count'] == 3 and 'site_gain' not in spec.params
    assert spec.log_level == 10
    assert spec.warnings == (
        "node 'burst': extra argument 'queue_size' means nothing to this container; ignored",
        "node 'burst': ignored parameters plugin schnitzel_stream_ros.nodes.core.burst:BurstNode does not "
        "declare: 'site_gain' (it knows ['count', 'meta_key'])",
    )
    assert _parse().warnings == ()


def test_a_request_without_node_name_gets_the_plugins_default_name():
    spec = _parse(
        node_name='',
        plugin_name='schnitzel_stream_ros.nodes.core.static_source:StaticSource',
        parameters={},
        remap_rules=(),
    )
    assert spec.node_name == 'static_source' and spec.full_name == '/plant/static_source'


def test_allowlist_is_checked_before_import():
    # the module would raise on import if it were imported; the allowlist refuses it first
    with pytest.raises(LoadError, match='refused before import'):
        _parse(plugin_name='runtime_test_plugins:FailOnPayload')
    widened = PluginRegistry(Allowlist(('schnitzel_stream_ros', 'runtime_test_plugins')))
    spec = _parse(
        widened, plugin_name='runtime_test_plugins:FailOnPayload', parameters={'bad': 'x'}, remap_rules=()
    )
    assert spec.params == {'bad': 'x'}


def test_json_text_parameters_are_decoded_with_the_schema():
    spec = _parse(
        plugin_name='schnitzel_stream_ros.nodes.core.static_source:StaticSource',
        node_name='src',
        remap_rules=(),
        parameters={'packets': '[{"payload": {"n": 1}}]'},
    )
    assert spec.params['packets'] == [{'payload': {'n': 1}}]
    with pytest.raises(LoadError, match="parameter 'packets': not valid JSON text"):
        _parse(
            plugin_name='schnitzel_stream_ros.nodes.core.static_source:StaticSource',
            node_name='src',
            remap_rules=(),
            parameters={'packets': '[{'},
        )
    with pytest.raises(LoadError, match="parameter 'packets': not valid JSON text: nested more than 64"):
        _parse(  # from any peer on the domain: a limit, not a RecursionError in the service callback
            plugin_name='schnitzel_stream_ros.nodes.core.static_source:StaticSource',
            node_name='src',
            remap_rules=(),
            parameters={'packets': '[' * 100_000 + ']' * 100_000},
        )


def test_every_request_the_graph_package_makes_is_accepted():
    """The two sides of docs/wiring.md agree: each load request of real graphs parses."""
    for name in ('chain.yaml', 'fan_in_out.yaml', 'two_containers.yaml'):
        graph = compile_graph(GRAPHS / 'valid' / name)
        for request in load_requests(graph):
            spec = parse_load_request(
                package_name=request.package_name,
                plugin_name=request.plugin_name,
                node_name=request.node_name,
                node_namespace=request.node_namespace,
                remap_rules=request.remap_rules,
                parameters=request.parameters,
                registry=PluginRegistry(),
            )
            node = graph.node(request.node_name)
            assert dict(spec.params) == dict(node.params), name
            assert set(spec.inputs) == {i.port for i in graph.inputs_of(node.id)}, name


def test_ros2_param_set_with_hostile_json_is_refused_with_the_limit():
    """`ros2 param set` reaches check_change from any peer on the domain (a real rclpy Parameter)."""
    from rclpy.parameter import Parameter

    from schnitzel_stream_ros.plugin import Param
    from schnitzel_stream_ros.runtime.ros_params import check_change

    schema = {'zones': Param('zones', list, [], 'zones', dynamic=True)}
    result, changed = check_change(schema, [Parameter('zones', value='[' * 100_000 + ']' * 100_000)])
    assert not result.successful and changed == {}
    assert result.reason == 'nested more than 64 levels deep: over the limit max_depth = 64'
    result, changed = check_change(schema, [Parameter('zones', value='[[1, 2]]')])
    assert result.successful and changed == {'zones': [[1, 2]]}


def test_a_topic_source_takes_its_subscription_qos_from_the_node(tmp_path):
    """No edge comes into a topic source's `in`: its subscription QoS is written on the node
    (`qos: {in: ...}`), its inbox in `config.__runtime__`, and both reach the subscription and inbox
    the runtime makes; `qos` on a StreamPacket input is refused (its QoS is the edge's), naming the
    node and the port."""
    source = {'id': 'odom', 'plugin': 'RosSensorTopicSource',
              'config': {'topic': '/robot/odom', 'message_type': 'nav_msgs/msg/Odometry',
                         '__runtime__': {'inbox_max': 500, 'inbox_overflow': 'drop_oldest'}},
              'qos': {'in': {'depth': 100, 'reliability': 'best_effort'}, 'out': {'depth': 3}}}
    graph_file = tmp_path / 'g.yaml'
    graph_file.write_text(json.dumps({'version': 2, 'nodes': [source, {'id': 'out', 'plugin': 'PrintSink'}],
                                      'edges': [{'from': 'odom', 'to': 'out'}]}))
    graph = compile_graph(graph_file)
    (request,) = [r for r in load_requests(graph) if r.node_name == 'odom']
    assert {k: v for k, v in request.parameters.items() if k.endswith(('.in.depth', '.in.reliability'))} == {
        'qos.in.depth': 100, 'qos.in.reliability': 'best_effort'}
    spec = parse_load_request(
        package_name=request.package_name, plugin_name=request.plugin_name, node_name=request.node_name,
        node_namespace=request.node_namespace, remap_rules=request.remap_rules,
        parameters=request.parameters, registry=PluginRegistry(),
    )
    wiring = spec.inputs['in']
    assert (wiring.topics, wiring.depth, wiring.reliability) == (('/robot/odom',), 100,
                                                                  Reliability.BEST_EFFORT)
    assert (wiring.inbox_max, wiring.overflow) == (500, Overflow.DROP_OLDEST)
    default = dict(source, qos={}, config={k: v for k, v in source['config'].items() if k != '__runtime__'})
    graph_file.write_text(json.dumps({'version': 2, 'nodes': [default, {'id': 'out', 'plugin': 'PrintSink'}],
                                      'edges': [{'from': 'odom', 'to': 'out'}]}))
    (request,) = [r for r in load_requests(compile_graph(graph_file)) if r.node_name == 'odom']
    assert not {'qos.in.depth', 'inbox.in.max'} & request.parameters.keys()  # the runtime's defaults apply

    sink = {'id': 'out', 'plugin': 'PrintSink', 'qos': {'in': {'depth': 5}}}
    graph_file.write_text(json.dumps({'version': 2, 'nodes': [default, sink],
                                      'edges': [{'from': 'odom', 'to': 'out'}]}))
    refused = r"node 'out'.*qos: plugin .* has no output port or ROS-topic input 'in'"
    with pytest.raises(GraphInvalid, match=refused):
        compile_graph(graph_file)
