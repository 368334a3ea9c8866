"""Static validation: every rule a graph must pass before anything starts (fail closed).

The validator collects all problems (one line each, with file:line and the node or edge) and, only
when there are none, returns a ValidatedGraph in which every decision is made: plugin classes,
parameters with defaults, ports, topics, QoS and inbox settings. Rules, in order:
identity (ids, ROS names, namespaces, containers) -> plugins (allowlist before import, API version)
-> node kind vs plugin role -> parameters (unknown with "did you mean", required, type, range)
-> node extensions (ports, topics, qos) -> edges (endpoints, port names, ports exist, direction
rules) -> cycles (strict, or only through delay/initial nodes when enabled) -> what flows on each
edge (message type, kind overlap, payload profile, non-portable kinds, container boundaries,
host boundaries: graph/placement.py)
-> delivery (edges into one input agree, QoS compatibility) -> topics unique -> required inputs.

Unknown parameters: an error for a node that names its plugin natively (a registered name or a
module path: a typo must not pass), a warning for a node that names it by an upstream path
(`schnitzel_stream.…`), because upstream ignored config keys a plugin does not use and its graph
files rely on that (one template serving several source plugins). Ignored keys never reach the
plugin. Warnings travel in ValidationResult.warnings and ValidatedGraph.warnings.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schnitzel_stream_ros.graph import frame_transport
from schnitzel_stream_ros.graph.aliases import is_upstream_reference
from schnitzel_stream_ros.graph.errors import GraphError, GraphInvalid, GraphWarning, node_subject
from schnitzel_stream_ros.graph.interpolate import EnvText
from schnitzel_stream_ros.graph.load import DEFAULT_GRAPH_LIMITS, GraphLimits, load_graph
from schnitzel_stream_ros.graph.model import (
    DEFAULT_HOST,
    DEFAULT_INBOX_MAX,
    DEFAULT_QOS_DEPTH,
    DropWeights,
    EdgeSpec,
    GraphSpec,
    NodeKind,
    NodeSpec,
    Overflow,
    Position,
    QosSpec,
    Reliability,
    ResolvedEdge,
    ResolvedNode,
    ValidatedGraph,
)
from schnitzel_stream_ros.graph.names import (
    default_topic,
    is_identifier,
    namespace_problem,
    node_name_problem,
    resolve_topic,
    topic_problem,
)
from schnitzel_stream_ros.graph.placement import WIRE_ENCODINGS, container_hosts, crossing_problem
from schnitzel_stream_ros.graph.ports import (
    declared_ports,
    is_passthrough,
    least_portable,
    narrow_kinds,
    topic_inputs,
)
from schnitzel_stream_ros.graph.registry import PluginError, PluginInfo, PluginRegistry
from schnitzel_stream_ros.graph.secrets import literal_credential
from schnitzel_stream_ros.graph.suggest import did_you_mean
from schnitzel_stream_ros.packet import NON_PORTABLE_KINDS, PayloadProfile, profile_compatible
from schnitzel_stream_ros.plugin import STREAM_PACKET_MSG, Param, ParamError, Port, Role

PortKey = tuple[str, str]  # (node id, port name)
#: what is decided for one input: reliability, QoS depth, overflow, inbox size, weighted_drop ranks
Delivery = tuple[Reliability, int, Overflow, int, DropWeights | None]
_ANY_KIND = frozenset({'*'})
_PARAM_NAMED = re.compile(r"parameter '([A-Za-z_][A-Za-z0-9_]*)'")


@dataclass
class ValidationResult:
    """Errors (empty when valid), warnings (never make a graph invalid) and, when valid, the graph."""

    errors: list[GraphError] = field(default_factory=list)
    graph: ValidatedGraph | None = None
    spec: GraphSpec | None = None
    warnings: list[GraphWarning] = field(default_factory=list)
    #: where validation stopped after max_errors problems (None: everything was checked)
    stopped_at: Position | None = None

    @property
    def ok(self) -> bool:
        return self.graph is not None and not self.errors


def _kinds_text(kinds: frozenset[str]) -> str:
    return '[' + ', '.join(sorted(kinds)) + ']'


def _plain(value: Any) -> Any:
    """Parameter values without loader artefacts (EnvText -> str), deep."""
    if isinstance(value, EnvText):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _coerce_env(value: Any, spec: Param) -> Any:
    """`${oc.env:...}` yields text; give it the parameter's declared scalar type when it parses."""
    if not isinstance(value, EnvText):
        return value
    text = str(value).strip()
    try:
        if spec.type is int:
            return int(text)
        if spec.type is float:
            return float(text)
        if spec.type is bool and text.lower() in ('true', 'false', '1', '0', 'yes', 'no'):
            return text.lower() in ('true', '1', 'yes')
    except ValueError:
        return str(value)
    return str(value)


@dataclass
class _EdgeEnds:
    edge: EdgeSpec
    src_port: str
    dst_port: str


class _Validator:
    def __init__(self, spec: GraphSpec, registry: PluginRegistry, max_errors: int) -> None:
        self.spec = spec
        self.registry = registry
        self.max_errors = max_errors
        self.stopped_at: Position | None = None
        self.edge_sources = {edge.src for edge in spec.edges}  # one set, not one scan of all edges per sink
        self.errors: list[GraphError] = []
        self.warnings: list[GraphWarning] = []
        self.nodes: dict[str, NodeSpec] = {}
        self.plugins: dict[str, PluginInfo] = {}
        self.kinds: dict[str, NodeKind] = {}
        self.params: dict[str, dict[str, Any]] = {}
        self.inputs: dict[str, dict[str, Port]] = {}
        self.outputs: dict[str, dict[str, Port]] = {}
        self.namespaces: dict[str, str] = {}
        self.topics: dict[PortKey, str] = {}
        self.pub_qos: dict[PortKey, QosSpec] = {}
        self.incomplete = False
        self.topology: list[EdgeSpec] = []  # edges with known endpoints and a legal direction
        self.hosts: dict[str, str] = {}  # container group -> host
        self.lanes: dict[tuple[str, str, str, str], frame_transport.FrameLane] = {}  # shm frame edges

    # -- reporting --------------------------------------------------------------------------
    def node_error(self, node: NodeSpec, message: str, code: str, position: Position | None = None) -> None:
        self.errors.append(GraphError(position or node.position, message, node_subject(node.id), code))

    def edge_error(self, edge: EdgeSpec, message: str, code: str) -> None:
        self.errors.append(GraphError(edge.position, message, f'edge {edge.label}', code))

    def hint(self, word: str, choices: Any) -> str:
        """did_you_mean, until max_errors problems are listed."""
        return did_you_mean(word, choices) if len(self.errors) < self.max_errors else ''

    def stop_at(self, position: Position) -> bool:
        """True (and validation ends at `position`) once max_errors problems are listed: a hostile
        file must not buy unbounded work with unbounded mistakes."""
        if len(self.errors) >= self.max_errors and self.stopped_at is None:
            self.stopped_at = position
        return self.stopped_at is not None

    # -- run ----------------------------------------------------------------------------------
    def run(self) -> ValidationResult:
        self.check_graph()
        for node in self.spec.nodes:
            if self.stop_at(node.position):
                return self.stopped()
            self.check_node(node)
        self.check_containers()
        self.hosts, host_errors = container_hosts(self.spec)  # placement across hosts (graph/placement.py)
        self.errors.extend(host_errors)
        ends = self.check_edges()
        if self.stopped_at is not None:
            return self.stopped()
        self.check_cycles(self.topology)
        if self.stopped_at is not None:
            return self.stopped()
        self.check_flow(ends)
        delivery = self.check_delivery(ends)
        self.check_cycle_delivery(ends, delivery)
        self.check_topics()
        self.check_required_inputs(ends)
        if self.errors or self.incomplete:
            return ValidationResult(self.errors, None, self.spec, self.warnings)
        return ValidationResult([], self.build(ends, delivery), self.spec, self.warnings)

    def stopped(self) -> ValidationResult:
        return ValidationResult(self.errors, None, self.spec, self.warnings, self.stopped_at)

    # -- graph and nodes ------------------------------------------------------------------------
    def check_graph(self) -> None:
        if not self.spec.nodes:
            self.errors.append(GraphError(self.spec.position, 'graph has no nodes', code='empty-graph'))
        problem = namespace_problem(self.spec.namespace)
        if problem:
            self.errors.append(GraphError(self.spec.position, f'namespace {self.spec.namespace!r} {problem}',
                                          code='ros-name'))

    def check_node(self, node: NodeSpec) -> None:
        if not node.id or not node.plugin:
            self.incomplete = True  # the loader reported it; never build a graph around the hole
            return
        if node.id in self.nodes:
            first = self.nodes[node.id].position
            self.node_error(node, f'duplicate node id (first defined at line {first.line})', 'duplicate-id')
            return
        self.nodes[node.id] = node
        problem = node_name_problem(node.id)
        if problem:
            self.node_error(node, f'id {problem}', 'ros-name')
        namespace = self.spec.node_namespace(node)
        if node.namespace is not None:
            problem = namespace_problem(node.namespace)
            if problem:
                self.node_error(node, f'namespace {node.namespace!r} {problem}', 'ros-name')
                namespace = self.spec.namespace
        self.namespaces[node.id] = namespace
        if node.kind is not None:  # direction rules still apply when the plugin cannot be resolved
            self.kinds[node.id] = node.kind
        try:
            info = self.registry.resolve(node.plugin)
        except PluginError as exc:
            self.node_error(node, str(exc), exc.code)
            return
        self.plugins[node.id] = info
        if not self.check_kind(node, info):
            return
        params = self.check_params(node, info)
        if params is not None:
            self.params[node.id] = params
        else:
            self.incomplete = True
        try:  # with broken parameters, the class-level ports still let edges be checked
            inputs, outputs = declared_ports(info.cls, params if params is not None else None)
        except Exception as exc:  # a plugin hook failing is the plugin's bug; name it, don't crash
            self.node_error(node, f'plugin {info.display_name} could not declare its ports: {exc}', 'plugin')
            return
        self.inputs[node.id] = {p.name: p for p in inputs}
        self.outputs[node.id] = {p.name: p for p in outputs}
        self.check_port_overrides(node, info)
        self.check_outputs_extensions(node, info, namespace)

    def check_kind(self, node: NodeSpec, info: PluginInfo) -> bool:
        """The node's kind (written, else the plugin's role); False when they contradict.

        Without a written kind, a sink plugin with outgoing edges forwards (upstream's default kind
        was `node`, so upstream graphs chain `HttpJsonSink(forward) -> SqliteQueueAckSink` as is).
        """
        role = Role(info.cls.ROLE)
        kind = node.kind or NodeKind(role.value)
        if node.kind is None and role is Role.SINK and node.id in self.edge_sources:
            kind = NodeKind.NODE
        cycle_kind = getattr(info.cls, 'CYCLE_KIND', None)
        if node.kind is None and cycle_kind in (NodeKind.DELAY, NodeKind.INITIAL):
            kind = NodeKind(cycle_kind)
        self.kinds[node.id] = kind
        if kind.breaks_cycles and cycle_kind != kind:
            self.node_error(node, f'kind {str(kind)!r} but plugin {info.display_name} does not '
                            f'{"hold packets back" if kind is NodeKind.DELAY else "seed a loop"} '
                            f"(use {'Delay' if kind is NodeKind.DELAY else 'InitialValue'})", 'kind-role')
            return False
        if kind is NodeKind.SOURCE and role is not Role.SOURCE:
            self.node_error(node, f"kind 'source' but plugin {info.display_name} is not a source "
                            f'(role {role})', 'kind-role')
            return False
        if kind is not NodeKind.SOURCE and role is Role.SOURCE:
            self.node_error(node, f'plugin {info.display_name} is a source but the node kind is '
                            f'{str(kind)!r}', 'kind-role')
            return False
        return True

    def check_params(self, node: NodeSpec, info: PluginInfo) -> dict[str, Any] | None:
        schema = info.cls.param_schema()
        given = node.params
        resolved: dict[str, Any] = {}
        failed = False
        upstream = is_upstream_reference(node.plugin)
        for name in given:
            if name not in schema:
                suggestion = self.hint(str(name), schema)
                if upstream:  # upstream ignored unused keys; only what the schema names reaches the plugin
                    self.warnings.append(GraphWarning(
                        node.param_position(name), f'parameter {name!r} ignored: plugin {info.display_name} '
                        f'does not use it{suggestion} (upstream plugin path: unused keys are ignored)',
                        node_subject(node.id), 'ignored-param'))
                    continue
                hint = suggestion or (
                    f' (plugin {info.display_name} takes no parameters)' if not schema
                    else f" (known: {', '.join(schema)})")
                self.node_error(node, f'unknown parameter {name!r}{hint}', 'unknown-param',
                                node.param_position(name))
                failed = True
        for name, spec in schema.items():
            if name in given:
                value = given[name]
                if value is None and not spec.required:
                    resolved[name] = None
                    continue
                try:
                    resolved[name] = _plain(spec.check(_coerce_env(value, spec)))
                except ParamError as exc:
                    self.node_error(node, str(exc), 'param', node.param_position(name))
                    failed = True
            elif spec.required:
                what = f' ({spec.description})' if spec.description else ''
                self.node_error(node, f'missing required parameter {name!r} of type {spec.type_name}{what}',
                                'missing-param')
                failed = True
            else:
                resolved[name] = copy.deepcopy(spec.default)  # a list/dict default is never shared
        for name, value in resolved.items():
            leaked = literal_credential(value)
            if leaked:
                self.node_error(node, f'parameter {name!r}: password in {leaked!r} would be a readable ROS '
                                'parameter and be written into launch files; write ${secret:ENV_NAME} or '
                                '${secret_file:PATH} in its place', 'secret-in-graph',
                                node.param_position(name))
                failed = True
        if failed:
            return None
        try:
            problems = list(info.cls.check_params(resolved) or ())
        except Exception as exc:  # the plugin's bug: name it, keep validating the rest
            problems = [f'plugin {info.display_name} could not check its parameters: {exc}']
        for problem in problems:
            named = _PARAM_NAMED.match(str(problem))
            position = node.param_position(named.group(1)) if named else node.position
            self.node_error(node, str(problem), 'param', position)
            failed = True
        return None if failed else resolved

    def check_port_overrides(self, node: NodeSpec, info: PluginInfo) -> None:
        for name, override in node.ports.items():
            table = self.inputs[node.id] if name in self.inputs[node.id] else self.outputs[node.id]
            port = table.get(name)
            if port is None:
                known = [*self.inputs[node.id], *self.outputs[node.id]]
                self.node_error(node, f'ports: plugin {info.display_name} has no port {name!r}'
                                f'{self.hint(name, known)}', 'unknown-port', override.position)
                continue
            kinds = override.kinds or port.kinds
            if override.kinds and '*' not in port.kinds and not override.kinds <= port.kinds:
                self.node_error(node, f'ports.{name}.kinds {_kinds_text(override.kinds)} are not among '
                                f'the kinds the plugin declares {_kinds_text(port.kinds)}', 'port-kinds',
                                override.position)
                continue
            table[name] = dataclasses.replace(port, kinds=kinds, profile=override.profile or port.profile)

    def check_outputs_extensions(self, node: NodeSpec, info: PluginInfo, namespace: str) -> None:
        outputs = self.outputs[node.id]
        for name in node.topics:
            if name not in outputs:
                self.node_error(node, f'topics: plugin {info.display_name} has no output port {name!r}'
                                f'{self.hint(name, outputs)}', 'unknown-port')
        # qos names outputs (publisher QoS) or inputs on a ROS topic of their own (ports.topic_inputs)
        own_topics = topic_inputs(info.cls, self.params.get(node.id)) if node.qos else {}
        for name in node.qos:
            if name not in outputs and name not in own_topics:
                known = [*outputs, *own_topics]
                self.node_error(node, f'qos: plugin {info.display_name} has no output port or ROS-topic '
                                f'input {name!r}{self.hint(name, known)}', 'unknown-port')
        for name in outputs:
            topic = node.topics.get(name)
            if topic is not None:
                problem = topic_problem(topic)
                if problem:
                    self.node_error(node, f'topics.{name}: {topic!r} {problem}', 'ros-name')
                    topic = None
            if topic is None:
                topic = self.param_topic(node, outputs[name])
            self.topics[(node.id, name)] = (resolve_topic(topic, namespace, node.id) if topic
                                            else default_topic(namespace, node.id, name))
            qos = node.qos.get(name, QosSpec())
            self.pub_qos[(node.id, name)] = QosSpec(qos.reliability or Reliability.RELIABLE,
                                                    qos.depth or DEFAULT_QOS_DEPTH)

    def param_topic(self, node: NodeSpec, port: Port) -> str | None:
        """The topic an output's `topic_param` names (Port.topic_param), checked; None when unset."""
        if not port.topic_param or port.msg_type == STREAM_PACKET_MSG:
            return None
        topic = self.params.get(node.id, {}).get(port.topic_param)
        if not isinstance(topic, str) or not topic:
            return None
        problem = topic_problem(topic)
        if problem:
            self.node_error(node, f'parameter {port.topic_param!r}: {topic!r} {problem}', 'ros-name',
                            node.param_position(port.topic_param))
            return None
        return topic

    def check_containers(self) -> None:
        for group in self.spec.containers:
            first = self.nodes.get(group.node_ids[0])
            position = first.position if first else self.spec.position
            problem = node_name_problem(group.name)
            if problem:
                self.errors.append(GraphError(position, f'container name {group.name!r} {problem}',
                                              node_subject(group.node_ids[0]), 'ros-name'))
            elif group.name in self.nodes:
                message = f'container {group.name!r} has the same ROS name as node {group.name!r}'
                self.errors.append(GraphError(position, message, node_subject(group.node_ids[0]), 'ros-name'))

    # -- edges ----------------------------------------------------------------------------------
    def pick_port(self, edge: EdgeSpec, node_id: str, given: str | None, direction: str) -> str | None:
        table = self.outputs if direction == 'output' else self.inputs
        if node_id not in table:
            return None  # plugin unresolved: reported already
        ports = table[node_id]
        key = 'from_port' if direction == 'output' else 'to_port'
        if given is None:
            default = 'out' if direction == 'output' else 'in'
            if default in ports:
                return default
            if len(ports) == 1:
                return next(iter(ports))
            if not ports:
                self.edge_error(edge, f'node {node_id!r} has no {direction} ports', 'unknown-port')
            else:
                self.edge_error(edge, f"node {node_id!r} has several {direction} ports ({', '.join(ports)}): "
                                f'name one with {key}', 'ambiguous-port')
            return None
        if given not in ports:
            known = f"{direction}s: {', '.join(ports)}" if ports else f'it has no {direction}s'
            self.edge_error(edge, f'node {node_id!r} has no {direction} port {given!r}'
                            f'{self.hint(given, ports)} ({known})', 'unknown-port')
            return None
        return given

    def check_edges(self) -> list[_EdgeEnds]:
        ends: list[_EdgeEnds] = []
        seen: dict[tuple[str, str, str, str], EdgeSpec] = {}
        for edge in self.spec.edges:
            if self.stop_at(edge.position):
                break
            if not edge.src or not edge.dst:
                continue  # reported by the loader
            ok = True
            for key, port in (('from_port', edge.src_port), ('to_port', edge.dst_port)):
                if port is not None and not is_identifier(port):
                    self.edge_error(edge, f'{key} {port!r} is not an identifier', 'port-name')
                    ok = False
            for end in (edge.src, edge.dst):
                if end not in self.nodes:
                    self.edge_error(edge, f'unknown node {end!r}{self.hint(end, self.nodes)}',
                                    'unknown-node')
                    ok = False
            if not ok:
                continue
            if self.kinds.get(edge.dst) is NodeKind.SOURCE:
                self.edge_error(edge, f'node {edge.dst!r} is a source: a source cannot have incoming edges',
                                'source-incoming')
                ok = False
            if self.kinds.get(edge.src) is NodeKind.SINK:
                self.edge_error(edge, f'node {edge.src!r} is a sink: a sink cannot have outgoing edges',
                                'sink-outgoing')
                ok = False
            if not ok:
                continue
            self.topology.append(edge)  # cycles are about topology, even if a port is wrong
            src_port = self.pick_port(edge, edge.src, edge.src_port, 'output')
            dst_port = self.pick_port(edge, edge.dst, edge.dst_port, 'input')
            if src_port is None or dst_port is None:
                continue
            key = (edge.src, src_port, edge.dst, dst_port)
            if key in seen:
                self.edge_error(edge, f'duplicate edge (already declared at line {seen[key].position.line})',
                                'duplicate-edge')
                continue
            seen[key] = edge
            ends.append(_EdgeEnds(edge, src_port, dst_port))
        return ends

    def check_cycles(self, topology: list[EdgeSpec]) -> None:
        """Strict: no cycle. With config.allow_cycles: every cycle passes a delay/initial node."""
        allow = self.spec.allow_cycles
        adjacency: dict[str, list[EdgeSpec]] = {node_id: [] for node_id in self.nodes}
        for edge in topology:
            if allow and (self._breaks(edge.src) or self._breaks(edge.dst)):
                continue
            adjacency[edge.src].append(edge)
        state: dict[str, int] = dict.fromkeys(self.nodes, 0)  # 0 new, 1 on stack, 2 done
        reported: set[tuple[str, str]] = set()
        for root in self.nodes:
            if state[root]:
                continue
            stack: list[tuple[str, int]] = [(root, 0)]
            path: list[str] = [root]
            state[root] = 1
            while stack:
                node_id, index = stack[-1]
                edges = adjacency[node_id]
                if index == len(edges):
                    stack.pop()
                    path.pop()
                    state[node_id] = 2
                    continue
                stack[-1] = (node_id, index + 1)
                edge = edges[index]
                target = edge.dst
                if state[target] == 0:
                    state[target] = 1
                    stack.append((target, 0))
                    path.append(target)
                elif state[target] == 1 and (edge.src, edge.dst) not in reported:
                    if self.stop_at(edge.position):
                        return
                    reported.add((edge.src, edge.dst))
                    cycle = [*path[path.index(target):], target]
                    text = _cycle_text(cycle)
                    if allow:
                        message = f'cycle without a delay/initial node: {text}'
                    else:
                        hint = (' (set config.allow_cycles: true to allow cycles through delay/initial nodes)'
                                if any(self._breaks(n) for n in cycle) else '')
                        message = f'closes a cycle (strict mode): {text}{hint}'
                    self.edge_error(edge, message, 'cycle')

    def check_cycle_delivery(self, ends: list[_EdgeEnds],
                             delivery: Mapping[PortKey, tuple[Reliability, int, Overflow, int]]) -> None:
        """No `block` inbox inside a cycle: two nodes of a loop could each wait for the other's room."""
        if not self.spec.allow_cycles:
            return  # no cycles at all (check_cycles)
        blocking = [e for e in ends if delivery.get((e.edge.dst, e.dst_port), (None, 0, None))[2]
                    is Overflow.BLOCK]
        if not blocking:
            return
        component = _strong_components(self.nodes, [e.edge for e in ends])
        for end in blocking:
            edge = end.edge
            if component[edge.src] == component[edge.dst]:
                self.edge_error(edge, "inbox overflow 'block' inside a cycle could deadlock (the loop's "
                                'nodes would wait for each other); use drop_new or drop_oldest',
                                'cycle-block')

    def _breaks(self, node_id: str) -> bool:
        node = self.nodes[node_id]
        kind = self.kinds.get(node_id) or node.kind
        return bool(kind and kind.breaks_cycles)

    # -- what flows ---------------------------------------------------------------------------
    def flow_types(
        self, ends: list[_EdgeEnds]
    ) -> tuple[dict[PortKey, frozenset[str]], dict[PortKey, PayloadProfile]]:
        """Effective kinds and profile of every output port (pass-through nodes forward their inputs)."""
        kinds: dict[PortKey, frozenset[str]] = {}
        profiles: dict[PortKey, PayloadProfile] = {}
        for node_id, outputs in self.outputs.items():
            for name, port in outputs.items():
                kinds[(node_id, name)] = port.kinds
                profiles[(node_id, name)] = port.profile
        feeds: dict[str, list[PortKey]] = {}
        for end in ends:
            feeds.setdefault(end.edge.dst, []).append((end.edge.src, end.src_port))
        passthrough = [n for n in self._topological(ends)
                       if n in self.plugins and is_passthrough(self.plugins[n].cls) and n in feeds]
        for _sweep in range(3):  # one sweep settles a DAG; more only matter around cycles
            changed = False
            for node_id in passthrough:
                incoming_kinds = [kinds[k] for k in feeds[node_id]]
                widest = max(incoming_kinds, key=len)
                if any('*' in k for k in incoming_kinds):
                    union: frozenset[str] = _ANY_KIND
                elif all(k <= widest for k in incoming_kinds):  # share the set: a chain of pass-through
                    union = widest                              # nodes must not copy it node by node
                else:
                    union = frozenset().union(*incoming_kinds)
                profile = least_portable([profiles[k] for k in feeds[node_id]])
                for name, port in self.outputs[node_id].items():
                    key = (node_id, name)
                    new_kinds = narrow_kinds(port.kinds, union)
                    if new_kinds != kinds[key] or profile != profiles[key]:
                        kinds[key], profiles[key] = new_kinds, profile
                        changed = True
            if not changed:
                break
        return kinds, profiles

    def _topological(self, ends: list[_EdgeEnds]) -> list[str]:
        indegree = dict.fromkeys(self.nodes, 0)
        successors: dict[str, list[str]] = {n: [] for n in self.nodes}
        for end in ends:
            successors[end.edge.src].append(end.edge.dst)
            indegree[end.edge.dst] += 1
        order = [n for n, d in indegree.items() if d == 0]
        for node_id in order:
            for nxt in successors[node_id]:
                indegree[nxt] -= 1
                if indegree[nxt] == 0:
                    order.append(nxt)
        placed = set(order)
        return order + [n for n in self.nodes if n not in placed]

    def check_flow(self, ends: list[_EdgeEnds]) -> None:
        kinds, profiles = self.flow_types(ends)
        for end in ends:
            edge = end.edge
            src = self.outputs[edge.src][end.src_port]
            dst = self.inputs[edge.dst][end.dst_port]
            out_kinds = kinds[(edge.src, end.src_port)]
            out_profile = profiles[(edge.src, end.src_port)]
            where = f'{edge.src}.{end.src_port}'
            into = f'{edge.dst}.{end.dst_port}'
            if src.msg_type != dst.msg_type:
                self.edge_error(edge, f'message type mismatch: {where} publishes {src.msg_type}, '
                                f'{into} expects {dst.msg_type}', 'msg-type')
                continue
            if not dst.accepts_kinds(out_kinds):
                self.edge_error(edge, f'packet kinds do not overlap: {where} emits {_kinds_text(out_kinds)}, '
                                f'{into} accepts {_kinds_text(dst.kinds)}', 'kind-mismatch')
                continue
            non_portable = sorted(out_kinds & NON_PORTABLE_KINDS) if '*' not in out_kinds else []
            if non_portable and dst.profile is not PayloadProfile.INPROC_ANY:
                self.edge_error(edge, f'non-portable kind {non_portable[0]!r} from {where} into '
                                f'portable-only input {into} ({dst.profile})', 'non-portable-kind')
                continue
            if not profile_compatible(out_profile, dst.profile):
                self.edge_error(edge, f'payload profile {out_profile} of {where} is not accepted by {into} '
                                f'({dst.profile})', 'profile')
                continue
            src_group, dst_group = self.nodes[edge.src].container, self.nodes[edge.dst].container
            hosts = (self.hosts.get(src_group, DEFAULT_HOST), self.hosts.get(dst_group, DEFAULT_HOST))
            lane, lane_problem = frame_transport.decide(
                edge.transport, out_kinds, crosses_containers=src_group != dst_group,
                packet_port=src.msg_type == STREAM_PACKET_MSG, hosts=hosts)
            if lane_problem:
                self.edge_error(edge, lane_problem, frame_transport.CODE)
                continue
            if lane is not None:  # frames across containers on one host: a shared-memory lane
                self.lanes[(edge.src, end.src_port, edge.dst, end.dst_port)] = lane
                continue
            plugin_of = (self.plugins.get(edge.src), self.plugins.get(edge.dst))
            classes = tuple(p and p.cls for p in plugin_of)
            params = (self.params.get(edge.src, {}), self.params.get(edge.dst, {}))
            problem = crossing_problem(edge, src, out_kinds, out_profile, *classes, hosts, params)
            if problem is not None or src.wire_encoding in WIRE_ENCODINGS:  # encoded frames cross containers
                self.errors.extend([problem] if problem else [])
                continue
            if src_group != dst_group and src.msg_type == STREAM_PACKET_MSG:
                crossing = f'from container {src_group!r} to {dst_group!r}'
                if non_portable:
                    self.edge_error(edge, f'raw kind {non_portable[0]!r} cannot cross {crossing} unencoded '
                                    f'(encode it first, e.g. BytesToFileRefNode, or keep both nodes in one '
                                    f'container)', 'container-boundary')
                elif out_profile is PayloadProfile.INPROC_ANY:
                    self.edge_error(edge, f'payload profile inproc_any of {where} cannot cross {crossing} '
                                    f'(make it portable first or keep both nodes in one container)',
                                    'container-boundary')

        keys = {(e.edge.src, e.src_port, e.edge.dst, e.dst_port): e.edge for e in ends}
        for key, problem in frame_transport.check_agreement(self.lanes, keys):
            self.edge_error(keys[key], problem, frame_transport.CODE)

    # -- delivery -----------------------------------------------------------------------------
    def check_delivery(self, ends: list[_EdgeEnds]) -> dict[PortKey, Delivery]:
        by_input: dict[PortKey, list[_EdgeEnds]] = {}
        for end in ends:
            by_input.setdefault((end.edge.dst, end.dst_port), []).append(end)
        decided: dict[PortKey, Delivery] = {}
        for (node_id, port), group in by_input.items():
            into = f'{node_id}.{port}'
            values: dict[str, Any] = {}
            for field_name, label, get in (
                ('reliability', 'qos reliability', lambda e: e.delivery.qos.reliability),
                ('depth', 'qos depth', lambda e: e.delivery.qos.depth),
                ('overflow', 'inbox overflow', lambda e: e.delivery.overflow),
                ('inbox_max', 'inbox max', lambda e: e.delivery.inbox_max),
                ('drop_weights', 'inbox weights', lambda e: e.delivery.drop_weights),
            ):
                first: EdgeSpec | None = None
                for end in group:
                    value = get(end.edge)
                    if value is None:
                        continue
                    if first is None:
                        first, values[field_name] = end.edge, value
                    elif value != values[field_name]:
                        earlier = values[field_name]
                        self.edge_error(end.edge, f'{label} {value} conflicts with {earlier} set by edge '
                                        f'{first.label} (edges into input {into} must agree)',
                                        'delivery-conflict')
            publishers = [self.pub_qos[(e.edge.src, e.src_port)] for e in group]
            reliability = values.get('reliability') or (
                Reliability.BEST_EFFORT if any(p.reliability is Reliability.BEST_EFFORT for p in publishers)
                else Reliability.RELIABLE)
            if reliability is Reliability.RELIABLE:
                for end, pub in zip(group, publishers, strict=True):
                    if pub.reliability is Reliability.BEST_EFFORT:
                        self.edge_error(end.edge, f'QoS incompatible: reliable subscription on {into} cannot '
                                        f'receive from best_effort publisher {end.edge.src}.{end.src_port}',
                                        'qos')
            runtime = self.nodes[node_id].runtime
            overflow = values.get('overflow') or runtime.inbox_overflow or Overflow.DROP_NEW
            weights = values.get('drop_weights') or runtime.drop_weights
            # weighted_drop without weights: upstream's defaults (group_id, all weigh 1.0); the other
            # policies ignore weights, as upstream does
            weights = (weights or DropWeights()) if overflow is Overflow.WEIGHTED_DROP else None
            decided[(node_id, port)] = (
                reliability,
                values.get('depth') or DEFAULT_QOS_DEPTH,
                overflow,
                values.get('inbox_max') or runtime.inbox_max or DEFAULT_INBOX_MAX,
                weights,
            )
        return decided

    def check_topics(self) -> None:
        owners: dict[str, PortKey] = {}
        for key, topic in self.topics.items():
            if topic in owners:
                other = owners[topic]
                self.node_error(self.nodes[key[0]], f'output {key[1]!r} publishes on {topic!r}, which output '
                                f'{other[0]}.{other[1]} publishes on too (one publisher per topic)',
                                'topic-clash')
            else:
                owners[topic] = key

    def check_required_inputs(self, ends: list[_EdgeEnds]) -> None:
        connected = {(e.edge.dst, e.dst_port) for e in ends}
        resolved = {id(e.edge) for e in ends}
        failed_into = {e.dst for e in self.spec.edges if id(e) not in resolved}  # reported already
        for node_id, inputs in self.inputs.items():
            if node_id in failed_into:
                continue
            for name, port in inputs.items():
                if port.required and (node_id, name) not in connected:
                    self.node_error(self.nodes[node_id], f'required input {name!r} has no incoming edge',
                                    'dangling-input')

    # -- result -------------------------------------------------------------------------------
    def build(self, ends: list[_EdgeEnds], delivery: Mapping[PortKey, Delivery]) -> ValidatedGraph:
        nodes = []
        for node in self.spec.nodes:
            info = self.plugins[node.id]
            outputs = tuple(self.outputs[node.id].values())
            nodes.append(ResolvedNode(
                spec=node,
                kind=self.kinds[node.id],
                plugin_ref=info.canonical,
                plugin_cls=info.cls,
                params=self.params[node.id],
                inputs=tuple(self.inputs[node.id].values()),
                outputs=outputs,
                namespace=self.namespaces[node.id],
                container=node.container,
                output_topics={p.name: self.topics[(node.id, p.name)] for p in outputs},
                output_qos={p.name: self.pub_qos[(node.id, p.name)] for p in outputs},
            ))
        edges = []
        for end in ends:
            reliability, depth, overflow, inbox_max, weights = delivery[(end.edge.dst, end.dst_port)]
            edges.append(ResolvedEdge(
                src=end.edge.src, src_port=end.src_port, dst=end.edge.dst, dst_port=end.dst_port,
                topic=self.topics[(end.edge.src, end.src_port)], reliability=reliability, depth=depth,
                overflow=overflow, inbox_max=inbox_max, position=end.edge.position, drop_weights=weights,
                lane=self.lanes.get((end.edge.src, end.src_port, end.edge.dst, end.dst_port)),
            ))
        return ValidatedGraph(self.spec, tuple(nodes), tuple(edges), tuple(self.warnings))


def _strong_components(nodes: Mapping[str, Any], edges: list[EdgeSpec]) -> dict[str, int]:
    """Node id -> number of its strongly connected component (Kosaraju, iterative: graphs from
    outside may be deep enough to overflow a recursive walk)."""
    forward: dict[str, list[str]] = {n: [] for n in nodes}
    backward: dict[str, list[str]] = {n: [] for n in nodes}
    for edge in edges:
        forward[edge.src].append(edge.dst)
        backward[edge.dst].append(edge.src)
    finished: list[str] = []
    seen: set[str] = set()
    for root in nodes:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(forward[root]))]
        while stack:
            node_id, successors = stack[-1]
            for nxt in successors:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, iter(forward[nxt])))
                    break
            else:
                stack.pop()
                finished.append(node_id)
    component: dict[str, int] = {}
    for number, root in enumerate(reversed(finished)):
        if root in component:
            continue
        component[root] = number
        todo = [root]
        while todo:
            for prev in backward[todo.pop()]:
                if prev not in component:
                    component[prev] = number
                    todo.append(prev)
    return component


def _cycle_text(cycle: list[str], shown: int = 6) -> str:
    """`a -> b -> a`; a long cycle keeps its ends (one line, not one line of thousands of names)."""
    if len(cycle) <= 2 * shown:
        return ' -> '.join(cycle)
    hidden = len(cycle) - 2 * shown
    return ' -> '.join([*cycle[:shown], f'... ({hidden} more nodes)', *cycle[-shown:]])


def validate(spec: GraphSpec, registry: PluginRegistry | None = None,
             max_errors: int = DEFAULT_GRAPH_LIMITS.max_errors) -> ValidationResult:
    """Validate a loaded graph; all problems are collected (validation stops after `max_errors`)."""
    return _Validator(spec, registry or PluginRegistry(), max_errors).run()


def load_and_validate(path: str | os.PathLike[str], registry: PluginRegistry | None = None,
                      env: Mapping[str, str] | None = None,
                      limits: GraphLimits = DEFAULT_GRAPH_LIMITS) -> ValidationResult:
    """Load + validate a graph file; loader errors and validator errors together, in file order:
    at most `limits.max_errors` of them, then one line saying that validation stopped there."""
    loaded = load_graph(path, env=env, limits=limits)
    if loaded.graph is None or loaded.unlisted_at:  # unreadable, or so broken that validating adds nothing
        errors = _listed(loaded.errors, loaded.unlisted_at is not None, loaded.unlisted_at, limits.max_errors)
        return ValidationResult(errors, None, loaded.graph, stopped_at=loaded.unlisted_at)
    result = validate(loaded.graph, registry, limits.max_errors)
    errors = sorted([*loaded.errors, *result.errors], key=lambda e: e.position.line)
    errors = _listed(errors, result.stopped_at is not None, result.stopped_at, limits.max_errors)
    return ValidationResult(errors, result.graph if not errors else None, loaded.graph, result.warnings,
                            result.stopped_at)


def _listed(errors: list[GraphError], truncated: bool, stopped_at: Position | None,
            max_errors: int) -> list[GraphError]:
    """At most `max_errors` errors, then one line where the first one not listed (or validation) stopped."""
    if len(errors) <= max_errors and not truncated:
        return errors
    where = errors[max_errors].position if len(errors) > max_errors else (stopped_at or errors[-1].position)
    listed = errors[:max_errors]
    return [*listed, GraphError(where, f'validation stopped after {len(listed)} problems: over the limit '
                                       f'max_errors = {max_errors}', code='limit')]


def compile_graph(path: str | os.PathLike[str], registry: PluginRegistry | None = None,
                  env: Mapping[str, str] | None = None) -> ValidatedGraph:
    """The ValidatedGraph of a file, or GraphInvalid carrying every error."""
    result = load_and_validate(path, registry, env)
    if not result.ok or result.graph is None:
        raise GraphInvalid(result.errors)
    return result.graph
