"""A load request, checked and decoded: the container's side of the wiring contract (docs/wiring.md).

The same request reaches the container from launch_ros (`composition_interfaces/srv/LoadNode`) and
from the embedded runner (graph.wiring.LoadRequest). Everything is checked here, before any rclpy
node exists, so a bad request fails with one line naming the node and the field, and leaves
nothing half-made behind: package, node name and namespace, plugin (allowlist again, before import),
every parameter (unknown names with "did you mean", types, ranges, required), and the reserved
wiring parameters (`inputs.<port>`, `qos.<port>.*`, `inbox.<port>.*`, `container.group`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schnitzel_stream_ros.codec.interfaces import message_class as interface_class
from schnitzel_stream_ros.graph.blackboard_config import PARAM_PREFIX as BLACKBOARD_PREFIX
from schnitzel_stream_ros.graph.blackboard_config import BlackboardSpec, blackboard_from_params
from schnitzel_stream_ros.graph.model import (
    DEFAULT_INBOX_MAX,
    DEFAULT_QOS_DEPTH,
    DropWeights,
    Overflow,
    Reliability,
)
from schnitzel_stream_ros.graph.names import namespace_problem, node_name_problem, topic_problem
from schnitzel_stream_ros.graph.registry import PluginError as RegistryError
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.restart import PARAM_PREFIX as RESTART_PREFIX
from schnitzel_stream_ros.graph.restart import RestartSpec, restart_from_params
from schnitzel_stream_ros.graph.state_config import PARAM_PREFIX as STATE_PREFIX
from schnitzel_stream_ros.graph.state_config import StateSpec, state_from_params
from schnitzel_stream_ros.graph.suggest import did_you_mean
from schnitzel_stream_ros.graph.wiring import (
    AUTOSTART_ARG,
    CONTAINER_GROUP_PARAM,
    PACKAGE_NAME,
    decode_param_value,
    is_reserved_param,
)
from schnitzel_stream_ros.plugin import STREAM_PACKET_MSG, ParamError, Plugin, Port, Role, resolve_params
from schnitzel_stream_ros.shm_lane.ros_glue import check_transport_param

#: Parameters rclpy declares on every node by itself; a launch file may set them.
ROS_BUILTIN_PARAMS = frozenset({'use_sim_time', 'start_type_description_service'})
#: What a parameter no plugin declares gets: ignored with a warning (rclcpp ignores overrides no node
#: declares, and `SetParameter`/`/**` parameter files give every node of a scope the same parameters),
#: or refused (container parameter `unknown_parameters:=refuse`).
UNKNOWN_PARAMETER_POLICIES = ('ignore', 'refuse')
#: Severities of `log_level` (rcutils: unset, debug, info, warn, error, fatal).
LOG_LEVELS = (0, 10, 20, 30, 40, 50)
#: `extra_arguments` rclcpp_components understands; both must be booleans there too.
INTRA_PROCESS_ARG = 'use_intra_process_comms'
FORWARD_GLOBAL_ARG = 'forward_global_arguments'
#: Remap sources that would rename the node: its name and namespace come from their own fields.
_NAME_REMAPS = frozenset({'__node', '__name', '__ns'})


class LoadError(ValueError):
    """A load request cannot be served; one line naming the node and the field."""


@dataclass(frozen=True)
class InputWiring:
    """One input port: which topics feed it, with which QoS, into which inbox."""

    port: Port
    topics: tuple[str, ...]
    reliability: Reliability = Reliability.RELIABLE
    depth: int = DEFAULT_QOS_DEPTH
    inbox_max: int = DEFAULT_INBOX_MAX
    overflow: Overflow = Overflow.DROP_NEW
    msg_cls: type | None = None  # ROS message class of the subscription
    drop_weights: DropWeights | None = None  # weighted_drop only


@dataclass(frozen=True)
class OutputWiring:
    """One output port: its private topic name `~/<port>` (remappable) and publisher QoS."""

    port: Port
    reliability: Reliability = Reliability.RELIABLE
    depth: int = DEFAULT_QOS_DEPTH
    msg_cls: type | None = None
    #: topic named by the port's `topic_param` (Port.topic_param) when no remap rule names one
    topic: str | None = None


@dataclass(frozen=True)
class NodeLoadSpec:
    """Everything needed to create one plugin node; all of it already checked."""

    node_name: str
    namespace: str
    plugin_ref: str
    plugin_cls: type[Plugin]
    params: Mapping[str, Any]  # resolved plugin parameters (defaults filled in), what setup() sees
    ros_params: Mapping[str, Any]  # every parameter as a ROS value (to declare on the node)
    inputs: Mapping[str, InputWiring]
    outputs: Mapping[str, OutputWiring]
    remap_rules: tuple[str, ...] = ()
    group: str = ''
    restart: RestartSpec | None = None  # process() failure policy (graph/restart.py)
    state: StateSpec | None = None  # checkpoints of a stateful plugin (graph/state_config.py)
    blackboard: tuple[BlackboardSpec, str] | None = None  # the graph's blackboard and its scope
    log_level: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # accepted, but worth a line in the container's log

    @property
    def role(self) -> Role:
        return Role(self.plugin_cls.ROLE)

    @property
    def full_name(self) -> str:
        return ('' if self.namespace == '/' else self.namespace) + '/' + self.node_name


def message_class(type_name: str, where: str) -> type:
    """The Python class of a message interface name like `sensor_msgs/msg/Range`."""
    try:
        return interface_class(type_name, where)
    except ValueError as exc:
        raise LoadError(str(exc)) from None


def default_node_name(cls: type) -> str:
    """`StaticSource` -> `static_source`: the name of a node loaded without one."""
    return re.sub(r'(?<=[a-z0-9])(?=[A-Z])', '_', cls.__name__).lower()


def _ports(
    cls: type[Plugin], params: Mapping[str, Any], subject: str
) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
    """The plugin's ports for these parameters (Plugin.ports_for).

    Unlike the graph view, a source keeps its declared inputs: those are ROS topics it reads
    (docs/wiring.md, "Ports of other ROS types").
    """
    try:
        inputs, outputs = cls.ports_for(params)
    except Exception as exc:
        raise LoadError(f'{subject}: plugin could not declare its ports: {exc}') from exc
    return tuple(inputs), tuple(outputs)


def _as_str_list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise LoadError(f'{where}: expected a string array of topics, got {value!r}')
    return tuple(value)


def _choice(enum: type, value: Any, where: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise LoadError(f'{where}: {value!r} is not one of {[str(e) for e in enum]}') from None


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LoadError(f'{where}: expected an integer >= 1, got {value!r}')
    return value


def _weight(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LoadError(f'{where}: expected a finite number, got {value!r}')
    return float(value)


def _weight_key(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LoadError(f'{where}: expected a non-empty string, got {value!r}')
    return value.strip()


def _weight_table(value: Any, where: str) -> tuple[tuple[str, float], ...]:
    """JSON text {value: weight} (graph/wiring.py), bounded like every JSON parameter."""
    try:
        table = decode_param_value(value, dict)
    except ValueError as exc:
        raise LoadError(f'{where}: {exc}') from None
    if not isinstance(table, dict):
        raise LoadError(f'{where}: expected a JSON object of weights, got {value!r}')
    return tuple((str(k), _weight(v, f'{where}: {k}')) for k, v in table.items())


_WIRING_CHECKS: dict[tuple[str, str], Any] = {
    ('inbox', 'weights'): _weight_table,
    ('inbox', 'weight_key'): _weight_key,
    ('inbox', 'default_weight'): _weight,
    ('inputs', 'topics'): _as_str_list,
    ('qos', 'reliability'): lambda value, where: _choice(Reliability, value, where),
    ('qos', 'depth'): _positive_int,
    ('inbox', 'max'): _positive_int,
    ('inbox', 'overflow'): lambda value, where: _choice(Overflow, value, where),
}


def parse_load_request(
    *,
    package_name: str,
    plugin_name: str,
    node_name: str,
    node_namespace: str,
    remap_rules: tuple[str, ...] | list[str],
    parameters: Mapping[str, Any],
    registry: PluginRegistry,
    log_level: int = 0,
    extra: Mapping[str, Any] | None = None,
    unknown_parameters: str = 'ignore',
) -> NodeLoadSpec:
    """Check a load request field by field; LoadError names the first problem."""
    subject = f"node '{node_name}'" if node_name else 'load request'
    if package_name != PACKAGE_NAME:
        raise LoadError(
            f'{subject}: package_name {package_name!r} is not served by this container '
            f'(it hosts plugins of {PACKAGE_NAME!r})'
        )
    if node_name:
        problem = node_name_problem(node_name)
        if problem:
            raise LoadError(f'{subject}: node_name {node_name!r} {problem}')
    namespace = node_namespace or '/'
    if not namespace.startswith('/'):
        namespace = '/' + namespace
    problem = namespace_problem(namespace)
    if problem:
        raise LoadError(f'{subject}: node_namespace {node_namespace!r} {problem}')
    try:
        plugin_cls = registry.resolve(plugin_name).cls
    except RegistryError as exc:
        raise LoadError(f'{subject}: {exc}') from None
    if not node_name:  # `ros2 component load` without -n: the plugin's default name, as rclcpp does
        node_name = default_node_name(plugin_cls)
        subject = f"node '{node_name}'"
    schema = plugin_cls.param_schema()
    warnings = _check_extra_arguments(subject, extra or {})
    if log_level not in LOG_LEVELS:
        raise LoadError(
            f'{subject}: log_level {log_level} is not one of {list(LOG_LEVELS)} (rcutils severities)'
        )

    given: dict[str, Any] = {}
    reserved: dict[str, Any] = {}
    ignored: list[str] = []
    for name, value in parameters.items():
        if is_reserved_param(name):
            reserved[name] = value
        elif name in schema:
            try:
                given[name] = decode_param_value(value, schema[name].type)
            except ValueError as exc:
                raise LoadError(f"{subject}: parameter '{name}': not valid JSON text: {exc}") from None
        elif name not in ROS_BUILTIN_PARAMS:
            if unknown_parameters == 'refuse':
                raise LoadError(
                    f"{subject}: unknown parameter '{name}'{did_you_mean(name, schema)} "
                    f'(plugin {plugin_name} knows {sorted(schema)})'
                )
            ignored.append(f"'{name}'{did_you_mean(name, schema)}")
    if ignored:
        warnings.append(
            f'{subject}: ignored parameters plugin {plugin_name} does not declare: {", ".join(ignored)} '
            f'(it knows {sorted(schema)})'
        )
    try:
        params = resolve_params(plugin_cls, given)
    except ParamError as exc:
        raise LoadError(f'{subject}: {exc}{_quote_hint(exc, schema, given)}') from None
    try:
        problems = list(plugin_cls.check_params(params) or ())
    except Exception as exc:
        problems = [f'plugin could not check its parameters: {type(exc).__name__}: {exc}']
    if problems:
        raise LoadError(f'{subject}: {problems[0]}')

    input_ports, output_ports = _ports(plugin_cls, params, subject)
    inputs_by_name = {p.name: p for p in input_ports}
    outputs_by_name = {p.name: p for p in output_ports}
    inputs = _input_wiring(subject, reserved, inputs_by_name, outputs_by_name, params, plugin_cls)
    outputs = {
        name: OutputWiring(
            port,
            _choice(
                Reliability,
                reserved.get(f'qos.{name}.reliability', 'reliable'),
                f'{subject}: qos.{name}.reliability',
            ),
            _positive_int(
                reserved.get(f'qos.{name}.depth', DEFAULT_QOS_DEPTH), f'{subject}: qos.{name}.depth'
            ),
            None
            if port.msg_type == STREAM_PACKET_MSG
            else message_class(port.msg_type, f'{subject}: port {name}'),
            _param_topic(subject, port, params, remap_rules),
        )
        for name, port in outputs_by_name.items()
    }
    try:
        restart = restart_from_params(reserved)
        state = state_from_params(reserved)
        blackboard = blackboard_from_params(reserved)
    except ValueError as exc:
        raise LoadError(f'{subject}: {exc}') from None
    group = reserved.get(CONTAINER_GROUP_PARAM, '')
    if not isinstance(group, str):
        raise LoadError(f'{subject}: {CONTAINER_GROUP_PARAM}: expected a string, got {group!r}')
    for rule in remap_rules:
        source, sep, target = rule.partition(':=')
        if not sep or not source or topic_problem(target):
            raise LoadError(f'{subject}: remap rule {rule!r} is not of the form ~/<port>:=<topic>')
        if source.rsplit(':', 1)[-1] in _NAME_REMAPS:
            raise LoadError(
                f'{subject}: remap rule {rule!r} would rename the node; its name and namespace are '
                'the node_name and node_namespace of the request'
            )
    return NodeLoadSpec(
        node_name=node_name,
        namespace=namespace,
        plugin_ref=plugin_name,
        plugin_cls=plugin_cls,
        params=params,
        ros_params=dict(parameters),
        inputs=inputs,
        outputs=outputs,
        remap_rules=tuple(remap_rules),
        group=group,
        restart=restart,
        state=state,
        blackboard=blackboard,
        log_level=log_level,
        extra=dict(extra or {}),
        warnings=tuple(warnings),
    )


def _param_topic(
    subject: str, port: Port, params: Mapping[str, Any], remap_rules: tuple[str, ...] | list[str]
) -> str | None:
    """An output's topic from its `topic_param` (e.g. a /cmd_vel sink's `topic`), unless remapped."""
    if not port.topic_param or port.msg_type == STREAM_PACKET_MSG:
        return None
    topic = params.get(port.topic_param)
    if not isinstance(topic, str) or not topic:
        return None
    if any(rule.partition(':=')[0] == f'~/{port.name}' for rule in remap_rules):
        return None  # the request's remap rule names it (the graph path always does)
    if topic_problem(topic) or not topic.startswith('/'):
        raise LoadError(
            f"{subject}: parameter '{port.topic_param}': {topic!r} is not an absolute ROS topic name"
        )
    return topic


def _quote_hint(exc: ParamError, schema: Mapping[str, Any], given: Mapping[str, Any]) -> str:
    """A text parameter given a number or a boolean: ROS typed an unquoted value (`-p id:=123`)."""
    for name, value in given.items():
        if f"'{name}'" in str(exc) and schema[name].type is str and isinstance(value, bool | int | float):
            kind = type(value).__name__
            return f' (ROS types an unquoted {value!r} as {kind}; quote it for text: {name}:="{value}")'
    return ''


def _check_extra_arguments(subject: str, extra: Mapping[str, Any]) -> list[str]:
    """`extra_arguments` as rclcpp_components reads them; returns warnings for the ones it ignores.

    `use_intra_process_comms` is accepted either way: in this container the hand-off between nodes
    is always the object itself (docs/runtime.md), which is what intra-process comms buy in rclcpp.
    `forward_global_arguments:=true` is refused: the container's own command line (`__node:=`, its
    remaps) would then rename and rewire the node.
    `autostart` (ours, a boolean) overrides the container's `autostart` parameter for this node:
    false leaves it unconfigured after the load, for `ros2 lifecycle set` or a lifecycle manager.
    """
    warnings = []
    for name, value in extra.items():
        if name in (INTRA_PROCESS_ARG, FORWARD_GLOBAL_ARG, AUTOSTART_ARG):
            if not isinstance(value, bool):
                raise LoadError(f"{subject}: extra argument '{name}' must be a boolean, got {value!r}")
            if name == FORWARD_GLOBAL_ARG and value:
                raise LoadError(
                    f"{subject}: extra argument '{FORWARD_GLOBAL_ARG}:=true' is not supported: the "
                    "container's own command line (__node, __ns, remaps) would apply to the node"
                )
        else:
            warnings.append(f"{subject}: extra argument '{name}' means nothing to this container; ignored")
    return warnings


def _input_wiring(
    subject: str,
    reserved: Mapping[str, Any],
    inputs: Mapping[str, Port],
    outputs: Mapping[str, Port],
    params: Mapping[str, Any],
    plugin_cls: type[Plugin],
) -> dict[str, InputWiring]:
    """Reserved parameters -> per input port wiring; parameters for unknown ports are refused."""
    for name in reserved:
        not_wiring = (RESTART_PREFIX, STATE_PREFIX, BLACKBOARD_PREFIX)
        if name == CONTAINER_GROUP_PARAM or name.startswith(not_wiring):
            continue  # not port wiring (checked by restart_from_params, state_from_params)
        parts = name.split('.')
        family, port = parts[0], parts[1] if len(parts) > 1 else ''
        if family == 'transport':  # a frame lane (shm_lane/ros_glue.py checks name and value)
            problem = check_transport_param(name, reserved[name], inputs, outputs)
            if problem:
                raise LoadError(f'{subject}: {problem}')
            continue
        known = inputs if family in ('inputs', 'inbox') else {**inputs, **outputs}
        expected = {'inputs': 2, 'qos': 3, 'inbox': 3}[family]
        if len(parts) != expected or port not in known:
            kind = 'input port' if family in ('inputs', 'inbox') else 'port'
            raise LoadError(
                f"{subject}: wiring parameter '{name}' names no {kind} of the plugin "
                f'(ports: {sorted(known)}){did_you_mean(port, known)}'
            )
        setting = 'topics' if family == 'inputs' else parts[2]
        check = _WIRING_CHECKS.get((family, setting))
        if check is None:
            raise LoadError(f"{subject}: unknown wiring parameter '{name}'")
        check(reserved[name], f'{subject}: {name}')  # also for ports without edges: no silent typo
    wiring: dict[str, InputWiring] = {}
    for name, port in inputs.items():
        where = f'{subject}: inputs.{name}'
        if f'inputs.{name}' in reserved:
            topics = _as_str_list(reserved[f'inputs.{name}'], where)
        elif (
            Role(plugin_cls.ROLE) is Role.SOURCE
            and not port.required
            and port.msg_type != STREAM_PACKET_MSG
            and isinstance(params.get('topic'), str)
            and params['topic']
        ):
            topics = (params['topic'],)  # a ROS topic source: the topic its parameter names
        elif (
            port.topic_param
            and port.msg_type != STREAM_PACKET_MSG
            and isinstance(params.get(port.topic_param), str)
            and params[port.topic_param]
        ):
            topics = (params[port.topic_param],)  # e.g. an e-stop input, a controller's /diagnostics
        else:
            continue  # not connected: the port stays idle
        for topic in topics:
            problem = topic_problem(topic)
            named = (params.get('topic'), params.get(port.topic_param) if port.topic_param else None)
            if problem or (not topic.startswith('/') and topic not in named):
                raise LoadError(f'{where}: topic {topic!r} must be an absolute ROS topic name')
        wiring[name] = InputWiring(
            port=port,
            topics=topics,
            reliability=_choice(
                Reliability,
                reserved.get(f'qos.{name}.reliability', 'reliable'),
                f'{subject}: qos.{name}.reliability',
            ),
            depth=_positive_int(
                reserved.get(f'qos.{name}.depth', DEFAULT_QOS_DEPTH), f'{subject}: qos.{name}.depth'
            ),
            inbox_max=_positive_int(
                reserved.get(f'inbox.{name}.max', DEFAULT_INBOX_MAX), f'{subject}: inbox.{name}.max'
            ),
            overflow=_choice(
                Overflow,
                reserved.get(f'inbox.{name}.overflow', 'drop_new'),
                f'{subject}: inbox.{name}.overflow',
            ),
            msg_cls=None
            if port.msg_type == STREAM_PACKET_MSG
            else message_class(port.msg_type, f'{subject}: port {name}'),
            drop_weights=_drop_weights(subject, name, reserved),
        )
    return wiring


def _drop_weights(subject: str, port: str, reserved: Mapping[str, Any]) -> DropWeights | None:
    """weighted_drop settings of one input (None: not weighted_drop); defaults as upstream's."""
    if reserved.get(f'inbox.{port}.overflow') != Overflow.WEIGHTED_DROP:
        return None
    where = f'{subject}: inbox.{port}'
    table = reserved.get(f'inbox.{port}.weights')
    return DropWeights(
        _weight_key(reserved.get(f'inbox.{port}.weight_key', DropWeights.key), f'{where}.weight_key'),
        () if table is None else _weight_table(table, f'{where}.weights'),
        _weight(reserved.get(f'inbox.{port}.default_weight', DropWeights.default), f'{where}.default_weight'),
    )
