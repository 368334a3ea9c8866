"""The plugin API: one small base class for every graph node.

A plugin author writes a class with a few declarations (ports, parameters) and one method:
`produce()` for a source, `process()` for a node or sink. That is all there is to learn — the
runtime turns the class into a real ROS node (name, namespace, parameters, topics, executor,
inbox), and the graph validator reads the same declarations before anything starts. Plugins never
see rclpy, executors, topics or the container: only the `PluginContext` handed to them.

Versioning: `API_VERSION` is semver "major.minor". A plugin records the API version it was written
for; the registry refuses a plugin whose major differs from ours (see docs/plugins.md).
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from schnitzel_stream_ros.observability.plugin_log import PluginLog
from schnitzel_stream_ros.packet import PayloadProfile, StreamPacket

API_VERSION = '1.0'

#: Message type of every StreamPacket port (the ROS interface name).
STREAM_PACKET_MSG = 'schnitzel_stream_msgs/msg/StreamPacket'
#: The port a plugin uses when it names none.
DEFAULT_INPUT = 'in'
DEFAULT_OUTPUT = 'out'
#: Kind set that matches every kind.
ANY_KIND = frozenset({'*'})


class Role(StrEnum):
    """What a node does in the graph (the graph file's `kind`, minus delay/initial)."""

    SOURCE = 'source'
    NODE = 'node'
    SINK = 'sink'


@dataclass(frozen=True)
class Port:
    """A named input or output. `kinds` are the packet kinds it carries (`*` = any)."""

    name: str
    kinds: frozenset[str] = ANY_KIND
    profile: PayloadProfile = PayloadProfile.JSON_PORTABLE
    msg_type: str = STREAM_PACKET_MSG
    required: bool = True  # inputs only: a required input without an edge is a graph error
    description: str = ''

    def __post_init__(self) -> None:
        object.__setattr__(self, 'kinds', frozenset(self.kinds))
        object.__setattr__(self, 'profile', PayloadProfile(self.profile))

    def accepts_kinds(self, other: frozenset[str]) -> bool:
        """True when the kind sets of two port ends overlap (`*` matches everything)."""
        return '*' in self.kinds or '*' in other or bool(self.kinds & other)


class _Required:
    def __repr__(self) -> str:
        return 'REQUIRED'


#: Default of a parameter that a graph must set.
REQUIRED: Any = _Required()

_PARAM_TYPES: dict[type, str] = {
    bool: 'bool', int: 'int', float: 'float', str: 'str', list: 'list', dict: 'dict',
}


class ParamError(ValueError):
    """A parameter value is wrong; the message names the parameter."""


@dataclass(frozen=True)
class Param:
    """One plugin parameter: a typed, documented, optionally bounded value.

    `dynamic=True` marks parameters that may change while the node runs (`ros2 param set`); the
    runtime delivers such changes to `Plugin.on_params`. All others are read-only after start.
    """

    name: str
    type: type
    default: Any = REQUIRED
    description: str = ''
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    dynamic: bool = False

    def __post_init__(self) -> None:
        if self.type not in _PARAM_TYPES:
            raise TypeError(f'parameter {self.name!r}: unsupported type {self.type!r}')
        if self.default is not REQUIRED and self.default is not None:
            self.check(self.default)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def type_name(self) -> str:
        return _PARAM_TYPES[self.type]

    def check(self, value: Any) -> Any:
        """Return `value` as this parameter's type, or raise ParamError naming the parameter."""
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if (self.type is not bool and isinstance(value, bool)) or not isinstance(value, self.type):
            raise ParamError(
                f'parameter {self.name!r}: expected {self.type_name}, got {type(value).__name__} {value!r}'
            )
        if self.choices is not None and value not in self.choices:
            raise ParamError(f'parameter {self.name!r}: {value!r} is not one of {list(self.choices)}')
        if self.min is not None and value < self.min:
            raise ParamError(f'parameter {self.name!r}: {value!r} is below the minimum {self.min}')
        if self.max is not None and value > self.max:
            raise ParamError(f'parameter {self.name!r}: {value!r} is above the maximum {self.max}')
        return value


class PluginContext(Protocol):
    """What the runtime gives a plugin: its identity, parameters, logger, outputs and counters."""

    node_id: str
    params: Mapping[str, Any]

    @property
    def logger(self) -> PluginLog: ...  # .debug/.info/.warning/.error(str), .log(level, str)

    @property
    def stop_event(self) -> threading.Event: ...  # set when the node must stop (sources poll it)

    def emit(self, packet: StreamPacket, port: str = DEFAULT_OUTPUT) -> None: ...

    def count(self, name: str, n: int = 1) -> None: ...

    def gauge(self, name: str, value: float) -> None: ...


Outputs = StreamPacket | Iterable[StreamPacket] | None


class Plugin:
    """Base class of every graph node. Subclass it, declare, implement one method.

    Sources implement `produce()` as a generator of packets (it ends when the source is finite and
    exhausted). Nodes and sinks implement `process(packet, port)` and return nothing, one packet or
    an iterable of packets — returned packets go to the default output port; `emit()` sends to a
    named port. `setup()` runs once after parameters are known, `close()` always runs at the end.
    """

    API_VERSION: ClassVar[str] = API_VERSION
    ROLE: ClassVar[Role] = Role.NODE
    INPUTS: ClassVar[tuple[Port, ...]] = (Port(DEFAULT_INPUT),)
    OUTPUTS: ClassVar[tuple[Port, ...]] = (Port(DEFAULT_OUTPUT),)
    PARAMS: ClassVar[tuple[Param, ...]] = ()
    #: One line for `schnitzel-stream plugins`; defaults to the first docstring line.
    DESCRIPTION: ClassVar[str] = ''
    #: Outputs carry what came in (Identity, samplers, forwarding sinks): the validator propagates
    #: the kinds and profile of the input instead of the declared wildcard.
    PASSTHROUGH: ClassVar[bool] = False
    #: Sources: seconds without a packet after which /diagnostics reports the source stalled (WARN).
    #: None = the container's default (docs/diagnostics.md); 0 = never (a source that waits for
    #: events, where silence is normal). A `timeout_sec` parameter of the plugin takes precedence.
    STALL_TIMEOUT_SEC: ClassVar[float | None] = None

    def __init__(self, ctx: PluginContext) -> None:
        self.ctx = ctx
        self.node_id = ctx.node_id
        self.params = ctx.params
        self.log = ctx.logger

    # -- what authors implement ------------------------------------------------------------
    def setup(self) -> None:
        """Open files, models, connections. Raise to refuse to start (the error names the node)."""

    def produce(self) -> Iterator[StreamPacket]:
        """Sources: yield packets. Return (end the generator) when a finite source is done."""
        raise NotImplementedError(f'{type(self).__name__} is a source but does not implement produce()')

    def process(self, packet: StreamPacket, port: str = DEFAULT_INPUT) -> Outputs:
        """Nodes and sinks: handle one packet that arrived on input `port`."""
        raise NotImplementedError(f'{type(self).__name__} does not implement process()')

    def process_batch(self, packets: Sequence[StreamPacket], port: str = DEFAULT_INPUT) -> Outputs:
        """Optional: handle several packets that were waiting on input `port`, in arrival order.

        A live run calls this instead of process() when a node overrides it and more than one
        packet waits in its inbox, so a node that pays a fixed price per call (a commit, an fsync,
        a network round trip) pays it once for the whole batch. Same contract as process() for
        every packet: return what process() would have returned for all of them (None, a packet
        or an iterable), raise to fail them all. The default simply calls process() for each.
        """
        outputs: list[StreamPacket] = []
        for packet in packets:
            out = self.process(packet, port)
            if out is None:
                continue
            if isinstance(out, StreamPacket):
                outputs.append(out)
            else:
                outputs.extend(out)
        return outputs

    def on_params(self, changed: Mapping[str, Any]) -> None:
        """Dynamic parameters changed at run time (already validated); `self.params` is updated."""

    def close(self) -> None:
        """Release what setup() took. Always called, also after errors."""

    def backlog(self) -> int:
        """Work this node accepted but has not finished on its own (a durable sink: events
        committed but not yet delivered). When a finite run's sources end, the runtime keeps the
        node running until this is 0 or the run's drain timeout passes, then reports what is left.
        Called from another thread about every 0.2 s: keep it cheap; never raise."""
        return 0

    # -- optional: state hand-over when the node is replaced while it runs ------------------
    def snapshot_state(self) -> Any:
        """State to hand to the instance that replaces this one (hot-replace); None = fresh state.

        Called on the node's own thread between two packets, just before `restore_state` of the
        new instance (which may be of another class: hand over plain data, not objects of yours).
        """
        return None

    def restore_state(self, state: Any) -> None:
        """Take over the state the replaced instance's `snapshot_state()` returned (after setup())."""

    # -- what authors call -----------------------------------------------------------------
    def emit(self, packet: StreamPacket, port: str = DEFAULT_OUTPUT) -> None:
        self.ctx.emit(packet, port)

    def count(self, name: str, n: int = 1) -> None:
        """Add to a node counter (reported as node.<id>.<name> in the run report)."""
        self.ctx.count(name, n)

    def gauge(self, name: str, value: float) -> None:
        self.ctx.gauge(name, value)

    @property
    def stopping(self) -> bool:
        return self.ctx.stop_event.is_set()

    def wait_for_stop(self, seconds: float) -> bool:
        """Sleep up to `seconds` between retries, waking at once when the node must stop; True =
        stop. A node that holds packets while something outside recovers (a full disk) waits here,
        so a stop is never delayed by its backoff."""
        return self.ctx.stop_event.wait(max(0.0, seconds))

    # -- declarations, as the registry and validator read them ----------------------------
    @classmethod
    def describe(cls) -> str:
        if cls.DESCRIPTION:
            return cls.DESCRIPTION
        doc = (cls.__doc__ or '').strip()
        return doc.splitlines()[0] if doc else ''

    @classmethod
    def ports_for(cls, params: Mapping[str, Any]) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        """(inputs, outputs) for these parameters. Override when ports depend on parameters
        (a router's output per route, a source declaring exactly the kinds it is configured with)."""
        return cls.INPUTS, cls.OUTPUTS

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        """Checks beyond type and range, on already typed parameters; each string is one error
        ("parameter 'x': ...") that the validator reports at the node's line."""
        return []

    @classmethod
    def param_schema(cls) -> dict[str, Param]:
        return {p.name: p for p in cls.PARAMS}

    @classmethod
    def input_port(cls, name: str) -> Port | None:
        return next((p for p in cls.INPUTS if p.name == name), None)

    @classmethod
    def output_port(cls, name: str) -> Port | None:
        return next((p for p in cls.OUTPUTS if p.name == name), None)


@dataclass
class SimpleContext:
    """A PluginContext without ROS: for unit tests of plugins and the deterministic engine.

    Emitted packets are collected per port in `outputs`; counters in `counters`.
    """

    node_id: str = 'test'
    params: Mapping[str, Any] = field(default_factory=dict)
    logger: Any = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    outputs: dict[str, list[StreamPacket]] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.logger is None:
            import logging

            self.logger = logging.getLogger(f'schnitzel_stream.{self.node_id}')
        self.logger = PluginLog(self.logger)

    def emit(self, packet: StreamPacket, port: str = DEFAULT_OUTPUT) -> None:
        self.outputs.setdefault(port, []).append(packet)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def gauge(self, name: str, value: float) -> None:
        self.counters[name] = value


def resolve_params(plugin_cls: type[Plugin], given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in and every value checked; raises ParamError on the first problem.

    The graph validator reports all problems at once with file:line; this is the runtime's last
    line of defence for nodes loaded without a graph (composition `load_node`).
    """
    schema = plugin_cls.param_schema()
    unknown = sorted(set(given) - set(schema) - {'__runtime__'})
    if unknown:
        raise ParamError(f'unknown parameter {unknown[0]!r} (known: {sorted(schema)})')
    resolved: dict[str, Any] = {}
    for name, spec in schema.items():
        if name in given:
            value = given[name]
            resolved[name] = None if value is None and not spec.required else spec.check(value)
        elif spec.required:
            raise ParamError(f'parameter {name!r} is required')
        else:
            resolved[name] = spec.default
    return resolved
