"""The graph model: what a graph file says, with the place it says it.

Everything downstream of the loader — validator, launch generator, runner — works on these
dataclasses, never on raw YAML, so the file format (aliases, v2 spellings, extensions) is decided in
one place (graph/load.py). Each spec keeps its `Position` so every error can name `file:line`.

Names here are a contract with the runtime: keep them stable.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from schnitzel_stream_ros.graph.blackboard_config import BlackboardSpec
from schnitzel_stream_ros.graph.restart import RestartSpec
from schnitzel_stream_ros.graph.state_config import StateSpec

if TYPE_CHECKING:
    from schnitzel_stream_ros.graph.errors import GraphWarning
    from schnitzel_stream_ros.plugin import Plugin, Port

#: Key inside a node's `config` that carries upstream runtime settings (inbox), not plugin params.
RUNTIME_KEY = '__runtime__'
#: Container group of nodes that name none: by default the whole graph shares one process.
DEFAULT_CONTAINER = 'main'
#: Host of container groups that name none (graph `host:`, docs/hosts.md): the one machine.
DEFAULT_HOST = 'local'
DEFAULT_NAMESPACE = '/'
#: Upstream defaults of a node inbox.
DEFAULT_INBOX_MAX = 64
DEFAULT_QOS_DEPTH = 10


@dataclass(frozen=True)
class Position:
    """Where something was written: file name and 1-based line (0 when unknown)."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return f'{self.file}:{self.line}' if self.line else self.file


UNKNOWN_POSITION = Position('<graph>')


class NodeKind(StrEnum):
    """The graph file's `kind`. delay/initial are nodes that may close a cycle (when enabled)."""

    SOURCE = 'source'
    NODE = 'node'
    SINK = 'sink'
    DELAY = 'delay'
    INITIAL = 'initial'

    @property
    def breaks_cycles(self) -> bool:
        return self in (NodeKind.DELAY, NodeKind.INITIAL)


class Reliability(StrEnum):
    RELIABLE = 'reliable'
    BEST_EFFORT = 'best_effort'


class Overflow(StrEnum):
    """What a full inbox does with a new packet (drop_new is upstream's default)."""

    DROP_NEW = 'drop_new'
    DROP_OLDEST = 'drop_oldest'
    BLOCK = 'block'
    ERROR = 'error'
    WEIGHTED_DROP = 'weighted_drop'  # evict the lowest-weight waiting packet (DropWeights)


#: Upstream defaults of weighted_drop: the packet's `group_id` decides, unknown values weigh 1.0.
DEFAULT_WEIGHT_KEY = 'group_id'
DEFAULT_DROP_WEIGHT = 1.0


@dataclass(frozen=True)
class DropWeights:
    """How `weighted_drop` ranks waiting packets (upstream `overflow_weights`, `overflow_weight_key`,
    `overflow_default_weight`): a full inbox evicts the waiting packet of lowest weight, the oldest of
    those on ties, and takes the new one. The weight of a packet is `weights[str(value)]` of its
    meta[key] (else payload[key] when the payload is a mapping), `default` when the value is not
    listed — upstream's lookup, `None` included as the text 'None'."""

    key: str = DEFAULT_WEIGHT_KEY
    weights: tuple[tuple[str, float], ...] = ()
    default: float = DEFAULT_DROP_WEIGHT

    def table(self) -> dict[str, float]:
        return dict(self.weights)


@dataclass(frozen=True)
class QosSpec:
    """QoS of one end. `None` fields were not written in the file (defaults apply later)."""

    reliability: Reliability | None = None
    depth: int | None = None


@dataclass(frozen=True)
class DeliverySpec:
    """Per-edge delivery into the destination input: subscription QoS and inbox policy.

    Unset fields fall back to the destination node's `config.__runtime__`, then the defaults.
    """

    qos: QosSpec = field(default_factory=QosSpec)
    overflow: Overflow | None = None
    inbox_max: int | None = None
    drop_weights: DropWeights | None = None


@dataclass(frozen=True)
class PortOverride:
    """A node-level narrowing of a plugin port (graph `ports:` extension): kinds and/or profile."""

    kinds: frozenset[str] | None = None
    profile: str | None = None
    position: Position = UNKNOWN_POSITION


@dataclass(frozen=True)
class RuntimeSpec:
    """Upstream `config.__runtime__`: default inbox settings for every input of the node."""

    inbox_max: int | None = None
    inbox_overflow: Overflow | None = None
    drop_weights: DropWeights | None = None  # overflow_weights / _weight_key / _default_weight


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph, as written (plugin reference not yet resolved)."""

    id: str
    plugin: str
    kind: NodeKind | None = None  # None: not written; the plugin's role decides
    config: Mapping[str, Any] = field(default_factory=dict)  # plugin params (+ __runtime__ as written)
    namespace: str | None = None  # None: the graph namespace
    container: str = DEFAULT_CONTAINER
    host: str | None = None  # None: not written (the container's host, else DEFAULT_HOST; graph/placement.py)
    topics: Mapping[str, str] = field(default_factory=dict)  # output port -> topic name
    qos: Mapping[str, QosSpec] = field(default_factory=dict)  # output port -> publisher QoS
    ports: Mapping[str, PortOverride] = field(default_factory=dict)  # port -> narrowing
    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)
    restart: RestartSpec | None = None  # what happens when process() raises (graph/restart.py)
    state: Mapping[str, Any] | None = None  # the node's own checkpoint settings (graph/state_config.py)
    position: Position = UNKNOWN_POSITION
    #: line of each config key (for parameter errors); missing keys use `position`
    param_positions: Mapping[str, Position] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, Any]:
        """Plugin parameters: `config` without the upstream runtime block."""
        return {k: v for k, v in self.config.items() if k != RUNTIME_KEY}

    def param_position(self, name: str) -> Position:
        return self.param_positions.get(name, self.position)


@dataclass(frozen=True)
class EdgeSpec:
    """One edge. Ports are `None` when the file names none: the plugin's default port applies."""

    src: str
    dst: str
    src_port: str | None = None
    dst_port: str | None = None
    delivery: DeliverySpec = field(default_factory=DeliverySpec)
    position: Position = UNKNOWN_POSITION
    transport: Any = None  # graph/frame_transport.EdgeTransport when the edge names one

    @property
    def label(self) -> str:
        """`a->b`, or `a.out->b.in` when ports are named (how errors name the edge)."""
        left = f'{self.src}.{self.src_port}' if self.src_port else self.src
        right = f'{self.dst}.{self.dst_port}' if self.dst_port else self.dst
        return f'{left}->{right}'


@dataclass(frozen=True)
class ContainerGroup:
    """Nodes that share one container process (in graph declaration order)."""

    name: str
    node_ids: tuple[str, ...]


@dataclass(frozen=True)
class GraphSpec:
    """A whole graph file after loading (aliases resolved, env interpolated, not yet validated)."""

    nodes: tuple[NodeSpec, ...]
    edges: tuple[EdgeSpec, ...]
    version: int = 2
    config: Mapping[str, Any] = field(default_factory=dict)
    namespace: str = DEFAULT_NAMESPACE
    source: str = '<graph>'  # file path as given (or '<string>')
    sha256: str = ''  # of the file bytes
    position: Position = UNKNOWN_POSITION
    #: graph-level switches (upstream `config`): cycles allowed through delay/initial nodes
    allow_cycles: bool = False
    #: checkpoints of stateful nodes (`config.state`, graph/state_config.py); None: none
    state: StateSpec | None = None
    #: the graph's blackboard (`config.blackboard`, graph/blackboard_config.py); None: none
    blackboard: BlackboardSpec | None = None
    #: false: every node loads unconfigured, for a lifecycle manager (docs/runtime.md, "Managed nodes")
    autostart: bool = True
    #: live mode: a source emits its next packet only once the graph has drained the previous one
    #: (upstream's in-process pacing; one container only in this version, docs/runtime.md)
    pace_sources: bool = False
    pace_position: Position = UNKNOWN_POSITION

    def node(self, node_id: str) -> NodeSpec | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def node_namespace(self, node: NodeSpec) -> str:
        return node.namespace if node.namespace is not None else self.namespace

    @property
    def containers(self) -> tuple[ContainerGroup, ...]:
        """Container groups in order of first appearance."""
        groups: dict[str, list[str]] = {}
        for node in self.nodes:
            groups.setdefault(node.container, []).append(node.id)
        return tuple(ContainerGroup(name, tuple(ids)) for name, ids in groups.items())

    def edges_from(self, node_id: str) -> tuple[EdgeSpec, ...]:
        return tuple(e for e in self.edges if e.src == node_id)

    def edges_into(self, node_id: str) -> tuple[EdgeSpec, ...]:
        return tuple(e for e in self.edges if e.dst == node_id)


# -- after validation ---------------------------------------------------------------------------
# The validator turns a GraphSpec into a ValidatedGraph: plugins resolved and imported, defaults
# filled in, every port and delivery setting decided. The launch generator and the runner read
# only this, so both start exactly the same nodes.


@dataclass(frozen=True)
class ResolvedNode:
    """A node with everything decided: plugin class, kind, parameters, ports, topics."""

    spec: NodeSpec
    kind: NodeKind
    plugin_ref: str  # canonical `module.path:ClassName` (after alias / entry-point resolution)
    plugin_cls: type[Plugin]
    params: Mapping[str, Any]  # validated, defaults filled in (what setup() will see)
    inputs: tuple[Port, ...]  # effective ports (graph `ports:` narrowing applied)
    outputs: tuple[Port, ...]
    namespace: str  # absolute ROS namespace
    container: str
    output_topics: Mapping[str, str]  # output port -> absolute topic
    output_qos: Mapping[str, QosSpec]  # output port -> publisher QoS (fully set)

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass(frozen=True)
class ResolvedEdge:
    """An edge with ports and delivery decided (all fields set)."""

    src: str
    src_port: str
    dst: str
    dst_port: str
    topic: str  # absolute topic the source port publishes on
    reliability: Reliability
    depth: int
    overflow: Overflow
    inbox_max: int
    position: Position = UNKNOWN_POSITION
    drop_weights: DropWeights | None = None  # set when overflow is weighted_drop
    lane: Any = None  # graph/frame_transport.FrameLane: frames on shared memory between containers

    @property
    def label(self) -> str:
        return f'{self.src}.{self.src_port}->{self.dst}.{self.dst_port}'


@dataclass(frozen=True)
class InputSpec:
    """One input port of one node: where it subscribes and how its inbox behaves."""

    node: str
    port: str
    topics: tuple[str, ...]  # fan-in: every topic feeding this port, in edge order
    reliability: Reliability
    depth: int
    overflow: Overflow
    inbox_max: int
    drop_weights: DropWeights | None = None


@dataclass(frozen=True)
class ValidatedGraph:
    """A graph that passed validation; the only input of the launch generator and the runner."""

    spec: GraphSpec
    nodes: tuple[ResolvedNode, ...]  # declaration order
    edges: tuple[ResolvedEdge, ...]  # declaration order
    #: what the validator ignored instead of refusing (every consumer prints them, one line each)
    warnings: tuple[GraphWarning, ...] = ()

    def node(self, node_id: str) -> ResolvedNode:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    @property
    def containers(self) -> tuple[ContainerGroup, ...]:
        return self.spec.containers

    def inputs_of(self, node_id: str) -> tuple[InputSpec, ...]:
        """Connected input ports of a node (edges into one port agree; the validator made sure)."""
        by_port: dict[str, list[ResolvedEdge]] = {}
        for edge in self.edges:
            if edge.dst == node_id:
                by_port.setdefault(edge.dst_port, []).append(edge)
        specs = []
        for port, edges in by_port.items():
            first = edges[0]
            topics = tuple(dict.fromkeys(e.topic for e in edges))
            specs.append(InputSpec(node_id, port, topics, first.reliability, first.depth,
                                   first.overflow, first.inbox_max, first.drop_weights))
        return tuple(specs)
