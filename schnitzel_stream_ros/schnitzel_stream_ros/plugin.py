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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
    #: Ports of other ROS types only: the plugin parameter naming the ROS topic of this port when the
    #: graph names none (an output the graph's `topics:` does not remap; an input without edges),
    #: e.g. a /cmd_vel sink's `topic`, an e-stop input's `estop_topic`, a controller's `/diagnostics`.
    #: Empty value = not wired.
    topic_param: str = ''
    #: Outputs only: the wire encoding this port commits to for frames/bytes ('compressed_image' or
    #: 'blob_ref'), declared by the plugin that encodes. Only such ports may carry frames across
    #: hosts (graph/placement.py); '' = none (raw frames stay on their host).
    wire_encoding: str = ''

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


class StateVersionError(ValueError):
    """A plugin cannot read state of this version; one line saying which it reads."""


#: Entries of keyed state a stateful plugin keeps when the graph sets no bound (`config.state.max_keys`).
DEFAULT_STATE_MAX_KEYS = 100_000


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


#: Answer of a remote parameter call: (value or None, error text or None).
ParamDone = Callable[[Any, 'str | None'], None]


class RemoteParameters(Protocol):
    """Parameters of other nodes, the way an operator reaches them (`ros2 param get/set`): the only
    way a plugin acts on another node. `node` is a node name, relative to the plugin's namespace or
    absolute. Both calls return at once; `done(value, error)` runs later on the plugin's own thread
    (error None: success; `set` answers with the value that was set)."""

    def get(self, node: str, name: str, done: ParamDone) -> None: ...

    def set(self, node: str, name: str, value: Any, done: ParamDone) -> None: ...


class PluginContext(Protocol):
    """What the runtime gives a plugin: its identity, parameters, logger, outputs and counters.

    `parameters` is a RemoteParameters (None where the run mode has none, e.g. a unit test's
    SimpleContext without one).
    """

    node_id: str
    params: Mapping[str, Any]

    @property
    def logger(self) -> PluginLog: ...  # .debug/.info/.warning/.error(str), .log(level, str)

    @property
    def stop_event(self) -> threading.Event: ...  # set when the node must stop (sources poll it)

    def emit(self, packet: StreamPacket, port: str = DEFAULT_OUTPUT) -> None: ...

    def count(self, name: str, n: int = 1) -> None: ...

    def gauge(self, name: str, value: float) -> None: ...

    @property
    def parameters(self) -> RemoteParameters | None: ...

    # optional (a context without them: no checkpoints, DEFAULT_STATE_MAX_KEYS, plain frame buffers)
    # def checkpoint(self) -> None: ...   make the plugin's state durable now (Plugin.checkpoint)
    # state_max_keys: int                  bound of the plugin's keyed state (Plugin.state_max_keys)
    # blackboard: Blackboard | None        the graph's blackboard (Plugin.blackboard)
    # def frame_buffer(self, shape, dtype, port) -> ndarray: ...   memory for one frame (Plugin.frame_buffer)


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
    #: Live mode: seconds between on_tick() calls (None = never). For watchdogs — a node that must act
    #: when packets stop coming (a robot command that goes stale). Override tick_period() when a
    #: parameter decides it. The deterministic engine has no clock of its own and never ticks.
    TICK_SEC: ClassVar[float | None] = None
    #: Nodes that may close a cycle (graph kind `delay` or `initial`): only a plugin declaring it
    #: here holds packets back or seeds the loop, so the validator admits a cycle only through it.
    CYCLE_KIND: ClassVar[str | None] = None

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

    def on_start(self) -> None:
        """Optional: the graph starts running (every node is wired; sources begin at this moment).

        Called once, on the node's own thread, before its first packet; it may emit (an
        InitialValue seeds its loop here). Not called again for an instance that replaces a running
        one (hot-replace): the graph is already running.
        """

    def on_params(self, changed: Mapping[str, Any]) -> None:
        """Dynamic parameters changed at run time (already validated); `self.params` is updated."""

    def on_tick(self) -> Outputs:
        """Live mode, every tick_period() seconds: on the node's own thread, between two packets,
        never concurrently with process(). Returns what process() would (packets for `out`); emit()
        reaches other ports. Keep it short: packets wait meanwhile. A tick whose predecessor has not
        run yet is skipped (ticks never pile up behind a slow packet)."""
        return None

    def close(self) -> None:
        """Release what setup() took. Always called, also after errors."""

    def backlog(self) -> int:
        """Work this node accepted but has not finished on its own (a durable sink: events
        committed but not yet delivered). When a finite run's sources end, the runtime keeps the
        node running until this is 0 or the run's drain timeout passes, then reports what is left.
        Called from another thread about every 0.2 s: keep it cheap; never raise."""
        return 0

    # -- optional: state that survives restarts and replacement (docs/state.md) --------------
    #: Version of the plain data snapshot_state() returns. 0: nothing worth keeping across a
    #: restart (a hot-replace still hands over what snapshot_state() returns). 1 or more: the
    #: plugin is stateful -- when the graph configures `config.state`, the runtime checkpoints
    #: snapshot_state() (JSON-able data) periodically and at a clean stop, restores it when the
    #: node is loaded again (container restarted by the supervisor, graph restarted, node
    #: reloaded) and hands it over on hot-replace. Raise it when the format changes.
    STATE_VERSION: ClassVar[int] = 0

    def snapshot_state(self) -> Any:
        """This node's state as plain data (dicts, lists, str, numbers, bool, None); None = nothing.

        Called on the node's own thread between two packets: for a hot-replace (the new instance,
        maybe of another class, gets it in restore_state) and, for a stateful plugin, for every
        checkpoint. Keep it proportional to the state (it runs every checkpoint period).
        """
        return None

    def restore_state(self, state: Any) -> None:
        """Take over state a snapshot_state() returned (after setup(), before the first packet);
        `state` has already passed `upgrade_state` (it is of this class' STATE_VERSION)."""

    @classmethod
    def upgrade_state(cls, state: Any, version: int) -> Any:
        """State written at `version`, as this STATE_VERSION reads it; StateVersionError if it cannot.

        The runtime calls it before restore_state of a stateful plugin (STATE_VERSION >= 1), for
        checkpoints and hot-replace alike; a refusal leaves the running instance (hot-replace) or
        refuses the load (checkpoint), with this reason. A plugin without declared state (0) is not
        asked: on a hot-replace it gets what the old instance handed over (the default ignores it).
        Override to read older versions of your own format.
        """
        if version != cls.STATE_VERSION:
            raise StateVersionError(
                f'{cls.__name__} reads state version {cls.STATE_VERSION}, the state is version {version}'
            )
        return state

    def checkpoint(self) -> None:
        """Write-ahead: make the state durable now, before the packets of this call leave.

        For a decision the plugin must never repeat after a crash (a dedup letting an event pass, a
        tracker handing out ids): call it after changing the state and before returning or
        emitting the packet that depends on it. Without configured state it does nothing.
        """
        request = getattr(self.ctx, 'checkpoint', None)
        if request is not None:
            request()

    @property
    def blackboard(self) -> Any:
        """The graph's blackboard (state/blackboard.py Blackboard: get, put, watch, changes); raises
        when the graph configures none (`config.blackboard`)."""
        board = getattr(self.ctx, 'blackboard', None)
        if board is None:
            raise RuntimeError(f"node '{self.node_id}': the graph has no blackboard (config.blackboard)")
        return board

    @property
    def state_max_keys(self) -> int:
        """How many entries of keyed state this node may keep (graph `config.state.max_keys`); the
        plugin evicts beyond it and counts `state_evicted_total` (state/bounded.py helps)."""
        return int(getattr(self.ctx, 'state_max_keys', DEFAULT_STATE_MAX_KEYS))

    # -- what authors call -----------------------------------------------------------------
    def emit(self, packet: StreamPacket, port: str = DEFAULT_OUTPUT) -> None:
        self.ctx.emit(packet, port)

    def frame_buffer(self, shape: Sequence[int], dtype: Any = 'uint8', port: str = DEFAULT_OUTPUT) -> Any:
        """A writable, C-contiguous numpy array of `shape` for one frame you emit on `port`.

        Where the port's frames go to another container over a shared-memory frame lane, the array
        *is* the shared memory the frame is sent from: write the pixels into it (decode, draw,
        `np.copyto(buf, x)`, `cv2.VideoCapture.read(buf)`) and emit it as a packet's payload — no
        copy follows. Anywhere else it is a plain `numpy.empty` array; the plugin does not care.
        Rules: emit it at most once, and do not write into it after emitting (it turns read-only);
        a buffer never emitted is simply dropped (its memory goes back by itself).
        """
        make = getattr(self.ctx, 'frame_buffer', None)
        if make is not None:
            return make(tuple(shape), dtype, port)
        import numpy as np

        return np.empty(tuple(shape), dtype)

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
    def tick_period(cls, params: Mapping[str, Any]) -> float | None:
        """Seconds between on_tick() calls for these parameters (None or <= 0: no ticks)."""
        return cls.TICK_SEC

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        """Checks beyond type and range, on already typed parameters; each string is one error
        ("parameter 'x': ...") that the validator reports at the node's line."""
        return []

    @classmethod
    def param_schema(cls) -> dict[str, Param]:
        return {p.name: p for p in cls.PARAMS}

    @classmethod
    def runtime_params(cls, params: Mapping[str, Any]) -> tuple[Param, ...]:
        """Dynamic parameters that exist only on the running node, named after the configuration
        (a controller's `pin.<knob>`): never in a graph file, settable with `ros2 param set`, and
        delivered to on_params like any dynamic parameter. Each must be `dynamic` and optional."""
        return ()

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
    state_max_keys: int = DEFAULT_STATE_MAX_KEYS
    blackboard: Any = None  # a state.blackboard.Blackboard, when a test wants one
    #: what `checkpoint()` recorded: the plugin's snapshot_state() each time (set `plugin` first)
    checkpoints: list[Any] = field(default_factory=list)
    plugin: Any = None
    parameters: RemoteParameters | None = None

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

    def checkpoint(self) -> None:
        if self.plugin is not None:
            self.checkpoints.append(self.plugin.snapshot_state())


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
