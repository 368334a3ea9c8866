"""Plugin parameters as ROS parameters: declared with descriptors, checked again on every change.

`ros2 param describe` shows a plugin's schema (type, description, range, choices, read-only), and
`ros2 param set` on a parameter the plugin marked `dynamic=True` reaches `Plugin.on_params` — after
the same check the graph validator applied, so a run-time change can never put a node in a state a
graph file could not. Everything else, and every reserved wiring parameter, is read-only.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rcl_interfaces.msg import Parameter as ParameterMsg
from rclpy.parameter import Parameter, get_parameter_value

from schnitzel_stream_ros.graph.wiring import decode_param_value, is_reserved_param, ros_param_value
from schnitzel_stream_ros.plugin import Param, ParamError

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1

_WIRING_DESCRIPTIONS = {
    'inputs': 'topics this input subscribes to (wiring, read-only)',
    'qos': 'QoS of this port (wiring, read-only)',
    'inbox': 'inbox of this input (wiring, read-only)',
    'container': 'container group of this node (wiring, read-only)',
    'restart': 'restart policy of this node (graph, read-only)',
    'transport': 'shared-memory frame lane of this port and its pool (graph, read-only)',
}


def descriptor_for(param: Param, value: Any) -> ParameterDescriptor:
    """The ROS descriptor of one plugin parameter (ranges, choices, read-only unless dynamic)."""
    desc = ParameterDescriptor(
        name=param.name,
        description=param.description or param.name,
        read_only=not param.dynamic,
        # dicts/lists travel as JSON text or as arrays (docs/wiring.md); a None default has no type yet
        dynamic_typing=value is None or param.type in (list, dict),
    )
    constraints = []
    if param.choices is not None:
        constraints.append(f'one of {list(param.choices)}')
    if param.type is int and (param.min is not None or param.max is not None):
        low = _INT_MIN if param.min is None else math.ceil(param.min)
        high = _INT_MAX if param.max is None else math.floor(param.max)
        desc.integer_range = [IntegerRange(from_value=low, to_value=high, step=0)]
    elif param.type is float and (param.min is not None or param.max is not None):
        low = -sys.float_info.max if param.min is None else float(param.min)
        high = sys.float_info.max if param.max is None else float(param.max)
        desc.floating_point_range = [FloatingPointRange(from_value=low, to_value=high, step=0.0)]
    if param.type in (list, dict):
        constraints.append(f'{param.type_name} (as JSON text when not a plain array)')
    desc.additional_constraints = '; '.join(constraints)
    return desc


def wiring_descriptor(name: str) -> ParameterDescriptor:
    family = name.split('.', 1)[0]
    return ParameterDescriptor(
        name=name, description=_WIRING_DESCRIPTIONS.get(family, 'wiring (read-only)'), read_only=True
    )


def declare_parameters(
    node: Any, schema: Mapping[str, Param], resolved: Mapping[str, Any], given: Mapping[str, Any]
) -> None:
    """Declare every plugin parameter (given value or default) and every given wiring parameter."""
    for name, param in schema.items():
        if name in given:
            value = given[name]
        else:
            value = resolved.get(name)
            value = None if value is None else ros_param_value(value)
        if param.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # keep the ROS type DOUBLE, so `ros2 param set x 0.5` works later
        node.declare_parameter(name, value, descriptor_for(param, value))
    for name, value in given.items():
        if is_reserved_param(name):
            node.declare_parameter(name, value, wiring_descriptor(name))


def check_change(
    schema: Mapping[str, Param], params: list[Parameter]
) -> tuple[SetParametersResult, dict[str, Any]]:
    """Validate a `ros2 param set`: (result, decoded changes of plugin parameters)."""
    changed: dict[str, Any] = {}
    for p in params:
        spec = schema.get(p.name)
        if spec is None:
            if is_reserved_param(p.name):
                return SetParametersResult(
                    successful=False, reason=f"parameter '{p.name}' is wiring, read-only"
                ), {}
            continue  # rclpy's own parameters (use_sim_time): not ours to judge
        if not spec.dynamic:
            return SetParametersResult(
                successful=False, reason=f"parameter '{p.name}' is read-only while the node runs"
            ), {}
        unset = isinstance(p.value, str) and p.value.strip().lower() in ('', 'none', 'null')
        if spec.default is None and unset:
            changed[p.name] = None  # an optional parameter back to "not set" (e.g. a lifted pin)
            continue
        try:
            value = decode_param_value(p.value, spec.type)
            changed[p.name] = spec.check(value)
        except (ParamError, ValueError) as exc:
            return SetParametersResult(successful=False, reason=str(exc)), {}
    return SetParametersResult(successful=True), changed


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) or hasattr(value, 'tolist') else value


def as_reloaded(param: Parameter) -> Parameter:
    """The parameter as `ros2 param load` sends it back from a `ros2 param dump`.

    rclpy's parameter_dict_from_yaml_file turns each dumped value into text and guesses its type
    again (rclpy.parameter.get_parameter_value): a null comes back as the text 'None', 1e-05 as
    text (ros2cli#834), JSON text '[1, 2]' as an integer array, the text '12' as an integer.
    """
    value = get_parameter_value(str(_plain(param.value)))
    return Parameter.from_parameter_msg(ParameterMsg(name=param.name, value=value))


def unchanged_parameter(node: Any, param: Parameter) -> bool:
    """True for a set that would change nothing: the value it has, or that value as reloaded from a dump.

    Such a set succeeds without touching the node, also on read-only parameters — which makes
    `ros2 param load` of a `ros2 param dump` give the same node (rclpy would refuse every read-only
    parameter, undeclare a parameter without a value, and retype values it re-reads).
    """
    try:
        current = node.get_parameter(param.name)
    except Exception:  # not declared: rclpy answers that itself
        return False
    if param.type_ == current.type_ and _plain(param.value) == _plain(current.value):
        return True
    if current.type_ == Parameter.Type.NOT_SET:
        return param.type_ == Parameter.Type.STRING and param.value == 'None'
    reloaded = as_reloaded(current)
    return param.type_ == reloaded.type_ and _plain(param.value) == _plain(reloaded.value)


def redeclare_plugin_parameters(
    node: Any,
    old_schema: Mapping[str, Param],
    new_schema: Mapping[str, Param],
    resolved: Mapping[str, Any],
    given: Mapping[str, Any],
) -> None:
    """A hot-replaced node's plugin parameters: the old plugin's go, the new plugin's are declared.

    rclpy refuses to undeclare a read-only parameter; a replace must (the node stays, its plugin and
    with it the parameter schema change), so the descriptor is made writable just before it goes.
    The caller keeps its set-parameter checks out of the way meanwhile (they run on declaration).
    """
    for name in old_schema:
        if node.has_parameter(name):
            node.describe_parameter(name).read_only = False
            node.undeclare_parameter(name)
    declare_parameters(node, new_schema, resolved, {k: v for k, v in given.items() if k in new_schema})


def update_wiring_parameters(node: Any, given: Mapping[str, Any]) -> None:
    """A rewired node's read-only wiring parameters (`inputs.<port>`) take their new values, so
    `ros2 param get` tells the truth. Read-only for everyone else, so it is lifted just for this
    (the caller keeps its set-parameter checks out of the way meanwhile)."""
    for name, value in given.items():
        if not is_reserved_param(name) or not node.has_parameter(name):
            continue
        if node.get_parameter(name).value == value:
            continue
        descriptor = node.describe_parameter(name)
        descriptor.read_only = False
        try:
            node.set_parameters([Parameter(name, value=value)])
        finally:
            descriptor.read_only = True
