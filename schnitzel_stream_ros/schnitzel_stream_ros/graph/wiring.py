"""Validated graph -> load requests for our component container (docs/wiring.md, contract v1).

This is the one path both the launch generator and the embedded runner use to decide what a node
gets at load time: plugin reference, node name, namespace, remap rules and ROS parameters
(plugin parameters + reserved wiring parameters). Keeping it in one function means a graph
started by `ros2 launch` and by `schnitzel-stream run` is wired identically.
"""
from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from schnitzel_stream_ros.document_limits import MIB, json_text_limits, load_json
from schnitzel_stream_ros.graph.blackboard_config import blackboard_params
from schnitzel_stream_ros.graph.frame_transport import lane_params
from schnitzel_stream_ros.graph.model import (
    DEFAULT_QOS_DEPTH,
    DropWeights,
    Overflow,
    Reliability,
    ResolvedNode,
    ValidatedGraph,
)
from schnitzel_stream_ros.graph.ports import topic_inputs
from schnitzel_stream_ros.graph.restart import restart_params
from schnitzel_stream_ros.graph.state_config import node_state, state_params

#: `package_name` of every load request: all our plugins are hosted by this package's container.
PACKAGE_NAME = 'schnitzel_stream_ros'
WIRING_VERSION = 1

# reserved parameter names (docs/wiring.md)
CONTAINER_GROUP_PARAM = 'container.group'


def inputs_param(port: str) -> str:
    return f'inputs.{port}'


def qos_reliability_param(port: str) -> str:
    return f'qos.{port}.reliability'


def qos_depth_param(port: str) -> str:
    return f'qos.{port}.depth'


def inbox_max_param(port: str) -> str:
    return f'inbox.{port}.max'


def inbox_overflow_param(port: str) -> str:
    return f'inbox.{port}.overflow'


def inbox_weights_params(port: str) -> tuple[str, str, str]:
    """weighted_drop: (weights as JSON text, weight key, default weight) of an input's inbox."""
    return f'inbox.{port}.weights', f'inbox.{port}.weight_key', f'inbox.{port}.default_weight'


def is_reserved_param(name: str) -> bool:
    """True for wiring parameters (never plugin parameters: those are identifiers without dots)."""
    families = ('inputs', 'qos', 'inbox', 'restart', 'state', 'blackboard')
    # transport.*: frame lanes (graph/frame_transport.py); dotted only, plugins may have a `transport`
    # parameter of their own (OpenCvRtspSource: tcp/udp)
    return name == CONTAINER_GROUP_PARAM or name.split('.', 1)[0] in families or name.startswith('transport.')


#: LoadNode extra argument (ours): false loads a node unconfigured, for a lifecycle manager.
AUTOSTART_ARG = 'autostart'


@dataclass(frozen=True)
class LoadRequest:
    """The fields of a `composition_interfaces/srv/LoadNode` request for one graph node."""

    package_name: str
    plugin_name: str
    node_name: str
    node_namespace: str
    remap_rules: tuple[str, ...]
    parameters: Mapping[str, Any]  # ordered: plugin parameters, then wiring parameters
    container_group: str
    #: LoadNode extra_arguments: {'autostart': False} when the graph's nodes are managed from outside
    extra_arguments: Mapping[str, Any] = field(default_factory=dict)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, bool | int | float | str)


def ros_param_value(value: Any) -> Any:
    """A plugin parameter value as a ROS parameter value.

    Scalars and non-empty homogeneous scalar arrays map to ROS types directly; dicts, empty lists
    and mixed lists travel as JSON text (ROS cannot type them), which the runtime decodes with the
    plugin's parameter schema. Ints inside a float array are widened so the array stays homogeneous.
    """
    if _is_scalar(value):
        return value
    if isinstance(value, list | tuple) and value and all(_is_scalar(v) for v in value):
        types = {bool if isinstance(v, bool) else type(v) for v in value}
        if types == {int, float}:
            return [float(v) for v in value]
        if len(types) == 1:
            return list(value)
    return json.dumps(value, sort_keys=True, separators=(',', ':'))


#: JSON text of one dict/list parameter: room for the largest value a graph admits
#: (GraphLimits.max_config_value_chars, 256 Ki, written with \u escapes: at most 6 bytes each)
PARAM_JSON_LIMITS = json_text_limits(4 * MIB)


def decode_param_value(value: Any, declared_type: type) -> Any:
    """Inverse of ros_param_value for the runtime: JSON text back to a dict/list parameter.

    The text comes from a LoadNode request or a `ros2 param set`, i.e. from any peer on the domain:
    bounded like a graph's parameter (size, nesting; a ValueError naming the limit, never a
    RecursionError inside a service or parameter callback).
    """
    if declared_type in (dict, list) and isinstance(value, str):
        return load_json(value, PARAM_JSON_LIMITS)
    if declared_type is list and isinstance(value, tuple):
        return list(value)
    return value


def _plugin_parameters(node: ResolvedNode) -> dict[str, Any]:
    """Parameters the graph sets, in schema order, checked values (int widened to float etc.)."""
    given = node.spec.params
    out: dict[str, Any] = {}
    for name in node.plugin_cls.param_schema():
        if name in given and given[name] is not None:
            out[name] = ros_param_value(node.params[name])
    return out


def _drop_weight_params(port: str, drop_weights: DropWeights | None) -> dict[str, Any]:
    if drop_weights is None:
        return {}
    weights, key, default = inbox_weights_params(port)
    return {weights: json.dumps(drop_weights.table(), sort_keys=True, separators=(',', ':')),
            key: drop_weights.key, default: drop_weights.default}


def _own_topic_input_params(node: ResolvedNode, fed_by_edges: Collection[str]) -> dict[str, Any]:
    """Wiring of the inputs on a ROS topic of their own (a topic source's `in`; graph/ports.py
    topic_inputs): no edge decides their QoS and inbox, so the node's `qos: {<port>: ...}` and its
    `config.__runtime__` inbox settings do, where the graph sets them (else the runtime's defaults)."""
    params: dict[str, Any] = {}
    runtime = node.spec.runtime
    for name in topic_inputs(node.plugin_cls, node.params):
        if name in fed_by_edges:
            continue
        qos = node.spec.qos.get(name)
        if qos is not None:
            params[qos_reliability_param(name)] = str(qos.reliability or Reliability.RELIABLE)
            params[qos_depth_param(name)] = qos.depth or DEFAULT_QOS_DEPTH
        if runtime.inbox_max is not None:
            params[inbox_max_param(name)] = runtime.inbox_max
        if runtime.inbox_overflow is not None:
            params[inbox_overflow_param(name)] = str(runtime.inbox_overflow)
            if runtime.inbox_overflow is Overflow.WEIGHTED_DROP:
                params.update(_drop_weight_params(name, runtime.drop_weights or DropWeights()))
    return params


def node_load_request(graph: ValidatedGraph, node: ResolvedNode) -> LoadRequest:
    """The load request of one node (see docs/wiring.md for every field)."""
    params = _plugin_parameters(node)
    inputs = {spec.port: spec for spec in graph.inputs_of(node.id)}
    params.update(_own_topic_input_params(node, inputs.keys()))
    for port in node.inputs:
        spec = inputs.get(port.name)
        if spec is None:
            continue
        params[inputs_param(port.name)] = list(spec.topics)
        params[qos_reliability_param(port.name)] = str(spec.reliability)
        params[qos_depth_param(port.name)] = spec.depth
        params[inbox_max_param(port.name)] = spec.inbox_max
        params[inbox_overflow_param(port.name)] = str(spec.overflow)
        params.update(_drop_weight_params(port.name, spec.drop_weights))
    for port in node.outputs:
        qos = node.output_qos[port.name]
        params[qos_reliability_param(port.name)] = str(qos.reliability)
        params[qos_depth_param(port.name)] = qos.depth
    params.update(lane_params(graph.edges, node.id))  # ports on a shared-memory frame lane
    params.update(restart_params(node.spec.restart))
    if node.plugin_cls.STATE_VERSION >= 1:  # stateful: checkpointed when the graph says where
        params.update(state_params(node_state(graph.spec.state, node.spec.state)))
    params.update(blackboard_params(graph.spec.blackboard, graph.spec.namespace))
    params[CONTAINER_GROUP_PARAM] = node.container
    remaps = tuple(
        f'~/{port.name}:={node.output_topics[port.name]}'
        for port in node.outputs
        if port.name in node.spec.topics or (port.topic_param and node.params.get(port.topic_param))
    )
    return LoadRequest(
        package_name=PACKAGE_NAME,
        plugin_name=node.plugin_ref,
        node_name=node.id,
        node_namespace=node.namespace,
        remap_rules=remaps,
        parameters=params,
        container_group=node.container,
        extra_arguments={} if graph.spec.autostart else {AUTOSTART_ARG: False},
    )


def load_requests(graph: ValidatedGraph) -> tuple[LoadRequest, ...]:
    """Load requests of the whole graph, grouped by container (group order, then declaration)."""
    requests = []
    for group in graph.containers:
        for node_id in group.node_ids:
            requests.append(node_load_request(graph, graph.node(node_id)))
    return tuple(requests)


def load_requests_by_container(graph: ValidatedGraph) -> dict[str, tuple[LoadRequest, ...]]:
    """Container group name -> its load requests (what one container process must load)."""
    out: dict[str, list[LoadRequest]] = {}
    for request in load_requests(graph):
        out.setdefault(request.container_group, []).append(request)
    return {name: tuple(reqs) for name, reqs in out.items()}
